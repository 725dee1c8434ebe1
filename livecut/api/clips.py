"""Clip jobs and their files, and session exports (which are clip jobs too)."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from urllib.parse import quote, urlencode

from aiohttp import web

from livecut.api.context import API_KEY, ApiContext, ctx_of, error, json_body, now_ms
from livecut.api.signed import SIGNED_QUERY
from livecut.api.stored import read_stored_text, stored_media
from livecut.api.streams import recordings
from livecut.api.validate import (
    ClipLimits,
    Extras,
    Invalid,
    check_query,
    clip_request,
    page_limit,
    query_int,
    short,
)
from livecut.api.views import absolute, clip_json
from livecut.clips.hls import carry_query
from livecut.clips.jobs import ClipRequest, QueueFull
from livecut.clips.planner import nearest_spans
from livecut.store import files
from livecut.store.media import clip_relpath
from livecut.store.records import CLIP_STATES, ClipRow
from livecut.webhooks.targets import RefusedTarget, check_callback_url

IDEMPOTENCY_S = 24 * 3600
IDEMPOTENCY_KEY_MAX = 255
RETRY_AFTER_S = 5


async def render_clip(ctx: ApiContext, clip: ClipRow) -> dict[str, object]:
    return clip_json(
        clip,
        base_url=ctx.base_url(),
        sessions=await ctx.store.index.clip_sessions(clip.id) or None,
        progress=ctx.jobs.progress(clip.id),
    )


async def extras(ctx: ApiContext) -> Extras:
    # Validation is pure: the overlays a request may name are looked up first (a few rows).
    overlays = set(ctx.store.configured_overlays)
    overlays |= {o.id for o in await ctx.store.index.overlays.all()}

    def check(url: object) -> str:
        if ctx.config.webhooks.secret is None:
            raise RefusedTarget(
                "callback_url needs webhooks.secret in the daemon's config (it signs them)"
            )
        return check_callback_url(url, allow_private=ctx.config.webhooks.allow_private)

    return Extras(
        check_callback_url=check,
        overlay_exists=lambda ref: ref in overlays,
    )


def clip_limits(ctx: ApiContext) -> ClipLimits:
    clips_config = ctx.config.clips
    return ClipLimits(
        now_ms=now_ms(ctx),
        max_duration_ms=clips_config.max_duration_ms,
        max_wait_ms=round(clips_config.max_wait_s * 1000),
    )


async def validate_clip(ctx: ApiContext, body: object) -> ClipRequest:
    # The validator is pure: the one session a body may name is looked up first.
    named = body.get("session") if isinstance(body, dict) else None
    session = await ctx.store.index.session(named) if isinstance(named, str) else None

    def session_owner(session_id: str) -> str | None:
        return session.stream_id if session is not None and session.id == session_id else None

    def session_start(session_id: str) -> int | None:
        return session.started_ms if session is not None and session.id == session_id else None

    return clip_request(
        body,
        streams=ctx.recorders.keys(),
        session_owner=session_owner,
        session_start=session_start,
        limits=clip_limits(ctx),
        extras=await extras(ctx),
    )


async def create_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    body = await json_body(request)
    replay, idempotency = await _idempotent(ctx, request, body)
    if replay is not None:
        return await _accepted(ctx, replay)
    req = await validate_clip(ctx, body)
    nothing = await nothing_recorded(ctx, req)
    if nothing is not None:
        return nothing
    return await submit(ctx, req, idempotency=idempotency)


async def nothing_recorded(ctx: ApiContext, req: ClipRequest) -> web.Response | None:
    if await _may_have_media(ctx, req.stream_id, req.session_id, req.start_ms, req.end_ms):
        return None
    recorded = await ctx.store.index.recorded_spans(req.stream_id)
    if not recorded and req.session_id is None:
        # Asked in the moment between an encoder starting and its first segment landing
        # (or of a stream that never came up): say so, and what to wait for.
        state = (await recordings(ctx))[req.stream_id].status.get("state")
        return error(
            422,
            f"stream {req.stream_id!r} has recorded nothing yet (its recorder is {state}):"
            " ask again once its first segment is in (the session.started webhook says when)",
            recorded_ranges=[],
        )
    spans = nearest_spans(recorded, req.start_ms, req.end_ms)
    return error(
        422,
        f"nothing of stream {req.stream_id!r} is recorded between {req.start_ms} and {req.end_ms}",
        recorded_ranges=[{"start_ms": s, "end_ms": e} for s, e in spans],
    )


async def _idempotent(
    ctx: ApiContext, request: web.Request, body: object
) -> tuple[ClipRow | None, tuple[str, str] | None]:
    """The clip an earlier request with this Idempotency-Key and body made, if any."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None, None
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable() or not key.isascii():
        raise Invalid(
            [f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"],
            status=400,
        )
    scoped = f"{request.get(API_KEY, '')}:{key}"
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    since = now_ms(ctx) - IDEMPOTENCY_S * 1000
    found = await ctx.store.index.idempotent_clip(scoped, since)
    if found is None:
        return None, (scoped, digest)
    stored_digest, clip_id = found
    if stored_digest != digest:
        raise Invalid(
            ["this Idempotency-Key was used with a different body in the last 24 h"], status=422
        )
    clip = await ctx.store.index.clip(clip_id)
    if clip is None:  # deleted since: the key may make a new clip
        return None, (scoped, digest)
    return clip, None


async def clip_sessions(ctx: ApiContext, req: ClipRequest) -> tuple[str, ...]:
    """The session(s) a clip's range comes from (a clip by stream may span several)."""
    if req.session_id is not None:
        return (req.session_id,)
    spans, _ = await ctx.store.index.timeline(req.stream_id, req.start_ms, req.end_ms, limit=100)
    found = dict.fromkeys(session for _, _, session in spans)
    live = await ctx.store.index.live_session(req.stream_id)
    if live is not None and req.end_ms > (live.live_edge_ms or live.started_ms):
        found[live.id] = None
    return tuple(found)


async def submit(
    ctx: ApiContext, req: ClipRequest, *, idempotency: tuple[str, str] | None = None
) -> web.Response:
    """Queue the job: 202 with the clip and where to follow it, or 429 when too many are."""
    clip = await submit_row(ctx, req, idempotency=idempotency)
    return await _accepted(ctx, clip)


async def submit_row(
    ctx: ApiContext, req: ClipRequest, *, idempotency: tuple[str, str] | None = None
) -> ClipRow:
    try:
        return await ctx.jobs.submit(
            req, sessions=await clip_sessions(ctx, req), idempotency=idempotency
        )
    except QueueFull as exc:
        raise TooBusy(str(exc)) from exc


class TooBusy(Invalid):
    def __init__(self, message: str) -> None:
        super().__init__([message], status=429)
        self.headers["Retry-After"] = str(RETRY_AFTER_S)


async def _accepted(ctx: ApiContext, clip: ClipRow) -> web.Response:
    return web.json_response(
        await render_clip(ctx, clip),
        status=202,
        headers={"Location": absolute(ctx.base_url(), f"/v1/clips/{clip.id}")},
    )


async def _may_have_media(
    ctx: ApiContext, stream_id: str, session_id: str | None, start_ms: int, end_ms: int
) -> bool:
    """Recorded media overlaps the range, or the live session will still record into it."""
    if await ctx.store.index.stream_segments(stream_id, start_ms, end_ms, session_id=session_id):
        return True
    session = (
        await ctx.store.index.session(session_id)
        if session_id
        else await ctx.store.index.live_session(stream_id)
    )
    return (
        session is not None
        and session.state == "live"
        and end_ms > (session.live_edge_ms or session.started_ms)
    )


LIST_QUERY = ("limit", "cursor", "stream", "session", "state", "created_after")


async def list_clips(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query = request.query
    check_query(query, LIST_QUERY)
    limit = page_limit(query.get("limit"))
    after = _cursor(query.get("cursor"))
    state = query.get("state")
    if state is not None and state not in CLIP_STATES:
        raise Invalid([f"state must be one of {', '.join(CLIP_STATES)}, not {short(state)}"], 400)
    created_after = query.get("created_after")
    clips = await ctx.store.index.clips(
        after=after,
        limit=limit,
        stream=query.get("stream"),
        session=query.get("session"),
        state=state,
        created_after=None if created_after is None else query_int(created_after, "created_after"),
    )
    next_cursor = f"{clips[-1].created_ms}.{clips[-1].id}" if len(clips) == limit else None
    return web.json_response(
        {"clips": [await render_clip(ctx, c) for c in clips], "next_cursor": next_cursor}
    )


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    created, _, clip_id = raw.partition(".")
    try:
        value = query_int(created, "cursor", signed=False)
    except Invalid:
        value = None
    if value is None or not clip_id:
        raise Invalid(
            [f"cursor {short(raw)} is not one this API handed out (use next_cursor)"], status=400
        )
    return value, clip_id


async def get_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    clip = await ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {short(request.match_info['id'])}")
    return web.json_response(await render_clip(ctx, clip))


async def delete_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    if not await ctx.jobs.delete(request.match_info["id"]):
        return error(404, f"unknown clip {short(request.match_info['id'])}")
    return web.Response(status=204)


CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".vtt": "text/vtt",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
}


# Web players (hls.js, <video>) on another origin fetch clip files with XHR or ranges.
PLAYER_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "*"}


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the exact name as filename* (any character survives)."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in name)
    exact = quote(name.encode("utf-8", "surrogatepass"), safe="")
    return f"inline; filename=\"{fallback}.mp4\"; filename*=UTF-8''{exact}.mp4"


