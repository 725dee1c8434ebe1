"""The console and the playback playlists in a real browser (Debian's Chromium, hls.js),
against a daemon recording a live synthetic stream whose pictures carry their frame number.

One daemon serves the module: it records 80 s of stream at once (the origin publishes them
on start), then the encoder restarts (a discontinuity) and two segments go missing (a
gap), so the DVR window holds a minute to rewind into and both kinds of break.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from livecut.daemon import Daemon
from livecut.media.synth import frame_wall_ms
from livecut.origin import LiveOrigin
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BrowserResult,
    _confine_to_loopback,
    add_player_routes,
    playback_advances,
    require_browser,
    serve,
)
from tests.harness import daemon_config, decode_clip, running, until

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "console-test-key-0123456789"
SEGMENT_MS = 1000
PREFILL = 80  # seconds of stream recorded at once: a minute and more to rewind into
FPS = 25
FRAME_MS = 1000 // FPS
ZONE = "America/Sao_Paulo"  # not UTC, so the two clocks the console shows differ
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 720}

# Reads the 24-bit frame number drawn along the top of the picture on screen
# (livecut.media.synth's barcode: 12 px blocks, light for 1).
READ_BARCODE = """
() => {
  const video = document.getElementById("player");
  if (video.readyState < 2 || video.seeking) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const g = canvas.getContext("2d", {willReadFrequently: true});
  g.drawImage(video, 0, 0);
  const pixels = g.getImageData(0, 0, 24 * 12, 12).data;
  let value = 0;
  for (let bit = 0; bit < 24; bit++) {
    let sum = 0;
    let count = 0;
    for (let y = 3; y < 9; y++) {
      for (let x = bit * 12 + 3; x < bit * 12 + 9; x++) {
        const i = (y * 24 * 12 + x) * 4;
        sum += 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
        count++;
      }
    }
    value = value * 2 + (sum / count >= 128 ? 1 : 0);
  }
  return value;
}
"""

# Records every state a clip item shows, as the page changes it (no reload in between).
WATCH_STATES = """
() => {
  window.seenStates = [];
  window.sameDocument = true;
  const list = document.getElementById("clips");
  const note = () => {
    for (const item of list.querySelectorAll("li.clip")) {
      const entry = item.dataset.id + ":" + item.dataset.state;
      if (!window.seenStates.includes(entry)) window.seenStates.push(entry);
    }
  };
  new MutationObserver(note).observe(list, {subtree: true, childList: true, attributes: true});
}
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Recording:
    daemon: Daemon
    origin: LiveOrigin
    discontinuity_ms: int  # where the restarted encoder's first segment starts
    gap: tuple[int, int]  # the missing segments' wall-clock span

    def frame_wall_ms(self, frame: int) -> int:
        return frame_wall_ms(self.origin.epoch_ms, frame, FPS)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def recording(
    tmp_path_factory: pytest.TempPathFactory, module_index_url: str | None
) -> AsyncIterator[Recording]:
    require_browser()
    origin = LiveOrigin(segment_ms=SEGMENT_MS, window=PREFILL + 10, prefill=PREFILL)
    url = await origin.start()
    data_dir = tmp_path_factory.mktemp("console") / "data"
    base = daemon_config(data_dir, url, index_url=module_index_url)
    config = replace(base, server=replace(base.server, api_keys=(KEY,)))
    try:
        async with running(config) as daemon:

            async def recorded(ms: int) -> bool:
                live = await daemon.store.index.live_session("cam")
                return live is not None and (live.live_edge_ms or 0) >= ms

            await until(
                daemon, "cam", lambda: recorded(origin.segment_pdt_ms(PREFILL - 1)), timeout_s=60
            )
            first = origin.restart_encoder()
            await until(
                daemon, "cam", lambda: recorded(origin.segment_pdt_ms(first + 1)), timeout_s=30
            )
            missing = origin.gap_next(2)
            after = missing.stop
            await until(
                daemon, "cam", lambda: recorded(origin.segment_pdt_ms(after + 1)), timeout_s=30
            )
            yield Recording(
                daemon=daemon,
                origin=origin,
                discontinuity_ms=origin.segment_pdt_ms(first),
                gap=(origin.segment_pdt_ms(missing.start), origin.segment_pdt_ms(after)),
            )
    finally:
        await origin.stop()


