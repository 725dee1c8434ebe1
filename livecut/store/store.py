"""The store as the rest of the daemon sees it: durable writes, the index, live-edge notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from livecut import metrics
from livecut.config import S3Credentials, StorageConfig
from livecut.store import files
from livecut.store.index import INDEX_FILE, Index
from livecut.store.media import LocalMedia, Media
from livecut.store.space import Space

if TYPE_CHECKING:
    from livecut.store.s3media import S3Media

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


class Store:
    def __init__(
        self,
        data_dir: Path,
        storage: StorageConfig | None = None,
        *,
        index: Index | None = None,
        s3_credentials: S3Credentials | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "clips").mkdir(exist_ok=True)
        self.index = Index(data_dir / INDEX_FILE) if index is None else index
        self.edges = EdgeWatch()
        storage = storage or StorageConfig()
        self.space = Space(self, storage)
        self.clock = clock
        # Media in the data directory, or in a bucket with local copies (the backend is
        # fixed for the daemon's life: a change needs a restart).
        self.remote: S3Media | None = None
        self.media: Media = LocalMedia(data_dir)
        if storage.s3 is not None:
            # Imported only here: the bucket's client is no weight on a local node.
            from livecut.store.s3media import S3Media

            self.remote = S3Media(data_dir, storage.s3, credentials=s3_credentials)
            self.media = self.remote
        self._staged = 0  # names staged segments uniquely
        # Spans of stored media being read outside any job (a thumbnail): retention and
        # the disk floor keep them, as they keep what clip and analysis jobs will read.
        self._reads: list[tuple[str, int, int]] = []
        self.configured_overlays: dict[str, Path] = {}  # [overlays] of the config

    async def open(self) -> None:
        """Connect to the index (PostgreSQL), bringing its tables up to date, and start
        the media backend."""
        await self.index.open()
        try:
            await self.start()
        except BaseException:
            await self.index.close()
            raise

    async def start(self) -> None:
        """Start the media backend: S3 checks that the bucket answers (a wrong endpoint,
        bucket or key pair shows now, not at the first segment) and finds its cache."""
        await self.media.start()

    async def close(self) -> None:
        await self.media.close()
        await self.index.close()

    def path(self, relpath: str) -> Path:
        """Where a reader opens stored media: under the data directory, or (S3) the local
        copy, which exists inside `fetched`."""
        return self.media.path(relpath)

    def fetched(self, relpaths: Iterable[str]) -> AbstractAsyncContextManager[None]:
        """Keep local files of these relpaths while the block runs: nothing to do for the
        local backend; with S3, each is downloaded into the read cache if it is not there
        and pinned until the block ends."""
        return self.media.fetched(relpaths)

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
            await self.media.write(relpath, data)
        except OSError:
            metrics.STORAGE_ERRORS.labels("write").inc()
            raise

    def incoming_path(self, suffix: str) -> Path:
        """A new, unique path in the incoming folder, for a segment to be staged at
        (ingest/staging.py) and published from."""
        self._staged += 1
        return self.root / files.INCOMING / f"{os.getpid()}-{self._staged}{suffix}"

    async def publish(self, staged: Path, relpath: str) -> None:
        """Move a staged segment to relpath, durably (a rename and the folder's fsync), or
        PUT it (S3; the staged file then becomes the local copy). On OSError nothing is
        stored and the staged file is the caller's to discard."""
        try:
            await self.media.publish(staged, relpath)
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
        """Start-up: remove media no index row names (partial or never indexed). With S3,
        objects only once an hour old: another node may not have indexed its PUT yet."""
        now_s = self.clock()
        removed = await self.media.reconcile(await self.index.all_media_paths(), now_s)
        removed += await self.media.reconcile_clips(self._clip_exists, now_s)
        if removed:
            log.info("start-up reconciliation removed %d orphan file(s)", len(removed))
        return removed

    async def _clip_exists(self, clip_id: str) -> bool:
        return await self.index.clip(clip_id) is not None

    async def remove_files(self, relpaths: list[str]) -> None:
        """Remove media (files and the folders they leave empty, or objects and their
        local copies) whose rows are gone. Never raises: a failure leaves an orphan."""
        await self.media.remove(relpaths)

    async def keep_clip_files(self, clip_id: str) -> None:
        """A clip's outputs are final: with S3 they are uploaded (from any node they are
        then served), before the clip is told ready."""
        await self.media.keep_clip(clip_id, self.clip_dir(clip_id))

    async def remove_clip_files(self, clip_id: str) -> None:
        await self.media.remove_clip(clip_id, self.clip_dir(clip_id))

    async def drop_local_clip_files(self, clip_id: str) -> None:
        """This node's working copy of a clip's outputs, not what is stored for all nodes."""
        await asyncio.to_thread(shutil.rmtree, self.clip_dir(clip_id), ignore_errors=True)
