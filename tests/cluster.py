"""Nodes of one cluster as `livecut serve` processes of their own (so one can be
SIGKILLed): one PostgreSQL index, one S3 bucket, live origins on 127.0.0.1. Used by
tests/test_cluster.py and bench/cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.browser import serve
from tests.s3server import CREDENTIALS, S3Server, free_port

SECRET = "cluster-test-secret-0123456789"
POLL_S = 0.1


@dataclass(kw_only=True)
class Node:
    name: str
    port: int
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(kw_only=True)
class Receiver:
    """Clip events sent to the callback_url, as received."""

    events: list[dict[str, object]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def ready(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.events:
            data = event["data"]
            if event["type"] == "clip.ready" and isinstance(data, dict):
                clip_id = str(data["id"])
                counts[clip_id] = counts.get(clip_id, 0) + 1
        return counts


def node_config(
    path: Path,
    *,
    name: str,
    port: int,
    data_dir: Path,
    dsn: str | None,
    s3: S3Server | None,
    bucket: str,
    origins: dict[str, str],
    lease_s: float,
) -> None:
    """A node's config; without dsn and s3, the embedded default (SQLite, local disk)."""
    streams = "".join(
        f'\n[[streams]]\nid = "{stream}"\nurl = "{url}"\nsession_gap = "60s"\n'
        for stream, url in origins.items()
    )
    cluster = (
        ""
        if dsn is None
        else f'[cluster]\nindex_url = "{dsn}"\nnode_id = "{name}"\nlease_s = "{lease_s}s"\n'
    )
    media = (
        ""
        if s3 is None
        else f'backend = "s3"\n\n[storage.s3]\nendpoint = "{s3.endpoint}"\nbucket = "{bucket}"\n'
    )
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data_dir}"

{cluster}
[storage]
min_free_bytes = 0
{media}
[webhooks]
secret = "{SECRET}"
allow_private = true
{streams}"""
    )


async def start_node(
    tmp_path: Path,
    name: str,
    *,
    dsn: str | None,
    s3: S3Server | None,
    bucket: str,
    origins: dict[str, str],
    lease_s: float,
) -> Node:
    port = free_port()
    config = tmp_path / f"{name}.toml"
    node_config(
        config,
        name=name,
        port=port,
        data_dir=tmp_path / name,
        dsn=dsn,
        s3=s3,
        bucket=bucket,
        origins=origins,
        lease_s=lease_s,
    )
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "AWS_ACCESS_KEY_ID": CREDENTIALS.access_key_id,
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_access_key,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "serve",
            "--config",
            str(config),
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    node = Node(name=name, port=port, proc=proc, log=log)
    async with aiohttp.ClientSession() as http:
        for _ in range(600):  # 60 s at most
            if proc.returncode is not None:
                raise AssertionError(f"{name} exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{node.url}/healthz") as r:
                    if r.status == 200:
                        return node
            await asyncio.sleep(POLL_S)
    raise AssertionError(f"{name} never answered:\n{log.read_text()[-3000:]}")


async def stop_node(node: Node, sig: int = signal.SIGTERM) -> None:
    if node.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, sig)
        try:
            async with asyncio.timeout(30):
                await node.proc.wait()
        except TimeoutError:
            os.killpg(node.proc.pid, signal.SIGKILL)
            await node.proc.wait()


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url) as r:
        assert r.status == 200, f"{url}: {r.status} {await r.text()}"
        body: dict[str, object] = await r.json()
        return body


async def holders(http: aiohttp.ClientSession, node: Node) -> dict[str, list[str]]:
    """Stream -> the alive nodes holding its lease, as one node sees it."""
    body = await get_json(http, f"{node.url}/v1/nodes")
    held: dict[str, list[str]] = {}
    nodes = body["nodes"]
    assert isinstance(nodes, list)
    for row in nodes:
        if row["state"] == "alive":
            for stream in row["streams"]:
                held.setdefault(stream, []).append(row["id"])
    return held


async def live_edge(http: aiohttp.ClientSession, node: Node, stream: str) -> int:
    body = await get_json(http, f"{node.url}/v1/streams/{stream}")
    edge = body.get("live_edge_ms")
    return int(edge) if isinstance(edge, int) else 0


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], *, timeout_s: float) -> None:
    """Poll an async predicate, bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"not within {timeout_s}s: {what}")


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()

    async def hook(request: web.Request) -> web.Response:
        receiver.events.append(json.loads(await request.read()))
        receiver.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve(app) as base:
        yield receiver, f"{base}/hook"


async def ask_clip(
    http: aiohttp.ClientSession, node: Node, stream: str, start_ms: int, end_ms: int, hook: str
) -> str:
    body = {"stream": stream, "start_ms": start_ms, "end_ms": end_ms, "callback_url": hook}
    async with http.post(f"{node.url}/v1/clips", json=body) as r:
        assert r.status == 202, f"{node.name}: {r.status} {await r.text()}"
        return str((await r.json())["id"])