async def signed_urls(daemon: Daemon) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.post(f"{daemon.base_url}/v1/streams/cam/playback") as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def assert_played(result: BrowserResult, seconds: float) -> None:
    assert result.advanced, result.describe()
    assert result.advanced_s >= seconds, result.describe()
    assert not result.fatal_errors, result.describe()
    assert result.media_error is None, result.describe()
    assert (result.video_width, result.video_height) == (320, 180), result.describe()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def player_page() -> AsyncIterator[str]:
    """The test player page on an origin of its own: signed URLs need no key and CORS."""
    app = web.Application()
    add_player_routes(app)
    async with serve(app) as origin:
        yield origin


async def test_hlsjs_plays_the_dvr_live_playlist_across_the_discontinuity(
    recording: Recording, player_page: str
) -> None:
    urls = await signed_urls(recording.daemon)
    # The live edge is seconds after the restarted encoder and the gap: hls.js starts
    # three segments back, plays through the edge's new segments and must not error.
    result = await playback_advances(player_page, urls["live_url"], seconds=3.0)
    assert_played(result, 3.0)


async def test_hlsjs_plays_a_vod_range_across_a_discontinuity_and_a_gap(
    recording: Recording, player_page: str
) -> None:
    urls = await signed_urls(recording.daemon)
    start = recording.discontinuity_ms - 3000
    end = recording.gap[1] + 4000
    vod = f"{urls['vod_url']}&from_ms={start}&to_ms={end}"
    async with aiohttp.ClientSession() as http, http.get(vod) as response:
        text = await response.text()
    assert text.count("#EXT-X-DISCONTINUITY") >= 2, text  # the encoder, then the gap
    assert 'CLASS="com.livecut.gap"' in text and 'X-REASON="tagged_gap"' in text, text
    # Four seconds of media from three seconds before the restart: across both breaks.
    result = await playback_advances(player_page, vod, seconds=4.5)
    assert_played(result, 4.5)


