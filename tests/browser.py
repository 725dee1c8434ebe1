"""A real player for tests: headless Debian Chromium playing HLS through hls.js.

The page and hls.js are served by the test's own aiohttp server (add_player_routes),
so the page, the playlists and the segments share one 127.0.0.1 origin and nothing is
fetched from anywhere else. Chromium comes from Debian (`apt-get install chromium`),
hls.js from the npm registry into .cache/npm; .ci/run installs both. Playwright only
drives that Chromium: it never downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Route

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("LIVECUT_CHROMIUM") or "/usr/bin/chromium")
HLSJS_DEFAULT = ROOT / ".cache" / "npm" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
)
PLAYER_PATH = "/_player/"
INSTALL_CHROMIUM = "sudo apt-get install -y chromium"
INSTALL_HLSJS = "npm install --no-audit --no-fund --prefix .cache/npm hls.js@1"
INSTALL_PLAYWRIGHT = ".venv/bin/pip install -e '.[test]'"

_LAUNCH_TIMEOUT_MS = 30_000
_PAGE_TIMEOUT_MS = 15_000
_EVALUATE_TIMEOUT_S = 5.0
_SAMPLE_EVERY_S = 0.2


@dataclass(frozen=True, kw_only=True, slots=True)
class HlsJsError:
    """One hls.js ERROR event (or a setup failure of the page itself)."""

    type: str  # networkError, mediaError, muxError, ..., or "page"
    details: str  # bufferAppendError, fragParsingError, manifestLoadError, ...
    fatal: bool
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserResult:
    """What the page saw while it played."""

    advanced: bool  # media time moved forward by at least the seconds asked for
    samples: tuple[tuple[float, float], ...]  # (wall s since play was asked, currentTime)
    video_width: int
    video_height: int
    errors: tuple[HlsJsError, ...]
    media_error: str | None  # HTMLMediaElement.error as "code: message"
    hlsjs_version: str
    browser_version: str
    log: tuple[str, ...]  # console messages, page errors, failed requests

    @property
    def advanced_s(self) -> float:
        if not self.samples:
            return 0.0
        return self.samples[-1][1] - self.samples[0][1]

    @property
    def fatal_errors(self) -> tuple[HlsJsError, ...]:
        return tuple(error for error in self.errors if error.fatal)

    def describe(self) -> str:
        """A paragraph for assertion messages: enough to see why playback stalled."""
        shown = ", ".join(f"{wall:.1f}s:{media:.2f}" for wall, media in self.samples[-12:])
        return (
            f"advanced {self.advanced_s:.2f} s of media (advanced={self.advanced}); "
            f"video {self.video_width}x{self.video_height}; media error {self.media_error}; "
            f"hls.js {self.hlsjs_version} errors {[*self.errors]}; "
            f"Chromium {self.browser_version}; last samples [{shown}]; "
            f"log {list(self.log[-20:])}"
        )


def hlsjs_path() -> Path:
    """hls.min.js: $LIVECUT_HLSJS (set by .ci/run), else where .ci/run installs it."""
    configured = os.environ.get("LIVECUT_HLSJS")
    return Path(configured) if configured else HLSJS_DEFAULT


def require_browser() -> None:
    """Skip the test, or fail it under CI, when the browser or hls.js is not installed."""
    missing: list[str] = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append(f"Playwright for Python (test extra): {INSTALL_PLAYWRIGHT}")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM}: {INSTALL_CHROMIUM}")
    if not hlsjs_path().is_file():
        missing.append(f"hls.js at {hlsjs_path()}: (cd {ROOT} && {INSTALL_HLSJS})")
    if not missing:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(
            "the browser tests need what .ci/run should have installed, and it did not: "
            + "; ".join(missing),
            pytrace=False,
        )
    pytest.skip("browser tests need " + "; ".join(missing) + " (or run .ci/run once)")


def add_player_routes(app: web.Application) -> None:
    """Serve the player page at PLAYER_PATH and hls.min.js beside it."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def hlsjs(_: web.Request) -> web.FileResponse:
        return web.FileResponse(hlsjs_path(), headers={"Content-Type": "text/javascript"})

    app.router.add_get(PLAYER_PATH, page)
    app.router.add_get(PLAYER_PATH + "hls.min.js", hlsjs)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 on a free port; yield its origin, http://127.0.0.1:PORT."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def playback_advances(
    page_origin: str,
    playlist_url: str,
    *,
    seconds: float = 3.0,
    timeout_s: float | None = None,
) -> BrowserResult:
    """Play `playlist_url` muted in headless Chromium until `seconds` of media have played.

    The page is PLAYER_PATH on `page_origin` (an app with add_player_routes). Returns
    early on a fatal hls.js error, a media element error or the end of the stream, and
    gives up `timeout_s` (default `seconds` + 20) after play was asked.
    """
    require_browser()
    from playwright.async_api import async_playwright

    limit_s = seconds + 20.0 if timeout_s is None else timeout_s
    # A backstop over launching, loading and closing too, each also bounded below.
    async with asyncio.timeout(limit_s + 60.0), async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=list(CHROMIUM_ARGS),
            headless=True,
            timeout=_LAUNCH_TIMEOUT_MS,
        )
        try:
            context = await browser.new_context()
            context.set_default_timeout(_PAGE_TIMEOUT_MS)
            page = await context.new_page()
            log: list[str] = []
            page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
            page.on(
                "requestfailed",
                lambda request: log.append(f"request failed: {request.url} {request.failure}"),
            )
            await _confine_to_loopback(context, log)
            await page.goto(page_origin.rstrip("/") + PLAYER_PATH, timeout=_PAGE_TIMEOUT_MS)
            await page.wait_for_function("() => window.livecutPlayer !== undefined")
            return await _play(page, playlist_url, seconds, limit_s, browser.version, log)
        finally:
            await browser.close()


