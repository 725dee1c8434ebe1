"""Recording through origin faults and HLS features: exactly what the index holds afterwards.

Each test runs a real Daemon against a LiveOrigin on 127.0.0.1 whose clock is fake:
the origin publishes a segment only when the test advances its clock, so every
playlist the daemon reads is known in advance. Faults come from a FaultScript
middleware. Waits are on the store's change notices, never on bare sleeps.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import itertools
import logging
import os
import random
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDictProxy

from livecut import metrics
from livecut.daemon import Daemon
from livecut.hls.playlist import MediaPlaylist, parse_playlist
from livecut.ingest import staging
from livecut.ingest.fetch import FetchError, backoff_s, fetch
from livecut.ingest.staging import stage_segment
from livecut.media.probe import ProbeError, probe_segment
from livecut.origin import LiveOrigin
from livecut.store import files
from livecut.store.index import Index
from livecut.store.records import GapRow, RenditionRow, SegmentRow, SessionRow
from tests.faults import (
    Delay,
    Fault,
    FaultScript,
    Freeze,
    Garbage,
    Oversize,
    Redirect,
    Reset,
    Status,
    Truncate,
)
from tests.harness import daemon_config, until

SEG_MS = 1000
WAIT_S = 15.0  # an upper bound for any one wait; a passing test never comes close


# --- the rig: origin + faults + daemon ---------------------------------------------------


class FakeClock:
    """The origin's clock: it publishes a segment when a test moves this by SEG_MS."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, kw_only=True, slots=True)
class Seen:
    """One request as the origin received it."""

    at: float  # loop time
    path_qs: str
    headers: CIMultiDictProxy[str]


@dataclass(kw_only=True, slots=True)
class RequestLog:
    """Middleware that remembers every request, outermost, so faulted ones count too."""

    seen: list[Seen] = field(default_factory=list)

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def remember(request: web.Request, handler: Handler) -> web.StreamResponse:
            loop = asyncio.get_running_loop()
            self.seen.append(Seen(at=loop.time(), path_qs=request.path_qs, headers=request.headers))
            return await handler(request)

        return remember

    def matching(self, needle: str) -> list[Seen]:
        return [s for s in self.seen if needle in s.path_qs]


def origin_errors(stream: str) -> dict[str, float]:
    """livecut_origin_errors_total{stream} by kind, as Prometheus would scrape it."""
    out: dict[str, float] = {}
    for metric in metrics.REGISTRY.collect():
        if metric.name != "livecut_origin_errors":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["stream"] == stream:
                out[sample.labels["kind"]] = sample.value
    return out


@dataclass(kw_only=True)
class Rig:
    origin: LiveOrigin
    clock: FakeClock
    script: FaultScript
    log: RequestLog
    daemon: Daemon
    stream: str
    errors_before: dict[str, float]

    @property
    def index(self) -> Index:
        return self.daemon.store.index

    def advance(self, segments: int = 1) -> None:
        """Publish `segments` more segments (and wake held blocking reloads)."""
        self.clock.now += segments * self.origin.segment_ms / 1000
        self.origin.tick()

    def pdt(self, index: int) -> int:
        return self.origin.segment_pdt_ms(index)

    # what the index holds
    async def sessions(self) -> list[SessionRow]:
        return list(await self.index.sessions_in_opening_order(self.stream))

    async def renditions(self, session: SessionRow) -> dict[str, RenditionRow]:
        return {r.name: r for r in await self.index.renditions(session.id)}

    async def main(self, session: SessionRow) -> RenditionRow | None:
        """The rendition clips are cut from; None until it is added (on PostgreSQL, the
        session's row is seen before its renditions' are)."""
        return next((r for r in await self.index.renditions(session.id) if r.main), None)

    async def segments(self, session: SessionRow | None = None) -> list[SegmentRow]:
        chosen = await self.sessions() if session is None else [session]
        out: list[SegmentRow] = []
        for s in chosen:
            main = await self.main(s)
            if main is not None:
                out += await self.index.rendition_segments(main.id)
        return out

    async def seqs(self, session: SessionRow | None = None) -> list[int]:
        return [s.seq for s in await self.segments(session)]

    async def gaps(self, session: SessionRow | None = None) -> list[GapRow]:
        chosen = await self.sessions() if session is None else [session]
        out: list[GapRow] = []
        for s in chosen:
            for rendition in await self.index.renditions(s.id):
                out += await self.index.rendition_gaps(rendition.id)
        return out

    async def gap_summary(
        self, session: SessionRow | None = None
    ) -> list[tuple[int | None, int | None, str]]:
        """(first_seq, last_seq, reason) of each gap, in the order recorded."""
        return [(g.first_seq, g.last_seq, g.reason) for g in await self.gaps(session)]

    def recorded(self, count: int, *, gaps: int | None = None) -> Callable[[], Awaitable[bool]]:
        """A predicate for until(): `count` segments recorded (and, given `gaps`, exactly
        that many gaps)."""

        async def holds() -> bool:
            if len(await self.segments()) < count:
                return False
            return gaps is None or len(await self.gaps()) == gaps

        return holds

    async def ended(self) -> bool:
        """The first session has ended."""
        sessions = await self.sessions()
        return bool(sessions) and sessions[0].state == "ended"

    def errors(self) -> dict[str, float]:
        """Origin errors counted since the rig started, by kind."""
        now = origin_errors(self.stream)
        return {
            k: v - self.errors_before.get(k, 0.0)
            for k, v in now.items()
            if v != self.errors_before.get(k, 0.0)
        }

    async def until(
        self, predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = WAIT_S
    ) -> None:
        await until(self.daemon, self.stream, predicate, timeout_s=timeout_s)

    async def api_stream(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.daemon.base_url}/v1/streams/{self.stream}") as response,
        ):
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def restart_daemon(self) -> None:
        """Stop the daemon and start a new one on the same data directory."""
        await self.daemon.stop()
        self.daemon = Daemon(self.daemon.config)
        await self.daemon.start()

    def files(self) -> list[Path]:
        root = self.daemon.store.root
        return [Path(d) / f for d, _, names in os.walk(root) for f in names]


