"""The aiohttp application: routes, JSON errors, bearer-key auth."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livecut import metrics
from livecut.api.clips import (
    clip_file,
    clip_media,
    create_clip,
    delete_clip,
    export_session,
    get_clip,
    list_clips,
)
from livecut.api.context import CTX, ApiContext, Handler, ctx_of, error
from livecut.api.streams import (
    get_session,
    get_stream,
    list_sessions,
    list_streams,
    stream_timeline,
)
from livecut.api.validate import Invalid

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json")
OPENAPI = Path(__file__).with_name("openapi.json")


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


# health and metrics ---------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return web.json_response({"status": "ok", "streams": len(ctx.recorders)})


async def prometheus(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    metrics.INDEX_BYTES.set(ctx.store.index.size_bytes())
    metrics.DISK_FREE_BYTES.set(ctx.store.disk_free_bytes())
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})
