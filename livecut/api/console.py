"""The console: the static page at `/` (livecut/console/) and the hls.js it plays with."""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

import livecut
from livecut.api.context import ctx_of, error
from livecut.api.validate import check_query, short
from livecut.config import ServerConfig

CONSOLE_DIR = Path(livecut.__file__).resolve().parent / "console"
HLSJS = "hls.min.js"
HLSJS_ENV = "LIVECUT_HLSJS"
# Where `npm install --prefix .cache/npm hls.js@1` puts it, under a checkout.
HLSJS_NPM = Path(".cache") / "npm" / "node_modules" / "hls.js" / "dist" / HLSJS
INSTALL_HLSJS = "npm install --no-audit --no-fund --prefix .cache/npm hls.js@1"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Everything the page loads comes from the daemon itself. hls.js runs its demuxer in a
# worker made from a blob: URL and feeds the video through MediaSource (blob: again);
# storyboard sheets and thumbnails are fetched with the key and shown as blob: images.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; worker-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # New files take effect on the next load after an upgrade.
    "Cache-Control": "no-cache",
}


def find_hlsjs(server: ServerConfig, *, cwd: Path | None = None) -> Path | None:
    """hls.min.js from `server.hlsjs_path`, else $LIVECUT_HLSJS, else where the README's
    npm step puts it (under the working directory, or the checkout livecut runs from)."""
    if server.hlsjs_path is not None:
        return server.hlsjs_path
    configured = os.environ.get(HLSJS_ENV)
    if configured:
        return Path(configured)
    for root in (cwd or Path.cwd(), CONSOLE_DIR.parent.parent):
        candidate = root / HLSJS_NPM
        if candidate.is_file():
            return candidate
    return None


async def console_page(request: web.Request) -> web.StreamResponse:
    check_query(request.query, ())
    return _file(CONSOLE_DIR / "index.html")


async def console_file(request: web.Request) -> web.StreamResponse:
    check_query(request.query, ())
    name = request.match_info["file"]
    if name == HLSJS:
        hlsjs = ctx_of(request).hlsjs
        if hlsjs is None or not hlsjs.is_file():
            where = "no path is configured" if hlsjs is None else f"{hlsjs} is not a file"
            return error(
                404,
                f"hls.js is not installed ({where}): run `{INSTALL_HLSJS}` in the directory "
                f"livecut starts from, or set server.hlsjs_path or ${HLSJS_ENV}",
            )
        return _file(hlsjs)
    path = CONSOLE_DIR / name
    if not path.is_file():
        return error(404, f"the console has no file {short(name)}")
    return _file(path)


def _file(path: Path) -> web.FileResponse:
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type, **SECURITY_HEADERS})


CONSOLE_ROUTES = [
    ("GET", "/", console_page),
    ("GET", r"/console/{file:[a-z0-9][a-z0-9.-]*\.(?:js|css|svg|png)}", console_file),
]