@asynccontextmanager
async def rig(
    data_dir: Path,
    *,
    window: int = 6,
    prefill: int = 3,
    session_gap_s: float = 30.0,
    ingest: Mapping[str, Any] | None = None,
    stream: Mapping[str, Any] | None = None,
    middlewares: tuple[Middleware, ...] = (),
    script: FaultScript | None = None,
    **origin_options: Any,
) -> AsyncIterator[Rig]:
    """An origin publishing `prefill` segments, and a daemon recording it; `script`
    may hold faults for the very first requests."""
    clock = FakeClock()
    script = script or FaultScript()
    log = RequestLog()
    origin = LiveOrigin(
        segment_ms=SEG_MS,
        window=window,
        prefill=prefill,
        clock=clock,
        middlewares=(log.middleware, *middlewares, script.middleware),
        **origin_options,
    )
    url = await origin.start()
    config = daemon_config(data_dir, url, session_gap_s=session_gap_s)
    config = replace(
        config,
        ingest=replace(config.ingest, **(ingest or {})),
        streams=tuple(replace(s, **(stream or {})) for s in config.streams),
    )
    daemon = Daemon(config)
    the_rig = Rig(
        origin=origin,
        clock=clock,
        script=script,
        log=log,
        daemon=daemon,
        stream=config.streams[0].id,
        errors_before=origin_errors(config.streams[0].id),
    )
    try:
        await daemon.start()
        yield the_rig
    finally:
        script.clear()  # lets requests held by a Delay go
        await the_rig.daemon.stop()  # the one running now, after any restart_daemon()
        await origin.stop()
    # Whatever failed or was cancelled on the way, every download gave its bytes back.
    assert the_rig.daemon.segment_workers.budget.held == 0


def seg(index: int, extension: str = "ts") -> str:
    """A segment URI of the single-stream origin, as a regex for FaultScript."""
    return rf"/seg{index}\.{extension}$"


PLAYLIST = r"/index\.m3u8"


# --- faults that are retried: nothing is lost ---------------------------------------------

# Room for a loaded machine: an answer that is merely slow must not count as a timeout.
# The "timeout" fault holds its request until the test ends, so it times out whatever
# the load, and only after the full timeout_s.
TIMEOUTS = {"segment_timeout_s": 2.0, "playlist_timeout_s": 2.0}

# (fault, how many requests it takes, the error kind each one counts as)
RETRIED: dict[str, tuple[Fault, int, str]] = {
    "404": (Status(404), 2, "http_404"),
    "403": (Status(403), 2, "http_403"),
    "500": (Status(500), 2, "http_5xx"),
    "503": (Status(503), 1, "http_5xx"),
    "timeout": (Delay(WAIT_S), 1, "timeout"),
    "truncated": (Truncate(0.5), 2, "truncated"),
}


@pytest.mark.parametrize("name", list(RETRIED))
async def test_a_segment_fault_is_retried_and_the_segment_recorded(
    data_dir: Path, name: str
) -> None:
    fault, times, kind = RETRIED[name]
    async with rig(data_dir, prefill=4, ingest=TIMEOUTS) as r:
        rule = r.script.add(seg(2), fault, times=times)
        await r.until(r.recorded(4))
        assert await r.seqs() == [0, 1, 2, 3]
        assert await r.gaps() == []
        assert rule.applied == times
        assert r.errors() == {kind: times}
        assert len(r.log.matching("seg2.ts")) == times + 1
        [session] = await r.sessions()
        assert session.state == "live"
        status = await r.api_stream()
        assert status["state"] == "recording"
        assert (status["segments_recorded"], status["gaps"], status["errors"]) == (4, 0, times)
        assert "seg2.ts" in status["last_error"]


async def test_a_connection_reset_is_retried_and_the_segment_recorded(data_dir: Path) -> None:
    async with rig(data_dir, prefill=4) as r:
        # aiohttp's client retries a GET once by itself after a reset; the second one is ours.
        rule = r.script.add(seg(2), Reset(), times=2)
        await r.until(r.recorded(4))
        assert await r.seqs() == [0, 1, 2, 3]
        assert await r.gaps() == []
        assert rule.applied == 2
        assert set(r.errors()) == {"connection"}
        assert 1 <= r.errors()["connection"] <= 2


async def test_unreadable_media_once_is_retried_and_the_segment_recorded(data_dir: Path) -> None:
    async with rig(data_dir, prefill=4) as r:
        r.script.add(seg(2), Garbage(), times=1)
        await r.until(r.recorded(4))
        assert await r.seqs() == [0, 1, 2, 3]
        assert await r.gaps() == []
        assert r.errors() == {"unreadable_media": 1}


PLAYLIST_RETRIED: dict[str, tuple[Fault, int, str]] = {
    **RETRIED,
    "unparseable": (Garbage(), 2, "playlist"),
}


