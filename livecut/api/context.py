"""What every API handler shares: the daemon's parts, JSON errors and bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from livecut.api.validate import Invalid
from livecut.clips.jobs import ClipJobs
from livecut.config import Config
from livecut.store.store import Store

if TYPE_CHECKING:
    from livecut.ingest.recorder import Recorder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiContext:
    config: Config
    store: Store
    jobs: ClipJobs
    recorders: Mapping[str, Recorder]
    clock: Callable[[], float]


CTX = web.AppKey("livecut", ApiContext)


def error(status: int, *messages: str, **extra: object) -> web.Response:
    return web.json_response({"errors": list(messages), **extra}, status=status)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def now_ms(ctx: ApiContext) -> int:
    return int(ctx.clock() * 1000)


async def json_body(request: web.Request, *, empty_ok: bool = False) -> object:
    raw = await request.read()
    if not raw.strip() and empty_ok:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid([f"the body is not valid JSON: {exc}"], status=400) from exc
