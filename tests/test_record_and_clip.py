"""End to end: record a live origin on 127.0.0.1, cut clips, decode them frame by frame."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest

from livecut.daemon import Daemon
from livecut.ingest.sessions import RenditionTarget, SessionKeeper
from livecut.origin import LiveOrigin
from livecut.store.index import INDEX_FILE
from livecut.store.store import Store
from tests.engines import open_index
from tests.harness import (
    daemon_config,
    decode_clip,
    recorded_vod,
    running,
    until,
)

FRAME_MS = 40  # the synthetic stream is 25 fps
GOP_MS = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def keyframe_at_or_before(origin: LiveOrigin, wall_ms: int) -> int:
    return origin.epoch_ms + (wall_ms - origin.epoch_ms) // GOP_MS * GOP_MS


def wall_of(origin: LiveOrigin, frame: int) -> int:
    return origin.epoch_ms + frame * FRAME_MS


async def edge(daemon: Daemon, stream: str = "cam") -> int:
    return (await daemon.store.index.stream_live_edges()).get(stream, 0)


async def post_clip(base: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/clips", json=body) as response,
    ):
        return response.status, await response.json()


async def fetch_clip_file(base: str, clip_id: str, target: Path) -> Path:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/v1/clips/{clip_id}/clip.mp4") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp4"
        target.write_bytes(await response.read())
    return target


def check_clip(
    origin: LiveOrigin, path: Path, *, expected_start_ms: int, end_ms: int
) -> list[tuple[float, int]]:
    clip = decode_clip(path)
    first_time, first_frame = clip.frames[0]
    assert abs(first_time) < 0.001, "the clip's first frame must be at t=0"
    assert wall_of(origin, first_frame) == expected_start_ms
    # Frames are consecutive: no frame lost or repeated across segment joins.
    numbers = [n for _, n in clip.frames]
    assert numbers == list(range(first_frame, first_frame + len(numbers)))
    # Every frame sits at its own wall time relative to the first.
    for t, n in clip.frames:
        assert abs(t * 1000 - (wall_of(origin, n) - expected_start_ms)) < 1.5
    # The last frame shown is the one covering end_ms - 1.
    last_wall_end = wall_of(origin, numbers[-1]) + FRAME_MS
    assert end_ms <= last_wall_end < end_ms + FRAME_MS
    # Audio is there and covers the video, within one AAC frame (21.3 ms) at each end.
    assert clip.audio_start_s is not None and clip.audio_end_s is not None
    assert abs(clip.audio_start_s) <= 0.0214
    assert clip.audio_end_s >= clip.video_end_s - 0.0214 - FRAME_MS / 1000
    return clip.frames


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_live_clip_waits_for_the_edge_then_starts_on_the_keyframe(
    data_dir: Path, tmp_path: Path, container: str
) -> None:
    origin = LiveOrigin(container=container)  # type: ignore[arg-type]
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            # The prefilled window (12 s) is recorded first.

            async def caught_up() -> bool:
                return await edge(daemon) >= now_ms() - 2500

            await until(daemon, "cam", caught_up, timeout_s=20)
            start = now_ms() - 6000 + 130  # not on a keyframe
            end = start + 10_000  # 4 s past now: past the live edge
            status, body = await post_clip(
                daemon.base_url,
                {
                    "stream": "cam",
                    "start_ms": start,
                    "end_ms": end,
                    "name": "goal",
                    "accuracy": "keyframe",
                },
            )
            assert status == 202, body
            assert body["state"] == "waiting"
            clip_id = str(body["id"])
            clip = await daemon.jobs.wait_finished(clip_id, timeout_s=30)
            assert clip is not None and clip.state == "ready", clip
            assert await edge(daemon) >= end, "ready only after the live edge passed the end"
            expected = keyframe_at_or_before(origin, start)
            assert clip.result is not None
            assert clip.result["start_ms"] == expected
            target = await fetch_clip_file(daemon.base_url, clip_id, tmp_path / "live.mp4")
            check_clip(origin, target, expected_start_ms=expected, end_ms=end)
    finally:
        await origin.stop()


async def test_clip_after_the_session_ended(data_dir: Path, tmp_path: Path) -> None:
    origin = LiveOrigin(prefill=4, end_after=6)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:

            async def ended() -> bool:
                sessions = await daemon.store.index.sessions("cam")
                return bool(sessions) and sessions[0].state == "ended"

            await until(daemon, "cam", ended, timeout_s=30)
            session = (await daemon.store.index.sessions("cam"))[0]
            assert session.end_reason == "endlist"
            assert session.started_ms == origin.segment_pdt_ms(0)
            assert session.live_edge_ms == origin.segment_pdt_ms(6)
            start = origin.segment_pdt_ms(1) + 1530  # 10 ms into a frame, mid-GOP
            end = origin.segment_pdt_ms(4) + 300
            status, body = await post_clip(
                daemon.base_url, {"session": session.id, "start_ms": start, "end_ms": end}
            )
            # Queued, or already being cut (a PostgreSQL round trip lets a worker start).
            assert status == 202 and body["state"] in ("queued", "processing"), body
            clip = await daemon.jobs.wait_finished(str(body["id"]), timeout_s=30)
            assert clip is not None and clip.state == "ready", clip
            assert clip.result is not None and clip.result["holes"] == []
            target = await fetch_clip_file(daemon.base_url, clip.id, tmp_path / "ended.mp4")
            # Frame accuracy (the default): the first frame is the one covering start.
            check_clip(origin, target, expected_start_ms=start - 10, end_ms=end)
            assert clip.result["start_ms"] == start - 10

            # A range that runs past the end is cut where the recording ends, and says so.
            status, body = await post_clip(
                daemon.base_url,
                {"stream": "cam", "start_ms": end, "end_ms": session.live_edge_ms + 5000},
            )
            assert status == 202, body
            clip = await daemon.jobs.wait_finished(str(body["id"]), timeout_s=30)
            assert clip is not None and clip.state == "ready" and clip.result is not None
            assert clip.result["end_ms"] == session.live_edge_ms
            assert "the recording ends before the requested end" in clip.result["notes"]  # type: ignore[operator]
    finally:
        await origin.stop()


async def test_http_range_requests(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:

            async def recorded() -> bool:
                return await edge(daemon) >= origin.segment_pdt_ms(3)

            await until(daemon, "cam", recorded, timeout_s=20)
            _, body = await post_clip(
                daemon.base_url,
                {"stream": "cam", "start_ms": origin.epoch_ms, "end_ms": origin.epoch_ms + 3000},
            )
            clip = await daemon.jobs.wait_finished(str(body["id"]), timeout_s=30)
            assert clip is not None and clip.state == "ready"
            async with aiohttp.ClientSession() as http:
                base = f"{daemon.base_url}/v1/clips/{clip.id}/clip.mp4"
                async with http.get(base) as whole:
                    data = await whole.read()
                    assert whole.headers["Accept-Ranges"] == "bytes"
                async with http.get(base, headers={"Range": "bytes=100-199"}) as part:
                    assert part.status == 206
                    assert await part.read() == data[100:200]
                    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
                async with http.get(base, headers={"Range": f"bytes={len(data) + 10}-"}) as bad:
                    assert bad.status == 416
            # The index follows the media unless faststart is asked for, and the SHA-256
            # taken while the file was written is the delivered file's.
            assert data.rindex(b"moov") > data.index(b"mdat")
            assert clip.result is not None
            assert clip.result["files"]["mp4"]["sha256"] == hashlib.sha256(data).hexdigest()  # type: ignore[index]
    finally:
        await origin.stop()


async def test_a_static_video_only_vod_playlist(data_dir: Path, tmp_path: Path) -> None:
    """A finished VOD written by the fixtures script, served as plain files."""
    pdt0 = 1_767_225_600_000
    async with recorded_vod(data_dir, tmp_path / "vod", segments=3, audio=False) as daemon:
        status, body = await post_clip(
            daemon.base_url, {"stream": "cam", "start_ms": pdt0 + 2100, "end_ms": pdt0 + 5000}
        )
        assert status == 202, body
        clip = await daemon.jobs.wait_finished(str(body["id"]), timeout_s=30)
        assert clip is not None and clip.state == "ready" and clip.result is not None
        assert [t["kind"] for t in clip.result["tracks"]] == ["video"]  # type: ignore[union-attr]
        target = await fetch_clip_file(daemon.base_url, clip.id, tmp_path / "vod.mp4")
        decoded = decode_clip(target)
        assert decoded.audio_start_s is None
        assert decoded.frames[0][1] == 52  # the frame covering 2.100 s (2.080-2.120)
        assert decoded.frames[-1][1] == 124  # the frame covering 4.999 s


async def test_renditions_committing_at_once_open_one_session(tmp_path: Path) -> None:
    """The first segments of video and subtitles commit together: one session holds both.
    On PostgreSQL the index suspends while it writes the session row, and the second
    rendition must wait for that row rather than open a session of its own."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = Store(data_dir, index=await open_index(data_dir / INDEX_FILE))
    await store.open()
    try:
        stream = daemon_config(data_dir, "http://origin.invalid/master.m3u8").streams[0]
        await store.index.ensure_stream(stream.id, stream.url, 0)
        keeper = SessionKeeper(stream, store, time.time)
        targets = (
            RenditionTarget(name="360p", uri="http://o/v.m3u8", kind="video", main=True),
            RenditionTarget(name="subs-en", uri="http://o/s.m3u8", kind="subtitles", main=False),
        )
        rows = await asyncio.gather(
            *(
                keeper.rendition_row(t, generation=keeper.generation, clock="origin", start_ms=0)
                for t in targets
            )
        )
        sessions = await store.index.sessions_in_opening_order(stream.id)
        assert [s.id for s in sessions] == [rows[0].session_id], sessions
        assert {r.session_id for r in rows} == {rows[0].session_id}
        renditions = await store.index.renditions(rows[0].session_id)
        assert sorted(r.name for r in renditions) == ["360p", "subs-en"]
    finally:
        await store.close()
