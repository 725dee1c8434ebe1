"""The aiohttp application: routes, JSON errors, CORS, bearer keys with scopes."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livecut import metrics
from livecut.api import livepeer, nodes, storage
from livecut.api.analysis import THUMBNAIL_ROUTES
from livecut.api.clips import (
    clip_file,
    clip_media,
    create_clip,
    delete_clip,
    export_session,
    get_clip,
    list_clips,
)
from livecut.api.console import CONSOLE_ROUTES
from livecut.api.context import API_KEY, CTX, ApiContext, Handler, ctx_of, error
from livecut.api.events import EVENT_ROUTES
from livecut.api.overlays import OVERLAY_ROUTES
from livecut.api.playback import PLAYBACK_ROUTES
from livecut.api.shots import SHOTS_ROUTES
from livecut.api.signed import EVENTS_SCOPE, stream_scope
from livecut.api.streams import (
    get_session,
    get_stream,
    list_sessions,
    list_streams,
    stream_timeline,
)
from livecut.api.validate import Invalid, check_query
from livecut.api.webhooks import list_deliveries
from livecut.config import ApiKey

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json", "/")
OPEN_PREFIXES = ("/console/",)  # the console's static files: the key is entered in the page
# Routes a signed query (?exp=&sig=) opens without a key, and the scope it must sign:
# a stream's playback, the files of a clip (signed for the clip's stream), the events.
SIGNED_STREAM_ROUTES = (
    "/v1/streams/{id}/live.m3u8",
    "/v1/streams/{id}/vod.m3u8",
    "/v1/streams/{id}/master.m3u8",
    "/v1/streams/{id}/media/{name}",
)
SIGNED_CLIP_ROUTES = (
    "/v1/clips/{id}/{file}",
    "/v1/clips/{id}/media/{name}",
    "/v1/clips/{id}/thumbnail.jpg",
    "/v1/clips/{id}/thumbnail.webp",
    "/v1/clips/{id}/thumbnail.png",
)
OPENAPI = Path(__file__).with_name("openapi.json")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key"
CORS_EXPOSE = "Location, Retry-After, Content-Length, Content-Range"
CORS_MAX_AGE_S = 600


def make_app(ctx: ApiContext) -> web.Application:
    server = ctx.config.server
    app = web.Application(
        middlewares=[_cors(server.cors_origins), _errors, _auth(server.keys())],
        client_max_size=MAX_BODY,
    )
    app[CTX] = ctx

    async def stopping(_: web.Application) -> None:
        ctx.stopping.set()  # held reloads and event streams end now, not at a timeout

    app.on_shutdown.append(stopping)
    for method, path, handler in routes():
        app.router.add_route(method, path, handler)
        if method == "GET":
            app.router.add_route("HEAD", path, handler)
    return app


def routes() -> list[tuple[str, str, Handler]]:
    """Every route the API serves; openapi.json documents exactly these (a test checks).

    Every GET route answers HEAD too; every route answers a CORS preflight (OPTIONS).
    """
    return [
        *CONSOLE_ROUTES,
        ("GET", "/healthz", healthz),
        ("GET", "/metrics", prometheus),
        ("GET", "/openapi.json", openapi),
        ("GET", "/v1/storage", storage.get_storage),
        ("GET", "/v1/nodes", nodes.list_nodes),
        ("GET", "/v1/streams", list_streams),
        ("GET", "/v1/streams/{id}", get_stream),
        ("GET", "/v1/streams/{id}/sessions", list_sessions),
        ("GET", "/v1/streams/{id}/timeline", stream_timeline),
        *PLAYBACK_ROUTES,
        *EVENT_ROUTES,
        *THUMBNAIL_ROUTES,
        ("GET", "/v1/sessions/{id}", get_session),
        ("POST", "/v1/sessions/{id}/export", export_session),
        *OVERLAY_ROUTES,
        ("POST", "/v1/clips", create_clip),
        ("GET", "/v1/clips", list_clips),
        ("GET", "/v1/clips/{id}", get_clip),
        ("DELETE", "/v1/clips/{id}", delete_clip),
        (
            "GET",
            (
                r"/v1/clips/{id}/"
                r"{file:(?:clip|w\d+)(?:-\d+)?\.mp4|(?:clip|w\d+)\.vtt|(?:index|w\d+)\.m3u8}"
            ),
            clip_file,
        ),
        ("GET", r"/v1/clips/{id}/media/{name:(?:init-)?\d+\.(?:ts|m4s|mp4|vtt)}", clip_media),
        *SHOTS_ROUTES,
        ("GET", "/v1/webhooks/deliveries", list_deliveries),
        # Livepeer Studio's clip API, for apps written against its SDKs.
        ("POST", "/api/clip", livepeer.create_clip),
        ("GET", "/api/asset", livepeer.list_assets),
        ("GET", "/api/asset/{id}", livepeer.get_asset),
        ("DELETE", "/api/asset/{id}", livepeer.delete_asset),
        ("GET", "/api/task/{id}", livepeer.get_task),
        ("GET", "/api/session/{id}", livepeer.get_session),
        ("GET", "/api/session/{id}/clips", livepeer.session_clips),
        ("GET", "/api/stream/{id}", livepeer.get_stream),
        ("GET", "/api/stream/{id}/clips", livepeer.stream_clips),
        ("GET", "/api/playback/{id}", livepeer.playback),
    ]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    where = _nul_in_url(request)
    if where is not None:
        # No id, name or filter holds one, and PostgreSQL's text cannot even be asked.
        return error(400, f"{where} holds a NUL character (%00)")
    try:
        return await handler(request)
    except Invalid as exc:
        response = error(exc.status, *exc.errors)
        response.headers.update(exc.headers)
        return response
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal error; the daemon's log has the details")


def _nul_in_url(request: web.Request) -> str | None:
    """Which part of the URL, decoded, holds a NUL: the path, or a query parameter."""
    if "\x00" in request.path:
        return "the path"
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            return f"query parameter {key.replace(chr(0), '%00')!r}"
    return None


def _cors(origins: tuple[str, ...]) -> Middleware:
    """Preflights for configured origins, their headers on every answer, and no CSRF:
    a browser's unsafe request from any other origin is refused before it runs."""
    allow_any = "*" in origins

    def allowed(origin: str | None) -> bool:
        return origin is not None and (allow_any or origin.lower() in origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return _preflight(request, origin if allowed(origin) else None)
        if (
            request.method not in SAFE_METHODS
            and origin is not None
            and not allowed(origin)
            and not _same_origin(request, origin)
        ):
            return error(
                403,
                f"origin {origin!r} may not call this API from a browser; "
                "add it to server.cors_origins",
            )
        response = await handler(request)
        if allowed(origin) and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
            response.headers["Vary"] = "Origin"
        return response

    return middleware


def _same_origin(request: web.Request, origin: str) -> bool:
    return origin.lower() == f"{request.scheme}://{request.host}".lower()


def _preflight(request: web.Request, origin: str | None) -> web.Response:
    exc = request.match_info.http_exception
    if exc is not None and not isinstance(exc, web.HTTPMethodNotAllowed):
        return error(exc.status, exc.reason)
    methods = sorted(
        {*(getattr(exc, "allowed_methods", None) or {request.method}), "OPTIONS"} - {"*"}
    )
    headers = {"Allow": ", ".join(methods)}
    if origin is not None:
        headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
                "Vary": "Origin",
            }
        )
    return web.Response(status=204, headers=headers)


