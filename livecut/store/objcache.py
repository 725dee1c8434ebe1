"""Keep local copies of objects within a byte budget, for readers that need real files.

PyAV opens files by path, so a clip cut from media in a bucket reads local copies.
Each object is downloaded once however many readers ask at the same moment; a copy in
use is pinned and never evicted; the least recently used unpinned copies go when the
cache is over its budget. Copies outlive a restart: start() finds them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from livecut.store.objects import check_relpath, is_temp_name

__all__ = ["ObjectSource", "ReadCache"]

log = logging.getLogger(__name__)


class ObjectSource(Protocol):
    """Where missing copies come from (an ObjectStore)."""

    async def fetch_to(self, relpath: str, dest: Path) -> int:
        """Write the object whole to `dest` (or leave no file) and return its size."""
        ...


class ReadCache:
    """A directory of object copies by relpath, at most `max_bytes` of them unpinned."""

    def __init__(self, source: ObjectSource, directory: Path, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes: {max_bytes} is negative; use 0 or more")
        self.source = source
        self.directory = directory
        self.max_bytes = max_bytes
        # Counters for metrics: requests served from disk, requests that started a
        # download, requests that waited for another's download, and what moved.
        self.hits = 0
        self.misses = 0
        self.joins = 0
        self.bytes_downloaded = 0
        self.evictions = 0
        self.bytes_evicted = 0
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._pins: dict[str, int] = {}
        self._downloads: dict[str, asyncio.Task[None]] = {}

    @property
    def bytes_cached(self) -> int:
        return self._bytes

    def __contains__(self, relpath: str) -> bool:
        return relpath in self._sizes

    async def start(self) -> None:
        """Find the copies a previous run left (oldest use first), delete its unfinished
        downloads, and trim to the budget, which may have shrunk."""
        found, removed = await asyncio.to_thread(_scan, self.directory)
        for relpath, size in found:
            self._sizes[relpath] = size
            self._bytes += size
        if removed:
            log.info("read cache %s: removed %d unfinished downloads", self.directory, removed)
        self._evict()

    async def close(self) -> None:
        """Stop downloads in flight; what is on disk stays for the next start()."""
        tasks = list(self._downloads.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def local(self, relpath: str) -> AsyncIterator[Path]:
        """The path of a local copy of the object, downloaded if need be and kept while the
        block runs. A copy larger than the whole budget is served, then evicted."""
        path = self.directory / check_relpath(relpath)
        # Pinned before any await, so no eviction can take the copy from under the caller,
        # not even in the moment between its download finishing and this task resuming.
        self._pins[relpath] = self._pins.get(relpath, 0) + 1
        try:
            if relpath in self._sizes and _touch(path):
                self._sizes.move_to_end(relpath)
                self.hits += 1
            else:
                self._forget(relpath)  # a copy removed behind the cache's back
                task = self._downloads.get(relpath)
                if task is None:
                    self.misses += 1
                    task = asyncio.create_task(self._download(relpath, path))
                    task.add_done_callback(_retrieve)
                    self._downloads[relpath] = task
                else:
                    self.joins += 1
                # The download belongs to the cache: a reader that gives up does not
                # cancel it for the others.
                await asyncio.shield(task)
            yield path
        finally:
            self._unpin(relpath)

    async def _download(self, relpath: str, path: Path) -> None:
        try:
            size = await self.source.fetch_to(relpath, path)
        finally:
            del self._downloads[relpath]
        self.bytes_downloaded += size
        self._sizes[relpath] = size
        self._bytes += size
        self._evict()

    def _unpin(self, relpath: str) -> None:
        count = self._pins[relpath] - 1
        if count:
            self._pins[relpath] = count
            return
        del self._pins[relpath]
        self._evict()

    def _forget(self, relpath: str) -> None:
        size = self._sizes.pop(relpath, None)
        if size is not None:
            self._bytes -= size

    def _evict(self) -> None:
        # Files are unlinked here, in the event loop, not in a thread: a download of the
        # same relpath started right after must never have its new file removed by a
        # late unlink of the old one.
        for relpath in list(self._sizes):
            if self._bytes <= self.max_bytes:
                return
            if relpath in self._pins:
                continue
            size = self._sizes.pop(relpath)
            self._bytes -= size
            with contextlib.suppress(FileNotFoundError):
                (self.directory / relpath).unlink()
            self.evictions += 1
            self.bytes_evicted += size


def _touch(path: Path) -> bool:
    """Mark a copy as just used (its mtime orders copies after a restart); False if gone."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _retrieve(task: asyncio.Task[None]) -> None:
    # Every reader that waited has seen the failure; one that nobody awaited any more
    # must not be reported as "never retrieved".
    if not task.cancelled():
        task.exception()


def _scan(directory: Path) -> tuple[list[tuple[str, int]], int]:
    """(relpath, size) of every copy under `directory`, least recently used first, and the
    number of unfinished downloads removed; empty folders left by evictions go too."""
    directory.mkdir(parents=True, exist_ok=True)
    found: list[tuple[float, str, int]] = []
    removed = 0
    for root, _folders, files in os.walk(directory):
        for name in files:
            full = os.path.join(root, name)
            if is_temp_name(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(full)
                removed += 1
                continue
            stat = os.stat(full)
            relpath = os.path.relpath(full, directory).replace(os.sep, "/")
            found.append((stat.st_mtime, relpath, stat.st_size))
    for root, _folders, _files in os.walk(directory, topdown=False):
        if Path(root) != directory:
            with contextlib.suppress(OSError):  # not empty: it holds copies
                os.rmdir(root)
    found.sort()
    return [(relpath, size) for _mtime, relpath, size in found], removed
