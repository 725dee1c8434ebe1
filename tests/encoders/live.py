"""One live run of every case at once: encoders, origins, a daemon recording them all, clips.

The encoders' own files and the clips' outputs stay on disk; the analysis (decoding)
happens afterwards in worker processes, see tests/test_conformance.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import aiohttp

from livecut.config import Config, StreamConfig, default_config
from livecut.daemon import Daemon
from livecut.store.records import SegmentRow
from tests.encoders import runners
from tests.encoders.cases import LIVE_S, RESTART_SIZE, SIZE, Case
from tests.encoders.source import Mezzanine, write_mezzanine
from tests.encoders.truth import parse_playlist
from tests.harness import until

RESTART_FIRST_FRAME = 100_000  # the second run's pictures count on from here
LIVE_CLIPS_AT_S = 24.0  # recorded media every case has before the live clips are cut
LIVE_CLIPS = 6
ENDED_CLIPS = 10
NGINX_SESSION_GAP_S = 6.0  # nginx-rtmp never writes ENDLIST: the session ends by silence
BOUNDARY_MARGIN_MS = 2  # PDTs have 1 ms precision; instants keep this far from frame changes


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipTry:
    case: str
    phase: str  # live | ended
    start_ms: int
    end_ms: int
    accuracy: str
    state: str
    error: str | None
    result: dict[str, object]
    # Each MP4 delivered, with its part of the result (a clip across a change of codec
    # parameters comes in pieces, one file each); empty when nothing was delivered.
    outputs: tuple[tuple[Path, dict[str, object]], ...]


@dataclass(kw_only=True, slots=True)
class CaseRecord:
    case: Case
    folder: Path  # the origin's files for this case
    playlists: list[str] = field(default_factory=list)  # as first seen for each segment
    segments: list[SegmentRow] = field(default_factory=list)
    clips: list[ClipTry] = field(default_factory=list)
    encoder_exit: list[int] = field(default_factory=list)

    @property
    def beep_every(self) -> int:
        return round(self.case.fps)

    @property
    def frame_ms(self) -> float:
        return float(1000 / self.case.fps)


async def record_all(
    cases: tuple[Case, ...], root: Path, *, index_url: str | None = None
) -> list[CaseRecord]:
    """Encode every case live, record them all with one daemon (its index on PostgreSQL
    with index_url), cut clips live and after the end."""
    mezzanines = await _mezzanines(cases, root / "mezzanine")
    origin_root = root / "origin"
    records = []
    for case in cases:
        folder = origin_root / case.name
        folder.mkdir(parents=True)
        records.append(CaseRecord(case=case, folder=folder))
    processes = runners.Processes()
    nginx: runners.Nginx | None = None
    encoders: list[asyncio.Task[None]] = []
    try:
        if any(c.encoder == "nginx-rtmp" for c in cases):
            nginx = runners.Nginx(root / "nginx", fragment_s=2)
            await processes.start(nginx.args(), root / "nginx" / "stdout.log")
            await nginx.wait_listening(timeout_s=20)
        async with runners.static_origin(origin_root) as origin_url:
            encoders += [
                asyncio.create_task(_encode(r, mezzanines, processes, nginx)) for r in records
            ]
            urls = {r.case.name: _playlist_url(r, origin_url, nginx) for r in records}
            await _playlists_exist(urls, timeout_s=30)
            config = _config(root / "data", records, urls, index_url)
            daemon = Daemon(config)
            await daemon.start()
            try:
                await _recorded_for(daemon, records, LIVE_CLIPS_AT_S, timeout_s=60)
                await _cut(daemon, records, "live", LIVE_CLIPS)
                await asyncio.gather(*encoders)
                await _all_ended(daemon, records, timeout_s=NGINX_SESSION_GAP_S + 30)
                await _cut(daemon, records, "ended", ENDED_CLIPS)
                for record in records:
                    record.playlists.append(_final_playlist(record, nginx))
                    record.segments = await _recorded_segments(daemon, record.case.name)
            finally:
                await daemon.stop()
    finally:
        # Encoders first, so a restart case cannot start its second run after close().
        for task in encoders:
            task.cancel()
        await asyncio.gather(*encoders, return_exceptions=True)
        await processes.close()
    return records


async def _mezzanines(cases: tuple[Case, ...], folder: Path) -> dict[tuple[object, ...], Mezzanine]:
    folder.mkdir(parents=True)
    wanted: set[tuple[Fraction, tuple[int, int], int, float]] = set()
    for case in cases:
        if case.restart:
            wanted.add((case.fps, SIZE, 0, LIVE_S / 2 + 1))
            wanted.add((case.fps, RESTART_SIZE, RESTART_FIRST_FRAME, LIVE_S / 2 + 1))
        else:
            wanted.add((case.fps, SIZE, 0, LIVE_S))
    keys = sorted(wanted, key=str)
    made = await asyncio.gather(
        *(
            asyncio.to_thread(
                write_mezzanine,
                folder / f"m{n}.mov",
                fps=fps,
                width=size[0],
                height=size[1],
                seconds=seconds,
                first_frame=first,
            )
            for n, (fps, size, first, seconds) in enumerate(keys)
        )
    )
    return dict(zip(keys, made, strict=True))


async def _encode(
    record: CaseRecord,
    mezzanines: dict[tuple[object, ...], Mezzanine],
    processes: runners.Processes,
    nginx: runners.Nginx | None,
) -> None:
    case, folder = record.case, record.folder
    log = folder.parent.parent / f"{case.name}.log"
    if case.encoder == "gstreamer":
        mezzanine = mezzanines[(case.fps, SIZE, 0, LIVE_S)]
        record.encoder_exit.append(
            await processes.run(runners.gstreamer_hls(case, mezzanine, folder), log)
        )
    elif case.encoder == "nginx-rtmp":
        assert nginx is not None
        mezzanine = mezzanines[(case.fps, SIZE, 0, LIVE_S)]
        args = runners.ffmpeg_rtmp(case, mezzanine, nginx.rtmp_url(case.name), seconds=LIVE_S)
        record.encoder_exit.append(await processes.run(args, log))
    elif case.restart:
        half = LIVE_S / 2
        first = mezzanines[(case.fps, SIZE, 0, half + 1)]
        args = runners.ffmpeg_hls(case, first, folder, seconds=half)
        record.encoder_exit.append(await processes.run(args, log))
        # ffmpeg rewrites the whole playlist when it appends; keep what the first run said.
        record.playlists.append((folder / "index.m3u8").read_text())
        second = mezzanines[(case.fps, RESTART_SIZE, RESTART_FIRST_FRAME, half + 1)]
        args = runners.ffmpeg_hls(case, second, folder, seconds=half, appending=True)
        record.encoder_exit.append(await processes.run(args, log))
    else:
        mezzanine = mezzanines[(case.fps, SIZE, 0, LIVE_S)]
        args = runners.ffmpeg_hls(case, mezzanine, folder, seconds=LIVE_S)
        record.encoder_exit.append(await processes.run(args, log))


def _playlist_url(record: CaseRecord, origin_url: str, nginx: runners.Nginx | None) -> str:
    if record.case.encoder == "nginx-rtmp":
        assert nginx is not None
        return nginx.playlist_url(record.case.name)
    return f"{origin_url}/{record.case.name}/index.m3u8"


def _final_playlist(record: CaseRecord, nginx: runners.Nginx | None) -> str:
    if record.case.encoder == "nginx-rtmp":
        assert nginx is not None
        hls = nginx.folder / "hls"
        for path in hls.glob(f"{record.case.name}*"):
            shutil.copy(path, record.folder / path.name)
        return (record.folder / f"{record.case.name}.m3u8").read_text()
    return (record.folder / "index.m3u8").read_text()


async def _playlists_exist(urls: dict[str, str], timeout_s: float) -> None:
    """Poll (bounded) until every origin serves its playlist: files appear without notice."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = dict(urls)
    async with aiohttp.ClientSession() as http:
        while waiting:
            for name, url in list(waiting.items()):
                async with http.get(url) as response:
                    if response.status == 200 and "#EXTINF" in await response.text():
                        del waiting[name]
            if loop.time() > deadline:
                raise AssertionError(f"no playlist within {timeout_s}s from {sorted(waiting)}")
            await asyncio.sleep(0.1)


