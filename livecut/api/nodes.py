"""GET /v1/nodes: the nodes sharing the index, the streams each records, and their load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from livecut.api.context import ctx_of, now_ms
from livecut.api.validate import check_query
from livecut.nodes import GONE_AFTER_LEASES


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeBody:
    id: str
    url: str | None
    state: str  # alive | gone
    started_ms: int
    seen_ms: int
    streams: list[str]  # whose leases it holds: the streams it records
    load: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class NodesBody:
    index: str  # sqlite | postgresql
    lease_s: float | None  # None: one node, no leases
    nodes: list[NodeBody]


async def list_nodes(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    index = ctx.store.index
    cluster = ctx.config.cluster
    now = now_ms(ctx)
    if cluster.index_url is None:
        # One node: it records every enabled stream and holds no leases.
        body = NodesBody(
            index=index.engine,
            lease_s=None,
            nodes=[
                NodeBody(
                    id=cluster.node_id,
                    url=ctx.base_url(),
                    state="alive",
                    started_ms=ctx.started_ms,
                    seen_ms=now,
                    streams=sorted(ctx.recorders),
                    load=ctx.load(),
                )
            ],
        )
        return web.json_response(dataclasses.asdict(body))
    leases: dict[str, list[str]] = {}
    for lease in await index.cluster.leases():
        if lease.expires_ms >= now:
            leases.setdefault(lease.node_id, []).append(lease.stream_id)
    gone_ms = round(cluster.lease_s * 1000) * GONE_AFTER_LEASES
    nodes = [
        NodeBody(
            id=node.id,
            url=node.url,
            state="alive" if now - node.seen_ms <= gone_ms else "gone",
            started_ms=node.started_ms,
            seen_ms=node.seen_ms,
            streams=sorted(leases.get(node.id, [])),
            load=node.load,
        )
        for node in await index.cluster.nodes()
    ]
    body = NodesBody(index=index.engine, lease_s=cluster.lease_s, nodes=nodes)
    return web.json_response(dataclasses.asdict(body))
