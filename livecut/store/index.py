"""The SQLite index of streams, sessions, renditions, segments, gaps, clips: all SQL is here."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from livecut import metrics
from livecut.store.analysis import AnalysisIndex
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

SCHEMA_VERSION = 1
# Segments closer than this are one recorded span (origins' PDTs jitter a little).
SPAN_JOIN_MS = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL REFERENCES streams(id),
    state TEXT NOT NULL CHECK (state IN ('live', 'ended')),
    clock TEXT NOT NULL CHECK (clock IN ('origin', 'local')),
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    end_reason TEXT,
    live_edge_ms INTEGER,
    tracks_edge_ms INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_by_stream ON sessions (stream_id, started_ms);
CREATE TABLE IF NOT EXISTS renditions (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'video',
    main INTEGER NOT NULL DEFAULT 1,
    bandwidth INTEGER,
    resolution TEXT,
    codecs TEXT,
    language TEXT,
    UNIQUE (session_id, name)
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    rendition_id INTEGER NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    init_path TEXT,
    ref_pts_s REAL NOT NULL,
    keyframes_ms TEXT NOT NULL,
    has_video INTEGER NOT NULL,
    has_audio INTEGER NOT NULL,
    indexed_ms INTEGER NOT NULL,
    params TEXT NOT NULL DEFAULT '',
    playback_seq INTEGER,
    playback_disc INTEGER,
    UNIQUE (rendition_id, seq)
);
CREATE INDEX IF NOT EXISTS segments_by_time ON segments (rendition_id, start_ms);
-- The disk floor evicts the oldest segments of all streams first.
CREATE INDEX IF NOT EXISTS segments_by_start ON segments (start_ms);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    rendition_id INTEGER NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    first_seq INTEGER,
    last_seq INTEGER,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_by_time ON gaps (rendition_id, start_ms);
-- Contiguous recorded stretches per rendition, kept up to date on every insert so the
-- timeline of a month of history is a few rows, not a scan of a million segments.
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    rendition_id INTEGER NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_rendition ON spans (rendition_id, end_ms);
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    session_id TEXT,
    name TEXT,
    state TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    error TEXT,
    result TEXT,
    options TEXT
);
CREATE TABLE IF NOT EXISTS clip_segments (
    clip_id TEXT NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    segment_id INTEGER NOT NULL,
    PRIMARY KEY (clip_id, segment_id)
);
CREATE INDEX IF NOT EXISTS clip_segments_by_segment ON clip_segments (segment_id);
CREATE INDEX IF NOT EXISTS clips_by_created ON clips (created_ms, id);
-- Where each playback series (one rendition name of a stream, across its sessions)
-- stands: the number and discontinuity count given to its last segment.
CREATE TABLE IF NOT EXISTS playback_series (
    stream_id TEXT NOT NULL,
    name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_disc INTEGER NOT NULL,
    last_segment_id INTEGER NOT NULL,
    PRIMARY KEY (stream_id, name)
);
"""


