"""One stream's recorder: reloads its playlist, downloads new segments, commits them in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import aiohttp

from livecut import metrics
from livecut.config import IngestConfig, StreamConfig
from livecut.hls.playlist import (
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    best_variant,
    parse_playlist,
)
from livecut.hls.tracker import Gap, MediaTracker, NewSegment
from livecut.ingest.fetch import FetchError, fetch, sleep_backoff
from livecut.media.probe import ProbeError, SegmentProbe, probe_segment
from livecut.store import files
from livecut.store.records import GapRow, RenditionRow, SessionRow
from livecut.store.store import Store

log = logging.getLogger(__name__)

SEGMENT_ATTEMPTS = 5
# After EXT-X-ENDLIST the origin is only watched for a new broadcast, not hammered.
ENDED_RELOAD_MS = 5000


@dataclass(kw_only=True, slots=True)
class RecorderStatus:
    state: str = "connecting"  # connecting, recording, stalled, ended, failing
    last_error: str | None = None
    last_error_ms: int | None = None
    media_url: str | None = None
    segments: int = 0
    gaps: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "media_playlist": self.media_url,
            "segments_recorded": self.segments,
            "gaps": self.gaps,
            "errors": self.errors,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class _Downloaded:
    new: NewSegment
    relpath: str
    size: int
    probe: SegmentProbe
    init_relpath: str | None


@dataclass(kw_only=True, slots=True)
class _Recording:
    """The session and rendition segments are committed into, once one exists."""

    session: SessionRow
    rendition: RenditionRow
    # One fetch per init section, shared by every download that needs it.
    inits: dict[tuple[str, int | None], asyncio.Task[tuple[str, bytes]]] = field(
        default_factory=dict
    )


class Recorder:
    """Owns one stream's ingest task; `start` and `stop` are its whole lifecycle."""

    def __init__(
        self,
        stream: StreamConfig,
        *,
        store: Store,
        http: aiohttp.ClientSession,
        ingest: IngestConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.store = store
        self.http = http
        self.ingest = ingest
        self.clock = clock
        self.status = RecorderStatus()
        self._headers = {"User-Agent": ingest.user_agent, **stream.headers_dict()}
        self._task: asyncio.Task[None] | None = None
        self._recording: _Recording | None = None
        self._tracker = MediaTracker()
        self._variant_name = "main"
        self._variant_meta: dict[str, object] = {}
        self._resume_after_seq: int | None = None
        self._target_ms = 2000  # the playlist's target duration, once one is loaded
        self._downloads = asyncio.Semaphore(ingest.max_concurrent_downloads)

    # lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self._resume_or_close_session()
        self._task = asyncio.create_task(self._run(), name=f"recorder:{self.stream.id}")
        self._task.add_done_callback(self._log_death)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _log_death(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("recorder for %s died", self.stream.id, exc_info=task.exception())
            self.status.state = "failing"
            self.status.last_error = f"recorder crashed: {task.exception()!r}"

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        media_url: str | None = None
        attempt = 0
        while True:
            began = self._now_ms()
            try:
                if media_url is None:
                    media_url = await self._resolve_media_url()
                    self.status.media_url = media_url
                playlist = await self._load_media(media_url)
                attempt = 0
            except (FetchError, PlaylistError) as exc:
                kind = exc.kind if isinstance(exc, FetchError) else "playlist_parse"
                self._error(kind, str(exc))
                self._end_if_silent(self._now_ms())
                if isinstance(exc, FetchError) and exc.kind == "http_404":
                    media_url = None  # the master may now point somewhere else
                await sleep_backoff(attempt, limit_s=max(2.0, self.stream.session_gap_s / 4))
                attempt += 1
                continue
            try:
                reload_ms = await self._take(playlist, began)
            except OSError as exc:
                # Disk full or unwritable: keep trying, the origin may still be readable later.
                self._error("storage", f"cannot store media: {exc}")
                reload_ms = 1000
            wait_ms = began + reload_ms - self._now_ms()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000)

    async def _resolve_media_url(self) -> str:
        fetched = await fetch(
            self.http,
            self.stream.url,
            headers=self._headers,
            timeout_s=self.ingest.playlist_timeout_s,
        )
        parsed = parse_playlist(fetched.body.decode("utf-8", "replace"), fetched.url)
        if isinstance(parsed, MasterPlaylist):
            variant = best_variant(parsed)
            self._variant_name = variant.name
            self._variant_meta = {
                "bandwidth": variant.bandwidth,
                "resolution": "x".join(map(str, variant.resolution))
                if variant.resolution
                else None,
                "codecs": variant.codecs,
            }
            return variant.uri
        return fetched.url

    async def _load_media(self, url: str) -> MediaPlaylist:
        fetched = await fetch(
            self.http, url, headers=self._headers, timeout_s=self.ingest.playlist_timeout_s
        )
        parsed = parse_playlist(fetched.body.decode("utf-8", "replace"), fetched.url)
        if isinstance(parsed, MasterPlaylist):
            raise PlaylistError(f"{url}: expected a media playlist, got a master playlist")
        if parsed.encryption is not None:
            raise PlaylistError(f"{url}: EXT-X-KEY METHOD={parsed.encryption} is not supported yet")
        return parsed

    async def _take(self, playlist: MediaPlaylist, fetched_at_ms: int) -> int:
        """Feed one snapshot through the tracker and record what it reports."""
        update = self._tracker.update(playlist, fetched_at_ms)
        self._target_ms = max(1000, playlist.target_duration_ms)
        if update.reset and self._recording is not None:
            self._end_session("reset", self._recording.session.live_edge_ms or fetched_at_ms)
        new = list(update.new)
        if self._resume_after_seq is not None:
            new = self._after_resume(new)
        for gap in update.gaps:
            self._record_gap(gap)
        if new:
            await self._download_and_commit(new, playlist)
        if update.ended and self._recording is not None:
            self._end_session("endlist", self._now_ms())
            self.status.state = "ended"
        elif update.ended:
            self.status.state = "ended"
        else:
            self._end_if_silent(self._now_ms())
        if update.ended or self.status.state == "ended":
            return ENDED_RELOAD_MS
        return max(update.reload_after_ms, 100)

    def _after_resume(self, new: list[NewSegment]) -> list[NewSegment]:
        """First snapshot after a restart: skip what is stored, note what was missed."""
        last = self._resume_after_seq
        self._resume_after_seq = None
        assert last is not None and self._recording is not None
        if new and new[-1].segment.seq < last:
            # The origin restarted its sequence while we were down: a new encoder.
            self._end_session("reset", self._recording.session.live_edge_ms or self._now_ms())
            return new
        fresh = [n for n in new if n.segment.seq > last]
        if fresh and fresh[0].segment.seq > last + 1:
            previous = self.store.index.last_segment(self._recording.rendition.id)
            start = previous.end_ms if previous is not None else fresh[0].start_ms
            self._record_gap(
                Gap(
                    epoch=fresh[0].segment.epoch,
                    first_seq=last + 1,
                    last_seq=fresh[0].segment.seq - 1,
                    start_ms=start,
                    end_ms=max(start, fresh[0].start_ms),
                    reason="expired",
                )
            )
        return fresh

    # downloading and committing -----------------------------------------------------
    async def _download_and_commit(self, new: list[NewSegment], playlist: MediaPlaylist) -> None:
        recording = self._ensure_recording(new[0])
        tasks = [asyncio.create_task(self._download(n, recording)) for n in new]
        try:
            # Downloads run concurrently; rows go into the index strictly in order.
            for n, task in zip(new, tasks, strict=True):
                downloaded = await task
                if downloaded is None:
                    self._record_gap(
                        Gap(
                            epoch=n.segment.epoch,
                            first_seq=n.segment.seq,
                            last_seq=n.segment.seq,
                            start_ms=n.start_ms,
                            end_ms=n.start_ms + n.segment.duration_ms,
                            reason="expired",
                        ),
                        reason="download_failed",
                    )
                    continue
                self._commit(downloaded, recording)
        finally:
            for task in tasks:
                task.cancel()

    def _ensure_recording(self, first: NewSegment) -> _Recording:
        if self._recording is None or self._recording.session.state != "live":
            session = self.store.index.open_session(
                self.stream.id, clock=first.clock, started_ms=first.start_ms
            )
            rendition = self.store.index.add_rendition(
                session.id,
                name=self._variant_name,
                uri=self.status.media_url or self.stream.url,
                bandwidth=_int_or_none(self._variant_meta.get("bandwidth")),
                resolution=_str_or_none(self._variant_meta.get("resolution")),
                codecs=_str_or_none(self._variant_meta.get("codecs")),
            )
            self._recording = _Recording(session=session, rendition=rendition)
            metrics.SESSIONS_STARTED.labels(self.stream.id).inc()
            log.info("stream %s: session %s started", self.stream.id, session.id)
        return self._recording

    async def _download(self, new: NewSegment, recording: _Recording) -> _Downloaded | None:
        segment = new.segment
        init_relpath: str | None = None
        init_bytes: bytes | None = None
        async with self._downloads:
            for attempt in range(SEGMENT_ATTEMPTS):
                try:
                    if segment.init is not None:
                        init_relpath, init_bytes = await self._init_section(segment.init, recording)
                    fetched = await fetch(
                        self.http,
                        segment.uri,
                        headers=self._headers,
                        timeout_s=self.ingest.segment_timeout_s,
                        byterange=segment.byterange,
                    )
                    probe = await asyncio.to_thread(probe_segment, fetched.body, init_bytes)
                    break
                except FetchError as exc:
                    self._error(exc.kind, str(exc))
                    left_s = (new.expires_at_ms - self._now_ms()) / 1000
                    if not exc.retryable or attempt == SEGMENT_ATTEMPTS - 1 or left_s <= 0:
                        return None
                    await sleep_backoff(attempt, limit_s=left_s)
                except ProbeError as exc:
                    self._error("unreadable_media", f"{segment.uri}: {exc}")
                    return None
            else:
                return None
        extension = "m4s" if segment.init is not None else "ts"
        relpath = files.segment_relpath(
            self.stream.id,
            recording.session.id,
            recording.rendition.name,
            f"{segment.epoch}-{segment.seq}.{extension}",
        )
        await self.store.write(relpath, fetched.body)
        return _Downloaded(
            new=new, relpath=relpath, size=len(fetched.body), probe=probe, init_relpath=init_relpath
        )

    async def _init_section(self, init: InitSection, recording: _Recording) -> tuple[str, bytes]:
        key = (init.uri, None if init.byterange is None else init.byterange.offset)
        task = recording.inits.get(key)
        if task is None or (task.done() and task.exception() is not None):
            name = f"init-{len(recording.inits)}.mp4"
            task = asyncio.create_task(self._fetch_init(init, recording, name))
            recording.inits[key] = task
        # shield: one waiter being cancelled must not cancel the fetch the others share.
        return await asyncio.shield(task)

    async def _fetch_init(
        self, init: InitSection, recording: _Recording, name: str
    ) -> tuple[str, bytes]:
        fetched = await fetch(
            self.http,
            init.uri,
            headers=self._headers,
            timeout_s=self.ingest.segment_timeout_s,
            byterange=init.byterange,
        )
        relpath = files.segment_relpath(
            self.stream.id,
            recording.session.id,
            recording.rendition.name,
            name,
        )
        await self.store.write(relpath, fetched.body)
        return relpath, fetched.body

    def _commit(self, downloaded: _Downloaded, recording: _Recording) -> None:
        new, probe = downloaded.new, downloaded.probe
        start_ms = new.start_ms
        duration_ms = round(probe.duration_s * 1000) or new.segment.duration_ms
        self.store.index.add_segment(
            rendition_id=recording.rendition.id,
            seq=new.segment.seq,
            epoch=new.segment.epoch,
            start_ms=start_ms,
            end_ms=start_ms + duration_ms,
            path=downloaded.relpath,
            size=downloaded.size,
            init_path=downloaded.init_relpath,
            ref_pts_s=probe.ref_pts_s,
            keyframes_ms=[start_ms + round(k * 1000) for k in probe.keyframes_s],
            has_video=probe.has_video,
            has_audio=probe.has_audio,
            indexed_ms=self._now_ms(),
        )
        recording.session = _with_edge(recording.session, start_ms + duration_ms)
        self.status.segments += 1
        self.status.state = "recording"
        metrics.SEGMENTS_INGESTED.labels(self.stream.id).inc()
        metrics.BYTES_INGESTED.labels(self.stream.id).inc(downloaded.size)
        metrics.INGEST_LAG.labels(self.stream.id).observe(
            max(0.0, (self._now_ms() - new.first_seen_ms) / 1000)
        )
        self.store.edges.changed(self.stream.id)

    # sessions and gaps -----------------------------------------------------------
    def _resume_or_close_session(self) -> None:
        """After a restart: continue a live session if the origin may still be in it."""
        session = self.store.index.live_session(self.stream.id)
        if session is None:
            return
        now = self._now_ms()
        renditions = self.store.index.renditions(session.id)
        edge = session.live_edge_ms or session.started_ms
        if renditions and now - edge <= self.stream.session_gap_s * 1000:
            last = self.store.index.last_segment(renditions[0].id)
            if last is not None:
                self._recording = _Recording(session=session, rendition=renditions[0])
                self._variant_name = renditions[0].name
                self._resume_after_seq = last.seq
                log.info("stream %s: resuming session %s", self.stream.id, session.id)
                return
        self.store.index.end_session(session.id, ended_ms=edge, reason="restart")

    def _end_session(self, reason: str, ended_ms: int) -> None:
        if self._recording is None:
            return
        session = self._recording.session
        self.store.index.end_session(session.id, ended_ms=ended_ms, reason=reason)
        log.info("stream %s: session %s ended (%s)", self.stream.id, session.id, reason)
        self._recording = None
        self.store.edges.changed(self.stream.id)

    def _end_if_silent(self, now_ms: int) -> None:
        if self._recording is None:
            return
        edge = self._recording.session.live_edge_ms or self._recording.session.started_ms
        silent_ms = now_ms - max(edge, self._tracker.last_change_ms or 0)
        if silent_ms > self.stream.session_gap_s * 1000:
            self._end_session("silence", edge)
            self.status.state = "stalled"
        elif silent_ms > 3 * self._target_ms:
            self.status.state = "stalled"

    def _record_gap(self, gap: Gap, *, reason: str | None = None) -> None:
        if self._recording is None:
            return
        why = reason or gap.reason
        self.store.index.add_gap(
            GapRow(
                rendition_id=self._recording.rendition.id,
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
            "stream %s: gap %s..%s (seq %s-%s, %s)",
            self.stream.id,
            gap.start_ms,
            gap.end_ms,
            gap.first_seq,
            gap.last_seq,
            why,
        )

    def _error(self, kind: str, message: str) -> None:
        self.status.errors += 1
        self.status.last_error = message
        self.status.last_error_ms = self._now_ms()
        if self.status.state in ("connecting", "recording"):
            self.status.state = "failing" if self.status.state == "connecting" else "recording"
        metrics.ORIGIN_ERRORS.labels(self.stream.id, kind).inc()
        log.warning("stream %s: %s: %s", self.stream.id, kind, message)


def _with_edge(session: SessionRow, edge_ms: int) -> SessionRow:
    return replace(session, live_edge_ms=max(edge_ms, session.live_edge_ms or 0))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
