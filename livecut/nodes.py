"""This node among many: its heartbeat, the streams whose leases it holds, and handing a
stream over to another node when its holder dies or stops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from livecut import metrics
from livecut.config import ClusterConfig
from livecut.store.cluster import NodeRow
from livecut.store.index import Index

log = logging.getLogger(__name__)

# A node is shown as gone once its heartbeat is this many lease periods old, and its
# row removed after FORGET_AFTER_S.
GONE_AFTER_LEASES = 3
FORGET_AFTER_S = 3600


class Node:
    """Holds the leases of the streams this node records.

    Every third of a lease period it renews the leases it holds and tries the ones whose
    holder let them run out. A lease it fails to renew (the index unreachable, or another
    node holding it) stops that stream's recorder before the lease can run out, so two
    nodes never record one stream: the recorder is stopped at two thirds of the lease
    period after the last renewal that succeeded.
    """

    def __init__(
        self,
        index: Index,
        config: ClusterConfig,
        *,
        streams: Callable[[], Sequence[str]],  # the enabled streams, in config order
        record: Callable[[str], Awaitable[None]],
        stop_recording: Callable[[str], Awaitable[None]],
        load: Callable[[], dict[str, Any]],
        url: Callable[[], str | None],
        statuses: Callable[[Sequence[str]], dict[str, dict[str, object]]] = lambda held: {},
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.config = config
        self.streams = streams
        self.record = record
        self.stop_recording = stop_recording
        self.load = load
        self.url = url
        self.statuses = statuses
        self.clock = clock
        self.held: dict[str, int] = {}  # stream -> when its lease was last renewed (ms)
        self.acquired: dict[str, int] = {}  # stream -> when this node took it
        self.started_ms = self._now_ms()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def id(self) -> str:
        return self.config.node_id

    @property
    def lease_ms(self) -> int:
        return round(self.config.lease_s * 1000)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def start(self) -> None:
        """One pass now (so the streams this node can take start recording at once), then
        the loop."""
        await self._pass()
        self._task = asyncio.create_task(self._run(), name="node-leases")
        self._task.add_done_callback(_log_death)

    async def stop(self) -> None:
        """Stop recording and give the leases back at once: another node takes the streams
        over without waiting for them to run out."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for stream_id in list(self.held):
            await self._drop(stream_id, "this node is stopping")
        try:
            await self.index.cluster.forget_node(self.id)
        except OSError as exc:
            log.warning("could not remove node %s from the index: %s", self.id, exc)

    def poke(self) -> None:
        """Run a pass now (the streams configured have changed)."""
        self._wake.set()

    async def _run(self) -> None:
        every_s = self.config.lease_s / 3
        while True:
            self._wake.clear()
            try:
                async with asyncio.timeout(every_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            try:
                await self._pass()
            except Exception:  # the index unreachable: the fence below still holds
                log.exception("lease pass failed; trying again in %.1fs", every_s)
            await self._fence()

    async def _pass(self) -> None:
        now_ms = self._now_ms()
        await self.index.cluster.heartbeat(
            NodeRow(
                id=self.id,
                name=self.id,
                url=self.url(),
                started_ms=self.started_ms,
                seen_ms=now_ms,
                # With the streams it records, their state: any node answers for them.
                load={
                    **self.load(),
                    "streams": sorted(self.held),
                    "recording": self.statuses(sorted(self.held)),
                },
            )
        )
        await self.index.cluster.forget_nodes_unseen_since(now_ms - FORGET_AFTER_S * 1000)
        wanted = list(self.streams())
        for stream_id in [s for s in self.held if s not in wanted]:
            await self._drop(stream_id, "no longer configured")
        share = await self._fair_share(len(wanted), now_ms)
        # Above its share (a node joined), it hands streams over: the newest taken first.
        # The taker resumes from the origin's playlist window, so nothing is lost when
        # that window is longer than a renewal period.
        for stream_id in sorted(self.held, key=self.acquired.__getitem__)[share:]:
            await self._drop(stream_id, f"handed over: this node holds more than {share}")
        for stream_id in wanted:
            if stream_id not in self.held and len(self.held) >= share:
                continue
            now_ms = self._now_ms()
            if await self.index.cluster.acquire(
                stream_id, self.id, now_ms=now_ms, ttl_ms=self.lease_ms
            ):
                first = stream_id not in self.held
                self.held[stream_id] = now_ms
                if first:
                    self.acquired[stream_id] = now_ms
                    log.info("node %s holds stream %s: recording", self.id, stream_id)
                    metrics.LEASE_CHANGES.labels("acquired").inc()
                    await self.record(stream_id)
            elif stream_id in self.held:
                await self._drop(stream_id, "another node holds its lease")
        metrics.LEASES_HELD.set(len(self.held))

    async def _fair_share(self, streams: int, now_ms: int) -> int:
        """The most streams this node should hold: an even share among the nodes whose
        heartbeat is younger than a lease (a dead node's streams are free by then too).
        Shares differ by one at most; while a node holds less than the smaller share,
        the others keep to the smaller one, so it gets its streams."""
        alive = {
            n.id for n in await self.index.cluster.nodes() if n.seen_ms >= now_ms - self.lease_ms
        }
        alive.add(self.id)
        counts = dict.fromkeys(alive, 0)
        for lease in await self.index.cluster.leases():
            if lease.node_id in counts and lease.expires_ms >= now_ms:
                counts[lease.node_id] += 1
        low, high = streams // len(alive), -(-streams // len(alive))
        starving = any(count < low for node, count in counts.items() if node != self.id)
        return low if starving else high

    async def _fence(self) -> None:
        """Stop recording any stream whose lease may run out before the next renewal."""
        limit_ms = self._now_ms() - self.lease_ms * 2 // 3
        for stream_id, renewed_ms in list(self.held.items()):
            if renewed_ms < limit_ms:
                await self._drop(stream_id, "its lease could not be renewed in time")

    async def _drop(self, stream_id: str, why: str) -> None:
        self.held.pop(stream_id, None)
        self.acquired.pop(stream_id, None)
        log.warning("node %s stops recording %s: %s", self.id, stream_id, why)
        metrics.LEASE_CHANGES.labels("lost").inc()
        await self.stop_recording(stream_id)
        try:
            await self.index.cluster.release(stream_id, self.id)
        except OSError as exc:  # it runs out on its own
            log.warning("could not release the lease of %s: %s", stream_id, exc)


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the lease loop died", exc_info=task.exception())
