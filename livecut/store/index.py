"""The index of streams, sessions, renditions, segments, gaps, clips and the webhook
outbox, on SQLite or PostgreSQL: all SQL is here and in its sibling modules."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from livecut.store import schema
from livecut.store.analysis import AnalysisIndex, AnalysisJobRow
from livecut.store.cluster import ClusterIndex
from livecut.store.overlays import OverlayIndex
from livecut.store.records import (
    AttemptRow,
    ClipRow,
    ClipState,
    DeliveryRow,
    GapRow,
    RenditionRow,
    SegmentRow,
    SessionRow,
    media_runs_on,
)
from livecut.store.sql import Engine, IndexFull, Row, Sql, SqliteSql, placeholders, skip_locked

__all__ = [
    "CLIP_CHANNEL",
    "EDGE_CHANNEL",
    "INDEX_FILE",
    "Index",
    "IndexFull",
    "IndexState",
    "StreamUsage",
    "new_id",
]

# The SQLite index, in the data directory (one node; many share a PostgreSQL index).
INDEX_FILE = "index.sqlite3"
# NOTIFY channels: a stream's recording grew or its session ended (payload: the stream);
# a clip changed ("<node> <event> <clip>").
EDGE_CHANNEL = "livecut_edge"
CLIP_CHANNEL = "livecut_clip"
# A webhook delivery claimed by a node is another's to send after this (well past any
# attempt's timeout).
DELIVERY_LEASE_MS = 120_000
# Segments closer than this are one recorded span (origins' PDTs jitter a little).
SPAN_JOIN_MS = 100


# Builds the outbox rows for an event (type, the row it is about); set by the daemon.
EventHook = Callable[[str, object], Awaitable[list[DeliveryRow]]]
# Told of every clip state change once it is committed: ("clip.<state>" | "clip.deleted", id).
ClipWatcher = Callable[[str, str], None]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StreamUsage:
    """What one stream's recorded segments take on disk."""

    stream_id: str
    segments: int
    bytes: int
    pinned_bytes: int  # of segments an HLS clip or export serves
    oldest_ms: int | None
    newest_ms: int | None


class _Unchanged(Exception):
    """A guarded write's condition did not hold: its transaction is rolled back."""


@dataclasses.dataclass(slots=True)
class IndexState:
    """What the metrics report of the index, read before each scrape: a collector cannot
    await a query."""

    live_edges: dict[str, int] = dataclasses.field(default_factory=dict)
    clip_states: dict[str, int] = dataclasses.field(default_factory=dict)
    outbox_depth: int = 0


