"""Soak: many live streams for a long time, retention and the disk floor at work, clips
requested throughout; does anything grow that should not?

    python bench/soak.py [--streams 50] [--minutes 30] [--sample-s 60]
                         [--disk-mib 1024] [--floor-mib 256] [--retention-s 240]

The origin (bench/_origin.py, the same one bench/ingest.py uses) runs in a spawned
process; the daemon runs here, so RSS and file descriptors are the daemon's alone. Run
as root, the data directory is a tmpfs of --disk-mib, so that the disk floor has to
evict (more than --floor-mib free is kept; retention alone would need more room than
the tmpfs has); otherwise a temporary directory on the real disk, where only retention
works, which the report says.

A clip is requested every --clip-every-s seconds, in turn: the last 10 s of a stream
(it waits for the live edge) and a 20 s range from a minute ago. Every --sample-s the
table gains a row: RSS, open files, index size, media bytes, publish -> indexed lag
percentiles over that interval, evictions, gaps, errors and clips. The verdict compares
the row after the first fifth of the run (the warm-up) with the last: RSS and file
descriptors must not grow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
from _origin import OriginSpec
from ingest import Origin, stream_epochs

from livecut import metrics
from livecut.config import Config, StorageConfig, StreamConfig, default_config
from livecut.daemon import Daemon

SEGMENT_MS = 2000
BITRATE = 600_000
POOL_SIZE = 6
WINDOW = 6
WARM_UP_ROWS = 2  # rows before the baseline: caches, pools and the index settle
RSS_GROWTH_MB = 16.0  # growth from the baseline row to the last still called flat
FD_GROWTH = 8
CLIP_TIMEOUT_S = 120.0
LIVE_CLIP_MS = 10_000
PAST_CLIP_MS = 20_000
LAG_METRIC = "livecut_publish_to_indexed_seconds"
FALLBACK_LAG_METRIC = "livecut_ingest_lag_seconds"
MB = 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what is sampled ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    minute: float
    rss_mb: float
    workers_mb: float  # the segment worker processes' RSS, summed
    fds: int
    index_mb: float
    media_mb: float
    free_mb: float
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    evicted: int
    gaps: int
    errors: int
    clips_ready: int
    clips_failed: int


@dataclass(kw_only=True, slots=True)
class Clips:
    ready: int = 0
    failed: int = 0
    refused: int = 0
    latency_s: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


def _rss_mb(pid: int | str = "self") -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0  # gone between listing and reading
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _bytes_under(root: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in root.glob(pattern) if p.is_file())


def _total(name: str) -> float:
    """The sum of a metric's samples over every label set (0 if it is not exported)."""
    total = 0.0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def _buckets(name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram, summed over its label sets."""
    counts: dict[float, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name + "_bucket":
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return sorted(counts.items())


def _quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    """A quantile (ms) of what a histogram saw between two readings, at bucket resolution."""
    seen = dict(before)
    deltas = [(bound, count - seen.get(bound, 0.0)) for bound, count in after]
    if not deltas or deltas[-1][1] <= 0:
        return None
    goal = q * deltas[-1][1]
    for bound, count in deltas:
        if count >= goal:
            return bound * 1000
    return None


# --- the run --------------------------------------------------------------------------


@contextlib.contextmanager
def data_dir(disk_mib: int) -> Iterator[tuple[Path, bool]]:
    """A tmpfs of disk_mib when root (the floor then has to work), else a temp dir."""
    with tempfile.TemporaryDirectory(prefix="livecut-soak-") as tmp:
        root = Path(tmp)
        mounted = False
        if os.geteuid() == 0:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={disk_mib}m", "tmpfs", str(root)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            mounted = done.returncode == 0
            if not mounted:
                log(
                    f"could not mount a tmpfs ({done.stderr.strip()}): the floor will not be tested"
                )
        try:
            yield root, mounted
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(root)], timeout=30, check=False)


def soak_config(root: Path, port: int, args: argparse.Namespace, mounted: bool) -> Config:
    base = default_config(root)
    floor = args.floor_mib * 2**20 if mounted else 0
    return replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        storage=StorageConfig(min_free_bytes=floor, keep_live_segments=3),
        streams=tuple(
            StreamConfig(
                id=f"s{k}",
                url=f"http://127.0.0.1:{port}/s{k}/index.m3u8",
                retention_s=float(args.retention_s),
                session_gap_s=30.0,
                headers=(),
                enabled=True,
            )
            for k in range(args.streams)
        ),
    )


async def request_clips(
    daemon: Daemon, streams: int, every_s: float, clips: Clips, stop: asyncio.Event
) -> None:
    rng = random.Random(7)
    tasks: set[asyncio.Task[None]] = set()
    # Ranges from the past only once the recording reaches back that far.
    past_from = time.monotonic() + (60_000 + PAST_CLIP_MS + SEGMENT_MS) / 1000
    async with aiohttp.ClientSession() as http:
        n = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                break
            now_ms = int(time.time() * 1000)
            if n % 2 == 0 or time.monotonic() < past_from:
                start_ms, end_ms = now_ms - LIVE_CLIP_MS, now_ms
            else:
                end_ms = now_ms - 60_000
                start_ms = end_ms - PAST_CLIP_MS
            body = {"stream": f"s{rng.randrange(streams)}", "start_ms": start_ms, "end_ms": end_ms}
            task = asyncio.create_task(_one_clip(daemon, http, body, clips))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=CLIP_TIMEOUT_S)


async def _one_clip(
    daemon: Daemon, http: aiohttp.ClientSession, body: dict[str, object], clips: Clips
) -> None:
    began = time.perf_counter()
    async with http.post(f"{daemon.base_url}/v1/clips", json=body) as response:
        created = await response.json()
    if response.status != 202:
        clips.refused += 1
        if len(clips.first_errors) < 5:
            clips.first_errors.append(f"HTTP {response.status}: {created}")
        return
    clip = await daemon.jobs.wait_finished(str(created["id"]), CLIP_TIMEOUT_S)
    if clip is not None and clip.state == "ready":
        clips.ready += 1
        clips.latency_s.append(time.perf_counter() - began)
        # Delivered and then deleted, as an app would once it has fetched the file:
        # clips must not fill the tmpfs the floor is measured on.
        async with http.delete(f"{daemon.base_url}/v1/clips/{clip.id}"):
            pass
    else:
        clips.failed += 1
        if len(clips.first_errors) < 5:
            clips.first_errors.append(
                f"clip {created['id']}: {clip.error if clip else 'timed out'}"
            )


async def soak(args: argparse.Namespace, origin: Origin, root: Path, mounted: bool) -> list[Row]:
    config = soak_config(root, origin.port, args, mounted)
    lag_metric = LAG_METRIC if LAG_METRIC in metrics.exported_names() else FALLBACK_LAG_METRIC
    daemon = Daemon(config)
    await daemon.start()
    clips = Clips()
    stop = asyncio.Event()
    clipping = asyncio.create_task(
        request_clips(daemon, args.streams, args.clip_every_s, clips, stop)
    )
    rows: list[Row] = []
    began = time.monotonic()
    lag_before = _buckets(lag_metric)
    try:
        while (elapsed := time.monotonic() - began) < args.minutes * 60:
            await asyncio.sleep(min(args.sample_s, args.minutes * 60 - elapsed))
            lag_after = _buckets(lag_metric)
            disk = os.statvfs(root)
            rows.append(
                Row(
                    minute=(time.monotonic() - began) / 60,
                    rss_mb=_rss_mb(),
                    workers_mb=sum(_rss_mb(pid) for pid in daemon.segment_workers.pids()),
                    fds=_fds(),
                    index_mb=_bytes_under(root, "*.sqlite*") / MB,
                    media_mb=_bytes_under(root, "**/*.ts") / MB,
                    free_mb=disk.f_bavail * disk.f_frsize / MB,
                    lag_p50_ms=_quantile(lag_before, lag_after, 0.50),
                    lag_p99_ms=_quantile(lag_before, lag_after, 0.99),
                    evicted=int(_total("livecut_evicted_segments_total")),
                    gaps=int(_total("livecut_gaps_total")),
                    errors=int(
                        _total("livecut_origin_errors_total")
                        + _total("livecut_storage_errors_total")
                    ),
                    clips_ready=clips.ready,
                    clips_failed=clips.failed + clips.refused,
                )
            )
            lag_before = lag_after
            log(render_row(rows[-1]))
    finally:
        stop.set()
        await clipping
        await daemon.stop()
    report_clips(clips)
    return rows


HEADER = (
    f"{'min':>5} {'rss MB':>7} {'workers':>7} {'fds':>5} {'index MB':>9} {'media MB':>9} "
    f"{'free MB':>8} "
    f"{'lag p50':>8} {'lag p99':>8} {'evicted':>8} {'gaps':>5} {'errors':>6} "
    f"{'clips ok':>8} {'failed':>6}"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render_row(row: Row) -> str:
    return (
        f"{row.minute:5.1f} {row.rss_mb:7.1f} {row.workers_mb:7.1f} {row.fds:5d} "
        f"{row.index_mb:9.1f} {row.media_mb:9.1f} {row.free_mb:8.0f} "
        f"{_ms(row.lag_p50_ms):>8} {_ms(row.lag_p99_ms):>8} "
        f"{row.evicted:8d} {row.gaps:5d} {row.errors:6d} {row.clips_ready:8d} {row.clips_failed:6d}"
    )


def report_clips(clips: Clips) -> None:
    latency = sorted(clips.latency_s)
    if latency:
        p50 = latency[len(latency) // 2]
        p99 = latency[min(len(latency) - 1, int(len(latency) * 0.99))]
        print(
            f"clips: {clips.ready} ready (POST -> ready p50 {p50:.2f} s, p99 {p99:.2f} s), "
            f"{clips.failed} failed, {clips.refused} refused"
        )
    else:
        print(f"clips: none ready, {clips.failed} failed, {clips.refused} refused")
    for line in clips.first_errors:
        print(f"  {line}")


def verdict(rows: Sequence[Row]) -> list[str]:
    # Warm-up: caches, pools and the index settle, and the disk fills until the floor
    # starts evicting; the baseline is the row after the first fifth of the run.
    warm_up = max(WARM_UP_ROWS, len(rows) // 5)
    if len(rows) <= warm_up:
        return ["too short for a verdict: run more --minutes or a smaller --sample-s"]
    base, last = rows[warm_up], rows[-1]
    rss = last.rss_mb - base.rss_mb
    workers = last.workers_mb - base.workers_mb
    fds = last.fds - base.fds
    return [
        f"RSS {base.rss_mb:.1f} -> {last.rss_mb:.1f} MB ({rss:+.1f}, "
        f"flat within {RSS_GROWTH_MB:g}): " + ("flat" if rss <= RSS_GROWTH_MB else "GROWS"),
        f"segment workers' RSS {base.workers_mb:.1f} -> {last.workers_mb:.1f} MB "
        f"({workers:+.1f}, flat within {RSS_GROWTH_MB:g}): "
        + ("flat" if workers <= RSS_GROWTH_MB else "GROWS"),
        f"open files {base.fds} -> {last.fds} ({fds:+d}, flat within {FD_GROWTH}): "
        + ("flat" if fds <= FD_GROWTH else "GROWS"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    spec = OriginSpec(
        streams=args.streams,
        segment_ms=SEGMENT_MS,
        bitrate=args.bitrate,
        pool_size=POOL_SIZE,
        window=WINDOW,
        max_life_s=args.minutes * 60 + 600,
    )
    origin = Origin(spec)
    try:
        log("encoding the origin's pool ...")
        origin.wait_ready()
        origin.go_live(stream_epochs(args.streams, SEGMENT_MS, int(time.time() * 1000)))
        with data_dir(args.disk_mib) as (root, mounted):
            print(
                f"livecut soak: {args.streams} streams x {args.bitrate / 1e6:.2f} Mbit/s, "
                f"{args.minutes:g} min, retention {args.retention_s} s, a clip every "
                f"{args.clip_every_s:g} s; data on "
                + (
                    f"a {args.disk_mib} MiB tmpfs, floor {args.floor_mib} MiB"
                    if mounted
                    else f"{root} (no floor)"
                )
            )
            print(HEADER)
            log(HEADER)
            rows = asyncio.run(soak(args, origin, root, mounted))
        for row in rows:
            print(render_row(row))
        for line in verdict(rows):
            print(line)
        origin.finish()
    finally:
        origin.close()
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--bitrate", type=int, default=BITRATE)
    parser.add_argument("--disk-mib", type=int, default=1024)
    parser.add_argument("--floor-mib", type=int, default=256)
    parser.add_argument("--retention-s", type=int, default=240)
    parser.add_argument("--clip-every-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    for name in (
        "streams",
        "minutes",
        "sample_s",
        "bitrate",
        "disk_mib",
        "retention_s",
        "clip_every_s",
    ):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.floor_mib >= args.disk_mib:
        parser.error("--floor-mib must be smaller than --disk-mib")
    return args


if __name__ == "__main__":
    sys.exit(main())
