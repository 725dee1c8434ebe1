"""Image routes: the frame at an instant of a stream or a clip, an animated preview of a
range, and storyboards (a sprite sheet and its WebVTT) of a session or a range."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from urllib.parse import urlencode

from aiohttp import web

from livecut.analysis.previews import animated_webp
from livecut.analysis.scan import (
    frames_in_range,
    pictures_at,
    planned_runs,
    run_files,
    scaled,
    size_files,
    video_size,
)
from livecut.analysis.storyboards import (
    COLUMNS,
    MAX_TILES,
    default_interval_ms,
    sprite_sheet,
    storyboard_vtt,
    tile_instants,
)
from livecut.analysis.thumbnails import (
    FIT_MODES,
    IMAGE_FORMATS,
    MEDIA_TYPES,
    FitMode,
    ImageFormat,
    encode_image,
    frame_at,
    frame_files,
)
from livecut.api.context import ApiContext, Handler, ctx_of, error
from livecut.api.signed import SIGNED_QUERY
from livecut.api.streams import known_stream
from livecut.api.validate import Invalid, check_query, query_int, short
from livecut.api.views import absolute
from livecut.clips.jobs import KEYFRAME_LOOKBACK_MS
from livecut.clips.planner import NothingRecorded

MAX_SIDE = 4096
CACHE_ENTRIES = 256
ANIMATED_MAX_MS = 30_000
ANIMATED_FPS = (1, 10)
ANIMATED_WIDTH = (16, 640)
TILE_WIDTH = (32, 640)
INTERVAL_MS = (1_000, 3_600_000)
STORYBOARD_FORMATS = ("jpg", "webp", "vtt")
# Recorded frames never change, so an image of one can be kept as long as it is asked for
# (keyed by the data directory too: one process may serve more than one store).
_cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()


def _cached(key: tuple[object, ...]) -> bytes | None:
    body = _cache.get(key)
    if body is not None:
        _cache.move_to_end(key)
    return body


def _keep(key: tuple[object, ...], body: bytes) -> None:
    _cache[key] = body
    while len(_cache) > CACHE_ENTRIES:
        _cache.popitem(last=False)


# thumbnails ------------------------------------------------------------------------------
def thumbnail_handler(image_format: ImageFormat) -> Handler:
    async def thumbnail(request: web.Request) -> web.Response:
        return await _stream_thumbnail(request, image_format)

    return thumbnail


def clip_thumbnail_handler(image_format: ImageFormat) -> Handler:
    async def thumbnail(request: web.Request) -> web.Response:
        return await _clip_thumbnail(request, image_format)

    return thumbnail


def _sizing(request: web.Request) -> tuple[int | None, int | None, FitMode]:
    width = _side(request, "width")
    height = _side(request, "height")
    fit = request.query.get("fit_mode", "preserve")
    if fit not in FIT_MODES:
        raise Invalid(
            [f"fit_mode must be one of {', '.join(FIT_MODES)}, not {short(fit)}"], status=400
        )
    fit_mode: FitMode = fit
    return width, height, fit_mode


async def _stream_thumbnail(request: web.Request, image_format: ImageFormat) -> web.Response:
    """The frame presented at at_ms, decoded from the keyframe before it."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("at_ms", "width", "height", "fit_mode"))
    known_stream(ctx, stream_id)
    raw_at = request.query.get("at_ms")
    if raw_at is None:
        raise Invalid(["at_ms is required: the instant to show, in Unix milliseconds"], status=400)
    at_ms = query_int(raw_at, "at_ms")
    width, height, fit_mode = _sizing(request)
    return await _image_at(ctx, stream_id, None, at_ms, image_format, width, height, fit_mode)


async def _clip_thumbnail(request: web.Request, image_format: ImageFormat) -> web.Response:
    """The frame of a clip presented `time` seconds after its first frame."""
    ctx = ctx_of(request)
    check_query(request.query, ("time", "width", "height", "fit_mode", *SIGNED_QUERY))
    clip = await ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {short(request.match_info['id'])}")
    width, height, fit_mode = _sizing(request)
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    result = clip.result or {}
    start, end = result.get("start_ms"), result.get("end_ms")
    start_ms = start if isinstance(start, int) else clip.start_ms
    end_ms = end if isinstance(end, int) else clip.end_ms
    duration_s = (end_ms - start_ms) / 1000
    raw = request.query.get("time", "0")
    try:
        time_s = float(raw)
    except ValueError:
        time_s = math.nan
    if not 0 <= time_s < duration_s:
        raise Invalid(
            [
                f"time must be seconds from the clip's first frame, from 0 to less than "
                f"{duration_s:g}, not {short(raw)}"
            ],
            status=400,
        )
    at_ms = start_ms + math.floor(time_s * 1000)
    return await _image_at(
        ctx, clip.stream_id, clip.session_id, at_ms, image_format, width, height, fit_mode
    )