class Index:
    """One connection, used from the event loop thread only: the single writer."""

    def __init__(self, where: Path | Engine) -> None:
        """An index on a SQLite file (created or brought up to date here), or on an engine
        whose schema `schema.migrate` has already brought up to date."""
        if isinstance(where, Path):
            sqlite = SqliteSql(where)
            schema.migrate_sqlite(sqlite)
            where = sqlite
        self._sql: Engine = where
        self.engine = where.engine
        self.analysis = AnalysisIndex(where, write=self._write)
        self.overlays = OverlayIndex(where)
        self.cluster = ClusterIndex(where)
        # This node's name on rows it claims (clips, deliveries) and on its notices.
        self.node_id = "local"
        # Outbox rows for clip and session events, written in the state change's transaction.
        self.on_event: EventHook | None = None
        # Live views of clips (the console's event stream) follow every change, not only
        # the ones webhooks report.
        self.clip_watchers: list[ClipWatcher] = []

    @classmethod
    def on_postgres(cls, dsn: str) -> Index:
        """An index on PostgreSQL, to be opened (connected and migrated) with open()."""
        from livecut.store.pg import PostgresSql

        return cls(PostgresSql(dsn))

    @classmethod
    async def postgres(cls, dsn: str, *, migrate: bool = True) -> Index:
        index = cls.on_postgres(dsn)
        await index.open(migrate=migrate)
        return index

    async def open(self, *, migrate: bool = True) -> None:
        """Connect, and bring the schema up to date (one node at a time). A SQLite index
        was opened and migrated when it was made."""
        from livecut.store.pg import PostgresSql

        if not isinstance(self._sql, PostgresSql):
            return
        await self._sql.open()
        if not migrate:
            return
        try:
            await schema.migrate_postgres(self._sql)
        except BaseException:
            await self._sql.close()
            raise

    async def schema_version(self) -> int:
        """The version recorded in the index (0: no tables yet)."""
        if "value" not in await self._sql.columns("meta"):
            return 0
        value = await self._sql.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        return 1 if value is None else int(value)

    @property
    def engine_sql(self) -> Engine:
        """The engine itself, for what only it offers (PostgreSQL's LISTEN)."""
        return self._sql

    async def close(self) -> None:
        await self._sql.close()

    async def size_bytes(self) -> int:
        return await self._sql.size_bytes()

    # streams ---------------------------------------------------------------
    async def ensure_stream(self, stream_id: str, url: str, now_ms: int) -> None:
        await self._sql.execute(
            "INSERT INTO streams (id, url, created_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET url = excluded.url",
            (stream_id, url, now_ms),
        )

    # sessions --------------------------------------------------------------
    async def open_session(self, stream_id: str, *, clock: str, started_ms: int) -> SessionRow:
        session_id = new_id("ses")
        opened = SessionRow(
            id=session_id,
            stream_id=stream_id,
            state="live",
            clock="local" if clock == "local" else "origin",
            started_ms=started_ms,
            ended_ms=None,
            end_reason=None,
            live_edge_ms=None,
        )
        await self._write(
            [
                (
                    "INSERT INTO sessions (id, stream_id, state, clock, started_ms, opened) "
                    "VALUES (?, ?, 'live', ?, ?, (SELECT COALESCE(MAX(opened), 0) + 1 "
                    "FROM sessions WHERE stream_id = ?))",
                    (session_id, stream_id, clock, started_ms, stream_id),
                )
            ],
            "session.started",
            opened,
        )
        session = await self.session(session_id)
        assert session is not None
        return session

    async def end_session(self, session_id: str, *, ended_ms: int, reason: str) -> None:
        live = await self.session(session_id)
        ended = (
            None
            if live is None or live.state != "live"
            else dataclasses.replace(live, state="ended", ended_ms=ended_ms, end_reason=reason)
        )
        await self._write(
            [
                (
                    "UPDATE sessions SET state = 'ended', ended_ms = ?, end_reason = ? "
                    "WHERE id = ? AND state = 'live'",
                    (ended_ms, reason, session_id),
                )
            ],
            "session.ended",
            ended,
        )
        if ended is not None:
            await self._notify(self._sql, EDGE_CHANNEL, ended.stream_id)

    async def session(self, session_id: str) -> SessionRow | None:
        row = await self._sql.fetchone("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return None if row is None else _session(row)

    async def live_session(self, stream_id: str) -> SessionRow | None:
        row = await self._sql.fetchone(
            "SELECT * FROM sessions WHERE stream_id = ? AND state = 'live' "
            "ORDER BY started_ms DESC LIMIT 1",
            (stream_id,),
        )
        return None if row is None else _session(row)

    async def live_sessions(self) -> list[SessionRow]:
        """Every session still open, of every stream."""
        rows = await self._sql.fetchall(
            "SELECT * FROM sessions WHERE state = 'live' ORDER BY started_ms"
        )
        return [_session(r) for r in rows]

    async def sessions(self, stream_id: str, *, limit: int = 100) -> list[SessionRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM sessions WHERE stream_id = ? ORDER BY started_ms DESC LIMIT ?",
            (stream_id, limit),
        )
        return [_session(r) for r in rows]

    async def sessions_in_opening_order(self, stream_id: str) -> list[SessionRow]:
        """Every session of a stream, oldest opened first (a clock jump can start earlier)."""
        rows = await self._sql.fetchall(
            "SELECT * FROM sessions WHERE stream_id = ? ORDER BY opened", (stream_id,)
        )
        return [_session(r) for r in rows]

    async def stream_live_edges(self) -> dict[str, int]:
        rows = await self._sql.fetchall(
            "SELECT stream_id, MAX(live_edge_ms) FROM sessions "
            "WHERE live_edge_ms IS NOT NULL GROUP BY stream_id"
        )
        return {r[0]: int(r[1]) for r in rows}

    # renditions ------------------------------------------------------------
    async def add_rendition(
        self,
        session_id: str,
        *,
        name: str,
        uri: str,
        kind: str = "video",
        main: bool = True,
        bandwidth: int | None = None,
        resolution: str | None = None,
        codecs: str | None = None,
        language: str | None = None,
    ) -> RenditionRow:
        await self._sql.execute(
            "INSERT INTO renditions (session_id, name, uri, kind, main, bandwidth,"
            " resolution, codecs, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id, name) DO NOTHING",
            (session_id, name, uri, kind, int(main), bandwidth, resolution, codecs, language),
        )
        row = await self._sql.fetchone(
            "SELECT * FROM renditions WHERE session_id = ? AND name = ?", (session_id, name)
        )
        assert row is not None
        return _rendition(row)

    async def rendition_of(self, rendition_id: int) -> RenditionRow | None:
        row = await self._sql.fetchone("SELECT * FROM renditions WHERE id = ?", (rendition_id,))
        return None if row is None else _rendition(row)

    async def renditions(self, session_id: str) -> list[RenditionRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM renditions WHERE session_id = ? ORDER BY id", (session_id,)
        )
        return [_rendition(r) for r in rows]

    # segments and gaps ------------------------------------------------------
    async def add_segment(
        self,
        *,
        rendition_id: int,
        seq: int,
        epoch: int,
        start_ms: int,
        end_ms: int,
        path: str,
        size: int,
        init_path: str | None,
        ref_pts_s: float,
        keyframes_ms: Iterable[int],
        has_video: bool,
        has_audio: bool,
        indexed_ms: int,
        params: str = "",
        edge_ms: int | None = None,
    ) -> None:
        """Index a stored segment; `edge_ms` is where all its tracks are recorded to (by
        default its end), which clips waiting for the live edge go by."""
        async with self._sql.transaction() as tx:
            series, playback_seq, playback_disc = await self._playback_number(
                tx, rendition_id, epoch=epoch, start_ms=start_ms, end_ms=end_ms, params=params
            )
            segment_id = await tx.scalar(
                "INSERT INTO segments (rendition_id, seq, epoch, start_ms, end_ms, path, size,"
                " init_path, ref_pts_s, keyframes_ms, has_video, has_audio, indexed_ms, params,"
                " playback_seq, playback_disc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    rendition_id,
                    seq,
                    epoch,
                    start_ms,
                    end_ms,
                    path,
                    size,
                    init_path,
                    ref_pts_s,
                    json.dumps(list(keyframes_ms)),
                    int(has_video),
                    int(has_audio),
                    indexed_ms,
                    params,
                    playback_seq,
                    playback_disc,
                ),
            )
            await tx.execute(
                "UPDATE playback_series SET last_segment_id = ? WHERE stream_id = ? AND name = ?",
                (segment_id, *series),
            )
            await tx.execute(
                "UPDATE sessions SET"
                " live_edge_ms = GREATEST(COALESCE(live_edge_ms, 0), CAST(? AS BIGINT)),"
                " tracks_edge_ms = GREATEST(COALESCE(tracks_edge_ms, 0), CAST(? AS BIGINT)) "
                "WHERE id = (SELECT session_id FROM renditions WHERE id = ? AND main = 1)",
                (end_ms, end_ms if edge_ms is None else edge_ms, rendition_id),
            )
            await self._extend_span(tx, rendition_id, start_ms, end_ms)
            await self._notify(tx, EDGE_CHANNEL, series[0])

    async def _playback_number(
        self, db: Sql, rendition_id: int, *, epoch: int, start_ms: int, end_ms: int, params: str
    ) -> tuple[tuple[str, str], int, int]:
        """The segment's playback series (stream, rendition name), its next number there,
        and its discontinuity count: one more than the last segment's when the media does
        not run on from it (vod_playlist's rule for EXT-X-DISCONTINUITY, recorded gaps
        between the two included)."""
        owner = await db.fetchone(
            "SELECT r.name, s.stream_id FROM renditions r JOIN sessions s ON s.id = r.session_id "
            "WHERE r.id = ?",
            (rendition_id,),
        )
        assert owner is not None
        stream_id, name = str(owner["stream_id"]), str(owner["name"])
        last = await db.fetchone(
            "SELECT last_seq, last_disc, last_segment_id FROM playback_series "
            "WHERE stream_id = ? AND name = ?",
            (stream_id, name),
        )
        if last is None:
            number, disc = 1, 0
        else:
            previous = await db.fetchone(
                "SELECT * FROM segments WHERE id = ?", (last["last_segment_id"],)
            )
            incoming = SegmentRow(
                id=-1,
                rendition_id=rendition_id,
                seq=-1,
                epoch=epoch,
                start_ms=start_ms,
                end_ms=end_ms,
                path="",
                size=0,
                init_path=None,
                ref_pts_s=0.0,
                params=params,
            )
            runs_on = (
                previous is not None
                and media_runs_on(_segment(previous), incoming)
                and await db.scalar(
                    "SELECT 1 FROM gaps WHERE rendition_id = ? AND start_ms < ? AND end_ms > ? "
                    "LIMIT 1",
                    (rendition_id, start_ms, int(previous["end_ms"])),
                )
                is None
            )
            number, disc = int(last["last_seq"]) + 1, int(last["last_disc"]) + (not runs_on)
        await db.execute(
            "INSERT INTO playback_series (stream_id, name, last_seq, last_disc, last_segment_id)"
            " VALUES (?, ?, ?, ?, 0) ON CONFLICT (stream_id, name) DO UPDATE SET"
            " last_seq = excluded.last_seq, last_disc = excluded.last_disc",
            (stream_id, name, number, disc),
        )
        return (stream_id, name), number, disc

    async def _extend_span(self, db: Sql, rendition_id: int, start_ms: int, end_ms: int) -> None:
        last = await db.fetchone(
            "SELECT id, start_ms, end_ms FROM spans WHERE rendition_id = ? "
            "ORDER BY end_ms DESC LIMIT 1",
            (rendition_id,),
        )
        if last is not None and last["start_ms"] <= start_ms <= last["end_ms"] + SPAN_JOIN_MS:
            await db.execute(
                "UPDATE spans SET end_ms = GREATEST(end_ms, CAST(? AS BIGINT)) WHERE id = ?",
                (end_ms, last["id"]),
            )
        else:
            await db.execute(
                "INSERT INTO spans (rendition_id, start_ms, end_ms) VALUES (?, ?, ?)",
                (rendition_id, start_ms, end_ms),
            )

    async def timeline(
        self, stream_id: str, from_ms: int, to_ms: int, *, limit: int
    ) -> tuple[list[tuple[int, int, str]], list[GapRow]]:
        """Recorded spans (start, end, session) and gaps of the main renditions in a window."""
        spans = await self._sql.fetchall(
            "SELECT sp.start_ms, sp.end_ms, r.session_id FROM spans sp "
            "JOIN renditions r ON r.id = sp.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 AND sp.start_ms < ? AND sp.end_ms > ? "
            "ORDER BY sp.start_ms LIMIT ?",
            (stream_id, to_ms, from_ms, limit),
        )
        gaps = await self._sql.fetchall(
            "SELECT g.* FROM gaps g JOIN renditions r ON r.id = g.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 AND g.start_ms < ? AND g.end_ms > ? "
            "ORDER BY g.start_ms LIMIT ?",
            (stream_id, to_ms, from_ms, limit),
        )
        return [(int(r[0]), int(r[1]), str(r[2])) for r in spans], [_gap(g) for g in gaps]

    async def has_segment(self, rendition_id: int, seq: int) -> bool:
        return (
            await self._sql.scalar(
                "SELECT 1 FROM segments WHERE rendition_id = ? AND seq = ?", (rendition_id, seq)
            )
            is not None
        )

    async def last_segment(self, rendition_id: int) -> SegmentRow | None:
        row = await self._sql.fetchone(
            "SELECT * FROM segments WHERE rendition_id = ? ORDER BY seq DESC LIMIT 1",
            (rendition_id,),
        )
        return None if row is None else _segment(row)

    async def rendition_segments(self, rendition_id: int) -> list[SegmentRow]:
        """Every segment of one rendition, in media-sequence order."""
        rows = await self._sql.fetchall(
            "SELECT * FROM segments WHERE rendition_id = ? ORDER BY seq", (rendition_id,)
        )
        return [_segment(r) for r in rows]

    async def indexed_times(self, rendition_id: int) -> dict[int, int]:
        """seq -> when each segment of a rendition was indexed (Unix ms), for lag checks."""
        rows = await self._sql.fetchall(
            "SELECT seq, indexed_ms FROM segments WHERE rendition_id = ?", (rendition_id,)
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def rendition_gaps(self, rendition_id: int) -> list[GapRow]:
        """Every gap of one rendition (zero-length ones included), in the order recorded."""
        rows = await self._sql.fetchall(
            "SELECT * FROM gaps WHERE rendition_id = ? ORDER BY id", (rendition_id,)
        )
        return [_gap(r) for r in rows]

    async def add_gap(self, gap: GapRow) -> None:
        await self._sql.execute(
            "INSERT INTO gaps (rendition_id, start_ms, end_ms, first_seq, last_seq, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                gap.rendition_id,
                gap.start_ms,
                gap.end_ms,
                gap.first_seq,
                gap.last_seq,
                gap.reason,
            ),
        )

    async def gaps(self, rendition_ids: Sequence[int], start_ms: int, end_ms: int) -> list[GapRow]:
        if not rendition_ids:
            return []
        marks = placeholders(len(rendition_ids))
        rows = await self._sql.fetchall(
            f"SELECT * FROM gaps WHERE rendition_id IN ({marks}) AND start_ms < ? AND end_ms > ? "
            "ORDER BY start_ms",
            (*rendition_ids, end_ms, start_ms),
        )
        return [_gap(r) for r in rows]

    async def stream_segments(
        self,
        stream_id: str,
        start_ms: int,
        end_ms: int,
        *,
        session_id: str | None = None,
        rendition: str | None = None,
        kind: str | None = None,
    ) -> list[SegmentRow]:
        """Segments overlapping [start_ms, end_ms) of one rendition per session.

        That rendition is the named one, else the first of the given kind, else the
        session's main (video) rendition.
        """
        params: tuple[str, ...] = ()
        if rendition is not None:
            which, params = "r.name = ?", (rendition,)
        elif kind is not None:
            which = "r.id = (SELECT MIN(id) FROM renditions WHERE session_id = s.id AND kind = ?)"
            params = (kind,)
        else:
            which = "r.main = 1"
        rows = await self._sql.fetchall(
            "SELECT seg.* FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            f"WHERE s.stream_id = ? AND (CAST(? AS TEXT) IS NULL OR s.id = ?) AND {which} "
            "AND seg.start_ms < ? AND seg.end_ms > ? "
            "ORDER BY seg.start_ms, seg.id",
            (stream_id, session_id, session_id, *params, end_ms, start_ms),
        )
        return [_segment(r) for r in rows]

    async def recorded_spans(self, stream_id: str) -> list[tuple[int, int]]:
        """Every contiguous recorded stretch of the stream's main renditions (the timeline's
        spans, so a session with holes counts as several)."""
        rows = await self._sql.fetchall(
            "SELECT sp.start_ms, sp.end_ms FROM spans sp "
            "JOIN renditions r ON r.id = sp.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 ORDER BY sp.start_ms",
            (stream_id,),
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def playback_window(self, stream_id: str, name: str, since_ms: int) -> list[SegmentRow]:
        """The newest segments of a playback series (rendition `name` of the stream, across
        sessions) whose numbers run on by one, back to since_ms at most: what a live
        playlist may list. A segment kept by a clip where its neighbours were removed
        is left out with everything before it."""
        rows = await self._sql.fetchall(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.name = ? AND seg.playback_seq IS NOT NULL "
            "AND seg.end_ms > ? ORDER BY seg.playback_seq",
            (stream_id, name, since_ms),
        )
        segments = [_segment(r) for r in rows]
        first = len(segments) - 1
        while first > 0 and segments[first - 1].playback_seq == _number(segments[first]) - 1:
            first -= 1
        return segments[max(first, 0) :]

    async def stream_segment(self, stream_id: str, segment_id: int) -> SegmentRow | None:
        """One stored segment of a stream, by id (None once removed, or of another stream)."""
        row = await self._sql.fetchone(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id WHERE seg.id = ? AND s.stream_id = ?",
            (segment_id, stream_id),
        )
        return None if row is None else _segment(row)

    async def rendition_gaps_between(
        self, stream_id: str, name: str, start_ms: int, end_ms: int
    ) -> list[GapRow]:
        """Gaps of rendition `name` of the stream, in any session, overlapping a range."""
        rows = await self._sql.fetchall(
            "SELECT g.* FROM gaps g JOIN renditions r ON r.id = g.rendition_id "
            "JOIN sessions s ON s.id = r.session_id WHERE s.stream_id = ? AND r.name = ? "
            "AND g.start_ms < ? AND g.end_ms > ? ORDER BY g.start_ms",
            (stream_id, name, end_ms, start_ms),
        )
        return [_gap(r) for r in rows]

    async def segments_before(
        self, stream_id: str, cutoff_ms: int, *, limit: int, from_ms: int | None = None
    ) -> list[SegmentRow]:
        """Retention's candidates, oldest first: old segments that no HLS clip serves,
        starting at or after from_ms if given."""
        rows = await self._sql.fetchall(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND seg.end_ms <= ? AND seg.start_ms >= ? "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id) "
            "ORDER BY seg.start_ms LIMIT ?",
            (stream_id, cutoff_ms, -(2**62) if from_ms is None else from_ms, limit),
        )
        return [_segment(r) for r in rows]

    async def delete_segments(self, segment_ids: Sequence[int]) -> list[str]:
        """Delete segment rows; returns the init sections no remaining segment uses, whose
        files may go with them."""
        if not segment_ids:
            return []
        marks = placeholders(len(segment_ids))
        async with self._sql.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT rendition_id, init_path, start_ms FROM segments "
                f"WHERE id IN ({marks}) ORDER BY start_ms",
                tuple(segment_ids),
            )
            await tx.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i in segment_ids])
            for row in rows:
                await self._cut_span(tx, int(row["rendition_id"]), int(row["start_ms"]))
            inits = {str(r["init_path"]) for r in rows if r["init_path"]}
            unused = []
            for path in sorted(inits):
                if await tx.scalar("SELECT 1 FROM segments WHERE init_path = ? LIMIT 1", (path,)):
                    continue
                unused.append(path)
            return unused

    async def eviction_candidates(
        self, *, keep_live: int, limit: int, after: tuple[int, int] | None = None
    ) -> list[tuple[str, SegmentRow]]:
        """(stream, segment), oldest first across every stream, that the disk floor may
        evict: none an HLS clip or export serves, nor the newest `keep_live` of each
        rendition of a live session. `after` is the (start_ms, id) of the last one seen."""
        start_ms, last_id = after if after is not None else (-(2**63), -1)
        rows = await self._sql.fetchall(
            "SELECT seg.*, s.stream_id AS stream_id FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE (seg.start_ms, seg.id) > (?, ?) "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id) "
            "AND NOT (s.state = 'live' AND seg.seq >= COALESCE((SELECT x.seq FROM segments x "
            "WHERE x.rendition_id = seg.rendition_id ORDER BY x.seq DESC LIMIT 1 OFFSET ?), -1)) "
            "ORDER BY seg.start_ms, seg.id LIMIT ?",
            (start_ms, last_id, keep_live - 1, limit),
        )
        return [(str(r["stream_id"]), _segment(r)) for r in rows]

    async def storage_usage(self) -> list[StreamUsage]:
        """Segments, bytes, pinned bytes and recorded reach of every stream with media."""
        rows = await self._sql.fetchall(
            "SELECT s.stream_id, COUNT(seg.id), COALESCE(SUM(seg.size), 0), "
            "COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM clip_segments cs "
            "WHERE cs.segment_id = seg.id) THEN seg.size ELSE 0 END), 0), "
            "MIN(seg.start_ms), MAX(seg.end_ms) "
            "FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id GROUP BY s.stream_id ORDER BY s.stream_id"
        )
        return [
            StreamUsage(
                stream_id=str(r[0]),
                segments=int(r[1]),
                bytes=int(r[2]),
                pinned_bytes=int(r[3]),
                oldest_ms=None if r[4] is None else int(r[4]),
                newest_ms=None if r[5] is None else int(r[5]),
            )
            for r in rows
        ]

    async def bytes_in_ranges(self, stream_id: str, ranges: Sequence[tuple[int, int]]) -> int:
        """Bytes of a stream's segments overlapping any range that no HLS clip pins already
        (what queued, waiting and running jobs hold on to)."""
        if not ranges:
            return 0
        overlaps = " OR ".join("(seg.start_ms < ? AND seg.end_ms > ?)" for _ in ranges)
        value = await self._sql.scalar(
            "SELECT COALESCE(SUM(seg.size), 0) FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            f"WHERE s.stream_id = ? AND ({overlaps}) "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id)",
            (stream_id, *(v for start, end in ranges for v in (end, start))),
        )
        return int(value or 0)

    async def _cut_span(self, db: Sql, rendition_id: int, removed_start_ms: int) -> None:
        """After a segment starting at `removed_start_ms` is deleted: the span that held
        it becomes what remains on either side (none, one or two spans), each from its
        first remaining segment's start to its last one's end."""
        span = await db.fetchone(
            "SELECT id, start_ms, end_ms FROM spans WHERE rendition_id = ? "
            "AND end_ms >= ? AND start_ms <= ? ORDER BY end_ms LIMIT 1",
            (rendition_id, removed_start_ms, removed_start_ms),
        )
        if span is None:
            return
        await db.execute("DELETE FROM spans WHERE id = ?", (span["id"],))
        for where, low, high in (
            ("start_ms >= ? AND start_ms < ?", span["start_ms"], removed_start_ms),
            ("start_ms > ? AND start_ms <= ?", removed_start_ms, span["end_ms"]),
        ):
            first = await db.scalar(
                f"SELECT start_ms FROM segments WHERE rendition_id = ? AND {where} "
                "ORDER BY start_ms LIMIT 1",
                (rendition_id, low, high),
            )
            if first is None:
                continue
            last_end = await db.scalar(
                f"SELECT end_ms FROM segments WHERE rendition_id = ? AND {where} "
                "ORDER BY start_ms DESC LIMIT 1",
                (rendition_id, low, high),
            )
            await db.execute(
                "INSERT INTO spans (rendition_id, start_ms, end_ms) VALUES (?, ?, ?)",
                (rendition_id, int(first), int(last_end)),
            )

    async def forget_emptied(self, stream_id: str, cutoff_ms: int) -> int:
        """Drop ended sessions older than cutoff whose segments are all gone."""
        return await self._sql.execute(
            "DELETE FROM sessions WHERE stream_id = ? AND state = 'ended' AND "
            "COALESCE(live_edge_ms, started_ms) <= ? AND NOT EXISTS (SELECT 1 FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id WHERE r.session_id = sessions.id)",
            (stream_id, cutoff_ms),
        )

    async def parameter_segment(self, segment: SegmentRow) -> SegmentRow | None:
        """The latest video segment of the same rendition and epoch, at or before this
        one, whose codec parameters could be read: where a run that starts without its
        own parameter sets (an open GOP's later segments, with x264) finds them."""
        row = await self._sql.fetchone(
            "SELECT * FROM segments WHERE rendition_id = ? AND epoch = ? AND seq <= ? "
            "AND params != '' AND has_video = 1 ORDER BY seq DESC LIMIT 1",
            (segment.rendition_id, segment.epoch, segment.seq),
        )
        return None if row is None else _segment(row)

    async def first_segment_start(self, session_id: str) -> int | None:
        value = await self._sql.scalar(
            "SELECT MIN(seg.start_ms) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id WHERE r.session_id = ?",
            (session_id,),
        )
        return None if value is None else int(value)

    async def rendition_segment_counts(self, session_id: str) -> dict[int, int]:
        rows = await self._sql.fetchall(
            "SELECT seg.rendition_id, COUNT(*) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id WHERE r.session_id = ? GROUP BY seg.rendition_id",
            (session_id,),
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def segment_counts(self) -> dict[str, int]:
        rows = await self._sql.fetchall(
            "SELECT s.stream_id, COUNT(seg.id) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            "GROUP BY s.stream_id"
        )
        return {r[0]: int(r[1]) for r in rows}

    async def all_media_paths(self) -> set[str]:
        paths = {str(r[0]) for r in await self._sql.fetchall("SELECT path FROM segments")}
        inits = await self._sql.fetchall("SELECT DISTINCT init_path FROM segments")
        return paths | {str(r[0]) for r in inits if r[0]}

    # clips -----------------------------------------------------------------
    async def add_clip(
        self,
        clip: ClipRow,
        *,
        sessions: Sequence[str] = (),
        idempotency: tuple[str, str] | None = None,  # (key, sha256 of the body)
        lease_until_ms: int | None = None,  # the job is this node's until then
        jobs: Sequence[AnalysisJobRow] = (),  # what the clip asked for: its shots job
    ) -> None:
        """The clip and the jobs that wait for it, in one transaction: a crash between them
        cannot leave a clip whose shots were asked for and never come."""
        async with self._sql.transaction() as tx:
            await self._insert_clip(tx, clip)
            for job in jobs:
                await self.analysis.insert_job(tx, job)
            if lease_until_ms is not None:
                await tx.execute(
                    "UPDATE clips SET node_id = ?, lease_ms = ? WHERE id = ?",
                    (self.node_id, lease_until_ms, clip.id),
                )
                await tx.executemany(
                    "UPDATE analysis_jobs SET node_id = ?, lease_ms = ? WHERE id = ?",
                    [(self.node_id, lease_until_ms, job.id) for job in jobs],
                )
            await tx.executemany(
                "INSERT INTO clip_sessions (clip_id, session_id) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                [(clip.id, s) for s in sessions],
            )
            if idempotency is not None:
                await tx.execute(
                    "INSERT INTO idempotency_keys (key, body_sha256, clip_id, created_ms) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                    "body_sha256 = excluded.body_sha256, clip_id = excluded.clip_id, "
                    "created_ms = excluded.created_ms",
                    (idempotency[0], idempotency[1], clip.id, clip.created_ms),
                )

    async def _insert_clip(self, db: Sql, clip: ClipRow) -> None:
        await db.execute(
            "INSERT INTO clips (id, stream_id, session_id, name, state, start_ms, end_ms,"
            " created_ms, updated_ms, error, result, options)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                clip.id,
                clip.stream_id,
                clip.session_id,
                clip.name,
                clip.state,
                clip.start_ms,
                clip.end_ms,
                clip.created_ms,
                clip.updated_ms,
                clip.error,
                None if clip.result is None else json.dumps(clip.result),
                None if clip.options is None else json.dumps(clip.options),
            ),
        )

    async def update_clip(
        self,
        clip_id: str,
        *,
        state: ClipState,
        now_ms: int,
        error: str | None = None,
        result: dict[str, object] | None = None,
        held_by: str | None = None,
    ) -> bool:
        """A clip's state change. `held_by`: only while that node holds the clip (many
        nodes: one that stalled and was taken over must not overwrite the new holder's
        work); False if it does not, and nothing is written."""
        before = await self.clip(clip_id) if state in ("ready", "failed") else None
        after = (
            None
            if before is None
            else dataclasses.replace(
                before,
                state=state,
                updated_ms=now_ms,
                error=error,
                result=result if result is not None else before.result,
            )
        )
        held = "" if held_by is None else " AND node_id = ?"
        written = await self._write(
            [
                (
                    "UPDATE clips SET state = ?, updated_ms = ?, error = ?, "
                    f"result = COALESCE(?, result) WHERE id = ?{held}",
                    (
                        state,
                        now_ms,
                        error,
                        None if result is None else json.dumps(result),
                        clip_id,
                        *(() if held_by is None else (held_by,)),
                    ),
                )
            ],
            f"clip.{state}",
            after,
            guarded=held_by is not None,
        )
        if written:
            await self._tell_clip_watchers(f"clip.{state}", clip_id)
        return written

    async def clip(self, clip_id: str) -> ClipRow | None:
        row = await self._sql.fetchone("SELECT * FROM clips WHERE id = ?", (clip_id,))
        return None if row is None else _clip(row)

    async def clips(
        self,
        *,
        after: tuple[int, str] | None,
        limit: int,
        stream: str | None = None,
        session: str | None = None,
        state: str | None = None,
        created_after: int | None = None,
    ) -> list[ClipRow]:
        """Newest first; `after` is the (created_ms, id) of the last clip of the previous page."""
        where: list[str] = []
        params: list[object] = []
        if after is not None:
            where.append("(created_ms, id) < (?, ?)")
            params += [after[0], after[1]]
        if stream is not None:
            where.append("stream_id = ?")
            params.append(stream)
        if session is not None:
            where.append(
                "(session_id = ? OR id IN (SELECT clip_id FROM clip_sessions WHERE session_id = ?))"
            )
            params += [session, session]
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if created_after is not None:
            where.append("created_ms > ?")
            params.append(created_after)
        sql = "SELECT * FROM clips"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._sql.fetchall(
            sql + " ORDER BY created_ms DESC, id DESC LIMIT ?", (*params, limit)
        )
        return [_clip(r) for r in rows]

    async def clip_sessions(self, clip_id: str) -> list[str]:
        rows = await self._sql.fetchall(
            "SELECT session_id FROM clip_sessions WHERE clip_id = ? ORDER BY session_id",
            (clip_id,),
        )
        return [str(r[0]) for r in rows]

    async def idempotent_clip(self, key: str, since_ms: int) -> tuple[str, str] | None:
        """(body sha256, clip id) stored under an Idempotency-Key since `since_ms`."""
        row = await self._sql.fetchone(
            "SELECT body_sha256, clip_id FROM idempotency_keys WHERE key = ? AND created_ms >= ?",
            (key, since_ms),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def forget_idempotency_keys(self, before_ms: int) -> None:
        await self._sql.execute("DELETE FROM idempotency_keys WHERE created_ms < ?", (before_ms,))

    # webhook outbox ------------------------------------------------------------
    async def _write(
        self,
        statements: Sequence[tuple[str, tuple[object, ...]]],
        event: str,
        subject: object,
        *,
        guarded: bool = False,
    ) -> bool:
        """A state change and the outbox rows reporting it (`subject` as it will be), in one
        transaction; without rows, the statements alone, as before webhooks existed.
        `guarded`: the first statement carries a condition; if it changes no row, nothing
        is written (False)."""
        rows = (
            await self.on_event(event, subject)
            if self.on_event is not None and subject is not None
            else []
        )
        if not rows and not guarded:
            for sql, params in statements:
                await self._sql.execute(sql, params)
            return True
        try:
            async with self._sql.transaction() as tx:
                for n, (sql, params) in enumerate(statements):
                    if not await tx.execute(sql, params) and guarded and n == 0:
                        raise _Unchanged
                for row in rows:
                    await self._insert_delivery(tx, row)
        except _Unchanged:
            return False
        return True

    async def _insert_delivery(self, db: Sql, row: DeliveryRow) -> None:
        await db.execute(
            "INSERT INTO webhook_deliveries (id, target, url, event, clip_id, body,"
            " created_ms, state, attempts, next_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                row.id,
                row.target,
                row.url,
                row.event,
                row.clip_id,
                row.body,
                row.created_ms,
                row.state,
                row.attempts,
                row.next_ms,
            ),
        )

    async def add_deliveries(self, rows: Sequence[DeliveryRow]) -> None:
        """Events with no index row of their own (a stream's state) go straight in."""
        async with self._sql.transaction() as tx:
            for row in rows:
                await self._insert_delivery(tx, row)

    async def due_deliveries(
        self, now_ms: int, *, limit: int, lease_ms: int = DELIVERY_LEASE_MS
    ) -> list[DeliveryRow]:
        """Claim the pending deliveries that are due for this node, for lease_ms: no other
        node sends one of them until this node records its attempt or the lease runs out."""
        rows = await self._sql.fetchall(
            "UPDATE webhook_deliveries SET node_id = ?, lease_ms = ? WHERE id IN"
            " (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_ms <= ?"
            " AND (lease_ms IS NULL OR lease_ms < ?)"
            f" ORDER BY next_ms LIMIT ?{skip_locked(self._sql)}) RETURNING *",
            (self.node_id, now_ms + lease_ms, now_ms, now_ms, limit),
        )
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.next_ms, d.id))

    async def release_deliveries(self) -> None:
        """A node starting: what it held before a restart is free to send again at once."""
        await self._sql.execute(
            "UPDATE webhook_deliveries SET node_id = NULL, lease_ms = NULL"
            " WHERE node_id = ? AND state = 'pending'",
            (self.node_id,),
        )

    async def next_delivery_ms(self) -> int | None:
        value = await self._sql.scalar(
            "SELECT MIN(next_ms) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return None if value is None else int(value)

    async def record_attempt(
        self,
        attempt: AttemptRow,
        *,
        state: str,
        next_ms: int,
    ) -> None:
        """One attempt and the delivery's new state, together."""
        async with self._sql.transaction() as tx:
            await tx.execute(
                "INSERT INTO webhook_attempts (delivery_id, at_ms, status, error, latency_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    attempt.delivery_id,
                    attempt.at_ms,
                    attempt.status,
                    attempt.error,
                    attempt.latency_ms,
                ),
            )
            await tx.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_ms = ?,"
                " node_id = NULL, lease_ms = NULL,"
                " last_status = ?, last_error = ?,"
                " done_ms = CASE WHEN CAST(? AS TEXT) = 'pending' THEN NULL"
                " ELSE CAST(? AS BIGINT) END"
                " WHERE id = ?",
                (
                    state,
                    next_ms,
                    attempt.status,
                    attempt.error,
                    state,
                    attempt.at_ms + attempt.latency_ms,
                    attempt.delivery_id,
                ),
            )

    async def deliveries(
        self,
        *,
        clip_id: str | None = None,
        state: str | None = None,
        event: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRow]:
        where: list[str] = []
        params: list[object] = []
        for column, value in (("clip_id", clip_id), ("state", state), ("event", event)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM webhook_deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._sql.fetchall(
            sql + " ORDER BY created_ms DESC, id LIMIT ?", (*params, limit)
        )
        return [_delivery(r) for r in rows]

    async def attempts(self, delivery_id: str) -> list[AttemptRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY at_ms",
            (delivery_id,),
        )
        return [
            AttemptRow(
                delivery_id=r["delivery_id"],
                at_ms=r["at_ms"],
                status=r["status"],
                error=r["error"],
                latency_ms=r["latency_ms"],
            )
            for r in rows
        ]

    async def outbox_depth(self) -> int:
        return int(
            await self._sql.scalar(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'"
            )
            or 0
        )

    async def claim_clips(
        self, *, now_ms: int, until_ms: int, limit: int, own: bool = False
    ) -> list[ClipRow]:
        """Unfinished clips that no live node holds (never claimed, or their holder's
        lease run out; with `own`, this node's own from before a restart too), oldest
        first: this node's until until_ms. Concurrent claims on PostgreSQL pass over each
        other's rows."""
        mine = " OR node_id = ?" if own else ""
        rows = await self._sql.fetchall(
            "UPDATE clips SET node_id = ?, lease_ms = ? WHERE id IN (SELECT id FROM clips"
            " WHERE state IN ('queued', 'waiting', 'processing')"
            f" AND (lease_ms IS NULL OR lease_ms < ?{mine})"
            f" ORDER BY created_ms LIMIT ?{skip_locked(self._sql)}) RETURNING *",
            (self.node_id, until_ms, now_ms, *((self.node_id,) if own else ()), limit),
        )
        return sorted((_clip(r) for r in rows), key=lambda c: (c.created_ms, c.id))

    async def renew_clips(self, clip_ids: Sequence[str], until_ms: int) -> list[str]:
        """Extend this node's hold on its unfinished clips; the ids it no longer holds
        (another node took them over after this one stalled)."""
        if not clip_ids:
            return []
        marks = placeholders(len(clip_ids))
        held = await self._sql.fetchall(
            f"UPDATE clips SET lease_ms = ? WHERE id IN ({marks}) AND node_id = ? RETURNING id",
            (until_ms, *clip_ids, self.node_id),
        )
        kept = {str(r[0]) for r in held}
        return [c for c in clip_ids if c not in kept]

    async def unfinished_clips(self) -> list[ClipRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM clips WHERE state IN ('queued', 'waiting', 'processing') "
            "ORDER BY created_ms"
        )
        return [_clip(r) for r in rows]

    async def clips_finished_before(self, cutoff_ms: int) -> list[ClipRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM clips WHERE state IN ('ready', 'failed') AND updated_ms < ?",
            (cutoff_ms,),
        )
        return [_clip(r) for r in rows]

    async def delete_clip(self, clip_id: str) -> None:
        await self._write(
            [("DELETE FROM clips WHERE id = ?", (clip_id,))],
            "clip.deleted",
            await self.clip(clip_id),
        )
        await self._tell_clip_watchers("clip.deleted", clip_id)

    async def _tell_clip_watchers(self, event: str, clip_id: str) -> None:
        for watcher in self.clip_watchers:
            watcher(event, clip_id)
        await self._notify(self._sql, CLIP_CHANNEL, f"{self.node_id} {event} {clip_id}")

    async def _notify(self, db: Sql, channel: str, payload: str) -> None:
        """Tell the other nodes (PostgreSQL's NOTIFY: sent when the transaction commits);
        one node alone has told its own watchers already."""
        if db.engine == "postgresql":
            await db.execute("SELECT pg_notify(?, ?)", (channel, payload))

    async def pin_segments(self, clip_id: str, segment_ids: Sequence[int]) -> None:
        """An HLS clip serves stored segments: retention must keep them while it exists."""
        await self._sql.executemany(
            "INSERT INTO clip_segments (clip_id, segment_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(clip_id, s) for s in segment_ids],
        )

    async def unpin_segments(self, clip_id: str) -> None:
        """A clip that failed serves nothing: its segments are free to go."""
        await self._sql.execute("DELETE FROM clip_segments WHERE clip_id = ?", (clip_id,))

    async def pinned_segment(self, clip_id: str, segment_id: int) -> SegmentRow | None:
        row = await self._sql.fetchone(
            "SELECT seg.* FROM segments seg JOIN clip_segments cs ON cs.segment_id = seg.id "
            "WHERE cs.clip_id = ? AND seg.id = ?",
            (clip_id, segment_id),
        )
        return None if row is None else _segment(row)

    async def state(self) -> IndexState:
        return IndexState(
            live_edges=await self.stream_live_edges(),
            clip_states=await self.clip_state_counts(),
            outbox_depth=await self.outbox_depth(),
        )

    async def clip_state_counts(self) -> dict[str, int]:
        rows = await self._sql.fetchall("SELECT state, COUNT(*) FROM clips GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}


def _session(row: Row) -> SessionRow:
    return SessionRow(
        id=row["id"],
        stream_id=row["stream_id"],
        state=row["state"],
        clock=row["clock"],
        started_ms=row["started_ms"],
        ended_ms=row["ended_ms"],
        end_reason=row["end_reason"],
        live_edge_ms=row["live_edge_ms"],
        tracks_edge_ms=row["tracks_edge_ms"],
    )


def _rendition(row: Row) -> RenditionRow:
    return RenditionRow(
        id=row["id"],
        session_id=row["session_id"],
        name=row["name"],
        uri=row["uri"],
        kind=row["kind"],
        main=bool(row["main"]),
        bandwidth=row["bandwidth"],
        resolution=row["resolution"],
        codecs=row["codecs"],
        language=row["language"],
    )


def _segment(row: Row) -> SegmentRow:
    return SegmentRow(
        id=row["id"],
        rendition_id=row["rendition_id"],
        seq=row["seq"],
        epoch=row["epoch"],
        start_ms=row["start_ms"],
        end_ms=row["end_ms"],
        path=row["path"],
        size=row["size"],
        init_path=row["init_path"],
        ref_pts_s=row["ref_pts_s"],
        keyframes_ms=tuple(int(k) for k in json.loads(row["keyframes_ms"])),
        has_video=bool(row["has_video"]),
        has_audio=bool(row["has_audio"]),
        params=row["params"],
        playback_seq=row["playback_seq"],
        playback_disc=row["playback_disc"],
    )


def _number(segment: SegmentRow) -> int:
    return -1 if segment.playback_seq is None else segment.playback_seq


def _gap(row: Row) -> GapRow:
    return GapRow(
        rendition_id=row["rendition_id"],
        start_ms=row["start_ms"],
        end_ms=row["end_ms"],
        first_seq=row["first_seq"],
        last_seq=row["last_seq"],
        reason=row["reason"],
    )


def _delivery(row: Row) -> DeliveryRow:
    return DeliveryRow(
        id=row["id"],
        target=row["target"],
        url=row["url"],
        event=row["event"],
        clip_id=row["clip_id"],
        body=row["body"],
        created_ms=row["created_ms"],
        state=row["state"],
        attempts=row["attempts"],
        next_ms=row["next_ms"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        done_ms=row["done_ms"],
    )


def _clip(row: Row) -> ClipRow:
    result = row["result"]
    options = row["options"]
    return ClipRow(
        id=row["id"],
        stream_id=row["stream_id"],
        session_id=row["session_id"],
        name=row["name"],
        state=row["state"],
        start_ms=row["start_ms"],
        end_ms=row["end_ms"],
        created_ms=row["created_ms"],
        updated_ms=row["updated_ms"],
        error=row["error"],
        result=None if result is None else cast(dict[str, object], json.loads(result)),
        options=None if options is None else cast(dict[str, Any], json.loads(options)),
    )