# Webhook outbox, the sessions a clip came from, and idempotency keys.
_SCHEMA_EVENTS = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    clip_id TEXT,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (state, next_ms);
CREATE INDEX IF NOT EXISTS deliveries_by_clip ON webhook_deliveries (clip_id, created_ms);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    at_ms INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON webhook_attempts (delivery_id, at_ms);
CREATE TABLE IF NOT EXISTS clip_sessions (
    clip_id TEXT NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    PRIMARY KEY (clip_id, session_id)
);
CREATE INDEX IF NOT EXISTS clip_sessions_by_session ON clip_sessions (session_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    clip_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
"""

# Builds the outbox rows for an event (type, the row it is about); set by the daemon.
EventHook = Callable[[str, object], list[DeliveryRow]]
# Told of every clip state change once it is committed: ("clip.<state>" | "clip.deleted", id).
ClipWatcher = Callable[[str, str], None]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class IndexFull(OSError):
    """The index could not be written because its file system is full (SQLITE_FULL)."""


@contextlib.contextmanager
def _full_is_enospc() -> Iterator[None]:
    """A full disk under the index reads as the OSError (ENOSPC) a full disk under a
    media file gives, so ingest treats both alike."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
            raise
        metrics.STORAGE_ERRORS.labels("index").inc()
        raise IndexFull(errno.ENOSPC, f"the index cannot grow: {exc}") from exc


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StreamUsage:
    """What one stream's recorded segments take on disk."""

    stream_id: str
    segments: int
    bytes: int
    pinned_bytes: int  # of segments an HLS clip or export serves
    oldest_ms: int | None
    newest_ms: int | None


class Index:
    """One connection, used from the event loop thread only: the single writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a process crash (SIGKILL) with every committed row intact;
        # on power loss the last commits may be lost, leaving orphan files that
        # start-up reconciliation removes. Never a row without its file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        self._db.executescript(_SCHEMA_EVENTS)
        self.analysis = AnalysisIndex(self._db, write=self._write)
        self.overlays = OverlayIndex(self._db)
        # Outbox rows for clip and session events, written in the state change's transaction.
        self.on_event: EventHook | None = None
        # Live views of clips (the console's event stream) follow every change, not only
        # the ones webhooks report.
        self.clip_watchers: list[ClipWatcher] = []
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def _add_missing_columns(self) -> None:
        """Columns added since an index was created; old rows take the default."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(segments)")}
        if "params" not in have:
            self._db.execute("ALTER TABLE segments ADD COLUMN params TEXT NOT NULL DEFAULT ''")
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(sessions)")}
        if "tracks_edge_ms" not in have:
            self._db.execute("ALTER TABLE sessions ADD COLUMN tracks_edge_ms INTEGER")
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(segments)")}
        if "playback_seq" not in have:
            # Segments stored before playback numbering stay out of live playlists.
            self._db.execute("ALTER TABLE segments ADD COLUMN playback_seq INTEGER")
            self._db.execute("ALTER TABLE segments ADD COLUMN playback_disc INTEGER")

    def close(self) -> None:
        self._db.close()

    def size_bytes(self) -> int:
        page_count = self._scalar("PRAGMA page_count")
        page_size = self._scalar("PRAGMA page_size")
        return int(page_count or 0) * int(page_size or 0)

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # streams ---------------------------------------------------------------
    def ensure_stream(self, stream_id: str, url: str, now_ms: int) -> None:
        self._db.execute(
            "INSERT INTO streams (id, url, created_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET url = excluded.url",
            (stream_id, url, now_ms),
        )

    # sessions --------------------------------------------------------------
    def open_session(self, stream_id: str, *, clock: str, started_ms: int) -> SessionRow:
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
        self._write(
            [
                (
                    "INSERT INTO sessions (id, stream_id, state, clock, started_ms) "
                    "VALUES (?, ?, 'live', ?, ?)",
                    (session_id, stream_id, clock, started_ms),
                )
            ],
            "session.started",
            opened,
        )
        session = self.session(session_id)
        assert session is not None
        return session

    def end_session(self, session_id: str, *, ended_ms: int, reason: str) -> None:
        live = self.session(session_id)
        ended = (
            None
            if live is None or live.state != "live"
            else dataclasses.replace(live, state="ended", ended_ms=ended_ms, end_reason=reason)
        )
        self._write(
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

    def session(self, session_id: str) -> SessionRow | None:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else _session(row)

    def live_session(self, stream_id: str) -> SessionRow | None:
        row = self._db.execute(
            "SELECT * FROM sessions WHERE stream_id = ? AND state = 'live' "
            "ORDER BY started_ms DESC LIMIT 1",
            (stream_id,),
        ).fetchone()
        return None if row is None else _session(row)

    def live_sessions(self) -> list[SessionRow]:
        """Every session still open, of every stream."""
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE state = 'live' ORDER BY started_ms"
        ).fetchall()
        return [_session(r) for r in rows]

    def sessions(self, stream_id: str, *, limit: int = 100) -> list[SessionRow]:
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE stream_id = ? ORDER BY started_ms DESC LIMIT ?",
            (stream_id, limit),
        ).fetchall()
        return [_session(r) for r in rows]

    def sessions_in_opening_order(self, stream_id: str) -> list[SessionRow]:
        """Every session of a stream, oldest opened first (a clock jump can start earlier)."""
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE stream_id = ? ORDER BY rowid", (stream_id,)
        ).fetchall()
        return [_session(r) for r in rows]

    def stream_live_edges(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT stream_id, MAX(live_edge_ms) FROM sessions "
            "WHERE live_edge_ms IS NOT NULL GROUP BY stream_id"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # renditions ------------------------------------------------------------
    def add_rendition(
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
        self._db.execute(
            "INSERT OR IGNORE INTO renditions (session_id, name, uri, kind, main, bandwidth,"
            " resolution, codecs, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, name, uri, kind, int(main), bandwidth, resolution, codecs, language),
        )
        row = self._db.execute(
            "SELECT * FROM renditions WHERE session_id = ? AND name = ?", (session_id, name)
        ).fetchone()
        return _rendition(row)

    def rendition_of(self, rendition_id: int) -> RenditionRow | None:
        row = self._db.execute("SELECT * FROM renditions WHERE id = ?", (rendition_id,)).fetchone()
        return None if row is None else _rendition(row)

    def renditions(self, session_id: str) -> list[RenditionRow]:
        rows = self._db.execute(
            "SELECT * FROM renditions WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [_rendition(r) for r in rows]

    # segments and gaps ------------------------------------------------------
    def add_segment(
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
        with _full_is_enospc(), self._db:
            self._db.execute("BEGIN")
            series, playback_seq, playback_disc = self._playback_number(
                rendition_id, epoch=epoch, start_ms=start_ms, end_ms=end_ms, params=params
            )
            cursor = self._db.execute(
                "INSERT INTO segments (rendition_id, seq, epoch, start_ms, end_ms, path, size,"
                " init_path, ref_pts_s, keyframes_ms, has_video, has_audio, indexed_ms, params,"
                " playback_seq, playback_disc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            self._db.execute(
                "UPDATE playback_series SET last_segment_id = ? WHERE stream_id = ? AND name = ?",
                (cursor.lastrowid, *series),
            )
            self._db.execute(
                "UPDATE sessions SET live_edge_ms = MAX(COALESCE(live_edge_ms, 0), ?), "
                "tracks_edge_ms = MAX(COALESCE(tracks_edge_ms, 0), ?) "
                "WHERE id = (SELECT session_id FROM renditions WHERE id = ? AND main = 1)",
                (end_ms, end_ms if edge_ms is None else edge_ms, rendition_id),
            )
            self._extend_span(rendition_id, start_ms, end_ms)

    def _playback_number(
        self, rendition_id: int, *, epoch: int, start_ms: int, end_ms: int, params: str
    ) -> tuple[tuple[str, str], int, int]:
        """The segment's playback series (stream, rendition name), its next number there,
        and its discontinuity count: one more than the last segment's when the media does
        not run on from it (vod_playlist's rule for EXT-X-DISCONTINUITY, recorded gaps
        between the two included)."""
        owner = self._db.execute(
            "SELECT r.name, s.stream_id FROM renditions r JOIN sessions s ON s.id = r.session_id "
            "WHERE r.id = ?",
            (rendition_id,),
        ).fetchone()
        stream_id, name = str(owner["stream_id"]), str(owner["name"])
        last = self._db.execute(
            "SELECT last_seq, last_disc, last_segment_id FROM playback_series "
            "WHERE stream_id = ? AND name = ?",
            (stream_id, name),
        ).fetchone()
        if last is None:
            number, disc = 1, 0
        else:
            previous = self._db.execute(
                "SELECT * FROM segments WHERE id = ?", (last["last_segment_id"],)
            ).fetchone()
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
                and self._scalar(
                    "SELECT 1 FROM gaps WHERE rendition_id = ? AND start_ms < ? AND end_ms > ? "
                    "LIMIT 1",
                    (rendition_id, start_ms, int(previous["end_ms"])),
                )
                is None
            )
            number, disc = int(last["last_seq"]) + 1, int(last["last_disc"]) + (not runs_on)
        self._db.execute(
            "INSERT INTO playback_series (stream_id, name, last_seq, last_disc, last_segment_id)"
            " VALUES (?, ?, ?, ?, 0) ON CONFLICT (stream_id, name) DO UPDATE SET"
            " last_seq = excluded.last_seq, last_disc = excluded.last_disc",
            (stream_id, name, number, disc),
        )
        return (stream_id, name), number, disc

    def _extend_span(self, rendition_id: int, start_ms: int, end_ms: int) -> None:
        last = self._db.execute(
            "SELECT id, start_ms, end_ms FROM spans WHERE rendition_id = ? "
            "ORDER BY end_ms DESC LIMIT 1",
            (rendition_id,),
        ).fetchone()
        if last is not None and last["start_ms"] <= start_ms <= last["end_ms"] + SPAN_JOIN_MS:
            self._db.execute(
                "UPDATE spans SET end_ms = MAX(end_ms, ?) WHERE id = ?", (end_ms, last["id"])
            )
        else:
            self._db.execute(
                "INSERT INTO spans (rendition_id, start_ms, end_ms) VALUES (?, ?, ?)",
                (rendition_id, start_ms, end_ms),
            )

    def timeline(
        self, stream_id: str, from_ms: int, to_ms: int, *, limit: int
    ) -> tuple[list[tuple[int, int, str]], list[GapRow]]:
        """Recorded spans (start, end, session) and gaps of the main renditions in a window."""
        spans = self._db.execute(
            "SELECT sp.start_ms, sp.end_ms, r.session_id FROM spans sp "
            "JOIN renditions r ON r.id = sp.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 AND sp.start_ms < ? AND sp.end_ms > ? "
            "ORDER BY sp.start_ms LIMIT ?",
            (stream_id, to_ms, from_ms, limit),
        ).fetchall()
        gaps = self._db.execute(
            "SELECT g.* FROM gaps g JOIN renditions r ON r.id = g.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 AND g.start_ms < ? AND g.end_ms > ? "
            "ORDER BY g.start_ms LIMIT ?",
            (stream_id, to_ms, from_ms, limit),
        ).fetchall()
        return [(int(r[0]), int(r[1]), str(r[2])) for r in spans], [_gap(g) for g in gaps]

    def has_segment(self, rendition_id: int, seq: int) -> bool:
        return (
            self._scalar(
                "SELECT 1 FROM segments WHERE rendition_id = ? AND seq = ?", (rendition_id, seq)
            )
            is not None
        )

    def last_segment(self, rendition_id: int) -> SegmentRow | None:
        row = self._db.execute(
            "SELECT * FROM segments WHERE rendition_id = ? ORDER BY seq DESC LIMIT 1",
            (rendition_id,),
        ).fetchone()
        return None if row is None else _segment(row)

    def rendition_segments(self, rendition_id: int) -> list[SegmentRow]:
        """Every segment of one rendition, in media-sequence order."""
        rows = self._db.execute(
            "SELECT * FROM segments WHERE rendition_id = ? ORDER BY seq", (rendition_id,)
        ).fetchall()
        return [_segment(r) for r in rows]

    def indexed_times(self, rendition_id: int) -> dict[int, int]:
        """seq -> when each segment of a rendition was indexed (Unix ms), for lag checks."""
        rows = self._db.execute(
            "SELECT seq, indexed_ms FROM segments WHERE rendition_id = ?", (rendition_id,)
        ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows}

    def rendition_gaps(self, rendition_id: int) -> list[GapRow]:
        """Every gap of one rendition (zero-length ones included), in the order recorded."""
        rows = self._db.execute(
            "SELECT * FROM gaps WHERE rendition_id = ? ORDER BY id", (rendition_id,)
        ).fetchall()
        return [_gap(r) for r in rows]

    def add_gap(self, gap: GapRow) -> None:
        with _full_is_enospc():
            self._db.execute(
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

    def gaps(self, rendition_ids: Sequence[int], start_ms: int, end_ms: int) -> list[GapRow]:
        if not rendition_ids:
            return []
        marks = ",".join("?" * len(rendition_ids))
        rows = self._db.execute(
            f"SELECT * FROM gaps WHERE rendition_id IN ({marks}) AND start_ms < ? AND end_ms > ? "
            "ORDER BY start_ms",
            (*rendition_ids, end_ms, start_ms),
        ).fetchall()
        return [_gap(r) for r in rows]

    def stream_segments(
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
        rows = self._db.execute(
            "SELECT seg.* FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            f"WHERE s.stream_id = ? AND (? IS NULL OR s.id = ?) AND {which} "
            "AND seg.start_ms < ? AND seg.end_ms > ? "
            "ORDER BY seg.start_ms, seg.id",
            (stream_id, session_id, session_id, *params, end_ms, start_ms),
        ).fetchall()
        return [_segment(r) for r in rows]

    def recorded_spans(self, stream_id: str) -> list[tuple[int, int]]:
        """Every contiguous recorded stretch of the stream's main renditions (the timeline's
        spans, so a session with holes counts as several)."""
        rows = self._db.execute(
            "SELECT sp.start_ms, sp.end_ms FROM spans sp "
            "JOIN renditions r ON r.id = sp.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.main = 1 ORDER BY sp.start_ms",
            (stream_id,),
        ).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def playback_window(self, stream_id: str, name: str, since_ms: int) -> list[SegmentRow]:
        """The newest segments of a playback series (rendition `name` of the stream, across
        sessions) whose numbers run on by one, back to since_ms at most: what a live
        playlist may list. A segment kept by a clip where its neighbours were removed
        is left out with everything before it."""
        rows = self._db.execute(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND r.name = ? AND seg.playback_seq IS NOT NULL "
            "AND seg.end_ms > ? ORDER BY seg.playback_seq",
            (stream_id, name, since_ms),
        ).fetchall()
        segments = [_segment(r) for r in rows]
        first = len(segments) - 1
        while first > 0 and segments[first - 1].playback_seq == _number(segments[first]) - 1:
            first -= 1
        return segments[max(first, 0) :]

    def stream_segment(self, stream_id: str, segment_id: int) -> SegmentRow | None:
        """One stored segment of a stream, by id (None once removed, or of another stream)."""
        row = self._db.execute(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id WHERE seg.id = ? AND s.stream_id = ?",
            (segment_id, stream_id),
        ).fetchone()
        return None if row is None else _segment(row)

    def rendition_gaps_between(
        self, stream_id: str, name: str, start_ms: int, end_ms: int
    ) -> list[GapRow]:
        """Gaps of rendition `name` of the stream, in any session, overlapping a range."""
        rows = self._db.execute(
            "SELECT g.* FROM gaps g JOIN renditions r ON r.id = g.rendition_id "
            "JOIN sessions s ON s.id = r.session_id WHERE s.stream_id = ? AND r.name = ? "
            "AND g.start_ms < ? AND g.end_ms > ? ORDER BY g.start_ms",
            (stream_id, name, end_ms, start_ms),
        ).fetchall()
        return [_gap(r) for r in rows]

    def segments_before(
        self, stream_id: str, cutoff_ms: int, *, limit: int, from_ms: int | None = None
    ) -> list[SegmentRow]:
        """Retention's candidates, oldest first: old segments that no HLS clip serves,
        starting at or after from_ms if given."""
        rows = self._db.execute(
            "SELECT seg.* FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id "
            "WHERE s.stream_id = ? AND seg.end_ms <= ? AND seg.start_ms >= ? "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id) "
            "ORDER BY seg.start_ms LIMIT ?",
            (stream_id, cutoff_ms, -(2**62) if from_ms is None else from_ms, limit),
        ).fetchall()
        return [_segment(r) for r in rows]

    def delete_segments(self, segment_ids: Sequence[int]) -> list[str]:
        """Delete segment rows; returns the init sections no remaining segment uses, whose
        files may go with them."""
        if not segment_ids:
            return []
        marks = ",".join("?" * len(segment_ids))
        with self._db:
            self._db.execute("BEGIN")
            rows = self._db.execute(
                "SELECT rendition_id, init_path, start_ms FROM segments "
                f"WHERE id IN ({marks}) ORDER BY start_ms",
                tuple(segment_ids),
            ).fetchall()
            self._db.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i in segment_ids])
            for row in rows:
                self._cut_span(int(row["rendition_id"]), int(row["start_ms"]))
            inits = {str(r["init_path"]) for r in rows if r["init_path"]}
            return sorted(
                path
                for path in inits
                if self._scalar("SELECT 1 FROM segments WHERE init_path = ? LIMIT 1", (path,))
                is None
            )

    def eviction_candidates(
        self, *, keep_live: int, limit: int, after: tuple[int, int] | None = None
    ) -> list[tuple[str, SegmentRow]]:
        """(stream, segment), oldest first across every stream, that the disk floor may
        evict: none an HLS clip or export serves, nor the newest `keep_live` of each
        rendition of a live session. `after` is the (start_ms, id) of the last one seen."""
        start_ms, last_id = after if after is not None else (-(2**63), -1)
        rows = self._db.execute(
            "SELECT seg.*, s.stream_id AS stream_id FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            "WHERE (seg.start_ms, seg.id) > (?, ?) "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id) "
            "AND NOT (s.state = 'live' AND seg.seq >= COALESCE((SELECT x.seq FROM segments x "
            "WHERE x.rendition_id = seg.rendition_id ORDER BY x.seq DESC LIMIT 1 OFFSET ?), -1)) "
            "ORDER BY seg.start_ms, seg.id LIMIT ?",
            (start_ms, last_id, keep_live - 1, limit),
        ).fetchall()
        return [(str(r["stream_id"]), _segment(r)) for r in rows]

    def storage_usage(self) -> list[StreamUsage]:
        """Segments, bytes, pinned bytes and recorded reach of every stream with media."""
        rows = self._db.execute(
            "SELECT s.stream_id, COUNT(seg.id), COALESCE(SUM(seg.size), 0), "
            "COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM clip_segments cs "
            "WHERE cs.segment_id = seg.id) THEN seg.size ELSE 0 END), 0), "
            "MIN(seg.start_ms), MAX(seg.end_ms) "
            "FROM segments seg JOIN renditions r ON r.id = seg.rendition_id "
            "JOIN sessions s ON s.id = r.session_id GROUP BY s.stream_id ORDER BY s.stream_id"
        ).fetchall()
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

    def bytes_in_ranges(self, stream_id: str, ranges: Sequence[tuple[int, int]]) -> int:
        """Bytes of a stream's segments overlapping any range that no HLS clip pins already
        (what queued, waiting and running jobs hold on to)."""
        if not ranges:
            return 0
        overlaps = " OR ".join("(seg.start_ms < ? AND seg.end_ms > ?)" for _ in ranges)
        value = self._scalar(
            "SELECT COALESCE(SUM(seg.size), 0) FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            f"WHERE s.stream_id = ? AND ({overlaps}) "
            "AND NOT EXISTS (SELECT 1 FROM clip_segments cs WHERE cs.segment_id = seg.id)",
            (stream_id, *(v for start, end in ranges for v in (end, start))),
        )
        return int(value or 0)

    def _cut_span(self, rendition_id: int, removed_start_ms: int) -> None:
        """After a segment starting at `removed_start_ms` is deleted: the span that held
        it becomes what remains on either side (none, one or two spans), each from its
        first remaining segment's start to its last one's end."""
        span = self._db.execute(
            "SELECT id, start_ms, end_ms FROM spans WHERE rendition_id = ? "
            "AND end_ms >= ? AND start_ms <= ? ORDER BY end_ms LIMIT 1",
            (rendition_id, removed_start_ms, removed_start_ms),
        ).fetchone()
        if span is None:
            return
        self._db.execute("DELETE FROM spans WHERE id = ?", (span["id"],))
        for where, low, high in (
            ("start_ms >= ? AND start_ms < ?", span["start_ms"], removed_start_ms),
            ("start_ms > ? AND start_ms <= ?", removed_start_ms, span["end_ms"]),
        ):
            first = self._scalar(
                f"SELECT start_ms FROM segments WHERE rendition_id = ? AND {where} "
                "ORDER BY start_ms LIMIT 1",
                (rendition_id, low, high),
            )
            if first is None:
                continue
            last_end = self._scalar(
                f"SELECT end_ms FROM segments WHERE rendition_id = ? AND {where} "
                "ORDER BY start_ms DESC LIMIT 1",
                (rendition_id, low, high),
            )
            self._db.execute(
                "INSERT INTO spans (rendition_id, start_ms, end_ms) VALUES (?, ?, ?)",
                (rendition_id, int(first), int(last_end)),
            )

    def forget_emptied(self, stream_id: str, cutoff_ms: int) -> int:
        """Drop ended sessions older than cutoff whose segments are all gone."""
        cur = self._db.execute(
            "DELETE FROM sessions WHERE stream_id = ? AND state = 'ended' AND "
            "COALESCE(live_edge_ms, started_ms) <= ? AND NOT EXISTS (SELECT 1 FROM segments seg "
            "JOIN renditions r ON r.id = seg.rendition_id WHERE r.session_id = sessions.id)",
            (stream_id, cutoff_ms),
        )
        return cur.rowcount

    def parameter_segment(self, segment: SegmentRow) -> SegmentRow | None:
        """The latest video segment of the same rendition and epoch, at or before this
        one, whose codec parameters could be read: where a run that starts without its
        own parameter sets (an open GOP's later segments, with x264) finds them."""
        row = self._db.execute(
            "SELECT * FROM segments WHERE rendition_id = ? AND epoch = ? AND seq <= ? "
            "AND params != '' AND has_video = 1 ORDER BY seq DESC LIMIT 1",
            (segment.rendition_id, segment.epoch, segment.seq),
        ).fetchone()
        return None if row is None else _segment(row)

    def first_segment_start(self, session_id: str) -> int | None:
        value = self._scalar(
            "SELECT MIN(seg.start_ms) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id WHERE r.session_id = ?",
            (session_id,),
        )
        return None if value is None else int(value)

    def rendition_segment_counts(self, session_id: str) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT seg.rendition_id, COUNT(*) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id WHERE r.session_id = ? GROUP BY seg.rendition_id",
            (session_id,),
        ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows}

    def segment_counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT s.stream_id, COUNT(seg.id) FROM segments seg JOIN renditions r "
            "ON r.id = seg.rendition_id JOIN sessions s ON s.id = r.session_id "
            "GROUP BY s.stream_id"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def all_media_paths(self) -> set[str]:
        paths = {r[0] for r in self._db.execute("SELECT path FROM segments")}
        paths |= {r[0] for r in self._db.execute("SELECT DISTINCT init_path FROM segments") if r[0]}
        return paths

    # clips -----------------------------------------------------------------
    def add_clip(
        self,
        clip: ClipRow,
        *,
        sessions: Sequence[str] = (),
        idempotency: tuple[str, str] | None = None,  # (key, sha256 of the body)
    ) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._insert_clip(clip)
            self._db.executemany(
                "INSERT OR IGNORE INTO clip_sessions (clip_id, session_id) VALUES (?, ?)",
                [(clip.id, s) for s in sessions],
            )
            if idempotency is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO idempotency_keys (key, body_sha256, clip_id, "
                    "created_ms) VALUES (?, ?, ?, ?)",
                    (idempotency[0], idempotency[1], clip.id, clip.created_ms),
                )

    def _insert_clip(self, clip: ClipRow) -> None:
        self._db.execute(
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

    def update_clip(
        self,
        clip_id: str,
        *,
        state: ClipState,
        now_ms: int,
        error: str | None = None,
        result: dict[str, object] | None = None,
    ) -> None:
        before = self.clip(clip_id) if state in ("ready", "failed") else None
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
        self._write(
            [
                (
                    "UPDATE clips SET state = ?, updated_ms = ?, error = ?, "
                    "result = COALESCE(?, result) WHERE id = ?",
                    (state, now_ms, error, None if result is None else json.dumps(result), clip_id),
                )
            ],
            f"clip.{state}",
            after,
        )
        self._tell_clip_watchers(f"clip.{state}", clip_id)

    def clip(self, clip_id: str) -> ClipRow | None:
        row = self._db.execute("SELECT * FROM clips WHERE id = ?", (clip_id,)).fetchone()
        return None if row is None else _clip(row)

    def clips(
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
        rows = self._db.execute(
            sql + " ORDER BY created_ms DESC, id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [_clip(r) for r in rows]

    def clip_sessions(self, clip_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT session_id FROM clip_sessions WHERE clip_id = ? ORDER BY session_id",
            (clip_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def idempotent_clip(self, key: str, since_ms: int) -> tuple[str, str] | None:
        """(body sha256, clip id) stored under an Idempotency-Key since `since_ms`."""
        row = self._db.execute(
            "SELECT body_sha256, clip_id FROM idempotency_keys WHERE key = ? AND created_ms >= ?",
            (key, since_ms),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def forget_idempotency_keys(self, before_ms: int) -> None:
        self._db.execute("DELETE FROM idempotency_keys WHERE created_ms < ?", (before_ms,))

    # webhook outbox ------------------------------------------------------------
    def _write(
        self, statements: Sequence[tuple[str, tuple[object, ...]]], event: str, subject: object
    ) -> None:
        """A state change and the outbox rows reporting it (`subject` as it will be), in one
        transaction; without rows, the statements alone, as before webhooks existed."""
        rows = (
            self.on_event(event, subject)
            if self.on_event is not None and subject is not None
            else []
        )
        if not rows:
            for sql, params in statements:
                self._db.execute(sql, params)
            return
        with self._db:
            self._db.execute("BEGIN")
            for sql, params in statements:
                self._db.execute(sql, params)
            for row in rows:
                self._insert_delivery(row)

    def _insert_delivery(self, row: DeliveryRow) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (id, target, url, event, clip_id, body,"
            " created_ms, state, attempts, next_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def add_deliveries(self, rows: Sequence[DeliveryRow]) -> None:
        """Events with no index row of their own (a stream's state) go straight in."""
        with self._db:
            self._db.execute("BEGIN")
            for row in rows:
                self._insert_delivery(row)

    def due_deliveries(self, now_ms: int, *, limit: int) -> list[DeliveryRow]:
        rows = self._db.execute(
            "SELECT * FROM webhook_deliveries WHERE state = 'pending' AND next_ms <= ? "
            "ORDER BY next_ms LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [_delivery(r) for r in rows]

    def next_delivery_ms(self) -> int | None:
        value = self._scalar("SELECT MIN(next_ms) FROM webhook_deliveries WHERE state = 'pending'")
        return None if value is None else int(value)

    def record_attempt(
        self,
        attempt: AttemptRow,
        *,
        state: str,
        next_ms: int,
    ) -> None:
        """One attempt and the delivery's new state, together."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
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
            self._db.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_ms = ?,"
                " last_status = ?, last_error = ?,"
                " done_ms = CASE WHEN ? = 'pending' THEN NULL ELSE ? END WHERE id = ?",
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

    def deliveries(
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
        rows = self._db.execute(
            sql + " ORDER BY created_ms DESC, id LIMIT ?", (*params, limit)
        ).fetchall()
        return [_delivery(r) for r in rows]

    def attempts(self, delivery_id: str) -> list[AttemptRow]:
        rows = self._db.execute(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY at_ms",
            (delivery_id,),
        ).fetchall()
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

    def outbox_depth(self) -> int:
        return int(
            self._scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'") or 0
        )

    def unfinished_clips(self) -> list[ClipRow]:
        rows = self._db.execute(
            "SELECT * FROM clips WHERE state IN ('queued', 'waiting', 'processing') "
            "ORDER BY created_ms"
        ).fetchall()
        return [_clip(r) for r in rows]

    def clips_finished_before(self, cutoff_ms: int) -> list[ClipRow]:
        rows = self._db.execute(
            "SELECT * FROM clips WHERE state IN ('ready', 'failed') AND updated_ms < ?",
            (cutoff_ms,),
        ).fetchall()
        return [_clip(r) for r in rows]

    def delete_clip(self, clip_id: str) -> None:
        self._write(
            [("DELETE FROM clips WHERE id = ?", (clip_id,))], "clip.deleted", self.clip(clip_id)
        )
        self._tell_clip_watchers("clip.deleted", clip_id)

    def _tell_clip_watchers(self, event: str, clip_id: str) -> None:
        for watcher in self.clip_watchers:
            watcher(event, clip_id)

    def pin_segments(self, clip_id: str, segment_ids: Sequence[int]) -> None:
        """An HLS clip serves stored segments: retention must keep them while it exists."""
        self._db.executemany(
            "INSERT OR IGNORE INTO clip_segments (clip_id, segment_id) VALUES (?, ?)",
            [(clip_id, s) for s in segment_ids],
        )

    def unpin_segments(self, clip_id: str) -> None:
        """A clip that failed serves nothing: its segments are free to go."""
        self._db.execute("DELETE FROM clip_segments WHERE clip_id = ?", (clip_id,))

    def pinned_segment(self, clip_id: str, segment_id: int) -> SegmentRow | None:
        row = self._db.execute(
            "SELECT seg.* FROM segments seg JOIN clip_segments cs ON cs.segment_id = seg.id "
            "WHERE cs.clip_id = ? AND seg.id = ?",
            (clip_id, segment_id),
        ).fetchone()
        return None if row is None else _segment(row)

    def clip_state_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM clips GROUP BY state").fetchall()
        return {r[0]: int(r[1]) for r in rows}


def _session(row: sqlite3.Row) -> SessionRow:
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


def _rendition(row: sqlite3.Row) -> RenditionRow:
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


def _segment(row: sqlite3.Row) -> SegmentRow:
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


def _gap(row: sqlite3.Row) -> GapRow:
    return GapRow(
        rendition_id=row["rendition_id"],
        start_ms=row["start_ms"],
        end_ms=row["end_ms"],
        first_seq=row["first_seq"],
        last_seq=row["last_seq"],
        reason=row["reason"],
    )


def _delivery(row: sqlite3.Row) -> DeliveryRow:
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


def _clip(row: sqlite3.Row) -> ClipRow:
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
