"""A cap on the segment bytes the daemon holds at once: downloaded, not yet staged."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from livecut import metrics


class ByteBudget:
    """Bytes that bodies being read or waiting for a segment worker may hold together.

    DESIGN (memory under a burst): a daemon that starts with 300 streams, or whose
    origins all publish at once, would otherwise read every listed segment into memory
    together (1.2 GB at 300 streams of 1 MB segments, four downloads each). A download
    takes what its segment is expected to weigh (its rendition's last segment) before
    its request is sent, so one waiting for room holds no connection whose body would
    pile up in the HTTP client's buffers; its share is fitted to the body's real size
    as it arrives, past the cap if it must, and given back once the segment is staged.
    A holder never waits for more, so the budget cannot deadlock. A segment larger
    than the whole cap waits until nothing else is held, then goes alone. Waiters are
    served in order, so a large segment is not starved by small ones. The cap also
    bounds how many downloads run at once (about cap / segment size): with slow
    origins, raise `[ingest] max_buffered_bytes`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int) -> None:
        if not self._waiters and self._fits(size):
            self._add(size)
            return
        metrics.INGEST_BUFFER_WAITS.inc()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(size)  # granted just as it was cancelled
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove((size, waiter))
                self._wake()
            raise

    def grow(self, size: int) -> None:
        """Hold `size` more at once (a body longer than it said, or of unknown length)."""
        self._add(size)

    def give(self, size: int) -> None:
        self._add(-size)
        self._wake()

    def _add(self, size: int) -> None:
        self.held += size
        metrics.INGEST_BUFFERED_BYTES.inc(size)

    def _fits(self, size: int) -> bool:
        return self.held + size <= self.limit or self.held == 0

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._add(size)
            waiter.set_result(None)
