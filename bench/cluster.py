"""Benchmark: ingest and clip throughput of 1, 2 and 3 nodes sharing one PostgreSQL and one
S3 bucket, beside one node on SQLite and a local disk (the embedded default), and the
takeover time after the node recording the most streams is SIGKILLed.

    .venv/bin/python bench/cluster.py [--streams 6] [--backlog 30] [--clips 24]
                                      [--nodes 1,2,3] [--lease 3]

Everything runs on this machine: PostgreSQL (Debian's binaries, a throwaway server as
tests/postgres.py starts it), moto's S3 server, the live origins (in this process) and
each node as a `livecut serve` process of its own. Each origin starts with a backlog of
`--backlog` 1 s segments in its playlist window: ingest throughput is how fast the
nodes index that backlog, all streams together. Clip throughput is `--clips` 4 s clips
asked all at once, round robin over the nodes, until every one is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livecut.origin import LiveOrigin
from tests import postgres
from tests.cluster import Node, get_json, holders, start_node, stop_node, wait_for
from tests.s3server import S3Server, start_s3_server, stop_s3_server

CLIP_MS = 4000
SEGMENT_MS = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    setup: str
    nodes: int
    ingest_segments_per_s: float
    ingest_s: float
    clips_per_s: float
    clip_p50_ms: float
    clip_p95_ms: float
    takeover_s: float | None
    resumed_s: float | None


async def _indexed(http: aiohttp.ClientSession, node: Node) -> int:
    body = await get_json(http, f"{node.url}/v1/storage")
    streams = body["streams"]
    assert isinstance(streams, list)
    return sum(int(s["segments"]) for s in streams)


async def _clip_round(
    http: aiohttp.ClientSession,
    nodes: list[Node],
    streams: list[str],
    edges: dict[str, int],
    count: int,
) -> tuple[float, list[float]]:
    rng = random.Random(7)
    asked: list[tuple[Node, str, float]] = []
    began = time.monotonic()

    async def ask(n: int) -> None:
        node = nodes[n % len(nodes)]
        stream = streams[n % len(streams)]
        start = edges[stream] - rng.randrange(CLIP_MS, 20_000)
        body = {"stream": stream, "start_ms": start, "end_ms": start + CLIP_MS}
        async with http.post(f"{node.url}/v1/clips", json=body) as r:
            assert r.status == 202, await r.text()
            asked.append((node, str((await r.json())["id"]), time.monotonic()))

    await asyncio.gather(*(ask(n) for n in range(count)))
    latencies: list[float] = []
    pending = list(asked)
    for _ in range(6000):  # 10 min at most
        still = []
        for node, clip_id, at in pending:
            clip = await get_json(http, f"{node.url}/v1/clips/{clip_id}")
            if clip["state"] == "ready":
                latencies.append((time.monotonic() - at) * 1000)
            elif clip["state"] == "failed":
                raise AssertionError(f"clip {clip_id} failed: {clip.get('error')}")
            else:
                still.append((node, clip_id, at))
        pending = still
        if not pending:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{len(pending)} clips not ready")
    return time.monotonic() - began, latencies


async def _run(
    setup: str,
    count: int,
    *,
    work: Path,
    dsn: str | None,
    s3: S3Server | None,
    streams: int,
    backlog: int,
    clips: int,
    lease_s: float,
) -> Row:
    origins = {
        f"s{k}": LiveOrigin(segment_ms=SEGMENT_MS, window=backlog, prefill=backlog, path=f"/s{k}")
        for k in range(streams)
    }
    urls = {name: await origin.start() for name, origin in origins.items()}
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    if s3 is not None:
        s3.admin.create_bucket(Bucket=bucket)
    nodes: list[Node] = []
    folder = work / f"{setup.replace(' ', '-').replace('+', '')}-{count}"
    folder.mkdir(parents=True)
    try:
        async with aiohttp.ClientSession() as http:
            began = time.monotonic()
            nodes = list(
                await asyncio.gather(
                    *(
                        start_node(
                            folder,
                            f"node-{n + 1}",
                            dsn=dsn,
                            s3=s3,
                            bucket=bucket,
                            origins=urls,
                            lease_s=lease_s,
                        )
                        for n in range(count)
                    )
                )
            )
            target = streams * backlog

            async def caught_up() -> bool:
                return await _indexed(http, nodes[0]) >= target

            await wait_for("the backlog indexed", caught_up, timeout_s=600)
            ingest_s = time.monotonic() - began
            edges = {name: origin.segment_pdt_ms(backlog - 1) for name, origin in origins.items()}
            elapsed, latencies = await _clip_round(http, nodes, list(origins), edges, clips)
            takeover_s = resumed_s = None
            if count >= 2:
                held = await holders(http, nodes[0])
                load = {n.name: sum(1 for who in held.values() if n.name in who) for n in nodes}
                victim = max(nodes, key=lambda n: load[n.name])
                lost = [s for s, who in held.items() if victim.name in who]
                survivor = next(n for n in nodes if n is not victim)
                before = {s: await _edge_of(http, survivor, s) for s in lost}
                killed = time.monotonic()
                await stop_node(victim, signal.SIGKILL)

                async def taken() -> bool:
                    now_held = await holders(http, survivor)
                    return all(now_held.get(s) and victim.name not in now_held[s] for s in lost)

                await wait_for("streams taken over", taken, timeout_s=60)
                takeover_s = time.monotonic() - killed

                async def resumed() -> bool:
                    edges_now = [await _edge_of(http, survivor, s) for s in lost]
                    return all(edge > before[s] for edge, s in zip(edges_now, lost, strict=True))

                await wait_for("recording resumed", resumed, timeout_s=60)
                resumed_s = time.monotonic() - killed
        return Row(
            setup=setup,
            nodes=count,
            ingest_segments_per_s=target / ingest_s,
            ingest_s=ingest_s,
            clips_per_s=clips / elapsed,
            clip_p50_ms=statistics.median(latencies),
            clip_p95_ms=sorted(latencies)[max(0, round(len(latencies) * 0.95) - 1)],
            takeover_s=takeover_s,
            resumed_s=resumed_s,
        )
    finally:
        for node in nodes:
            await stop_node(node)
        for origin in origins.values():
            await origin.stop()


async def _edge_of(http: aiohttp.ClientSession, node: Node, stream: str) -> int:
    body = await get_json(http, f"{node.url}/v1/streams/{stream}")
    edge = body.get("live_edge_ms")
    return edge if isinstance(edge, int) else 0


def _table(rows: list[Row]) -> str:
    def opt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| setup | nodes | ingest seg/s | backlog in | clips/s | clip p50 | clip p95 "
        "| takeover | recording again |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.setup} | {r.nodes} | {r.ingest_segments_per_s:.1f} | {r.ingest_s:.1f} s "
            f"| {r.clips_per_s:.2f} | {r.clip_p50_ms:.0f} ms | {r.clip_p95_ms:.0f} ms "
            f"| {opt(r.takeover_s)} s | {opt(r.resumed_s)} s |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--backlog", type=int, default=30, help="segments per stream")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--lease", type=float, default=3.0, help="lease_s of the nodes")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="livecut-bench-cluster-") as tmp:
        work = Path(tmp)
        server = postgres.start()
        s3 = start_s3_server(work / "moto.log")
        try:
            common = {
                "work": work,
                "streams": args.streams,
                "backlog": args.backlog,
                "clips": args.clips,
                "lease_s": args.lease,
            }
            rows.append(await _run("SQLite + local disk", 1, dsn=None, s3=None, **common))
            print(_table(rows), flush=True)
            for count in counts:
                name = f"db{uuid.uuid4().hex[:10]}"
                postgres.psql(server.dsn, f"CREATE DATABASE {name}")
                dsn = server.dsn.rsplit("/", 1)[0] + f"/{name}"
                rows.append(await _run("PostgreSQL + S3", count, dsn=dsn, s3=s3, **common))
                print(_table(rows), flush=True)
        finally:
            stop_s3_server(s3)
            postgres.stop(server)
    print()
    print(f"{args.streams} streams, {args.backlog} s backlog each, {args.clips} clips of 4 s;")
    print("all nodes, PostgreSQL, moto and the origins share this machine's cores.")
    print(_table(rows))


if __name__ == "__main__":
    asyncio.run(main())
