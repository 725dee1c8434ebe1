"""The event stream: clip state changes pushed to browsers as Server-Sent Events.

EventSource cannot send an Authorization header, so a key holder first asks for a
short-lived signed query (POST /v1/events/token) and opens GET /v1/events with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from dataclasses import dataclass

from aiohttp import web

from livecut.api.clips import render_clip
from livecut.api.context import ApiContext, ctx_of, json_body
from livecut.api.signed import EVENTS_SCOPE, SIGNED_QUERY
from livecut.api.validate import Invalid, check_query
from livecut.api.views import absolute

EVENT_STREAM_TYPE = "text/event-stream"
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # how soon EventSource reconnects after the connection drops
TOKEN_EXPIRES_S = 300  # a token only has to open the stream; it may outlive it


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsToken:
    """A signed query that opens the event stream until it expires (no key in the URL)."""

    url: str  # GET it with Accept: text/event-stream (EventSource does)
    query: str
    expires_ms: int


async def create_token(request: web.Request) -> web.Response:
    """POST /v1/events/token: a URL of the event stream that needs no Authorization."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    body = await json_body(request, empty_ok=True)
    if body != {}:
        raise Invalid(["the body must be empty or {}: a token takes no options"], status=422)
    exp = int(ctx.clock()) + TOKEN_EXPIRES_S
    query = ctx.signer.sign(EVENTS_SCOPE, exp).query()
    token = EventsToken(
        url=absolute(ctx.base_url(), f"{EVENTS_SCOPE}?{query}"), query=query, expires_ms=exp * 1000
    )
    return web.json_response(dataclasses.asdict(token))


async def event_stream(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: `clip.<state>` and `clip.deleted` events as they happen, each with
    the clip's JSON as it is when sent; `resync` when the client should read the clip
    list afresh (on connecting, and when it fell too far behind); heartbeat comments."""
    ctx = ctx_of(request)
    check_query(request.query, ("stream", *SIGNED_QUERY))
    if EVENT_STREAM_TYPE not in request.headers.get("Accept", ""):
        raise Invalid(
            [
                f"this route streams Server-Sent Events: send Accept: {EVENT_STREAM_TYPE} "
                "(EventSource does)"
            ],
            status=406,
        )
    stream_id = request.query.get("stream")
    response = web.StreamResponse(
        headers={
            "Content-Type": EVENT_STREAM_TYPE,
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",  # nginx: pass each event on as it comes
        }
    )
    await response.prepare(request)
    sent = 0
    with ctx.clip_feed.subscribe() as subscription, contextlib.suppress(ConnectionResetError):
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        sent = await _send(response, sent, "resync", {"reason": "connected"})
        while not ctx.stopping.is_set():
            woke = await _wait(ctx, subscription.ready, HEARTBEAT_S)
            if not woke:
                await response.write(b": heartbeat\n\n")
                continue
            changes, resync = subscription.take()
            if resync:
                sent = await _send(response, sent, "resync", {"reason": "fell behind"})
            for event, clip_id in changes:
                data = await _clip_data(ctx, event, clip_id, stream_id)
                if data is not None:
                    sent = await _send(response, sent, event, data)
    return response


async def _clip_data(
    ctx: ApiContext, event: str, clip_id: str, stream_id: str | None
) -> dict[str, object] | None:
    if event == "clip.deleted":
        return {"id": clip_id}
    clip = await ctx.store.index.clip(clip_id)
    if clip is None or (stream_id is not None and clip.stream_id != stream_id):
        return None  # deleted since (its own event follows), or another stream's
    return await render_clip(ctx, clip)


async def _send(response: web.StreamResponse, sent: int, event: str, data: object) -> int:
    payload = json.dumps(data, separators=(",", ":"))
    await response.write(f"id: {sent + 1}\nevent: {event}\ndata: {payload}\n\n".encode())
    return sent + 1


async def _wait(ctx: ApiContext, ready: asyncio.Event, timeout_s: float) -> bool:
    """True once `ready` is set; False after timeout_s or when the server stops."""
    waits = [asyncio.ensure_future(ready.wait()), asyncio.ensure_future(ctx.stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    return ready.is_set() and not ctx.stopping.is_set()


EVENT_ROUTES = [
    ("POST", "/v1/events/token", create_token),
    ("GET", "/v1/events", event_stream),
]
