"""A stream's sessions and status: when a broadcast begins and ends, across all its renditions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from livecut import metrics
from livecut.config import StreamConfig
from livecut.hls.tracker import Gap
from livecut.logs import Repeats
from livecut.store.records import GapRow, RenditionRow, SessionRow
from livecut.store.store import Store

log = logging.getLogger(__name__)

# An error that keeps recurring is logged once, then summarised at most this often.
REPEAT_SUMMARY_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RenditionTarget:
    """One media playlist to record, as chosen from the stream's master playlist."""

    name: str
    uri: str
    kind: str  # video, audio, subtitles
    main: bool  # the video rendition clips are cut from
    bandwidth: int | None = None
    resolution: str | None = None
    codecs: str | None = None
    language: str | None = None


@dataclass(kw_only=True, slots=True)
class StreamStatus:
    state: str = "connecting"  # connecting, recording, stalled, ended, failing
    last_error: str | None = None
    last_error_ms: int | None = None
    media_url: str | None = None
    segments: int = 0
    gaps: int = 0
    errors: int = 0
    renditions: dict[str, str] = field(default_factory=dict)  # name -> media playlist URL

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "media_playlist": self.media_url,
            "renditions": dict(self.renditions),
            "segments_recorded": self.segments,
            "gaps": self.gaps,
            "errors": self.errors,
        }


