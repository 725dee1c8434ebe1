"""SQL of analysis results: shot boundaries found on recorded sessions, and the durable
analysis jobs (shots of a session or a clip, highlights of a range)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from livecut.store.sql import Row, Sql, skip_locked

JobKind = Literal["shots", "highlights"]
JobState = Literal["pending", "processing", "completed", "failed"]


class EventWrite(Protocol):
    """The index's writer of a change and the outbox rows reporting it, in one transaction
    (`guarded`: nothing is written if the first statement changes no row; False then)."""

    def __call__(
        self,
        statements: Sequence[tuple[str, tuple[object, ...]]],
        event: str,
        subject: object,
        *,
        guarded: bool = False,
    ) -> Awaitable[bool]: ...


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

    def __init__(self, sql: Sql, *, write: EventWrite | None = None) -> None:
        self._sql = sql
        self._write = write

    async def add_shot_cuts(self, rows: list[ShotCutRow]) -> None:
        async with self._sql.transaction() as tx:
            await tx.executemany(
                "INSERT INTO shot_cuts (stream_id, session_id, at_ms, kind, span_start_ms,"
                " span_end_ms, score, found_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
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

    async def shot_cuts(
        self, stream_id: str, from_ms: int, to_ms: int, *, limit: int
    ) -> list[ShotCutRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM shot_cuts WHERE stream_id = ? AND at_ms >= ? AND at_ms < ? "
            "ORDER BY at_ms LIMIT ?",
            (stream_id, from_ms, to_ms, limit),
        )
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
    async def add_job(self, job: AnalysisJobRow) -> None:
        """Insert a job; a shots job replaces the earlier one of the same subject."""
        async with self._sql.transaction() as tx:
            await self.insert_job(tx, job)

    async def insert_job(self, db: Sql, job: AnalysisJobRow) -> None:
        """add_job's statements, on `db`: a transaction of the caller's (a clip and the
        shots job it asked for are written together)."""
        if job.subject is not None:
            await db.execute("DELETE FROM analysis_jobs WHERE subject = ?", (job.subject,))
        await db.execute(
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

    async def update_job(
        self,
        job_id: str,
        *,
        state: JobState,
        now_ms: int,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        clip_id: str | None = None,
        event: tuple[str, Callable[[AnalysisJobRow], object]] | None = None,
        held_by: str | None = None,
    ) -> AnalysisJobRow | None:
        """A state change; with `event` (its type, and the body it reports made from the job
        as it will be), the outbox rows are written in the same transaction. `held_by`:
        only while that node holds the job (None, and nothing written, if it does not)."""
        before = await self.job(job_id)
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
        held = "" if held_by is None else " AND node_id = ?"
        statement = (
            "UPDATE analysis_jobs SET state = ?, updated_ms = ?, result = ?, error = ?,"
            f" clip_id = ? WHERE id = ?{held}",
            (
                state,
                now_ms,
                None if after.result is None else json.dumps(after.result),
                error,
                after.clip_id,
                job_id,
                *(() if held_by is None else (held_by,)),
            ),
        )
        guarded = held_by is not None
        if event is not None and self._write is not None:
            written = await self._write([statement], event[0], event[1](after), guarded=guarded)
        else:
            written = bool(await self._sql.execute(*statement)) or not guarded
        return after if written else None

    async def set_job_span(self, job_id: str, *, from_ms: int, to_ms: int, now_ms: int) -> None:
        """The range a clip's shots job reads, once the clip is cut (start_time counts from
        its first frame)."""
        await self._sql.execute(
            "UPDATE analysis_jobs SET from_ms = ?, to_ms = ?, zero_ms = ?, updated_ms = ?"
            " WHERE id = ?",
            (from_ms, to_ms, from_ms, now_ms, job_id),
        )

    async def job(self, job_id: str) -> AnalysisJobRow | None:
        row = await self._sql.fetchone("SELECT * FROM analysis_jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    async def job_of(self, subject: str) -> AnalysisJobRow | None:
        row = await self._sql.fetchone("SELECT * FROM analysis_jobs WHERE subject = ?", (subject,))
        return None if row is None else _job(row)

    async def unfinished_jobs(self) -> list[AnalysisJobRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM analysis_jobs WHERE state IN ('pending', 'processing')"
            " ORDER BY created_ms, id"
        )
        return [_job(r) for r in rows]

    async def jobs_of_clip(self, clip_id: str) -> list[AnalysisJobRow]:
        rows = await self._sql.fetchall(
            "SELECT * FROM analysis_jobs WHERE clip_id = ? ORDER BY created_ms, id", (clip_id,)
        )
        return [_job(r) for r in rows]

    async def hold_job(self, job_id: str, node_id: str, until_ms: int) -> None:
        await self._sql.execute(
            "UPDATE analysis_jobs SET node_id = ?, lease_ms = ? WHERE id = ?",
            (node_id, until_ms, job_id),
        )

    async def claim_jobs(
        self, node_id: str, *, now_ms: int, until_ms: int, limit: int, own: bool = False
    ) -> list[AnalysisJobRow]:
        """Unfinished jobs no live node holds (with `own`, this node's own from before a
        restart too), oldest first: this node's until until_ms."""
        mine = " OR node_id = ?" if own else ""
        rows = await self._sql.fetchall(
            "UPDATE analysis_jobs SET node_id = ?, lease_ms = ? WHERE id IN (SELECT id FROM"
            " analysis_jobs WHERE state IN ('pending', 'processing')"
            f" AND (lease_ms IS NULL OR lease_ms < ?{mine})"
            f" ORDER BY created_ms LIMIT ?{skip_locked(self._sql)}) RETURNING *",
            (node_id, until_ms, now_ms, *((node_id,) if own else ()), limit),
        )
        return sorted((_job(r) for r in rows), key=lambda j: (j.created_ms, j.id))

    async def renew_job(self, job_id: str, node_id: str, until_ms: int) -> bool:
        """Extend this node's hold on one job; False if another node holds it now."""
        changed = await self._sql.execute(
            "UPDATE analysis_jobs SET lease_ms = ? WHERE id = ? AND node_id = ?",
            (until_ms, job_id, node_id),
        )
        return changed > 0

    async def renew_jobs(self, node_id: str, until_ms: int) -> None:
        await self._sql.execute(
            "UPDATE analysis_jobs SET lease_ms = ? WHERE node_id = ?"
            " AND state IN ('pending', 'processing')",
            (until_ms, node_id),
        )

    async def delete_job(self, job_id: str) -> None:
        await self._sql.execute("DELETE FROM analysis_jobs WHERE id = ?", (job_id,))


def _job(r: Row) -> AnalysisJobRow:
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