@pytest.mark.parametrize("name", list(PLAYLIST_RETRIED))
async def test_a_playlist_fault_is_retried_and_nothing_is_lost(data_dir: Path, name: str) -> None:
    fault, times, kind = PLAYLIST_RETRIED[name]
    async with rig(data_dir, prefill=3, ingest=TIMEOUTS) as r:
        await r.until(r.recorded(3))
        rule = r.script.add(PLAYLIST, fault, times=times)
        r.advance(2)
        await r.until(r.recorded(5))
        assert await r.seqs() == [0, 1, 2, 3, 4]
        assert await r.gaps() == []
        assert rule.applied == times
        assert r.errors() == {kind: times}
        [session] = await r.sessions()
        assert session.state == "live" and session.live_edge_ms == r.pdt(5)


async def test_a_playlist_connection_reset_is_retried(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.script.add(PLAYLIST, Reset(), times=2)
        r.advance(2)
        await r.until(r.recorded(5))
        assert await r.seqs() == [0, 1, 2, 3, 4]
        assert await r.gaps() == []
        assert set(r.errors()) == {"connection"}


def trickle(pattern: str, pieces: int, pause_s: float) -> Middleware:
    """Middleware: send matching responses in `pieces` writes with pauses between, as a
    slow or distant origin does (what arrives first is only part of the body)."""

    @web.middleware
    async def slowly(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if pattern not in request.path or not isinstance(response, web.Response):
            return response
        assert isinstance(response.body, bytes)
        body = response.body
        streamed = web.StreamResponse(status=response.status)
        streamed.content_type = response.content_type
        streamed.content_length = len(body)
        await streamed.prepare(request)
        step = -(-len(body) // pieces)
        for offset in range(0, len(body), step):
            await streamed.write(body[offset : offset + step])
            await asyncio.sleep(pause_s)
        await streamed.write_eof()
        return streamed

    return slowly


async def test_a_segment_that_arrives_in_pieces_is_read_whole(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3, middlewares=(trickle(".ts", 4, 0.02),)) as r:
        await r.until(r.recorded(3))
        assert await r.seqs() == [0, 1, 2] and await r.gaps() == [] and r.errors() == {}
        assert [len(r.log.matching(f"seg{i}.ts")) for i in range(3)] == [1, 1, 1]


# --- segments that cannot be had: a gap that says why ---------------------------------


async def test_a_segment_that_keeps_failing_is_a_gap_by_the_time_it_expires(
    data_dir: Path,
) -> None:
    # seg0 is the oldest of a 3-segment window: it leaves the playlist one segment
    # duration after the daemon first sees it, so retries must stop by then.
    async with rig(data_dir, window=3, prefill=3) as r:
        r.script.add(seg(0), Status(503), times=None)
        await r.until(r.recorded(2, gaps=1))
        assert await r.seqs() == [1, 2]
        assert await r.gap_summary() == [(0, 0, "download_failed")]
        [gap] = await r.gaps()
        assert (gap.start_ms, gap.end_ms) == (r.pdt(0), r.pdt(1))
        attempts = r.log.matching("seg0.ts")
        assert 2 <= len(attempts) <= 5, "retried, a bounded number of times"
        assert attempts[-1].at - attempts[0].at <= SEG_MS / 1000 + 0.1, "not past its expiry"
        assert r.errors() == {"http_5xx": len(attempts)}
        status = await r.api_stream()
        assert (status["segments_recorded"], status["gaps"]) == (2, 1)


def test_backoff_is_exponential_with_full_jitter() -> None:
    random.seed(7)
    for attempt in range(8):
        ceiling = min(8.0, 0.25 * 2**attempt)
        delays = [backoff_s(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling, "jittered"


MAX_SEGMENT_BYTES = 1024 * 1024

# (fault on seg1, the error kind, how many requests it costs, the gap's reason)
LOST: dict[str, tuple[Fault, str, int, str]] = {
    "oversize": (Oversize(2 * MAX_SEGMENT_BYTES), "too_large", 1, "too_large"),
    "redirect-to-file": (Redirect("file:///etc/passwd"), "bad_redirect", 1, "refused"),
    "redirect-to-ftp": (Redirect("ftp://127.0.0.1/seg1.ts"), "bad_redirect", 1, "refused"),
    "garbage": (Garbage(), "unreadable_media", 2, "unreadable"),
}


@pytest.mark.parametrize("name", list(LOST))
async def test_a_segment_that_cannot_be_had_is_a_gap_that_says_why(
    data_dir: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fault, kind, requests, reason = LOST[name]
    caplog.set_level(logging.WARNING, logger="livecut")
    async with rig(data_dir, prefill=3, ingest={"max_segment_bytes": MAX_SEGMENT_BYTES}) as r:
        r.script.add(seg(1), fault, times=None)
        await r.until(r.recorded(2, gaps=1))
        assert await r.seqs() == [0, 2]
        assert await r.gap_summary() == [(1, 1, reason)]
        assert r.errors() == {kind: requests}
        assert len(r.log.matching("seg1.ts")) == requests
        # Kept out of the index and off the disk; the log names the segment.
        assert not any(p.name.endswith("-1.ts") for p in r.files())
        uri = f"{r.origin.base_url}/seg1.ts"
        assert any(uri in m and kind in m for m in caplog.messages)
        status = await r.api_stream()
        assert status["state"] == "recording" and status["gaps"] == 1
    passwd = Path("/etc/passwd").read_bytes()[:32]
    assert not any(passwd in p.read_bytes() for p in r.files())


def rewrite_playlist(old: str, new: str) -> Middleware:
    """Middleware: every media playlist the origin serves has `old` replaced by `new`."""

    @web.middleware
    async def rewrite(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith("index.m3u8") and isinstance(response, web.Response):
            assert response.text is not None
            response.text = response.text.replace(old, new)
        return response

    return rewrite


async def test_a_segment_uri_that_is_not_http_is_refused(data_dir: Path) -> None:
    unsafe = rewrite_playlist("\nseg1.ts", "\nfile:///etc/passwd")
    async with rig(data_dir, prefill=3, middlewares=(unsafe,)) as r:
        await r.until(r.recorded(2, gaps=1))
        assert await r.seqs() == [0, 2]
        assert await r.gap_summary() == [(1, 1, "refused")]
        assert r.errors() == {"bad_uri": 1}
    passwd = Path("/etc/passwd").read_bytes()[:32]
    assert not any(passwd in p.read_bytes() for p in r.files())


# --- sessions: silence, resets, clock jumps ---------------------------------------------


async def test_a_frozen_playlist_ends_the_session_and_recording_resumes(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3, session_gap_s=1.0) as r:
        await r.until(r.recorded(3))
        r.script.add(PLAYLIST, Freeze(), times=None)
        r.advance(2)  # published, but the playlist the daemon sees stays as it was
        await r.until(r.ended)
        [first] = await r.sessions()
        assert (first.end_reason, first.ended_ms) == ("silence", r.pdt(3))
        status = await r.api_stream()
        assert status["state"] == "stalled" and status["live_session"] is None
        r.script.clear()  # it moves again
        await r.until(r.recorded(5))
        first, second = await r.sessions()
        assert await r.seqs(first) == [0, 1, 2] and await r.seqs(second) == [3, 4]
        assert second.state == "live" and second.started_ms == r.pdt(3)
        assert await r.gaps() == []
        assert r.errors() == {}
        status = await r.api_stream()
        assert status["state"] == "recording" and status["live_session"] == second.id


async def test_a_media_sequence_reset_starts_a_new_session(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.origin.reset_sequence()
        r.advance(2)  # listed as media sequence 0 and 1
        await r.until(r.recorded(5))
        first, second = await r.sessions()
        assert (first.state, first.end_reason, first.ended_ms) == ("ended", "reset", r.pdt(3))
        assert await r.seqs(first) == [0, 1, 2] and await r.seqs(second) == [0, 1]
        assert [s.start_ms for s in await r.segments(second)] == [r.pdt(3), r.pdt(4)]
        assert second.state == "live" and second.started_ms == r.pdt(3)
        assert await r.gaps() == []


async def test_a_clock_that_jumps_back_starts_a_new_session_at_the_jump(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        # Both land in one reload: seg3 on the old clock, seg4 a minute back.
        r.advance(1)
        r.origin.shift_pdt(-60_000)
        r.advance(1)
        await r.until(r.recorded(5))
        first, second = await r.sessions()
        assert (first.end_reason, first.ended_ms) == ("clock_jump", r.pdt(3) + SEG_MS)
        assert await r.seqs(first) == [0, 1, 2, 3] and await r.seqs(second) == [4]
        assert second.started_ms == r.pdt(4) == r.pdt(3) + SEG_MS - 60_000
        assert await r.gaps() == []


async def test_a_clock_that_leaps_forward_is_a_gap(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.origin.shift_pdt(60_000)
        r.advance(2)
        await r.until(r.recorded(5))
        [session] = await r.sessions()
        assert await r.seqs() == [0, 1, 2, 3, 4]
        [gap] = await r.gaps()
        assert (gap.first_seq, gap.last_seq, gap.reason) == (3, 2, "pdt_jump")
        assert (gap.start_ms, gap.end_ms) == (r.pdt(3) - 60_000, r.pdt(3))
        assert session.state == "live" and session.live_edge_ms == r.pdt(5)


async def test_segments_that_expired_unseen_are_a_gap(data_dir: Path) -> None:
    async with rig(data_dir, window=3, prefill=3) as r:
        await r.until(r.recorded(3))
        r.advance(6)  # the media sequence jumps from 2 to 6..8
        await r.until(r.recorded(6))
        assert await r.seqs() == [0, 1, 2, 6, 7, 8]
        assert await r.gap_summary() == [(3, 5, "expired")]
        [gap] = await r.gaps()
        assert (gap.start_ms, gap.end_ms) == (r.pdt(3), r.pdt(6))
        status = await r.api_stream()
        assert (status["segments_recorded"], status["gaps"]) == (6, 1)


# --- HLS features -------------------------------------------------------------------------


async def post_clip(base: str, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/clips", json=body) as response,
    ):
        return response.status, await response.json()


async def test_a_discontinuity_opens_a_new_epoch_and_a_clip_across_it_is_cut(
    data_dir: Path,
) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.origin.restart_encoder()
        r.advance(3)
        await r.until(r.recorded(6))
        [session] = await r.sessions()
        assert [(s.seq, s.epoch) for s in await r.segments()] == [
            (0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)
        ]  # fmt: skip
        assert [s.start_ms for s in await r.segments()] == [r.pdt(i) for i in range(6)]
        assert await r.gaps() == [] and session.state == "live"
        status, body = await post_clip(
            r.daemon.base_url,
            {"stream": r.stream, "start_ms": r.pdt(1) + 200, "end_ms": r.pdt(5) - 300},
        )
        assert status == 202, body
        clip = await r.daemon.jobs.wait_finished(body["id"], timeout_s=WAIT_S)
        assert clip is not None and clip.state == "ready", clip
        assert clip.result is not None and not clip.result.get("holes")


@pytest.mark.parametrize(
    ("container", "byterange"),
    [("fmp4", False), ("fmp4", True), ("ts", True)],
    ids=["map", "map-byterange", "ts-byterange"],
)
async def test_init_sections_and_byte_ranges_are_recorded(
    data_dir: Path, container: str, byterange: bool
) -> None:
    async with rig(data_dir, prefill=3, container=container, byterange=byterange) as r:
        await r.until(r.recorded(3))
        r.origin.restart_encoder()  # a new encoder: a new EXT-X-MAP for fMP4
        r.advance(2)
        await r.until(r.recorded(5))
        segments = await r.segments()
        assert [(s.seq, s.epoch) for s in segments] == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)]
        assert await r.gaps() == [] and r.errors() == {}
        inits = [s.init_path for s in segments]
        if container == "fmp4":
            assert inits[0] == inits[1] == inits[2] != inits[3] == inits[4]
            assert all(i is not None for i in inits)
        else:
            assert inits == [None] * 5
        root = r.daemon.store.root
        for s in segments:
            body = (root / s.path).read_bytes()
            init = None if s.init_path is None else (root / s.init_path).read_bytes()
            probe = probe_segment(body, init)
            assert probe.has_video and probe.has_audio
            assert abs(probe.duration_s - SEG_MS / 1000) < 0.05
        if byterange:
            # Each stored segment is exactly the range the playlist gave it.
            async with (
                aiohttp.ClientSession() as http,
                http.get(r.origin.base_url + "/index.m3u8") as response,
            ):
                listed = parse_playlist(await response.text(), str(response.url))
            assert isinstance(listed, MediaPlaylist)
            lengths = {x.seq: x.byterange.length for x in listed.segments if x.byterange}
            assert [s.size for s in segments] == [lengths[s.seq] for s in segments]
            media = r.log.matching("/stream.")
            assert media and all(m.headers["Range"].startswith("bytes=") for m in media)


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_aes128_segments_are_stored_decrypted_and_the_key_is_never_stored(
    data_dir: Path, container: str
) -> None:
    async with rig(data_dir, prefill=4, encrypt=True, container=container) as r:
        await r.until(r.recorded(4))
        key = r.origin.key
        assert key is not None
        assert await r.seqs() == [0, 1, 2, 3] and await r.gaps() == [] and r.errors() == {}
        root = r.daemon.store.root
        for s in await r.segments():
            init = None if s.init_path is None else (root / s.init_path).read_bytes()
            data = io.BytesIO((init or b"") + (root / s.path).read_bytes())
            with av.open(data, mode="r") as media:
                frames = sum(1 for _ in media.decode(video=0))
            assert frames == 25  # one second at 25 fps, decoded from what is on disk
        assert len(r.log.matching("key.bin")) == 1, "fetched once, shared by every segment"
    # After shutdown, so whatever the index wrote on the way out is checked as well.
    assert r.files()
    for path in r.files():
        assert key not in path.read_bytes(), path


async def test_sample_aes_is_refused_clearly_and_nothing_recorded(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3, encrypt=True, key_method="SAMPLE-AES") as r:
        await r.until(lambda: r.errors().get("unsupported", 0) >= 2)
        status = await r.api_stream()
        assert status["state"] == "failing"
        assert "SAMPLE-AES" in status["last_error"] and "AES-128" in status["last_error"]
        assert await r.sessions() == []
        assert r.log.matching(".ts") == [] and r.log.matching("key.bin") == []
        assert set(r.errors()) == {"unsupported"}


async def test_tagged_gaps_are_recorded_and_never_fetched(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.origin.gap_next(2)
        r.advance(4)
        await r.until(r.recorded(5))
        assert await r.seqs() == [0, 1, 2, 5, 6]
        assert await r.gap_summary() == [(3, 4, "tagged_gap")]
        [gap] = await r.gaps()
        assert (gap.start_ms, gap.end_ms) == (r.pdt(3), r.pdt(5))
        assert r.log.matching("seg3.ts") == [] and r.log.matching("seg4.ts") == []
        assert r.errors() == {}


async def test_endlist_ends_the_session(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3, end_after=5) as r:
        await r.until(r.recorded(3))
        status = await r.api_stream()
        assert status["state"] == "recording"
        r.advance(2)
        await r.until(r.ended)
        [session] = await r.sessions()
        assert (session.end_reason, session.ended_ms) == ("endlist", r.pdt(5))
        assert await r.seqs() == [0, 1, 2, 3, 4] and await r.gaps() == []
        status = await r.api_stream()
        assert status["state"] == "ended" and status["live_edge_ms"] == r.pdt(5)


async def test_low_latency_reloads_block_and_index_each_segment_promptly(data_dir: Path) -> None:
    # The real clock here: what is measured is how soon after publication a segment lands.
    log = RequestLog()
    origin = LiveOrigin(
        segment_ms=SEG_MS, window=6, prefill=2, low_latency=True, middlewares=(log.middleware,)
    )
    url = await origin.start()
    daemon = Daemon(daemon_config(data_dir, url))
    try:
        await daemon.start()
        index = daemon.store.index

        async def lags() -> dict[int, int]:
            """seq -> indexed_ms - published_ms, where a segment is published at PDT + duration."""
            live = await index.live_session("cam")
            if live is None:
                return {}
            [rendition] = await index.renditions(live.id)
            # Rows only grow here: read after the times, the starts cover every one of them.
            indexed_times = await index.indexed_times(rendition.id)
            starts = {s.seq: s.start_ms for s in await index.rendition_segments(rendition.id)}
            return {seq: indexed - (starts[seq] + SEG_MS) for seq, indexed in indexed_times.items()}

        async def six_indexed() -> bool:
            return len(await lags()) >= 6

        await until(daemon, "cam", six_indexed, timeout_s=WAIT_S)
        blocking = [s.path_qs for s in log.seen if "_HLS_msn=" in s.path_qs]
        assert {f"/live/index.m3u8?_HLS_msn={n}" for n in range(3, 6)} <= set(blocking)
        assert all(
            s.path_qs.startswith("/live/index.m3u8?_HLS_msn=")
            for s in log.seen[3:]
            if "m3u8" in s.path_qs
        ), "after the first load, every reload blocks"
        published_while_watching = {seq: lag for seq, lag in (await lags()).items() if seq >= 3}
        assert len(published_while_watching) >= 3
        # Held reloads, not polling: the reload asking for segment n reached the origin
        # before n was published, and was answered by its publication.
        live = await index.live_session("cam")
        assert live is not None
        [rendition] = await index.renditions(live.id)
        starts = {s.seq: s.start_ms for s in await index.rendition_segments(rendition.id)}
        wall_minus_loop = time.time() - asyncio.get_running_loop().time()
        for seq in published_while_watching:
            asked = next(s.at for s in log.seen if s.path_qs == f"/live/index.m3u8?_HLS_msn={seq}")
            assert (asked + wall_minus_loop) * 1000 < starts[seq] + SEG_MS, seq
        # Indexed soon after publication: a quarter of a segment on an idle machine; the
        # bound leaves room for a loaded one, which the held-request check above does not need.
        assert all(0 <= lag < SEG_MS for lag in published_while_watching.values()), (
            published_while_watching
        )
    finally:
        await daemon.stop()
        await origin.stop()


# --- safety and identity ------------------------------------------------------------------


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context and a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_an_https_redirect_to_plain_http_is_refused_before_any_plain_request(
    tmp_path: Path,
) -> None:
    plain_requests: list[str] = []

    async def plain(request: web.Request) -> web.Response:
        plain_requests.append(request.path)
        return web.Response(body=b"in the clear")

    plain_app = web.Application()
    plain_app.router.add_get("/{tail:.*}", plain)
    server_tls, client_tls = tls_contexts(tmp_path)
    async with serving(plain_app) as plain_port:

        async def downgrade(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{plain_port}/seg.ts")

        async def hop(request: web.Request) -> web.Response:
            raise web.HTTPFound("/final.ts")

        async def final(request: web.Request) -> web.Response:
            return web.Response(body=b"media over tls")

        tls_app = web.Application()
        tls_app.router.add_get("/seg.ts", downgrade)
        tls_app.router.add_get("/hop.ts", hop)
        tls_app.router.add_get("/final.ts", final)
        async with (
            serving(tls_app, server_tls) as tls_port,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http,
        ):
            base = f"https://127.0.0.1:{tls_port}"
            headers = {"X-Token": "s3cret"}
            # The control: real TLS, and an https -> https redirect is followed.
            fetched = await fetch(http, f"{base}/hop.ts", headers=headers, timeout_s=5)
            assert (fetched.url, fetched.body) == (f"{base}/final.ts", b"media over tls")
            with pytest.raises(FetchError) as refused:
                await fetch(http, f"{base}/seg.ts", headers=headers, timeout_s=5)
    assert refused.value.kind == "bad_redirect" and not refused.value.retryable
    assert "plain http" in str(refused.value) and f"127.0.0.1:{plain_port}" in str(refused.value)
    assert plain_requests == [], "not one request, so the stream's headers never left TLS"


async def test_a_redirect_to_another_origin_drops_credentials_only() -> None:
    seen: list[Mapping[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers)
        return web.Response(body=b"media")

    other = web.Application()
    other.router.add_get("/seg.ts", record)
    async with serving(other) as other_port:

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{other_port}/seg.ts")

        first = web.Application()
        first.router.add_get("/seg.ts", moved)
        async with serving(first) as first_port, aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bearer s3cret", "X-Token": "t0ken", "User-Agent": "ua/1"}
            fetched = await fetch(
                http, f"http://127.0.0.1:{first_port}/seg.ts", headers=headers, timeout_s=5
            )
    assert fetched.body == b"media"
    [headers_seen] = seen
    assert headers_seen["X-Token"] == "t0ken" and headers_seen["User-Agent"] == "ua/1"
    assert "Authorization" not in headers_seen


@pytest.mark.parametrize("agent", [None, "cam-agent/2.0"], ids=["default-agent", "stream-agent"])
async def test_stream_headers_and_user_agent_reach_every_request(
    data_dir: Path, agent: str | None
) -> None:
    headers = (("X-Token", "s3cret"),) + ((("User-Agent", agent),) if agent else ())
    options: dict[str, Any] = {"encrypt": True, "container": "fmp4"}
    async with rig(data_dir, prefill=3, stream={"headers": headers}, **options) as r:
        await r.until(r.recorded(3))
        expected_agent = agent or r.daemon.config.ingest.user_agent
        assert expected_agent.startswith("cam-agent" if agent else "livecut/")
        paths = {s.path_qs.rsplit("/", 1)[-1] for s in r.log.seen}
        assert {"index.m3u8", "init.mp4", "key.bin", "seg0.m4s"} <= paths
        for seen in r.log.seen:
            assert seen.headers.get("X-Token") == "s3cret", seen.path_qs
            assert seen.headers.getall("User-Agent") == [expected_agent], seen.path_qs


async def test_a_master_playlist_where_a_media_playlist_belongs_is_refused(
    data_dir: Path,
) -> None:
    nested = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nother/index.m3u8\n"

    @web.middleware
    async def master_again(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/v0/index.m3u8"):
            return web.Response(text=nested, content_type="application/vnd.apple.mpegurl")
        return await handler(request)

    async with rig(data_dir, variants=[(320, 180)], middlewares=(master_again,)) as r:
        await r.until(lambda: r.errors().get("playlist", 0) >= 2)
        status = await r.api_stream()
        assert status["state"] == "failing"
        assert "v0/index.m3u8" in status["last_error"]
        assert "master playlist" in status["last_error"]
        assert "media playlist" in status["last_error"]
        assert await r.sessions() == []
        assert not any(s.path_qs.endswith((".ts", ".m4s")) for s in r.log.seen)
        assert set(r.errors()) == {"playlist"}


# --- what the API says about a stream -----------------------------------------------------


async def test_stream_state_walks_connecting_recording_failing_and_back(data_dir: Path) -> None:
    script = FaultScript()
    script.add(PLAYLIST, Delay(WAIT_S), times=1)  # the first playlist request hangs
    async with rig(data_dir, prefill=3, script=script) as r:
        await script.wait_hits(1)
        status = await r.api_stream()
        assert status["state"] == "connecting"
        assert (status["live_edge_ms"], status["segments_recorded"], status["errors"]) == (
            None,
            0,
            0,
        )
        script.clear()
        await r.until(r.recorded(3))
        status = await r.api_stream()
        url = f"{r.origin.base_url}/index.m3u8"
        assert status["state"] == "recording" and status["live_edge_ms"] == r.pdt(3)
        assert status["renditions"] == {"main": url} and status["media_playlist"] == url
        assert (status["segments_recorded"], status["gaps"], status["errors"]) == (3, 0, 0)
        assert status["live_session"] == (await r.sessions())[0].id

        r.script.add(PLAYLIST, Status(503), times=None)
        recorder = r.daemon.recorders[r.stream]
        loop = asyncio.get_running_loop()
        outage = loop.time()
        # Stalled (and here failing) after three target durations without a new segment,
        # seen at the next retry (within a target duration): 4 s at most, not 6 or more.
        await r.until(lambda: recorder.status.state == "failing")
        assert loop.time() - outage < 4 * SEG_MS / 1000 + 1.0  # room for a loaded machine
        errors_before = r.errors()["http_5xx"]
        status = await r.api_stream()
        errors_after = r.errors()["http_5xx"]  # retries go on while the API answers
        assert status["state"] == "failing" and "HTTP 503" in status["last_error"]
        assert 1 <= errors_before <= status["errors"] <= errors_after
        assert status["live_edge_ms"] == r.pdt(3)
        # Backing off, but never longer than a target duration: the window moves on.
        failing = [s.at for s in r.log.matching("index.m3u8")][-4:]
        # (The slack is for a loaded machine; a doubling backoff would already wait 2 s.)
        assert all(b - a <= SEG_MS / 1000 + 0.5 for a, b in itertools.pairwise(failing))

        r.script.clear()
        r.advance(1)
        await r.until(r.recorded(4))
        status = await r.api_stream()
        assert status["state"] == "recording" and status["live_edge_ms"] == r.pdt(4)
        assert await r.seqs() == [0, 1, 2, 3] and await r.gaps() == []


# --- the recorder itself ------------------------------------------------------------------


async def test_a_rendition_worker_that_crashes_is_restarted_and_loses_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        index = r.index
        real_add_segment = index.add_segment
        crashes: list[int] = []

        async def add_segment_once_broken(**row: Any) -> None:
            if row["seq"] == 3 and not crashes:
                crashes.append(3)
                raise RuntimeError("index unavailable")  # not an origin fault: a bug, say
            await real_add_segment(**row)

        monkeypatch.setattr(index, "add_segment", add_segment_once_broken)
        r.advance(2)
        await r.until(r.recorded(5))
        assert crashes == [3]
        assert await r.seqs() == [0, 1, 2, 3, 4] and await r.gaps() == []
        [session] = await r.sessions()
        assert session.state == "live"
        assert r.errors() == {"crash": 1}
        assert r.daemon.recorders[r.stream].workers["main"].alive


async def test_after_a_restart_recording_resumes_without_repeating_rows(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.origin.gap_next(1)
        r.advance(2)
        await r.until(r.recorded(4))
        assert await r.seqs() == [0, 1, 2, 4] and await r.gap_summary() == [(3, 3, "tagged_gap")]
        await r.restart_daemon()  # the window it reads first still lists all of that
        r.advance(1)
        await r.until(r.recorded(5))
        [session] = await r.sessions()
        assert session.state == "live", "resumed, within session_gap"
        assert await r.seqs() == [0, 1, 2, 4, 5]
        assert await r.gap_summary() == [(3, 3, "tagged_gap")]


async def test_a_resumed_session_never_writes_over_an_init_section_its_segments_name(
    data_dir: Path,
) -> None:
    async with rig(data_dir, prefill=2, container="fmp4") as r:
        await r.until(r.recorded(2))
        r.origin.restart_encoder()
        r.advance(1)
        await r.until(r.recorded(3))
        root = r.daemon.store.root
        before = {s.init_path: (root / s.init_path).read_bytes() for s in await r.segments()}
        assert len(before) == 2, before  # one init section per encoder
        await r.restart_daemon()
        r.advance(1)
        await r.until(r.recorded(4))
        [session] = await r.sessions()
        assert session.state == "live", "resumed, within session_gap"
        after = (await r.segments())[-1].init_path
        assert after is not None and after not in before, "a new name, not a reused one"
        for init_path, data in before.items():
            assert (root / init_path).read_bytes() == data


# --- segment workers: the processes that write and probe each segment -------------------


async def test_killed_segment_workers_cost_no_segment(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        pids = r.daemon.segment_workers.pids()
        assert 1 <= len(pids) <= r.daemon.config.ingest.segment_workers  # started as needed
        # Their count and memory are exported (process_* covers only the daemon).
        assert metrics.REGISTRY.get_sample_value("livecut_segment_workers") == len(pids)
        resident = metrics.REGISTRY.get_sample_value("livecut_segment_workers_resident_bytes")
        assert resident is not None and resident > len(pids) * 10e6  # each holds PyAV
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        r.advance(3)
        await r.until(r.recorded(6))
        assert await r.seqs() == [0, 1, 2, 3, 4, 5]
        assert await r.gaps() == []
        # A worker killed while idle is replaced quietly; one killed under a segment's
        # write may cost that segment one retry (counted as unreadable media), no more.
        assert set(r.errors()) <= {"unreadable_media"}
        assert r.errors().get("unreadable_media", 0) <= 1
        assert set(r.daemon.segment_workers.pids()).isdisjoint(pids)
        assert not list((data_dir / files.INCOMING).glob("*"))  # all published


async def test_segments_are_staged_in_threads_with_no_worker_processes(data_dir: Path) -> None:
    async with rig(data_dir, prefill=3, ingest={"segment_workers": 0}) as r:
        await r.until(r.recorded(3))
        assert await r.seqs() == [0, 1, 2]
        assert r.daemon.segment_workers.pids() == []
        for segment in await r.segments():
            probe = probe_segment(r.daemon.store.path(segment.path).read_bytes())
            assert segment.keyframes_ms[0] == segment.start_ms + round(probe.keyframes_s[0] * 1000)


def test_staging_leaves_no_file_it_could_not_write_or_read(tmp_path: Path) -> None:
    unreadable = tmp_path / "incoming" / "1.ts"
    with pytest.raises(ProbeError):
        stage_segment(unreadable, b"\x47" + b"\x00" * 4000, None, True)
    assert not unreadable.exists()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        stage_segment(tmp_path / "file" / "2.ts", b"x", None, True)  # a file as its folder
    subtitles = tmp_path / "incoming" / "3.vtt"
    assert stage_segment(subtitles, b"WEBVTT\n", None, False) is None
    assert subtitles.read_bytes() == b"WEBVTT\n"


async def test_a_hung_segment_worker_is_stopped_and_the_segment_retried(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deep window: the new segment stays listed (by the daemon's reckoning, 9 s) long
    # after its first attempt is given up on, so there is time to retry it.
    async with rig(data_dir, window=10, prefill=8, ingest={"segment_workers": 1}) as r:
        await r.until(r.recorded(8))
        [hung] = r.daemon.segment_workers.pids()
        # As a demuxer stuck on a hostile segment, or a disk that stopped answering.
        monkeypatch.setattr(staging, "STAGE_TIMEOUT_S", 3.0)
        os.kill(hung, signal.SIGSTOP)
        r.advance(1)
        await r.until(r.recorded(9))
        assert await r.seqs() == list(range(9))
        assert await r.gaps() == []
        assert r.errors() == {"unreadable_media": 1}
        [replacement] = r.daemon.segment_workers.pids()
        assert replacement != hung


async def test_a_spare_worker_is_ready_before_a_second_segment_needs_it(tmp_path: Path) -> None:
    workers = staging.SegmentWorkers(3)
    try:
        assert await workers.stage(tmp_path / "0.vtt", b"WEBVTT\n", None, probe=False) is None
        await workers.settled()
        first, spare = workers.pids()  # the spare started after the first was taken
        await asyncio.gather(
            *(workers.stage(tmp_path / f"{n}.vtt", b"WEBVTT\n", None, probe=False) for n in (1, 2))
        )
        await workers.settled()
        assert {first, spare} < set(workers.pids()), "both served, and the third is the spare"
        assert len(workers.pids()) == 3  # never more than asked for
        assert sorted(p.name for p in tmp_path.iterdir()) == ["0.vtt", "1.vtt", "2.vtt"]
    finally:
        await workers.close()
    assert workers.pids() == []


async def test_a_worker_that_cannot_start_fails_the_segment_not_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = staging.SegmentWorkers(2)
    try:
        monkeypatch.setattr(staging.sys, "executable", str(tmp_path / "no-python"))
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(ProbeError, match="no segment worker could be started"):
                await workers.stage(tmp_path / "0.vtt", b"WEBVTT\n", None, probe=False)
            # Within the second after a failed start, others fail at once, not wait.
            with pytest.raises(ProbeError, match="no segment worker could be started"):
                await workers.stage(tmp_path / "1.vtt", b"WEBVTT\n", None, probe=False)
        monkeypatch.undo()
        monkeypatch.setattr(staging, "START_RETRY_S", 0.0)
        assert await workers.stage(tmp_path / "2.vtt", b"WEBVTT\n", None, probe=False) is None
        assert (tmp_path / "2.vtt").read_bytes() == b"WEBVTT\n"
    finally:
        await workers.close()
