"""Test helpers: a daemon against a live origin on 127.0.0.1, waiting on it, decoding clips."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Unpack

import av
from aiohttp import web

from livecut.config import ClusterConfig, Config, StreamConfig, default_config
from livecut.daemon import Daemon
from livecut.media.synth import SynthOptions, read_frame_number, write_hls_fixture
from livecut.store.index import Index


def daemon_config(
    data_dir: Path,
    origin_url: str,
    *,
    stream_id: str = "cam",
    session_gap_s: float = 30.0,
    index_url: str | None = None,
) -> Config:
    """One node; with index_url (or on the PostgreSQL run of a test), its index on
    PostgreSQL and its streams under leases."""
    base = default_config(data_dir)
    return replace(
        base,
        cluster=ClusterConfig(
            index_url=index_url or base.cluster.index_url, node_id="test-node", lease_s=3.0
        ),
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        clips=replace(base.clips, max_wait_s=20.0),
        streams=(
            StreamConfig(
                id=stream_id,
                url=origin_url,
                retention_s=3600.0,
                session_gap_s=session_gap_s,
                headers=(),
                enabled=True,
            ),
        ),
    )


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def until(
    daemon: Daemon,
    stream_id: str,
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout_s: float,
) -> None:
    """Wait, on the store's own change notices, until predicate() holds (a predicate
    may be a coroutine function: an index on PostgreSQL is only ever awaited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def holds() -> bool:
        answer = predicate()
        return await answer if inspect.isawaitable(answer) else bool(answer)

    while not await holds():
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"{stream_id}: condition not met within {timeout_s}s")
        await daemon.store.edges.wait(stream_id, min(left, 1.0))


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodedClip:
    frames: list[tuple[float, int]]  # (presentation time in s, barcode frame number)
    audio_start_s: float | None
    audio_end_s: float | None
    video_end_s: float


def decode_clip(path: Path) -> DecodedClip:
    frames: list[tuple[float, int]] = []
    audio_start = audio_end = None
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        for frame in container.decode(video):
            assert frame.pts is not None and frame.time_base is not None
            frames.append((float(frame.pts * frame.time_base), read_frame_number(frame)))
    with av.open(str(path)) as container:
        if container.streams.audio:
            for aframe in container.decode(container.streams.audio[0]):
                assert aframe.pts is not None and aframe.time_base is not None
                start = float(aframe.pts * aframe.time_base)
                end = start + aframe.samples / aframe.sample_rate
                audio_start = start if audio_start is None else min(audio_start, start)
                audio_end = end if audio_end is None else max(audio_end, end)
    frames.sort()
    frame_s = 0.04
    return DecodedClip(
        frames=frames,
        audio_start_s=audio_start,
        audio_end_s=audio_end,
        video_end_s=frames[-1][0] + frame_s if frames else 0.0,
    )


async def session_ended(daemon: Daemon, stream: str = "cam") -> bool:
    sessions = await daemon.store.index.sessions(stream)
    return bool(sessions) and sessions[0].state == "ended"


@asynccontextmanager
async def recorded_vod(
    data_dir: Path,
    folder: Path,
    *,
    container: str = "ts",
    segments: int = 5,
    audio: bool = True,
    adjust: Callable[[Config], Config] = lambda config: config,
    **synth: Unpack[SynthOptions],
) -> AsyncIterator[Daemon]:
    """A daemon that has recorded a whole VOD written by the fixtures code; `adjust`
    changes the daemon's config (its storage, say)."""
    playlist = write_hls_fixture(
        folder,
        segments=segments,
        container=container,  # type: ignore[arg-type]
        audio=audio,
        **synth,
    )
    async with recorded_playlist(data_dir, playlist, adjust=adjust) as daemon:
        yield daemon


@asynccontextmanager
async def recorded_playlist(
    data_dir: Path, playlist: Path, *, adjust: Callable[[Config], Config] = lambda config: config
) -> AsyncIterator[Daemon]:
    """A daemon that has recorded a whole VOD playlist (and its files) served from disk."""
    app = web.Application()
    app.router.add_static("/vod", playlist.parent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        config = daemon_config(data_dir, f"http://127.0.0.1:{port}/vod/{playlist.name}")
        async with running(adjust(config)) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            yield daemon
    finally:
        await runner.cleanup()


async def index_segment(
    index: Index,
    rendition_id: int,
    seq: int,
    start_ms: int,
    *,
    path: str,
    size: int = 100,
    epoch: int = 0,
) -> None:
    """A 1 s video segment row with a keyframe at its start, for tests of the index alone."""
    await index.add_segment(
        rendition_id=rendition_id,
        seq=seq,
        epoch=epoch,
        start_ms=start_ms,
        end_ms=start_ms + 1000,
        path=path,
        size=size,
        init_path=None,
        ref_pts_s=0.0,
        keyframes_ms=[start_ms],
        has_video=True,
        has_audio=False,
        indexed_ms=start_ms,
    )
