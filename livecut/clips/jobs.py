"""Clip jobs: the queue, the workers, waiting for the live edge, and each job's state."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from livecut import metrics
from livecut.clips.hls import vod_playlist
from livecut.clips.planner import ClipPlan, NothingRecorded, PlannedRun, group_runs, plan_clip
from livecut.clips.render import RenderOutcome, render_clip, render_spec
from livecut.config import ClipsConfig
from livecut.media.remux import Presented, RemuxError, RemuxRun, remux_mp4
from livecut.media.render import RenderError, RenderSpec
from livecut.media.subtitles import (
    Cue,
    SubtitleError,
    clip_cues,
    parse_segment,
    render_webvtt,
)
from livecut.media.verify import VerifyError, verify_by_decoding
from livecut.store.analysis import AnalysisJobRow
from livecut.store.index import new_id
from livecut.store.media import Reads
from livecut.store.records import ClipRow, ClipState, SegmentRow
from livecut.store.store import Store

log = logging.getLogger(__name__)

# How far before a clip's start to look for the keyframe it must begin at.
KEYFRAME_LOOKBACK_MS = 30_000
# ...and how far after its end, so the planner finds the segment that holds the audio
# (and open-GOP pictures) of the clip's last moments (PlannedRun.spill).
SPILL_LOOKAHEAD_MS = 15_000
QUEUE_LIMIT = 1000


class QueueFull(RuntimeError):
    """Too many clips are waiting for a worker: the caller should retry later."""


Accuracy = Literal["frame", "keyframe"]
Verify = Literal["structure", "decode"]
FORMATS = ("mp4", "hls")
VERIFY_MODES: tuple[Verify, ...] = ("structure", "decode")


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    start_ms: int
    end_ms: int
    label: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipRequest:
    """A validated clip job: one or more windows of one stream (or session)."""

    stream_id: str
    session_id: str | None
    windows: tuple[Window, ...]
    name: str | None = None
    accuracy: Accuracy = "frame"
    formats: tuple[str, ...] = ("mp4",)
    rendition: str = "best"  # a rendition name, or the session's main video rendition
    reencode_edges: bool = False  # re-encode the first partial GOP instead of an edit list
    faststart: bool = False  # the MP4's index before its media (else after, hashed as written)
    render: dict[str, object] | None = None  # api/render.py's normal form
    meta: dict[str, object] | None = None  # passthrough, callback_url, callback_id: kept as is
    # Every MP4 is checked structurally; "decode" also decodes it all and counts frames.
    verify: Verify = "structure"

    @property
    def start_ms(self) -> int:
        return min(w.start_ms for w in self.windows)

    @property
    def end_ms(self) -> int:
        return max(w.end_ms for w in self.windows)

    def options(self) -> dict[str, object]:
        """What the clips table keeps beside the span, to cut the job again after a restart."""
        return {
            "windows": [
                {"start_ms": w.start_ms, "end_ms": w.end_ms, "label": w.label} for w in self.windows
            ],
            "accuracy": self.accuracy,
            "formats": list(self.formats),
            "rendition": self.rendition,
            "reencode_edges": self.reencode_edges,
            "faststart": self.faststart,
            **({"render": self.render} if self.render else {}),
            **({"meta": self.meta} if self.meta else {}),
            "verify": self.verify,
        }

    @staticmethod
    def of(clip: ClipRow) -> ClipRequest:
        options = clip.options or {}
        raw_windows = options.get("windows")
        windows = tuple(
            Window(start_ms=int(w["start_ms"]), end_ms=int(w["end_ms"]), label=w.get("label"))
            for w in (raw_windows if isinstance(raw_windows, list) else [])
        ) or (Window(start_ms=clip.start_ms, end_ms=clip.end_ms),)
        accuracy = options.get("accuracy")
        formats = options.get("formats")
        rendition = options.get("rendition")
        return ClipRequest(
            stream_id=clip.stream_id,
            session_id=clip.session_id,
            windows=windows,
            name=clip.name,
            accuracy="keyframe" if accuracy == "keyframe" else "frame",
            formats=tuple(str(f) for f in formats) if isinstance(formats, list) else ("mp4",),
            rendition=rendition if isinstance(rendition, str) else "best",
            reencode_edges=options.get("reencode_edges") is True,
            faststart=options.get("faststart") is True,
            render=render if isinstance(render := options.get("render"), dict) else None,
            verify="decode" if options.get("verify") == "decode" else "structure",
        )


class TakenOver(Exception):
    """Another node holds the clip now (this one stalled past its lease)."""


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
        self._progress: dict[str, float] = {}  # clip -> share of its windows cut
        # Told of each clip once it is ready or failed, and of each deleted one (analysis
        # jobs follow the clips they made or were asked for).
        self.on_finished: Callable[[ClipRow], Awaitable[None]] | None = None
        self.on_deleted: Callable[[str], Awaitable[None]] | None = None
        # The jobs a new clip asks for (its shots), written with it and run once it is cut.
        self.follow_ups: Callable[[ClipRow], Sequence[AnalysisJobRow]] = lambda clip: ()
        # Many nodes: each clip is held by the node cutting it for this long, renewed;
        # one whose node died is claimed by another. None: one node, no claims.
        self.lease_ms: int | None = None
        self._claims: asyncio.Task[None] | None = None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        if self.lease_ms is None:
            unfinished = await self.store.index.unfinished_clips()
        else:
            now = self._now_ms()
            unfinished = await self.store.index.claim_clips(
                now_ms=now, until_ms=now + self.lease_ms, limit=QUEUE_LIMIT, own=True
            )
            self._claims = asyncio.create_task(self._hold_claims(), name="clip-claims")
            self._claims.add_done_callback(_log_death)
        for clip in unfinished:
            # Interrupted by a restart: take it from the top; nothing partial was kept.
            await self._admit(clip)
        for n in range(self.config.workers):
            task = asyncio.create_task(self._work(), name=f"clip-worker-{n}")
            task.add_done_callback(_log_death)
            self._workers.append(task)

    async def stop(self) -> None:
        tasks = [*self._workers, *self._waiters.values(), *([self._claims] if self._claims else [])]
        self._claims = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._waiters.clear()

    async def _hold_claims(self) -> None:
        """Renew this node's hold on its clips, and claim the ones whose node died."""
        assert self.lease_ms is not None
        every_s = self.lease_ms / 3000
        while True:
            await asyncio.sleep(every_s)
            now = self._now_ms()
            try:
                lost = await self.store.index.renew_clips(list(self._active), now + self.lease_ms)
                for clip_id in lost:
                    log.warning("clip %s: another node took it over; leaving it", clip_id)
                    self._forget(clip_id)
                room = QUEUE_LIMIT - len(self._active)
                if room <= 0:
                    continue
                claimed = await self.store.index.claim_clips(
                    now_ms=now, until_ms=now + self.lease_ms, limit=room
                )
            except Exception:  # the index unreachable: try again next round
                log.exception("renewing and claiming clips failed")
                continue
            for clip in claimed:
                if clip.id not in self._active:
                    log.info("clip %s: its node stopped holding it; cutting it here", clip.id)
                    metrics.JOBS_TAKEN_OVER.labels("clip").inc()
                    await self._admit(clip)

    async def _holds(self, clip_id: str) -> bool:
        """Whether this node still holds the clip (always, on one node); renewed if so."""
        if self.lease_ms is None:
            return True
        lost = await self.store.index.renew_clips([clip_id], self._now_ms() + self.lease_ms)
        return not lost

    async def _let_go(self, clip_id: str) -> None:
        """Another node took the clip over after this one stalled (or it was deleted): the
        holder's work stands, this node's copy goes (the local folder only: the shared
        objects are the holder's)."""
        log.warning(
            "clip %s: no longer this node's (taken over or deleted); dropping its cut", clip_id
        )
        self._forget(clip_id)
        self._progress.pop(clip_id, None)
        await self.store.drop_local_clip_files(clip_id)

    def _forget(self, clip_id: str) -> None:
        self._active.pop(clip_id, None)
        waiter = self._waiters.pop(clip_id, None)
        if waiter is not None:
            waiter.cancel()

    def changed_elsewhere(self, clip_id: str) -> None:
        """Another node changed the clip: whoever waits on it here looks again."""
        self._signal(clip_id)

    def active_count(self) -> int:
        """Clips queued, waiting or being cut here."""
        return len(self._active)

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def active_ranges(self, stream_id: str) -> list[tuple[int, int]]:
        """Ranges that queued, waiting or running jobs will read: retention keeps them."""
        return [(s, e) for (st, s, e) in self._active.values() if st == stream_id]

    def read_ranges(self, stream_id: str) -> list[tuple[int, int]]:
        """Active ranges widened to every segment a job may open (the keyframe before the
        start, the audio after the end): what the disk floor must not evict."""
        return [
            (s - KEYFRAME_LOOKBACK_MS, e + SPILL_LOOKAHEAD_MS)
            for s, e in self.active_ranges(stream_id)
        ]

    # requests ------------------------------------------------------------------
    def progress(self, clip_id: str) -> float | None:
        return self._progress.get(clip_id)

    async def submit(
        self,
        request: ClipRequest,
        *,
        sessions: tuple[str, ...] = (),
        idempotency: tuple[str, str] | None = None,
    ) -> ClipRow:
        # Waiting clips count too: each holds a waiter and will need a worker.
        if len(self._active) >= QUEUE_LIMIT or self._queue.full():
            raise QueueFull(
                f"{len(self._active)} clips are queued, waiting or processing "
                f"(at most {QUEUE_LIMIT}); retry shortly"
            )
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
            options=request.options(),
        )
        await self.store.index.add_clip(
            clip,
            sessions=sessions,
            idempotency=idempotency,
            lease_until_ms=None if self.lease_ms is None else now + self.lease_ms,
            jobs=self.follow_ups(clip),
        )
        return await self._admit(clip)

    async def delete(self, clip_id: str) -> bool:
        if await self.store.index.clip(clip_id) is None:
            return False
        waiter = self._waiters.pop(clip_id, None)
        if waiter is not None:
            waiter.cancel()
        self._active.pop(clip_id, None)
        await self.store.index.delete_clip(clip_id)
        await self.store.remove_clip_files(clip_id)
        self._signal(clip_id)
        if self.on_deleted is not None:
            await self.on_deleted(clip_id)
        return True

    async def wait_finished(self, clip_id: str, timeout_s: float) -> ClipRow | None:
        """The clip once ready or failed (or its current row if timeout_s passes first)."""
        clip = await self.store.index.clip(clip_id)
        while clip is not None and clip.state not in ("ready", "failed"):
            event = self._finished.setdefault(clip_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                break
            clip = await self.store.index.clip(clip_id)
        return clip

    # states --------------------------------------------------------------------
    async def _admit(self, clip: ClipRow) -> ClipRow:
        self._active[clip.id] = (clip.stream_id, clip.start_ms, clip.end_ms)
        if await self._needs_wait(clip):
            await self._set_state(clip.id, "waiting")
            task = asyncio.create_task(self._wait_for_edge(clip), name=f"clip-wait:{clip.id}")
            task.add_done_callback(_log_death)
            self._waiters[clip.id] = task
        else:
            await self._set_state(clip.id, "queued")
            self._queue.put_nowait(clip.id)
        row = await self.store.index.clip(clip.id)
        assert row is not None
        return row

    async def _needs_wait(self, clip: ClipRow) -> bool:
        session = (
            await self.store.index.session(clip.session_id)
            if clip.session_id
            else await self.store.index.live_session(clip.stream_id)
        )
        if session is None or session.state != "live":
            return False
        edge = session.tracks_edge_ms or session.live_edge_ms or 0
        return edge < clip.end_ms

    async def _wait_for_edge(self, clip: ClipRow) -> None:
        deadline_ms = max(clip.end_ms, clip.created_ms) + self.config.max_wait_s * 1000
        while await self._needs_wait(clip):
            left_s = (deadline_ms - self._now_ms()) / 1000
            if left_s <= 0:
                log.info("clip %s: live edge did not reach its end in time; cutting", clip.id)
                break
            await self.store.edges.wait(clip.stream_id, left_s)
        self._waiters.pop(clip.id, None)
        if await self.store.index.clip(clip.id) is None:
            return  # deleted while it waited
        await self._set_state(clip.id, "queued")
        await self._queue.put(clip.id)

    async def _set_state(
        self,
        clip_id: str,
        state: ClipState,
        *,
        error: str | None = None,
        result: dict[str, object] | None = None,
    ) -> None:
        written = await self.store.index.update_clip(
            clip_id,
            state=state,
            now_ms=self._now_ms(),
            error=error,
            result=result,
            held_by=None if self.lease_ms is None else self.store.index.node_id,
        )
        if not written:
            await self._let_go(clip_id)
            return
        if state == "processing":
            self._progress[clip_id] = 0.0
        if state in ("ready", "failed"):
            self._active.pop(clip_id, None)
            self._progress.pop(clip_id, None)
            try:
                # What follows from the clip (its own shots job, the highlights job it
                # completes) is in the index before a waiter hears that it finished.
                row = await self.store.index.clip(clip_id)
                if self.on_finished is not None and row is not None:
                    await self.on_finished(row)
            finally:
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
        clip = await self.store.index.clip(clip_id)
        if clip is None:
            return
        await self._set_state(clip_id, "processing")
        began = time.monotonic()
        try:
            result = await self._cut(clip)
        except TakenOver:
            await self._let_go(clip_id)
            return
        except VerifyError as exc:
            metrics.CLIP_CHECKS_FAILED.labels(exc.check).inc()
            await self._fail(
                clip_id, f"the output failed its check ({exc.check}): {exc}; not delivered"
            )
            return
        except OSError as exc:
            metrics.STORAGE_ERRORS.labels("clip").inc()
            await self._fail(clip_id, str(exc))
            return
        except (NothingRecorded, RemuxError, RenderError) as exc:
            await self._fail(clip_id, str(exc))
            return
        except Exception as exc:  # a worker must outlive any one clip's bug
            log.exception("clip %s: unexpected error", clip_id)
            await self._fail(
                clip_id, f"internal error ({type(exc).__name__}); see the daemon's log"
            )
            return
        if await self.store.index.clip(clip_id) is None:
            await self.store.remove_clip_files(clip_id)  # deleted while it was being cut
            return
        await self._set_state(clip_id, "ready", result=result)
        metrics.CLIP_JOBS.labels("ready").inc()
        metrics.CLIP_PROCESSING_SECONDS.observe(time.monotonic() - began)
        metrics.CLIP_READY_SECONDS.observe(max(0.0, (self._now_ms() - clip.created_ms) / 1000))

    async def _fail(self, clip_id: str, error: str) -> None:
        if not await self._holds(clip_id):
            await self._let_go(clip_id)
            return
        log.warning("clip %s failed: %s", clip_id, error)
        # Nothing of a failed clip is served: its files and its hold on segments go now.
        await self.store.remove_clip_files(clip_id)
        await self.store.index.unpin_segments(clip_id)
        if await self.store.index.clip(clip_id) is not None:
            await self._set_state(clip_id, "failed", error=error)
            metrics.CLIP_JOBS.labels("failed").inc()

    async def _cut(self, clip: ClipRow) -> dict[str, object]:
        request = ClipRequest.of(clip)
        folder = self.store.clip_dir(clip.id)
        folder.mkdir(parents=True, exist_ok=True)
        single = len(request.windows) == 1
        windows = []
        for n, window in enumerate(request.windows):
            stem = "clip" if single else f"w{n}"
            windows.append(await self._cut_window(clip, request, window, folder, stem, n))
            self._progress[clip.id] = (n + 1) / len(request.windows)
        result: dict[str, object] = {"windows": windows}
        if single:
            # One window: its results are the clip's, as a caller of a plain clip expects.
            result.update({k: v for k, v in windows[0].items() if k != "label"})
        if not await self._holds(clip.id):
            raise TakenOver(clip.id)  # the new holder's outputs are the ones kept
        # Stored where every node serves them (S3) before the clip is ready.
        await self.store.keep_clip_files(clip.id)
        return result

    async def _cut_window(
        self,
        clip: ClipRow,
        request: ClipRequest,
        window: Window,
        folder: Path,
        stem: str,
        window_index: int = 0,
    ) -> dict[str, object]:
        rendition = None if request.rendition == "best" else request.rendition
        segments = await self.store.index.stream_segments(
            clip.stream_id,
            window.start_ms - KEYFRAME_LOOKBACK_MS,
            window.end_ms + SPILL_LOOKAHEAD_MS,
            session_id=clip.session_id,
            rendition=rendition,
        )
        plan = plan_clip(segments, window.start_ms, window.end_ms)
        stored = plan.segments
        body: dict[str, object] = {
            "label": window.label,
            "start_ms": plan.start_ms,
            "end_ms": plan.end_ms,
            "duration_ms": plan.end_ms - plan.start_ms,
            "holes": [{"start_ms": s, "end_ms": e} for s, e in plan.holes],
            "segments": len(stored),
            "notes": _notes(plan),
        }
        files: dict[str, object] = {}
        if "hls" in request.formats:
            name = "index.m3u8" if stem == "clip" else f"{stem}.m3u8"
            files["hls"] = await self._write_hls(clip.id, plan, folder / name)
            # Instant clips are segment-accurate: they show whole stored segments.
            body.update(start_ms=stored[0].start_ms, end_ms=stored[-1].end_ms)
            body["duration_ms"] = stored[-1].end_ms - stored[0].start_ms
        cues, language = await self._subtitles(clip, plan)
        # A sidecar is timed like the output it accompanies: from the MP4's first frame,
        # or from the first segment of an HLS-only clip.
        zero_ms: float = stored[0].start_ms
        if "mp4" in request.formats:
            # The MP4 is about as large as the media it copies: room for it first (this
            # job's own segments are pinned while it runs).
            await self.store.space.make_room(sum(s.size for s in stored))
            pieces = _pieces(plan)
            # Every file the remuxer will open, noted as its inputs are built, is fetched
            # at once (a no-op for local media) and kept until the copies are cut.
            reads = Reads(self.store.path)
            inputs = [[await self._remux_run(r, reads) for r in runs] for runs in pieces]
            audio_runs = await self._alternate_audio(clip, plan, reads)
            outputs = []
            async with self.store.fetched(reads.relpaths):
                for n, runs in enumerate(pieces):
                    first = runs[0]
                    if n > 0:
                        first_s = first.from_s
                    elif request.accuracy == "frame":
                        first_s = first.media_s(max(window.start_ms, plan.start_ms))
                    else:
                        first_s = first.from_s
                    output = folder / (f"{stem}.mp4" if n == 0 else f"{stem}-{n + 1}.mp4")
                    presented = await self._checked(
                        clip,
                        runs,
                        remux_mp4,
                        inputs[n],
                        first_s=first_s,
                        output=output,
                        audio_runs=audio_runs if n == 0 else (),
                        reencode_edges=request.reencode_edges,
                        faststart=request.faststart,
                        cues=cues if n == 0 else (),
                        cue_language=language,
                        expected_s=(plan.end_ms - plan.start_ms) / 1000,
                    )
                    if request.verify == "decode":
                        await self._verify_by_decoding(clip, output, presented, runs)
                    outputs.append((output, presented))
            output, presented = outputs[0]
            files["mp4"] = _mp4_entry(clip.id, output, presented)
            zero_ms = presented.start_ms
            tracks = [t.as_dict() for t in presented.tracks]
            if request.render:
                rendered = await self._render(clip, request.render, outputs, cues, window_index)
                body["render"] = rendered.body
                files["mp4"] = await _file_entry(clip.id, output)
                if len(rendered.rendered) > 1:
                    files["renditions"] = [
                        {
                            **await _file_entry(clip.id, r.path),
                            "width": r.size.width,
                            "height": r.size.height,
                        }
                        for r in rendered.rendered[1:]
                    ]
                main = rendered.rendered[0]
                for track in tracks:
                    if track["kind"] == "video":
                        track.update(codec="h264", width=main.size.width, height=main.size.height)
                        track["fps"] = rendered.body["fps"]
                # The render carries no text track: captions are burned in or delivered
                # as the sidecar, from WebVTT or, with none, from CEA-608 in the video.
                cues = cues or rendered.captions
            elif cues:
                tracks.append(
                    {
                        "kind": "subtitles",
                        "codec": "mov_text",
                        "language": language,
                        "cues": len(cues),
                    }
                )
            end_ms = outputs[-1][1].end_ms
            body.update(
                start_ms=round(presented.start_ms),
                end_ms=round(end_ms),
                duration_ms=round(end_ms) - round(presented.start_ms),
                tracks=tracks,
                reencoded_frames=presented.reencoded_frames,
            )
            short = _audio_shortfall(presented)
            if short:
                notes = body["notes"]
                assert isinstance(notes, list)
                notes.append(short)
            if len(outputs) > 1:
                body["pieces"] = [
                    {
                        "start_ms": round(p.start_ms),
                        "end_ms": round(p.end_ms),
                        "tracks": [t.as_dict() for t in p.tracks],
                        "file": _mp4_entry(clip.id, path, p),
                    }
                    for path, p in outputs
                ]
                notes = body["notes"]
                assert isinstance(notes, list)
                notes.append(
                    f"the stream's codec parameters change inside the range: delivered as "
                    f"{len(outputs)} MP4 files, one per set of parameters (see pieces)"
                )
        if cues:
            vtt = folder / f"{stem}.vtt"
            await self.store.write_file(vtt, render_webvtt(cues, zero_ms=zero_ms).encode())
            files["vtt"] = await _file_entry(clip.id, vtt)
        body["files"] = files
        return body

    async def _render(
        self,
        clip: ClipRow,
        options: dict[str, object],
        outputs: list[tuple[Path, Presented]],
        cues: list[Cue],
        window_index: int,
    ) -> RenderOutcome:
        """Render each checked copy in place of itself (the first with the extra sizes);
        the copies are removed either way."""
        overlay = options.get("overlay")
        if not isinstance(overlay, dict):
            spec = render_spec(options, lambda _: Path())
            return await self._render_copies(clip, spec, outputs, cues, window_index)
        ref = str(overlay.get("id"))
        # The watermark's image stays on this disk until the render is done: with S3, the
        # read cache's copy, downloaded if this node has none, and pinned.
        async with self.store.overlay_image(ref) as image:
            if image is None:
                raise RenderError(f"overlay {ref} was deleted before the render")
            spec = render_spec(options, lambda _: image)
            return await self._render_copies(clip, spec, outputs, cues, window_index)

    async def _render_copies(
        self,
        clip: ClipRow,
        spec: RenderSpec,
        outputs: list[tuple[Path, Presented]],
        cues: list[Cue],
        window_index: int,
    ) -> RenderOutcome:
        windows = max(1, len(ClipRequest.of(clip).windows))
        first: RenderOutcome | None = None
        for n, (output, presented) in enumerate(outputs):
            copy = output.with_name(output.stem + ".copy.mp4")
            output.replace(copy)
            piece = spec if n == 0 else replace(spec, renditions=())

            def progress(done: float, n: int = n) -> None:
                share = (n + done) / len(outputs)
                self._progress[clip.id] = (window_index + share) / windows

            try:
                outcome = await render_clip(
                    piece,
                    copy=copy,
                    presented=presented,
                    target=output,
                    cues=cues if n == 0 else [],
                    progress=progress,
                )
            finally:
                copy.unlink(missing_ok=True)
            first = first or outcome
        assert first is not None
        return first

    async def _checked(
        self,
        clip: ClipRow,
        runs: list[PlannedRun],
        remux: Callable[..., Presented],
        *args: Any,
        **kwargs: Any,
    ) -> Presented:
        """Remux in a worker thread; an output that fails its check is logged with the
        segments it came from, for whoever looks into it."""
        try:
            return await asyncio.to_thread(remux, *args, **kwargs)
        except VerifyError as exc:
            paths = [s.path for run in runs for s in run.segments]
            log.error("clip %s: output check failed (%s); segments: %s", clip.id, exc, paths)
            raise

    async def _verify_by_decoding(
        self, clip: ClipRow, output: Path, presented: Presented, runs: list[PlannedRun]
    ) -> None:
        video = next((t for t in presented.tracks if t.kind == "video"), None)
        frames = None if video is None else video.frames
        try:
            await asyncio.to_thread(verify_by_decoding, output, video_frames=frames)
        except VerifyError as exc:
            output.unlink(missing_ok=True)
            paths = [s.path for run in runs for s in run.segments]
            log.error("clip %s: decoding check failed (%s); segments: %s", clip.id, exc, paths)
            raise

    async def _remux_run(self, run: PlannedRun, path_of: Callable[[str], Path]) -> RemuxRun:
        first = run.segments[0]
        if first.has_video and not first.params:
            return remux_run(run, path_of, await self.store.index.parameter_segment(first))
        return remux_run(run, path_of)

    async def _subtitles(self, clip: ClipRow, plan: ClipPlan) -> tuple[list[Cue], str | None]:
        """Cues of the session's first subtitles rendition inside the plan, wall-timed."""
        segments = await self.store.index.stream_segments(
            clip.stream_id,
            plan.start_ms,
            plan.end_ms,
            session_id=clip.session_id,
            kind="subtitles",
        )
        if not segments:
            return [], None
        video = plan.segments
        cues: list[Cue] = []
        async with self.store.fetched(s.path for s in segments):
            texts = [
                (s, await asyncio.to_thread(self.store.path(s.path).read_bytes)) for s in segments
            ]
        for segment, data in texts:
            try:
                cues += parse_segment(
                    data,
                    pts_to_wall_ms=lambda t: _pts_to_wall_ms(video, t),
                    segment_start_ms=segment.start_ms,
                )
            except SubtitleError as exc:
                log.warning("clip %s: skipping subtitles %s: %s", clip.id, segment.path, exc)
        rendition = await self.store.index.rendition_of(segments[0].rendition_id)
        language = None if rendition is None else rendition.language
        # Trimmed to what the outputs may show; each output clamps at its own first frame.
        return clip_cues(cues, plan.start_ms, plan.end_ms), language

    async def _alternate_audio(
        self, clip: ClipRow, plan: ClipPlan, path_of: Callable[[str], Path]
    ) -> list[RemuxRun]:
        """Audio from an alternate-audio rendition, when the video carries none."""
        if any(s.has_audio for s in plan.segments):
            return []
        audio = await self.store.index.stream_segments(
            clip.stream_id, plan.start_ms, plan.end_ms, session_id=clip.session_id, kind="audio"
        )
        runs = []
        for run in group_runs(audio):
            planned = plan_clip(run, max(plan.start_ms, run[0].start_ms), plan.end_ms)
            runs += [await self._remux_run(r, path_of) for r in planned.runs]
        return runs

    async def _write_hls(self, clip_id: str, plan: ClipPlan, target: Path) -> dict[str, object]:
        segments = plan.segments
        await self.store.index.pin_segments(clip_id, [s.id for s in segments])
        text = vod_playlist(
            segments,
            segment_url=lambda s: f"media/{s.id}{Path(s.path).suffix}",
            init_url=lambda path: f"media/init-{_init_segment(segments, path)}.mp4",
            holes=plan.holes,
        )
        await self.store.write_file(target, text.encode())
        return await _file_entry(clip_id, target)


async def _file_entry(clip_id: str, path: Path) -> dict[str, object]:
    digest = await asyncio.to_thread(_sha256, path)
    return {
        "name": path.name,
        "url": f"/v1/clips/{clip_id}/{path.name}",
        "size_bytes": path.stat().st_size,
        "sha256": digest,
    }


def remux_run(
    run: PlannedRun, path_of: Callable[[str], Path], parameters: SegmentRow | None = None
) -> RemuxRun:
    """What the remuxer needs of a planned run; `path_of` resolves the index's paths.
    `parameters`: an earlier segment holding the parameter sets the run's own lack."""
    first = run.segments[0]
    return RemuxRun(
        parameters=None if parameters is None else path_of(parameters.path),
        paths=tuple(path_of(s.path) for s in (*run.segments, *filter(None, [run.spill]))),
        init_path=None if first.init_path is None else path_of(first.init_path),
        wraps=run.wraps,
        ref_s=run.refs_s[0],
        from_s=run.from_s,
        to_s=run.to_s,
        wall_ms=run.wall_ms,
    )


def _audio_shortfall(presented: Presented) -> str | None:
    """A note when the recording holds less audio than video over the clip (more than an
    audio frame at either end): at a live edge whose audio is not in yet, or the end of
    a session whose encoder stopped its audio first."""
    audio = next((t for t in presented.tracks if t.kind == "audio"), None)
    if audio is None or audio.first_ms is None or audio.end_ms is None:
        return None
    frame_ms = 1024_000 / (audio.sample_rate or 48_000) + 1
    late = audio.first_ms - presented.start_ms
    early = presented.end_ms - audio.end_ms
    if late <= frame_ms and early <= frame_ms:
        return None
    return (
        f"the recording has audio for {round(audio.first_ms - presented.start_ms)} ms to "
        f"{round(audio.end_ms - presented.start_ms)} ms of the clip's "
        f"{round(presented.end_ms - presented.start_ms)} ms"
    )


def _mp4_entry(clip_id: str, path: Path, presented: Presented) -> dict[str, object]:
    return {
        "name": path.name,
        "url": f"/v1/clips/{clip_id}/{path.name}",
        "size_bytes": presented.size,
        "sha256": presented.sha256,
    }


def _pieces(plan: ClipPlan) -> list[list[PlannedRun]]:
    """The plan's runs split where codec parameters change: one MP4 track cannot hold
    both (a second sample description is beyond what players reliably follow)."""
    pieces: list[list[PlannedRun]] = []
    for run in plan.runs:
        if not pieces or run.change == "parameters":
            pieces.append([run])
        else:
            pieces[-1].append(run)
    return pieces


def _pts_to_wall_ms(video: list[SegmentRow], media_s: float) -> float:
    """Place a media time (e.g. a WebVTT cue's MPEG-TS time) by the video segment holding it."""

    def distance(segment: SegmentRow) -> float:
        span_s = (segment.end_ms - segment.start_ms) / 1000
        if segment.ref_pts_s <= media_s <= segment.ref_pts_s + span_s:
            return 0.0
        return min(abs(media_s - segment.ref_pts_s), abs(media_s - segment.ref_pts_s - span_s))

    nearest = min(video, key=distance)
    return nearest.start_ms + (media_s - nearest.ref_pts_s) * 1000


def _init_segment(segments: list[SegmentRow], init_path: str) -> int:
    """HLS clips name an init section by the first segment that uses it."""
    return next(s.id for s in segments if s.init_path == init_path)


def _notes(plan: ClipPlan) -> list[str]:
    notes: list[str] = []
    if plan.starts_late:
        notes.append("the recording begins after the requested start")
    if plan.ends_early:
        notes.append("the recording ends before the requested end")
    if plan.holes:
        notes.append(f"{len(plan.holes)} unrecorded stretch(es) inside the range were skipped")
    return notes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
