"""Live HLS origin: serves an endless synthetic stream over HTTP, published by a fakeable clock."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Unpack

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from livecut.media.synth import (
    STREAM_OFFSET_S,
    Container,
    SyntheticStream,
    SynthOptions,
    format_pdt,
)

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT_CONTENT_TYPE = {"ts": "video/mp2t", "fmp4": "video/mp4"}
_SEGMENT_EXTENSION = {"ts": "ts", "fmp4": "m4s"}
_RESOURCE_EXTENSION = {"ts": "ts", "fmp4": "mp4"}
_NO_CACHE = {"Cache-Control": "no-cache"}
_LANGUAGE_RE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_KEY_METHOD_RE = re.compile(r"[A-Z0-9-]+")
# RFC 8216bis §6.2.5.2: a client may ask for at most two segments past the last one.
_MAX_MSN_AHEAD = 2
# ...and a server holds a blocking reload for at most three target durations.
_HOLD_TARGET_DURATIONS = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Era:
    """One encoder's run: it made segments [start, next era's start) in order."""

    serial: int  # tells apart eras that replaced one another before publishing anything
    start: int  # global index of its first segment
    media_sequence: int  # media sequence number of that first segment
    discontinuity: bool  # the first segment is listed after EXT-X-DISCONTINUITY
    reset: bool  # the media sequence restarted: earlier segments left the playlist


class Timeline:
    """Which encoder made each segment, its media sequence number, PDT offset and gap.

    Segments carry a global index (0, 1, ... in publish order) that never resets; URIs use
    it, so a media sequence reset never reuses a URI. Events only change segments that are
    not published yet, so nothing a client has already seen stops being true.
    """

    def __init__(self) -> None:
        self._serials = itertools.count(1)
        self.eras: list[Era] = [
            Era(serial=0, start=0, media_sequence=0, discontinuity=False, reset=False)
        ]
        self._shifts: list[tuple[int, int]] = [(0, 0)]  # (first index, total PDT offset ms)
        self.gaps: set[int] = set()

    def era_of(self, index: int) -> Era:
        return self.eras[bisect_right([era.start for era in self.eras], index) - 1]

    def media_sequence(self, index: int) -> int:
        era = self.era_of(index)
        return era.media_sequence + index - era.start

    def pdt_offset_ms(self, index: int) -> int:
        return self._shifts[bisect_right([start for start, _ in self._shifts], index) - 1][1]

    def sequence_start(self, end: int) -> int:
        """First index a playlist ending before `end` may list: a reset cuts off the past."""
        return max((e.start for e in self.eras if e.reset and e.start < end), default=0)

    def discontinuity_sequence(self, first: int) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE of a playlist whose first segment is `first`."""
        since = self.sequence_start(first + 1)
        return sum(1 for e in self.eras if e.discontinuity and since <= e.start < first)

    def add_era(self, start: int, *, discontinuity: bool, reset: bool) -> Era:
        if self.eras[-1].start == start:
            # Two events before the same segment: one encoder change carrying both.
            replaced = self.eras.pop()
            discontinuity |= replaced.discontinuity
            reset |= replaced.reset
        sequence = 0 if reset or not self.eras else self.media_sequence(start)
        era = Era(
            serial=next(self._serials),
            start=start,
            media_sequence=sequence,
            discontinuity=discontinuity,
            reset=reset,
        )
        self.eras.append(era)
        return era

    def shift_pdt(self, start: int, delta_ms: int) -> None:
        total = self.pdt_offset_ms(start) + delta_ms
        if self._shifts[-1][0] == start:
            self._shifts.pop()
        self._shifts.append((start, total))


@dataclass(frozen=True, kw_only=True, slots=True)
class _Planned:
    """What the worker thread needs to make one segment, decided on the event loop."""

    index: int
    era: Era
    iv: bytes | None  # AES-128-CBC IV, or None when the origin does not encrypt


@dataclass(frozen=True, kw_only=True, slots=True)
class _Made:
    index: int
    era_start: int
    init: bytes | None  # the init section of a new era's encoder, placed before this segment
    length: int
    data: bytes | None  # None when the cache could not hold it anyway


