"""The free-disk floor: measure free space, and evict the oldest unpinned segments below it.

With media in a bucket (storage.backend = "s3") the floor protects this node's own disk,
which then holds only the read cache (bounded by storage.s3.cache_bytes), staged
segments and clips being cut: below the floor, unpinned cache copies go, and never a
segment. A segment's row and object are the bucket's to keep; a low local disk says
nothing about them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiofiles.os

from livecut import metrics
from livecut.config import StorageConfig
from livecut.store.records import SegmentRow

if TYPE_CHECKING:
    from livecut.store.store import Store

log = logging.getLogger(__name__)

# Candidates read from the index at a time, oldest first.
EVICT_PAGE = 200
# Evictions, and a floor that cannot be kept, are logged at most this often.
LOG_EVERY_S = 60.0
# How long a reading of the free space stands in for a new one, while well above the floor.
READING_FRESH_S = 1.0

# Ranges (start_ms, end_ms) of a stream that queued, waiting or running jobs will read.
BusyRanges = Callable[[str], Awaitable[list[tuple[int, int]]]]


async def _nothing_busy(_stream_id: str) -> list[tuple[int, int]]:
    return []


@dataclass(frozen=True, kw_only=True, slots=True)
class Disk:
    """The data directory's file system, as statvfs sees it, and the floor kept on it."""

    total_bytes: int
    free_bytes: int  # available to the daemon (f_bavail)
    floor_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Eviction:
    segments: int
    bytes: int
    short_bytes: int  # how far below the floor (plus the write to come) the disk stays


