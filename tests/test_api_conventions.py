"""What apps written for Mux, Livepeer and HeyGen expect, and the bad input that used to 500."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from livecut.api.clips import content_disposition
from livecut.config import ApiKey, WebhooksConfig
from livecut.daemon import Daemon
from livecut.origin import LiveOrigin
from livecut.webhooks.signing import HEADER, signature, verify
from tests.browser import serve
from tests.harness import daemon_config, running, session_ended, until

WRITE = "conventions-write-key-0123"
READ = "conventions-read-key-01234"
SECRET = "conventions-secret-0123456"


@dataclass
class Api:
    daemon: Daemon
    base: str
    hooks: list[tuple[dict[str, object], bool]]

    def auth(self, key: str = WRITE) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api(data_dir: Path) -> AsyncIterator[Api]:
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    hooks: list[tuple[dict[str, object], bool]] = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        hooks.append((json.loads(raw), verify(SECRET, raw, request.headers[HEADER])))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    try:
        async with serve(app) as receiver:
            base = daemon_config(data_dir, url)
            config = replace(
                base,
                server=replace(
                    base.server,
                    api_keys=(WRITE, ApiKey(name="dash", key=READ, scope="read")),
                    public_url="https://clips.example.com/prefix",
                ),
                webhooks=WebhooksConfig(secret=SECRET, allow_private=True),
            )
            async with running(config) as daemon:
                await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
                yield Api(daemon=daemon, base=f"http://127.0.0.1:{_port(daemon)}", hooks=hooks)
                assert receiver
    finally:
        await origin.stop()


def _port(daemon: Daemon) -> int:
    runner = daemon._runner
    assert runner is not None
    return int(runner.addresses[0][1])


async def session_of(api: Api) -> tuple[str, int, int]:
    session = (await api.daemon.store.index.sessions("cam"))[0]
    assert session.live_edge_ms is not None
    return session.id, session.started_ms, session.live_edge_ms


async def test_clip_conventions(api: Api) -> None:
    session_id, start, edge = await session_of(api)
    async with aiohttp.ClientSession(headers=api.auth()) as http:
        receiver_url = next(iter(api.daemon.config.webhooks.endpoints), None)
        assert receiver_url is None
        body = {
            "session": session_id,
            "start_offset_ms": 1000,
            "end_offset_ms": 3000.0,  # a whole-number float
            "passthrough": "order-17",
            "name": 'Goal "1" ü',
        }
        headers = {"Idempotency-Key": "k-1"}
        async with http.post(f"{api.base}/v1/clips", json=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            first = await r.json()
            assert (
                r.headers["Location"] == f"https://clips.example.com/prefix/v1/clips/{first['id']}"
            )
        assert first["requested"] == {"start_ms": start + 1000, "end_ms": start + 3000}
        assert first["passthrough"] == "order-17"
        assert first["sessions"] == [session_id]
        assert first["links"]["self"].startswith("https://clips.example.com/prefix/v1/clips/")
        async with http.post(f"{api.base}/v1/clips", json=body, headers=headers) as r:
            assert r.status == 202
            assert (await r.json())["id"] == first["id"], "same key and body: same clip"
        async with http.post(
            f"{api.base}/v1/clips", json={**body, "passthrough": "x"}, headers=headers
        ) as r:
            assert r.status == 422, "same key, another body"
        clip = await api.daemon.jobs.wait_finished(first["id"], 30)
        assert clip is not None and clip.state == "ready"
        async with http.get(f"{api.base}/v1/clips/{clip.id}") as r:
            ready = await r.json()
        assert ready["progress"] == 1.0
        assert ready["files"]["mp4"]["url"].startswith("https://clips.example.com/prefix/")
        async with http.get(f"{api.base}/v1/clips/{clip.id}/clip.mp4") as r:
            assert r.status == 200
            assert (
                "filename*=UTF-8''Goal%20%221%22%20%C3%BC.mp4" in r.headers["Content-Disposition"]
            )
        async with http.head(f"{api.base}/v1/clips/{clip.id}/clip.mp4") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) > 0
        async with http.get(
            f"{api.base}/v1/clips/{clip.id}/clip.mp4", headers={"Range": "bytes=-0"}
        ) as r:
            assert r.status == 416
        # A clip by stream records the session it came from; list filters find it.
        async with http.post(
            f"{api.base}/v1/clips", json={"stream": "cam", "start_ms": start, "end_ms": edge}
        ) as r:
            assert r.status == 202
            by_stream = await r.json()
            assert by_stream["sessions"] == [session_id]
        for query, expected in (
            (f"session={session_id}", {first["id"], by_stream["id"]}),
            ("stream=cam&state=ready", {first["id"]} | ({by_stream["id"]} & set())),
            (f"created_after={int(time.time() * 1000) + 60_000}", set()),
        ):
            async with http.get(f"{api.base}/v1/clips?{query}") as r:
                assert r.status == 200, await r.text()
                found = {c["id"] for c in (await r.json())["clips"]}
                assert expected <= found and (expected or not found), (query, found)


async def test_keys_scopes_cors_and_csrf(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        body = json.dumps({"stream": "cam", "start_ms": 1, "end_ms": 2})
        async with http.post(
            f"{api.base}/v1/clips",
            data=body,
            headers={**api.auth(READ), "Content-Type": "application/json"},
        ) as r:
            assert r.status == 403
        async with http.get(f"{api.base}/v1/clips", headers=api.auth(READ)) as r:
            assert r.status == 200
        async with http.head(f"{api.base}/v1/streams", headers=api.auth(READ)) as r:
            assert r.status == 200
        async with http.post(
            f"{api.base}/v1/clips", data=body, headers={**api.auth(), "Content-Type": "text/plain"}
        ) as r:
            assert r.status == 415
        async with http.post(
            f"{api.base}/v1/clips",
            data=body,
            headers={
                **api.auth(),
                "Content-Type": "application/json",
                "Origin": "http://evil.test",
            },
        ) as r:
            assert r.status == 403, "a browser on an unlisted origin cannot write"
        async with http.options(
            f"{api.base}/v1/clips",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        ) as r:
            assert r.status == 204 and "Access-Control-Allow-Origin" not in r.headers
            assert "POST" in r.headers["Allow"]
        async with http.put(f"{api.base}/v1/clips", headers=api.auth()) as r:
            assert r.status == 405 and "POST" in r.headers["Allow"]


BAD_READS = [
    "/v1/streams/cam/timeline?from_ms=%C2%B2",  # "²": isdigit() but not int()
    "/v1/streams/cam/timeline?from_ms=--5",
    "/v1/streams/cam/timeline?to_ms=" + "9" * 5000,
    "/v1/clips?limit=%C2%B2",
    "/v1/clips?cursor=%C2%B2.clip_x",
    "/v1/clips?cursor=99999999999999999999.clip_x",
    "/v1/clips?created_after=99999999999999999999",
    "/v1/clips?colour=red",
    "/v1/clips?state=done",
    "/v1/webhooks/deliveries?state=lost",
]


async def test_bad_input_is_a_4xx_naming_the_problem(api: Api) -> None:
    async with aiohttp.ClientSession(headers=api.auth()) as http:
        for path in BAD_READS:
            async with http.get(f"{api.base}{path}") as r:
                assert r.status == 400, (path, await r.text())
                assert (await r.json())["errors"]
        async with http.get(f"{api.base}/v1/clips/x/media/99999999999999999999.ts") as r:
            assert r.status == 404
        raw_bodies = [
            b'{"stream": "cam", "start_ms": ' + b"9" * 5000 + b"}",
            b"[" * 30000 + b"]" * 30000,
            b'{"stream": "cam", "name": "\\ud800", "start_ms": 1}',
            b'{"stream": "\\udfff"}',
        ]
        for raw in raw_bodies:
            async with http.post(
                f"{api.base}/v1/clips", data=raw, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 400, (raw[:40], await r.text())
        async with http.post(
            f"{api.base}/v1/clips",
            data=b"not gzip at all",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ) as r:
            assert r.status == 400, await r.text()
        for body in (
            {"stream": "cam", "start_ms": 2**70, "end_ms": 2**71},
            {"stream": "cam", "start_ms": 1, "name": "bell\x07"},
            {"stream": "cam", "start_ms": 1, "callback_url": "http://169.254.169.254/x"},
            {"stream": "cam", "start_ms": 1, "callback_url": "file:///etc/passwd"},
        ):
            async with http.post(f"{api.base}/v1/clips", json=body) as r:
                assert r.status == 422, (body, await r.text())


def test_content_disposition_keeps_any_name_downloadable() -> None:
    header = content_disposition('a\x00b\r\n"c"\u2028é')
    assert header.isascii() and "\r" not in header and "\n" not in header and "\x00" not in header
    assert "filename*=UTF-8''a%00b%0D%0A%22c%22%E2%80%A8%C3%A9.mp4" in header


def test_signature_rejects_old_and_forged() -> None:
    body = b'{"id":"whd_1"}'
    now = int(time.time())
    assert verify(SECRET, body, signature(SECRET, body, now))
    assert not verify(SECRET, body, signature(SECRET, body, now - 3600))
    assert not verify("another-secret-0123456", body, signature(SECRET, body, now))
    assert not verify(SECRET, body + b" ", signature(SECRET, body, now))


async def test_callback_url_gets_signed_events_with_callback_id(data_dir: Path) -> None:
    hooks: list[tuple[dict[str, object], bool]] = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        hooks.append((json.loads(raw), verify(SECRET, raw, request.headers[HEADER])))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    try:
        async with serve(app) as receiver:
            base = daemon_config(data_dir, url)
            config = replace(base, webhooks=WebhooksConfig(secret=SECRET, allow_private=True))
            async with running(config) as daemon, aiohttp.ClientSession() as http:
                await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
                session = (await daemon.store.index.sessions("cam"))[0]
                body = {
                    "session": session.id,
                    "start_offset_ms": 0,
                    "end_offset_ms": 2000,
                    "callback_url": f"{receiver}/hook",
                    "callback_id": "job-42",
                    "passthrough": "p",
                }
                async with http.post(f"{daemon.base_url}/v1/clips", json=body) as r:
                    assert r.status == 202, await r.text()
                    clip_id = (await r.json())["id"]
                async with http.delete(f"{daemon.base_url}/v1/clips/{clip_id}") as r:
                    assert r.status == 204
                for _ in range(100):
                    if {h[0]["type"] for h in hooks} >= {"clip.deleted"}:
                        break
                    await asyncio.sleep(0.1)
                async with http.get(
                    f"{daemon.base_url}/v1/webhooks/deliveries?clip={clip_id}"
                ) as r:
                    deliveries = (await r.json())["deliveries"]
    finally:
        await origin.stop()
    assert hooks and all(valid for _, valid in hooks)
    types = [h[0]["type"] for h in hooks]
    assert "clip.deleted" in types
    for sent, _ in hooks:
        assert sent["callback_id"] == "job-42"
        data = sent["data"]
        assert isinstance(data, dict) and data["passthrough"] == "p"
    assert {d["event"] for d in deliveries} == set(types)
    assert all(d["target"] == "callback" for d in deliveries)


async def test_shots_and_highlights_jobs_report_to_their_own_callback_url(data_dir: Path) -> None:
    ready: list[dict[str, object]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        assert verify(SECRET, raw, request.headers[HEADER])
        sent = json.loads(raw)
        if sent["type"] in ("shots.ready", "highlights.ready"):
            ready.append(sent)
            if len(ready) == 3:
                arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    try:
        async with serve(app) as receiver:
            base = daemon_config(data_dir, url)
            config = replace(base, webhooks=WebhooksConfig(secret=SECRET, allow_private=True))
            async with running(config) as daemon, aiohttp.ClientSession() as http:
                api = daemon.base_url
                await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
                session = (await daemon.store.index.sessions("cam"))[0]
                shots = f"{api}/v1/sessions/{session.id}/shots"
                async with http.post(shots, json={"callback_id": "lonely"}) as r:
                    assert r.status == 422
                    assert "give callback_url too" in (await r.json())["errors"][0]
                hook_url = f"{receiver}/hook"
                body = {"callback_url": hook_url, "callback_id": "shots-7"}
                async with http.post(shots, json=body) as r:
                    assert r.status == 202, await r.text()
                    job = await r.json()
                assert (job["callback_url"], job["callback_id"]) == (hook_url, "shots-7")
                # A clip's own shots (generate_shots) report to the clip's callback.
                clip_body = {
                    "session": session.id,
                    "start_offset_ms": 0,
                    "end_offset_ms": 2000,
                    "generate_shots": True,
                    "callback_url": hook_url,
                    "callback_id": "clip-8",
                }
                async with http.post(f"{api}/v1/clips", json=clip_body) as r:
                    assert r.status == 202, await r.text()
                    clip_id = (await r.json())["id"]
                # Highlights given as windows: highlights.ready once its clip is cut.
                first = await daemon.store.index.first_segment_start(session.id)
                assert first is not None
                highlights_body = {
                    "session": session.id,
                    "windows": [{"start_ms": first + 500, "end_ms": first + 1500}],
                    "callback_url": hook_url,
                    "callback_id": "hl-9",
                }
                async with http.post(f"{api}/v1/highlights", json=highlights_body) as r:
                    assert r.status == 202, await r.text()
                    assert (await r.json())["callback_id"] == "hl-9"
                await asyncio.wait_for(arrived.wait(), 60)
    finally:
        await origin.stop()
    by_id = {sent["callback_id"]: sent for sent in ready}
    assert set(by_id) == {"shots-7", "clip-8", "hl-9"}
    assert by_id["hl-9"]["type"] == "highlights.ready"
    session_shots, clip_shots = by_id["shots-7"]["data"], by_id["clip-8"]["data"]
    assert isinstance(session_shots, dict) and session_shots["status"] == "completed"
    assert session_shots["session"] == session.id and session_shots["clip"] is None
    assert isinstance(clip_shots, dict) and clip_shots["clip"] == clip_id
