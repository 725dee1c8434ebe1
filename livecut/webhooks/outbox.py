"""Delivering the outbox: signed POSTs, retried with backoff and jitter until accepted or too old.

At least once: a delivery is marked delivered only after a 2xx, so a crash between the
POST and the mark sends it again, with the same delivery id, after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from livecut import metrics
from livecut.config import WebhooksConfig
from livecut.store.index import Index
from livecut.store.records import AttemptRow, DeliveryRow
from livecut.webhooks.events import CALLBACK
from livecut.webhooks.signing import HEADER, signature
from livecut.webhooks.targets import PublicOnlyResolver, RefusedTarget, check_callback_url

log = logging.getLogger(__name__)

RETRY_BASE_S = 1.0
RETRY_CAP_S = 3600.0
BATCH = 200
IDLE_S = 5.0
ERROR_MAX = 500


def backoff_s(attempts: int, *, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """Exponential with jitter: between half and all of base * 2^(attempts-1), capped."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return float(ceiling * random.uniform(0.5, 1.0))


class Deliverer:
    """Owns the delivery loop; the daemon starts and stops it."""

    def __init__(
        self,
        config: WebhooksConfig,
        index: Index,
        *,
        user_agent: str,
        clock: Callable[[], float] = time.time,
        retry_base_s: float = RETRY_BASE_S,
    ) -> None:
        self.config = config
        self.index = index
        self.clock = clock
        self.retry_base_s = retry_base_s
        self.user_agent = user_agent
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._trusted: aiohttp.ClientSession | None = None
        self._public: aiohttp.ClientSession | None = None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")
        self._task.add_done_callback(_log_death)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._inflight.clear()
        for session in (self._trusted, self._public):
            if session is not None:
                await session.close()
        self._trusted = self._public = None

    def wake(self) -> None:
        """New rows were committed (or are about to be): look at the outbox again."""
        self._wake.set()

    async def _run(self) -> None:
        # What this node held when it last stopped (or died) goes out again now.
        await self.index.release_deliveries()
        while True:
            self._wake.clear()
            try:
                await self._dispatch_due()
            except Exception:  # the loop must outlive a bad row or a busy database
                log.exception("webhook delivery pass failed; trying again")
            next_ms = await self.index.next_delivery_ms()
            wait_s = IDLE_S if next_ms is None else (next_ms - self._now_ms()) / 1000
            wait_s = min(IDLE_S, max(0.05, wait_s))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands as the event is set (a delivery finishing during stop), and stop hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()

    async def _dispatch_due(self) -> None:
        for row in await self.index.due_deliveries(self._now_ms(), limit=BATCH):
            if row.id in self._inflight:
                continue
            task = asyncio.create_task(self._deliver(row), name=f"webhook:{row.id}")
            self._inflight[row.id] = task
            task.add_done_callback(functools.partial(self._done, row.id))

    def _done(self, delivery_id: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)
        _log_death(task)
        self._wake.set()

    def _secret(self, row: DeliveryRow) -> str | None:
        if row.target == CALLBACK:
            return self.config.secret
        return next((e.secret for e in self.config.endpoints if e.name == row.target), None)

    async def _deliver(self, row: DeliveryRow) -> None:
        limit = self._limits.setdefault(row.url, asyncio.Semaphore(self.config.concurrency))
        async with limit:
            started = self._now_ms()
            began = time.monotonic()
            status, error = await self._post(row)
            latency_ms = round((time.monotonic() - began) * 1000)
        attempt = AttemptRow(
            delivery_id=row.id, at_ms=started, status=status, error=error, latency_ms=latency_ms
        )
        attempts = row.attempts + 1
        if status is not None and 200 <= status < 300:
            await self.index.record_attempt(attempt, state="delivered", next_ms=row.next_ms)
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            metrics.WEBHOOK_LATENCY.observe(max(0.0, (self._now_ms() - row.created_ms) / 1000))
            return
        permanent = error is not None and error.startswith("refused:")
        next_ms = self._now_ms() + round(backoff_s(attempts, base_s=self.retry_base_s) * 1000)
        too_old = next_ms - row.created_ms > self.config.max_age_s * 1000
        if permanent or too_old:
            await self.index.record_attempt(attempt, state="failed", next_ms=next_ms)
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            log.warning(
                "webhook %s (%s) to %s given up after %d attempt(s): %s",
                row.id,
                row.event,
                row.target,
                attempts,
                error or f"HTTP {status}",
            )
            return
        await self.index.record_attempt(attempt, state="pending", next_ms=next_ms)
        metrics.WEBHOOK_DELIVERIES.labels("retry").inc()

    def _session(self, *, public: bool) -> aiohttp.ClientSession:
        """Made on first use: a daemon without webhooks opens no client at all."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        if not public:
            if self._trusted is None:
                self._trusted = aiohttp.ClientSession(timeout=timeout)
            return self._trusted
        if self._public is None:
            # callback_url comes from API callers: resolved names must be public too.
            connector = (
                aiohttp.TCPConnector()
                if self.config.allow_private
                else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
            )
            self._public = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._public

    async def _post(self, row: DeliveryRow) -> tuple[int | None, str | None]:
        secret = self._secret(row)
        if secret is None:
            return None, f"refused: no secret for target {row.target!r} in the config"
        session = self._session(public=row.target == CALLBACK)
        if row.target == CALLBACK:
            try:
                check_callback_url(row.url, allow_private=self.config.allow_private)
            except RefusedTarget as exc:
                return None, f"refused: {exc}"
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            HEADER: signature(secret, body, int(self.clock())),
            "livecut-delivery": row.id,
            "livecut-event": row.event,
        }
        try:
            async with session.post(
                row.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                if 300 <= response.status < 400:
                    return response.status, "redirects are not followed"
                if response.status >= 300:
                    return response.status, f"HTTP {response.status}"
                return response.status, None
        except TimeoutError:
            return None, f"no response within {self.config.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_MAX]


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
