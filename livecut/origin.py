"""Live HLS origin: serves an endless synthetic stream over HTTP, published by a fakeable clock."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Unpack

from aiohttp import web
from aiohttp.typedefs import Handler

from livecut.media.synth import (
    Container,
    SyntheticStream,
    SynthOptions,
    SynthSegment,
    render_media_playlist,
)

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT_CONTENT_TYPE = {"ts": "video/mp2t", "fmp4": "video/mp4"}
_SEGMENT_EXTENSION = {"ts": "ts", "fmp4": "m4s"}
_NO_CACHE = {"Cache-Control": "no-cache"}


class LiveOrigin:
    """Segment i covers stream time [i*D, (i+1)*D) and is published at epoch + (i+1)*D.

    Frame n of the stream therefore has wall time epoch_ms + n*1000/fps, exactly. Each kind
    of request (playlist, master, segment, init) goes through one handler method, the place
    to script faults per request.
    """

    def __init__(
        self,
        *,
        segment_ms: int = 2000,
        window: int = 6,
        prefill: int = 6,
        container: Container = "ts",
        audio: bool = True,
        with_pdt: bool = True,
        clock: Callable[[], float] = time.time,
        end_after: int | None = None,
        path: str = "/live",
        **synth_kwargs: Unpack[SynthOptions],
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if prefill < 0:
            raise ValueError(f"prefill must be >= 0, got {prefill}")
        if end_after is not None and end_after < 1:
            raise ValueError(f"end_after must be None or >= 1, got {end_after}")
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"path must start with '/' and not end with '/', got {path!r}")
        self._stream = SyntheticStream(
            segment_ms=segment_ms, container=container, audio=audio, **synth_kwargs
        )
        self.segment_ms = segment_ms
        self.window = window
        self.container: Container = container
        self.with_pdt = with_pdt
        self.end_after = end_after
        self.path = path
        self._clock = clock
        self.epoch_ms: int = self._now_ms() - prefill * segment_ms
        self.requests: list[str] = []
        self._init = self._stream.init_section
        # The window only moves forward, so evicting the lowest index is the right policy.
        self._cache: dict[int, SynthSegment] = {}
        self._cache_size = window + prefill + 4
        self._generated = 0  # segments taken from the stream so far
        # Segments come out of one encoder strictly in order: one generation at a time.
        self._generate_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_request])
        extension = _SEGMENT_EXTENSION[self.container]
        app.router.add_get(f"{self.path}/index.m3u8", self.handle_media_playlist)
        app.router.add_get(f"{self.path}/master.m3u8", self.handle_master_playlist)
        app.router.add_get(f"{self.path}/seg{{index:\\d+}}.{extension}", self.handle_segment)
        if self.container == "fmp4":
            app.router.add_get(f"{self.path}/init.mp4", self.handle_init)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); return the media playlist URL."""
        if self._runner is not None:
            raise RuntimeError("origin already started")
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = int(runner.addresses[0][1])
        authority = f"[{host}]" if ":" in host else host
        return f"http://{authority}:{bound_port}{self.path}/index.m3u8"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def published(self, now_ms: int | None = None) -> int:
        """Segments published at now_ms (default: the clock), capped by end_after."""
        now = self._now_ms() if now_ms is None else now_ms
        count = max(0, (now - self.epoch_ms) // self.segment_ms)
        return count if self.end_after is None else min(count, self.end_after)

    def segment_pdt_ms(self, index: int) -> int:
        return self.epoch_ms + index * self.segment_ms

    def window_range(self, now_ms: int | None = None) -> range:
        """Indexes listed in the media playlist at now_ms."""
        end = self.published(now_ms)
        return range(max(0, end - self.window), end)

    async def handle_media_playlist(self, request: web.Request) -> web.Response:
        listed = self.window_range()
        text = render_media_playlist(
            first=listed.start,
            end=listed.stop,
            segment_ms=self.segment_ms,
            container=self.container,
            epoch_ms=self.epoch_ms if self.with_pdt else None,
            ended=self.end_after is not None and listed.stop >= self.end_after,
        )
        return web.Response(text=text, content_type=PLAYLIST_CONTENT_TYPE, headers=_NO_CACHE)

    async def handle_master_playlist(self, request: web.Request) -> web.Response:
        stream = self._stream
        text = (
            "#EXTM3U\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n"
            f"#EXT-X-STREAM-INF:BANDWIDTH={stream.bandwidth},"
            f"RESOLUTION={stream.width}x{stream.height},"
            f'CODECS="{stream.codecs}",FRAME-RATE={stream.fps:.3f}\n'
            "index.m3u8\n"
        )
        return web.Response(text=text, content_type=PLAYLIST_CONTENT_TYPE, headers=_NO_CACHE)

    async def handle_segment(self, request: web.Request) -> web.Response:
        index = int(request.match_info["index"])
        if index not in self.window_range():
            raise web.HTTPNotFound(text=f"segment {index} is not in the live window")
        segment = await self._segment(index)
        if segment is None:
            raise web.HTTPNotFound(text=f"segment {index} has expired")
        return web.Response(body=segment.data, content_type=_SEGMENT_CONTENT_TYPE[self.container])

    async def handle_init(self, request: web.Request) -> web.Response:
        if self._init is None:
            raise web.HTTPNotFound(text="TS streams have no init section")
        return web.Response(body=self._init, content_type="video/mp4")

    @web.middleware
    async def _record_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(request.path)
        return await handler(request)

    async def _segment(self, index: int) -> SynthSegment | None:
        async with self._generate_lock:
            cached = self._cache.get(index)
            if cached is not None:
                return cached
            if index < self._generated:
                return None  # generated once and evicted since; the stream cannot rewind
            produced = await asyncio.to_thread(self._generate_through, index)
            self._generated = index + 1
            for segment in produced:
                self._cache[segment.index] = segment
            while len(self._cache) > self._cache_size:
                del self._cache[min(self._cache)]
            return self._cache.get(index)

    def _generate_through(self, index: int) -> list[SynthSegment]:
        """Encode up to segment index (in a worker thread); keep only what the cache can hold."""
        kept: deque[SynthSegment] = deque(maxlen=self._cache_size)
        for _ in range(self._generated, index + 1):
            kept.append(self._stream.next_segment())
        return list(kept)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)