class SessionKeeper:
    """The one place a stream's sessions open and end; renditions report to it.

    Renditions reload their playlists at their own pace, so they notice an encoder
    reset (or a clock jump) one after another. Each rendition therefore carries the
    generation it records in: the first to notice ends the session and starts the next
    generation; media a lagging rendition still commits from the old encoder goes into
    the old session, not the new one.

    Opening and ending a session each check the keeper's state, then wait on the index:
    they take turns under a lock, or renditions arriving together (as they do when every
    index call suspends, on PostgreSQL) would each open a session of their own.
    """

    def __init__(self, stream: StreamConfig, store: Store, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.store = store
        self.clock = clock
        self.status = StreamStatus()
        self.current: SessionRow | None = None
        self.generation = 0  # bumped by every reset or clock jump
        self._by_generation: dict[int, SessionRow] = {}  # recent generations' sessions
        self._rows: dict[str, dict[str, RenditionRow]] = {}  # session id -> name -> row
        self._ended: set[str] = set()  # renditions that saw EXT-X-ENDLIST this session
        self.active: set[str] = set()  # renditions being recorded
        self._last_commit_ms: int | None = None
        self._all_ended = False
        self._targets: dict[str, int] = {}  # rendition -> its target duration
        self._repeats = Repeats(REPEAT_SUMMARY_S)
        self._fields = {"stream": stream.id}  # what JSON log lines carry besides the text
        self._sessions_lock = asyncio.Lock()  # held while a session opens or ends

    @property
    def target_ms(self) -> int:
        """The longest target duration among the renditions (2 s until one is read)."""
        return max(self._targets.values(), default=2000)

    def target_duration(self, name: str, target_ms: int) -> None:
        self._targets[name] = target_ms

    def forget(self, name: str) -> None:
        """A rendition is no longer recorded (the master playlist dropped it)."""
        self._targets.pop(name, None)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # start-up ---------------------------------------------------------------------
    async def resume(self) -> None:
        """After a restart: keep the live session if the origin may still be in it."""
        session = await self.store.index.live_session(self.stream.id)
        if session is None:
            return
        edge = session.live_edge_ms or session.started_ms
        if self.now_ms() - edge <= self.stream.session_gap_s * 1000:
            self.current = session
            self._by_generation[self.generation] = session
            self._rows[session.id] = {
                r.name: r for r in await self.store.index.renditions(session.id)
            }
            self._last_commit_ms = self.now_ms()
            log.info(
                "stream %s: resuming session %s", self.stream.id, session.id, extra=self._fields
            )
        else:
            await self.store.index.end_session(session.id, ended_ms=edge, reason="restart")

    async def resume_after_seq(self, name: str) -> int | None:
        """The last sequence number this rendition stored in a resumed session."""
        row = None if self.current is None else self._rows.get(self.current.id, {}).get(name)
        if row is None:
            return None
        last = await self.store.index.last_segment(row.id)
        return None if last is None else last.seq

    # what renditions report -----------------------------------------------------------
    async def rendition_row(
        self, target: RenditionTarget, *, generation: int, clock: str, start_ms: int
    ) -> RenditionRow:
        """The row a rendition commits into, opening a session if none is live.

        A rendition still in an earlier generation (it has not yet seen the reset that
        ended that generation's session) commits into that session.
        """
        async with self._sessions_lock:
            session = self._by_generation.get(generation) if generation < self.generation else None
            if session is None:
                session = await self._open(clock=clock, start_ms=start_ms)
        rows = self._rows.setdefault(session.id, {})
        row = rows.get(target.name)
        if row is None:
            row = await self.store.index.add_rendition(
                session.id,
                name=target.name,
                uri=target.uri,
                kind=target.kind,
                main=target.main,
                bandwidth=target.bandwidth,
                resolution=target.resolution,
                codecs=target.codecs,
                language=target.language,
            )
            rows[target.name] = row
        return row

    async def _open(self, *, clock: str, start_ms: int) -> SessionRow:
        """The live session, opened if there is none (the caller holds the lock)."""
        if self.current is None:
            self.current = await self.store.index.open_session(
                self.stream.id, clock=clock, started_ms=start_ms
            )
            self._ended = set()
            metrics.SESSIONS_STARTED.labels(self.stream.id).inc()
            log.info(
                "stream %s: session %s started", self.stream.id, self.current.id, extra=self._fields
            )
        self._by_generation[self.generation] = self.current
        return self.current

    def refresh_state(self) -> StreamStatus:
        """Derive the stream's state from what happened last, rather than track it by hand."""
        now = self.now_ms()
        last_commit = self._last_commit_ms
        last_error = self.status.last_error_ms
        # Three target durations without a new segment is what players call a stall.
        fresh = (
            self.current is not None
            and last_commit is not None
            and now - last_commit <= 3 * self.target_ms
        )
        if self._all_ended and not fresh:
            state = "ended"
        elif fresh:
            state = "recording"
        elif last_error is not None and (last_commit is None or last_error > last_commit):
            state = "failing"
        elif last_commit is None:
            state = "connecting"
        else:
            state = "stalled"
        self.status.state = state
        return self.status

    def committed(
        self, name: str, *, session_id: str, end_ms: int, size: int, main: bool = True
    ) -> None:
        # The live edge is the main (video) rendition's: a clip that waits for it must
        # not start because audio or subtitles got there first.
        if main and self.current is not None and self.current.id == session_id:
            self.current = replace(
                self.current, live_edge_ms=max(end_ms, self.current.live_edge_ms or 0)
            )
        self._last_commit_ms = self.now_ms()
        self._all_ended = False
        self.status.segments += 1
        metrics.SEGMENTS_INGESTED.labels(self.stream.id).inc()
        metrics.BYTES_INGESTED.labels(self.stream.id).inc(size)
        self.store.edges.changed(self.stream.id)

    async def reset(self, name: str, generation: int, reason: str) -> int:
        """A rendition saw a new encoder (or its clock go back): its next generation.

        The first rendition to see it ends the session; the others, arriving in a
        generation that has already moved on, just catch up.
        """
        async with self._sessions_lock:
            if generation >= self.generation:
                if self.current is not None:
                    await self._end(reason, self.current.live_edge_ms or self.now_ms())
                self.generation += 1
                # Late media of generations this old has nowhere to go but the newest session.
                for old in [g for g in self._by_generation if g < self.generation - 4]:
                    del self._by_generation[old]
                log.info(
                    "stream %s/%s: %s, now generation %d",
                    self.stream.id,
                    name,
                    reason,
                    self.generation,
                )
            return self.generation

    @property
    def all_ended(self) -> bool:
        """Every rendition saw EXT-X-ENDLIST and nothing new came since."""
        return self._all_ended

    async def ended(self, name: str) -> None:
        self._ended.add(name)
        if not self.active <= self._ended:
            return  # other renditions are still going
        if not self._all_ended:
            log.info(
                "stream %s: ended (EXT-X-ENDLIST); watching the origin for a new broadcast",
                self.stream.id,
                extra=self._fields,
            )
        self._all_ended = True
        async with self._sessions_lock:
            if self.current is not None:
                await self._end("endlist", self.current.live_edge_ms or self.now_ms())

    async def check_silence(self) -> None:
        async with self._sessions_lock:
            if self.current is None:
                return
            now = self.now_ms()
            last = self._last_commit_ms or self.current.started_ms
            silent_ms = now - last
            if silent_ms > self.stream.session_gap_s * 1000:
                await self._end("silence", self.current.live_edge_ms or self.current.started_ms)

    async def end(self, reason: str, ended_ms: int) -> None:
        async with self._sessions_lock:
            await self._end(reason, ended_ms)

    async def _end(self, reason: str, ended_ms: int) -> None:
        """End the live session (the caller holds the lock)."""
        if self.current is None:
            return
        await self.store.index.end_session(self.current.id, ended_ms=ended_ms, reason=reason)
        log.info(
            "stream %s: session %s ended (%s)",
            self.stream.id,
            self.current.id,
            reason,
            extra=self._fields,
        )
        # Rows stay known while a lagging rendition of this generation may still commit.
        self._rows = {
            sid: rows
            for sid, rows in self._rows.items()
            if any(s.id == sid for s in self._by_generation.values())
        }
        self.current = None
        self._ended = set()
        self.store.edges.changed(self.stream.id)

    async def gap(self, name: str, generation: int, gap: Gap, *, reason: str | None = None) -> None:
        session = self._by_generation.get(generation)
        if generation == self.generation:
            session = self.current
        row = None if session is None else self._rows.get(session.id, {}).get(name)
        if row is None:
            return  # nothing recorded yet in this session: there is nothing to have a hole in
        why = reason or gap.reason
        await self.store.index.add_gap(
            GapRow(
                rendition_id=row.id,
                start_ms=gap.start_ms,
                end_ms=gap.end_ms,
                first_seq=gap.first_seq,
                last_seq=gap.last_seq,
                reason=why,
            )
        )
        self.status.gaps += 1
        metrics.GAPS.labels(self.stream.id, why).inc()
        metrics.GAP_SECONDS.labels(self.stream.id).inc(max(0, gap.end_ms - gap.start_ms) / 1000)
        log.warning(
            "stream %s/%s: gap %s..%s (seq %s-%s, %s)",
            self.stream.id,
            name,
            gap.start_ms,
            gap.end_ms,
            gap.first_seq,
            gap.last_seq,
            why,
            extra=self._fields,
        )
        self.store.edges.changed(self.stream.id)

    def error(self, kind: str, message: str) -> None:
        """A failed request or an unusable answer. After EXT-X-ENDLIST the origin may
        well be gone: that is neither an origin error nor worth a warning."""
        fields = {"stream": self.stream.id, "kind": kind}
        if self._all_ended:
            log.debug("stream %s (ended): %s", self.stream.id, message, extra=fields)
            return
        self.status.errors += 1
        self.status.last_error = message
        self.status.last_error_ms = self.now_ms()
        metrics.ORIGIN_ERRORS.labels(self.stream.id, kind).inc()
        line = self._repeats.note(message, self.clock())
        if line is not None:
            log.warning("stream %s: %s: %s", self.stream.id, kind, line, extra=fields)
        # The stream's state may have changed (failing): wake whoever watches it.
        self.store.edges.changed(self.stream.id)

    def recovered(self) -> None:
        """A playlist brought new segments: earlier errors are history."""
        for line in self._repeats.flush(self.clock()):
            log.info("stream %s: %s", self.stream.id, line, extra=self._fields)
        if self.status.last_error is not None:
            log.info("stream %s: recovered", self.stream.id, extra=self._fields)
            self.status.last_error = None
            self.status.last_error_ms = None
            self.store.edges.changed(self.stream.id)
