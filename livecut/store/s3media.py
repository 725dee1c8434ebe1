"""Media in an S3-compatible bucket: each object PUT before its row, local copies in a
bounded read cache for the readers that open files (see media.py for the interface)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from livecut import metrics
from livecut.config import S3Config, S3Credentials
from livecut.store import files
from livecut.store.media import CACHE_DIR, ORPHAN_AGE_S, OwnerExists
from livecut.store.objcache import ReadCache
from livecut.store.objects import TEMP_SUFFIX, ObjectStore

__all__ = ["S3Media"]

log = logging.getLogger(__name__)


class S3Media:
    """Objects in a bucket, each PUT before its row is committed, with a bounded local
    cache of copies (data_dir/cache) for readers. A node's own writes go into the cache as
    they are stored (the staged file is moved there), so recording and clipping on one
    node download nothing; another node downloads what it reads, once."""

    def __init__(
        self,
        root: Path,
        config: S3Config,
        *,
        credentials: S3Credentials | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.objects = objects or ObjectStore(config, credentials=credentials)
        self.cache = ReadCache(self.objects, root / CACHE_DIR, max_bytes=config.cache_bytes)

    async def start(self) -> None:
        await self.objects.start()
        try:
            await self.cache.start()
        except BaseException:
            await self.objects.close()
            raise

    async def close(self) -> None:
        await self.cache.close()
        await self.objects.close()

    def path(self, relpath: str) -> Path:
        return self.cache.directory / relpath

    async def write(self, relpath: str, data: bytes) -> None:
        await self.objects.put_bytes(relpath, data)
        # The local copy is a convenience: without one, the first reader downloads it.
        dest = self.path(relpath)
        temp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            await asyncio.to_thread(files.write_durable, temp, data)
            self.cache.adopt(relpath, temp)
        except OSError as exc:
            files.remove_quietly(temp)
            log.warning("%s is stored, but no local copy of it could be kept: %s", relpath, exc)

    async def publish(self, staged: Path, relpath: str) -> None:
        await self.objects.put_file(relpath, staged)
        try:
            self.cache.adopt(relpath, staged)
        except OSError as exc:
            files.remove_quietly(staged)
            log.warning("%s is stored, but no local copy of it could be kept: %s", relpath, exc)

    async def remove(self, relpaths: list[str]) -> None:
        if not relpaths:
            return
        self.cache.drop(relpaths)
        try:
            await self.objects.delete(relpaths)
        except OSError as exc:
            metrics.STORAGE_ERRORS.labels("remove").inc()
            log.warning(
                "could not delete %d object(s) (start-up reconciliation removes them once "
                "they are an hour old): %s",
                len(relpaths),
                exc,
            )

    @contextlib.asynccontextmanager
    async def _fetched(self, relpaths: Iterable[str]) -> AsyncIterator[None]:
        async with self.cache.local_all(relpaths):
            yield

    def fetched(self, relpaths: Iterable[str]) -> AbstractAsyncContextManager[None]:
        return self._fetched(relpaths)

    async def reconcile(self, known: set[str], now_s: float) -> list[str]:
        # Locally, streams/ holds only staged segments in this mode: whatever a crash
        # left there goes.
        removed = await asyncio.to_thread(files.sweep_orphans, self.root, set())
        listed = await self.objects.list_objects("streams/")
        orphans = [
            o.relpath
            for o in listed
            if o.relpath not in known and now_s - o.modified_s >= ORPHAN_AGE_S
        ]
        if orphans:
            self.cache.drop(orphans)
            await self.objects.delete(orphans)
        return removed + orphans

    async def reconcile_folders(self, top: str, exists: OwnerExists, now_s: float) -> list[str]:
        # A clip or job deleted while its objects could not be (the bucket unreachable)
        # left them behind; one being cut or analysed on another node has no objects until
        # it is done, but the hour's grace covers a long upload all the same.
        # An owner's folder ("clips/<clip>/...") or its one file ("overlays/<id>.png").
        folders: dict[str, list[str]] = {}
        for o in await self.objects.list_objects(top):
            name, slash, _ = o.relpath.removeprefix(top).partition("/")
            folder = name if slash else name.rpartition(".")[0]
            if folder and now_s - o.modified_s >= ORPHAN_AGE_S:
                folders.setdefault(folder, []).append(o.relpath)
        orphans = [r for f, relpaths in folders.items() if not await exists(f) for r in relpaths]
        if orphans:
            await self.objects.delete(orphans)
        return orphans

    async def keep_folder(self, prefix: str) -> None:
        folder = self.root / prefix
        names = sorted(await asyncio.to_thread(_file_names, folder))
        for name in names:
            # Multipart above the store's part size, so an export of hours goes up in
            # bounded pieces.
            await self.objects.put_file(prefix + name, folder / name)
        # Every node serves the objects; the local copies would only fill this disk.
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def remove_folder(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root / prefix, True)
        try:
            listed = await self.objects.list_objects(prefix)
            if listed:
                relpaths = [o.relpath for o in listed]
                self.cache.drop(relpaths)
                await self.objects.delete(relpaths)
        except OSError as exc:
            metrics.STORAGE_ERRORS.labels("remove").inc()
            log.warning(
                "could not delete the objects under %s (start-up reconciliation removes "
                "them once they are an hour old): %s",
                prefix,
                exc,
            )


def _file_names(folder: Path) -> list[str]:
    """The finished files of a folder (none if it is missing): a `.part` left by a write
    that a crash cut short is not one."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return [e.name for e in entries if e.is_file() and not e.name.endswith(files.TMP_SUFFIX)]
