"""Benchmark origin: N live HLS streams served from a small pool of pre-encoded segments.

Runs in its own process (multiprocessing, spawn) so its CPU is never charged to the daemon
under test. It talks to the benchmark over one Pipe:

    origin -> bench   ("ready", [size in bytes of each pool segment])
    bench  -> origin  ("epochs", [epoch_ms of stream k, ...])
    origin -> bench   ("serving", port)
    bench  -> origin  ("stop",)
    origin -> bench   ("announced", [{seq: ms of the first playlist listing it}, ...],
                       CPU seconds the origin spent serving)

Segment i of stream k has PDT epoch_k + i*segment_ms and is published (first listed) once
the wall clock passes epoch_k + (i+1)*segment_ms; its body is pool[i % len(pool)]. With
`blocking`, playlists offer CAN-BLOCK-RELOAD and a request with `_HLS_msn=M` is held until
segment M is published.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from aiohttp import web

from livecut.media.synth import SyntheticStream, render_media_playlist

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
NO_CACHE = {"Cache-Control": "no-cache"}
# Published segments stay fetchable this many segments behind the window, like a CDN would.
KEEP_BEHIND = 6
PIPE_POLL_S = 0.05
SERVER_CONTROL = "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"
BLOCK_AHEAD = 3  # segments; a blocking reload further ahead than this gets a 400


@dataclass(frozen=True, kw_only=True, slots=True)
class OriginSpec:
    streams: int
    segment_ms: int
    bitrate: int  # requested video bit/s of the pool
    pool_size: int
    window: int
    blocking: bool = False  # LL-HLS blocking playlist reload (_HLS_msn), no partial segments
    width: int = 640
    height: int = 360
    max_life_s: float = 3600.0  # the origin exits on its own after this, whatever happens


def stream_path(k: int) -> str:
    return f"/s{k}/index.m3u8"


def encode_pool(spec: OriginSpec) -> list[bytes]:
    """Encode the pool once: consecutive segments of one synthetic stream."""
    synth = SyntheticStream(
        segment_ms=spec.segment_ms,
        width=spec.width,
        height=spec.height,
        video_bitrate=spec.bitrate,
    )
    return [synth.next_segment().data for _ in range(spec.pool_size)]


def serve(conn: Connection, spec: OriginSpec) -> None:
    """Process entry point: encode the pool, serve until told to stop (or max_life_s)."""
    pool = encode_pool(spec)
    asyncio.run(_serve(conn, spec, pool))
    conn.close()


class _LiveStreams:
    """Every stream's sliding window, computed from the wall clock on each request."""

    def __init__(self, spec: OriginSpec, pool: list[bytes], epochs_ms: list[int]) -> None:
        self.spec = spec
        self.pool = pool
        self.epochs_ms = epochs_ms
        # Per stream: seq -> wall ms of the first playlist response that listed it.
        self.announced: list[dict[int, int]] = [{} for _ in epochs_ms]
        self._announced_end = [0] * len(epochs_ms)
        self._rendered: list[tuple[int, str]] = [(-1, "")] * len(epochs_ms)

    def published_end(self, k: int, now_ms: int) -> int:
        """One past the newest published segment of stream k."""
        return max(0, (now_ms - self.epochs_ms[k]) // self.spec.segment_ms)

    def playlist(self, k: int, now_ms: int) -> str:
        end = self.published_end(k, now_ms)
        for seq in range(self._announced_end[k], end):
            self.announced[k][seq] = now_ms
        self._announced_end[k] = max(self._announced_end[k], end)
        cached_end, text = self._rendered[k]
        if cached_end != end:
            text = render_media_playlist(
                first=max(0, end - self.spec.window),
                end=end,
                segment_ms=self.spec.segment_ms,
                container="ts",
                epoch_ms=self.epochs_ms[k],
                ended=False,
            )
            if self.spec.blocking:
                head, rest = text.split("\n", 1)
                text = f"{head}\n{SERVER_CONTROL}\n{rest}"
            self._rendered[k] = (end, text)
        return text

    def publish_ms(self, k: int, seq: int) -> int:
        return self.epochs_ms[k] + (seq + 1) * self.spec.segment_ms

    def segment(self, k: int, seq: int, now_ms: int) -> bytes | None:
        end = self.published_end(k, now_ms)
        if not end - self.spec.window - KEEP_BEHIND <= seq < end:
            return None
        return self.pool[seq % len(self.pool)]


def _stream_index(request: web.Request, streams: _LiveStreams) -> int:
    name = request.match_info["stream"]
    if not name.startswith("s") or not name[1:].isdigit():
        raise web.HTTPNotFound()
    k = int(name[1:])
    if k >= len(streams.epochs_ms):
        raise web.HTTPNotFound()
    return k


def _app(streams: _LiveStreams) -> web.Application:
    async def playlist(request: web.Request) -> web.Response:
        k = _stream_index(request, streams)
        msn = request.query.get("_HLS_msn")
        if msn is not None and streams.spec.blocking:
            if not msn.isdigit():
                raise web.HTTPBadRequest(text="_HLS_msn must be a segment number")
            wait_ms = streams.publish_ms(k, int(msn)) - int(time.time() * 1000)
            if wait_ms > BLOCK_AHEAD * streams.spec.segment_ms:
                raise web.HTTPBadRequest(text="_HLS_msn is too far ahead of the live edge")
            if wait_ms > 0:
                await asyncio.sleep((wait_ms + 1) / 1000)
        text = streams.playlist(k, int(time.time() * 1000))
        return web.Response(text=text, content_type=PLAYLIST_TYPE, headers=NO_CACHE)

    async def segment(request: web.Request) -> web.Response:
        k = _stream_index(request, streams)
        body = streams.segment(k, int(request.match_info["seq"]), int(time.time() * 1000))
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=SEGMENT_TYPE, headers=NO_CACHE)

    app = web.Application()
    app.router.add_get("/{stream}/index.m3u8", playlist)
    app.router.add_get(r"/{stream}/seg{seq:\d+}.ts", segment)
    return app


async def _receive(conn: Connection, deadline: float) -> tuple[object, ...]:
    """Next message from the benchmark, polled so the loop keeps serving meanwhile."""
    while time.monotonic() < deadline:
        if conn.poll(0):
            message: tuple[object, ...] = conn.recv()
            return message
        await asyncio.sleep(PIPE_POLL_S)
    return ("stop",)


async def _serve(conn: Connection, spec: OriginSpec, pool: list[bytes]) -> None:
    deadline = time.monotonic() + spec.max_life_s
    conn.send(("ready", [len(body) for body in pool]))
    message = await _receive(conn, deadline)
    if message[0] != "epochs":
        return
    epochs = message[1]
    assert isinstance(epochs, list)
    streams = _LiveStreams(spec, pool, [int(e) for e in epochs])
    runner = web.AppRunner(_app(streams), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(("serving", _bound_port(runner)))
        cpu_before = _cpu_s()
        while (await _receive(conn, deadline))[0] != "stop":
            pass
        conn.send(("announced", streams.announced, _cpu_s() - cpu_before))
    finally:
        await runner.cleanup()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("origin is not listening on any TCP address")