class _Track:
    """One media rendition (the stream, a video variant or an audio language) and its output.

    Segments come out of one encoder strictly in global order, across encoder restarts;
    `lock` serialises that, and the worker thread only runs while it is held. For byte
    range serving, the track also lays its output end to end as one growing resource.
    """

    def __init__(
        self, stream: SyntheticStream, *, cache_size: int, key: bytes | None, byterange: bool
    ) -> None:
        self.codecs = stream.codecs
        self.bandwidth = stream.bandwidth
        self.width = stream.width
        self.height = stream.height
        self.fps = stream.fps
        self.lock = asyncio.Lock()
        self.generated = 0  # segments made so far
        self.size = 0  # bytes of the growing resource so far
        self.inits: dict[int, bytes] = {}  # era start -> init section (fMP4 only)
        self.init_spans: dict[int, tuple[int, int]] = {}  # era start -> (offset, length)
        self.spans: dict[int, tuple[int, int]] = {}  # segment index -> (offset, length)
        self._stream = stream
        self._serial = 0
        self._cache: dict[int, bytes] = {}
        self._cache_size = cache_size
        self._key = key
        self._byterange = byterange
        if stream.init_section is not None:
            self._add_init(0, stream.init_section)

    async def ensure(self, through: int, plan: Callable[[int], _Planned]) -> None:
        """Make every segment up to index `through`."""
        async with self.lock:
            if through < self.generated:
                return
            planned = [plan(index) for index in range(self.generated, through + 1)]
            made = await asyncio.to_thread(self._make, planned)
            for item in made:
                if item.init is not None:
                    self._add_init(item.era_start, item.init)
                self.spans[item.index] = (self.size, item.length)
                self.size += item.length
                if item.data is not None:
                    self._cache[item.index] = item.data
            self.generated = through + 1
            # The window only moves forward, so evicting the lowest index is the right policy.
            while len(self._cache) > self._cache_size:
                del self._cache[min(self._cache)]
            for index in [i for i in self.spans if i < self.generated - self._cache_size]:
                del self.spans[index]

    async def segment(self, index: int, plan: Callable[[int], _Planned]) -> bytes | None:
        """The served bytes of segment `index`; None once it has left the cache."""
        await self.ensure(index, plan)
        return self._cache.get(index)

    async def init(self, era_start: int, plan: Callable[[int], _Planned]) -> bytes | None:
        if era_start not in self.inits:
            # An era's encoder opens when its first segment is made, not before.
            await self.ensure(era_start, plan)
        return self.inits.get(era_start)

    def read(self, start: int, stop: int) -> bytes | None:
        """Bytes [start, stop) of the growing resource; None if some have been dropped."""
        pieces = sorted(
            [(self.init_spans[era][0], init) for era, init in self.inits.items()]
            + [(self.spans[index][0], data) for index, data in self._cache.items()]
        )
        out = bytearray()
        position = start
        for offset, data in pieces:
            if offset + len(data) <= position:
                continue
            if offset > position:
                return None
            out += data[position - offset : stop - offset]
            position = min(offset + len(data), stop)
            if position >= stop:
                return bytes(out)
        return None

    def _add_init(self, era_start: int, init: bytes) -> None:
        self.inits[era_start] = init
        if self._byterange:
            self.init_spans[era_start] = (self.size, len(init))
            self.size += len(init)

    def _make(self, planned: list[_Planned]) -> list[_Made]:
        """Encode (in a worker thread); keep the data only of what the cache can hold."""
        made: list[_Made] = []
        keep_from = len(planned) - self._cache_size
        for position, plan in enumerate(planned):
            init: bytes | None = None
            if plan.era.serial != self._serial:
                self._stream.close()
                self._stream = self._stream.restarted(
                    plan.era.start * self._stream.frames_per_segment
                )
                self._serial = plan.era.serial
                init = self._stream.init_section
            data = self._stream.next_segment().data
            if plan.iv is not None and self._key is not None:
                data = encrypt_segment(data, key=self._key, iv=plan.iv)
            made.append(
                _Made(
                    index=plan.index,
                    era_start=plan.era.start,
                    init=init,
                    length=len(data),
                    data=data if position >= keep_from else None,
                )
            )
        return made


