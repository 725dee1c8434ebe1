"""One rendition's recorder: reloads its media playlist, fetches segments, commits in order."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from livecut import metrics
from livecut.config import IngestConfig
from livecut.hls.playlist import (
    ByteRange,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    PlaylistSegment,
    blocking_reload_url,
    parse_playlist,
    segment_iv,
)
from livecut.hls.tracker import Gap, MediaTracker, NewSegment
from livecut.ingest.crypto import DecryptError, decrypt_aes128
from livecut.ingest.fetch import FetchError, fetch, sleep_backoff
from livecut.ingest.sessions import RenditionTarget, SessionKeeper
from livecut.ingest.staging import SegmentWorkers
from livecut.media.clock import continues, unwrap_s
from livecut.media.probe import ProbeError, SegmentProbe
from livecut.store import files
from livecut.store.records import RenditionRow

log = logging.getLogger(__name__)

SEGMENT_ATTEMPTS = 5
FIRST_SEGMENT_GUESS = 1024 * 1024  # bytes, until a segment of the rendition has come
UNREADABLE_ATTEMPTS = 2
# After EXT-X-ENDLIST the origin is only watched for a new broadcast, not hammered: the
# first reload after 5 s, each later one twice as long after, up to once a minute.
ENDED_RELOAD_MS = 5000
ENDED_RELOAD_MAX_MS = 60_000
SUPPORTED_KEYS = ("AES-128",)


def ended_reload_ms(polls: int) -> int:
    """How long to wait before the n-th reload (1, 2, ...) of a playlist that has ended."""
    return min(ENDED_RELOAD_MAX_MS, ENDED_RELOAD_MS << min(max(polls - 1, 0), 16))


class UnsupportedStream(Exception):
    """The playlist uses something we cannot record (e.g. SAMPLE-AES); retrying will not help."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _Media:
    """A downloaded segment, decrypted, written and probed, not yet in place or indexed."""

    new: NewSegment
    staged: Path  # written durably to the incoming folder by a segment worker
    size: int
    init: bytes | None  # its init section's bytes (fMP4)
    probe: SegmentProbe | None  # None for subtitles, which PyAV need not read