def check_range(request: web.Request) -> None:
    """A suffix range of zero bytes (bytes=-0) can be satisfied by nothing: 416."""
    raw = request.headers.get("Range", "")
    if raw.replace(" ", "").lower() == "bytes=-0":
        raise Invalid(["Range bytes=-0 selects nothing"], status=416)


async def clip_file(request: web.Request) -> web.StreamResponse:
    """A clip's own output: clip.mp4, index.m3u8, clip.vtt, or wN.* for a window."""
    ctx = ctx_of(request)
    check_query(request.query, SIGNED_QUERY)
    clip = await ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {short(request.match_info['id'])}")
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    name = request.match_info["file"]
    missing = f"clip {clip.id} has no file {name!r}; its files are in its links"
    if files.safe_name(name) != name:
        return error(404, missing)
    relpath = clip_relpath(clip.id, name)
    if ctx.store.remote is None and not ctx.store.path(relpath).is_file():
        return error(404, missing)
    check_range(request)
    suffix = PurePosixPath(name).suffix
    headers = {
        "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
        **PLAYER_HEADERS,
    }
    if suffix == ".mp4":
        headers["Content-Disposition"] = content_disposition(clip.name or clip.id)
    signature = {k: request.query[k] for k in SIGNED_QUERY if k in request.query}
    if suffix == ".m3u8" and (signature or ctx.store.remote is not None):
        # Served by the daemon even with media in a bucket: its media URIs are relative
        # to this URL. Opened with a signed URL, so are the media it lists.
        text = await read_stored_text(ctx.store, relpath)
        if text is None:
            return error(404, missing)
        if signature:
            text = carry_query(text, urlencode(signature))
        return web.Response(text=text, headers=headers)
    return await stored_media(
        request, ctx.store, relpath, headers=headers, missing=missing, check=True
    )


