"""SQL of analysis results: shot boundaries found on recorded sessions."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shot_cuts (
    id INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('cut', 'dissolve')),
    span_start_ms INTEGER NOT NULL,
    span_end_ms INTEGER NOT NULL,
    score TEXT NOT NULL,
    found_ms INTEGER NOT NULL,
    UNIQUE (session_id, at_ms)
);
CREATE INDEX IF NOT EXISTS shot_cuts_by_stream ON shot_cuts (stream_id, at_ms);
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class ShotCutRow:
    stream_id: str
    session_id: str
    at_ms: int  # wall time of the new shot's first frame (a dissolve's middle)
    kind: str
    span_start_ms: int
    span_end_ms: int
    score: dict[str, float]  # the score's named parts
    found_ms: int  # when the detector reported it


class AnalysisIndex:
    """Analysis tables on the index's connection (the same single writer)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def add_shot_cuts(self, rows: list[ShotCutRow]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO shot_cuts (stream_id, session_id, at_ms, kind,"
                " span_start_ms, span_end_ms, score, found_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.stream_id,
                        r.session_id,
                        r.at_ms,
                        r.kind,
                        r.span_start_ms,
                        r.span_end_ms,
                        json.dumps(r.score),
                        r.found_ms,
                    )
                    for r in rows
                ],
            )

    def shot_cuts(
        self, stream_id: str, from_ms: int, to_ms: int, *, limit: int
    ) -> list[ShotCutRow]:
        rows = self._db.execute(
            "SELECT * FROM shot_cuts WHERE stream_id = ? AND at_ms >= ? AND at_ms < ? "
            "ORDER BY at_ms LIMIT ?",
            (stream_id, from_ms, to_ms, limit),
        ).fetchall()
        return [
            ShotCutRow(
                stream_id=str(r["stream_id"]),
                session_id=str(r["session_id"]),
                at_ms=int(r["at_ms"]),
                kind=str(r["kind"]),
                span_start_ms=int(r["span_start_ms"]),
                span_end_ms=int(r["span_end_ms"]),
                score=json.loads(r["score"]),
                found_ms=int(r["found_ms"]),
            )
            for r in rows
        ]
