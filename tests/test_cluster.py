"""Three nodes, one PostgreSQL index, one S3 bucket, two live streams.

Each node is a `livecut serve` process of its own, so one can be SIGKILLed: the test
then holds the cluster to what operators need of it. Clips asked of any node become
ready and are served by every node; the streams of the killed node are taken over
within the lease bound, the media lost meanwhile recorded as a gap; no rendition is
recorded by two nodes; every accepted clip is told to its callback once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from livecut.origin import LiveOrigin
from tests.browser import serve
from tests.harness import decode_clip
from tests.s3server import CREDENTIALS, S3Server, free_port

LEASE_S = 3.0
# A stream's new holder is found within a lease, a renewal period and a pass.
TAKEOVER_BOUND_S = LEASE_S + LEASE_S / 3 + 2.0
SECRET = "cluster-test-secret-0123456789"
POLL_S = 0.1
STREAMS = ("cam", "cam2")


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


def _config(
    path: Path,
    *,
    name: str,
    port: int,
    data_dir: Path,
    dsn: str,
    s3: S3Server,
    bucket: str,
    origins: dict[str, str],
) -> None:
    streams = "".join(
        f'\n[[streams]]\nid = "{stream}"\nurl = "{url}"\nsession_gap = "60s"\n'
        for stream, url in origins.items()
    )
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data_dir}"

[cluster]
index_url = "{dsn}"
node_id = "{name}"
lease_s = "{LEASE_S}s"

[storage]
backend = "s3"
min_free_bytes = 0

[storage.s3]
endpoint = "{s3.endpoint}"
bucket = "{bucket}"

[webhooks]
secret = "{SECRET}"
allow_private = true
{streams}"""
    )


async def _start_node(
    tmp_path: Path, name: str, *, dsn: str, s3: S3Server, bucket: str, origins: dict[str, str]
) -> Node:
    port = free_port()
    config = tmp_path / f"{name}.toml"
    _config(
        config,
        name=name,
        port=port,
        data_dir=tmp_path / name,
        dsn=dsn,
        s3=s3,
        bucket=bucket,
        origins=origins,
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


async def _stop(node: Node, sig: int = signal.SIGTERM) -> None:
    if node.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, sig)
        try:
            async with asyncio.timeout(30):
                await node.proc.wait()
        except TimeoutError:
            os.killpg(node.proc.pid, signal.SIGKILL)
            await node.proc.wait()


async def _json(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url) as r:
        assert r.status == 200, f"{url}: {r.status} {await r.text()}"
        body: dict[str, object] = await r.json()
        return body


async def _holders(http: aiohttp.ClientSession, node: Node) -> dict[str, list[str]]:
    """Stream -> the alive nodes holding its lease, as one node sees it."""
    body = await _json(http, f"{node.url}/v1/nodes")
    held: dict[str, list[str]] = {}
    nodes = body["nodes"]
    assert isinstance(nodes, list)
    for row in nodes:
        if row["state"] == "alive":
            for stream in row["streams"]:
                held.setdefault(stream, []).append(row["id"])
    return held


async def _edge(http: aiohttp.ClientSession, node: Node, stream: str) -> int:
    body = await _json(http, f"{node.url}/v1/streams/{stream}")
    edge = body.get("live_edge_ms")
    return int(edge) if isinstance(edge, int) else 0