async def _image_at(
    ctx: ApiContext,
    stream_id: str,
    session_id: str | None,
    at_ms: int,
    image_format: ImageFormat,
    width: int | None,
    height: int | None,
    fit_mode: FitMode,
) -> web.Response:
    key = (str(ctx.store.root), stream_id, session_id, at_ms, width, height, fit_mode, image_format)
    body = _cached(key)
    if body is None:
        reach = (at_ms - KEYFRAME_LOOKBACK_MS, at_ms + 1)
        with ctx.store.reading(stream_id, *reach):  # retention leaves them while we decode
            segments = await ctx.store.index.stream_segments(
                stream_id, *reach, session_id=session_id
            )
            video = [s for s in segments if s.has_video]
            if not any(s.start_ms <= at_ms < s.end_ms for s in video):
                return error(404, f"at_ms: no video of stream {stream_id} is recorded at {at_ms}")
            try:
                async with ctx.store.fetched(frame_files(video, at_ms)):
                    frame = await asyncio.to_thread(frame_at, video, at_ms, ctx.store.path)
            except (NothingRecorded, LookupError) as exc:
                return error(404, f"at_ms: {exc}")
        body = await asyncio.to_thread(
            encode_image, frame, image_format, width=width, height=height, fit_mode=fit_mode
        )
        _keep(key, body)
    return web.Response(body=body, content_type=MEDIA_TYPES[image_format])


