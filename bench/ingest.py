"""Benchmark: the daemon ingesting N concurrent live HLS streams from a local origin.

    python bench/ingest.py [--streams 100] [--seconds 60] [--bitrate 4000000]
                           [--segment-ms 2000] [--blocking]
                           [--profile [cpu|wall]]

The origin (bench/_origin.py) runs in a spawned process; the daemon runs here, so the
CPU and memory figures below are the daemon's alone. `--streams 5,25,100` runs several
sizes in turn, one table row each.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import math
import multiprocessing
import os
import pstats
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from _origin import OriginSpec, serve, stream_path

from livecut.config import Config, StreamConfig, default_config
from livecut.daemon import Daemon

_N = TypeVar("_N", int, float)

TARGET_STREAMS = 300
TARGET_BITRATE = 4_000_000
TARGET_LAG_P99_MS = 500  # listed -> indexed, once caught up after start
TARGET_STALL_P99_MS = 50
TARGET_RSS_MB = 400
CATCH_UP_BUCKET_MS = 5000  # proc p99 is watched in windows this long to see the catch-up end

POOL_SIZE = 6
WINDOW = 6
PREFILL_SEGMENTS = 2  # published before the daemon starts: a short first-load burst
TICK_S = 0.1  # event-loop stall probe period
READY_TIMEOUT_S = 300.0  # encoding the pool
REPLY_TIMEOUT_S = 30.0
JOIN_TIMEOUT_S = 10.0
PROFILE_TOP = 25
PROFILE_TIMERS: dict[str, Callable[[], float]] = {
    "cpu": time.thread_time,  # per thread: what each thread burned
    "wall": time.perf_counter,  # includes GIL waits and blocking calls such as fsync
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Pool:
    sizes: list[int]
    segment_ms: int

    @property
    def bytes_per_s(self) -> float:
        return sum(self.sizes) / (len(self.sizes) * self.segment_ms / 1000)


@dataclass(frozen=True, kw_only=True, slots=True)
class Measured:
    """What the daemon process did between t0_ms and end_ms."""

    t0_ms: int
    end_ms: int
    cpu_s: float  # whole process: event loop plus worker threads
    loop_cpu_s: float  # the event-loop thread alone
    host_busy: float  # fraction of all the machine's CPU time that was not idle or iowait
    rss_end_mb: float
    stalls_ms: Sequence[float]  # sorted oversleeps of a TICK_S timer: the loop's latency


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    streams: int
    reload: str  # "poll" (RFC 8216 reload timing) or "block" (LL-HLS blocking reload)
    mbit_per_stream: float  # real, from the pool's bytes
    wall_s: float
    cpu_stream_pct: float
    cpu_pct: float
    loop_pct: float
    origin_pct: float
    others_pct: float
    rss_max_mb: float
    rss_end_mb: float
    expected: int
    recorded: int
    gaps: int
    sessions: int
    lag_ms: Sequence[int]  # sorted: indexed - published
    poll_ms: Sequence[int]  # sorted: first listed in a playlist response - published
    proc_ms: Sequence[int]  # sorted: indexed - first listed
    caught_up_s: float | None  # after start, when every later window's proc p99 is on target
    steady_proc_ms: Sequence[int]  # sorted: proc of the segments listed after that
    mb_per_s: float
    stalls_ms: Sequence[float]

    @property
    def lost(self) -> int:
        return self.expected - self.recorded


# --- origin process -------------------------------------------------------------------


class Origin:
    """The spawned origin process and its pipe; every wait on it is bounded."""

    def __init__(self, spec: OriginSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=serve, args=(child_conn, spec), name="bench-origin", daemon=True
        )
        self._process.start()
        child_conn.close()
        self.spec = spec
        self.port = 0

    def wait_ready(self) -> Pool:
        _, sizes = self._expect("ready", READY_TIMEOUT_S)
        return Pool(sizes=list(sizes), segment_ms=self.spec.segment_ms)

    def go_live(self, epochs_ms: list[int]) -> None:
        self._conn.send(("epochs", epochs_ms))
        _, self.port = self._expect("serving", REPLY_TIMEOUT_S)

    def finish(self) -> tuple[list[dict[int, int]], float]:
        """Stop serving; (per stream, seq -> ms first listed), origin CPU seconds."""
        self._conn.send(("stop",))
        _, announced, cpu_s = self._expect("announced", REPLY_TIMEOUT_S)
        return announced, cpu_s

    def close(self) -> None:
        self._process.join(JOIN_TIMEOUT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(JOIN_TIMEOUT_S)
        self._conn.close()

    def _expect(self, kind: str, timeout_s: float) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._conn.poll(0.1):
                message: tuple[Any, ...] = self._conn.recv()
                if message[0] != kind:
                    raise RuntimeError(f"origin sent {message[0]!r}, expected {kind!r}")
                return message
            if not self._process.is_alive():
                raise RuntimeError(f"origin exited (code {self._process.exitcode}) before {kind!r}")
        raise RuntimeError(f"origin did not send {kind!r} within {timeout_s:g}s")


def stream_epochs(streams: int, segment_ms: int, now_ms: int) -> list[int]:
    """Stagger stream k by k*segment_ms/streams, so the reloads spread over a segment."""
    base = now_ms - PREFILL_SEGMENTS * segment_ms
    return [base + k * segment_ms // streams for k in range(streams)]


# --- the daemon side ------------------------------------------------------------------


class LogTally(logging.Handler):
    """Counts the daemon's warnings and errors instead of flooding the terminal."""

    def __init__(self, keep: int = 5) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0
        self.first: list[str] = []
        self._keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < self._keep:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def report(self) -> str:
        lines = [f"daemon logged {self.count} warning(s)/error(s)"]
        lines += [f"  {line}" for line in self.first]
        return "\n".join(lines)


