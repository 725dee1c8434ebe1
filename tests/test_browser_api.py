"""A web app on another origin creates a clip with fetch() and plays it (Chromium, hls.js)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from livecut.origin import LiveOrigin
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PLAYER_PATH,
    _confine_to_loopback,
    _play,
    add_player_routes,
    require_browser,
    serve,
)
from tests.harness import daemon_config, running, until

KEY = "browser-test-key-0123456789"

# Runs in the page: create the clip, follow it until ready, return it.
CREATE_AND_WAIT = """
async ([api, key, body]) => {
  const headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key};
  const created = await fetch(api + "/v1/clips", {method: "POST", headers, body});
  const clip = await created.json();
  if (created.status !== 202) return {status: created.status, clip};
  const location = created.headers.get("Location");
  for (let i = 0; i < 300; i++) {
    const r = await fetch(location, {headers: {"Authorization": "Bearer " + key}});
    const current = await r.json();
    if (current.state === "ready" || current.state === "failed") {
      return {status: created.status, location, clip: current};
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {status: 0, clip};
}
"""


async def test_cross_origin_app_creates_and_plays_a_clip(data_dir: Path) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    origin = LiveOrigin(segment_ms=1000, window=10, prefill=6)
    origin_url = await origin.start()
    page_app = web.Application()
    add_player_routes(page_app)
    try:
        async with serve(page_app) as page_origin:
            base = daemon_config(data_dir, origin_url)
            config = replace(
                base,
                server=replace(base.server, api_keys=(KEY,), cors_origins=(page_origin,)),
            )
            async with running(config) as daemon:

                async def recorded() -> bool:
                    live = await daemon.store.index.live_session("cam")
                    return live is not None and (live.live_edge_ms or 0) - live.started_ms >= 6000

                await until(daemon, "cam", recorded, timeout_s=30)
                live = await daemon.store.index.live_session("cam")
                assert live is not None and live.live_edge_ms is not None
                body = json.dumps(
                    {
                        "stream": "cam",
                        "start_ms": live.live_edge_ms - 5000,
                        "end_ms": live.live_edge_ms - 500,
                        "formats": ["hls", "mp4"],
                    }
                )
                async with asyncio.timeout(90), async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
                    )
                    try:
                        context = await browser.new_context()
                        page = await context.new_page()
                        log: list[str] = []
                        page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
                        await _confine_to_loopback(context, log)
                        await page.goto(page_origin + PLAYER_PATH)
                        await page.wait_for_function("() => window.livecutPlayer !== undefined")
                        result = await page.evaluate(CREATE_AND_WAIT, [daemon.base_url, KEY, body])
                        assert result["status"] == 202, (result, log)
                        clip = result["clip"]
                        assert clip["state"] == "ready", clip
                        assert result["location"] == f"{daemon.base_url}/v1/clips/{clip['id']}"
                        playlist = clip["links"]["hls"]
                        assert playlist.startswith(daemon.base_url), playlist
                        played = await _play(
                            page,
                            playlist,
                            3.0,
                            30.0,
                            browser.version,
                            log,
                            headers={"Authorization": f"Bearer {KEY}"},
                        )
                    finally:
                        await browser.close()
                assert played.advanced, played.describe()
                assert not played.fatal_errors, played.describe()
                assert (played.video_width, played.video_height) == (320, 180)
    finally:
        await origin.stop()
