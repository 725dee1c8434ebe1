"""Durable analysis jobs: shots of a session or a clip (previews included) and highlights
of a range, run in worker threads a few at a time; a job interrupted by a restart is run
again from the top."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livecut import metrics
from livecut.analysis.highlights import CaptionText, Highlight, find_highlights
from livecut.analysis.loudness import loudness_curve
from livecut.analysis.results import as_json, highlights_body, shots_job_body
from livecut.analysis.scan import (
    LOUDNESS_RATE,
    audio_in_range,
    frames_in_range,
    planned_runs,
    range_fps,
    run_files,
)
from livecut.analysis.shotlist import Picture, RangeAnalysis, analyse_frames
from livecut.clips.jobs import (
    KEYFRAME_LOOKBACK_MS,
    SPILL_LOOKAHEAD_MS,
    ClipJobs,
    ClipRequest,
    QueueFull,
    TakenOver,
    Window,
)
from livecut.clips.planner import NothingRecorded, PlannedRun
from livecut.media.subtitles import SubtitleError, parse_segment
from livecut.store.analysis import AnalysisIndex, AnalysisJobRow, JobState
from livecut.store.index import new_id
from livecut.store.media import job_prefix
from livecut.store.records import ClipRow, SegmentRow
from livecut.store.store import Store

log = logging.getLogger(__name__)

WORKERS = 1  # analysis decodes on every core it gets; more at once only shares them
QUEUE_LIMIT = 100
MAX_HIGHLIGHTS = 10


class Stopped(RuntimeError):
    """The daemon stopped during the job: it runs again at the next start."""


class AnalysisBusy(RuntimeError):
    """Too many analysis jobs are waiting: the caller should retry later."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HighlightsRequest:
    stream_id: str
    session_id: str | None
    from_ms: int
    to_ms: int
    max_clips: int = 3
    min_duration_ms: int = 5_000
    max_duration_ms: int = 30_000
    instruction: str | None = None
    windows: tuple[Window, ...] = ()  # given: cut exactly these, score nothing
    clip_options: dict[str, Any] | None = None  # formats, accuracy, name, ... of the clip


