"""Clip jobs: the queue, the workers, waiting for the live edge, and each job's state."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from livecut import metrics
from livecut.clips.planner import ClipPlan, NothingRecorded, plan_clip
from livecut.config import ClipsConfig
from livecut.media.remux import RemuxError, RemuxPart, remux_mp4
from livecut.store.index import new_id
from livecut.store.records import ClipRow, ClipState
from livecut.store.store import Store

log = logging.getLogger(__name__)

# How far before a clip's start to look for the keyframe it must begin at.
KEYFRAME_LOOKBACK_MS = 30_000
QUEUE_LIMIT = 1000
CLIP_FILE = "clip.mp4"


class QueueFull(RuntimeError):
    """Too many clips are waiting for a worker: the caller should retry later."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipRequest:
    stream_id: str
    session_id: str | None
    start_ms: int
    end_ms: int
    name: str | None


class ClipJobs:
    """Owns the worker tasks and the live-edge waiters; `start`/`stop` bound their lives."""

    def __init__(
        self, store: Store, config: ClipsConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._workers: list[asyncio.Task[None]] = []
        self._waiters: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._active: dict[str, tuple[str, int, int]] = {}  # clip -> (stream, start, end)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        for clip in self.store.index.unfinished_clips():
            # Interrupted by a restart: take it from the top; nothing partial was kept.
            self._admit(clip)
        for n in range(self.config.workers):
            task = asyncio.create_task(self._work(), name=f"clip-worker-{n}")
            task.add_done_callback(_log_death)
            self._workers.append(task)

    async def stop(self) -> None:
        tasks = [*self._workers, *self._waiters.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._waiters.clear()

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def active_ranges(self, stream_id: str) -> list[tuple[int, int]]:
        """Ranges that queued, waiting or running jobs will read: retention keeps them."""
        return [(s, e) for (st, s, e) in self._active.values() if st == stream_id]

    # requests ------------------------------------------------------------------
    def submit(self, request: ClipRequest) -> ClipRow:
        if self._queue.full():
            raise QueueFull(f"{self._queue.qsize()} clips are queued; retry shortly")
        now = self._now_ms()
        clip = ClipRow(
            id=new_id("clip"),
            stream_id=request.stream_id,
            session_id=request.session_id,
            name=request.name,
            state="queued",
            start_ms=request.start_ms,
            end_ms=request.end_ms,
            created_ms=now,
            updated_ms=now,
            error=None,
            result=None,
        )
        self.store.index.add_clip(clip)
        return self._admit(clip)

    def delete(self, clip_id: str) -> bool:
        if self.store.index.clip(clip_id) is None:
            return False
        waiter = self._waiters.pop(clip_id, None)
        if waiter is not None:
            waiter.cancel()
        self._active.pop(clip_id, None)
        self.store.index.delete_clip(clip_id)
        self.store.remove_clip_files(clip_id)
        self._signal(clip_id)
        return True

    async def wait_finished(self, clip_id: str, timeout_s: float) -> ClipRow | None:
        """The clip once ready or failed (or its current row if timeout_s passes first)."""
        clip = self.store.index.clip(clip_id)
        while clip is not None and clip.state not in ("ready", "failed"):
            event = self._finished.setdefault(clip_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                break
            clip = self.store.index.clip(clip_id)
        return clip

    # states --------------------------------------------------------------------
    def _admit(self, clip: ClipRow) -> ClipRow:
        self._active[clip.id] = (clip.stream_id, clip.start_ms, clip.end_ms)
        if self._needs_wait(clip):
            self._set_state(clip.id, "waiting")
            task = asyncio.create_task(self._wait_for_edge(clip), name=f"clip-wait:{clip.id}")
            task.add_done_callback(_log_death)
            self._waiters[clip.id] = task
        else:
            self._set_state(clip.id, "queued")
            self._queue.put_nowait(clip.id)
        row = self.store.index.clip(clip.id)
        assert row is not None
        return row

    def _needs_wait(self, clip: ClipRow) -> bool:
        session = (
            self.store.index.session(clip.session_id)
            if clip.session_id
            else self.store.index.live_session(clip.stream_id)
        )
        if session is None or session.state != "live":
            return False
        return (session.live_edge_ms or 0) < clip.end_ms

    async def _wait_for_edge(self, clip: ClipRow) -> None:
        deadline_ms = max(clip.end_ms, clip.created_ms) + self.config.max_wait_s * 1000
        while self._needs_wait(clip):
            left_s = (deadline_ms - self._now_ms()) / 1000
            if left_s <= 0:
                log.info("clip %s: live edge did not reach its end in time; cutting", clip.id)
                break
            await self.store.edges.wait(clip.stream_id, left_s)
        self._waiters.pop(clip.id, None)
        if self.store.index.clip(clip.id) is None:
            return  # deleted while it waited
        self._set_state(clip.id, "queued")
        await self._queue.put(clip.id)

    def _set_state(
        self,
        clip_id: str,
        state: ClipState,
        *,
        error: str | None = None,
        result: dict[str, object] | None = None,
    ) -> None:
        self.store.index.update_clip(
            clip_id, state=state, now_ms=self._now_ms(), error=error, result=result
        )
        if state in ("ready", "failed"):
            self._active.pop(clip_id, None)
            self._signal(clip_id)

    def _signal(self, clip_id: str) -> None:
        event = self._finished.pop(clip_id, None)
        if event is not None:
            event.set()

    # work ------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            clip_id = await self._queue.get()
            try:
                await self._process(clip_id)
            finally:
                self._queue.task_done()

    async def _process(self, clip_id: str) -> None:
        clip = self.store.index.clip(clip_id)
        if clip is None:
            return
        self._set_state(clip_id, "processing")
        began = time.monotonic()
        try:
            result = await self._cut(clip)
        except (NothingRecorded, RemuxError, OSError) as exc:
            log.warning("clip %s failed: %s", clip_id, exc)
            if self.store.index.clip(clip_id) is not None:
                self._set_state(clip_id, "failed", error=str(exc))
                metrics.CLIP_JOBS.labels("failed").inc()
            return
        if self.store.index.clip(clip_id) is None:
            self.store.remove_clip_files(clip_id)  # deleted while it was being cut
            return
        self._set_state(clip_id, "ready", result=result)
        metrics.CLIP_JOBS.labels("ready").inc()
        metrics.CLIP_PROCESSING_SECONDS.observe(time.monotonic() - began)
        metrics.CLIP_READY_SECONDS.observe(max(0.0, (self._now_ms() - clip.created_ms) / 1000))

    async def _cut(self, clip: ClipRow) -> dict[str, object]:
        segments = self.store.index.stream_segments(
            clip.stream_id,
            clip.start_ms - KEYFRAME_LOOKBACK_MS,
            clip.end_ms,
            session_id=clip.session_id,
        )
        plan = plan_clip(segments, clip.start_ms, clip.end_ms)
        folder = self.store.clip_dir(clip.id)
        folder.mkdir(parents=True, exist_ok=True)
        output = folder / CLIP_FILE
        parts = [
            RemuxPart(
                path=self.store.path(p.segment.path),
                init_path=None
                if p.segment.init_path is None
                else self.store.path(p.segment.init_path),
                start_ms=p.segment.start_ms,
                ref_pts_s=p.segment.ref_pts_s,
                from_ms=p.from_ms,
                to_ms=p.to_ms,
            )
            for p in plan.parts
        ]
        tracks = await asyncio.to_thread(
            remux_mp4, parts, clip_start_ms=plan.start_ms, output=output
        )
        digest = await asyncio.to_thread(_sha256, output)
        return _result(plan, tracks_dicts=[t.as_dict() for t in tracks], output=output, sha=digest)


def _result(
    plan: ClipPlan, *, tracks_dicts: list[dict[str, object]], output: Path, sha: str
) -> dict[str, object]:
    notes: list[str] = []
    if plan.starts_late:
        notes.append("the recording begins after the requested start")
    if plan.ends_early:
        notes.append("the recording ends before the requested end")
    if plan.holes:
        notes.append(f"{len(plan.holes)} unrecorded stretch(es) inside the range were skipped")
    # Report what the file holds: the end of its last video frame (or audio frame).
    by_kind = {t["kind"]: t.get("end_ms") for t in tracks_dicts}
    delivered_end = by_kind.get("video", by_kind.get("audio"))
    end_ms = delivered_end if isinstance(delivered_end, int) else plan.end_ms
    return {
        "start_ms": plan.start_ms,
        "end_ms": end_ms,
        "duration_ms": end_ms - plan.start_ms,
        "size_bytes": output.stat().st_size,
        "sha256": sha,
        "tracks": tracks_dicts,
        "holes": [{"start_ms": s, "end_ms": e} for s, e in plan.holes],
        "segments": len(plan.parts),
        "notes": notes,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
