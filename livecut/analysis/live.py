"""Shot detection on the live recording: a task per stream follows its newest session and
feeds each newly indexed segment's frames to a ShotDetector. A transition still open when
its run ends (a gap, a discontinuity, the session's end) is reported then (flush)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from livecut.analysis.frames import decoded_frames, video_fps
from livecut.analysis.shots import Cut, ShotDetector
from livecut.config import StreamConfig
from livecut.media.clock import unwrap_s
from livecut.store.analysis import ShotCutRow
from livecut.store.records import SegmentRow, segment_files
from livecut.store.store import Store

log = logging.getLogger(__name__)

# A wake-up even without a change notice, so a missed notice delays work, never stops it.
POLL_S = 5.0


@dataclass(kw_only=True, slots=True)
class _Follow:
    """Where one stream's detection stands: the detector carries state across segments."""

    session_id: str | None = None
    last: SegmentRow | None = None
    detector: ShotDetector | None = None
    origin_ms: int = 0  # wall time the detector's seconds count from
    seen: set[int] = field(default_factory=set)


class LiveShots:
    """Owns one follower task per stream with `shots = true`; start/stop bound their lives."""

    def __init__(
        self,
        store: Store,
        streams: Sequence[StreamConfig],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.streams = [s for s in streams if s.shots and s.enabled]
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        for stream in self.streams:
            self.follow(stream.id)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def follow(self, stream_id: str) -> None:
        """Start detecting on one stream (at start-up, or when a config reload adds it)."""
        running = self._tasks.get(stream_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._follow(stream_id), name=f"live-shots:{stream_id}")
        task.add_done_callback(_log_death)
        self._tasks[stream_id] = task

    async def unfollow(self, stream_id: str) -> None:
        task = self._tasks.pop(stream_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self, stream_id: str) -> None:
        state = _Follow()
        while True:
            sessions = await self.store.index.sessions(stream_id, limit=1)
            # A notice that came while we decoded is gone: look again before waiting.
            while sessions and await self._catch_up(stream_id, sessions[0].id, state):
                sessions = await self.store.index.sessions(stream_id, limit=1)
            await self.store.edges.wait(stream_id, POLL_S)

    async def _catch_up(self, stream_id: str, session_id: str, state: _Follow) -> bool:
        """Detect on every segment indexed since the last call; False when there was none."""
        if state.session_id != session_id:
            await self._flush(stream_id, state)
            state.session_id, state.last, state.detector = session_id, None, None
            state.seen.clear()
        after = -1 if state.last is None else state.last.start_ms
        segments = await self.store.index.stream_segments(
            stream_id, after + 1, 2**62, session_id=session_id
        )
        worked = False
        for segment in segments:
            if segment.id in state.seen or not segment.has_video:
                continue
            state.seen.add(segment.id)
            worked = True
            if state.detector is not None and not _continues(state.last, segment):
                await self._flush(stream_id, state)  # a new run: what was open ends here
            try:
                async with self.store.fetched(segment_files([segment])):
                    cuts = await asyncio.to_thread(self._detect, state, segment)
            except (OSError, ValueError) as exc:
                log.warning("shots: skipping segment %s of %s: %s", segment.seq, stream_id, exc)
                state.detector = None  # the next segment starts a fresh shot
                continue
            found_ms = int(self.clock() * 1000)
            await self.store.index.analysis.add_shot_cuts(
                [_row(stream_id, session_id, state.origin_ms, c, found_ms) for c in cuts]
            )
            state.last = segment
        if not worked and state.detector is not None:
            session = await self.store.index.session(session_id)
            if session is not None and session.state == "ended":
                await self._flush(stream_id, state)
        return worked

    async def _flush(self, stream_id: str, state: _Follow) -> None:
        """Report a transition the detector still holds open; its run has ended."""
        if state.detector is None or state.session_id is None:
            return
        cuts = state.detector.flush()
        state.detector = None
        found_ms = int(self.clock() * 1000)
        await self.store.index.analysis.add_shot_cuts(
            [_row(stream_id, state.session_id, state.origin_ms, c, found_ms) for c in cuts]
        )

    def _detect(self, state: _Follow, segment: SegmentRow) -> list[Cut]:
        """Runs in a worker thread: decoding and detection hold no event-loop state."""
        path = self.store.path(segment.path)
        init = None if segment.init_path is None else self.store.path(segment.init_path)
        if state.detector is None or not _continues(state.last, segment):
            # A new run: frames before a gap or a discontinuity are not this shot's.
            state.detector = ShotDetector(video_fps([path], init))
            state.origin_ms = segment.start_ms
        detector = state.detector
        cuts: list[Cut] = []
        wraps = segment.init_path is None  # MPEG-TS: 33-bit timestamps wrap every 26.5 h
        for media_s, picture in decoded_frames([path], init):
            media_s = unwrap_s(media_s, segment.ref_pts_s, wraps=wraps)
            wall_ms = segment.start_ms + (media_s - segment.ref_pts_s) * 1000
            cuts += detector.process_frame((wall_ms - state.origin_ms) / 1000, picture)
        return cuts


def _continues(previous: SegmentRow | None, segment: SegmentRow) -> bool:
    """Whether segment follows on in the same run (no gap, no discontinuity)."""
    return (
        previous is not None
        and segment.seq == previous.seq + 1
        and segment.epoch == previous.epoch
        and segment.init_path == previous.init_path
    )


def _row(stream_id: str, session_id: str, origin_ms: int, cut: Cut, found_ms: int) -> ShotCutRow:
    return ShotCutRow(
        stream_id=stream_id,
        session_id=session_id,
        at_ms=origin_ms + round(cut.time_s * 1000),
        kind=cut.kind,
        span_start_ms=origin_ms + round(cut.span_s[0] * 1000),
        span_end_ms=origin_ms + round(cut.span_s[1] * 1000),
        score=cut.explain(),
        found_ms=found_ms,
    )


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
