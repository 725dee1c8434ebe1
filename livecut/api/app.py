"""The aiohttp application: routes, JSON errors, bearer-key auth."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livecut import metrics
from livecut.api.validate import ClipLimits, Invalid, clip_request, page_limit
from livecut.clips.jobs import ClipJobs, QueueFull
from livecut.clips.planner import nearest_spans
from livecut.config import Config
from livecut.store.records import ClipRow, SessionRow
from livecut.store.store import Store

if TYPE_CHECKING:
    from livecut.ingest.recorder import Recorder

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json")
OPENAPI = Path(__file__).with_name("openapi.json")


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiContext:
    config: Config
    store: Store
    jobs: ClipJobs
    recorders: Mapping[str, Recorder]
    clock: Callable[[], float]


CTX = web.AppKey("livecut", ApiContext)


def make_app(ctx: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[_errors, _auth(ctx.config.server.api_keys)], client_max_size=MAX_BODY
    )
    app[CTX] = ctx
    for method, path, handler in routes():
        app.router.add_route(method, path, handler)
    return app


def routes() -> list[tuple[str, str, Handler]]:
    """Every route the API serves; openapi.json documents exactly these (a test checks)."""
    return [
        ("GET", "/healthz", healthz),
        ("GET", "/metrics", prometheus),
        ("GET", "/openapi.json", openapi),
        ("GET", "/v1/streams", list_streams),
        ("GET", "/v1/streams/{id}", get_stream),
        ("GET", "/v1/streams/{id}/sessions", list_sessions),
        ("GET", "/v1/streams/{id}/timeline", stream_timeline),
        ("GET", "/v1/sessions/{id}", get_session),
        ("POST", "/v1/sessions/{id}/export", export_session),
        ("POST", "/v1/clips", create_clip),
        ("GET", "/v1/clips", list_clips),
        ("GET", "/v1/clips/{id}", get_clip),
        ("DELETE", "/v1/clips/{id}", delete_clip),
        (
            "GET",
            r"/v1/clips/{id}/{file:(?:clip|w\d+)\.(?:mp4|vtt)|(?:index|w\d+)\.m3u8}",
            clip_file,
        ),
        ("GET", r"/v1/clips/{id}/media/{name:(?:init-)?\d+\.(?:ts|m4s|mp4|vtt)}", clip_media),
    ]


def error(status: int, *messages: str, **extra: object) -> web.Response:
    return web.json_response({"errors": list(messages), **extra}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Invalid as exc:
        return error(exc.status, *exc.errors)
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal error; the daemon's log has the details")


def _auth(keys: tuple[str, ...]) -> Middleware:
    encoded = [k.encode() for k in keys]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not encoded or request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        # Compare against every key, always, so timing says nothing about which matched.
        matched = False
        for key in encoded:
            matched |= hmac.compare_digest(key, token.strip().encode())
        if scheme.lower() != "bearer" or not matched:
            return web.json_response(
                {"errors": ["a valid API key is required: Authorization: Bearer <key>"]},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return middleware


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]


def _now_ms(ctx: ApiContext) -> int:
    return int(ctx.clock() * 1000)


# health and metrics ---------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return web.json_response({"status": "ok", "streams": len(ctx.recorders)})


async def prometheus(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    metrics.INDEX_BYTES.set(ctx.store.index.size_bytes())
    metrics.DISK_FREE_BYTES.set(ctx.store.disk_free_bytes())
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})


# streams and sessions -------------------------------------------------------------------
def _stream_json(ctx: ApiContext, stream_id: str, edges: Mapping[str, int]) -> dict[str, object]:
    recorder = ctx.recorders[stream_id]
    live = ctx.store.index.live_session(stream_id)
    edge = edges.get(stream_id)
    return {
        "id": stream_id,
        "url": recorder.stream.url,
        **recorder.status.as_dict(),
        "live_session": None if live is None else live.id,
        "live_edge_ms": edge,
        "live_edge_age_ms": None if edge is None else max(0, _now_ms(ctx) - edge),
        "retention_s": recorder.stream.retention_s,
    }


async def list_streams(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    edges = ctx.store.index.stream_live_edges()
    return web.json_response({"streams": [_stream_json(ctx, s, edges) for s in ctx.recorders]})


def _known_stream(ctx: ApiContext, stream_id: str) -> None:
    if stream_id not in ctx.recorders:
        known = ", ".join(sorted(ctx.recorders)) or "none configured"
        raise Invalid([f"unknown stream {stream_id!r}; known streams: {known}"], status=404)


async def get_stream(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    stream_id = request.match_info["id"]
    _known_stream(ctx, stream_id)
    return web.json_response(_stream_json(ctx, stream_id, ctx.store.index.stream_live_edges()))


def _session_json(session: SessionRow) -> dict[str, object]:
    return {
        "id": session.id,
        "stream": session.stream_id,
        "state": session.state,
        "clock": session.clock,
        "start_ms": session.started_ms,
        "end_ms": session.ended_ms if session.ended_ms is not None else session.live_edge_ms,
        "live_edge_ms": session.live_edge_ms,
        "end_reason": session.end_reason,
    }


async def list_sessions(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    stream_id = request.match_info["id"]
    _known_stream(ctx, stream_id)
    limit = page_limit(request.query.get("limit"), default=100)
    sessions = ctx.store.index.sessions(stream_id, limit=limit)
    return web.json_response({"sessions": [_session_json(s) for s in sessions]})


async def get_session(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    session = ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {request.match_info['id']!r}")
    renditions = [
        {
            "id": r.id,
            "name": r.name,
            "uri": r.uri,
            "bandwidth": r.bandwidth,
            "resolution": r.resolution,
            "codecs": r.codecs,
        }
        for r in ctx.store.index.renditions(session.id)
    ]
    return web.json_response({**_session_json(session), "renditions": renditions})


TIMELINE_DEFAULT_MS = 24 * 3600 * 1000
TIMELINE_LIMIT = 5000


async def stream_timeline(request: web.Request) -> web.Response:
    """Recorded ranges and gaps of a stream between from_ms and to_ms (default: the last day)."""
    ctx = _ctx(request)
    stream_id = request.match_info["id"]
    _known_stream(ctx, stream_id)
    to_ms = _query_ms(request, "to_ms", _now_ms(ctx))
    from_ms = _query_ms(request, "from_ms", to_ms - TIMELINE_DEFAULT_MS)
    if from_ms >= to_ms:
        raise Invalid([f"from_ms ({from_ms}) must be before to_ms ({to_ms})"], status=400)
    spans, gaps = ctx.store.index.timeline(stream_id, from_ms, to_ms, limit=TIMELINE_LIMIT)
    return web.json_response(
        {
            "stream": stream_id,
            "from_ms": from_ms,
            "to_ms": to_ms,
            "ranges": [{"start_ms": s, "end_ms": e, "session": sid} for s, e, sid in spans],
            "gaps": [
                {"start_ms": g.start_ms, "end_ms": g.end_ms, "reason": g.reason} for g in gaps
            ],
            "truncated": len(spans) == TIMELINE_LIMIT or len(gaps) == TIMELINE_LIMIT,
        }
    )


def _query_ms(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit():
        raise Invalid(
            [f"{key} must be an integer Unix time in milliseconds, not {raw!r}"], status=400
        )
    return int(raw)


EXPORT_FIELDS = (
    "start_ms",
    "end_ms",
    "formats",
    "accuracy",
    "name",
    "rendition",
    "reencode_edges",
)


async def export_session(request: web.Request) -> web.Response:
    """A whole session, or a slice of it, through the clip machinery (no length limit)."""
    ctx = _ctx(request)
    session = ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {request.match_info['id']!r}")
    body = await _json_body(request, empty_ok=True)
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object (or empty for the whole session)")
    unknown = sorted(set(body) - set(EXPORT_FIELDS))
    if unknown:
        return error(
            422, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(EXPORT_FIELDS)}"
        )
    first = ctx.store.index.first_segment_start(session.id)
    edge = session.live_edge_ms
    if first is None or edge is None:
        return error(422, f"session {session.id} has no recorded media to export")
    clip_body = {"session": session.id, "start_ms": first, "end_ms": edge, **body}
    req = clip_request(
        clip_body,
        streams=ctx.recorders.keys(),
        session_owner=lambda sid: session.stream_id if sid == session.id else None,
        limits=ClipLimits(now_ms=_now_ms(ctx), max_duration_ms=max(edge - first, 1), max_wait_ms=0),
    )
    try:
        clip = ctx.jobs.submit(req)
    except QueueFull as exc:
        return error(503, str(exc))
    return web.json_response(
        _clip_json(clip), status=202, headers={"Location": f"/v1/clips/{clip.id}"}
    )


async def _json_body(request: web.Request, *, empty_ok: bool = False) -> object:
    raw = await request.read()
    if not raw.strip() and empty_ok:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid([f"the body is not valid JSON: {exc}"], status=400) from exc


# clips ------------------------------------------------------------------------------------
def _clip_json(clip: ClipRow) -> dict[str, object]:
    body: dict[str, object] = {
        "id": clip.id,
        "name": clip.name,
        "stream": clip.stream_id,
        "session": clip.session_id,
        "state": clip.state,
        "requested": {"start_ms": clip.start_ms, "end_ms": clip.end_ms},
        "created_ms": clip.created_ms,
        "updated_ms": clip.updated_ms,
        "error": clip.error,
        "links": {"self": f"/v1/clips/{clip.id}"},
    }
    if clip.result is not None:
        body.update(clip.result)
    if clip.state == "ready" and isinstance(clip.result, dict):
        files = clip.result.get("files")
        if isinstance(files, dict):
            links = {kind: f["url"] for kind, f in files.items() if isinstance(f, dict)}
            body["links"] = {"self": f"/v1/clips/{clip.id}", **links}
    body["options"] = clip.options or {}
    return body


async def create_clip(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body = await _json_body(request)
    now = _now_ms(ctx)
    clips_config = ctx.config.clips

    def session_owner(session_id: str) -> str | None:
        session = ctx.store.index.session(session_id)
        return None if session is None else session.stream_id

    req = clip_request(
        body,
        streams=ctx.recorders.keys(),
        session_owner=session_owner,
        limits=ClipLimits(
            now_ms=now,
            max_duration_ms=clips_config.max_duration_ms,
            max_wait_ms=round(clips_config.max_wait_s * 1000),
        ),
    )
    if not _may_have_media(ctx, req.stream_id, req.session_id, req.start_ms, req.end_ms):
        spans = nearest_spans(
            ctx.store.index.recorded_spans(req.stream_id), req.start_ms, req.end_ms
        )
        return error(
            422,
            f"nothing of stream {req.stream_id!r} is recorded between {req.start_ms} and "
            f"{req.end_ms}",
            recorded_ranges=[{"start_ms": s, "end_ms": e} for s, e in spans],
        )
    try:
        clip = ctx.jobs.submit(req)
    except QueueFull as exc:
        return error(503, str(exc))
    return web.json_response(
        _clip_json(clip), status=202, headers={"Location": f"/v1/clips/{clip.id}"}
    )


def _may_have_media(
    ctx: ApiContext, stream_id: str, session_id: str | None, start_ms: int, end_ms: int
) -> bool:
    """Recorded media overlaps the range, or the live session will still record into it."""
    if ctx.store.index.stream_segments(stream_id, start_ms, end_ms, session_id=session_id):
        return True
    session = (
        ctx.store.index.session(session_id)
        if session_id
        else ctx.store.index.live_session(stream_id)
    )
    return (
        session is not None
        and session.state == "live"
        and end_ms > (session.live_edge_ms or session.started_ms)
    )


async def list_clips(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    limit = page_limit(request.query.get("limit"))
    after = _cursor(request.query.get("cursor"))
    clips = ctx.store.index.clips(after=after, limit=limit)
    next_cursor = f"{clips[-1].created_ms}.{clips[-1].id}" if len(clips) == limit else None
    return web.json_response({"clips": [_clip_json(c) for c in clips], "next_cursor": next_cursor})


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    created, _, clip_id = raw.partition(".")
    if not created.isdigit() or not clip_id:
        raise Invalid(
            [f"cursor {raw!r} is not one this API handed out (use next_cursor)"], status=400
        )
    return int(created), clip_id


async def get_clip(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    clip = ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {request.match_info['id']!r}")
    return web.json_response(_clip_json(clip))


async def delete_clip(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    if not ctx.jobs.delete(request.match_info["id"]):
        return error(404, f"unknown clip {request.match_info['id']!r}")
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


async def clip_file(request: web.Request) -> web.StreamResponse:
    """A clip's own output: clip.mp4, index.m3u8, clip.vtt, or wN.* for a window."""
    ctx = _ctx(request)
    clip = ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {request.match_info['id']!r}")
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    name = request.match_info["file"]
    path = ctx.store.clip_dir(clip.id) / name
    if not path.is_file():
        return error(404, f"clip {clip.id} has no file {name!r}; its files are in its links")
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        **PLAYER_HEADERS,
    }
    if path.suffix == ".mp4":
        filename = (clip.name or clip.id).replace('"', "")
        headers["Content-Disposition"] = f'inline; filename="{filename}.mp4"'
    return web.FileResponse(path, headers=headers)


async def clip_media(request: web.Request) -> web.StreamResponse:
    """A stored segment (or its init section) that an HLS clip's playlist names."""
    ctx = _ctx(request)
    clip_id, name = request.match_info["id"], request.match_info["name"]
    is_init = name.startswith("init-")
    number = name.removeprefix("init-").split(".", 1)[0]
    segment = ctx.store.index.pinned_segment(clip_id, int(number)) if number.isdigit() else None
    if segment is None:
        return error(404, f"clip {clip_id!r} has no media {name!r}")
    relpath = segment.init_path if is_init else segment.path
    if relpath is None:
        return error(404, f"segment {segment.id} has no init section")
    path = ctx.store.path(relpath)
    suffix = ".mp4" if is_init else path.suffix
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
            **PLAYER_HEADERS,
        },
    )
