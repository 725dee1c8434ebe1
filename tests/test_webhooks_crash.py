"""SIGKILL with clips queued, waiting and processing and webhooks undelivered: after a
restart every accepted clip is ready exactly once and its signed clip.ready arrives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from livecut.origin import LiveOrigin
from livecut.store.index import INDEX_FILE
from livecut.webhooks.signing import HEADER, verify
from tests.browser import serve
from tests.engines import open_index

SECRET = "crash-test-secret-0123456789"
CLIPS_PAST = 14
CLIPS_WAITING = 3


@dataclass
class Receiver:
    """Answers 500 until `accept` is set, then 200; keeps every request it was sent."""

    accept: bool = False
    received: list[tuple[str, dict[str, object], bool, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        valid = verify(SECRET, raw, request.headers.get(HEADER, ""))
        body = json.loads(raw)
        status = 200 if self.accept else 500
        self.received.append((request.headers.get("livecut-delivery", ""), body, valid, status))
        return web.Response(status=status)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, data_dir: Path, origin: str, receiver: str, port: int) -> None:
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data_dir}"

[clips]
workers = 1
max_wait = "60s"

[[webhooks.endpoints]]
name = "app"
url = "{receiver}/hook"
secret = "{SECRET}"
events = ["clip.ready", "clip.failed"]

[[streams]]
id = "cam"
url = "{origin}"
session_gap = "60s"
"""
    )


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "serve",
            "--config",
            str(config),
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def get_json(http: aiohttp.ClientSession, url: str) -> object:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def until_up(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            await get_json(http, f"{base}/healthz")
            return
        except (aiohttp.ClientError, AssertionError):
            await asyncio.sleep(0.05)
    raise AssertionError("the daemon did not come up")


async def states(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    body = await get_json(http, f"{base}/v1/clips?limit=500")
    assert isinstance(body, dict)
    return {c["id"]: c["state"] for c in body["clips"]}


async def test_sigkill_with_work_in_flight_then_every_clip_and_webhook(
    data_dir: Path, tmp_path: Path
) -> None:
    origin = LiveOrigin(segment_ms=1000, window=30, prefill=25)
    origin_url = await origin.start()
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "livecut.toml"
    log = tmp_path / "daemon.log"
    try:
        async with serve(app) as receiver_url, aiohttp.ClientSession() as http:
            write_config(config, data_dir, origin_url, receiver_url, port)
            proc = await start_daemon(config, log)
            try:
                await until_up(http, base)
                start = edge = 0
                for _ in range(300):
                    sessions = await get_json(http, f"{base}/v1/streams/cam/sessions")
                    assert isinstance(sessions, dict)
                    if sessions["sessions"]:
                        start = int(sessions["sessions"][0]["start_ms"])
                        edge = int(sessions["sessions"][0]["live_edge_ms"] or 0)
                    if edge - start >= 8000:
                        break
                    await asyncio.sleep(0.1)
                accepted: list[str] = []
                now = int(time.time() * 1000)
                bodies: list[dict[str, object]] = [
                    # What is recorded, re-encoding the first GOP (slower to cut): one
                    # worker keeps the rest queued.
                    {
                        "stream": "cam",
                        "start_ms": start + 100 + (n % 4) * 400,
                        "end_ms": edge - 200,
                        "reencode_edges": True,
                    }
                    for n in range(CLIPS_PAST)
                ] + [
                    {"stream": "cam", "start_ms": now - 4000, "end_ms": now + 6000 + n * 1000}
                    for n in range(CLIPS_WAITING)
                ]
                for body in bodies:
                    async with http.post(f"{base}/v1/clips", json=body) as response:
                        assert response.status == 202, await response.text()
                        accepted.append((await response.json())["id"])
                # Kill once something is ready (its webhook refused so far), something
                # processing, something queued and something waiting.
                seen: dict[str, str] = {}
                for _ in range(2000):
                    seen = await states(http, base)
                    kinds = set(seen.values())
                    if {"ready", "processing", "queued", "waiting"} <= kinds:
                        break
                    await asyncio.sleep(0.005)
                else:
                    raise AssertionError(f"never saw every state at once: {seen}")
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            index = await open_index(data_dir / INDEX_FILE)
            try:
                pending = await index.deliveries(state="pending")
            finally:
                await index.close()
            assert pending, "webhook deliveries were pending when the daemon was killed"

            proc = await start_daemon(config, log)
            try:
                await until_up(http, base)
                await asyncio.sleep(2.0)  # still refusing for a while after the restart
                receiver.accept = True
                deadline = time.monotonic() + 120
                while True:
                    current = await states(http, base)
                    ready = [c for c in accepted if current.get(c) == "ready"]
                    delivered = {
                        r[1]["data"]["id"]  # type: ignore[index]
                        for r in receiver.received
                        if r[3] == 200 and r[1]["type"] == "clip.ready"
                    }
                    if len(ready) == len(accepted) and delivered >= set(accepted):
                        break
                    assert time.monotonic() < deadline, (current, sorted(delivered))
                    await asyncio.sleep(0.2)
                for clip_id in accepted:
                    body = await get_json(http, f"{base}/v1/webhooks/deliveries?clip={clip_id}")
                    assert isinstance(body, dict)
                    readies = [d for d in body["deliveries"] if d["event"] == "clip.ready"]
                    assert len(readies) == 1, readies  # ready once: one event
                    assert readies[0]["state"] == "delivered"
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
    finally:
        await origin.stop()

    assert seen, "states were observed before the kill"
    assert all(valid for _, _, valid, _ in receiver.received), "every delivery is signed"
    by_clip: dict[str, set[str]] = {}
    for delivery_id, body, _, _ in receiver.received:
        assert body["id"] == delivery_id
        assert body["type"] == "clip.ready"
        data = body["data"]
        assert isinstance(data, dict)
        by_clip.setdefault(str(data["id"]), set()).add(delivery_id)
    # Repeats only ever carry the same delivery id.
    assert set(by_clip) == set(accepted)
    assert all(len(ids) == 1 for ids in by_clip.values()), by_clip
    refused = {r[0] for r in receiver.received if r[3] == 500}
    accepted_ids = {r[0] for r in receiver.received if r[3] == 200}
    assert refused and refused <= accepted_ids, "refused deliveries are retried until accepted"
