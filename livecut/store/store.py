"""The store as the rest of the daemon sees it: durable writes, the index, live-edge notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import aiofiles.os

from livecut import metrics
from livecut.config import S3Credentials, StorageConfig
from livecut.store import files
from livecut.store.index import INDEX_FILE, Index
from livecut.store.media import (
    LocalMedia,
    Media,
    clip_prefix,
    job_prefix,
    overlay_relpath,
)
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
        """Atomically write a file outside the segment tree (clip outputs, previews; the
        job counts its failures). One thread hop for write, fsync and rename: cheaper than
        an aiofiles hop for each."""
        await asyncio.to_thread(files.write_atomic, path.parent, path.name, data)

    @contextlib.asynccontextmanager
    async def overlay_image(self, ref: str) -> AsyncIterator[Path | None]:
        """The image of an overlay, on this disk while the block runs: one named in the
        config, or one uploaded (by id; with S3, its copy in the read cache, fetched from
        the bucket and pinned). None: there is no such overlay, or its image is gone."""
        path: Path | None
        async with contextlib.AsyncExitStack() as stack:
            if ref in self.configured_overlays:
                path = self.configured_overlays[ref]
            elif await self.index.overlays.get(ref) is None:
                path = None
            else:
                relpath = overlay_relpath(ref)
                path = self.path(relpath)
                try:
                    await stack.enter_async_context(self.fetched([relpath]))
                except FileNotFoundError:
                    path = None  # deleted (by another node) since its row was read
            # aiofiles: a stat on the loop could stall it on a network file system.
            if path is not None and not await aiofiles.os.path.isfile(path):
                path = None
            yield path

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / clip_prefix(clip_id)

    async def reconcile(self) -> list[str]:
        """Start-up: remove media no index row names (partial or never indexed). With S3,
        objects only once an hour old: another node may not have indexed its PUT yet."""
        now_s = self.clock()
        if self.remote is not None:
            await self._share_local_files()
        removed = await self.media.reconcile(await self.index.all_media_paths(), now_s)
        removed += await self.media.reconcile_folders("clips/", self._clip_exists, now_s)
        removed += await self.media.reconcile_folders("analysis/", self._job_exists, now_s)
        removed += await self.media.reconcile_folders("overlays/", self._overlay_exists, now_s)
        if removed:
            log.info("start-up reconciliation removed %d orphan file(s)", len(removed))
        return removed

    async def _share_local_files(self) -> None:
        """S3: watermark images and shot previews that an earlier version kept on this
        node's disk go to the bucket, where every node finds them (once: they leave the
        disk, the images for the read cache). Another node may be running a job that is
        not completed: only this disk's folder of it goes."""
        left = 0
        for row in await self.index.overlays.all():
            relpath = overlay_relpath(row.id)
            if await aiofiles.os.path.isfile(self.root / relpath):
                try:
                    await self.media.publish(self.root / relpath, relpath)
                except OSError as exc:
                    left += 1
                    log.warning("%s stays on this disk, not in the bucket: %s", relpath, exc)
        if not left:  # what is left is partial writes, or images of deleted overlays
            await asyncio.to_thread(shutil.rmtree, self.root / "overlays", True)
        for name in await asyncio.to_thread(_folder_names, self.root / "analysis"):
            job = await self.index.analysis.job(name)
            prefix = job_prefix(name)
            try:
                if job is not None and job.state == "completed":
                    await self.media.keep_folder(prefix)
            except OSError as exc:
                log.warning("%s stays on this disk, not in the bucket: %s", prefix, exc)
            else:
                # Its job is gone, or runs again (here or on another node) from the top.
                await asyncio.to_thread(shutil.rmtree, self.root / prefix, True)

    async def _clip_exists(self, clip_id: str) -> bool:
        return await self.index.clip(clip_id) is not None

    async def _job_exists(self, job_id: str) -> bool:
        return await self.index.analysis.job(job_id) is not None

    async def _overlay_exists(self, overlay_id: str) -> bool:
        return await self.index.overlays.get(overlay_id) is not None

    async def remove_files(self, relpaths: list[str]) -> None:
        """Remove media (files and the folders they leave empty, or objects and their
        local copies) whose rows are gone. Never raises: a failure leaves an orphan."""
        await self.media.remove(relpaths)

    async def keep_folder(self, prefix: str) -> None:
        """A folder's files are final (a clip's outputs before it is told ready, a shots
        job's previews before it completes): with S3 they are uploaded, and from any node
        they are then served."""
        await self.media.keep_folder(prefix)

    async def remove_folder(self, prefix: str) -> None:
        """A folder's files, on this disk and (S3) in the bucket. Never raises."""
        await self.media.remove_folder(prefix)

    async def keep_clip_files(self, clip_id: str) -> None:
        await self.keep_folder(clip_prefix(clip_id))

    async def remove_clip_files(self, clip_id: str) -> None:
        await self.remove_folder(clip_prefix(clip_id))

    async def drop_local_clip_files(self, clip_id: str) -> None:
        """This node's working copy of a clip's outputs, not what is stored for all nodes."""
        await asyncio.to_thread(shutil.rmtree, self.clip_dir(clip_id), ignore_errors=True)


def _folder_names(parent: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(parent) if entry.is_dir())
    except FileNotFoundError:
        return []