async def test_console_rewinds_marks_frames_and_makes_the_clip(
    recording: Recording, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import async_playwright

    daemon = recording.daemon
    requests: list[str] = []
    async with asyncio.timeout(80), async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            context = await browser.new_context(viewport=DESKTOP, timezone_id=ZONE)
            context.set_default_timeout(15_000)
            log: list[str] = []
            await _confine_to_loopback(context, log)
            page = await context.new_page()
            page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))

            # The key is asked for once, kept in the tab, never put in a URL.
            await page.goto(daemon.base_url + "/")
            await page.fill("#key", KEY)
            await page.press("#key", "Enter")
            await page.wait_for_function("() => window.livecutConsole?.wallClock() != null")
            assert not [r for r in requests if KEY in r], requests

            # The live playlist plays and advances.
            first = await page.evaluate("document.getElementById('player').currentTime")
            await page.wait_for_function(
                f"() => document.getElementById('player').currentTime > {first} + 2"
            )
            await page.wait_for_function("() => !document.getElementById('live-badge').hidden")
            live_wall = await wall_clock(page)

            # Sixty seconds back, from the timeline: the picture is the one recorded then.
            await page.focus("#timeline")
            await page.keyboard.press("Shift+ArrowLeft")
            target = live_wall - 60_000
            await page.wait_for_function(
                f"() => Math.abs(window.livecutConsole.wallClock() - {target}) < 3000"
            )
            seen = await barcode(page, playing=True)
            assert abs(recording.frame_wall_ms(seen) - target) < 3000, (seen, target, log[-10:])
            shown = await wall_clock(page)
            await page.wait_for_function(
                f"() => window.livecutConsole.wallClock() > {shown} + 1000"
            )  # and it plays from there

            # Pause, step one frame each way, mark in on a known picture.
            await page.keyboard.press("k")
            await page.wait_for_function("() => document.getElementById('player').paused")
            before = await step(page, ".")
            after = await step(page, ".")
            assert after == before + 1, (before, after)
            assert await step(page, ",") == before
            in_frame = await step(page, ".")
            await page.keyboard.press("i")
            marks = await page.evaluate("window.livecutConsole.marks()")
            assert marks["in_ms"] == recording.frame_wall_ms(in_frame), (marks, in_frame)
            utc = await page.text_content("#in-utc")
            assert utc is not None and utc.endswith("Z") and "." in utc

            # Play on a second or so, pause, settle on a picture, mark out.
            await page.keyboard.press("k")
            await page.wait_for_function(
                f"() => window.livecutConsole.wallClock() > {marks['in_ms']} + 1200"
            )
            await page.keyboard.press("k")
            await page.wait_for_function("() => document.getElementById('player').paused")
            out_frame = await step(page, ".")
            await page.keyboard.press("o")
            marks = await page.evaluate("window.livecutConsole.marks()")
            assert marks["out_ms"] == recording.frame_wall_ms(out_frame) + FRAME_MS, marks
            assert out_frame - in_frame >= 25, (in_frame, out_frame)

            # Create it; its states arrive over the event stream, the page never reloads.
            await page.evaluate(WATCH_STATES)
            before_create = len(requests)
            await page.click("#create")
            item = page.locator("#clips li.clip").first
            await item.locator(".state[data-state='ready']").wait_for(timeout=30_000)
            clip_id = await item.get_attribute("data-id")
            states = await page.evaluate("window.seenStates")
            assert await page.evaluate("window.sameDocument") is True
            assert f"{clip_id}:ready" in states, states
            shown_first = next(s for s in states if s.startswith(f"{clip_id}:"))
            assert shown_first != f"{clip_id}:ready", states  # an earlier state showed first
            polled = [r for r in requests[before_create:] if f"/v1/clips/{clip_id}" in r]
            assert not [r for r in polled if "thumbnail" not in r and ".mp4" not in r], polled

            # The clip's first and last pictures are the ones marked.
            href = await item.locator("a.download").get_attribute("href")
            assert href is not None and "sig=" in href and KEY not in href
            clip_path = tmp_path / "clip.mp4"
            async with (
                aiohttp.ClientSession() as http,
                http.get(urljoin(page.url, href)) as got,
            ):
                assert got.status == 200, await got.text()
                clip_path.write_bytes(await got.read())
            frames = decode_clip(clip_path).frames
            assert (frames[0][1], frames[-1][1]) == (in_frame, out_frame), frames[:3]

            await screenshot(page, tmp_path / "console-1280x720.png", request)
            await page.set_viewport_size(PHONE)
            await page.locator("#clips").scroll_into_view_if_needed()
            await screenshot(page, tmp_path / "console-phone.png", request)
            await page.set_viewport_size(DESKTOP)

            # Delete it: it leaves the list, and the daemon.
            await item.locator("button.delete").click()
            await page.locator(f"#clips li[data-id='{clip_id}']").wait_for(state="detached")
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
                http.get(f"{daemon.base_url}/v1/clips/{clip_id}") as response,
            ):
                assert response.status == 404
            assert not [line for line in log if line.startswith("pageerror")], log
        finally:
            await browser.close()


async def wall_clock(page: Page) -> int:
    value = await page.evaluate("window.livecutConsole.wallClock()")
    assert value is not None
    return round(value)


async def barcode(page: Page, *, playing: bool = False) -> int:
    """The frame number of the picture on screen (paused: once the same twice running)."""
    last = None
    for _ in range(50):
        value = await page.evaluate(READ_BARCODE)
        if value is not None and (playing or value == last):
            return int(value)
        last = value
        await asyncio.sleep(0.05)
    raise AssertionError(f"the picture's barcode did not settle (last read {last})")


async def step(page: Page, key: str) -> int:
    """Press a frame-step key; the frame number of the picture it lands on."""
    await page.keyboard.press(key)
    await page.wait_for_function(
        "() => { const v = document.getElementById('player');"
        " return v.paused && !v.seeking && v.readyState >= 2; }"
    )
    return await barcode(page)


async def screenshot(page: Page, path: Path, request: pytest.FixtureRequest) -> None:
    """Saved under the test's tmp dir and attached to the run: in the report's properties
    (junit_family=legacy) and as the [[ATTACHMENT|…]] line CI attachment plugins read."""
    await page.screenshot(path=str(path))
    request.node.user_properties.append((path.stem, str(path)))
    print(f"[[ATTACHMENT|{path}]]")
