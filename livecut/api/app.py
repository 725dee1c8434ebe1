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
from livecut.clips.jobs import CLIP_FILE, ClipJobs, QueueFull
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
        ("GET", "/v1/sessions/{id}", get_session),
        ("POST", "/v1/clips", create_clip),
        ("GET", "/v1/clips", list_clips),
        ("GET", "/v1/clips/{id}", get_clip),
        ("DELETE", "/v1/clips/{id}", delete_clip),
        ("GET", f"/v1/clips/{{id}}/{CLIP_FILE}", clip_file),
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
    if clip.state == "ready":
        body["links"] = {"self": f"/v1/clips/{clip.id}", "mp4": f"/v1/clips/{clip.id}/{CLIP_FILE}"}
    return body


async def create_clip(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error(400, f"the body is not valid JSON: {exc}")
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


async def clip_file(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    clip = ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {request.match_info['id']!r}")
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    path = ctx.store.clip_dir(clip.id) / CLIP_FILE
    if not path.is_file():
        return error(410, f"the file of clip {clip.id} is gone")
    filename = (clip.name or clip.id).replace('"', "")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/mp4",
            "Content-Disposition": f'inline; filename="{filename}.mp4"',
        },
    )