def _config(
    data_dir: Path, records: list[CaseRecord], urls: dict[str, str], index_url: str | None
) -> Config:
    base = default_config(data_dir)
    streams = tuple(
        StreamConfig(
            id=r.case.name,
            url=urls[r.case.name],
            retention_s=3600.0,
            session_gap_s=NGINX_SESSION_GAP_S if r.case.encoder == "nginx-rtmp" else 30.0,
            headers=(),
            enabled=True,
        )
        for r in records
    )
    return replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        clips=replace(base.clips, max_wait_s=30.0),
        streams=streams,
        cluster=replace(base.cluster, index_url=index_url or base.cluster.index_url),
    )


async def _recorded_ms(daemon: Daemon, stream: str) -> int:
    sessions = await daemon.store.index.sessions(stream)
    if not sessions or sessions[-1].live_edge_ms is None:
        return 0
    session = sessions[-1]
    assert session.live_edge_ms is not None
    return session.live_edge_ms - session.started_ms


async def _recorded_at_least(daemon: Daemon, stream: str, ms: float) -> bool:
    return await _recorded_ms(daemon, stream) >= ms


async def _recorded_for(
    daemon: Daemon, records: list[CaseRecord], seconds: float, timeout_s: float
) -> None:
    for record in records:
        name = record.case.name
        await until(
            daemon,
            name,
            lambda n=name: _recorded_at_least(daemon, n, seconds * 1000),
            timeout_s=timeout_s,
        )