async def clip_media(request: web.Request) -> web.StreamResponse:
    """A stored segment (or its init section) that an HLS clip's playlist names."""
    ctx = ctx_of(request)
    check_query(request.query, SIGNED_QUERY)
    clip_id, name = request.match_info["id"], request.match_info["name"]
    is_init = name.startswith("init-")
    number = name.removeprefix("init-").split(".", 1)[0]
    segment = (
        await ctx.store.index.pinned_segment(clip_id, int(number))
        if number.isascii() and number.isdigit() and len(number) <= 18
        else None
    )
    if segment is None:
        return error(404, f"clip {short(clip_id)} has no media {name!r}")
    relpath = segment.init_path if is_init else segment.path
    if relpath is None:
        return error(404, f"segment {segment.id} has no init section")
    check_range(request)
    suffix = ".mp4" if is_init else PurePosixPath(relpath).suffix
    return await stored_media(
        request,
        ctx.store,
        relpath,
        headers={
            "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
            **PLAYER_HEADERS,
        },
        missing=f"clip {short(clip_id)} has no media {name!r}",
    )


EXPORT_FIELDS = (
    "start_ms",
    "end_ms",
    "start_offset_ms",
    "end_offset_ms",
    "formats",
    "accuracy",
    "name",
    "rendition",
    "reencode_edges",
    "faststart",
    "render",
    "passthrough",
    "callback_url",
    "callback_id",
    "verify",
)


async def export_session(request: web.Request) -> web.Response:
    """A whole session, or a slice of it, through the clip machinery (no length limit)."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    session = await ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {short(request.match_info['id'])}")
    body = await json_body(request, empty_ok=True)
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object (or empty for the whole session)")
    unknown = sorted(set(body) - set(EXPORT_FIELDS))
    if unknown:
        return error(
            422,
            f"unknown field(s) {', '.join(short(u) for u in unknown[:5])}; "
            f"allowed: {', '.join(EXPORT_FIELDS)}",
        )
    first = await ctx.store.index.first_segment_start(session.id)
    edge = session.live_edge_ms
    if first is None or edge is None:
        return error(422, f"session {session.id} has no recorded media to export")
    offsets = "start_offset_ms" in body or "end_offset_ms" in body
    span = {} if offsets else {"start_ms": first, "end_ms": edge}
    if offsets and "end_offset_ms" not in body:
        span = {"end_offset_ms": edge - session.started_ms}
    clip_body = {"session": session.id, **span, **body}
    req = clip_request(
        clip_body,
        streams=ctx.recorders.keys(),
        session_owner=lambda sid: session.stream_id if sid == session.id else None,
        session_start=lambda sid: session.started_ms if sid == session.id else None,
        limits=ClipLimits(now_ms=now_ms(ctx), max_duration_ms=max(edge - first, 1), max_wait_ms=0),
        extras=await extras(ctx),
    )
    return await submit(ctx, req)
