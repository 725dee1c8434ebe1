"""Clips checked frame by frame: accuracy, joins, discontinuities, windows, HLS, exports."""

from __future__ import annotations

import io
import time
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web

from livecut.clips.jobs import ClipRequest, Window, remux_run
from livecut.clips.planner import plan_clip
from livecut.daemon import Daemon
from livecut.hls.playlist import MediaPlaylist, parse_playlist
from livecut.media.probe import probe_segment
from livecut.media.remux import remux_mp4
from livecut.media.synth import write_hls_fixture
from livecut.origin import LiveOrigin
from livecut.store.records import ClipRow, SegmentRow
from tests.browser import add_player_routes, playback_advances, require_browser, serve
from tests.harness import daemon_config, decode_clip, recorded_vod, running, session_ended, until
from tests.test_ingest import segments_reach

PDT0 = 1_767_225_600_000  # the fixtures' first PDT
FRAME_MS = 40
AAC_FRAME_S = 1024 / 48000


def frame_covering(wall_ms: int, pdt0: int = PDT0) -> int:
    return (wall_ms - pdt0) // FRAME_MS


async def clip_of(daemon: Daemon, body: dict[str, object], key: str | None = None) -> ClipRow:
    """The clip of `body` (stream cam unless it says), once ready; with an API key if given."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{daemon.base_url}/v1/clips", json={"stream": "cam", **body}) as response,
    ):
        created = await response.json()
        assert response.status == 202, created
    clip = await daemon.jobs.wait_finished(created["id"], timeout_s=60)
    assert clip is not None and clip.state == "ready", clip
    assert clip.result is not None
    return clip


def file_of(daemon: Daemon, clip: ClipRow, name: str = "clip.mp4") -> Path:
    return daemon.store.clip_dir(clip.id) / name


def check_frames(path: Path, first: int, last: int, *, audio: bool = True) -> None:
    """Exactly frames first..last, each at its own wall-clock offset; audio covers them."""
    decoded = decode_clip(path)
    numbers = [n for _, n in decoded.frames]
    assert numbers == list(range(first, last + 1)), (numbers[:3], numbers[-3:])
    for t, n in decoded.frames:
        assert abs(t - (n - first) * FRAME_MS / 1000) < 0.0015, (t, n)
    if audio:
        assert decoded.audio_start_s is not None and decoded.audio_end_s is not None
        assert abs(decoded.audio_start_s) <= AAC_FRAME_S
        assert abs(decoded.audio_end_s - decoded.video_end_s) <= AAC_FRAME_S + 0.001


def beep_offsets(path: Path) -> list[tuple[float, float]]:
    """(video time of each whole stream second, time of the beep that marks it)."""
    with av.open(str(path)) as container:
        audio_times = []
        for frame in container.decode(audio=0):
            assert frame.pts is not None and frame.time_base is not None
            peak = max(abs(v) for v in memoryview(bytes(frame.planes[0])).cast("f")[:256])
            audio_times.append((float(frame.pts * frame.time_base), peak > 0.1))
    decoded = decode_clip(path)
    pairs = []
    for t, n in decoded.frames:
        if n % 25 == 0:
            onset = next((a for a, loud in audio_times if loud and a >= t - 0.03), None)
            if onset is not None and onset < t + 0.1:
                pairs.append((t, onset))
    return pairs


@pytest.mark.parametrize("container", ["ts", "fmp4"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (2530, 3970),  # inside one segment, mid-GOP, both ends inside frames
        (1290, 7610),  # across three joins, start in a B-frame run
        (3000, 5000),  # on a keyframe and a segment boundary, end on a frame boundary
        (4010, 4530),  # a short clip: 13 frames out of a GOP that began at 4000
    ],
)
async def test_frame_accuracy(
    data_dir: Path, tmp_path: Path, container: str, start: int, end: int
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", container=container) as daemon:
        clip = await clip_of(daemon, {"start_ms": PDT0 + start, "end_ms": PDT0 + end})
        first, last = frame_covering(PDT0 + start), frame_covering(PDT0 + end - 1)
        check_frames(file_of(daemon, clip), first, last)
        assert clip.result is not None
        assert clip.result["start_ms"] == PDT0 + first * FRAME_MS
        assert clip.result["end_ms"] == PDT0 + (last + 1) * FRAME_MS
        video = [t for t in clip.result["tracks"] if t["kind"] == "video"]  # type: ignore[union-attr]
        assert video[0]["frames"] == last - first + 1
        assert (video[0]["width"], video[0]["height"], video[0]["fps"]) == (320, 180, 25.0)
        mp4 = clip.result["files"]["mp4"]  # type: ignore[index]
        assert mp4["size_bytes"] == file_of(daemon, clip).stat().st_size
        assert len(mp4["sha256"]) == 64


async def test_audio_stays_in_sync(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        clip = await clip_of(daemon, {"start_ms": PDT0 + 1730, "end_ms": PDT0 + 8890})
        pairs = beep_offsets(file_of(daemon, clip))
        assert len(pairs) >= 6
        for video_t, beep_t in pairs:
            assert abs(beep_t - video_t) <= AAC_FRAME_S, (video_t, beep_t)


async def test_keyframe_accuracy_starts_on_the_keyframe(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        clip = await clip_of(
            daemon, {"start_ms": PDT0 + 2530, "end_ms": PDT0 + 3970, "accuracy": "keyframe"}
        )
        check_frames(file_of(daemon, clip), 50, frame_covering(PDT0 + 3969))
        assert clip.result is not None and clip.result["start_ms"] == PDT0 + 2000


async def test_windows_are_cut_in_one_job(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        clip = await clip_of(
            daemon,
            {
                "windows": [
                    {"start_ms": PDT0 + 500, "end_ms": PDT0 + 1500, "label": "a"},
                    {"start_ms": PDT0 + 6120, "end_ms": PDT0 + 9000, "label": "b"},
                ]
            },
        )
        assert clip.result is not None
        windows = clip.result["windows"]
        assert [w["label"] for w in windows] == ["a", "b"]  # type: ignore[union-attr]
        check_frames(file_of(daemon, clip, "w0.mp4"), 12, 37)
        check_frames(file_of(daemon, clip, "w1.mp4"), 153, 224)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{daemon.base_url}/v1/clips/{clip.id}") as response:
                links = (await response.json())["links"]
            assert set(links) == {"self", "w0.mp4", "w1.mp4"}
            async with http.get(links["w1.mp4"]) as response:
                assert response.status == 200
                size = len(await response.read())
            assert size == file_of(daemon, clip, "w1.mp4").stat().st_size


async def test_hls_clip_is_instant_and_pins_its_segments(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", container="fmp4") as daemon:
        clip = await clip_of(
            daemon, {"start_ms": PDT0 + 2500, "end_ms": PDT0 + 5500, "formats": ["hls"]}
        )
        assert clip.result is not None
        # Segment-accurate: whole stored segments 1..2.
        assert (clip.result["start_ms"], clip.result["end_ms"]) == (PDT0 + 2000, PDT0 + 6000)
        base = f"{daemon.base_url}/v1/clips/{clip.id}/"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "index.m3u8") as response:
                assert response.status == 200
                text = await response.text()
            playlist = parse_playlist(text, base + "index.m3u8")
            assert isinstance(playlist, MediaPlaylist) and playlist.ended
            assert [s.pdt_ms for s in playlist.segments] == [PDT0 + 2000, PDT0 + 4000]
            init = playlist.segments[0].init
            assert init is not None
            async with http.get(init.uri) as response:
                init_bytes = await response.read()
            for segment in playlist.segments:
                async with http.get(segment.uri) as response:
                    assert response.status == 200
                    media = await response.read()
                with av.open(io.BytesIO(init_bytes + media)) as container:
                    assert container.streams.video[0].codec_context.name == "h264"
        # Retention's candidates (everything older than the far future) skip what it serves.
        old = await daemon.store.index.segments_before("cam", 2**62, limit=100)
        assert {s.seq for s in old} == {0, 3, 4}, "segments 1 and 2 are pinned"


async def test_session_export_is_one_continuous_file(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", segments=4) as daemon:
        session = (await daemon.store.index.sessions("cam"))[0]
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{daemon.base_url}/v1/sessions/{session.id}/export") as response,
        ):
            created = await response.json()
            assert response.status == 202, created
        clip = await daemon.jobs.wait_finished(created["id"], timeout_s=60)
        assert clip is not None and clip.state == "ready" and clip.result is not None
        check_frames(file_of(daemon, clip), 0, 199)
        assert clip.result["duration_ms"] == 8000


async def test_timeline_lists_ranges_and_gaps(data_dir: Path) -> None:
    now = [time.time()]
    origin = LiveOrigin(window=3, prefill=3, clock=lambda: now[0])
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", segments_reach(daemon, 3, exactly=True), timeout_s=20)
            now[0] += 20.0
            await until(daemon, "cam", segments_reach(daemon, 6), timeout_s=20)
            query = f"from_ms={origin.epoch_ms - 60_000}&to_ms={origin.segment_pdt_ms(20)}"
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{daemon.base_url}/v1/streams/cam/timeline?{query}") as response,
            ):
                timeline = await response.json()
            assert [(r["start_ms"], r["end_ms"]) for r in timeline["ranges"]] == [
                (origin.segment_pdt_ms(0), origin.segment_pdt_ms(3)),
                (origin.segment_pdt_ms(10), origin.segment_pdt_ms(13)),
            ]
            assert [(g["start_ms"], g["end_ms"], g["reason"]) for g in timeline["gaps"]] == [
                (origin.segment_pdt_ms(3), origin.segment_pdt_ms(10), "expired")
            ]
            # A clip inside the hole is refused, naming the recorded stretches either side.
            body = {
                "stream": "cam",
                "start_ms": origin.segment_pdt_ms(5),
                "end_ms": origin.segment_pdt_ms(7),
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{daemon.base_url}/v1/clips", json=body) as response,
            ):
                assert response.status == 422
                ranges = (await response.json())["recorded_ranges"]
            assert sorted((r["start_ms"], r["end_ms"]) for r in ranges) == [
                (origin.segment_pdt_ms(0), origin.segment_pdt_ms(3)),
                (origin.segment_pdt_ms(10), origin.segment_pdt_ms(13)),
            ]
    finally:
        await origin.stop()


async def test_clip_across_an_encoder_restart(data_dir: Path, tmp_path: Path) -> None:
    now = [time.time()]
    origin = LiveOrigin(window=6, prefill=3, clock=lambda: now[0], end_after=6)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", segments_reach(daemon, 3, exactly=True), timeout_s=20)
            origin.restart_encoder()  # PTS restart at segment 3, DISCONTINUITY tag
            now[0] += 6.0
            origin.tick()
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            epochs = [s.epoch for s in await daemon.store.index.stream_segments("cam", 0, 2**62)]
            assert epochs[:3] == [epochs[0]] * 3 and epochs[3] == epochs[0] + 1
            start, end = origin.segment_pdt_ms(1) + 1250, origin.segment_pdt_ms(4) + 770
            clip = await clip_of(daemon, {"start_ms": start, "end_ms": end})
            check_frames(
                file_of(daemon, clip),
                frame_covering(start, origin.epoch_ms),
                frame_covering(end - 1, origin.epoch_ms),
            )
    finally:
        await origin.stop()


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_hls_clip_plays_in_a_real_player(
    data_dir: Path, tmp_path: Path, container: str
) -> None:
    """hls.js in headless Chromium plays the instant clip straight from the daemon."""
    require_browser()
    async with recorded_vod(data_dir, tmp_path / "vod", container=container) as daemon:
        clip = await clip_of(
            daemon, {"start_ms": PDT0 + 1000, "end_ms": PDT0 + 7000, "formats": ["hls"]}
        )
        player = web.Application()
        add_player_routes(player)
        async with serve(player) as page_origin:
            result = await playback_advances(
                page_origin, f"{daemon.base_url}/v1/clips/{clip.id}/index.m3u8", seconds=3.0
            )
    assert result.advanced, result.describe()
    assert not result.fatal_errors, result.describe()
    assert (result.video_width, result.video_height) == (320, 180)


async def test_an_mp4_clip_plays_in_a_real_browser(data_dir: Path, tmp_path: Path) -> None:
    """Chromium plays the MP4 itself (no hls.js), from the index at its start."""
    require_browser()
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        clip = await clip_of(daemon, {"start_ms": PDT0 + 1530, "end_ms": PDT0 + 7470})
        player = web.Application()
        add_player_routes(player)
        async with serve(player) as page_origin:
            result = await playback_advances(
                page_origin, f"{daemon.base_url}/v1/clips/{clip.id}/clip.mp4", seconds=3.0
            )
    assert result.advanced, result.describe()
    assert result.media_error is None, result.describe()
    assert (result.video_width, result.video_height) == (320, 180)


async def test_large_frames_copy_with_full_stream_parameters(tmp_path: Path) -> None:
    """720p at 4 Mbit/s: keyframes far larger than the small probe ingest uses."""
    playlist = write_hls_fixture(
        tmp_path / "hd", segments=2, width=1280, height=720, video_bitrate=4_000_000
    )
    assert playlist.with_name("seg0.ts").stat().st_size > 500_000
    rows = []
    for n, path in enumerate(sorted(playlist.parent.glob("seg*.ts"))):
        probe = probe_segment(path.read_bytes())
        start = PDT0 + n * 2000
        rows.append(
            SegmentRow(
                id=n,
                rendition_id=1,
                seq=n,
                epoch=0,
                start_ms=start,
                end_ms=start + round(probe.duration_s * 1000),
                path=str(path),
                size=1,
                init_path=None,
                ref_pts_s=probe.ref_pts_s,
                keyframes_ms=tuple(start + round(k * 1000) for k in probe.keyframes_s),
                params=probe.params,
            )
        )
    plan = plan_clip(rows, PDT0 + 530, PDT0 + 3170)
    output = tmp_path / "hd.mp4"
    presented = remux_mp4(
        [remux_run(run, Path) for run in plan.runs],
        first_s=plan.runs[0].media_s(PDT0 + 530),
        output=output,
    )
    assert (presented.tracks[0].width, presented.tracks[0].height) == (1280, 720)
    check_frames(output, frame_covering(PDT0 + 530), frame_covering(PDT0 + 3169))


async def test_audio_only_stream(data_dir: Path, tmp_path: Path) -> None:
    """No video at all: the clip is cut at the requested instants, within one AAC frame."""
    playlist = write_hls_fixture(tmp_path / "radio", segments=3, video=False)
    app = web.Application()
    app.router.add_static("/radio", playlist.parent)
    async with serve(app) as base:
        config = daemon_config(data_dir, f"{base}/radio/{playlist.name}")
        async with running(config) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            clip = await clip_of(daemon, {"start_ms": PDT0 + 1250, "end_ms": PDT0 + 4750})
    assert clip.result is not None
    assert [t["kind"] for t in clip.result["tracks"]] == ["audio"]  # type: ignore[union-attr]
    with av.open(str(file_of(daemon, clip))) as container:
        assert not container.streams.video
        frames = list(container.decode(audio=0))
    assert frames[0].pts is not None and frames[0].time_base is not None
    start = float(frames[0].pts * frames[0].time_base)
    last = frames[-1]
    assert last.pts is not None and last.time_base is not None
    end = float(last.pts * last.time_base) + last.samples / last.sample_rate
    assert abs(start) <= AAC_FRAME_S
    # The fixture's audio segments hold 94 AAC frames (2.0053 s) under PDTs 2 s apart:
    # each instant is placed by its own segment's PDT, and the media between them plays
    # in full, so the clip lasts from 1.25 s into segment 0 to 0.75 s into segment 2.
    segment_s = 94 * 1024 / 48000
    assert abs(end - (2 * segment_s + 0.75 - 1.25)) <= AAC_FRAME_S + 0.001


@pytest.mark.parametrize("start_s", [1, -3600], ids=["cut", "nothing-recorded"])
async def test_a_node_that_lost_a_clip_mid_cut_leaves_it_to_the_new_holder(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_s: int
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        jobs = daemon.jobs
        monkeypatch.setattr(jobs, "lease_ms", 60_000)  # as on many nodes: each clip held
        cut = jobs._cut

        async def stalled_then_cut(clip: ClipRow) -> dict[str, object]:
            # While this node stalls, another node claims the clip (its lease ran out).
            await daemon.store.index._sql.execute(
                "UPDATE clips SET node_id = 'node-b' WHERE id = ?", (clip.id,)
            )
            return await cut(clip)

        monkeypatch.setattr(jobs, "_cut", stalled_then_cut)
        start_ms = PDT0 + start_s * 1000
        clip = await jobs.submit(
            ClipRequest(
                stream_id="cam",
                session_id=None,
                windows=(Window(start_ms=start_ms, end_ms=start_ms + 2000),),
            )
        )
        await until(daemon, "cam", lambda: jobs.active_count() == 0, timeout_s=30)
        # Neither ready nor failed by this node: the clip is node-b's to finish, and this
        # node's copy of the outputs is gone.
        row = await daemon.store.index.clip(clip.id)
        assert row is not None and row.state == "processing" and row.result is None
        assert not daemon.store.clip_dir(clip.id).exists()
        assert await daemon.store.index.renew_clips([clip.id], PDT0) == [clip.id]