class AnalysisJobs:
    """Owns the analysis worker tasks; `start`/`stop` bound their lives."""

    def __init__(
        self,
        store: Store,
        clips: ClipJobs,
        *,
        base_url: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clips = clips
        self.base_url = base_url
        self.clock = clock
        # Unbounded, so every job found unfinished at start-up is taken back; new requests
        # are refused past QUEUE_LIMIT instead.
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        # Set on stop: a decode running in a worker thread gives up at its next frame.
        self._stopping = threading.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._progress: dict[str, float] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._mine: set[str] = set()  # the jobs this node runs or waits on
        # Many nodes: each job is held by the node running it for this long, renewed; one
        # whose node died is claimed by another. None: one node, no claims.
        self.lease_ms: int | None = None
        self._claims: asyncio.Task[None] | None = None

    @property
    def index(self) -> AnalysisIndex:
        return self.store.index.analysis

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def job_dir(self, job_id: str) -> Path:
        """Where a job writes its files (a shots job's previews) on this disk; with S3 they
        leave it for the bucket once the job has written them all."""
        return self.store.root / job_prefix(job_id)

    # lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        if self.lease_ms is None:
            unfinished = await self.index.unfinished_jobs()
        else:
            unfinished = await self._claim(own=True)
            self._claims = asyncio.create_task(self._hold_claims(), name="analysis-claims")
            self._claims.add_done_callback(_log_death)
        await self._resume(unfinished)
        for n in range(WORKERS):
            task = asyncio.create_task(self._work(), name=f"analysis-worker-{n}")
            task.add_done_callback(_log_death)
            self._workers.append(task)

    async def _claim(self, *, own: bool = False) -> list[AnalysisJobRow]:
        assert self.lease_ms is not None
        now = self._now_ms()
        return await self.index.claim_jobs(
            self.store.index.node_id,
            now_ms=now,
            until_ms=now + self.lease_ms,
            limit=QUEUE_LIMIT,
            own=own,
        )

    async def _hold_claims(self) -> None:
        """Renew this node's hold on its jobs, and claim the ones whose node died."""
        assert self.lease_ms is not None
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.index.renew_jobs(
                    self.store.index.node_id, self._now_ms() + self.lease_ms
                )
                claimed = await self._claim()
            except Exception:  # the index unreachable: try again next round
                log.exception("renewing and claiming analysis jobs failed")
                continue
            orphans = [j for j in claimed if j.id not in self._mine]
            metrics.JOBS_TAKEN_OVER.labels("analysis").inc(len(orphans))
            await self._resume(orphans)

    async def _resume(self, unfinished: list[AnalysisJobRow]) -> None:
        for job in unfinished:
            self._mine.add(job.id)
            if job.clip_id is not None and _waits_for_clip(job):
                clip = await self.store.index.clip(job.clip_id)
                if clip is None or clip.state in ("ready", "failed"):
                    await self.clip_finished(job.clip_id, clip)
                continue  # its clip job is run again by the clip queue; we wait for it
            # Interrupted by a restart: run again from the top (nothing partial is kept).
            self._enqueue(job.id)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = [*self._workers, *([self._claims] if self._claims else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._claims = None

    def progress(self, job_id: str) -> float | None:
        return self._progress.get(job_id)

    async def read_ranges(self, stream_id: str) -> list[tuple[int, int]]:
        """Ranges of the stream that pending and running jobs will decode, widened to the
        keyframe before and the audio after: retention and the disk floor keep them."""
        return [
            (job.from_ms - KEYFRAME_LOOKBACK_MS, job.to_ms + SPILL_LOOKAHEAD_MS)
            for job in await self.index.unfinished_jobs()
            if job.stream_id == stream_id
        ]

    async def wait_finished(self, job_id: str, timeout_s: float) -> AnalysisJobRow | None:
        job = await self.index.job(job_id)
        while job is not None and job.state not in ("completed", "failed"):
            event = self._finished.setdefault(job_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                break
            job = await self.index.job(job_id)
        return job

    # requests ------------------------------------------------------------------
    async def submit_shots(
        self,
        *,
        stream_id: str,
        session_id: str | None,
        clip_id: str | None,
        from_ms: int,
        to_ms: int,
        zero_ms: int,
        admitted: bool = False,
        callback: dict[str, str] | None = None,
    ) -> AnalysisJobRow:
        """Shots of a session (or a slice of it) or of a clip; replaces the earlier ones.
        `admitted`: asked for with a request already accepted, so not refused when the
        queue is full (AnalysisBusy is for new requests)."""
        subject = f"clip:{clip_id}" if clip_id is not None else f"session:{session_id}"
        earlier = await self.index.job_of(subject)
        if earlier is not None:
            await self._remove(earlier)
        return await self._add(
            kind="shots",
            subject=subject,
            stream_id=stream_id,
            session_id=session_id,
            clip_id=clip_id,
            from_ms=from_ms,
            to_ms=to_ms,
            zero_ms=zero_ms,
            options=dict(callback or {}),  # callback_url, callback_id: where shots.ready goes
            admitted=admitted,
        )

    async def submit_highlights(self, request: HighlightsRequest) -> AnalysisJobRow:
        return await self._add(
            kind="highlights",
            subject=None,
            stream_id=request.stream_id,
            session_id=request.session_id,
            clip_id=None,
            from_ms=request.from_ms,
            to_ms=request.to_ms,
            zero_ms=request.from_ms,
            options={
                "max_clips": request.max_clips,
                "min_duration_ms": request.min_duration_ms,
                "max_duration_ms": request.max_duration_ms,
                "instruction": request.instruction,
                "windows": [
                    {"start_ms": w.start_ms, "end_ms": w.end_ms, "label": w.label}
                    for w in request.windows
                ],
                "clip": request.clip_options or {},
            },
        )

    async def delete(self, job: AnalysisJobRow) -> None:
        await self._remove(job)

    async def clip_deleted(self, clip_id: str) -> None:
        """A clip's shots go with it."""
        job = await self.index.job_of(f"clip:{clip_id}")
        if job is not None:
            await self._remove(job)

    def jobs_for_clip(self, clip: ClipRow) -> list[AnalysisJobRow]:
        """ClipJobs' hook: the jobs a new clip asks for, written with it. Its shots job
        (generate_shots) waits, pending, until the clip is cut, and reads what it delivered."""
        meta = (clip.options or {}).get("meta") or {}
        if not (isinstance(meta, dict) and meta.get("generate_shots") is True):
            return []
        return [
            self._row(
                kind="shots",
                subject=f"clip:{clip.id}",
                stream_id=clip.stream_id,
                session_id=clip.session_id,
                clip_id=clip.id,
                from_ms=clip.start_ms,
                to_ms=clip.end_ms,
                zero_ms=clip.start_ms,
                # The clip's own callback hears of its shots too.
                options={k: str(meta[k]) for k in ("callback_url", "callback_id") if meta.get(k)},
            )
        ]

    async def clip_done(self, clip: ClipRow) -> None:
        """ClipJobs' hook: a clip is ready or failed."""
        await self.clip_finished(clip.id, clip)

    async def clip_gone(self, clip_id: str) -> None:
        """ClipJobs' hook: a clip was deleted."""
        await self.clip_deleted(clip_id)
        await self.clip_finished(clip_id, None)

    async def clip_finished(self, clip_id: str, clip: ClipRow | None) -> None:
        """The jobs waiting for a clip go on: its shots job runs on what was cut, and a
        highlights job is completed with the clip that cut its windows. If the clip was
        not cut, they fail, saying why."""
        for job in await self.index.jobs_of_clip(clip_id):
            if not _waits_for_clip(job):
                continue
            if clip is not None and clip.state == "ready":
                if job.kind == "highlights":
                    await self._set(job.id, "completed", event="highlights.ready")
                else:
                    await self._after_clip(job, clip)
            elif clip is None and job.kind == "shots":
                await self._remove(job)  # its clip is gone (or was never written)
            else:
                reason = "deleted" if clip is None else (clip.error or "failed")
                await self._set(job.id, "failed", error=f"the clip {clip_id} was not cut: {reason}")

    async def _after_clip(self, job: AnalysisJobRow, clip: ClipRow) -> None:
        """A clip's shots job, on the span it delivered; run here, by the node that cut it
        (or found it cut)."""
        from_ms, to_ms = clip.delivered_span()
        now = self._now_ms()
        await self.index.set_job_span(job.id, from_ms=from_ms, to_ms=to_ms, now_ms=now)
        await self._take(job.id, now)

    # states --------------------------------------------------------------------
    async def _add(self, *, admitted: bool = False, **fields: Any) -> AnalysisJobRow:
        if not admitted and self._queue.qsize() >= QUEUE_LIMIT:
            raise AnalysisBusy(
                f"{self._queue.qsize()} analysis jobs are waiting (at most {QUEUE_LIMIT});"
                " retry shortly"
            )
        job = self._row(**fields)
        await self.index.add_job(job)
        await self._take(job.id, job.created_ms)
        return job

    async def _take(self, job_id: str, now_ms: int) -> None:
        """Run a job here: held by this node (many nodes) and queued."""
        if self.lease_ms is not None:
            await self.index.hold_job(job_id, self.store.index.node_id, now_ms + self.lease_ms)
        self._mine.add(job_id)
        self._enqueue(job_id)

    def _row(self, **fields: Any) -> AnalysisJobRow:
        now = self._now_ms()
        return AnalysisJobRow(
            id=new_id(str(fields["kind"])),
            state="pending",
            result=None,
            error=None,
            created_ms=now,
            updated_ms=now,
            **fields,
        )

    def _enqueue(self, job_id: str) -> None:
        self._queue.put_nowait(job_id)

    async def _remove(self, job: AnalysisJobRow) -> None:
        await self.index.delete_job(job.id)
        self._progress.pop(job.id, None)
        if job.kind == "shots":  # its previews, wherever they are (a highlights job has none)
            await self.store.remove_folder(job_prefix(job.id))
        self._signal(job.id)

    async def _set(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        clip_id: str | None = None,
        event: str | None = None,
        worker: bool = False,
    ) -> bool:
        """`worker`: set by the worker running the job, so only while this node holds it
        (many nodes: one that stalled and was taken over leaves the job to the new
        holder); False, and the job let go, if it does not."""
        body = highlights_body if event == "highlights.ready" else shots_job_body
        held_by = self.store.index.node_id if worker and self.lease_ms is not None else None
        written = await self.index.update_job(
            job_id,
            state=state,
            now_ms=self._now_ms(),
            result=result,
            error=error,
            clip_id=clip_id,
            event=(
                None
                if event is None
                else (event, lambda j: as_json(body(j, base_url=self.base_url(), progress=1.0)))
            ),
            held_by=held_by,
        )
        if held_by is not None and written is None:
            await self._let_go(job_id)
            return False
        if state in ("completed", "failed"):
            self._progress.pop(job_id, None)
            self._signal(job_id)
            job = await self.index.job(job_id)
            if job is not None:
                metrics.ANALYSIS_JOBS.labels(job.kind, state).inc()
        return True

    async def _holds(self, job_id: str) -> bool:
        """Whether this node still holds the job (always, on one node); renewed if so."""
        if self.lease_ms is None:
            return True
        until = self._now_ms() + self.lease_ms
        return await self.index.renew_job(job_id, self.store.index.node_id, until)

    async def _let_go(self, job_id: str) -> None:
        """Another node took the job over after this one stalled (or it was deleted): this
        node's files of it go (the local folder only: the stored objects are the holder's)."""
        log.warning("analysis job %s: no longer this node's; dropping its work", job_id)
        self._mine.discard(job_id)
        self._progress.pop(job_id, None)
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)

    def _signal(self, job_id: str) -> None:
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()

    # work ------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self._process(job_id)
            finally:
                self._queue.task_done()

    async def _process(self, job_id: str) -> None:
        job = await self.index.job(job_id)
        if job is None:
            return  # deleted while it waited
        if not await self._set(job.id, "processing", worker=True):
            return
        self._progress[job.id] = 0.0
        began = time.monotonic()
        try:
            if job.kind == "shots":
                await self._shots(job)
            else:
                await self._highlights(job)
            metrics.ANALYSIS_SECONDS.labels(job.kind).observe(time.monotonic() - began)
        except Stopped:
            return  # left processing: the next start runs it again
        except TakenOver:
            await self._let_go(job.id)
        except (NothingRecorded, OSError, ValueError, QueueFull) as exc:
            await self._fail(job.id, str(exc))
        except Exception as exc:  # a worker must outlive any one job's bug
            log.exception("analysis job %s: unexpected error", job.id)
            await self._fail(job.id, f"internal error ({type(exc).__name__}); see the daemon's log")

    async def _fail(self, job_id: str, error: str) -> None:
        if not await self._holds(job_id):
            await self._let_go(job_id)
            return
        log.warning("analysis job %s failed: %s", job_id, error)
        # Nothing of a failed job is served: this disk's previews go. What it uploaded stays
        # until the job is deleted or asked for again (a node that took the job over may
        # be uploading the same objects now).
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
        if await self.index.job(job_id) is not None:
            await self._set(job_id, "failed", error=error, worker=True)

    async def _segments(self, job: AnalysisJobRow, kind: str | None = None) -> list[SegmentRow]:
        segments: list[SegmentRow] = await self.store.index.stream_segments(
            job.stream_id,
            job.from_ms - (KEYFRAME_LOOKBACK_MS if kind is None else 0),
            job.to_ms,
            session_id=job.session_id,
            kind=kind,
        )
        return segments

    def _on_progress(self, job_id: str, loop: asyncio.AbstractEventLoop) -> Callable[[float], None]:
        def report(share: float) -> None:
            loop.call_soon_threadsafe(self._progress.__setitem__, job_id, share)

        return report

    async def _runs(self, job: AnalysisJobRow) -> list[PlannedRun]:
        return planned_runs(await self._segments(job), job.from_ms, job.to_ms)

    async def _analyse(
        self, job: AnalysisJobRow, runs: list[PlannedRun], *, previews: bool
    ) -> RangeAnalysis:
        """Decode the runs (their files fetched by the caller) for shots and motion."""
        path_of = self.store.path
        report = self._on_progress(job.id, asyncio.get_running_loop())

        def frames() -> Iterator[tuple[float, Picture]]:
            for wall_ms, picture in frames_in_range(runs, job.from_ms, job.to_ms, path_of):
                if self._stopping.is_set():
                    raise Stopped("the daemon is stopping")
                yield (wall_ms - job.from_ms) / 1000, picture

        def work() -> RangeAnalysis:
            fps = range_fps(runs, path_of)
            duration_s = (job.to_ms - job.from_ms) / 1000
            return analyse_frames(
                frames(), fps, duration_s=duration_s, previews=previews, on_progress=report
            )

        return await asyncio.to_thread(work)

    async def _shots(self, job: AnalysisJobRow) -> None:
        runs = await self._runs(job)
        async with self.store.fetched(run_files(runs)):
            found = await self._analyse(job, runs, previews=True)
        folder = self.job_dir(job.id)
        shots = []
        for n, shot in enumerate(found.shots):
            # Written here first, as a clip's outputs are, then kept for every node at once.
            await self.store.write_file(folder / f"{n}.webp", shot.preview)
            shots.append(
                {
                    "start_ms": job.from_ms + round(shot.start_s * 1000),
                    "end_ms": min(job.to_ms, job.from_ms + round(shot.end_s * 1000)),
                    "kind": "start" if shot.cut is None else shot.cut.kind,
                    "score": {} if shot.cut is None else shot.cut.explain(),
                }
            )
        if not await self._holds(job.id):
            raise TakenOver(job.id)  # the new holder's previews are the ones kept
        # Servable from any node (S3: uploaded) before the job says it completed.
        await self.store.keep_folder(job_prefix(job.id))
        if await self.index.job(job.id) is None:
            await self.store.remove_folder(job_prefix(job.id))  # deleted while it ran
            return
        await self._set(
            job.id, "completed", result={"shots": shots}, event="shots.ready", worker=True
        )

    async def _highlights(self, job: AnalysisJobRow) -> None:
        options = job.options
        given = [
            Window(start_ms=int(w["start_ms"]), end_ms=int(w["end_ms"]), label=w.get("label"))
            for w in options.get("windows") or []
        ]
        chosen: list[dict[str, Any]]
        if given:
            # The caller chose the moments: cut exactly those, score nothing.
            chosen = [
                {"start_ms": w.start_ms, "end_ms": w.end_ms, "label": w.label, "score": None}
                for w in given
            ]
        else:
            found = await self._score(job)
            chosen = [
                {
                    "start_ms": job.from_ms + round(h.start_s * 1000),
                    "end_ms": job.from_ms + round(h.end_s * 1000),
                    "label": h.label,
                    "score": h.score,
                    "parts": h.explain(),
                }
                for h in found
            ]
        if not chosen:
            await self._set(
                job.id,
                "failed",
                error="no moment in the range is long enough to cut",
                worker=True,
            )
            return
        clip_options = dict(options.get("clip") or {})
        meta = clip_options.pop("meta", None)
        request = ClipRequest(
            stream_id=job.stream_id,
            session_id=job.session_id,
            windows=tuple(
                Window(start_ms=int(c["start_ms"]), end_ms=int(c["end_ms"]), label=c["label"])
                for c in sorted(chosen, key=lambda c: int(c["start_ms"]))
            ),
            name=clip_options.get("name"),
            accuracy="keyframe" if clip_options.get("accuracy") == "keyframe" else "frame",
            formats=tuple(clip_options.get("formats") or ("mp4",)),
            rendition=str(clip_options.get("rendition") or "best"),
            reencode_edges=clip_options.get("reencode_edges") is True,
            faststart=clip_options.get("faststart") is True,
            render=render if isinstance(render := clip_options.get("render"), dict) else None,
            meta=meta if isinstance(meta, dict) else None,
        )
        if await self.index.job(job.id) is None:
            return
        sessions = (job.session_id,) if job.session_id else ()
        clip = await self.clips.submit(request, sessions=sessions)
        await self._set(
            job.id, "processing", result={"highlights": chosen}, clip_id=clip.id, worker=True
        )

    async def _score(self, job: AnalysisJobRow) -> list[Highlight]:
        options = job.options
        runs = await self._runs(job)
        async with self.store.fetched(run_files(runs)):
            analysis = await self._analyse(job, runs, previews=False)
            samples, first_ms = await asyncio.to_thread(
                audio_in_range, runs, job.from_ms, job.to_ms, self.store.path
            )
        loudness = await asyncio.to_thread(
            loudness_curve, samples, LOUDNESS_RATE, start_s=(first_ms - job.from_ms) / 1000
        )
        captions = await self._captions(job)
        return find_highlights(
            duration_s=(job.to_ms - job.from_ms) / 1000,
            loudness=loudness,
            cuts_s=[s.start_s for s in analysis.shots if s.cut is not None],
            captions=captions,
            max_clips=int(options["max_clips"]),
            min_duration_s=int(options["min_duration_ms"]) / 1000,
            max_duration_s=int(options["max_duration_ms"]) / 1000,
            instruction=options.get("instruction"),
            motion=analysis.motion,
        )

    async def _captions(self, job: AnalysisJobRow) -> list[CaptionText]:
        """Cue text of the first subtitles rendition over the range, seconds from its start."""
        subtitles = await self._segments(job, kind="subtitles")
        if not subtitles:
            return []
        video = await self._segments(job)
        captions: list[CaptionText] = []
        async with self.store.fetched(s.path for s in subtitles):
            texts = [
                (s, await asyncio.to_thread(self.store.path(s.path).read_bytes)) for s in subtitles
            ]
        for segment, data in texts:
            try:
                cues = parse_segment(
                    data,
                    pts_to_wall_ms=lambda t: _pts_to_wall_ms(video, t),
                    segment_start_ms=segment.start_ms,
                )
            except SubtitleError as exc:
                log.warning("highlights %s: skipping subtitles %s: %s", job.id, segment.path, exc)
                continue
            captions += [
                CaptionText(
                    start_s=(c.start_ms - job.from_ms) / 1000,
                    end_s=(c.end_ms - job.from_ms) / 1000,
                    text=c.text.replace("\n", " "),
                )
                for c in cues
            ]
        return sorted(set(captions), key=lambda c: (c.start_s, c.text))


def _waits_for_clip(job: AnalysisJobRow) -> bool:
    """A clip's shots job not yet started, or a highlights job whose clip is being cut."""
    if job.kind == "shots":
        return job.clip_id is not None and job.state == "pending"
    return job.clip_id is not None and job.state not in ("completed", "failed")


def _pts_to_wall_ms(video: list[SegmentRow], media_s: float) -> float:
    """A media time (a WebVTT cue's MPEG-TS time) on the wall clock, by the nearest video
    segment's PDT."""
    if not video:
        return media_s * 1000

    def distance(segment: SegmentRow) -> float:
        span_s = (segment.end_ms - segment.start_ms) / 1000
        if segment.ref_pts_s <= media_s <= segment.ref_pts_s + span_s:
            return 0.0
        return min(abs(media_s - segment.ref_pts_s), abs(media_s - segment.ref_pts_s - span_s))

    nearest = min(video, key=distance)
    return nearest.start_ms + (media_s - nearest.ref_pts_s) * 1000


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
