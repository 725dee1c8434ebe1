"""Events into outbox rows: who receives each event, and the exact body each one is sent."""

from __future__ import annotations

import json
from collections.abc import Callable

from livecut.api.views import clip_json, session_json
from livecut.config import WebhooksConfig
from livecut.store.index import Index, new_id
from livecut.store.records import ClipRow, DeliveryRow, SessionRow

CALLBACK = "callback"  # the target name of a clip's own callback_url


class EventBuilder:
    """The index's event hook: called inside the state change's transaction."""

    def __init__(
        self,
        config: WebhooksConfig,
        index: Index,
        *,
        base_url: Callable[[], str],
        clock: Callable[[], float],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.index = index
        self.base_url = base_url
        self.clock = clock
        self.wake = wake

    async def __call__(self, event: str, subject: object) -> list[DeliveryRow]:
        callback_id: str | None = None
        callback_url: str | None = None
        clip_id: str | None = None
        if isinstance(subject, ClipRow):
            clip_id = subject.id
            data = clip_json(
                subject,
                base_url=self.base_url(),
                sessions=await self.index.clip_sessions(subject.id) or None,
            )
            callback_id = _str_or_none(data.get("callback_id"))
            callback_url = _str_or_none(data.get("callback_url"))
        elif isinstance(subject, SessionRow):
            data = session_json(subject)
        elif isinstance(subject, dict):
            data = subject  # an analysis job's body: a shots job may carry its own callback
            callback_id = _str_or_none(data.get("callback_id"))
            callback_url = _str_or_none(data.get("callback_url"))
        else:
            return []
        targets = [(e.name, e.url) for e in self.config.endpoints if event in e.events]
        if callback_url is not None:
            targets.append((CALLBACK, callback_url))
        if not targets:
            return []
        now_ms = int(self.clock() * 1000)
        rows = []
        for name, url in targets:
            delivery_id = new_id("whd")
            body = {
                "id": delivery_id,
                "type": event,
                "created_ms": now_ms,
                "data": data,
                "callback_id": callback_id if name == CALLBACK else None,
            }
            rows.append(
                DeliveryRow(
                    id=delivery_id,
                    target=name,
                    url=url,
                    event=event,
                    clip_id=clip_id,
                    body=json.dumps(body, separators=(",", ":")),
                    created_ms=now_ms,
                    next_ms=now_ms,
                )
            )
        self.wake()
        return rows


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
