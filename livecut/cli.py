"""The `livecut` command: serve, demo, check-config, migrate, clip."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp

from livecut import __version__, logs
from livecut.config import (
    Config,
    ConfigError,
    StreamConfig,
    default_config,
    load_config,
    parse_duration,
)
from livecut.notify import Notifier

if TYPE_CHECKING:
    from livecut.daemon import Daemon
from livecut.store.index import INDEX_FILE, Index
from livecut.store.pg import redact
from livecut.store.schema import SCHEMA_VERSION

log = logging.getLogger("livecut")

CLIP_POLL_S = 0.5
CLIP_WAIT_LIMIT_S = 300.0
DEMO_READY_S = 30.0  # the longest the demo waits for 10 s recorded before it says how to clip


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "check-config":
        return _check_config(Path(args.file), connect=args.connect)
    if args.command == "migrate":
        return _migrate(Path(args.config))
    if args.command == "serve":
        return _serve(Path(args.config))
    if args.command == "demo":
        return _demo(args)
    if args.command == "clip":
        return asyncio.run(_clip(args))
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livecut", description="Record live HLS streams and cut clips by wall-clock time."
    )
    parser.add_argument("--version", action="version", version=f"livecut {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser(
        "serve",
        help="run the daemon from a config file (SIGHUP re-reads it; speaks systemd's "
        "notify protocol when NOTIFY_SOCKET is set)",
    )
    serve.add_argument("--config", required=True, help="TOML config file")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    check.add_argument(
        "--connect",
        action="store_true",
        help="also connect to the PostgreSQL index ([cluster] index_url) and report it",
    )
    migrate = sub.add_parser(
        "migrate",
        help="bring the index's tables up to date and exit (serve does this at start too)",
    )
    migrate.add_argument("--config", required=True, help="TOML config file")
    demo = sub.add_parser("demo", help="record a built-in synthetic live stream and serve the API")
    demo.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    demo.add_argument("--data", help="data directory (default: a new temporary directory)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    clip = sub.add_parser("clip", help="ask a running daemon for a clip and download it")
    clip.add_argument("--server", default="http://127.0.0.1:8080")
    clip.add_argument("--stream", required=True)
    clip.add_argument("--last", help='the last DURATION up to now, e.g. "10s"')
    clip.add_argument("--start-ms", type=int)
    clip.add_argument("--end-ms", type=int)
    clip.add_argument("--name")
    clip.add_argument("--accuracy", choices=["frame", "keyframe"], default="frame")
    clip.add_argument("--api-key")
    clip.add_argument("-o", "--output", default="clip.mp4")
    return parser


def _load(path: Path) -> Config | None:
    """The config, or None once its errors are printed."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _check_config(path: Path, *, connect: bool = False) -> int:
    config = _load(path)
    if config is None:
        return 1
    url = config.cluster.index_url
    where = "SQLite in the data directory" if url is None else f"PostgreSQL at {redact(url)}"
    print(
        f"{path}: ok: {len(config.streams)} stream(s), API on "
        f"{config.server.listen_host}:{config.server.listen_port}, "
        f"data in {config.server.data_dir}, index: {where}, node {config.cluster.node_id}"
    )
    if connect and url is not None:
        return asyncio.run(_report_index(url, migrate=False))
    return 0


def _migrate(path: Path) -> int:
    config = _load(path)
    if config is None:
        return 1
    url = config.cluster.index_url
    if url is None:
        index = Index(config.server.data_dir / INDEX_FILE)
        print(f"{config.server.data_dir / INDEX_FILE}: schema version {SCHEMA_VERSION}")
        asyncio.run(index.close())
        return 0
    return asyncio.run(_report_index(url, migrate=True))


async def _report_index(url: str, *, migrate: bool) -> int:
    """Connect to a PostgreSQL index (migrating it if asked) and say what is there."""
    try:
        index = await Index.postgres(url, migrate=migrate)
    except (OSError, ConnectionError) as exc:
        print(f"index {redact(url)}: {exc}", file=sys.stderr)
        return 1
    try:
        version = await index.schema_version()
    finally:
        await index.close()
    if version < SCHEMA_VERSION:
        print(
            f"index {redact(url)}: reachable, schema version {version} of {SCHEMA_VERSION}:"
            " run `livecut migrate --config FILE` (or start a node)"
        )
        return 0
    print(f"index {redact(url)}: reachable, schema version {version} (up to date)")
    return 0


def _serve(path: Path) -> int:
    config = _load(path)
    if config is None:
        return 1
    logs.configure(config.log.format)
    from livecut.daemon import Daemon  # the whole daemon: not for check-config or migrate

    daemon = Daemon(config, config_path=path, notifier=Notifier.from_environment())
    return asyncio.run(_run_until_signal(daemon, duration_s=None))


