"""Keep local copies of objects within a byte budget, for readers that need real files.

PyAV opens files by path, so a clip cut from media in a bucket reads local copies.
Each object is downloaded once however many readers ask at the same moment; a copy in
use is pinned and never evicted; the least recently used unpinned copies go when the
cache is over its budget. Copies outlive a restart: start() finds them again.

Objects are written once and never changed under the same relpath (the store names
every segment, init section, clip file and uploaded watermark anew; shot previews are
served, never read through here), so a copy never goes stale: it is either the object's
bytes or absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Final, Protocol

from livecut import metrics
from livecut.store.files import move_into
from livecut.store.objects import check_relpath, is_temp_name

__all__ = ["ObjectSource", "ReadCache"]

log = logging.getLogger(__name__)

# Downloads one local_all() runs at once: enough to hide each GET's latency, few enough
# that a long range does not queue hundreds of requests on the client's connections.
_FETCHES_AT_ONCE: Final = 8


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
        # Dropped while pinned: their files go when the last reader lets go.
        self._dropped: set[str] = set()

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
            await self._ensure(relpath, path)
            yield path
        finally:
            self._unpin(relpath)

    @contextlib.asynccontextmanager
    async def local_all(self, relpaths: Iterable[str]) -> AsyncIterator[dict[str, Path]]:
        """Local copies of several objects, kept while the block runs: all of them are
        pinned at once, and those missing are downloaded a few at a time. Mind the budget:
        copies in use are never evicted, so a block may hold more than max_bytes."""
        wanted = {relpath: self.directory / check_relpath(relpath) for relpath in relpaths}
        for relpath in wanted:
            self._pins[relpath] = self._pins.get(relpath, 0) + 1
        try:
            gate = asyncio.Semaphore(_FETCHES_AT_ONCE)

            async def ensure(relpath: str, path: Path) -> None:
                async with gate:
                    await self._ensure(relpath, path)

            # Hits first and without a task each: a warm cache costs no scheduling.
            missing = [(r, p) for r, p in wanted.items() if not self._hit(r, p)]
            # Every download is waited for, so none is left running unobserved; the first
            # failure is the one raised, as the OSError it is.
            outcomes = await asyncio.gather(
                *(ensure(relpath, path) for relpath, path in missing), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            yield wanted
        finally:
            for relpath in wanted:
                self._unpin(relpath)

    def _hit(self, relpath: str, path: Path) -> bool:
        if relpath in self._sizes and _touch(path):
            self._sizes.move_to_end(relpath)
            self.hits += 1
            metrics.CACHE_REQUESTS.labels("hit").inc()
            return True
        return False

    async def _ensure(self, relpath: str, path: Path) -> None:
        """A copy of a pinned relpath on disk: there already, or downloaded (once)."""
        if self._hit(relpath, path):
            return
        self._forget(relpath)  # a copy removed behind the cache's back
        task = self._downloads.get(relpath)
        if task is None:
            self.misses += 1
            metrics.CACHE_REQUESTS.labels("miss").inc()
            task = asyncio.create_task(self._download(relpath, path))
            task.add_done_callback(_retrieve)
            self._downloads[relpath] = task
        else:
            self.joins += 1
            metrics.CACHE_REQUESTS.labels("join").inc()
        # The download belongs to the cache: a reader that gives up does not cancel it
        # for the others.
        await asyncio.shield(task)

    def adopt(self, relpath: str, path: Path) -> None:
        """Take a file just written as the copy of the object at relpath (moved, on the
        same file system), so the writer's own reads need no download. Raises OSError
        with `path` left where it was if it cannot be moved."""
        dest = self.directory / check_relpath(relpath)
        move_into(path, dest)
        size = dest.stat().st_size
        self._forget(relpath)
        self._dropped.discard(relpath)
        self._sizes[relpath] = size
        self._bytes += size
        self._gauge()
        self._evict()

    def drop(self, relpaths: Iterable[str]) -> None:
        """Forget the copies of objects that were deleted; a copy in use goes when its
        last reader lets go."""
        for relpath in relpaths:
            self._forget(relpath)
            if relpath in self._pins:
                self._dropped.add(relpath)
            else:
                _unlink(self.directory / relpath)
        self._gauge()

    def shed(self, wanted_bytes: int) -> int:
        """Let unpinned copies go, least recently used first, until `wanted_bytes` are
        freed or none is left; returns the bytes freed (for the disk floor)."""
        freed = 0
        for relpath in list(self._sizes):
            if freed >= wanted_bytes:
                break
            if relpath not in self._pins:
                freed += self._let_go(relpath)
        self._gauge()
        return freed

    async def _download(self, relpath: str, path: Path) -> None:
        try:
            size = await self.source.fetch_to(relpath, path)
        finally:
            del self._downloads[relpath]
        self.bytes_downloaded += size
        metrics.CACHE_DOWNLOADED_BYTES.inc(size)
        if relpath in self._dropped:
            return  # deleted meanwhile: served to its readers, then unlinked, never kept
        self._sizes[relpath] = size
        self._bytes += size
        self._gauge()
        self._evict()

    def _unpin(self, relpath: str) -> None:
        count = self._pins[relpath] - 1
        if count:
            self._pins[relpath] = count
            return
        del self._pins[relpath]
        if relpath in self._dropped:
            self._dropped.discard(relpath)
            if relpath not in self._sizes:  # not downloaded or adopted again since
                _unlink(self.directory / relpath)
        self._evict()

    def _forget(self, relpath: str) -> None:
        size = self._sizes.pop(relpath, None)
        if size is not None:
            self._bytes -= size

    def _let_go(self, relpath: str) -> int:
        size = self._sizes.pop(relpath)
        self._bytes -= size
        _unlink(self.directory / relpath)
        self.evictions += 1
        self.bytes_evicted += size
        metrics.CACHE_EVICTED_BYTES.inc(size)
        return size

    def _gauge(self) -> None:
        metrics.CACHE_BYTES.set(self._bytes)

    def _evict(self) -> None:
        # Files are unlinked here, in the event loop, not in a thread: a download of the
        # same relpath started right after must never have its new file removed by a
        # late unlink of the old one.
        for relpath in list(self._sizes):
            if self._bytes <= self.max_bytes:
                return
            if relpath in self._pins:
                continue
            self._let_go(relpath)
        self._gauge()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