async def _until(what: str, check: object, *, timeout_s: float) -> None:
    """Poll an async predicate, bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"not within {timeout_s}s: {what}")


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()

    async def hook(request: web.Request) -> web.Response:
        receiver.events.append(json.loads(await request.read()))
        receiver.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve(app) as base:
        yield receiver, f"{base}/hook"


async def _ask_clip(
    http: aiohttp.ClientSession, node: Node, stream: str, start_ms: int, end_ms: int, hook: str
) -> str:
    body = {"stream": stream, "start_ms": start_ms, "end_ms": end_ms, "callback_url": hook}
    async with http.post(f"{node.url}/v1/clips", json=body) as r:
        assert r.status == 202, f"{node.name}: {r.status} {await r.text()}"
        return str((await r.json())["id"])


async def test_three_nodes_share_the_streams_the_clips_and_a_dead_nodes_work(
    tmp_path: Path, pg_database: str, s3_server: S3Server, s3_bucket: str
) -> None:
    # Two-segment windows of 1 s segments: a takeover of a few seconds loses media.
    origins = {s: LiveOrigin(segment_ms=1000, window=2, prefill=2, path=f"/{s}") for s in STREAMS}
    urls = {s: await o.start() for s, o in origins.items()}
    nodes: list[Node] = []
    try:
        async with _receiver() as (receiver, hook), aiohttp.ClientSession() as http:
            for name in ("node-1", "node-2", "node-3"):
                nodes.append(
                    await _start_node(
                        tmp_path,
                        name,
                        dsn=pg_database,
                        s3=s3_server,
                        bucket=s3_bucket,
                        origins=urls,
                    )
                )

            async def all_held_once() -> bool:
                held = await _holders(http, nodes[-1])
                return all(len(held.get(s, [])) == 1 for s in STREAMS)

            await _until("each stream held by one node", all_held_once, timeout_s=30)

            async def recording() -> bool:
                edges = [await _edge(http, nodes[0], s) for s in STREAMS]
                return all(e > 0 for e in edges)

            await _until("both streams recorded", recording, timeout_s=60)
            await asyncio.sleep(0)
            # A clip of recorded media from every node, and one past the live edge asked
            # of each node: that one waits, woken by the recording node's notices.
            clips: dict[str, str] = {}  # clip -> the node asked
            for node in nodes:
                edge = await _edge(http, node, "cam")
                clips[await _ask_clip(http, node, "cam", edge - 3000, edge - 1000, hook)] = (
                    node.name
                )
                clips[await _ask_clip(http, node, "cam2", edge + 500, edge + 2500, hook)] = (
                    node.name
                )

            async def all_ready() -> bool:
                return set(receiver.ready()) >= set(clips)

            await _until("every clip ready (its webhook)", all_ready, timeout_s=60)
            # Every node serves every clip: the MP4 comes from the bucket.
            for n, clip_id in enumerate(clips):
                other = nodes[(n + 1) % len(nodes)]
                clip = await _json(http, f"{other.url}/v1/clips/{clip_id}")
                assert clip["state"] == "ready", clip
                async with http.get(f"{other.url}/v1/clips/{clip_id}/clip.mp4") as r:
                    assert r.status == 200, await r.text()
                    data = await r.read()
                out = tmp_path / f"{clip_id}.mp4"
                out.write_bytes(data)
                decoded = decode_clip(out)
                span_s = decoded.video_end_s - decoded.frames[0][0]
                assert 1.8 <= span_s <= 2.2, (clip_id, span_s)

            # Kill the node recording "cam": another takes the stream over in time.
            held = await _holders(http, nodes[-1])
            victim = next(n for n in nodes if n.name == held["cam"][0])
            survivors = [n for n in nodes if n is not victim]
            before = await _edge(http, survivors[0], "cam")
            killed_at = time.monotonic()
            killed_ms = int(time.time() * 1000)
            await _stop(victim, signal.SIGKILL)
            # A clip asked of a survivor while the stream has no recorder waits for it.
            late = await _ask_clip(http, survivors[0], "cam", killed_ms, killed_ms + 6000, hook)
            clips[late] = survivors[0].name

            async def taken_over() -> bool:
                now_held = await _holders(http, survivors[0])
                return bool(now_held.get("cam")) and victim.name not in now_held["cam"]

            await _until("cam taken over", taken_over, timeout_s=TAKEOVER_BOUND_S + 5)
            takeover_s = time.monotonic() - killed_at
            assert takeover_s <= TAKEOVER_BOUND_S, takeover_s

            async def grew() -> bool:
                return await _edge(http, survivors[0], "cam") > killed_ms + 4000

            await _until("cam recorded again", grew, timeout_s=30)
            assert await _edge(http, survivors[0], "cam") > before
            timeline = await _json(
                http, f"{survivors[0].url}/v1/streams/cam/timeline?from_ms={before - 5000}"
            )
            gaps = timeline["gaps"]
            assert isinstance(gaps, list) and gaps, timeline
            assert any(g["end_ms"] > killed_ms - 2000 for g in gaps), (killed_ms, gaps)
            await _until("the late clip ready", all_ready, timeout_s=60)

            # Each accepted clip was told to its callback exactly once.
            assert receiver.ready() == {clip_id: 1 for clip_id in clips}

        # No rendition was recorded by two nodes: every segment row once, every row an
        # object in the bucket.
        db = await asyncpg.connect(pg_database)
        try:
            doubled = await db.fetch(
                "SELECT rendition_id, seq FROM segments GROUP BY rendition_id, seq"
                " HAVING COUNT(*) > 1"
            )
            paths = [r["path"] for r in await db.fetch("SELECT path FROM segments")]
            live = await db.fetch(
                "SELECT s.stream_id, COUNT(*) AS n FROM sessions s WHERE s.state = 'live'"
                " GROUP BY s.stream_id"
            )
        finally:
            await db.close()
        assert doubled == []
        assert all(r["n"] <= 1 for r in live), live
        stored = set()
        for page in s3_server.admin.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket):
            stored |= {obj["Key"] for obj in page.get("Contents", [])}
        missing = [p for p in paths if p not in stored]
        assert not missing, missing[:5]
        takeover_note = tmp_path / "takeover_s.txt"
        takeover_note.write_text(f"{takeover_s:.2f}\n")
    finally:
        for node in nodes:
            await _stop(node)
        for origin in origins.values():
            await origin.stop()