class LiveOrigin:
    """Segment i covers stream time [i*D, (i+1)*D) and is published at epoch + (i+1)*D.

    Frame n of the stream therefore has wall time epoch_ms + n*1000/fps, exactly (until
    shift_pdt moves the PDTs). Each kind of request (playlist, master, segment, init, byte
    range, key, subtitles) goes through one handler method, the place to script faults per
    request; `middlewares` wrap them all.

    With `variants`, each (width, height) is its own encoder under {path}/v{i}/, with
    optional audio-only renditions under {path}/audio-{lang}/ and WebVTT ones under
    {path}/subs-{lang}/; all share one timeline. Without, the layout is one stream under
    {path}/. Scripted events (restart_encoder, reset_sequence, shift_pdt, gap_next) apply
    from the next segment to be published.
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
        middlewares: Sequence[Middleware] = (),
        variants: Sequence[tuple[int, int]] | None = None,
        alternate_audio: Sequence[str] = (),
        subtitles: Sequence[str] = (),
        byterange: bool = False,
        encrypt: bool = False,
        key_method: str = "AES-128",
        low_latency: bool = False,
        cue_ms: int = 1000,
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
        if _KEY_METHOD_RE.fullmatch(key_method) is None or key_method == "NONE":
            raise ValueError(
                f"key_method must be a METHOD such as 'AES-128' or 'SAMPLE-AES', got {key_method!r}"
            )
        _check_languages("alternate_audio", alternate_audio)
        _check_languages("subtitles", subtitles)
        if not 1 <= cue_ms <= 1000:
            raise ValueError(f"cue_ms must be from 1 to 1000, got {cue_ms}")
        self.cue_ms = cue_ms
        if variants is None and (alternate_audio or subtitles):
            raise ValueError("alternate_audio and subtitles need variants (a master playlist)")
        self.segment_ms = segment_ms
        self.window = window
        self.container: Container = container
        self.with_pdt = with_pdt
        self.end_after = end_after
        self.path = path
        self.byterange = byterange
        self.encrypt = encrypt
        self.key_method = key_method
        self.low_latency = low_latency
        self.key: bytes | None = os.urandom(16) if encrypt else None
        self.timeline = Timeline()
        self.requests: list[str] = []
        self._middlewares = tuple(middlewares)
        self._clock = clock
        self.epoch_ms: int = self._now_ms() - prefill * segment_ms
        self._cache_size = window + prefill + 4
        self._tracks: dict[str, _Track] = {}
        self._subtitles: dict[str, str] = {f"subs-{lang}": lang for lang in subtitles}
        self._audio_groups: dict[str, str] = {}  # rendition name -> language
        self._variant_names: list[str] = []
        self._single_stream = variants is None
        if variants is None:
            self._add_track(
                "",
                SyntheticStream(
                    segment_ms=segment_ms, container=container, audio=audio, **synth_kwargs
                ),
            )
        else:
            self._add_variants(variants, alternate_audio, audio=audio, **synth_kwargs)
        self._tick = asyncio.Event()
        self._held = 0
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # --- serving ---

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_request, *self._middlewares])
        media = self._route_dir(list(self._tracks))
        add = app.router.add_get
        add(f"{self.path}/master.m3u8", self.handle_master_playlist)
        add(f"{media}/index.m3u8", self.handle_media_playlist)
        if self.byterange:
            add(f"{media}/stream.{_RESOURCE_EXTENSION[self.container]}", self.handle_byterange)
        else:
            extension = _SEGMENT_EXTENSION[self.container]
            add(f"{media}/seg{{index:\\d+}}.{extension}", self.handle_segment)
            if self.container == "fmp4":
                add(f"{media}/init{{era:\\d*}}.mp4", self.handle_init)
        if self.encrypt:
            add(f"{media}/key.bin", self.handle_key)
        if self._subtitles:
            subs = self._route_dir(list(self._subtitles))
            add(f"{subs}/index.m3u8", self.handle_media_playlist)
            add(f"{subs}/seg{{index:\\d+}}.vtt", self.handle_subtitles)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); return the media playlist URL.

        With variants there is no single media playlist: the master playlist URL instead.
        """
        if self._runner is not None:
            raise RuntimeError("origin already started")
        self._stopping = False
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
        self._base_url = f"http://{authority}:{bound_port}{self.path}"
        return f"{self._base_url}/{'index' if self._single_stream else 'master'}.m3u8"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            # Release held blocking reloads now rather than make cleanup wait them out.
            self._stopping = True
            self.tick()
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """http://host:port{path}, once started."""
        if self._base_url is None:
            raise RuntimeError("origin not started")
        return self._base_url

    @property
    def held_reloads(self) -> int:
        """Blocking playlist reloads (_HLS_msn) being held right now."""
        return self._held

    def tick(self) -> None:
        """Wake held blocking reloads to look at the clock again (after moving a fake clock)."""
        self._tick.set()
        self._tick = asyncio.Event()

    # --- the timeline ---

    def published(self, now_ms: int | None = None) -> int:
        """Segments published at now_ms (default: the clock), capped by end_after."""
        now = self._now_ms() if now_ms is None else now_ms
        count = max(0, (now - self.epoch_ms) // self.segment_ms)
        return count if self.end_after is None else min(count, self.end_after)

    def segment_pdt_ms(self, index: int) -> int:
        return self.epoch_ms + index * self.segment_ms + self.timeline.pdt_offset_ms(index)

    def media_sequence(self, index: int) -> int:
        """Media sequence number of segment `index` (the same unless reset_sequence ran)."""
        return self.timeline.media_sequence(index)

    def window_range(self, now_ms: int | None = None) -> range:
        """Indexes listed in the media playlist at now_ms."""
        end = self.published(now_ms)
        return range(max(0, end - self.window, self.timeline.sequence_start(end)), end)

    # --- scripted events; each returns the index of the first segment it affects ---

    def restart_encoder(self, discontinuity: bool = True) -> int:
        """From the next segment on, a fresh encoder: timestamps restart at the 10 s offset.

        Frame numbers (the barcode) keep counting wall time. With discontinuity, that
        segment is listed after EXT-X-DISCONTINUITY.
        """
        start = self.published()
        self.timeline.add_era(start, discontinuity=discontinuity, reset=False)
        return start

    def reset_sequence(self) -> int:
        """A fresh encoder whose media sequence restarts at 0, with no discontinuity tag."""
        start = self.published()
        self.timeline.add_era(start, discontinuity=False, reset=True)
        return start

    def shift_pdt(self, delta_ms: int) -> int:
        """Segments published from now on get PDTs delta_ms later; the media runs on."""
        start = self.published()
        self.timeline.shift_pdt(start, delta_ms)
        return start

    def gap_next(self, count: int) -> range:
        """List the next `count` segments with EXT-X-GAP; their URIs answer 404."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        start = self.published()
        gaps = range(start, start + count)
        self.timeline.gaps.update(gaps)
        return gaps

    # --- handlers ---

    async def handle_media_playlist(self, request: web.Request) -> web.Response:
        name = request.match_info.get("rendition", "")
        if self.low_latency and "_HLS_msn" in request.query:
            await self._hold_for(_query_int(request, "_HLS_msn"))
        listed = self.window_range()
        track = self._tracks.get(name)
        if track is not None and self.byterange and listed:
            await track.ensure(listed.stop - 1, self._plan)
        text = self._render_media_playlist(listed, track)
        return web.Response(text=text, content_type=PLAYLIST_CONTENT_TYPE, headers=_NO_CACHE)

    async def handle_master_playlist(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self._render_master_playlist(),
            content_type=PLAYLIST_CONTENT_TYPE,
            headers=_NO_CACHE,
        )

    async def handle_segment(self, request: web.Request) -> web.Response:
        track = self._tracks[request.match_info.get("rendition", "")]
        index = self._servable_index(request)
        data = await track.segment(index, self._plan)
        if data is None:
            raise web.HTTPNotFound(text=f"segment {index} has expired")
        return web.Response(body=data, content_type=_SEGMENT_CONTENT_TYPE[self.container])

    async def handle_init(self, request: web.Request) -> web.Response:
        track = self._tracks[request.match_info.get("rendition", "")]
        era_start = int(request.match_info["era"] or "0")
        listed = {self.timeline.era_of(index).start for index in self.window_range()}
        if era_start not in listed and era_start != 0:
            raise web.HTTPNotFound(text=f"no encoder started at segment {era_start} is listed")
        init = await track.init(era_start, self._plan)
        if init is None:
            raise web.HTTPNotFound(text=f"no init section for segment {era_start}")
        return web.Response(body=init, content_type="video/mp4")

    async def handle_byterange(self, request: web.Request) -> web.Response:
        """The growing resource of all published segments; honours a single-range Range."""
        track = self._tracks[request.match_info.get("rendition", "")]
        published = self.published()
        if published:
            await track.ensure(published - 1, self._plan)
        size = track.size
        unsatisfiable = {"Content-Range": f"bytes */{size}"}
        try:
            wanted = request.http_range
        except ValueError as exc:
            raise web.HTTPRequestRangeNotSatisfiable(text=str(exc), headers=unsatisfiable) from None
        partial = wanted.start is not None or wanted.stop is not None
        start = 0 if wanted.start is None else wanted.start
        if start < 0:  # a suffix range: the last -start bytes
            start = max(0, size + start)
        stop = size if wanted.stop is None else min(wanted.stop, size)
        if start >= size:
            raise web.HTTPRequestRangeNotSatisfiable(
                text=f"range starts at {start}, the resource has {size} bytes",
                headers=unsatisfiable,
            )
        for index in self.timeline.gaps:
            span = track.spans.get(index)
            if span is not None and span[0] < stop and start < span[0] + span[1]:
                raise web.HTTPNotFound(text=f"bytes {start}-{stop - 1} overlap gap segment {index}")
        data = track.read(start, stop)
        if data is None:
            raise web.HTTPNotFound(text=f"bytes {start}-{stop - 1} have expired")
        content_type = _SEGMENT_CONTENT_TYPE[self.container]
        headers = {"Accept-Ranges": "bytes"}
        if not partial:
            return web.Response(body=data, content_type=content_type, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        return web.Response(status=206, body=data, content_type=content_type, headers=headers)

    async def handle_key(self, request: web.Request) -> web.Response:
        assert self.key is not None  # the route exists only when encrypting
        return web.Response(body=self.key, content_type="application/octet-stream")

    async def handle_subtitles(self, request: web.Request) -> web.Response:
        language = self._subtitles[request.match_info["rendition"]]
        index = self._servable_index(request)
        era = self.timeline.era_of(index)
        text = render_webvtt(
            language=language,
            index=index,
            index_in_era=index - era.start,
            segment_ms=self.segment_ms,
            cue_ms=self.cue_ms,
        )
        return web.Response(text=text, content_type="text/vtt")

    @web.middleware
    async def _record_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(request.path)
        return await handler(request)

    # --- internals ---

    def _add_track(self, name: str, stream: SyntheticStream) -> None:
        self._tracks[name] = _Track(
            stream, cache_size=self._cache_size, key=self.key, byterange=self.byterange
        )
        if stream.video:
            self._variant_names.append(name)

    def _add_variants(
        self,
        variants: Sequence[tuple[int, int]],
        alternate_audio: Sequence[str],
        *,
        audio: bool,
        **synth_kwargs: Unpack[SynthOptions],
    ) -> None:
        if not variants:
            raise ValueError("variants must list at least one (width, height), or be None")
        if "width" in synth_kwargs or "height" in synth_kwargs:
            raise ValueError("give sizes in variants, not width/height, when variants are set")
        largest = max(width * height for width, height in variants)
        base_bitrate = synth_kwargs.get("video_bitrate")
        for number, (width, height) in enumerate(variants):
            options = synth_kwargs.copy()
            options["width"], options["height"] = width, height
            if base_bitrate is not None:
                # Bitrates rise with size, as in any real ladder.
                options["video_bitrate"] = max(50_000, base_bitrate * width * height // largest)
            stream = SyntheticStream(
                segment_ms=self.segment_ms,
                container=self.container,
                audio=audio and not alternate_audio,
                **options,
            )
            self._add_track(f"v{number}", stream)
        for language in alternate_audio:
            name = f"audio-{language}"
            stream = SyntheticStream(
                segment_ms=self.segment_ms, container=self.container, video=False, **synth_kwargs
            )
            self._add_track(name, stream)
            self._audio_groups[name] = language

    def _route_dir(self, names: list[str]) -> str:
        if self._single_stream:
            return self.path
        alternatives = "|".join(re.escape(name) for name in names)
        return f"{self.path}/{{rendition:(?:{alternatives})}}"

    def _servable_index(self, request: web.Request) -> int:
        index = int(request.match_info["index"])
        if index not in self.window_range():
            raise web.HTTPNotFound(text=f"segment {index} is not in the live window")
        if index in self.timeline.gaps:
            raise web.HTTPNotFound(text=f"segment {index} is a gap")
        return index

    def _plan(self, index: int) -> _Planned:
        iv: bytes | None = None
        if self.encrypt:
            iv = self._segment_iv(index)
        return _Planned(index=index, era=self.timeline.era_of(index), iv=iv)

    def _explicit_iv(self, index: int) -> bytes | None:
        """Even segments carry an IV attribute; odd ones use their media sequence number."""
        if index % 2:
            return None
        return hashlib.sha256(b"livecut-iv" + index.to_bytes(8, "big")).digest()[:16]

    def _segment_iv(self, index: int) -> bytes:
        explicit = self._explicit_iv(index)
        return explicit if explicit is not None else self.media_sequence(index).to_bytes(16, "big")

    async def _hold_for(self, msn: int) -> None:
        """Hold a blocking reload until segment `msn` is listed, for 3 target durations at most.

        The hold ends on the clock (fake or real) as well as on real time, so a test that
        never ticks a fake clock waits at most the same three target durations.
        """
        loop = asyncio.get_running_loop()
        hold_ms = _HOLD_TARGET_DURATIONS * math.ceil(self.segment_ms / 1000) * 1000
        real_deadline = loop.time() + hold_ms / 1000
        clock_deadline = self._now_ms() + hold_ms
        first = True
        self._held += 1
        try:
            while not self._stopping:
                now = self._now_ms()
                listed = self.window_range(now)
                if self.end_after is not None and listed.stop >= self.end_after:
                    return  # ended: nothing more will come
                last = self.media_sequence(listed.start) + len(listed) - 1
                if msn <= last:
                    return
                if first and msn > last + _MAX_MSN_AHEAD:
                    raise web.HTTPBadRequest(
                        text=f"_HLS_msn={msn} is more than {_MAX_MSN_AHEAD} past the last "
                        f"media sequence number {last}"
                    )
                first = False
                publish_ms = self.epoch_ms + (listed.stop + msn - last) * self.segment_ms
                wait_s = min(
                    (min(publish_ms, clock_deadline) - now) / 1000, real_deadline - loop.time()
                )
                if now >= clock_deadline or wait_s <= 0:
                    return
                with contextlib.suppress(TimeoutError):  # a timeout just means: look again
                    await asyncio.wait_for(self._tick.wait(), wait_s)
        finally:
            self._held -= 1

    def _render_media_playlist(self, listed: range, track: _Track | None) -> str:
        timeline = self.timeline
        media = track is not None
        fmp4 = media and self.container == "fmp4"
        byterange = media and self.byterange
        encrypted = media and self.encrypt
        target_s = math.ceil(self.segment_ms / 1000)
        version = 7 if fmp4 else 4 if byterange else 3
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{target_s}",
        ]
        if self.low_latency:
            lines.append(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                f"PART-HOLD-BACK={_HOLD_TARGET_DURATIONS * target_s:.3f}"
            )
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence(listed.start)}")
        discontinuities = timeline.discontinuity_sequence(listed.start)
        if discontinuities:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities}")
        if fmp4 and track is not None:
            lines.append(self._map_tag(track, timeline.era_of(listed.start).start))
        previous_end: int | None = None
        for index in listed:
            era = timeline.era_of(index)
            if index == era.start and era.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if fmp4 and track is not None and index == era.start and index != listed.start:
                if encrypted:
                    lines.append("#EXT-X-KEY:METHOD=NONE")  # keeps the new init section clear
                lines.append(self._map_tag(track, era.start))
                previous_end = None
            if encrypted:
                lines.append(self._key_tag(index))
            if self.with_pdt:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(self.segment_pdt_ms(index))}")
            lines.append(f"#EXTINF:{self.segment_ms / 1000:.3f},")
            if byterange and track is not None:
                offset, length = track.spans[index]
                # Offsets are explicit only where they do not follow on (RFC 8216 §4.3.2.2).
                explicit = "" if offset == previous_end else f"@{offset}"
                lines.append(f"#EXT-X-BYTERANGE:{length}{explicit}")
                previous_end = offset + length
            if index in timeline.gaps:
                lines.append("#EXT-X-GAP")
            lines.append(self._segment_uri(index, media=media))
        if self.end_after is not None and listed.stop >= self.end_after:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _segment_uri(self, index: int, *, media: bool) -> str:
        if not media:
            return f"seg{index}.vtt"
        if self.byterange:
            return f"stream.{_RESOURCE_EXTENSION[self.container]}"
        return f"seg{index}.{_SEGMENT_EXTENSION[self.container]}"

    def _map_tag(self, track: _Track, era_start: int) -> str:
        if self.byterange:
            offset, length = track.init_spans[era_start]
            return f'#EXT-X-MAP:URI="stream.mp4",BYTERANGE="{length}@{offset}"'
        return f'#EXT-X-MAP:URI="init{era_start or ""}.mp4"'

    def _key_tag(self, index: int) -> str:
        tag = f'#EXT-X-KEY:METHOD={self.key_method},URI="key.bin"'
        explicit = self._explicit_iv(index)
        return tag if explicit is None else f"{tag},IV=0x{explicit.hex()}"

    def _render_master_playlist(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
        audio_bandwidth = 0
        audio_codecs = ""
        for position, (name, language) in enumerate(self._audio_groups.items()):
            track = self._tracks[name]
            audio_bandwidth = max(audio_bandwidth, track.bandwidth)
            audio_codecs = track.codecs
            lines.append(
                f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{language}",'
                f'LANGUAGE="{language}",DEFAULT={"YES" if position == 0 else "NO"},'
                f'AUTOSELECT=YES,CHANNELS="2",URI="{name}/index.m3u8"'
            )
        for name, language in self._subtitles.items():
            lines.append(
                f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="{language}",'
                f'LANGUAGE="{language}",DEFAULT=NO,AUTOSELECT=YES,URI="{name}/index.m3u8"'
            )
        for name in self._variant_names:
            track = self._tracks[name]
            # The variant's BANDWIDTH and CODECS cover the renditions played along with it.
            codecs = f"{track.codecs},{audio_codecs}" if audio_codecs else track.codecs
            attributes = (
                f"BANDWIDTH={track.bandwidth + audio_bandwidth},"
                f"RESOLUTION={track.width}x{track.height},"
                f'CODECS="{codecs}",FRAME-RATE={track.fps:.3f}'
            )
            if self._audio_groups:
                attributes += ',AUDIO="aud"'
            if self._subtitles:
                attributes += ',SUBTITLES="subs"'
            lines.append(f"#EXT-X-STREAM-INF:{attributes}")
            lines.append(f"{name}/index.m3u8" if name else "index.m3u8")
        return "\n".join(lines) + "\n"

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)


def encrypt_segment(data: bytes, *, key: bytes, iv: bytes) -> bytes:
    """HLS METHOD=AES-128: the whole segment in AES-128-CBC with PKCS7 padding."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def render_webvtt(
    *, language: str, index: int, index_in_era: int, segment_ms: int, cue_ms: int = 1000
) -> str:
    """WebVTT segment: a cue at each second, shown for cue_ms and reading
    '{language} second {s}', s counting from 0.

    The timestamp map ties the segment start to its encoder's 90 kHz PTS (which restarts at
    STREAM_OFFSET_S with each encoder), as the media segments of the same index start.
    """
    mpegts = (STREAM_OFFSET_S * 1000 + index_in_era * segment_ms) * 90
    lines = ["WEBVTT", f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000", ""]
    first_second = index * segment_ms // 1000
    for second in range(segment_ms // 1000):
        lines.append(f"{_vtt_time(second * 1000)} --> {_vtt_time(second * 1000 + cue_ms)}")
        lines.append(f"{language} second {first_second + second}")
        lines.append("")
    return "\n".join(lines)


def _vtt_time(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{ms % 1000:03d}"


def _check_languages(field: str, languages: Sequence[str]) -> None:
    for language in languages:
        if _LANGUAGE_RE.fullmatch(language) is None:
            raise ValueError(
                f"{field} entries must be language codes like 'en' or 'pt-BR', got {language!r}"
            )
    if len(set(languages)) != len(languages):
        raise ValueError(f"{field} lists a language twice: {list(languages)}")


def _query_int(request: web.Request, name: str) -> int:
    value = request.query[name]
    if not value.isdecimal():
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
