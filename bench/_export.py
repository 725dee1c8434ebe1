"""Session export at scale: an index of hours of 1080p built from a small segment pool.

`build_session` writes a store whose segment rows repeat the pool's files (one hard
link per row, since every row owns its path) at consecutive PDTs and sequence numbers;
each pass over the pool is a new epoch, as after an encoder restart. Wall times come
from each row's start_ms, so repeated content cuts like any other.

Run as a script, this is the child process the benchmark measures alone: a Daemon
with no streams serves that store, one POST /v1/sessions/{id}/export is timed to
`ready`, and a JSON line on stdout reports the time, the result and the peak RSS.

    python bench/_export.py --data DIR --session ID [--start-ms MS --end-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from _stages import StageTimer

from livecut.config import default_config
from livecut.daemon import Daemon
from livecut.media.probe import SegmentProbe, probe_segment
from livecut.store import files
from livecut.store.store import Store

STREAM = "cam"
RENDITION = "main"
RSS_SAMPLE_S = 0.1
SAMPLE_SETTLE_S = 0.5  # sampled RSS before the POST: after start-up has settled


@dataclass(frozen=True, kw_only=True, slots=True)
class BuiltSession:
    session_id: str
    rows: int
    first_ms: int
    end_ms: int
    media_bytes: int  # what the rows name, counted once per row
    build_s: float


async def build_session(
    pool_files: list[Path],
    data_dir: Path,
    *,
    rows: int,
    pdt0_ms: int,
    segment_ms: int,
    resolution: str,
) -> BuiltSession:
    """Index `rows` consecutive segments that cycle through pool_files; returns the session."""
    began = time.perf_counter()
    probes: list[SegmentProbe] = [probe_segment(path.read_bytes()) for path in pool_files]
    sizes = [path.stat().st_size for path in pool_files]
    store = Store(data_dir)
    try:
        index = store.index
        now_ms = int(time.time() * 1000)
        await index.ensure_stream(STREAM, "http://127.0.0.1/bench-export/index.m3u8", now_ms)
        session = await index.open_session(STREAM, clock="origin", started_ms=pdt0_ms)
        rendition = await index.add_rendition(
            session.id,
            name=RENDITION,
            uri="http://127.0.0.1/bench-export/index.m3u8",
            kind="video",
            main=True,
            resolution=resolution,
            codecs="avc1.640028,mp4a.40.2",
        )
        end_ms = pdt0_ms
        media_bytes = 0
        for seq in range(rows):
            which = seq % len(pool_files)
            epoch = seq // len(pool_files)
            probe = probes[which]
            relpath = files.segment_relpath(STREAM, session.id, RENDITION, f"{epoch}-{seq}.ts")
            target = data_dir / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool_files[which], target)
            start_ms = pdt0_ms + seq * segment_ms
            end_ms = start_ms + round(probe.duration_s * 1000)
            await index.add_segment(
                rendition_id=rendition.id,
                seq=seq,
                epoch=epoch,
                start_ms=start_ms,
                end_ms=end_ms,
                path=relpath,
                size=sizes[which],
                init_path=None,
                ref_pts_s=probe.ref_pts_s,
                keyframes_ms=[start_ms + round(k * 1000) for k in probe.keyframes_s],
                has_video=probe.has_video,
                has_audio=probe.has_audio,
                indexed_ms=now_ms,
                params=probe.params,
            )
            media_bytes += sizes[which]
        await index.end_session(session.id, ended_ms=end_ms, reason="endlist")
    finally:
        await store.close()
    return BuiltSession(
        session_id=session.id,
        rows=rows,
        first_ms=pdt0_ms,
        end_ms=end_ms,
        media_bytes=media_bytes,
        build_s=time.perf_counter() - began,
    )


# --- the child process --------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """VmRSS every RSS_SAMPLE_S in a thread, to show how memory moves during the export."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []  # (seconds since start, kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._began = 0.0

    def start(self) -> None:
        self._began = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.samples.append((time.perf_counter() - self._began, _status_kb("VmRSS")))


async def run_export(
    data_dir: Path, session_id: str, body: dict[str, int], timeout_s: float
) -> dict[str, object]:
    base = default_config(data_dir)
    config = replace(
        base,
        server=replace(base.server, listen_host="127.0.0.1", listen_port=0),
        streams=(),
    )
    timer = StageTimer()
    timer.install()
    daemon = Daemon(config)
    await daemon.start()
    try:
        await asyncio.sleep(SAMPLE_SETTLE_S)
        rss_before_kb = _status_kb("VmRSS")
        hwm_before_kb = _status_kb("VmHWM")
        sampler = RssSampler()
        async with aiohttp.ClientSession() as http:
            sampler.start()
            began = time.perf_counter()
            async with http.post(
                f"{daemon.base_url}/v1/sessions/{session_id}/export", json=body
            ) as response:
                created = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"export refused: HTTP {response.status} {created}")
            clip = await daemon.jobs.wait_finished(str(created["id"]), timeout_s)
            elapsed_s = time.perf_counter() - began
            sampler.stop()
        if clip is None or clip.state != "ready" or clip.result is None:
            raise RuntimeError(f"export did not finish: {clip}")
        output = daemon.store.clip_dir(clip.id) / "clip.mp4"
        return {
            "elapsed_s": elapsed_s,
            "clip_id": clip.id,
            "output": str(output),
            "result": clip.result,
            "stages": timer.take(),
            "rss_before_kb": rss_before_kb,
            "hwm_before_kb": hwm_before_kb,
            "rss_samples": sampler.samples,
        }
    finally:
        await daemon.stop()
        timer.uninstall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--start-ms", type=int)
    parser.add_argument("--end-ms", type=int)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    body: dict[str, int] = {}
    if args.start_ms is not None and args.end_ms is not None:
        body = {"start_ms": args.start_ms, "end_ms": args.end_ms}
    report = asyncio.run(run_export(args.data, args.session, body, args.timeout_s))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report
    # the benchmark's own peak whenever that is higher than the child's.
    report["vmhwm_kb"] = _status_kb("VmHWM")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