class RenditionWorker:
    """Owns one media playlist's ingest task; the stream's Recorder starts and stops it."""

    def __init__(
        self,
        target: RenditionTarget,
        *,
        keeper: SessionKeeper,
        http: aiohttp.ClientSession,
        ingest: IngestConfig,
        segment_workers: SegmentWorkers,
        headers: dict[str, str],
    ) -> None:
        self.target = target
        self.keeper = keeper
        self.http = http
        self.ingest = ingest
        self.segment_workers = segment_workers
        self.headers = headers
        self.stream_id = keeper.stream.id
        self.playlist_failures = 0  # consecutive; the Recorder re-reads the master on many
        self._tracker = MediaTracker()
        self._task: asyncio.Task[None] | None = None
        self._downloads = asyncio.Semaphore(ingest.max_concurrent_downloads)
        self._resume_after_seq: int | None = None
        self._resumed_into_reset = False
        self._generation = keeper.generation  # see SessionKeeper
        self._inits: dict[InitKey, asyncio.Task[bytes]] = {}
        self._keys: dict[str, asyncio.Task[bytes]] = {}
        self._stored_inits: dict[tuple[str, InitKey], asyncio.Task[str]] = {}
        self._init_files = 0
        # Init sections are named anew by each worker: one that resumes a session after a
        # restart (or on another node) must not write over the init section that earlier
        # segments of the session name, and a stored file or object never changes.
        self._init_token = secrets.token_hex(4)
        # What the next segment's body is expected to weigh, for the download budget.
        self._last_size = FIRST_SEGMENT_GUESS
        self._target_ms = 2000
        self._last: _Placed | None = None  # the last segment committed, for untagged PDTs
        self._ended_polls = 0  # reloads since the stream ended (EXT-X-ENDLIST)
        self._last_text: tuple[str, bytes, MediaPlaylist] | None = None  # url, body, parsed

    # lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._resume_after_seq = await self.keeper.resume_after_seq(self.target.name)
        self._generation = self.keeper.generation
        self._task = asyncio.create_task(
            self._run(), name=f"rendition:{self.stream_id}/{self.target.name}"
        )
        self._task.add_done_callback(self._log_death)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for cache in (self._inits, self._keys, self._stored_inits):
            for task in cache.values():
                task.cancel()

    @property
    def alive(self) -> bool:
        """False once its task has died; the Recorder then starts a fresh worker."""
        return self._task is not None and not self._task.done()

    def _log_death(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "recorder for %s/%s died",
                self.stream_id,
                self.target.name,
                exc_info=task.exception(),
            )
            exc = task.exception()
            self.keeper.error("crash", f"recorder crashed: {type(exc).__name__}: {exc}")

    # the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        playlist: MediaPlaylist | None = None
        while True:
            # Rounded up: the RFC floor taken from it is then never short of the real one.
            began = math.ceil(self.keeper.clock() * 1000)
            url = self._next_url(playlist)
            try:
                playlist = await self._load(url, blocking=url != self.target.uri)
                attempt = 0
                self.playlist_failures = 0
            except (FetchError, PlaylistError, UnsupportedStream) as exc:
                kind = _error_kind(exc)
                self.keeper.error(kind, str(exc))
                if self.keeper.all_ended:
                    # A finished origin going away is expected: keep watching, slowly.
                    await self._sleep_until(began + self._ended_backoff_ms())
                    continue
                self.playlist_failures += 1
                await self.keeper.check_silence()
                playlist = None
                # No longer than a target duration: by then the live window has moved on,
                # and the segments it holds expire while we wait.
                await sleep_backoff(attempt, limit_s=self._target_ms / 1000)
                attempt += 1
                continue
            # The snapshot is as of its arrival (a blocking reload may be held for
            # seconds); the RFC floor for the next reload runs from when this one began.
            reload_at_ms = await self._take(playlist, self.keeper.now_ms(), began)
            await self._sleep_until(reload_at_ms)

    def _ended_backoff_ms(self) -> int:
        self._ended_polls += 1
        return ended_reload_ms(self._ended_polls)

    async def _sleep_until(self, at_ms: int) -> None:
        """Sleep until the stream's clock reads at_ms: not early (the RFC floor), and
        without rounding that would let the reload phase creep later."""
        for _ in range(3):
            wait_s = at_ms / 1000 - self.keeper.clock()
            if wait_s <= 0:
                return
            await asyncio.sleep(wait_s)

    def _next_url(self, playlist: MediaPlaylist | None) -> str:
        """A blocking reload for the next segment when the origin offers it (LL-HLS)."""
        if (
            playlist is not None
            and not playlist.ended
            and playlist.server_control is not None
            and playlist.server_control.can_block_reload
            and self._tracker.last_seq is not None
        ):
            return blocking_reload_url(self.target.uri, self._tracker.last_seq + 1)
        return self.target.uri

    async def _load(self, url: str, *, blocking: bool) -> MediaPlaylist:
        # A blocking reload is held by the origin for up to a few target durations.
        timeout = self.ingest.playlist_timeout_s + (3 * self._target_ms / 1000 if blocking else 0)
        fetched = await fetch(self.http, url, headers=self.headers, timeout_s=timeout)
        if self._last_text is not None and self._last_text[:2] == (fetched.url, fetched.body):
            # Unchanged to the byte (a reload before the next segment): no need to parse.
            return self._last_text[2]
        parsed = parse_playlist(fetched.body.decode("utf-8", "replace"), fetched.url)
        if isinstance(parsed, MasterPlaylist):
            raise PlaylistError(
                f"{url}: expected a media playlist (it is listed as a rendition of "
                f"{self.keeper.stream.url}), got a master playlist; a master playlist "
                "cannot list another one"
            )
        if parsed.encryption is not None and parsed.encryption not in SUPPORTED_KEYS:
            raise UnsupportedStream(
                f"{url}: EXT-X-KEY METHOD={parsed.encryption} is not supported; "
                f"supported: NONE, {', '.join(SUPPORTED_KEYS)}"
            )
        self._last_text = (fetched.url, fetched.body, parsed)
        return parsed

    async def _take(self, playlist: MediaPlaylist, fetched_at_ms: int, requested_at_ms: int) -> int:
        """Feed one snapshot through the tracker, record what it reports; when to reload."""
        update = self._tracker.update(playlist, fetched_at_ms, requested_at_ms=requested_at_ms)
        self._target_ms = max(1000, playlist.target_duration_ms)
        self.keeper.target_duration(self.target.name, self._target_ms)
        if update.reset:
            self._generation = await self.keeper.reset(self.target.name, self._generation, "reset")
        if update.new:
            self.keeper.recovered()
        new = list(update.new)
        gaps = list(update.gaps)
        # A clock that went back starts a new session at that segment, not before it:
        # segments of the same snapshot ahead of the jump belong to the old one.
        back = [_ClockWentBack(seq=j.seq) for j in update.pdt_jumps if j.actual_ms < j.expected_ms]
        stored = self._resume_after_seq
        if stored is not None:
            new = await self._after_resume(new)
            if not self._resumed_into_reset:
                # What was recorded before the restart has had its gaps and jumps noted.
                gaps = [g for g in gaps if g.last_seq > stored]
                back = [b for b in back if b.seq > stored]
        steps: list[_Step] = sorted([*back, *gaps, *new], key=_step_order)
        if steps:
            await self._record(steps)
        if update.ended:
            await self.keeper.ended(self.target.name)
        else:
            await self.keeper.check_silence()
        if playlist.ended:
            return requested_at_ms + self._ended_backoff_ms()
        self._ended_polls = 0
        if self._next_url(playlist) != self.target.uri:
            return requested_at_ms  # the blocking reload itself waits for the next segment
        log.debug(
            "stream %s/%s: %d new, reload in %d ms (RFC floor %d ms)",
            self.stream_id,
            self.target.name,
            len(update.new),
            update.reload_at_ms - requested_at_ms,
            update.reload_after_ms,
        )
        return max(update.reload_at_ms, requested_at_ms + 100)

    async def _after_resume(self, new: list[NewSegment]) -> list[NewSegment]:
        """First snapshot after a restart: skip what is stored, note what was missed."""
        last = self._resume_after_seq
        self._resume_after_seq = None
        assert last is not None
        if new and new[-1].segment.seq < last:
            # The origin restarted its sequence while we were down: a new encoder.
            self._generation = await self.keeper.reset(self.target.name, self._generation, "reset")
            self._resumed_into_reset = True
            return new
        fresh = [n for n in new if n.segment.seq > last]
        if fresh and fresh[0].segment.seq > last + 1 and self.keeper.current is not None:
            edge = self.keeper.current.live_edge_ms or fresh[0].start_ms
            await self.keeper.gap(
                self.target.name,
                self._generation,
                Gap(
                    epoch=fresh[0].segment.epoch,
                    first_seq=last + 1,
                    last_seq=fresh[0].segment.seq - 1,
                    start_ms=min(edge, fresh[0].start_ms),
                    end_ms=fresh[0].start_ms,
                    reason="expired",
                ),
            )
        return fresh

    # downloading and committing ----------------------------------------------------------
    async def _record(self, steps: list[_Step]) -> None:
        """Download the new segments concurrently; record every step strictly in order.

        Downloads run at most a few segments ahead of the commit, so a long first
        snapshot (an EVENT playlist hours deep) does not pile up in memory.
        """
        segments = [step for step in steps if isinstance(step, NewSegment)]
        ahead = 2 * self.ingest.max_concurrent_downloads
        tasks: list[asyncio.Task[_Media | str]] = []

        def top_up(committed: int) -> None:
            while len(tasks) < len(segments) and len(tasks) - committed < ahead:
                tasks.append(asyncio.create_task(self._download(segments[len(tasks)])))

        committed = 0
        try:
            for step in steps:
                if isinstance(step, _ClockWentBack):
                    self._generation = await self.keeper.reset(
                        self.target.name, self._generation, "clock_jump"
                    )
                elif isinstance(step, Gap):
                    await self.keeper.gap(self.target.name, self._generation, step)
                else:
                    top_up(committed)
                    media = await tasks[committed]
                    committed += 1
                    top_up(committed)
                    if isinstance(media, str):
                        with contextlib.suppress(OSError):  # the index may be on a full disk
                            await self._lost(step, media)
                        continue
                    try:
                        await self._store(media)
                    except OSError as exc:
                        with contextlib.suppress(OSError):
                            await self._lost(step, self._not_stored(step, exc))
        finally:
            for task in tasks[committed:]:
                task.cancel()
                # Downloaded and staged, but never to be published: not left behind.
                if task.done() and not task.cancelled() and task.exception() is None:
                    media = task.result()
                    if not isinstance(media, str):
                        self.keeper.store.discard(media.staged)

    def _not_stored(self, new: NewSegment, exc: OSError) -> str:
        """Disk full or unwritable: a hole that says so, and keep going; the next segment
        tries again. Counted as a storage error (by the store), never as the origin's."""
        log.warning(
            "stream %s/%s: cannot store %s: %s",
            self.stream_id,
            self.target.name,
            new.segment.uri,
            exc,
        )
        return "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "not_stored"

    async def _lost(self, new: NewSegment, reason: str) -> None:
        segment = new.segment
        await self._rendition_row(new)  # a hole is still part of this session
        await self.keeper.gap(
            self.target.name,
            self._generation,
            Gap(
                epoch=segment.epoch,
                first_seq=segment.seq,
                last_seq=segment.seq,
                start_ms=new.start_ms,
                end_ms=new.start_ms + segment.duration_ms,
                reason="expired",
            ),
            reason=reason,
        )

    async def _rendition_row(self, new: NewSegment) -> RenditionRow:
        return await self.keeper.rendition_row(
            self.target, generation=self._generation, clock=new.clock, start_ms=new.start_ms
        )

    async def _download(self, new: NewSegment) -> _Media | str:
        """The segment's clear bytes, probed; or why it could not be had (the gap's reason).

        Retries back off exponentially with jitter, and none starts after the segment
        is due to leave the playlist.
        """
        segment = new.segment
        init_section = segment.init
        init: bytes | None = None
        unreadable = 0
        async with self._downloads:
            for attempt in range(SEGMENT_ATTEMPTS):
                try:
                    if init_section is not None:
                        init = await shared(
                            self._inits,
                            _init_key(init_section),
                            lambda: self._fetch_small(init_section.uri, init_section.byterange),
                        )
                    return await self._fetch_and_stage(new, init)
                except FetchError as exc:
                    self.keeper.error(exc.kind, str(exc))
                    if not exc.retryable:
                        return _LOST_BECAUSE.get(exc.kind, "download_failed")
                    reason = "download_failed"
                except (ProbeError, DecryptError) as exc:
                    # Kept out of the index: a clip must never trip over it. Once more
                    # only: a CDN may have served an error page, but it may well be broken.
                    self.keeper.error("unreadable_media", f"{segment.uri}: {exc}")
                    unreadable += 1
                    if unreadable >= UNREADABLE_ATTEMPTS:
                        return "unreadable"
                    reason = "unreadable"
                left_s = (new.expires_at_ms - self.keeper.now_ms()) / 1000
                if attempt == SEGMENT_ATTEMPTS - 1 or left_s <= 0:
                    return reason
                await sleep_backoff(attempt, limit_s=left_s)
        return "download_failed"

    async def _fetch_and_stage(self, new: NewSegment, init: bytes | None) -> _Media | str:
        """One attempt: the segment's body, decrypted, handed to a segment worker to be
        written and probed. Its bytes count against the workers' budget until then."""
        segment = new.segment
        budget = self.segment_workers.budget
        fetched = await fetch(
            self.http,
            segment.uri,
            headers=self.headers,
            timeout_s=self.ingest.segment_timeout_s,
            byterange=segment.byterange,
            max_bytes=self.ingest.max_segment_bytes,
            budget=budget,
            expected_bytes=self._last_size,
        )
        self._last_size = len(fetched.body)
        try:
            body = await self._decrypted(segment, fetched.body)
            suffix = "." + _extension(self.target.kind, segment.init is not None)
            staged = self.keeper.store.incoming_path(suffix)
            try:
                await self.keeper.store.space.make_room(len(body))
                probe = await self.segment_workers.stage(
                    staged, body, init, probe=self.target.kind != "subtitles"
                )
            except OSError as exc:
                metrics.STORAGE_ERRORS.labels("write").inc()
                return self._not_stored(new, exc)
        finally:
            budget.give(fetched.held)
        return _Media(new=new, staged=staged, size=len(body), init=init, probe=probe)

    async def _store(self, media: _Media) -> None:
        """Write the segment (and its init section) where its row says, then index it."""
        new = media.new
        segment = new.segment
        # The session is settled here, in commit order: never by a download running ahead.
        row = await self._rendition_row(new)
        extension = _extension(self.target.kind, segment.init is not None)
        relpath = files.segment_relpath(
            self.stream_id,
            row.session_id,
            self.target.name,
            f"{segment.epoch}-{segment.seq}.{extension}",
        )
        init_relpath = None
        if segment.init is not None and media.init is not None:
            init_bytes = media.init
            init_relpath = await shared(
                self._stored_inits,
                (row.session_id, _init_key(segment.init)),
                lambda: self._store_init(row, init_bytes),
            )
        try:
            await self.keeper.store.publish(media.staged, relpath)
        except BaseException:
            self.keeper.store.discard(media.staged)
            raise
        try:
            await self._commit(row, media, relpath=relpath, init_relpath=init_relpath)
        except OSError:
            await self.keeper.store.remove_files([relpath])  # never indexed: not left behind
            raise

    async def _decrypted(self, segment: PlaylistSegment, body: bytes) -> bytes:
        key = segment.key
        if key is None:
            return body
        if key.uri is None:
            raise DecryptError(f"EXT-X-KEY METHOD={key.method} has no URI")
        key_uri = key.uri
        # The key stays in memory only: it is never written to disk.
        secret = await shared(self._keys, key_uri, lambda: self._fetch_small(key_uri, None))
        return decrypt_aes128(body, secret, segment_iv(segment))

    async def _fetch_small(self, uri: str, byterange: ByteRange | None) -> bytes:
        fetched = await fetch(
            self.http,
            uri,
            headers=self.headers,
            timeout_s=self.ingest.segment_timeout_s,
            byterange=byterange,
            max_bytes=self.ingest.max_segment_bytes,
        )
        return fetched.body

    async def _store_init(self, row: RenditionRow, data: bytes) -> str:
        self._init_files += 1
        relpath = files.segment_relpath(
            self.stream_id,
            row.session_id,
            self.target.name,
            f"init-{self._init_token}-{self._init_files}.mp4",
        )
        await self.keeper.store.write(relpath, data)
        return relpath

    async def _commit(
        self, row: RenditionRow, media: _Media, *, relpath: str, init_relpath: str | None
    ) -> None:
        new, probe = media.new, media.probe
        placed = _place(self._last, new, probe, ts=media.init is None)
        self._last = placed
        start_ms = placed.start_ms
        if probe is not None and probe.duration_s > 0:
            duration_ms = round(probe.duration_s * 1000)
        else:
            duration_ms = new.segment.duration_ms
        now = self.keeper.now_ms()
        size = media.size
        # Where every track is recorded to: encoders that lead segments with audio hold
        # the audio for a segment's last moments in the next one, and a clip that waits
        # for the live edge must find them there.
        edge_ms = start_ms + duration_ms
        if probe is not None and probe.has_video and probe.audio_end_s is not None:
            edge_ms = min(edge_ms, start_ms + round(probe.audio_end_s * 1000))
        await self.keeper.store.index.add_segment(
            rendition_id=row.id,
            seq=new.segment.seq,
            epoch=new.segment.epoch,
            start_ms=start_ms,
            end_ms=start_ms + duration_ms,
            path=relpath,
            size=size,
            init_path=init_relpath,
            ref_pts_s=0.0 if probe is None else probe.ref_pts_s,
            keyframes_ms=[]
            if probe is None
            else [start_ms + round(k * 1000) for k in probe.keyframes_s],
            has_video=probe is not None and probe.has_video,
            has_audio=probe is not None and probe.has_audio,
            indexed_ms=now,
            params="" if probe is None else probe.params,
            edge_ms=edge_ms,
        )
        self.keeper.committed(
            self.target.name,
            session_id=row.session_id,
            end_ms=start_ms + duration_ms,
            size=size,
            main=self.target.main,
        )
        metrics.INGEST_LAG.labels(self.stream_id).observe(
            max(0.0, (now - new.first_seen_ms) / 1000)
        )
        if not new.backfill:
            # From before the origin's clock says it was done, when it runs a little ahead.
            metrics.PUBLISH_TO_INDEXED.labels(self.stream_id, new.publish_clock).observe(
                max(0.0, (now - new.published_ms) / 1000)
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Placed:
    """Where a committed segment sits: its wall start, and the anchor its run is timed by."""

    epoch: int
    seq: int
    start_ms: int
    ref_pts_s: float
    duration_s: float
    anchor_ms: int  # wall time of the run's last segment with its own PDT (or its first)
    anchor_pts_s: float


def _place(
    last: _Placed | None, new: NewSegment, probe: SegmentProbe | None, *, ts: bool
) -> _Placed:
    """A segment without its own PDT that continues the previous one in media time is
    placed by media time from the run's anchor, not by adding up rounded EXTINFs: the
    wall-to-media mapping then stays exact along a run (nginx-rtmp and GStreamer write
    no PDT at all). Anything else is placed where the playlist puts it."""
    segment = new.segment
    start_ms = new.start_ms
    if probe is None:
        return _Placed(
            epoch=segment.epoch,
            seq=segment.seq,
            start_ms=start_ms,
            ref_pts_s=0.0,
            duration_s=0.0,
            anchor_ms=start_ms,
            anchor_pts_s=0.0,
        )
    anchor_ms, anchor_pts_s = start_ms, probe.ref_pts_s
    follows = (
        last is not None
        and not segment.pdt_tagged
        and not new.discontinuity
        and last.epoch == segment.epoch
        and last.seq == segment.seq - 1
        and continues(last.ref_pts_s, last.duration_s, probe.ref_pts_s, wraps=ts)
    )
    if follows and last is not None:
        anchor_ms, anchor_pts_s = last.anchor_ms, last.anchor_pts_s
        elapsed_s = unwrap_s(probe.ref_pts_s, anchor_pts_s, wraps=ts) - anchor_pts_s
        start_ms = anchor_ms + round(elapsed_s * 1000)
    return _Placed(
        epoch=segment.epoch,
        seq=segment.seq,
        start_ms=start_ms,
        ref_pts_s=probe.ref_pts_s,
        duration_s=probe.duration_s,
        anchor_ms=anchor_ms,
        anchor_pts_s=anchor_pts_s,
    )


@dataclass(frozen=True, slots=True)
class _ClockWentBack:
    """The origin's clock went back at this segment: a new session begins with it."""

    seq: int


_Step = NewSegment | Gap | _ClockWentBack


def _step_order(step: _Step) -> tuple[int, int]:
    """Media-sequence order; at one seq, a clock jump, then a gap, then the segment."""
    if isinstance(step, _ClockWentBack):
        return (step.seq, 0)
    if isinstance(step, Gap):
        return (step.first_seq, 1)
    return (step.segment.seq, 2)


# Why a segment is missing when a request for it was refused outright.
_LOST_BECAUSE = {"too_large": "too_large", "bad_uri": "refused", "bad_redirect": "refused"}


InitKey = tuple[str, int | None]
K = TypeVar("K")
T = TypeVar("T")


async def shared(
    cache: dict[K, asyncio.Task[T]], key: K, start: Callable[[], Coroutine[Any, Any, T]]
) -> T:
    """One fetch per key, awaited by every download that needs it; a failed one is retried."""
    task = cache.get(key)
    if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
        task = asyncio.create_task(start())
        cache[key] = task
    # shield: one waiter being cancelled must not cancel the fetch the others share.
    return await asyncio.shield(task)


def _error_kind(exc: FetchError | PlaylistError | UnsupportedStream) -> str:
    if isinstance(exc, FetchError):
        return exc.kind
    return "unsupported" if isinstance(exc, UnsupportedStream) else "playlist"


def _init_key(init: InitSection) -> InitKey:
    return (init.uri, None if init.byterange is None else init.byterange.offset)


def _extension(kind: str, fragmented: bool) -> str:
    if kind == "subtitles":
        return "vtt"
    return "m4s" if fragmented else "ts"
