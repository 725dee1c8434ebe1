"""SQL of the nodes sharing one index: who is alive, and which node records each stream.

A stream's lease is a row naming its holder and when the lease runs out. The holder
renews it well before then; any node may take a lease that has run out. Every
statement here is a single upsert or update, so two nodes racing for one lease
cannot both win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from livecut.store.sql import Row, Sql


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeRow:
    id: str
    name: str
    url: str | None  # where its API answers, as it says itself
    started_ms: int
    seen_ms: int  # its last heartbeat
    load: dict[str, Any]  # streams recorded, clips running, queue depth, ...


@dataclass(frozen=True, kw_only=True, slots=True)
class LeaseRow:
    stream_id: str
    node_id: str
    acquired_ms: int  # when this holder took it (kept across renewals)
    expires_ms: int


class ClusterIndex:
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    # nodes ---------------------------------------------------------------------
    async def heartbeat(self, node: NodeRow) -> None:
        await self._sql.execute(
            "INSERT INTO nodes (id, name, url, started_ms, seen_ms, load) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url,"
            " started_ms = excluded.started_ms, seen_ms = excluded.seen_ms, load = excluded.load",
            (node.id, node.name, node.url, node.started_ms, node.seen_ms, json.dumps(node.load)),
        )

    async def nodes(self) -> list[NodeRow]:
        rows = await self._sql.fetchall("SELECT * FROM nodes ORDER BY id")
        return [_node(r) for r in rows]

    async def forget_node(self, node_id: str) -> None:
        """A node stopping cleanly: its row and its leases go at once, so others need not
        wait for the leases to run out."""
        async with self._sql.transaction() as tx:
            await tx.execute("DELETE FROM leases WHERE node_id = ?", (node_id,))
            await tx.execute("DELETE FROM nodes WHERE id = ?", (node_id,))

    async def forget_nodes_unseen_since(self, before_ms: int) -> int:
        return await self._sql.execute(
            "DELETE FROM nodes WHERE seen_ms < ? AND NOT EXISTS"
            " (SELECT 1 FROM leases l WHERE l.node_id = nodes.id)",
            (before_ms,),
        )

    # leases --------------------------------------------------------------------
    async def acquire(self, stream_id: str, node_id: str, *, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew a stream's lease: true if `node_id` holds it until now + ttl."""
        row = await self._sql.fetchone(
            "INSERT INTO leases (stream_id, node_id, acquired_ms, expires_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream_id) DO UPDATE SET"
            " acquired_ms = CASE WHEN leases.node_id = excluded.node_id"
            " THEN leases.acquired_ms ELSE excluded.acquired_ms END,"
            " node_id = excluded.node_id, expires_ms = excluded.expires_ms"
            " WHERE leases.node_id = excluded.node_id OR leases.expires_ms < CAST(? AS BIGINT)"
            " RETURNING node_id",
            (stream_id, node_id, now_ms, now_ms + ttl_ms, now_ms),
        )
        return row is not None

    async def release(self, stream_id: str, node_id: str) -> None:
        await self._sql.execute(
            "DELETE FROM leases WHERE stream_id = ? AND node_id = ?", (stream_id, node_id)
        )

    async def leases(self) -> list[LeaseRow]:
        rows = await self._sql.fetchall("SELECT * FROM leases ORDER BY stream_id")
        return [
            LeaseRow(
                stream_id=str(r["stream_id"]),
                node_id=str(r["node_id"]),
                acquired_ms=int(r["acquired_ms"]),
                expires_ms=int(r["expires_ms"]),
            )
            for r in rows
        ]


def _node(r: Row) -> NodeRow:
    return NodeRow(
        id=str(r["id"]),
        name=str(r["name"]),
        url=r["url"],
        started_ms=int(r["started_ms"]),
        seen_ms=int(r["seen_ms"]),
        load=json.loads(r["load"]),
    )
