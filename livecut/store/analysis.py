"""SQL of analysis results: shot boundaries found on recorded sessions, and the durable
analysis jobs (shots of a session or a clip, highlights of a range)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
CREATE TABLE IF NOT EXISTS analysis_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('shots', 'highlights')),
    subject TEXT UNIQUE,
    stream_id TEXT NOT NULL,
    session_id TEXT,
    clip_id TEXT,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    zero_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS analysis_jobs_by_state ON analysis_jobs (state);
"""

JobKind = Literal["shots", "highlights"]
JobState = Literal["pending", "processing", "completed", "failed"]
# The index's writer of a change and the outbox rows reporting it, in one transaction.
EventWrite = Callable[[Sequence[tuple[str, tuple[object, ...]]], str, object], None]


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


@dataclass(frozen=True, kw_only=True, slots=True)
class AnalysisJobRow:
    """A shots or highlights job; `subject` names what a shots job is of (one per subject)."""

    id: str
    kind: JobKind
    subject: str | None  # "session:<id>" or "clip:<id>" for shots; None for highlights
    stream_id: str
    session_id: str | None
    clip_id: str | None  # shots of a clip; the clip a highlights job cut
    from_ms: int
    to_ms: int
    zero_ms: int  # the instant start_time counts from (the session's or clip's start)
    state: JobState
    options: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_ms: int
    updated_ms: int


class AnalysisIndex:
    """Analysis tables on the index's connection (the same single writer)."""

    def __init__(self, db: sqlite3.Connection, *, write: EventWrite | None = None) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        self._write = write

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

    # jobs ----------------------------------------------------------------------
    def add_job(self, job: AnalysisJobRow) -> None:
        """Insert a job; a shots job replaces the earlier one of the same subject."""
        with self._db:
            self._db.execute("BEGIN")
            if job.subject is not None:
                self._db.execute("DELETE FROM analysis_jobs WHERE subject = ?", (job.subject,))
            self._db.execute(
                "INSERT INTO analysis_jobs (id, kind, subject, stream_id, session_id, clip_id,"
                " from_ms, to_ms, zero_ms, state, options, result, error, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.kind,
                    job.subject,
                    job.stream_id,
                    job.session_id,
                    job.clip_id,
                    job.from_ms,
                    job.to_ms,
                    job.zero_ms,
                    job.state,
                    json.dumps(job.options),
                    None if job.result is None else json.dumps(job.result),
                    job.error,
                    job.created_ms,
                    job.updated_ms,
                ),
            )

    def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        now_ms: int,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        clip_id: str | None = None,
        event: tuple[str, Callable[[AnalysisJobRow], object]] | None = None,
    ) -> AnalysisJobRow | None:
        """A state change; with `event` (its type, and the body it reports made from the job
        as it will be), the outbox rows are written in the same transaction."""
        before = self.job(job_id)
        if before is None:
            return None
        after = dataclasses.replace(
            before,
            state=state,
            updated_ms=now_ms,
            result=result if result is not None else before.result,
            error=error,
            clip_id=clip_id if clip_id is not None else before.clip_id,
        )
        statement = (
            "UPDATE analysis_jobs SET state = ?, updated_ms = ?, result = ?, error = ?,"
            " clip_id = ? WHERE id = ?",
            (
                state,
                now_ms,
                None if after.result is None else json.dumps(after.result),
                error,
                after.clip_id,
                job_id,
            ),
        )
        if event is not None and self._write is not None:
            self._write([statement], event[0], event[1](after))
        else:
            self._db.execute(*statement)
        return after

    def job(self, job_id: str) -> AnalysisJobRow | None:
        row = self._db.execute("SELECT * FROM analysis_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def job_of(self, subject: str) -> AnalysisJobRow | None:
        row = self._db.execute(
            "SELECT * FROM analysis_jobs WHERE subject = ?", (subject,)
        ).fetchone()
        return None if row is None else _job(row)

    def unfinished_jobs(self) -> list[AnalysisJobRow]:
        rows = self._db.execute(
            "SELECT * FROM analysis_jobs WHERE state IN ('pending', 'processing')"
            " ORDER BY created_ms, id"
        ).fetchall()
        return [_job(r) for r in rows]

    def jobs_of_clip(self, clip_id: str) -> list[AnalysisJobRow]:
        rows = self._db.execute(
            "SELECT * FROM analysis_jobs WHERE clip_id = ? ORDER BY created_ms, id", (clip_id,)
        ).fetchall()
        return [_job(r) for r in rows]

    def delete_job(self, job_id: str) -> None:
        self._db.execute("DELETE FROM analysis_jobs WHERE id = ?", (job_id,))


def _job(r: sqlite3.Row) -> AnalysisJobRow:
    return AnalysisJobRow(
        id=str(r["id"]),
        kind="highlights" if r["kind"] == "highlights" else "shots",
        subject=r["subject"],
        stream_id=str(r["stream_id"]),
        session_id=r["session_id"],
        clip_id=r["clip_id"],
        from_ms=int(r["from_ms"]),
        to_ms=int(r["to_ms"]),
        zero_ms=int(r["zero_ms"]),
        state=r["state"],
        options=json.loads(r["options"]),
        result=None if r["result"] is None else json.loads(r["result"]),
        error=r["error"],
        created_ms=int(r["created_ms"]),
        updated_ms=int(r["updated_ms"]),
    )
