"""Analysis routes: a stream's frame at any instant as an image."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from aiohttp import web

from livecut.analysis.thumbnails import (
    FIT_MODES,
    IMAGE_FORMATS,
    MEDIA_TYPES,
    FitMode,
    ImageFormat,
    encode_image,
    frame_at,
)
from livecut.api.context import Handler, ctx_of, error
from livecut.api.streams import known_stream
from livecut.api.validate import Invalid, check_query, query_int, short
from livecut.clips.jobs import KEYFRAME_LOOKBACK_MS
from livecut.clips.planner import NothingRecorded

MAX_SIDE = 4096
CACHE_ENTRIES = 256
# Recorded frames never change, so an image of one can be kept as long as it is asked for.
_cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()


def thumbnail_handler(image_format: ImageFormat) -> Handler:
    async def thumbnail(request: web.Request) -> web.Response:
        return await _thumbnail(request, image_format)

    return thumbnail


async def _thumbnail(request: web.Request, image_format: ImageFormat) -> web.Response:
    """The frame presented at at_ms, decoded from the keyframe before it."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("at_ms", "width", "height", "fit_mode"))
    known_stream(ctx, stream_id)
    raw_at = request.query.get("at_ms")
    if raw_at is None:
        raise Invalid(["at_ms is required: the instant to show, in Unix milliseconds"], status=400)
    at_ms = query_int(raw_at, "at_ms")
    width = _side(request, "width")
    height = _side(request, "height")
    fit = request.query.get("fit_mode", "preserve")
    if fit not in FIT_MODES:
        raise Invalid(
            [f"fit_mode must be one of {', '.join(FIT_MODES)}, not {short(fit)}"], status=400
        )
    fit_mode: FitMode = fit
    key = (stream_id, at_ms, width, height, fit_mode, image_format)
    body = _cache.get(key)
    if body is None:
        segments = ctx.store.index.stream_segments(
            stream_id, at_ms - KEYFRAME_LOOKBACK_MS, at_ms + 1
        )
        video = [s for s in segments if s.has_video]
        if not any(s.start_ms <= at_ms < s.end_ms for s in video):
            return error(404, f"at_ms: no video of stream {stream_id} is recorded at {at_ms}")
        try:
            frame = await asyncio.to_thread(frame_at, video, at_ms, ctx.store.path)
        except (NothingRecorded, LookupError) as exc:
            return error(404, f"at_ms: {exc}")
        body = await asyncio.to_thread(
            encode_image, frame, image_format, width=width, height=height, fit_mode=fit_mode
        )
        _cache[key] = body
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return web.Response(body=body, content_type=MEDIA_TYPES[image_format])


def _side(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    value = query_int(raw, key, signed=False)
    if not 1 <= value <= MAX_SIDE:
        raise Invalid([f"{key} must be from 1 to {MAX_SIDE} pixels, not {value}"], status=400)
    return value


THUMBNAIL_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", f"/v1/streams/{{id}}/thumbnail.{fmt}", thumbnail_handler(fmt)) for fmt in IMAGE_FORMATS
]