async def _all_ended(daemon: Daemon, records: list[CaseRecord], timeout_s: float) -> None:
    async def ended(name: str) -> bool:
        sessions = await daemon.store.index.sessions(name)
        return bool(sessions) and all(s.state == "ended" for s in sessions)

    for record in records:
        name = record.case.name
        await until(daemon, name, lambda n=name: ended(n), timeout_s=timeout_s)


async def _recorded_segments(daemon: Daemon, stream: str) -> list[SegmentRow]:
    index = daemon.store.index
    rows: list[SegmentRow] = []
    for session in await index.sessions_in_opening_order(stream):
        for rendition in await index.renditions(session.id):
            if rendition.main:
                rows += await index.rendition_segments(rendition.id)
    return sorted(rows, key=lambda s: s.seq)


async def _windows(record: CaseRecord, daemon: Daemon) -> list[tuple[float, float, float]]:
    """(first instant, last instant, grid origin) of recorded stretches, wall ms.

    Frames change on a grid: each PDT (or, without PDT, the run's first segment start)
    plus whole frame durations. Clip instants are drawn away from that grid.
    """
    rows = await _recorded_segments(daemon, record.case.name)
    if record.case.pdt:
        text = (record.folder / "index.m3u8").read_text()
        pdts = {s.seq: s.pdt_ms for s in parse_playlist(text)}
        spans = []
        for row in rows:
            pdt = pdts.get(row.seq)
            if pdt is not None:
                spans.append((float(pdt), float(pdt + row.end_ms - row.start_ms), float(pdt)))
        return spans
    runs: dict[int, list[SegmentRow]] = {}
    for row in rows:
        runs.setdefault(row.epoch, []).append(row)
    return [
        (float(r[0].start_ms), float(r[-1].end_ms), float(r[0].start_ms)) for r in runs.values()
    ]


def _instant(rng: random.Random, lo: float, hi: float, grid: float, frame_ms: float) -> int | None:
    for _ in range(50):
        t = rng.randint(int(lo), int(hi))
        phase = (t - grid) % frame_ms
        if BOUNDARY_MARGIN_MS <= phase <= frame_ms - BOUNDARY_MARGIN_MS:
            return t
    return None


def plan_ranges(
    record: CaseRecord, spans: list[tuple[float, float, float]], phase: str, count: int
) -> list[tuple[int, int, str]]:
    """Seeded random (start, end, accuracy) inside what is recorded now (`spans`)."""
    rng = random.Random(f"{record.case.name}/{phase}")
    if not spans:
        return []
    lo, hi = spans[0][0], spans[-1][1] - 600
    frame_ms = record.frame_ms
    ranges: list[tuple[int, int, str]] = []
    attempts = 0
    while len(ranges) < count and attempts < 500:
        attempts += 1
        n = len(ranges)
        accuracy = "frame" if n % 2 == 0 else "keyframe"
        early = record.case.start_heavy or n == 0
        start_hi = spans[0][0] + 3000 if early else hi - 400
        start = _pick(rng, spans, lo, min(start_hi, hi - 400), frame_ms)
        if start is None:
            continue
        # livecut refuses ranges under 500 ms.
        length = rng.choice((rng.uniform(600, 2000), rng.uniform(2000, 9000)))
        if n == 1 and phase == "ended":
            length = rng.uniform(12_000, 20_000)  # across many joins
        end_last = _pick(rng, spans, start + length, min(hi, start + length + 200), frame_ms)
        if end_last is None or end_last < start + 550:
            continue
        ranges.append((start, end_last + 1, accuracy))
    return ranges


