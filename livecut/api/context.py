"""What every API handler shares: the daemon's parts, JSON errors and bodies."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from livecut.api.feed import ClipFeed
from livecut.api.signed import Signer
from livecut.api.validate import Invalid, short
from livecut.clips.jobs import ClipJobs
from livecut.config import Config, StreamConfig
from livecut.reload import ReloadOutcome
from livecut.store.store import Store

if TYPE_CHECKING:
    from livecut.analysis.jobs import AnalysisJobs
    from livecut.ingest.recorder import Recorder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _nothing() -> None:
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiContext:
    config: Config
    store: Store
    jobs: ClipJobs
    recorders: Mapping[str, Recorder]
    # The streams as last (re)loaded; `config` keeps the sections fixed at start-up.
    streams: Callable[[], Sequence[StreamConfig]]
    analysis: AnalysisJobs | None = None  # shots and highlights jobs (absent in bare tests)
    clock: Callable[[], float]
    base_url: Callable[[], str] = lambda: ""  # public base URL for absolute links
    wake_webhooks: Callable[[], None] = lambda: None
    last_reload: Callable[[], ReloadOutcome | None] = lambda: None
    # Signs playback URLs and event-stream tokens (the daemon's is kept in its data dir).
    signer: Signer = field(default_factory=lambda: Signer(secrets.token_bytes(32)))
    # Clip state changes for the event stream; the daemon connects it to the index.
    clip_feed: ClipFeed = field(default_factory=ClipFeed)
    started_ms: int = 0  # when the daemon started (GET /v1/nodes)
    load: Callable[[], dict[str, object]] = dict  # what this node is doing (GET /v1/nodes)
    # Run before /metrics is generated: reads what its collectors report of the index.
    before_scrape: Callable[[], Awaitable[None]] = _nothing
    hlsjs: Path | None = None  # hls.min.js served to the console, when installed
    # Set when the server stops: held playlist reloads and event streams end at once.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


CTX = web.AppKey("livecut", ApiContext)
API_KEY = web.RequestKey("api_key", str)  # the name of the key a request came with


def error(status: int, *messages: str, **extra: object) -> web.Response:
    return web.json_response({"errors": list(messages), **extra}, status=status)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def now_ms(ctx: ApiContext) -> int:
    return int(ctx.clock() * 1000)


JSON_TYPES = ("application/json",)


async def options_body(request: web.Request, allowed: Sequence[str]) -> dict[str, object]:
    """An optional JSON object of options (empty means none), naming any unknown field
    and the allowed ones."""
    body = await json_body(request, empty_ok=True)
    if not isinstance(body, dict):
        raise Invalid(["the body must be a JSON object (or empty)"], status=400)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(
            [
                f"unknown field(s) {', '.join(short(u) for u in unknown[:5])}; "
                f"allowed: {', '.join(allowed) or 'none (send an empty body)'}"
            ]
        )
    return body


async def json_body(request: web.Request, *, empty_ok: bool = False) -> object:
    """The request's JSON body: 415 unless it is labelled JSON, 400 unless it parses cleanly."""
    try:
        raw = await request.read()
    except web.HTTPException:
        raise
    except Exception as exc:  # a body labelled gzip that is not, a broken chunked body
        # Nothing more can be read: end the body here (else aiohttp, draining it after the
        # response, drops the connection before the 400 is sent) and close afterwards.
        request.content.feed_eof()
        invalid = Invalid([f"the body could not be read: {exc}".strip()[:200]], status=400)
        invalid.headers = {"Connection": "close"}
        raise invalid from exc
    if not raw.strip() and empty_ok:
        return {}
    if request.content_type not in JSON_TYPES:
        raise Invalid(
            [f"the body must be application/json, not {request.content_type!r}"], status=415
        )
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid([f"the body is not valid JSON: {exc}"], status=400) from exc
    except RecursionError as exc:
        raise Invalid(["the body is nested too deeply"], status=400) from exc
    except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit limit
        raise Invalid([f"the body is not usable JSON: {str(exc)[:120]}"], status=400) from exc
    problem = _unstorable_text(value)
    if problem:
        raise Invalid([f"the body holds {problem}"], status=400)
    return value


def _unstorable_text(value: object) -> str | None:
    """What in the body's strings no index can store (PostgreSQL's text holds neither), or
    None: refused alike on every engine."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return "a lone UTF-16 surrogate (\\ud800-\\udfff)"
            if "\x00" in item:
                return "a NUL character (\\u0000) in a string"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