def bench_config(data_dir: Path, port: int, streams: int) -> Config:
    base = default_config(data_dir)
    return replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        streams=tuple(
            StreamConfig(
                id=f"s{k}",
                url=f"http://127.0.0.1:{port}{stream_path(k)}",
                retention_s=3600.0,
                session_gap_s=30.0,
                headers=(),
                enabled=True,
            )
            for k in range(streams)
        ),
    )


class ProfilingExecutor(ThreadPoolExecutor):
    """The loop's default executor, with one cProfile per worker thread while enabled.

    cProfile on Python 3.11 sees only the thread that enabled it; PyAV probing and the
    fsyncing writes run in asyncio.to_thread workers, so they need their own profiles.
    """

    def __init__(self, timer: Callable[[], float]) -> None:
        # The same worker count asyncio's own default executor would have.
        super().__init__(max_workers=min(32, (os.cpu_count() or 1) + 4))
        self.timer = timer
        self.enabled = False
        self.profiles: list[cProfile.Profile] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._run, fn, *args, **kwargs)

    def _run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return fn(*args, **kwargs)
        profile: cProfile.Profile | None = getattr(self._local, "profile", None)
        if profile is None:
            profile = cProfile.Profile(self.timer)
            self._local.profile = profile
            with self._lock:
                self.profiles.append(profile)
        return profile.runcall(fn, *args, **kwargs)


async def run_daemon(config: Config, seconds: float, profile_clock: str | None) -> Measured:
    profile: cProfile.Profile | None = None
    executor: ProfilingExecutor | None = None
    if profile_clock is not None:
        timer = PROFILE_TIMERS[profile_clock]
        profile = cProfile.Profile(timer)
        executor = ProfilingExecutor(timer)
        asyncio.get_running_loop().set_default_executor(executor)
    daemon = Daemon(config)
    await daemon.start()
    try:
        cpu0, loop_cpu0, host0 = _cpu_s(), time.thread_time(), _host_ticks()
        t0_ms = _now_ms()
        if profile is not None and executor is not None:
            executor.enabled = True
            profile.enable()
        stalls_ms = await _watch_loop(seconds)
        if profile is not None and executor is not None:
            profile.disable()
            executor.enabled = False
        end_ms = _now_ms()
        cpu_s, loop_cpu_s = _cpu_s() - cpu0, time.thread_time() - loop_cpu0
        busy, total = (b - a for a, b in zip(host0, _host_ticks(), strict=True))
        rss_end_mb = _rss_mb()
    finally:
        await daemon.stop()
    if profile is not None and executor is not None:
        _print_profile(profile, executor.profiles, profile_clock or "")
    return Measured(
        t0_ms=t0_ms,
        end_ms=end_ms,
        cpu_s=cpu_s,
        loop_cpu_s=loop_cpu_s,
        host_busy=busy / total if total else 0.0,
        rss_end_mb=rss_end_mb,
        stalls_ms=stalls_ms,
    )


