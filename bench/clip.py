"""Benchmark: 1080p clips from recorded HLS against ffmpeg, and long session exports.

    python bench/clip.py [--clip-seconds 60] [--export-hours 2] [--repeat 3]

1. A pool of 1080p30 H.264 + AAC MPEG-TS segments (2 s, ~6 Mbit/s) is encoded once
   into bench/.cache/ and served as a static VOD on 127.0.0.1; a real Daemon records it.
2. A range that starts mid-GOP is clipped over HTTP in each mode, timed from the POST
   to `ready` (median of --repeat, after one unmeasured warm-up); every output is checked.
3. ffmpeg cuts the same range from the same stored files (concat demuxer): by stream
   copy once in each round of our clips (so a noisy host shifts both figures alike),
   then by a full re-encode.
4. A session export of --export-hours runs in a child process, on an index built from
   the pool (bench/_export.py), so that its peak RSS is its own; a shorter one runs too.

Progress goes to stderr; the report goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import av
from _export import build_session
from _media import CACHE, PDT0_MS, Pool, PoolSpec, check_mp4, ensure_pool, summarize_mp4
from _stages import STAGES, StageTimer, breakdown
from aiohttp import web

from livecut.config import Config, StreamConfig, default_config
from livecut.daemon import Daemon
from livecut.hls.playlist import MediaPlaylist, parse_playlist
from livecut.store.records import ClipRow

STREAM = "cam"
CLIP_START_MS = 7_517  # from the first PDT: 517 ms after the keyframe at 7 s, mid-GOP
POOL_MIN_SEGMENTS = 40
POOL_MARGIN_SEGMENTS = 3
RETENTION_S = 100 * 365 * 86400.0  # the pool's PDTs are fixed in the past: keep them
RECORD_TIMEOUT_S = 300.0
CLIP_TIMEOUT_S = 600.0
FFMPEG_TIMEOUT_S = 1800.0
SHORT_EXPORT_S = 600
DISK_RESERVE_BYTES = 2 * 2**30  # left free whatever the export needs
EXPORT_CHILD = Path(__file__).resolve().parent / "_export.py"
TARGET_FRAME_OVER_COPY = 0.25  # a frame-accurate clip, structural check included
TARGET_REENCODE_OVER_FRAME = 10.0
FLAT_RSS_MB = 16.0  # growth of peak RSS from the short to the full export still called flat
RSS_STEPS = 10
LOADED_PER_CPU = 0.5  # 1-minute load average per CPU above which timings are flagged noisy
MB = 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the range ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipRange:
    spec: PoolSpec
    start_ms: int  # absolute Unix ms
    end_ms: int

    @staticmethod
    def of(spec: PoolSpec, clip_seconds: float) -> ClipRange:
        start = PDT0_MS + CLIP_START_MS
        return ClipRange(spec=spec, start_ms=start, end_ms=start + round(clip_seconds * 1000))

    @property
    def first_frame(self) -> int:
        return self.spec.frame_covering(self.start_ms - PDT0_MS)

    @property
    def last_frame(self) -> int:
        return self.spec.frame_covering(self.end_ms - 1 - PDT0_MS)

    @property
    def keyframe(self) -> int:
        """The frame a keyframe-accurate clip starts on: GOPs are one second long."""
        return self.first_frame - self.first_frame % self.spec.fps

    @property
    def keyframe_ms(self) -> int:
        return PDT0_MS + round(self.spec.frame_ms(self.keyframe))

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


# --- results --------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class Timing:
    label: str
    runs_s: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)  # per run
    check: str = ""
    refused: str | None = None  # why the daemon would not take the request

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    def median_stages(self) -> dict[str, float]:
        """The stages of the run whose total is the median one."""
        if not self.stages:
            return {}
        order = sorted(range(len(self.runs_s)), key=lambda i: self.runs_s[i])
        return self.stages[order[(len(order) - 1) // 2]]

    def median_run_s(self) -> float:
        order = sorted(self.runs_s)
        return order[(len(order) - 1) // 2]


@dataclass(frozen=True, kw_only=True, slots=True)
class Variant:
    key: str
    label: str
    body: dict[str, object]


VARIANTS = (
    Variant(key="keyframe", label='livecut accuracy="keyframe"', body={"accuracy": "keyframe"}),
    Variant(key="frame", label='livecut accuracy="frame" (default)', body={}),
    Variant(key="hls", label='livecut formats=["hls"]', body={"formats": ["hls"]}),
    Variant(key="edges", label="livecut reencode_edges=true", body={"reencode_edges": True}),
    Variant(
        key="faststart", label="livecut faststart=true (index first)", body={"faststart": True}
    ),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Recorded:
    record_s: float
    segments: int
    stored: list[Path]  # the stored files the range needs, in order
    stored_start_ms: int  # wall time of the first one


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipBench:
    recorded: Recorded
    timings: dict[str, Timing]


# --- recording the pool ---------------------------------------------------------------------


def record_config(data_dir: Path, url: str) -> Config:
    base = default_config(data_dir)
    return replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        streams=(
            StreamConfig(
                id=STREAM,
                url=url,
                retention_s=RETENTION_S,
                session_gap_s=30.0,
                headers=(),
                enabled=True,
            ),
        ),
    )


@asynccontextmanager
async def recorded_pool(pool: Pool, data_dir: Path) -> AsyncIterator[tuple[Daemon, float]]:
    """A daemon that has recorded the whole pool from a static origin on 127.0.0.1."""
    app = web.Application()
    app.router.add_static("/vod", pool.folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        daemon = Daemon(record_config(data_dir, f"http://127.0.0.1:{port}/vod/index.m3u8"))
        began = time.perf_counter()
        await daemon.start()
        try:
            await _until_ended(daemon, RECORD_TIMEOUT_S)
            yield daemon, time.perf_counter() - began
        finally:
            await daemon.stop()
    finally:
        await runner.cleanup()


async def _until_ended(daemon: Daemon, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        sessions = await daemon.store.index.sessions(STREAM)
        if sessions and sessions[0].state == "ended":
            return
        left = deadline - loop.time()
        if left <= 0:
            raise RuntimeError(f"the daemon did not finish recording within {timeout_s:g}s")
        await daemon.store.edges.wait(STREAM, min(left, 1.0))


# --- clips through the API --------------------------------------------------------------------


class Refused(RuntimeError):
    def __init__(self, status: int, body: object) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


async def timed_clip(
    daemon: Daemon, http: aiohttp.ClientSession, body: Mapping[str, object]
) -> tuple[float, ClipRow]:
    """Seconds from the POST to `ready`, and the finished clip."""
    began = time.perf_counter()
    async with http.post(f"{daemon.base_url}/v1/clips", json={"stream": STREAM, **body}) as r:
        created = await r.json()
        if r.status != 202:
            raise Refused(r.status, created)
    clip = await daemon.jobs.wait_finished(str(created["id"]), CLIP_TIMEOUT_S)
    elapsed = time.perf_counter() - began
    if clip is None or clip.state != "ready" or clip.result is None:
        raise RuntimeError(f"clip did not become ready: {clip}")
    return elapsed, clip


async def bench_clips(pool: Pool, clip: ClipRange, repeat: int, work: Path) -> ClipBench:
    data_dir = work / "data"
    timer = StageTimer()
    timer.install()
    try:
        async with recorded_pool(pool, data_dir) as (daemon, record_s):
            segments = await daemon.store.index.stream_segments(STREAM, 0, 2**62)
            log(f"recorded {len(segments)} segments in {record_s:.1f} s")
            if len(segments) != len(pool.segments):
                raise RuntimeError(f"recorded {len(segments)} of {len(pool.segments)} segments")
            needed = [
                s for s in segments if s.end_ms > clip.keyframe_ms and s.start_ms < clip.end_ms
            ]
            recorded = Recorded(
                record_s=record_s,
                segments=len(segments),
                stored=[daemon.store.path(s.path) for s in needed],
                stored_start_ms=needed[0].start_ms,
            )
            base = {"start_ms": clip.start_ms, "end_ms": clip.end_ms}
            timings = {v.key: Timing(label=v.label) for v in VARIANTS}
            peer = PeerRunner(recorded, clip, work)
            async with aiohttp.ClientSession() as http:
                _, warm = await timed_clip(daemon, http, base)  # first-use costs, not counted
                await daemon.jobs.delete(warm.id)
                await asyncio.to_thread(peer.warm_up)
                for n in range(repeat):
                    for variant in VARIANTS:
                        timing = timings[variant.key]
                        if timing.refused is not None:
                            continue
                        log(f"clip {variant.key}, run {n + 1}/{repeat}")
                        timer.take()
                        try:
                            elapsed, done = await timed_clip(daemon, http, {**base, **variant.body})
                        except Refused as exc:
                            timing.refused = _refusal(exc)
                            continue
                        timing.runs_s.append(elapsed)
                        timing.stages.append(timer.take())
                        if n == 0:
                            timing.check = await _check_clip(daemon, http, variant, done, clip)
                        await daemon.jobs.delete(done.id)
                    # The copy peer runs in the same rounds as our clips, so that both see
                    # the machine in the same state (a noisy host shifts both, not one).
                    log(f"copy, run {n + 1}/{repeat}")
                    await asyncio.to_thread(peer.time, COPY_PEER, check=n == 0)
            timings.update(peer.timings)
            return ClipBench(recorded=recorded, timings=timings)
    finally:
        timer.uninstall()


def _refusal(exc: Refused) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return f"HTTP {exc.status}: " + "; ".join(str(e) for e in body["errors"])
    return str(exc)


async def _check_clip(
    daemon: Daemon,
    http: aiohttp.ClientSession,
    variant: Variant,
    done: ClipRow,
    clip: ClipRange,
) -> str:
    assert done.result is not None
    folder = daemon.store.clip_dir(done.id)
    if variant.key == "hls":
        return await _check_hls(daemon, http, done, clip)
    first = clip.keyframe if variant.key == "keyframe" else clip.first_frame
    found = await asyncio.to_thread(check_mp4, folder / "clip.mp4")
    stored = summarize_mp4(folder / "clip.mp4").video_samples
    want = clip.last_frame - first + 1
    reported = _video_frames(done.result)
    problems = []
    hidden = stored - found.frames  # pre-roll and trailing references under the edit list
    pre_roll = clip.first_frame - clip.keyframe
    if variant.key == "edges" and hidden >= pre_roll:
        problems.append(f"edge NOT re-encoded: {hidden} frames hidden by the edit list")
    shown = (found.frames, found.first_number, found.last_number, found.repeated, found.missing)
    if shown != (want, first, clip.last_frame, 0, 0):
        problems.append(f"want {want} fr #{first}-#{clip.last_frame}")
    if reported != want:
        problems.append(f"API says {reported} fr")
    if (found.width, found.height) != (clip.spec.width, clip.spec.height) or not found.audio:
        problems.append(f"{found.width}x{found.height} audio={found.audio}")
    verdict = "ok" if not problems else "WRONG: " + ", ".join(problems)
    return f"{verdict} {found.describe()} (+{hidden} hidden)"


def _video_frames(result: dict[str, object]) -> int | None:
    tracks = result.get("tracks")
    if not isinstance(tracks, list):
        return None
    video = [t for t in tracks if isinstance(t, dict) and t.get("kind") == "video"]
    return int(video[0]["frames"]) if video else None


async def _check_hls(
    daemon: Daemon, http: aiohttp.ClientSession, done: ClipRow, clip: ClipRange
) -> str:
    """The playlist lists whole stored segments covering the range; its ends are served."""
    url = f"{daemon.base_url}/v1/clips/{done.id}/index.m3u8"
    async with http.get(url) as response:
        text = await response.text()
    playlist = parse_playlist(text, url)
    if not isinstance(playlist, MediaPlaylist) or not playlist.segments:
        return "WRONG: not a media playlist"
    first_ms = playlist.segments[0].pdt_ms
    last = playlist.segments[-1]
    end_ms = None if last.pdt_ms is None else last.pdt_ms + last.duration_ms
    problems = []
    if not playlist.ended:
        problems.append("no ENDLIST")
    if first_ms is None or end_ms is None or first_ms > clip.start_ms or end_ms < clip.end_ms:
        problems.append(f"covers {first_ms}-{end_ms}")
    for segment in (playlist.segments[0], last):
        async with http.get(segment.uri) as response:
            body = await response.read()
            if response.status != 200 or len(body) < 188 or body[0] != 0x47:
                problems.append(f"{segment.uri}: HTTP {response.status}, {len(body)} bytes")
    verdict = "ok" if not problems else "WRONG: " + ", ".join(problems)
    span = (
        ""
        if first_ms is None or end_ms is None
        else f" +{(first_ms - PDT0_MS) / 1000:.3f}-+{(end_ms - PDT0_MS) / 1000:.3f}s"
    )
    return f"{verdict} {len(playlist.segments)} seg{span}"


# --- ffmpeg peers ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Peer:
    key: str
    label: str
    codec_args: tuple[str, ...]


COPY_PEER = Peer(key="copy", label="ffmpeg -ss -i concat -t -c copy", codec_args=("-c", "copy"))
REENCODE_PEER = Peer(
    key="reencode",
    label="ffmpeg ... -c:v libx264 -preset veryfast -c:a aac",
    codec_args=("-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"),
)
PEERS = (COPY_PEER, REENCODE_PEER)


def ffmpeg_command(
    peer: Peer, concat: Path, offset_s: float, seconds: float, out: Path
) -> list[str]:
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{offset_s:.3f}",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        str(concat),
        "-t",
        f"{seconds:.3f}",
        *peer.codec_args,
        str(out),
    ]


class PeerRunner:
    """ffmpeg on the same stored files as the clip (concat demuxer), timed run by run."""

    def __init__(self, recorded: Recorded, clip: ClipRange, work: Path) -> None:
        self.concat = work / "range.ffconcat"
        lines = ["ffconcat version 1.0", *(f"file '{path}'" for path in recorded.stored)]
        self.concat.write_text("\n".join(lines) + "\n")
        self.offset_s = (clip.start_ms - recorded.stored_start_ms) / 1000
        self.clip = clip
        self.out = work / "peer.mp4"
        self.timings = {p.key: Timing(label=p.label) for p in PEERS}

    def warm_up(self) -> None:
        _run(self.command(COPY_PEER))  # not counted
        self.out.unlink()

    def command(self, peer: Peer) -> list[str]:
        return ffmpeg_command(peer, self.concat, self.offset_s, self.clip.seconds, self.out)

    def time(self, peer: Peer, *, check: bool) -> None:
        began = time.perf_counter()
        _run(self.command(peer))
        self.timings[peer.key].runs_s.append(time.perf_counter() - began)
        if check:
            self.timings[peer.key].check = _check_peer(self.out, self.clip)
        self.out.unlink()


def bench_reencode(clips: ClipBench, clip: ClipRange, repeat: int, work: Path) -> None:
    """The re-encoding peer, after the clips (it heats the machine for a minute a run)."""
    peer = PeerRunner(clips.recorded, clip, work)
    for n in range(repeat):
        log(f"reencode, run {n + 1}/{repeat}")
        peer.time(REENCODE_PEER, check=n == 0)
    clips.timings[REENCODE_PEER.key] = peer.timings[REENCODE_PEER.key]


def _check_peer(out: Path, clip: ClipRange) -> str:
    """ffmpeg keeps the frames that start inside [start, end): say how far it got."""
    found = check_mp4(out)
    first = clip.spec.frame_covering(clip.start_ms - PDT0_MS - 1) + 1
    last = clip.last_frame
    want = (last - first + 1, first, last, 0, 0)
    shown = (found.frames, found.first_number, found.last_number, found.repeated, found.missing)
    verdict = "as expected" if shown == want else f"differs from {want[0]} fr #{first}-#{last}"
    return f"{found.describe()} ({verdict})"


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")


# --- session export ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportRun:
    label: str
    rows: int
    media_s: float
    elapsed_s: float
    size_bytes: int
    rss_before_mb: float  # VmRSS when the export was posted
    startup_peak_mb: float  # VmHWM then: the daemon's own start-up peak
    peak_rss_mb: float  # VmHWM at the end: the child's peak over its whole life
    rss_samples_mb: list[float]
    stages: dict[str, float]
    check: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportBench:
    note: str  # disk, scaling, how the index was built
    runs: list[ExportRun]


def bench_export(pool: Pool, hours: float) -> ExportBench:
    spec = pool.spec
    mean_bytes = pool.total_bytes / len(pool.segments)
    free = shutil.disk_usage(CACHE).free
    rows = round(hours * 3600_000 / spec.segment_ms)
    notes = [f"{free / 2**30:.1f} GiB free on {CACHE}"]
    affordable = int((free - DISK_RESERVE_BYTES) // mean_bytes)
    if rows > affordable:
        scaled = max(0, affordable) * spec.segment_ms / 3600_000
        notes.append(
            f"NOT ENOUGH DISK for {hours:g} h (~{rows * mean_bytes / 2**30:.1f} GiB of output"
            f" + {DISK_RESERVE_BYTES / 2**30:.0f} GiB reserve): scaled down to {scaled:.2f} h"
        )
        rows = max(0, affordable)
        log(notes[-1])
    if rows < 2:
        return ExportBench(note="; ".join([*notes, "export skipped"]), runs=[])
    with tempfile.TemporaryDirectory(prefix="export-", dir=CACHE) as tmp:
        data_dir = Path(tmp)
        log(f"building an index of {rows} segments ({rows * spec.segment_ms / 3600_000:.2f} h)")
        built = asyncio.run(
            build_session(
                pool.segments,
                data_dir,
                rows=rows,
                pdt0_ms=PDT0_MS,
                segment_ms=spec.segment_ms,
                resolution=f"{spec.width}x{spec.height}",
            )
        )
        notes.append(
            f"index of {rows} rows over the {len(pool.segments)}-segment pool (hard links)"
            f" built in {built.build_s:.1f} s"
        )
        total_s = (built.end_ms - built.first_ms) / 1000
        short_s = min(SHORT_EXPORT_S, math.floor(total_s / 2 / 60) * 60 or total_s / 2)
        runs = []
        for span_s, whole in ((short_s, False), (total_s, True)):
            label = _span_label(span_s)
            log(f"export {label} in a child process")
            end_ms = built.end_ms if whole else built.first_ms + round(span_s * 1000)
            span_rows = math.ceil((end_ms - built.first_ms) / spec.segment_ms)
            runs.append(
                _export_child(
                    data_dir,
                    built.session_id,
                    built.first_ms,
                    end_ms,
                    whole,
                    label,
                    span_rows,
                    spec,
                )
            )
    return ExportBench(note="; ".join(notes), runs=runs)


def _export_child(
    data_dir: Path,
    session_id: str,
    start_ms: int,
    end_ms: int,
    whole: bool,
    label: str,
    rows: int,
    spec: PoolSpec,
) -> ExportRun:
    media_s = (end_ms - start_ms) / 1000
    timeout_s = 600 + media_s  # slower than real time would be a failure anyway
    command = [
        sys.executable,
        str(EXPORT_CHILD),
        "--data",
        str(data_dir),
        "--session",
        session_id,
        "--timeout-s",
        str(timeout_s),
    ]
    if not whole:
        command += ["--start-ms", str(start_ms), "--end-ms", str(end_ms)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 60)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"export child failed ({done.returncode}): {done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    output = Path(report["output"])
    try:
        size = output.stat().st_size
        summary = summarize_mp4(output)
    finally:
        shutil.rmtree(output.parent, ignore_errors=True)  # the big output goes at once
    result: dict[str, object] = report["result"]
    want = round(media_s * spec.fps)
    reported = _video_frames(result)
    ok = reported == want and abs(summary.duration_s - media_s) < 0.1
    check = f"{'ok' if ok else 'WRONG'} {reported} fr (want {want}), {summary.duration_s:.3f} s"
    samples = [kb / 1024 for _, kb in report["rss_samples"]]
    peak_kb = int(report["vmhwm_kb"])
    return ExportRun(
        label=label,
        rows=rows,
        media_s=media_s,
        elapsed_s=float(report["elapsed_s"]),
        size_bytes=size,
        rss_before_mb=int(report["rss_before_kb"]) / 1024,
        startup_peak_mb=int(report["hwm_before_kb"]) / 1024,
        peak_rss_mb=peak_kb / 1024,
        rss_samples_mb=samples,
        stages={str(k): float(v) for k, v in report["stages"].items()},
        check=check,
    )


def _span_label(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# --- the report --------------------------------------------------------------------------------


def render(
    args: argparse.Namespace,
    pool: Pool,
    clip: ClipRange,
    clips: ClipBench,
    export: ExportBench,
) -> str:
    spec = pool.spec
    out: list[str] = []
    add = out.append
    add(
        f"livecut clip benchmark: --clip-seconds {args.clip_seconds:g} --export-hours "
        f"{args.export_hours:g} --repeat {args.repeat}"
    )
    add(
        f"host: {os.cpu_count()} CPUs; {_ffmpeg_version()}; PyAV {av.__version__} "
        f"(libavformat {'.'.join(map(str, av.library_versions['libavformat']))}); "
        f"load average {args.load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    if args.load_before > LOADED_PER_CPU * (os.cpu_count() or 1):
        add("      (the host was busy when the benchmark started: expect noisy timings)")
    add("")
    mean = pool.total_bytes / len(pool.segments)
    origin = "cached" if pool.encode_s is None else f"encoded now in {pool.encode_s:.0f} s"
    add(
        f"media   {spec.width}x{spec.height} {spec.fps} fps H.264 High + AAC 48 kHz stereo, "
        f"MPEG-TS, {spec.segment_ms / 1000:g} s segments, 1 s GOP, 2 B-frames"
    )
    add(
        f"        asked {spec.video_bitrate / 1e6:.2f} Mbit/s video; measured "
        f"{pool.mbit_per_s:.2f} Mbit/s on disk, all streams and TS overhead "
        f"({len(pool.segments)} segments, {pool.total_bytes / MB:.1f} MB, "
        f"{mean / MB:.2f} MB each)"
    )
    add(f"        pool: {pool.folder} ({origin})")
    rec = clips.recorded
    add(
        f"        recorded by a Daemon from a static VOD on 127.0.0.1: {rec.segments} "
        f"segments in {rec.record_s:.1f} s"
    )
    add(
        f"range   {clip.seconds:g} s from +{(clip.start_ms - PDT0_MS) / 1000:.3f} s "
        f"(mid-GOP: keyframe at +{(clip.keyframe_ms - PDT0_MS) / 1000:.3f} s); "
        f"frames #{clip.first_frame}-#{clip.last_frame} "
        f"({clip.last_frame - clip.first_frame + 1}); {len(rec.stored)} stored segments"
    )
    add("")
    head = f"time to ready, median of {args.repeat} after 1 warm-up"
    add(f"{head:<52} {'median':>8} {'min':>8} {'max':>8}  check")
    rows = list(clips.timings.values())
    for timing in rows:
        if timing.refused is not None or not timing.runs_s:
            add(f"  {timing.label:<50} {'n/a':>8}  ({timing.refused or 'no runs'})")
            continue
        add(
            f"  {timing.label:<50} {_s(timing.median_s):>8} {_s(min(timing.runs_s)):>8} "
            f"{_s(max(timing.runs_s)):>8}  {timing.check}"
        )
    add("  (livecut: POST /v1/clips -> state ready, in-process; ffmpeg: the whole subprocess)")
    add("")
    add("ratios")
    frame, copy, reencode = (clips.timings[k] for k in ("frame", "copy", "reencode"))
    if frame.runs_s and copy.runs_s and reencode.runs_s:
        over_copy = frame.median_s / copy.median_s
        over_frame = reencode.median_s / frame.median_s
        best_copy = min(frame.runs_s) / min(copy.runs_s)
        best_frame = min(reencode.runs_s) / min(frame.runs_s)
        met = "met" if over_copy <= TARGET_FRAME_OVER_COPY else "MISSED"
        add(
            f"  frame / copy      {over_copy:6.2f}   target <= {TARGET_FRAME_OVER_COPY:g}: {met:<6}"
            f"   (min / min: {best_copy:.2f})"
        )
        met = "met" if over_frame >= TARGET_REENCODE_OVER_FRAME else "MISSED"
        add(
            f"  reencode / frame  {over_frame:6.1f}   target >= "
            f"{TARGET_REENCODE_OVER_FRAME:g}: {met:<6}    (min / min: {best_frame:.1f})"
        )
    add("")
    add(_stage_table("where a clip's time goes (median run; exclusive wall time)", clips.timings))
    add("")
    add(_export_table(export))
    return "\n".join(out)


def _stage_table(title: str, timings: dict[str, Timing]) -> str:
    measured = [(k, t) for k, t in timings.items() if t.runs_s and t.stages]  # ours only
    lines = [f"{title:<52}" + "".join(f" {k:>9}" for k, _ in measured)]
    table: dict[str, list[str]] = {}
    for column, (_, timing) in enumerate(measured):
        for name, seconds in breakdown(timing.median_stages(), timing.median_run_s()):
            cells = table.setdefault(name, [""] * len(measured))
            cells[column] = _s(seconds)
    for name in [*STAGES, *table]:
        if name in table:
            lines.append(f"  {name:<50}" + "".join(f" {c:>9}" for c in table.pop(name)))
    return "\n".join(lines)


def _export_table(export: ExportBench) -> str:
    lines = [
        "session export: POST /v1/sessions/{id}/export (mp4, frame accuracy), "
        "one child process each",
        f"  {export.note}",
    ]
    if not export.runs:
        return "\n".join(lines)
    lines.append(
        f"  {'span':<8} {'rows':>5} {'ready':>8} {'output':>9} {'MB/s':>6} {'x real':>7} "
        f"{'RSS before':>10} {'peak RSS':>9} {'growth':>7}  check"
    )
    for run in export.runs:
        lines.append(
            f"  {run.label:<8} {run.rows:>5} {_s(run.elapsed_s):>8} "
            f"{run.size_bytes / MB:>6.0f} MB {run.size_bytes / MB / run.elapsed_s:>6.0f} "
            f"{run.media_s / run.elapsed_s:>6.0f}x {run.rss_before_mb:>7.0f} MB "
            f"{run.peak_rss_mb:>6.0f} MB {run.peak_rss_mb - run.rss_before_mb:>+4.0f} MB  "
            f"{run.check}"
        )
    short, full = export.runs[0], export.runs[-1]
    growth = full.peak_rss_mb - short.peak_rss_mb
    flat = growth <= FLAT_RSS_MB
    lines.append(
        f"  peak RSS {full.label} vs {short.label}: {full.peak_rss_mb:.0f} vs "
        f"{short.peak_rss_mb:.0f} MB ({growth:+.0f} MB for {full.media_s / short.media_s:.0f}x "
        f"the media): {'flat' if flat else 'NOT flat'} (flat: within {FLAT_RSS_MB:g} MB)"
    )
    for run in export.runs:
        lines.append(
            f"  VmRSS during {run.label}, in {RSS_STEPS} steps: {_rss_steps(run)}"
            f" (start-up peak before the POST: {run.startup_peak_mb:.0f} MB)"
        )
    for run in export.runs:
        parts = [
            f"{name} {_s(seconds)} ({seconds / run.elapsed_s:.0%})"
            for name, seconds in breakdown(run.stages, run.elapsed_s)
        ]
        lines.append(f"  time of {run.label}: " + ", ".join(parts))
    return "\n".join(lines)


def _rss_steps(run: ExportRun) -> str:
    samples = run.rss_samples_mb
    if not samples:
        return "(too short to sample)"
    picks = [
        samples[min(len(samples) - 1, (len(samples) * k) // RSS_STEPS)] for k in range(RSS_STEPS)
    ]
    return " ".join(f"{mb:.0f}" for mb in [*picks, samples[-1]]) + " MB"


def _s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _ffmpeg_version() -> str:
    done = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30)
    words = done.stdout.split()
    return f"ffmpeg {words[2]}" if len(words) > 2 else "ffmpeg (version unknown)"


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clip-seconds", type=_positive(float), default=60.0)
    parser.add_argument("--export-hours", type=_non_negative(float), default=2.0)
    parser.add_argument("--repeat", type=_positive(int), default=3)
    args = parser.parse_args(argv)
    if args.clip_seconds < 1:
        parser.error("--clip-seconds must be at least 1")
    return args


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    return parse


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _number(kind, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
        return value

    return parse


def _number(kind: Callable[[str], Any], text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    if shutil.which("ffmpeg") is None:
        log("ffmpeg is not on PATH: it is needed as the peer to compare against")
        return 2
    spec = PoolSpec()
    clip = ClipRange.of(spec, args.clip_seconds)
    needed = math.ceil((clip.end_ms - PDT0_MS) / spec.segment_ms) + POOL_MARGIN_SEGMENTS
    pool = ensure_pool(spec, max(POOL_MIN_SEGMENTS, needed))
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clips-", dir=CACHE) as tmp:
        work = Path(tmp)
        clips = asyncio.run(bench_clips(pool, clip, args.repeat, work))
        bench_reencode(clips, clip, args.repeat, work)
    export = bench_export(pool, args.export_hours)
    print(render(args, pool, clip, clips, export))
    return 0


if __name__ == "__main__":
    sys.exit(main())
