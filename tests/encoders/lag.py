"""Publish -> indexed lag against Debian's ffmpeg publishing HLS in real time (-re), polled.

ffmpeg writes the playlist next to its segments; a static origin serves that folder on
127.0.0.1 without blocking reloads. A segment's publish time is the modification time of
the playlist rewrite that first lists it (ffmpeg renames a finished temporary file into
place, so the time is when the listing became visible to a client). A daemon in this
process records the stream; its index says when each segment was indexed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from livecut.config import StreamConfig, default_config
from livecut.daemon import Daemon
from livecut.hls.playlist import MediaPlaylist, parse_playlist
from tests.encoders import runners

SEGMENT_S = 2
# The first segments after the daemon starts are listed before the reload schedule has
# found the origin's phase (a few probes, each a segment late); not counted.
WARM_UP_SEGMENTS = 6
WATCH_EVERY_S = 0.005


@dataclass(kw_only=True, slots=True)
class LagRun:
    container: str  # ts | fmp4
    published_ms: dict[int, float] = field(default_factory=dict)  # seq -> playlist mtime
    indexed_ms: dict[int, int] = field(default_factory=dict)
    first_seq: int | None = None  # the newest segment listed when the daemon started
    encoder_exit: int | None = None

    def lags_s(self) -> list[float]:
        """Publish -> indexed of every segment after the warm-up, in seconds."""
        start = (self.first_seq or 0) + WARM_UP_SEGMENTS
        return [
            (self.indexed_ms[seq] - published) / 1000
            for seq, published in sorted(self.published_ms.items())
            if seq > start and seq in self.indexed_ms
        ]

    def missing(self) -> list[int]:
        start = (self.first_seq or 0) + WARM_UP_SEGMENTS
        return [s for s in sorted(self.published_ms) if s > start and s not in self.indexed_ms]


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def ffmpeg_args(container: str, folder: Path, seconds: float) -> list[str]:
    extension = "m4s" if container == "fmp4" else "ts"
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", f"{seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-pix_fmt", "yuv420p",
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "400k",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_list_size", "10",
        "-hls_segment_type", "fmp4" if container == "fmp4" else "mpegts",
        "-hls_flags", "program_date_time+temp_file+delete_segments",
        "-hls_segment_filename", str(folder / f"seg%05d.{extension}"),
        str(folder / "index.m3u8"),
    ]  # fmt: skip


async def _watch(playlist: Path, run: LagRun, stop: asyncio.Event) -> None:
    """Note when each segment is first listed: the mtime of the rewrite that lists it."""
    last_mtime = 0
    while not stop.is_set():
        try:
            stat = playlist.stat()
            if stat.st_mtime_ns != last_mtime:
                last_mtime = stat.st_mtime_ns
                parsed = parse_playlist(playlist.read_text(), "http://127.0.0.1/index.m3u8")
                assert isinstance(parsed, MediaPlaylist)
                for segment in parsed.segments:
                    run.published_ms.setdefault(segment.seq, stat.st_mtime_ns / 1e6)
        except FileNotFoundError:
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WATCH_EVERY_S)


async def _encode(container: str, folder: Path, seconds: float, run: LagRun) -> None:
    process = await asyncio.create_subprocess_exec(
        *ffmpeg_args(container, folder, seconds),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(folder.parent / f"{container}.log").open("wb"),
    )
    try:
        run.encoder_exit = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def measure(containers: tuple[str, ...], seconds: float, root: Path) -> list[LagRun]:
    """Run one ffmpeg per container for `seconds`, recorded by one daemon."""
    runs = [LagRun(container=c) for c in containers]
    origin_root = root / "origin"
    for run in runs:
        (origin_root / run.container).mkdir(parents=True)
    stop = asyncio.Event()
    watchers = [
        asyncio.create_task(_watch(origin_root / r.container / "index.m3u8", r, stop)) for r in runs
    ]
    encoders = [
        asyncio.create_task(_encode(r.container, origin_root / r.container, seconds, r))
        for r in runs
    ]
    try:
        async with runners.static_origin(origin_root) as origin_url:
            await _until(lambda: all(r.published_ms for r in runs), timeout_s=30)
            base = default_config(root / "data")
            config = replace(
                base,
                server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
                streams=tuple(
                    StreamConfig(
                        id=r.container,
                        url=f"{origin_url}/{r.container}/index.m3u8",
                        retention_s=3600.0,
                        session_gap_s=30.0,
                        headers=(),
                        enabled=True,
                    )
                    for r in runs
                ),
            )
            for run in runs:
                run.first_seq = max(run.published_ms)
            daemon = Daemon(config)
            await daemon.start()
            try:
                await asyncio.gather(*encoders)
                # The final segments, listed with ENDLIST, are indexed soon after.
                await _until(lambda: _indexed_all(daemon, runs), timeout_s=30)
            finally:
                for run in runs:
                    run.indexed_ms = await _indexed(daemon, run.container)
                await daemon.stop()
    finally:
        stop.set()
        for task in encoders:
            task.cancel()
        await asyncio.gather(*encoders, *watchers, return_exceptions=True)
    return runs


async def _indexed(daemon: Daemon, stream: str) -> dict[int, int]:
    index = daemon.store.index
    times: dict[int, int] = {}
    for session in await index.sessions_in_opening_order(stream):
        for rendition in await index.renditions(session.id):
            if rendition.main:
                times.update(await index.indexed_times(rendition.id))
    return times


async def _indexed_all(daemon: Daemon, runs: list[LagRun]) -> bool:
    for run in runs:
        if max(run.published_ms) not in await _indexed(daemon, run.container):
            return False
    return True


async def _until(predicate: Callable[[], bool | Awaitable[bool]], *, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def holds() -> bool:
        answer = predicate()
        return await answer if inspect.isawaitable(answer) else bool(answer)

    while not await holds():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s}s")
        await asyncio.sleep(0.05)


def table(runs: list[LagRun]) -> str:
    lines = [
        f"{'container':<10} {'segments':>8} {'p50_s':>7} {'p99_s':>7} {'max_s':>7} {'lost':>5}"
    ]
    for run in runs:
        lags = run.lags_s()
        if not lags:
            lines.append(f"{run.container:<10} {0:>8}")
            continue
        lines.append(
            f"{run.container:<10} {len(lags):>8} {percentile(lags, 50):>7.3f} "
            f"{percentile(lags, 99):>7.3f} {max(lags):>7.3f} {len(run.missing()):>5}"
        )
    return "\n".join(lines)