async def _run_until_signal(
    daemon: Daemon,
    *,
    duration_s: float | None,
    on_started: Callable[[str], Coroutine[Any, Any, None]] | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP (systemctl reload) re-reads the config file; without one it is refused and logged.
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    try:
        base_url = await daemon.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        daemon.notifier.status(f"cannot start: {exc}")
        await daemon.stop()
        return 1
    # Runs beside the wait for a signal, so Ctrl-C is never held up by it.
    told: asyncio.Task[None] | None = None
    if on_started is not None:
        told = asyncio.create_task(on_started(base_url))
    try:
        if duration_s is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        log.info("stopping")
        if told is not None:
            told.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await told
        await daemon.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="livecut-demo-"))
    return asyncio.run(_demo_async(data, args.port, args.duration))


async def _demo_async(data: Path, port: int, duration_s: float | None) -> int:
    # The demo origin is product code, but only the demo needs it (and its encoder).
    from livecut.origin import LiveOrigin

    origin = LiveOrigin()
    origin_url = await origin.start()
    master_url = origin_url.replace("index.m3u8", "master.m3u8")
    base = default_config(data)
    config = replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=port),
        streams=(
            StreamConfig(
                id="demo",
                url=master_url,
                retention_s=3600.0,
                session_gap_s=30.0,
                headers=(),
                enabled=True,
            ),
        ),
    )

    from livecut.daemon import Daemon

    daemon = Daemon(config)

    async def tell(api: str) -> None:
        # The command clips the last 10 s: it is printed once they are recorded (or after
        # DEMO_READY_S at most), so it works the moment it is read.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEMO_READY_S
        while loop.time() < deadline:
            live = await daemon.store.index.live_session("demo")
            if live is not None and (live.live_edge_ms or 0) - live.started_ms >= 10_000:
                break
            await daemon.store.edges.wait("demo", min(1.0, max(0.0, deadline - loop.time())))
        print(
            f"""
livecut demo: recording the synthetic live stream "demo" from {master_url}
  data directory: {data}
  API:            {api}   (metrics at {api}/metrics)
  console:        {api}/   (watch, rewind, mark in and out, clip){_console_note()}

Clip the last 10 seconds and download it as clip.mp4 (try it now, or any time later):

  {_self_command()} clip --server {api} --stream demo --last 10s -o clip.mp4

or with curl:

  now=$(date +%s%3N); curl -s -X POST {api}/v1/clips -H 'Content-Type: application/json' \\
    -d "{{\\"stream\\":\\"demo\\",\\"start_ms\\":$((now-10000)),\\"end_ms\\":$now}}"
  curl -s {api}/v1/clips/<id>                        # until "state": "ready"
  curl -o clip.mp4 {api}/v1/clips/<id>/clip.mp4

Ctrl-C stops the demo.
""",
            flush=True,
        )

    try:
        return await _run_until_signal(daemon, duration_s=duration_s, on_started=tell)
    finally:
        await origin.stop()


def _console_note() -> str:
    from livecut.api.console import INSTALL_HLSJS, find_hlsjs

    if find_hlsjs(default_config(Path(".")).server) is not None:
        return ""
    return f"\n                  its player needs hls.js: {INSTALL_HLSJS}"


def _self_command() -> str:
    """How to run this same livecut from another terminal: bare if it is on PATH."""
    invoked = Path(sys.argv[0]).resolve()
    on_path = shutil.which("livecut")
    if on_path is not None and Path(on_path).resolve() == invoked:
        return "livecut"
    return str(invoked) if invoked.name == "livecut" else f"{sys.executable} -m livecut"


async def _clip(args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    if args.last is not None:
        try:
            last_ms = round(parse_duration(args.last, key="--last") * 1000)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        start_ms, end_ms = now_ms - last_ms, now_ms
    elif args.start_ms is not None and args.end_ms is not None:
        start_ms, end_ms = args.start_ms, args.end_ms
    else:
        print("give --last DURATION, or both --start-ms and --end-ms", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    body: dict[str, object] = {
        "stream": args.stream,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "accuracy": args.accuracy,
    }
    if args.name:
        body["name"] = args.name
    server = args.server.rstrip("/")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{server}/v1/clips", json=body) as response:
            created = await response.json()
            if response.status != 202:
                print(f"refused ({response.status}):", *created.get("errors", []), sep="\n  ")
                return 1
        clip_id = created["id"]
        print(f"clip {clip_id}: {created['state']}", flush=True)
        clip = created
        for _ in range(int(CLIP_WAIT_LIMIT_S / CLIP_POLL_S)):
            if clip["state"] in ("ready", "failed"):
                break
            await asyncio.sleep(CLIP_POLL_S)
            async with http.get(f"{server}/v1/clips/{clip_id}") as response:
                clip = await response.json()
        if clip["state"] != "ready":
            print(f"clip {clip_id}: {clip['state']}: {clip.get('error')}", file=sys.stderr)
            return 1
        output = Path(args.output)
        mp4 = clip["files"]["mp4"]
        async with http.get(urljoin(server + "/", mp4["url"])) as response:
            response.raise_for_status()
            with open(output, "wb") as fh:
                async for chunk in response.content.iter_chunked(1 << 16):
                    fh.write(chunk)
    print(
        f"clip {clip_id}: ready: {output} ({mp4['size_bytes']} bytes, "
        f"{clip['duration_ms']} ms from {clip['start_ms']} to {clip['end_ms']})"
    )
    for note in clip.get("notes", []):
        print(f"  note: {note}")
    return 0
