"""Rendered clips, decoded and checked: framing and size, the exact first and last frames,
a subject kept in the crop, captions burned in where their cues are, a watermark where
and as opaque as asked, and audio in sync."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import aiohttp
import av
import av.logging as _avlog
import numpy
import pytest
from PIL import Image

from livecut.analysis.focus import Activity, Follower, follow
from livecut.daemon import Daemon
from livecut.media.captions import CaptionLayout, CaptionPainter, caption_spans
from livecut.media.render import RenderSpec, Size, geometry
from livecut.media.subtitles import Cue
from livecut.media.synth import read_frame_number
from livecut.origin import LiveOrigin
from livecut.store.index import INDEX_FILE
from livecut.store.media import overlay_relpath
from livecut.store.overlays import OverlayRow
from livecut.store.store import Store
from tests.cea608 import PopOn, write_cea608_vod
from tests.engines import open_index
from tests.harness import (
    daemon_config,
    recorded_playlist,
    recorded_vod,
    running,
    session_ended,
    until,
)
from tests.test_clips import AAC_FRAME_S, PDT0, beep_offsets, clip_of, file_of, frame_covering

_avlog.set_level(_avlog.WARNING)
BAR_LUMA = 222  # the synthetic picture's moving bar is 235; nothing else in its body is
CAPTION_DARK = 40  # the caption box darkens the picture (48 and up) below this


# --- geometry, captions, the follower: no media ---------------------------------------


def test_the_output_keeps_the_source_short_side_and_fits_the_limits() -> None:
    hd = Size(width=1920, height=1080)
    vertical = geometry(hd, RenderSpec(aspect_ratio="9:16"))
    assert (vertical.crop, vertical.output) == (
        Size(width=608, height=1080),
        Size(width=1080, height=1920),
    )
    square = geometry(hd, RenderSpec(aspect_ratio="1:1", max_width=720))
    assert (square.crop, square.output) == (
        Size(width=1080, height=1080),
        Size(width=720, height=720),
    )
    padded = geometry(hd, RenderSpec(aspect_ratio="9:16", fit="pad"))
    assert padded.output == Size(width=1080, height=1920)
    assert padded.inner == Size(width=1080, height=608)
    same = geometry(Size(width=640, height=360), RenderSpec(max_height=180))
    assert same.output == Size(width=320, height=180)
    four_five = geometry(hd, RenderSpec(aspect_ratio="4:5"))
    assert four_five.output == Size(width=1080, height=1350)


def test_captions_wrap_to_the_width_and_follow_their_cues() -> None:
    painter = CaptionPainter(CaptionLayout.for_frame(360, 640))
    lines = painter.lines("a caption long enough that it cannot fit on one line of a phone")
    assert 2 <= len(lines) <= 3
    assert all(painter._font.getlength(line) <= 360 * 0.88 for line in lines)
    long = painter.lines(" ".join(["word"] * 80))
    assert len(long) == 3 and long[-1].endswith("…")
    cues = [
        Cue(start_ms=PDT0 + 1000, end_ms=PDT0 + 1500, text="<i>one</i>"),
        Cue(start_ms=PDT0 + 2000, end_ms=PDT0 + 2500, text="two &amp; three"),
    ]
    spans = caption_spans(cues, zero_ms=PDT0 + 500, end_s=10.0)
    assert [(s.start_s, s.text) for s in spans] == [
        (0.0, ""),
        (0.5, "<i>one</i>"),
        (1.0, ""),
        (1.5, "two &amp; three"),
        (2.0, ""),
    ]
    pixels = numpy.asarray(painter.draw("two &amp; three"))
    assert pixels.shape == (painter.layout.strip_height, 360, 4)
    assert (pixels[..., 3] > 0).any() and (pixels[..., 0] == 255).any()  # white text on a box


def test_the_follower_pans_within_a_dead_zone_and_jumps_when_the_subject_leaves() -> None:
    crop = 0.3
    still = follow([Activity(column=0.52, cut=False)] * 10, crop)
    assert still == [0.52] * 10  # inside the dead zone: no motion at all
    drifting = [Activity(column=0.2 + 0.004 * n, cut=False) for n in range(100)]
    centres = follow(drifting, crop)
    for activity, centre in zip(drifting, centres, strict=True):
        assert activity.column is not None and abs(activity.column - centre) <= crop / 2
    steps = [abs(b - a) for a, b in itertools.pairwise(centres)]
    assert max(steps) <= 0.03 + 1e-9  # a pan, not a jump
    follower = Follower(crop)
    follower.step(Activity(column=0.2, cut=False))
    assert follower.step(Activity(column=0.9, cut=False)) == pytest.approx(0.85)  # left: jump
    assert follower.step(Activity(column=0.3, cut=True)) == pytest.approx(0.3)  # a cut


# --- rendered clips, decoded ---------------------------------------------------------


def luma_frames(path: Path) -> list[tuple[float, numpy.ndarray]]:
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.time is not None
            frames.append((frame.time, frame.to_ndarray(format="gray")))
    return frames


def barcode(luma: numpy.ndarray) -> int:
    frame = av.VideoFrame.from_ndarray(numpy.ascontiguousarray(luma), format="gray")
    return read_frame_number(frame)


async def test_a_square_render_keeps_the_first_and_last_frames_and_the_audio_in_sync(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", width=640, height=360) as daemon:
        start, end = PDT0 + 1290, PDT0 + 7610  # mid-GOP, across three segment joins
        render = {"aspect_ratio": "1:1", "focus": 0, "preset": "ultrafast"}
        clip = await clip_of(daemon, {"start_ms": start, "end_ms": end, "render": render})
        assert clip.result is not None
        mp4 = file_of(daemon, clip)
        frames = luma_frames(mp4)
        first, last = frame_covering(start), frame_covering(end - 1)
        assert [barcode(f) for _, f in frames] == list(range(first, last + 1))
        assert frames[0][1].shape == (360, 360)  # 1:1 at the source's short side
        pairs = beep_offsets(mp4)
        assert len(pairs) >= 5
        assert all(abs(b - v) <= AAC_FRAME_S for v, b in pairs), pairs
        body = clip.result["render"]
        assert body["width"] == 360 and body["height"] == 360  # type: ignore[index]
        assert body["frames"] == last - first + 1  # type: ignore[index]
        video = [t for t in clip.result["tracks"] if t["kind"] == "video"]  # type: ignore[union-attr]
        assert (video[0]["codec"], video[0]["width"], video[0]["height"]) == ("h264", 360, 360)
        files = clip.result["files"]
        assert files["mp4"]["size_bytes"] == mp4.stat().st_size  # type: ignore[index]
        assert not list(daemon.store.clip_dir(clip.id).glob("*.copy.mp4"))


async def test_a_vertical_render_follows_the_moving_bar_in_every_frame(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", width=640, height=360) as daemon:
        body = {"aspect_ratio": "9:16", "focus": "auto", "preset": "ultrafast", "max_height": 640}
        clip = await clip_of(
            daemon, {"start_ms": PDT0 + 500, "end_ms": PDT0 + 9500, "render": body}
        )
        frames = luma_frames(file_of(daemon, clip))
        assert frames[0][1].shape == (640, 360)
        row = 400  # through the body of the picture, below the barcode
        for t, luma in frames:
            assert (luma[row] > BAR_LUMA).sum() >= 8, f"the bar is out of the crop at {t:.2f} s"


async def upload_overlay(daemon: Daemon, image: Image.Image) -> str:
    data = io.BytesIO()
    image.save(data, format="PNG")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{daemon.base_url}/v1/overlays?name=logo",
            data=data.getvalue(),
            headers={"Content-Type": "image/png"},
        ) as response,
    ):
        body = await response.json()
        assert response.status == 201, body
        return str(body["id"])


# A render that watermark_render() asks for, on a 16:9 source: 360x640.
RED_LOGO = Image.new("RGBA", (100, 50), (255, 0, 0, 255))


def watermark_render(overlay_id: str) -> dict[str, object]:
    """A vertical render with the red logo top left, a quarter of the width, half opaque."""
    return {
        "aspect_ratio": "9:16",
        "preset": "ultrafast",
        "overlay": {"id": overlay_id, "position": "top-left", "width": 0.25, "opacity": 0.5},
    }


def check_watermark(picture: numpy.ndarray) -> None:
    """The watermark of watermark_render() on a 360-wide RGB frame: top-left, 90 px wide
    (a quarter of 360), 11 px in (3%), half opaque red over the picture."""
    red = picture[11 + 5 : 11 + 40, 11 + 5 : 11 + 85].astype(int)
    assert (red[..., 0] - red[..., 1]).mean() > 90
    assert (red[..., 0] - red[..., 1]).mean() < 180  # not fully opaque
    beside = picture[11 + 5 : 11 + 40, 150:200].astype(int)
    assert abs((beside[..., 0] - beside[..., 1]).mean()) < 40


async def test_captions_burn_in_where_their_cues_are_and_a_watermark_sits_as_asked(
    data_dir: Path,
) -> None:
    origin = LiveOrigin(
        segment_ms=2000,
        prefill=4,
        end_after=4,
        variants=[(640, 360)],
        subtitles=["en"],
        cue_ms=500,
        clock=lambda: time.time(),
    )
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
            overlay = await upload_overlay(daemon, RED_LOGO)
            start = origin.segment_pdt_ms(1) + 250
            render = {**watermark_render(overlay), "captions": "burn"}
            clip = await clip_of(
                daemon, {"start_ms": start, "end_ms": start + 4000, "render": render}
            )
            assert clip.result is not None
            assert clip.result["render"]["overlay"]["id"] == overlay  # type: ignore[index]
            captions = clip.result["render"]["captions"]  # type: ignore[index]
            assert captions["mode"] == "burn" and captions["source"] == "webvtt"
            mp4 = file_of(daemon, clip)
            layout = CaptionLayout.for_frame(360, 640)
            strip = slice(layout.strip_y, layout.strip_y + layout.strip_height)
            shown_at = clip.result["start_ms"]
            with av.open(str(mp4)) as container:
                rgb = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
            for t, picture in rgb:
                assert t is not None
                wall_ms = shown_at + t * 1000  # type: ignore[operator]
                in_cue = (wall_ms - origin.epoch_ms) % 1000 < 500
                dark = (picture[strip].mean(axis=2) < CAPTION_DARK).mean()
                if in_cue:
                    assert dark > 0.03, f"no caption at {t:.2f} s"
                else:
                    assert dark < 0.001, f"a caption at {t:.2f} s, outside its cue"
                check_watermark(picture)
    finally:
        await origin.stop()


async def test_a_render_request_names_what_is_wrong(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", segments=2) as daemon:
        bad = {
            "aspect_ratio": "3:2",
            "focus": 2,
            "crf": 20,
            "bitrate": 2_000_000,
            "overlay": {"id": "ovl_0000000000000000"},
            "spin": True,
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{daemon.base_url}/v1/clips",
                json={"stream": "cam", "start_ms": PDT0, "end_ms": PDT0 + 1000, "render": bad},
            ) as response,
        ):
            body = await response.json()
        assert response.status == 422
        text = " ".join(body["errors"])
        for expected in (
            "render.aspect_ratio must be one of 9:16, 4:5, 1:1, 16:9, source",
            "render.focus must be",
            "give crf or bitrate, not both",
            "render.overlay.id must name an uploaded overlay",
            "unknown render field(s) spin",
        ):
            assert expected in text, text


async def test_a_padded_render_in_two_sizes_from_one_decode_reports_its_progress(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", width=640, height=360) as daemon:
        seen: list[float] = []
        jobs = daemon.jobs
        render = {
            "aspect_ratio": "9:16",
            "fit": "pad",
            "background": "blur",
            "preset": "ultrafast",
            "renditions": [{"max_height": 320}],
        }
        start, end = PDT0 + 2040, PDT0 + 6000
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{daemon.base_url}/v1/clips",
                json={"stream": "cam", "start_ms": start, "end_ms": end, "render": render},
            ) as response,
        ):
            created = await response.json()
            assert response.status == 202, created
        clip_id = str(created["id"])
        for _ in range(3000):  # 60 s at most
            done = await jobs.wait_finished(clip_id, timeout_s=0.02)
            if done is not None and done.state in ("ready", "failed"):
                break
            progress = jobs.progress(clip_id)
            if progress is not None:
                seen.append(progress)
        assert done is not None and done.state == "ready" and done.result is not None, done
        assert seen == sorted(seen) and seen and seen[-1] <= 1.0  # it only moves forward
        main = file_of(daemon, done)
        first, last = frame_covering(start), frame_covering(end - 1)
        for path, size in ((main, (640, 360)), (main.with_name("clip-180x320.mp4"), (320, 180))):
            frames = luma_frames(path)
            assert len(frames) == last - first + 1
            assert frames[0][1].shape == size
            # The picture sits in the middle; above and below it, the blurred picture,
            # not a flat colour: its rows vary along their width.
            top_band = frames[0][1][: size[0] // 8]
            assert top_band.std(axis=1).mean() > 2
        files = done.result["files"]
        assert [(r["width"], r["height"]) for r in files["renditions"]] == [(180, 320)]  # type: ignore[index]


async def test_cea608_captions_in_the_video_are_read_and_burned_in_when_there_is_no_webvtt(
    data_dir: Path, tmp_path: Path
) -> None:
    captions = [
        PopOn(text="HELLO WORLD", show_frame=30, clear_frame=55),
        PopOn(text="SECOND LINE", show_frame=90, clear_frame=115),
    ]
    playlist = write_cea608_vod(tmp_path / "vod", captions, start_pdt_ms=PDT0)
    async with recorded_playlist(data_dir, playlist) as daemon:
        start, end = PDT0 + 400, PDT0 + 5600
        render = {"aspect_ratio": "16:9", "preset": "ultrafast", "captions": "burn"}
        clip = await clip_of(daemon, {"start_ms": start, "end_ms": end, "render": render})
        assert clip.result is not None
        body = clip.result["render"]["captions"]  # type: ignore[index]
        assert (body["source"], body["cues"]) == ("cea608", 2)
        vtt = file_of(daemon, clip, "clip.vtt").read_text()
        assert "HELLO WORLD" in vtt and "SECOND LINE" in vtt
        layout = CaptionLayout.for_frame(640, 360)
        strip = slice(layout.strip_y, layout.strip_y + layout.strip_height)
        middle = slice(160, 480)  # the captions are centred; the picture's left is dark
        shown = [(c.show_frame, c.clear_frame) for c in captions]
        for _, luma in luma_frames(file_of(daemon, clip)):
            number = barcode(luma)
            dark = (luma[strip, middle] < CAPTION_DARK).mean()
            if any(a <= number < b for a, b in shown):
                assert dark > 0.005, f"no caption on frame {number}"
            else:
                assert dark < 0.001, f"a caption on frame {number}, outside its cue"


async def test_an_overlay_is_named_by_the_config_or_by_its_upload_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data, index=await open_index(data / INDEX_FILE))
    try:
        logo = tmp_path / "logo.png"
        store.configured_overlays = {"logo": logo}
        async with store.overlay_image("logo") as image:
            assert image is None, "its file is gone"
        logo.write_bytes(b"logo")
        async with store.overlay_image("logo") as image:
            assert image == logo
        async with store.overlay_image("ovl_0123456789abcdef") as image:
            assert image is None
        await store.index.overlays.add(
            OverlayRow(
                id="ovl_0123456789abcdef",
                name=None,
                width=1,
                height=1,
                size_bytes=1,
                created_ms=0,
            )
        )
        async with store.overlay_image("ovl_0123456789abcdef") as image:
            assert image is None, "a row without its image is no image"
        await store.write(overlay_relpath("ovl_0123456789abcdef"), b"png")
        async with store.overlay_image("ovl_0123456789abcdef") as image:
            # Where earlier versions kept it: an install's uploads are found as they are.
            assert image == data / "overlays" / "ovl_0123456789abcdef.png"
            assert image.read_bytes() == b"png"
    finally:
        await store.close()


async def test_an_uploaded_overlay_is_kept_in_the_data_directory_served_and_deleted(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", segments=2) as daemon:
        overlay = await upload_overlay(daemon, RED_LOGO)
        # Where earlier versions kept uploads, so an install's are found as they are.
        stored = data_dir / "overlays" / f"{overlay}.png"
        with Image.open(stored) as image:
            assert (image.mode, image.size) == ("RGBA", (100, 50))
        url = f"{daemon.base_url}/v1/overlays/{overlay}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/image.png") as response:
                assert response.status == 200 and response.content_type == "image/png"
                assert await response.read() == stored.read_bytes()
            async with http.delete(url) as response:
                assert response.status == 204
            assert not stored.exists()
            async with http.get(f"{url}/image.png") as response:
                assert response.status == 404


async def test_a_render_can_halve_the_frame_rate_at_a_bitrate(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", width=640, height=360) as daemon:
        start, end = PDT0 + 1000, PDT0 + 5000  # frames 25-124 at 25 fps
        render = {"aspect_ratio": "1:1", "focus": 0, "fps": 12.5, "bitrate": 400_000}
        clip = await clip_of(daemon, {"start_ms": start, "end_ms": end, "render": render})
        assert clip.result is not None
        frames = luma_frames(file_of(daemon, clip))
        numbers = [barcode(f) for _, f in frames]
        assert numbers[0] == frame_covering(start)  # the first frame is still the asked one
        assert len(numbers) == 50 and all(b - a == 2 for a, b in itertools.pairwise(numbers))
        assert clip.result["render"]["fps"] == 12.5  # type: ignore[index]
        with av.open(str(file_of(daemon, clip))) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == 12.5
            bits = (stream.bit_rate or 0) or file_of(daemon, clip).stat().st_size * 8 / 4
        assert bits < 400_000 * 1.5
