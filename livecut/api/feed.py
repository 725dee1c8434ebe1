"""Clip state changes fanned out to live views (the event stream), each queue bounded."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from livecut import metrics

QUEUE_SIZE = 256  # changes a subscriber may fall behind before it is told to resync


class Subscription:
    """One listener's backlog: at most `size` changes; past that the backlog is dropped
    and the listener told to read everything afresh, rather than memory growing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending: deque[tuple[str, str]] = deque()
        self._overflowed = False
        self.ready = asyncio.Event()

    def put(self, change: tuple[str, str]) -> None:
        if self._overflowed:
            return
        if len(self._pending) >= self.size:
            self._pending.clear()
            self._overflowed = True
            metrics.EVENT_STREAM_RESYNCS.inc()
        else:
            self._pending.append(change)
        self.ready.set()

    def take(self) -> tuple[list[tuple[str, str]], bool]:
        """The changes since the last take, and whether some were dropped (resync)."""
        changes, resync = list(self._pending), self._overflowed
        self._pending.clear()
        self._overflowed = False
        self.ready.clear()
        return changes, resync


class ClipFeed:
    """Told of every committed clip change by the index (Index.clip_watchers); every
    subscription gets each one as ("clip.<state>" | "clip.deleted", clip id)."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()

    def publish(self, event: str, clip_id: str) -> None:
        for subscription in self._subscriptions:
            subscription.put((event, clip_id))

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription(self.queue_size)
        self._subscriptions.add(subscription)
        metrics.EVENT_STREAMS.inc()
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            metrics.EVENT_STREAMS.dec()

    def __len__(self) -> int:
        return len(self._subscriptions)