def _auth(keys: tuple[ApiKey, ...]) -> Middleware:
    encoded = [(k, k.key.encode()) for k in keys]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not encoded or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        if "Authorization" not in request.headers and await _signed(request):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode("utf-8", "surrogateescape")
        # Compare against every key, always, so timing says nothing about which matched.
        matched: ApiKey | None = None
        for key, secret in encoded:
            if hmac.compare_digest(secret, presented):
                matched = key
        if scheme.lower() != "bearer" or matched is None:
            return web.json_response(
                {"errors": ["a valid API key is required: Authorization: Bearer <key>"]},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if matched.scope == "read" and request.method not in SAFE_METHODS:
            return error(403, f"API key {matched.name!r} may only read (scope read)")
        request[API_KEY] = matched.name
        return await handler(request)

    return middleware


async def _signed(request: web.Request) -> bool:
    """A GET whose query signs the scope of the route it asks for (see api/signed.py)."""
    if request.method not in ("GET", "HEAD") or "sig" not in request.query:
        return False
    resource = request.match_info.route.resource
    route = "" if resource is None else resource.canonical
    ctx = ctx_of(request)
    scope: str | None = None
    if route in SIGNED_STREAM_ROUTES:
        scope = stream_scope(request.match_info["id"])
    elif route in SIGNED_CLIP_ROUTES:
        clip = await ctx.store.index.clip(request.match_info["id"])
        scope = None if clip is None else stream_scope(clip.stream_id)
    elif route == EVENTS_SCOPE:
        scope = EVENTS_SCOPE
    return scope is not None and ctx.signer.verify(scope, request.query, now_s=ctx.clock())


# health and metrics ---------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    last_reload = ctx.last_reload()
    return web.json_response(
        {
            "status": "ok",
            "streams": len(ctx.recorders),
            "last_reload": None if last_reload is None else last_reload.as_dict(),
        }
    )


async def prometheus(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    metrics.INDEX_BYTES.set(await ctx.store.index.size_bytes())
    await ctx.before_scrape()
    await ctx.store.space.disk()  # sets the free-space and floor gauges
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})