def _side(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    value = query_int(raw, key, signed=False)
    if not 1 <= value <= MAX_SIDE:
        raise Invalid([f"{key} must be from 1 to {MAX_SIDE} pixels, not {value}"], status=400)
    return value


def _bounded(request: web.Request, key: str, default: int, bounds: tuple[int, int]) -> int:
    raw = request.query.get(key)
    low, high = bounds
    if raw is None:
        return default
    value = query_int(raw, key, signed=False) if raw.isascii() and raw.isdigit() else None
    if value is None or not low <= value <= high:
        raise Invalid([f"{key} must be an integer from {low} to {high}, not {short(raw)}"], 400)
    return value


def _required_ms(request: web.Request, key: str) -> int:
    raw = request.query.get(key)
    if raw is None:
        raise Invalid([f"{key} is required: an integer Unix time in milliseconds"], status=400)
    return query_int(raw, key)


# animated range preview ---------------------------------------------------------------------
async def animated(request: web.Request) -> web.Response:
    """An animated WebP of [from_ms, to_ms): fps frames a second, each the frame presented
    at its instant, width pixels wide."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("from_ms", "to_ms", "fps", "width"))
    known_stream(ctx, stream_id)
    from_ms = _required_ms(request, "from_ms")
    to_ms = _required_ms(request, "to_ms")
    if not 0 < to_ms - from_ms <= ANIMATED_MAX_MS:
        raise Invalid(
            [
                f"to_ms must be after from_ms and at most {ANIMATED_MAX_MS} ms after it,"
                f" not {to_ms - from_ms} ms"
            ],
            status=400,
        )
    fps = _bounded(request, "fps", 2, ANIMATED_FPS)
    width = _bounded(request, "width", 320, ANIMATED_WIDTH)
    key = (str(ctx.store.root), "animated", stream_id, from_ms, to_ms, fps, width)
    body = _cached(key)
    if body is None:
        segments = await ctx.store.index.stream_segments(
            stream_id, from_ms - KEYFRAME_LOOKBACK_MS, to_ms
        )
        try:
            runs = planned_runs(segments, from_ms, to_ms)
        except NothingRecorded as exc:
            return error(404, f"from_ms..to_ms: {exc}")
        step = 1000 / fps
        instants = [from_ms + n * step for n in range(max(1, math.ceil((to_ms - from_ms) / step)))]

        def render() -> bytes:
            size = scaled(video_size(runs, ctx.store.path), width)
            frames = frames_in_range(
                runs, from_ms, to_ms, ctx.store.path, size=size, pixel_format="rgb24"
            )
            return animated_webp(pictures_at(frames, instants), frame_ms=round(step))

        async with ctx.store.fetched(run_files(runs)):
            body = await asyncio.to_thread(render)
        _keep(key, body)
    return web.Response(body=body, content_type="image/webp")


# storyboards --------------------------------------------------------------------------------
def storyboard_handler(scope: str, kind: str) -> Handler:
    async def storyboard(request: web.Request) -> web.Response:
        return await _storyboard(request, scope, kind)

    return storyboard


async def _storyboard(request: web.Request, scope: str, kind: str) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ("from_ms", "to_ms", "interval_ms", "width"))
    subject = request.match_info["id"]
    session_id: str | None = None
    if scope == "session":
        session = await ctx.store.index.session(subject)
        if session is None:
            return error(404, f"unknown session {short(subject)}")
        stream_id, session_id = session.stream_id, session.id
        first = await ctx.store.index.first_segment_start(session.id)
        edge = session.live_edge_ms
        if first is None or edge is None:
            return error(404, f"session {session.id} has no recorded media yet")
        from_ms = _optional_ms(request, "from_ms", first)
        to_ms = _optional_ms(request, "to_ms", edge)
    else:
        stream_id = subject
        known_stream(ctx, stream_id)
        from_ms = _required_ms(request, "from_ms")
        to_ms = _required_ms(request, "to_ms")
    if to_ms <= from_ms:
        raise Invalid([f"to_ms ({to_ms}) must be after from_ms ({from_ms})"], status=400)
    interval = _bounded(request, "interval_ms", default_interval_ms(to_ms - from_ms), INTERVAL_MS)
    count = math.ceil((to_ms - from_ms) / interval)
    if count > MAX_TILES:
        least = math.ceil((to_ms - from_ms) / MAX_TILES)
        raise Invalid(
            [
                f"interval_ms {interval} gives {count} tiles; a storyboard has at most "
                f"{MAX_TILES}: use interval_ms of at least {least}, or a shorter range"
            ],
            status=400,
        )
    width = _bounded(request, "width", 160, TILE_WIDTH)
    segments = await ctx.store.index.stream_segments(
        stream_id, from_ms - KEYFRAME_LOOKBACK_MS, to_ms, session_id=session_id
    )
    try:
        runs = planned_runs(segments, from_ms, to_ms)
    except NothingRecorded as exc:
        return error(404, f"from_ms..to_ms: {exc}")
    async with ctx.store.fetched(size_files(runs)):
        size = scaled(await asyncio.to_thread(video_size, runs, ctx.store.path), width)
    if kind == "vtt":
        # The sheet this file points at is named by the exact tile set, so it stays right
        # for every cue here while a live session's storyboard grows.
        query = urlencode(
            {"from_ms": from_ms, "to_ms": to_ms, "interval_ms": interval, "width": width}
        )
        base = f"/v1/{'sessions' if scope == 'session' else 'streams'}/{subject}/storyboard.jpg"
        text = storyboard_vtt(
            count=count,
            interval_ms=interval,
            total_ms=to_ms - from_ms,
            tile=size,
            image_url=absolute(ctx.base_url(), f"{base}?{query}"),
            columns=COLUMNS,
        )
        return web.Response(text=text, content_type="text/vtt")
    key = (
        str(ctx.store.root),
        "storyboard",
        stream_id,
        session_id,
        from_ms,
        to_ms,
        interval,
        width,
        kind,
    )
    body = _cached(key)
    if body is None:
        instants = tile_instants(from_ms, to_ms, interval)

        def render() -> bytes:
            # Keyframes only: a storyboard of an hour costs seconds, not a full decode;
            # each tile shows the keyframe at or before its instant.
            frames = frames_in_range(
                runs,
                from_ms,
                to_ms,
                ctx.store.path,
                size=size,
                pixel_format="rgb24",
                keyframes_only=True,
            )
            return sprite_sheet(pictures_at(frames, instants), image_format=kind)

        async with ctx.store.fetched(run_files(runs)):
            body = await asyncio.to_thread(render)
        _keep(key, body)
    return web.Response(body=body, content_type=MEDIA_TYPES[kind])


def _optional_ms(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    return default if raw is None else query_int(raw, key)


THUMBNAIL_ROUTES: list[tuple[str, str, Handler]] = [
    *(
        ("GET", f"/v1/streams/{{id}}/thumbnail.{fmt}", thumbnail_handler(fmt))
        for fmt in IMAGE_FORMATS
    ),
    *(
        ("GET", f"/v1/clips/{{id}}/thumbnail.{fmt}", clip_thumbnail_handler(fmt))
        for fmt in IMAGE_FORMATS
    ),
    ("GET", "/v1/streams/{id}/animated.webp", animated),
    *(
        ("GET", f"/v1/{scope}s/{{id}}/storyboard.{kind}", storyboard_handler(scope, kind))
        for scope in ("session", "stream")
        for kind in STORYBOARD_FORMATS
    ),
]