def _pick(
    rng: random.Random,
    spans: list[tuple[float, float, float]],
    lo: float,
    hi: float,
    frame_ms: float,
) -> int | None:
    """An instant in [lo, hi] inside a recorded stretch, away from every frame change."""
    for _ in range(50):
        if hi < lo:
            return None
        t = rng.uniform(lo, hi)
        span = next((s for s in spans if s[0] + 40 <= t <= s[1] - 40), None)
        if span is None:
            continue
        inst = _instant(rng, max(lo, span[0] + 40), min(hi, span[1] - 40), span[2], frame_ms)
        # Near a join the next segment's grid counts too (PDTs round to the ms).
        if inst is not None and all(
            BOUNDARY_MARGIN_MS <= (inst - s[2]) % frame_ms <= frame_ms - BOUNDARY_MARGIN_MS
            for s in spans
            if abs(s[2] - inst) < 3 * frame_ms
        ):
            return inst
    return None


async def _cut(daemon: Daemon, records: list[CaseRecord], phase: str, count: int) -> None:
    async with aiohttp.ClientSession() as http:
        jobs = []
        for record in records:
            spans = await _windows(record, daemon)
            ranges = plan_ranges(record, spans, phase, count)
            if phase == "live":
                edge = (await daemon.store.index.sessions(record.case.name))[-1].live_edge_ms
                assert edge is not None
                spans = await _windows(record, daemon)
                rng = random.Random(f"{record.case.name}/edge")
                start = _pick(rng, spans, edge - 1600, edge - 1400, record.frame_ms)
                if start is not None:
                    # A clip of the growing live edge: it waits for media not yet published.
                    frames = round(4000 / record.frame_ms)
                    ranges.append((start, start + round(frames * record.frame_ms) + 1, "frame"))
            if phase == "ended" and record.case.encoder == "nginx-rtmp":
                rng = random.Random("nginx/20s")
                start = _pick(rng, spans, spans[0][0] + 1000, spans[0][0] + 3000, record.frame_ms)
                if start is not None:
                    ranges.append((start, start + 20_500, "frame"))
            for start, end, accuracy in ranges:
                jobs.append(_clip(http, daemon, record, phase, start, end, accuracy))
        await asyncio.gather(*jobs)


async def _clip(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    record: CaseRecord,
    phase: str,
    start_ms: int,
    end_ms: int,
    accuracy: str,
) -> None:
    body = {
        "stream": record.case.name,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "accuracy": accuracy,
        "formats": ["mp4"],
    }
    async with http.post(f"{daemon.base_url}/v1/clips", json=body) as response:
        created = await response.json()
    if response.status != 202:
        record.clips.append(_failed(record, phase, body, f"HTTP {response.status}: {created}"))
        return
    clip = await daemon.jobs.wait_finished(created["id"], timeout_s=120)
    if clip is None or clip.state != "ready" or clip.result is None:
        error = "not finished" if clip is None else f"{clip.state}: {clip.error}"
        record.clips.append(_failed(record, phase, body, error))
        return
    folder = daemon.store.clip_dir(clip.id)
    pieces = clip.result.get("pieces")
    if isinstance(pieces, list):
        outputs = tuple((folder / p["file"]["name"], p) for p in pieces)
    else:
        outputs = ((folder / "clip.mp4", clip.result),)
    record.clips.append(
        ClipTry(
            case=record.case.name,
            phase=phase,
            start_ms=start_ms,
            end_ms=end_ms,
            accuracy=accuracy,
            state=clip.state,
            error=None,
            result=clip.result,
            outputs=outputs,
        )
    )


def _failed(record: CaseRecord, phase: str, body: dict[str, object], error: str) -> ClipTry:
    return ClipTry(
        case=record.case.name,
        phase=phase,
        start_ms=int(body["start_ms"]),  # type: ignore[call-overload]
        end_ms=int(body["end_ms"]),  # type: ignore[call-overload]
        accuracy=str(body["accuracy"]),
        state="failed",
        error=error,
        result={},
        outputs=(),
    )
