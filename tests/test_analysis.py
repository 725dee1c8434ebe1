"""Analysis on media with known events: shots, previews, highlights, thumbnails, live shots."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from livecut.analysis.frames import decoded_frames
from livecut.analysis.highlights import CaptionText, HighlightScore, find_highlights
from livecut.analysis.loudness import LoudnessCurve, envelope, loudness_curve
from livecut.analysis.previews import animated_webp, preview_frame_count, preview_times
from livecut.analysis.scan import pictures_at
from livecut.analysis.shots import Cut, ShotDetector
from livecut.analysis.storyboards import (
    default_interval_ms,
    sprite_sheet,
    storyboard_vtt,
    tile_instants,
)
from livecut.analysis.thumbnails import frame_at
from livecut.media.clock import TS_WRAP_S
from livecut.media.scenes import AUDIO_RATE, REEL, write_reel_hls
from livecut.media.synth import read_frame_number
from tests.harness import daemon_config, recorded_vod, running, until

PDT0 = 1_767_225_600_000
FRAME_S = 1 / REEL.fps


@pytest.fixture(scope="module")
def reel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reel_hls(tmp_path_factory.mktemp("reel")).parent


def reel_segments(folder: Path) -> list[Path]:
    return [folder / f"seg{i}.ts" for i in range(int(REEL.duration_s // 2))]


def detect(folder: Path) -> tuple[list[Cut], list[tuple[float, np.ndarray]]]:
    """Every cut of the reel (seconds from its first frame) and every decoded frame."""
    detector = ShotDetector(REEL.fps)
    cuts: list[Cut] = []
    frames = []
    first: float | None = None
    for media_s, picture in decoded_frames(reel_segments(folder), None):
        first = media_s if first is None else first
        frames.append((media_s - first, picture))
        cuts += detector.process_frame(media_s - first, picture)
    return cuts + detector.flush(), frames


def decoded_audio(folder: Path) -> np.ndarray:
    with av.open(str(folder / "index.m3u8")) as container:
        chunks = [f.to_ndarray()[0] for f in container.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float32)


def test_every_hard_cut_is_found_within_a_frame_and_none_in_the_static_shot_or_the_pan(
    reel: Path,
) -> None:
    cuts, _ = detect(reel)
    hard = [c for c in cuts if c.kind == "cut"]
    for expected in REEL.hard_cuts_s:
        near = [c for c in hard if abs(c.time_s - expected) <= FRAME_S + 1e-6]
        assert len(near) == 1, (expected, [(c.kind, c.time_s) for c in cuts])
        assert near[0].score.content > 0  # the score explains itself part by part
        assert set(near[0].explain()) >= {"content", "adaptive_ratio"}
    for start, end in (REEL.static_s, REEL.pan_s):
        inside = [c for c in cuts if start + FRAME_S < c.time_s < end - FRAME_S]
        assert inside == [], (start, end, inside)
    # Nothing but the reel's own transitions.
    assert len(cuts) == len(REEL.hard_cuts_s) + 1, [(c.kind, c.time_s) for c in cuts]


def test_the_slow_dissolve_is_found_within_its_span(reel: Path) -> None:
    cuts, _ = detect(reel)
    start, end = REEL.dissolve_s
    dissolves = [c for c in cuts if c.kind == "dissolve"]
    assert len(dissolves) == 1, [(c.kind, c.time_s) for c in cuts]
    assert start <= dissolves[0].time_s <= end
    assert dissolves[0].explain()["linearity"] > 0.8


@given(st.floats(min_value=0.04, max_value=400.0))
def test_preview_frame_count_follows_mux(duration_s: float) -> None:
    count = preview_frame_count(duration_s)
    assert count == (1 if duration_s < 1 else min(100, int(duration_s)))
    times = preview_times(10.0, 10.0 + duration_s)
    assert len(times) == count
    assert all(10.0 < t < 10.0 + duration_s for t in times)
    assert times == sorted(times)


def test_shot_previews_decode_to_one_frame_per_second_of_shot(reel: Path) -> None:
    cuts, frames = detect(reel)
    bounds = [0.0, *sorted(c.time_s for c in cuts), frames[-1][0] + FRAME_S]
    # And a shot under a second: the rule gives it one frame.
    shots = [*itertools.pairwise(bounds), (3.0, 3.6)]
    for start, end in shots:
        wanted = preview_times(start, end)
        pictures = [
            next(p for t, p in frames if t >= w - FRAME_S / 2)[..., ::-1].copy() for w in wanted
        ]
        data = animated_webp(pictures)
        image = Image.open(io.BytesIO(data))
        assert image.format == "WEBP"
        decoded = 0
        for n in range(image.n_frames):
            image.seek(n)
            image.convert("RGB").load()
            decoded += 1
        assert decoded == preview_frame_count(end - start) == len(wanted), (start, end)


def test_the_loud_burst_is_the_top_highlight(reel: Path) -> None:
    cuts, _ = detect(reel)
    highlights = find_highlights(
        duration_s=REEL.duration_s,
        loudness=loudness_curve(decoded_audio(reel), AUDIO_RATE),
        cuts_s=[c.time_s for c in cuts],
        captions=[],
        max_clips=3,
        min_duration_s=3.0,
        max_duration_s=6.0,
    )
    top = highlights[0]
    burst_start, burst_end = REEL.burst_s
    assert top.start_s <= burst_start and top.end_s >= burst_end, top
    assert top.parts.loudness > 0.5 and top.parts.rise > 0.5
    assert top.score > highlights[1].score
    assert top.label == "loud moment" or top.label == "crowd reaction"
    assert min(h.score for h in highlights) >= 0 and max(h.score for h in highlights) <= 1


def test_an_instruction_selects_the_window_holding_its_word(reel: Path) -> None:
    cuts, _ = detect(reel)
    captions = [CaptionText(start_s=c.start_s, end_s=c.end_s, text=c.text) for c in REEL.captions]
    spoken = next(c for c in REEL.captions if "goalkeeper" in c.text)
    highlights = find_highlights(
        duration_s=REEL.duration_s,
        loudness=loudness_curve(decoded_audio(reel), AUDIO_RATE),
        cuts_s=[c.time_s for c in cuts],
        captions=captions,
        max_clips=2,
        min_duration_s=3.0,
        max_duration_s=6.0,
        instruction="the goalkeeper",
    )
    top = highlights[0]
    assert top.start_s < spoken.end_s and top.end_s > spoken.start_s, top
    assert top.parts.text == 1.0
    assert "goalkeeper" in top.label


async def test_a_thumbnail_mid_gop_shows_the_exact_frame(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        # 25 fps, a keyframe every second: 4.52 s is frame 113, twelve frames into its GOP.
        for at_ms, frame in ((4520, 113), (4559, 113), (4560, 114), (2000, 50), (7999, 199)):
            segments = await daemon.store.index.stream_segments(
                "cam", PDT0 + at_ms - 30_000, PDT0 + at_ms + 1
            )
            shown = frame_at(segments, PDT0 + at_ms, daemon.store.path)
            assert read_frame_number(shown) == frame, at_ms
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{daemon.base_url}/v1/streams/cam/thumbnail.png",
                params={"at_ms": str(PDT0 + 4520)},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            assert response.content_type == "image/png"
            body = await response.read()
        picture = av.VideoFrame.from_image(Image.open(io.BytesIO(body)).convert("RGB"))
        assert read_frame_number(picture) == 113


@pytest.mark.parametrize(
    "start_pts_s",
    # The second reel's MPEG-TS timestamps wrap 2.5 s in, half a second before the cut.
    [10.0, TS_WRAP_S - 2.5],
    ids=["plain", "ts-wrap"],
)
async def test_live_shot_detection_reports_a_cut_within_5s_of_its_segment(
    data_dir: Path, tmp_path: Path, start_pts_s: float
) -> None:
    folder = write_reel_hls(tmp_path / "reel", start_pts_s=start_pts_s).parent
    lines = (folder / "index.m3u8").read_text().splitlines()
    head = [line for line in lines if line.startswith("#EXT") and "EXTINF" not in line]
    head = [line for line in head if "ENDLIST" not in line and "PLAYLIST-TYPE" not in line]
    published = 3  # a live playlist holding the first three segments: cuts at 3 s are in seg1

    async def playlist(_: web.Request) -> web.Response:
        body = [h for h in head if "PROGRAM-DATE-TIME" not in h]
        body.append(next(h for h in head if "PROGRAM-DATE-TIME" in h))
        for i in range(published):
            body += ["#EXTINF:2.000,", f"seg{i}.ts"]
        return web.Response(
            text="\n".join(body) + "\n", content_type="application/vnd.apple.mpegurl"
        )

    app = web.Application()
    app.router.add_get("/live/index.m3u8", playlist)
    app.router.add_static("/live", folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = daemon_config(data_dir, f"http://127.0.0.1:{port}/live/index.m3u8")
    config = replace(config, streams=(replace(config.streams[0], shots=True),))
    try:
        async with running(config) as daemon:
            analysis = daemon.store.index.analysis
            cut_ms = PDT0 + 3000

            async def found() -> bool:
                return any(
                    abs(c.at_ms - cut_ms) <= 40
                    for c in await analysis.shot_cuts("cam", PDT0, PDT0 + 10_000, limit=10)
                )

            await until(daemon, "cam", found, timeout_s=30)
            cut = next(c for c in await analysis.shot_cuts("cam", PDT0, PDT0 + 10_000, limit=10))
            assert cut.kind == "cut" and abs(cut.at_ms - cut_ms) <= 40
            segment = next(
                s for s in await daemon.store.index.stream_segments("cam", cut_ms, cut_ms + 1)
            )
            indexed_ms = (await daemon.store.index.indexed_times(segment.rendition_id))[segment.seq]
            assert 0 <= cut.found_ms - indexed_ms <= 5000, (cut.found_ms, indexed_ms)
    finally:
        await runner.cleanup()


async def test_live_shots_flush_a_dissolve_open_when_the_session_ends(
    data_dir: Path, tmp_path: Path
) -> None:
    """The session ends at 18 s, as the dissolve (16-18 s) ends: only the flush reports it."""
    folder = write_reel_hls(tmp_path / "reel").parent
    lines = (folder / "index.m3u8").read_text().splitlines()
    cut_at = lines.index("seg9.ts") - 1  # the EXTINF line of the segment after 18 s
    (folder / "short.m3u8").write_text("\n".join([*lines[:cut_at], "#EXT-X-ENDLIST"]) + "\n")
    app = web.Application()
    app.router.add_static("/reel", folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = daemon_config(data_dir, f"http://127.0.0.1:{port}/reel/short.m3u8")
    config = replace(config, streams=(replace(config.streams[0], shots=True),))
    try:
        async with running(config) as daemon:
            analysis = daemon.store.index.analysis

            async def dissolves() -> list[int]:
                cuts = await analysis.shot_cuts("cam", PDT0, PDT0 + 30_000, limit=20)
                return [c.at_ms for c in cuts if c.kind == "dissolve"]

            async def dissolve_found() -> bool:
                return bool(await dissolves())

            await until(daemon, "cam", dissolve_found, timeout_s=30)
            start, end = (PDT0 + round(s * 1000) for s in REEL.dissolve_s)
            found = await dissolves()
            assert len(found) == 1 and start <= found[0] <= end, found
            session = (await daemon.store.index.sessions("cam"))[0]
            assert session.state == "ended"
    finally:
        await runner.cleanup()


@st.composite
def signals(draw: st.DrawFn) -> dict[str, object]:
    duration_s = draw(st.floats(min_value=2.0, max_value=60.0))
    blocks = max(0, int((duration_s - 0.4) / 0.1) + 1)
    levels = draw(st.lists(st.floats(min_value=-70, max_value=0), min_size=blocks, max_size=blocks))
    min_s = draw(st.floats(min_value=0.5, max_value=duration_s))
    max_s = draw(st.floats(min_value=min_s, max_value=max(min_s, 2 * duration_s)))
    return {
        "duration_s": duration_s,
        "loudness": LoudnessCurve(start_s=0.0, momentary=tuple(levels), short_term=tuple(levels)),
        "cuts_s": sorted(draw(st.lists(st.floats(min_value=0, max_value=duration_s), max_size=20))),
        "motion": [
            (t, v)
            for t, v in zip(
                np.arange(0, duration_s, 0.5),
                draw(
                    st.lists(
                        st.floats(min_value=0, max_value=255),
                        min_size=len(np.arange(0, duration_s, 0.5)),
                        max_size=len(np.arange(0, duration_s, 0.5)),
                    )
                ),
                strict=True,
            )
        ],
        "captions": [
            CaptionText(start_s=a, end_s=a + 1.0, text=w)
            for a, w in draw(
                st.lists(
                    st.tuples(
                        st.floats(min_value=0, max_value=duration_s),
                        st.sampled_from(["goal", "save", "the crowd", "replay"]),
                    ),
                    max_size=5,
                )
            )
        ],
        "max_clips": draw(st.integers(min_value=1, max_value=10)),
        "min_duration_s": min_s,
        "max_duration_s": max_s,
        "instruction": draw(st.sampled_from([None, "", "the goal", "a save please"])),
    }


@given(signals())
def test_highlights_are_bounded_disjoint_and_explained(args: dict[str, object]) -> None:
    found = find_highlights(**args)  # type: ignore[arg-type]
    duration_s = args["duration_s"]
    max_clips = args["max_clips"]
    min_s, max_s = args["min_duration_s"], args["max_duration_s"]
    assert isinstance(duration_s, float) and isinstance(max_clips, int)
    assert isinstance(min_s, float) and isinstance(max_s, float)
    assert 1 <= len(found) <= max_clips
    for h in found:
        assert 0 <= h.start_s < h.end_s <= duration_s + 1e-9
        assert h.end_s - h.start_s <= max_s + 1e-9
        assert h.end_s - h.start_s >= min(min_s, duration_s) - 1e-9
        assert 0 <= h.score <= 1 and all(0 <= p <= 1 for p in h.parts)
        weighted = sum(p * w for p, w in zip(h.parts, h.weights, strict=True))
        assert abs(weighted / sum(h.weights) - h.score) < 1e-3
        assert set(h.explain()) == set(HighlightScore._fields)
        assert h.label
    for a, b in itertools.combinations(found, 2):
        assert a.end_s <= b.start_s or b.end_s <= a.start_s, (a, b)
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


def test_loudness_envelope_takes_each_buckets_loudest_block() -> None:
    # Blocks end at 0.4, 0.5, ... s: the 1 s buckets hold blocks 0-5, 6-15, 16-.
    levels = tuple(float(-60 + (20 if i == 8 else 0)) for i in range(20))
    curve = LoudnessCurve(start_s=0.0, momentary=levels, short_term=levels)
    buckets = envelope(curve, zero_ms=10_000, from_ms=10_000, to_ms=13_000, resolution_ms=1000)
    assert [b.start_ms for b in buckets] == [10_000, 11_000, 12_000]
    assert [b.momentary_lufs for b in buckets] == [-60.0, -40.0, -60.0]
    empty = envelope(curve, zero_ms=0, from_ms=50_000, to_ms=52_000, resolution_ms=1000)
    assert [b.momentary_lufs for b in empty] == [None, None]


def test_storyboard_cues_name_each_tile_of_the_sheet() -> None:
    vtt = storyboard_vtt(
        count=12, interval_ms=5000, total_ms=57_500, tile=(160, 90), image_url="http://x/s.jpg"
    )
    cues = vtt.split("\n\n")[1:]
    assert vtt.startswith("WEBVTT\n") and len([c for c in cues if c.strip()]) == 12
    assert "00:00:05.000 --> 00:00:10.000\nhttp://x/s.jpg#xywh=160,0,160,90" in vtt
    assert "00:00:55.000 --> 00:00:57.500\nhttp://x/s.jpg#xywh=160,90,160,90" in vtt
    assert (
        tile_instants(0, 57_500, 5000)[-1] == 55_000 and len(tile_instants(0, 57_500, 5000)) == 12
    )
    assert default_interval_ms(100_000) == 1000 and default_interval_ms(100_001) == 2000
    pictures = [np.full((90, 160, 3), n * 20, np.uint8) for n in range(12)]
    sheet = Image.open(io.BytesIO(sprite_sheet(pictures, image_format="jpg"))).convert("RGB")
    assert sheet.size == (1600, 180)
    assert abs(sheet.getpixel((160 + 80, 90 + 45))[0] - 11 * 20) <= 4  # type: ignore[index]


def test_pictures_at_shows_the_frame_presented_at_each_instant() -> None:
    frames = [(1000.0 + 40 * n, np.full((2, 2, 3), n, np.uint8)) for n in range(10)]
    chosen = pictures_at(iter(frames), [900, 1000, 1039, 1040, 1200, 5000])
    assert [int(p[0, 0, 0]) for p in chosen] == [0, 0, 0, 1, 5, 9]