async def _watch_loop(seconds: float) -> list[float]:
    """Sleep `seconds` in TICK_S steps; each oversleep (ms) is how late the loop woke us."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    stalls_ms: list[float] = []
    while (left := deadline - loop.time()) > 0:
        step = min(TICK_S, left)
        before = loop.time()
        await asyncio.sleep(step)
        stalls_ms.append(max(0.0, loop.time() - before - step) * 1000)
    return sorted(stalls_ms)


def _print_profile(
    loop_profile: cProfile.Profile, worker_profiles: list[cProfile.Profile], clock: str
) -> None:
    alone = pstats.Stats(loop_profile, stream=sys.stdout)
    alone.strip_dirs()
    print(f"\n--- cProfile ({clock} time): the event-loop thread alone; top {PROFILE_TOP} ---")
    alone.sort_stats("tottime").print_stats(PROFILE_TOP)
    stats = pstats.Stats(loop_profile, stream=sys.stdout)
    for worker in worker_profiles:
        stats.add(worker)
    stats.strip_dirs()
    print(
        f"\n--- cProfile ({clock} time): event loop + {len(worker_profiles)} worker "
        f"thread(s), summed; top {PROFILE_TOP} by cumulative time ---"
    )
    stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
    print(f"--- top {PROFILE_TOP} by own (internal) time ---")
    stats.sort_stats("tottime").print_stats(PROFILE_TOP)


# --- reading the results --------------------------------------------------------------


def analyse(
    *,
    data_dir: Path,
    epochs_ms: list[int],
    segment_ms: int,
    measured: Measured,
    announced: list[dict[int, int]],
    origin_cpu_s: float,
    pool: Pool,
    reload: str,
) -> RunResult:
    streams = len(epochs_ms)
    index_uri = f"file:{data_dir / 'index.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(index_uri, uri=True)) as db:
        rows = db.execute(
            "SELECT sessions.stream_id, segments.seq, segments.indexed_ms, segments.size "
            "FROM segments JOIN renditions ON renditions.id = segments.rendition_id "
            "JOIN sessions ON sessions.id = renditions.session_id"
        ).fetchall()
        gaps = db.execute("SELECT COUNT(*) FROM gaps").fetchone()[0]
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    indexed: dict[tuple[int, int], int] = {}
    written = 0
    for stream_id, seq, indexed_ms, size in rows:
        key = (int(stream_id[1:]), seq)
        indexed[key] = min(indexed_ms, indexed.get(key, indexed_ms))
        if measured.t0_ms <= indexed_ms <= measured.end_ms:
            written += size
    # Published inside the window, after a warm-up of two segments and before the last one.
    window_start = measured.t0_ms + 2 * segment_ms
    window_end = measured.end_ms - segment_ms
    expected = recorded = 0
    lag: list[int] = []
    poll: list[int] = []
    proc: list[int] = []
    listed_proc: list[tuple[int, int]] = []  # (listed - t0, proc)
    for k, epoch in enumerate(epochs_ms):
        first = -(-(window_start - epoch) // segment_ms) - 1
        last = (window_end - epoch) // segment_ms - 1
        for seq in range(max(0, first), last + 1):
            expected += 1
            published = epoch + (seq + 1) * segment_ms
            done = indexed.get((k, seq))
            if done is None:
                continue
            recorded += 1
            lag.append(done - published)
            listed = announced[k].get(seq)
            if listed is not None:
                poll.append(listed - published)
                proc.append(done - listed)
                listed_proc.append((listed - measured.t0_ms, done - listed))
    caught_up_ms = caught_up(listed_proc)
    steady = sorted(p for at, p in listed_proc if caught_up_ms is not None and at >= caught_up_ms)
    wall_s = (measured.end_ms - measured.t0_ms) / 1000
    host_pct = 100 * measured.host_busy * (os.cpu_count() or 1)  # of one core, like cpu%
    return RunResult(
        streams=streams,
        reload=reload,
        mbit_per_stream=pool.bytes_per_s * 8 / 1e6,
        wall_s=wall_s,
        cpu_stream_pct=100 * measured.cpu_s / wall_s / streams,
        cpu_pct=100 * measured.cpu_s / wall_s,
        loop_pct=100 * measured.loop_cpu_s / wall_s,
        origin_pct=100 * origin_cpu_s / wall_s,
        others_pct=host_pct - 100 * (measured.cpu_s + origin_cpu_s) / wall_s,
        rss_max_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_end_mb=measured.rss_end_mb,
        expected=expected,
        recorded=recorded,
        gaps=gaps,
        sessions=sessions,
        lag_ms=sorted(lag),
        poll_ms=sorted(poll),
        proc_ms=sorted(proc),
        caught_up_s=None if caught_up_ms is None else caught_up_ms / 1000,
        steady_proc_ms=steady,
        mb_per_s=written / 1e6 / wall_s,
        stalls_ms=measured.stalls_ms,
    )


def caught_up(listed_proc: Sequence[tuple[int, int]]) -> int | None:
    """When (ms after start) the daemon had caught up with the backlog a start finds:
    the start of the first CATCH_UP_BUCKET_MS window from which every window's
    listed -> indexed p99 is under TARGET_LAG_P99_MS. None if it never did."""
    windows: dict[int, list[int]] = {}
    for at, proc in listed_proc:
        windows.setdefault(max(0, at) // CATCH_UP_BUCKET_MS, []).append(proc)
    start: int | None = None
    for window in sorted(windows):
        p99 = percentile(sorted(windows[window]), 0.99)
        if p99 is not None and p99 >= TARGET_LAG_P99_MS:
            start = None
        elif start is None:
            start = window
    return None if start is None else start * CATCH_UP_BUCKET_MS


def percentile(sorted_values: Sequence[_N], fraction: float) -> _N | None:
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the report -----------------------------------------------------------------------

_COLUMNS: list[tuple[str, Callable[[RunResult], object]]] = [
    ("streams", lambda r: r.streams),
    ("reload", lambda r: r.reload),
    ("Mbit/s", lambda r: f"{r.mbit_per_stream:.2f}"),
    ("wall_s", lambda r: f"{r.wall_s:.1f}"),
    ("cpu%/stream", lambda r: f"{r.cpu_stream_pct:.2f}"),
    ("cpu%", lambda r: f"{r.cpu_pct:.1f}"),
    ("loop%", lambda r: f"{r.loop_pct:.1f}"),
    ("origin%", lambda r: f"{r.origin_pct:.1f}"),
    ("others%", lambda r: f"{max(0.0, r.others_pct):.0f}"),
    ("rss_max_MB", lambda r: f"{r.rss_max_mb:.0f}"),
    ("rss_end_MB", lambda r: f"{r.rss_end_mb:.0f}"),
    ("expected", lambda r: r.expected),
    ("recorded", lambda r: r.recorded),
    ("lost", lambda r: r.lost),
    ("gaps", lambda r: r.gaps),
    ("sessions", lambda r: r.sessions),
    ("lag_p50", lambda r: percentile(r.lag_ms, 0.5)),
    ("lag_p99", lambda r: percentile(r.lag_ms, 0.99)),
    ("lag_max", lambda r: percentile(r.lag_ms, 1.0)),
    ("poll_p50", lambda r: percentile(r.poll_ms, 0.5)),
    ("poll_p99", lambda r: percentile(r.poll_ms, 0.99)),
    ("proc_p50", lambda r: percentile(r.proc_ms, 0.5)),
    ("proc_p99", lambda r: percentile(r.proc_ms, 0.99)),
    ("catch_up_s", lambda r: None if r.caught_up_s is None else f"{r.caught_up_s:.0f}"),
    ("steady_p50", lambda r: percentile(r.steady_proc_ms, 0.5)),
    ("steady_p99", lambda r: percentile(r.steady_proc_ms, 0.99)),
    ("MB/s", lambda r: f"{r.mb_per_s:.1f}"),
    ("stall_p50", lambda r: f"{percentile(r.stalls_ms, 0.5) or 0:.0f}"),
    ("stall_p99", lambda r: f"{percentile(r.stalls_ms, 0.99) or 0:.0f}"),
    ("stall_max", lambda r: f"{percentile(r.stalls_ms, 1.0) or 0:.0f}"),
]

_LEGEND = """\
cpu% and loop% are of one core (loop% = the event-loop thread alone; the rest of cpu% is
worker threads); origin% is the origin process; others% is everything else on the machine
(other processes, kernel writeback), all on the same cores. Lags and stalls in ms:
lag = indexed_ms - publish time; poll = first playlist response listing the segment -
publish time (the reload schedule); proc = indexed_ms - that response (fetch, probe, write,
commit). A start finds a backlog (segments published while the daemon was down, every
stream at once): catch_up_s is when every later 5 s window's proc p99 is on target, and
steady_* are proc percentiles after it. expected counts segments published in the window
after a 2-segment warm-up and before the last segment; lost = expected - recorded;
gaps = rows in the gaps table.
reload = poll (RFC 8216 reload timing) or block (--blocking: LL-HLS blocking reload).
stall = how late a 100 ms timer on the daemon's loop fired (loop latency: busy or GIL-starved)."""


