"""The store as the rest of the daemon sees it: durable writes, the index, live-edge notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from livecut import metrics
from livecut.config import StorageConfig
from livecut.store import files
from livecut.store.index import Index
from livecut.store.space import Space

log = logging.getLogger(__name__)


class EdgeWatch:
    """Wakes whoever waits on a stream when its recording grows or its session ends."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def changed(self, stream_id: str) -> None:
        event = self._events.pop(stream_id, None)
        if event is not None:
            event.set()

    async def wait(self, stream_id: str, timeout_s: float) -> bool:
        """True if the stream changed within timeout_s."""
        event = self._events.setdefault(stream_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True


# The SQLite index, in the data directory (one node; many share a PostgreSQL index).
INDEX_FILE = "index.sqlite3"


class Store:
    def __init__(
        self, data_dir: Path, storage: StorageConfig | None = None, *, index: Index | None = None
    ) -> None:
        self.root = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "clips").mkdir(exist_ok=True)
        self.index = Index(data_dir / INDEX_FILE) if index is None else index
        self.edges = EdgeWatch()
        self.space = Space(self, storage or StorageConfig())
        self._staged = 0  # names staged segments uniquely
        # Spans of stored media being read outside any job (a thumbnail): retention and
        # the disk floor keep them, as they keep what clip and analysis jobs will read.
        self._reads: list[tuple[str, int, int]] = []
        self.configured_overlays: dict[str, Path] = {}  # [overlays] of the config

    async def open(self) -> None:
        """Connect to the index (PostgreSQL), bringing its tables up to date."""
        await self.index.open()

    async def close(self) -> None:
        await self.index.close()

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    @contextlib.contextmanager
    def reading(self, stream_id: str, start_ms: int, end_ms: int) -> Iterator[None]:
        """Keep the stream's segments in [start_ms, end_ms) while the block reads them."""
        entry = (stream_id, start_ms, end_ms)
        self._reads.append(entry)
        try:
            yield
        finally:
            self._reads.remove(entry)

    def reads(self, stream_id: str) -> list[tuple[int, int]]:
        """What is being read of a stream outside jobs, as (start_ms, end_ms) spans."""
        return [(start, end) for sid, start, end in self._reads if sid == stream_id]

    async def write(self, relpath: str, data: bytes) -> None:
        """Make room above the disk floor, then write a media file durably. A full disk
        raises OSError (ENOSPC) with nothing left behind."""
        await self.space.make_room(len(data))
        try:
            # One thread hop for write, fsync, rename and the folder's fsync: cheaper
            # than four aiofiles hops, and the file is never half-visible to the loop.
            await asyncio.to_thread(files.write_atomic, self.root, relpath, data)
        except OSError:
            metrics.STORAGE_ERRORS.labels("write").inc()
            raise

    def incoming_path(self, suffix: str) -> Path:
        """A new, unique path in the incoming folder, for a segment to be staged at
        (ingest/staging.py) and published from."""
        self._staged += 1
        return self.root / files.INCOMING / f"{os.getpid()}-{self._staged}{suffix}"

    async def publish(self, staged: Path, relpath: str) -> None:
        """Move a staged segment to relpath, durably (a rename and the folder's fsync)."""
        try:
            await asyncio.to_thread(files.publish, self.root, staged, relpath)
        except OSError:
            metrics.STORAGE_ERRORS.labels("write").inc()
            raise

    def discard(self, staged: Path) -> None:
        """Remove a staged segment that will not be published."""
        files.remove_quietly(staged)

    async def write_file(self, path: Path, data: bytes) -> None:
        """Atomically write a file outside the segment tree (clip outputs; the clip job
        counts its failures)."""
        await asyncio.to_thread(files.write_atomic, path.parent, path.name, data)

    async def overlay_image(self, ref: str) -> Path | None:
        """The image of an overlay: one named in the config, or one uploaded (by id)."""
        if ref in self.configured_overlays:
            return self.configured_overlays[ref]
        if await self.index.overlays.get(ref) is None:
            return None
        return self.overlay_path(ref)

    def overlay_path(self, overlay_id: str) -> Path:
        """Where an uploaded watermark image is kept (an RGBA PNG)."""
        return self.root / "overlays" / f"{files.safe_name(overlay_id)}.png"

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / "clips" / files.safe_name(clip_id)

    async def reconcile(self) -> list[str]:
        """Start-up: remove media files no index row names (partial or never indexed)."""
        removed = files.sweep_orphans(self.root, await self.index.all_media_paths())
        if removed:
            log.info("start-up reconciliation removed %d orphan file(s)", len(removed))
        return removed

    def remove_files(self, relpaths: list[str]) -> None:
        """Remove media files and the folders they leave empty."""
        files.remove_and_prune(self.root, relpaths)

    def remove_clip_files(self, clip_id: str) -> None:
        shutil.rmtree(self.clip_dir(clip_id), ignore_errors=True)
