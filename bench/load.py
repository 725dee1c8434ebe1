"""Load: many concurrent clients creating clips against live streams; prints one table.

    .venv/bin/python bench/load.py                                  # 4 streams, 40 clients
    .venv/bin/python bench/load.py --streams 8 --clients 100 --clips 20 --workers 4

The daemon runs as a subprocess (`livecut serve`), as in production; the live origins
(livecut.origin.LiveOrigin, 2 s segments) and a webhook receiver run in this process.
Every client sends its clips back to back: half of already recorded media (the last 8 s
to 3 s), half reaching 5 s past now (they wait for the live edge). The daemon's queue
bound counts waiting clips, so a burst beyond it is refused with 429 (or 503).

Columns:
  accepted / rejected   POST /v1/clips answered 202 / 429 or 503 (other: anything else)
  ready / failed        final states, learned from the signed clip.ready / clip.failed
                        webhooks (every one verified)
  ready_p50/p99_s       time to ready after the live edge: ready time minus the later of
                        the request time and the requested end (when the edge could first
                        have reached it)
  hook_p50/p99_s        webhook delivery latency: from the event (its created_ms) to the
                        receiver having the request
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from livecut.origin import LiveOrigin
from livecut.webhooks.signing import HEADER, verify

SECRET = "bench-load-secret-0123456789"
SEGMENT_MS = 2000


@dataclass
class Tally:
    accepted: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (created, end)
    rejected_429: int = 0
    rejected_503: int = 0
    other: dict[int, int] = field(default_factory=dict)
    finished: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (state, ms)
    hook_latency_ms: list[int] = field(default_factory=list)
    bad_signatures: int = 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def receiver(tally: Tally) -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        arrived = int(time.time() * 1000)
        if not verify(SECRET, raw, request.headers.get(HEADER, "")):
            tally.bad_signatures += 1
            return web.Response(status=400)
        body = json.loads(raw)
        tally.hook_latency_ms.append(arrived - int(body["created_ms"]))
        data = body["data"]
        if body["type"] in ("clip.ready", "clip.failed"):
            tally.finished[data["id"]] = (data["state"], int(data["updated_ms"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


def write_config(
    path: Path, data: Path, port: int, hook: str, streams: list[str], workers: int
) -> None:
    blocks = "".join(
        f'\n[[streams]]\nid = "s{k}"\nurl = "{url}"\nsession_gap = "60s"\n'
        for k, url in enumerate(streams)
    )
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[clips]
workers = {workers}
max_wait = "60s"

[[webhooks.endpoints]]
name = "bench"
url = "{hook}"
secret = "{SECRET}"
events = ["clip.ready", "clip.failed"]
{blocks}"""
    )


async def client(
    http: aiohttp.ClientSession, api: str, n: int, clips: int, streams: int, tally: Tally
) -> None:
    for i in range(clips):
        now = int(time.time() * 1000)
        waiting = (n + i) % 2 == 1
        start, end = (now - 3000, now + 5000) if waiting else (now - 8000, now - 3000)
        body = {"stream": f"s{(n + i) % streams}", "start_ms": start, "end_ms": end}
        async with http.post(f"{api}/v1/clips", json=body) as response:
            payload = await response.json()
            if response.status == 202:
                tally.accepted[payload["id"]] = (int(payload["created_ms"]), end)
            elif response.status == 429:
                tally.rejected_429 += 1
            elif response.status == 503:
                tally.rejected_503 += 1
            else:
                tally.other[response.status] = tally.other.get(response.status, 0) + 1


async def run(args: argparse.Namespace) -> None:
    origins = [LiveOrigin(segment_ms=SEGMENT_MS, window=10, prefill=6) for _ in range(args.streams)]
    urls = [await o.start() for o in origins]
    tally = Tally()
    runner, hook = await receiver(tally)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="livecut-load-") as tmp:
        config = Path(tmp) / "livecut.toml"
        write_config(config, Path(tmp) / "data", port, hook, urls, args.workers)
        log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115 - closed below
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "serve",
            "--config",
            str(config),
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.clients)
            ) as http:
                for _ in range(200):
                    try:
                        async with http.get(f"{api}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                await asyncio.sleep(args.warmup)  # let every stream record a few segments
                began = time.monotonic()
                await asyncio.gather(
                    *(
                        client(http, api, n, args.clips, args.streams, tally)
                        for n in range(args.clients)
                    )
                )
                submit_s = time.monotonic() - began
                deadline = time.monotonic() + args.timeout
                while len(tally.finished) < len(tally.accepted) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                total_s = time.monotonic() - began
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
            log.close()
    await runner.cleanup()
    for origin in origins:
        await origin.stop()

    ready = [c for c, (state, _) in tally.finished.items() if state == "ready"]
    failed = [c for c, (state, _) in tally.finished.items() if state == "failed"]
    after_edge = [
        (tally.finished[c][1] - max(created, end)) / 1000
        for c, (created, end) in tally.accepted.items()
        if c in tally.finished and tally.finished[c][0] == "ready"
    ]
    hooks = [ms / 1000 for ms in tally.hook_latency_ms]
    sent = args.clients * args.clips
    print(
        f"streams={args.streams} clients={args.clients} clips/client={args.clips} "
        f"sent={sent} workers={args.workers} submit={submit_s:.1f}s total={total_s:.1f}s "
        f"bad_signatures={tally.bad_signatures}"
    )
    header = (
        "accepted",
        "rejected_429",
        "rejected_503",
        "other",
        "ready",
        "failed",
        "unfinished",
        "ready_p50_s",
        "ready_p99_s",
        "hook_p50_s",
        "hook_p99_s",
    )
    row = (
        len(tally.accepted),
        tally.rejected_429,
        tally.rejected_503,
        sum(tally.other.values()),
        len(ready),
        len(failed),
        len(tally.accepted) - len(tally.finished),
        f"{percentile(after_edge, 50):.2f}",
        f"{percentile(after_edge, 99):.2f}",
        f"{percentile(hooks, 50):.3f}",
        f"{percentile(hooks, 99):.3f}",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    print("| " + " | ".join(str(v) for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--clips", type=int, default=40, help="clips per client")
    parser.add_argument("--workers", type=int, default=4, help="clips.workers of the daemon")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds recorded first")
    parser.add_argument("--timeout", type=float, default=300.0, help="wait for the last clip")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
