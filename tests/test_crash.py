"""SIGKILL while recording: on restart no index row points at a missing or partial file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from livecut.config import load_config
from livecut.origin import LiveOrigin
from livecut.store.index import INDEX_FILE
from tests.engines import open_index
from tests.harness import running, until

POLL_S = 0.05
POLL_LIMIT = 600  # 30 s at most


def write_config(path: Path, data_dir: Path, url: str) -> None:
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
data_dir = "{data_dir}"

[[streams]]
id = "cam"
url = "{url}"
session_gap = "60s"
"""
    )


async def rows_match_files(data_dir: Path) -> int:
    index = await open_index(data_dir / INDEX_FILE)
    try:
        segments = await index.stream_segments("cam", 0, 2**62)
        for segment in segments:
            path = data_dir / segment.path
            assert path.is_file(), f"row {segment.seq} points at missing {path}"
            assert path.stat().st_size == segment.size, f"row {segment.seq}: partial file"
        return len(segments)
    finally:
        await index.close()


async def test_sigkill_then_restart(data_dir: Path, tmp_path: Path) -> None:
    # Small segments and a long prefilled window: many writes in flight when the kill lands.
    origin = LiveOrigin(segment_ms=1000, window=30, prefill=30)
    url = await origin.start()
    config_path = tmp_path / "livecut.toml"
    write_config(config_path, data_dir, url)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "serve",
            "--config",
            str(config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            for _ in range(POLL_LIMIT):
                served = [r for r in origin.requests if r.endswith(".ts")]
                if len(served) >= 12:
                    break
                await asyncio.sleep(POLL_S)
            else:
                raise AssertionError("the daemon never fetched segments")
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL

        recorded_before = await rows_match_files(data_dir)
        # Leftovers of an interrupted write, and a file no row names.
        folder = next((data_dir / "streams" / "cam").iterdir()) / "main"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "0-99999.ts.part").write_bytes(b"partial")
        (folder / "0-99998.ts").write_bytes(b"never indexed")

        # The same node restarted: its config file, so its name and its stream's lease
        # (on PostgreSQL, taken back at once rather than after the lease runs out).
        async with running(load_config(config_path)) as daemon:
            assert not (folder / "0-99999.ts.part").exists()
            assert not (folder / "0-99998.ts").exists()
            target = recorded_before + 2

            async def grew() -> bool:
                return len(await daemon.store.index.stream_segments("cam", 0, 2**62)) >= target

            await until(daemon, "cam", grew, timeout_s=20)
            sessions = await daemon.store.index.sessions("cam")
            assert len(sessions) == 1, "a quick restart resumes the live session"
        recorded_after = await rows_match_files(data_dir)
        assert recorded_after >= target
        index = await open_index(data_dir / INDEX_FILE)
        try:
            seqs = [s.seq for s in await index.stream_segments("cam", 0, 2**62)]
        finally:
            await index.close()
        assert seqs == sorted(set(seqs)), "no segment recorded twice"
    finally:
        await origin.stop()