async def _confine_to_loopback(context: BrowserContext, log: list[str]) -> None:
    """Abort any request that would leave the machine, and say so in the log."""

    async def route(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            log.append(f"blocked request off the machine: {route.request.url}")
            await route.abort()

    await context.route("**/*", route)


async def _play(
    page: Page,
    playlist_url: str,
    seconds: float,
    limit_s: float,
    browser_version: str,
    log: list[str],
    headers: dict[str, str] | None = None,
) -> BrowserResult:
    started = time.monotonic()
    await _evaluate(
        page,
        f"window.livecutPlayer.start({json.dumps(playlist_url)}, {json.dumps(headers or {})})",
    )
    samples: list[tuple[float, float]] = []
    snapshot: dict[str, Any] = {}
    while True:
        snapshot = await _evaluate(page, "window.livecutPlayer.snapshot()")
        elapsed = time.monotonic() - started
        samples.append((round(elapsed, 3), float(snapshot["time"])))
        advanced = samples[-1][1] - samples[0][1] >= seconds
        fatal = snapshot["mediaError"] is not None or any(e["fatal"] for e in snapshot["errors"])
        if advanced or fatal or snapshot["ended"] or elapsed >= limit_s:
            break
        await asyncio.sleep(_SAMPLE_EVERY_S)
    return BrowserResult(
        advanced=advanced,
        samples=tuple(samples),
        video_width=int(snapshot["width"]),
        video_height=int(snapshot["height"]),
        errors=tuple(
            HlsJsError(
                type=str(e["type"]),
                details=str(e["details"]),
                fatal=bool(e["fatal"]),
                reason=str(e["reason"]),
            )
            for e in snapshot["errors"]
        ),
        media_error=snapshot["mediaError"],
        hlsjs_version=str(snapshot["version"]),
        browser_version=browser_version,
        log=tuple(log),
    )


async def _evaluate(page: Page, expression: str) -> Any:
    return await asyncio.wait_for(page.evaluate(expression), _EVALUATE_TIMEOUT_S)


_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>livecut test player</title>
<script src="hls.min.js"></script></head>
<body>
<video id="video" muted playsinline></video>
<script>
"use strict";
(() => {
  const video = document.getElementById("video");
  const errors = [];
  let mediaError = null;
  const describe = (value) => {
    if (value === undefined || value === null) return "";
    if (value instanceof Error) return value.name + ": " + value.message;
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  };
  video.addEventListener("error", () => {
    const e = video.error;
    mediaError = e ? e.code + ": " + e.message : "unknown";
  });
  window.livecutPlayer = {
    start(url, headers) {
      if (url.split("?")[0].endsWith(".mp4")) {
        // A progressive MP4: the browser's own demuxer, fetching by ranges.
        video.src = url;
        video.play().catch((e) => errors.push(
          {type: "page", details: String(e), fatal: true, reason: ""}));
        return;
      }
      if (typeof Hls === "undefined") {
        errors.push({type: "page", details: "hls.js did not load", fatal: true, reason: ""});
        return;
      }
      if (!Hls.isSupported()) {
        errors.push({type: "page", details: "no MediaSource", fatal: true, reason: ""});
        return;
      }
      // Extra request headers (e.g. Authorization for a daemon with API keys).
      const xhrSetup = (xhr) => {
        for (const [name, value] of Object.entries(headers || {})) {
          xhr.setRequestHeader(name, value);
        }
      };
      const hls = new Hls({enableWorker: true, xhrSetup});
      hls.on(Hls.Events.ERROR, (_event, data) => {
        errors.push({
          type: String(data.type),
          details: String(data.details),
          fatal: Boolean(data.fatal),
          reason: describe(data.reason || data.error || (data.response && data.response.code)),
        });
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        video.play().catch((e) => {
          errors.push({type: "page", details: "play() refused", fatal: true, reason: describe(e)});
        });
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      window.hls = hls;
    },
    snapshot() {
      return {
        time: video.currentTime,
        width: video.videoWidth,
        height: video.videoHeight,
        ended: video.ended,
        errors: errors,
        mediaError: mediaError,
        version: typeof Hls === "undefined" ? "none" : Hls.version,
      };
    },
  };
})();
</script>
</body>
</html>
"""
