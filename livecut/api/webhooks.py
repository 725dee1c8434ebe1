"""Webhook deliveries and their attempts, as the outbox holds them."""

from __future__ import annotations

from aiohttp import web

from livecut.api.context import ctx_of
from livecut.api.validate import Invalid, check_query, page_limit, short
from livecut.config import WEBHOOK_EVENTS

STATES = ("pending", "delivered", "failed")


async def list_deliveries(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query = request.query
    check_query(query, ("clip", "state", "event", "limit"))
    state = query.get("state")
    if state is not None and state not in STATES:
        raise Invalid([f"state must be one of {', '.join(STATES)}, not {short(state)}"], 400)
    event = query.get("event")
    if event is not None and event not in WEBHOOK_EVENTS:
        raise Invalid(
            [f"event must be one of {', '.join(WEBHOOK_EVENTS)}, not {short(event)}"], 400
        )
    rows = await ctx.store.index.deliveries(
        clip_id=query.get("clip"),
        state=state,
        event=event,
        limit=page_limit(query.get("limit"), default=100),
    )
    return web.json_response(
        {
            "deliveries": [
                {
                    "id": row.id,
                    "event": row.event,
                    "target": row.target,
                    "url": row.url,
                    "clip": row.clip_id,
                    "state": row.state,
                    "created_ms": row.created_ms,
                    "attempts": [
                        {
                            "at_ms": a.at_ms,
                            "status": a.status,
                            "error": a.error,
                            "latency_ms": a.latency_ms,
                        }
                        for a in await ctx.store.index.attempts(row.id)
                    ],
                    "next_attempt_ms": row.next_ms if row.state == "pending" else None,
                    "delivered_ms": row.done_ms if row.state == "delivered" else None,
                    "last_status": row.last_status,
                    "last_error": row.last_error,
                }
                for row in rows
            ]
        }
    )