def render_table(results: Sequence[RunResult]) -> str:
    cells = [[header for header, _ in _COLUMNS]]
    for result in results:
        cells.append(
            ["-" if (value := cell(result)) is None else str(value) for _, cell in _COLUMNS]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def verdict(result: RunResult, bitrate: int) -> str:
    goal = (
        f"target {TARGET_STREAMS} streams x {TARGET_BITRATE / 1e6:g} Mbit/s, 0 lost, "
        f"ingest lag p99 < {TARGET_LAG_P99_MS} ms once caught up, loop stall p99 < "
        f"{TARGET_STALL_P99_MS} ms, RSS < {TARGET_RSS_MB} MB"
    )
    if result.streams < TARGET_STREAMS or bitrate < TARGET_BITRATE:
        scale = f"{result.streams} streams x {bitrate / 1e6:g} Mbit/s"
        return f"verdict: not judged ({goal}); this run is {scale}, below the target load"
    how = f"{result.reload} reload"
    misses = []
    if result.lost:
        misses.append(f"{result.lost} of {result.expected} segments lost")
    if result.gaps:
        misses.append(f"{result.gaps} gap row(s)")
    # RFC 8216 reload timing (wait a target duration after a change) puts publish ->
    # listed anywhere in [0, target) with polling, whatever the recorder does; so a poll
    # run is judged on ingest lag as livecut_ingest_lag_seconds defines it (listed ->
    # indexed), a blocking-reload run on publish -> indexed.
    judged = result.lag_ms if result.reload == "block" else result.steady_proc_ms
    what = "lag (publish->indexed)" if result.reload == "block" else "ingest lag (listed->indexed)"
    p99 = percentile(judged, 0.99)
    if result.caught_up_s is None:
        misses.append("never caught up with the start-up backlog")
    elif p99 is None or p99 >= TARGET_LAG_P99_MS:
        misses.append("no segment recorded" if p99 is None else f"{what} p99 {p99} ms")
    stall = percentile(result.stalls_ms, 0.99) or 0.0
    if stall >= TARGET_STALL_P99_MS:
        misses.append(f"loop stall p99 {stall:.0f} ms")
    if result.rss_max_mb >= TARGET_RSS_MB:
        misses.append(f"peak RSS {result.rss_max_mb:.0f} MB")
    catch_up = (
        "" if result.caught_up_s is None else f", caught up {result.caught_up_s:.0f} s after start"
    )
    if misses:
        return f"verdict: MISSED ({goal}, {how}): " + "; ".join(misses) + catch_up
    return (
        f"verdict: MET ({goal}, {how}): {what} p99 {p99} ms, stall p99 {stall:.0f} ms, "
        f"peak RSS {result.rss_max_mb:.0f} MB, 0 lost{catch_up}"
    )


# --- driver ---------------------------------------------------------------------------


def bench_once(
    *,
    streams: int,
    seconds: float,
    bitrate: int,
    segment_ms: int,
    blocking: bool,
    profile: str | None,
) -> RunResult:
    spec = OriginSpec(
        streams=streams,
        segment_ms=segment_ms,
        bitrate=bitrate,
        pool_size=POOL_SIZE,
        window=WINDOW,
        blocking=blocking,
        max_life_s=READY_TIMEOUT_S + seconds + 120.0,
    )
    origin = Origin(spec)
    try:
        pool = origin.wait_ready()
        print(
            f"origin: {streams} streams, pool of {len(pool.sizes)} x {segment_ms} ms TS "
            f"segments, mean {sum(pool.sizes) / len(pool.sizes) / 1e6:.2f} MB; real "
            f"{pool.bytes_per_s * 8 / 1e6:.2f} Mbit/s per stream (video asked "
            f"{bitrate / 1e6:g} Mbit/s, plus 128 kbit/s audio and TS overhead); "
            f"all streams {pool.bytes_per_s * streams / 1e6:.1f} MB/s",
            flush=True,
        )
        epochs_ms = stream_epochs(streams, segment_ms, _now_ms())
        origin.go_live(epochs_ms)
        with tempfile.TemporaryDirectory(prefix="livecut-bench-") as tmp:
            data_dir = Path(tmp)
            config = bench_config(data_dir, origin.port, streams)
            measured = asyncio.run(run_daemon(config, seconds, profile))
            announced, origin_cpu_s = origin.finish()
            return analyse(
                data_dir=data_dir,
                epochs_ms=epochs_ms,
                segment_ms=segment_ms,
                measured=measured,
                announced=announced,
                origin_cpu_s=origin_cpu_s,
                pool=pool,
                reload="block" if blocking else "poll",
            )
    finally:
        origin.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    daemon_log = logging.getLogger("livecut")
    daemon_log.propagate = False
    results: list[RunResult] = []
    for streams in args.streams:
        tally = LogTally()
        daemon_log.addHandler(tally)
        try:
            results.append(
                bench_once(
                    streams=streams,
                    seconds=args.seconds,
                    bitrate=args.bitrate,
                    segment_ms=args.segment_ms,
                    blocking=args.blocking,
                    profile=args.profile,
                )
            )
        finally:
            daemon_log.removeHandler(tally)
        print(tally.report(), flush=True)
    print()
    print(render_table(results))
    print()
    print(_LEGEND)
    if args.profile:
        print("(profiled run: cProfile inflates CPU and lag; compare unprofiled runs)")
    print(verdict(max(results, key=lambda r: r.streams), args.bitrate))
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--streams",
        type=_stream_counts,
        default=[TARGET_STREAMS],
        help="concurrent streams; a comma list (5,25,100) runs each in turn",
    )
    parser.add_argument("--seconds", type=_positive(float), default=60.0)
    parser.add_argument("--bitrate", type=_positive(int), default=TARGET_BITRATE)
    parser.add_argument("--segment-ms", type=_positive(int), default=2000)
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cpu",
        choices=sorted(PROFILE_TIMERS),
        help="cProfile the daemon (loop and worker threads) by per-thread CPU time "
        "(default) or wall time; print the top entries",
    )
    parser.add_argument(
        "--blocking",
        action="store_true",
        help="origin offers LL-HLS blocking playlist reload (CAN-BLOCK-RELOAD, _HLS_msn)",
    )
    args = parser.parse_args(argv)
    if args.segment_ms % 1000:
        parser.error(f"--segment-ms must be a multiple of 1000, got {args.segment_ms}")
    if args.bitrate < 50_000:
        parser.error(f"--bitrate must be at least 50000 bit/s, got {args.bitrate}")
    return args


def _stream_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stream count; use e.g. 100 or 5,25,100"
        ) from None
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError(f"stream counts must be >= 1, got {text!r}")
    return counts


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    return parse


def _now_ms() -> int:
    return int(time.time() * 1000)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _host_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat; busy excludes idle and iowait."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    total = sum(ticks[:8])  # guest time is already counted in user and nice
    return total - idle, total


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    sys.exit(main())