class Space:
    """Keeps the data directory's free space above the floor before every segment write
    (and on the daemon's retention pass), evicting the oldest segments across streams.

    Never evicted: segments an HLS clip or export serves (the clip_segments pins), those
    a queued, waiting or running job reads (`busy`), and the newest
    `keep_live_segments` of each rendition of a live session.
    """

    def __init__(self, store: Store, config: StorageConfig) -> None:
        self.store = store
        self.config = config
        self.busy: BusyRanges = _nothing_busy
        # Whose segments this node's floor may evict: many nodes on local disks each
        # evict only what they record themselves (the rows of the others' are theirs).
        self.evictable: Callable[[str], bool] = lambda _stream_id: True
        self._lock = asyncio.Lock()
        self._warned_s = -LOG_EVERY_S
        self._logged_s = -LOG_EVERY_S
        self._unlogged: dict[str, tuple[int, int]] = {}  # stream -> evicted, not yet logged
        # Bytes that may still be written before the floor, by the last reading less what
        # was written since, and when that reading was taken (monotonic seconds).
        self._headroom = 0
        self._read_s = -math.inf

    async def disk(self) -> Disk:
        # aiofiles: statvfs may block on a network file system; it runs in a thread.
        st = await aiofiles.os.statvfs(self.store.root)
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        disk = Disk(total_bytes=total, free_bytes=free, floor_bytes=self.config.floor_bytes(total))
        metrics.DISK_FREE_BYTES.set(free)
        metrics.DISK_FLOOR_BYTES.set(disk.floor_bytes)
        self._headroom = free - disk.floor_bytes
        self._read_s = time.monotonic()
        return disk

    async def make_room(self, incoming: int = 0) -> Eviction:
        """Evict until `incoming` more bytes leave the floor's free space, or nothing
        more may go. One pass at a time: concurrent writers wait for it, then measure."""
        # Well above the floor by a recent reading: no lock, no thread hop. Every segment
        # write passes here, and serialising them all on one statvfs each is what a busy
        # ingest cannot afford; other programs' use of the disk shows at the next reading.
        if self._headroom > incoming and time.monotonic() - self._read_s < READING_FRESH_S:
            self._headroom -= incoming
            return Eviction(segments=0, bytes=0, short_bytes=0)
        async with self._lock:
            disk = await self.disk()
            short = disk.floor_bytes + incoming - disk.free_bytes
            if short <= 0:
                return Eviction(segments=0, bytes=0, short_bytes=0)
            if self.store.remote is not None:
                return await self._shed_cache(disk, short, incoming)
            segments = freed = 0
            after: tuple[int, int] | None = None
            while short > 0:
                page = await self.store.index.eviction_candidates(
                    keep_live=self.config.keep_live_segments, limit=EVICT_PAGE, after=after
                )
                if not page:
                    break
                doomed: list[tuple[str, SegmentRow]] = []
                planned = short
                # Read afresh for each page: a job may have been submitted meanwhile.
                busy: dict[str, list[tuple[int, int]]] = {}
                for stream_id, segment in page:
                    after = (segment.start_ms, segment.id)  # the next page starts past it
                    if not self.evictable(stream_id):
                        continue
                    if stream_id not in busy:
                        busy[stream_id] = await self.busy(stream_id)
                    ranges = busy[stream_id]
                    if any(segment.start_ms < e and segment.end_ms > b for b, e in ranges):
                        continue
                    doomed.append((stream_id, segment))
                    planned -= segment.size
                    if planned <= 0:
                        break
                if not doomed:
                    continue
                try:
                    await self._evict(doomed)
                except OSError as exc:  # the index itself may not be writable now
                    log.error("the disk floor could not evict: %s", exc)
                    break
                segments += len(doomed)
                freed += sum(s.size for _, s in doomed)
                disk = await self.disk()
                short = disk.floor_bytes + incoming - disk.free_bytes
            if short > 0:
                self._warn_short(disk, short)
            return Eviction(segments=segments, bytes=freed, short_bytes=max(0, short))

    async def _evict(self, doomed: Sequence[tuple[str, SegmentRow]]) -> None:
        # Row first, then file: a crash in between leaves orphan files, which start-up
        # reconciliation removes; never a row that names a missing file.
        inits = await self.store.index.delete_segments([s.id for _, s in doomed])
        # Counted with the rows, before the files go: whoever sees a file gone sees it
        # counted.
        by_stream: dict[str, tuple[int, int]] = {}
        for stream_id, segment in doomed:
            count, size = by_stream.get(stream_id, (0, 0))
            by_stream[stream_id] = (count + 1, size + segment.size)
        for stream_id, (count, size) in sorted(by_stream.items()):
            metrics.EVICTED_SEGMENTS.labels(stream_id).inc(count)
            metrics.EVICTED_BYTES.labels(stream_id).inc(size)
            seen_count, seen_size = self._unlogged.get(stream_id, (0, 0))
            self._unlogged[stream_id] = (seen_count + count, seen_size + size)
        await self.store.remove_files([s.path for _, s in doomed] + inits)
        # Below the floor every segment written evicts one: say so once a minute at most.
        now = time.monotonic()
        if now - self._logged_s >= LOG_EVERY_S:
            self._logged_s = now
            for stream_id, (count, size) in sorted(self._unlogged.items()):
                log.info(
                    "disk floor: evicted %d segment(s), %d bytes, of stream %s before their "
                    "retention",
                    count,
                    size,
                    stream_id,
                )
            self._unlogged.clear()

    async def _shed_cache(self, disk: Disk, short: int, incoming: int) -> Eviction:
        """S3: below the floor, the read cache lets unpinned copies go (they are in the
        bucket); segments are not evicted for want of local disk."""
        remote = self.store.remote
        assert remote is not None
        if remote.cache.shed(short):
            disk = await self.disk()
            short = disk.floor_bytes + incoming - disk.free_bytes
        if short > 0:
            now = time.monotonic()
            if now - self._warned_s >= LOG_EVERY_S:
                self._warned_s = now
                log.warning(
                    "disk floor: %d bytes free, floor %d bytes; %d bytes more cannot be "
                    "freed (the read cache holds %d bytes in use; media is in the bucket "
                    "and is not evicted for the local disk)",
                    disk.free_bytes,
                    disk.floor_bytes,
                    short,
                    remote.cache.bytes_cached,
                )
        return Eviction(segments=0, bytes=0, short_bytes=max(0, short))

    def _warn_short(self, disk: Disk, short: int) -> None:
        now = time.monotonic()
        if now - self._warned_s < LOG_EVERY_S:
            return
        self._warned_s = now
        log.warning(
            "disk floor: %d bytes free, floor %d bytes; %d bytes more cannot be evicted "
            "(pinned by clips and jobs, or among the newest %d segments of a live rendition)",
            disk.free_bytes,
            disk.floor_bytes,
            short,
            self.config.keep_live_segments,
        )
