"""One stream's recorder: reads its master playlist, runs a worker per chosen rendition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from multidict import CIMultiDict

from livecut.config import IngestConfig, StreamConfig
from livecut.hls.playlist import (
    MasterPlaylist,
    MediaRendition,
    PlaylistError,
    Variant,
    parse_playlist,
    rendition_name,
    select_renditions,
)
from livecut.ingest.fetch import FetchError, fetch, sleep_backoff
from livecut.ingest.rendition import RenditionWorker, ended_reload_ms
from livecut.ingest.sessions import RenditionTarget, SessionKeeper, StreamStatus
from livecut.ingest.staging import SegmentWorkers
from livecut.store.store import Store

log = logging.getLogger(__name__)

# A master playlist can change (variants added, moved): it is re-read this often, and
# sooner when a rendition's media playlist keeps failing.
MASTER_REFRESH_S = 60.0
WORKER_CHECK_S = 2.0
FAILURES_BEFORE_REREAD = 3


class Recorder:
    """Owns a stream's tasks: its master-playlist loop and one worker per rendition."""

    def __init__(
        self,
        stream: StreamConfig,
        *,
        store: Store,
        http: aiohttp.ClientSession,
        ingest: IngestConfig,
        segment_workers: SegmentWorkers,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.http = http
        self.ingest = ingest
        self.segment_workers = segment_workers
        self.keeper = SessionKeeper(stream, store, clock)
        # Case-insensitive, so a stream's own User-Agent header replaces ours.
        headers: CIMultiDict[str] = CIMultiDict({"User-Agent": ingest.user_agent})
        for name, value in stream.headers:
            headers[name] = value
        self._headers = dict(headers)
        self.workers: dict[str, RenditionWorker] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> StreamStatus:
        return self.keeper.refresh_state()

    # lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.keeper.resume()
        self._task = asyncio.create_task(self._run(), name=f"recorder:{self.stream.id}")
        self._task.add_done_callback(self._log_death)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for worker in self.workers.values():
            await worker.stop()
        self.workers.clear()

    def _log_death(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("recorder for %s died", self.stream.id, exc_info=task.exception())
            exc = task.exception()
            self.keeper.error("crash", f"recorder crashed: {type(exc).__name__}: {exc}")

    # the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                targets, from_master = await self._targets()
                attempt = 0
            except (FetchError, PlaylistError) as exc:
                kind = exc.kind if isinstance(exc, FetchError) else "playlist"
                self.keeper.error(kind, str(exc))
                await self.keeper.check_silence()
                attempt += 1
                if self.keeper.all_ended:  # a finished broadcast's origin may be gone
                    await asyncio.sleep(ended_reload_ms(attempt) / 1000)
                    continue
                await sleep_backoff(attempt - 1, limit_s=max(2.0, self.stream.session_gap_s / 4))
                continue
            await self._apply(targets)
            await self._until_reread(from_master)

    async def _until_reread(self, from_master: bool) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(WORKER_CHECK_S)
            waited += WORKER_CHECK_S
            failing = any(
                w.playlist_failures >= FAILURES_BEFORE_REREAD for w in self.workers.values()
            )
            dead = any(not w.alive for w in self.workers.values())
            if failing or dead or (from_master and waited >= MASTER_REFRESH_S):
                return

    async def _targets(self) -> tuple[list[RenditionTarget], bool]:
        fetched = await fetch(
            self.http,
            self.stream.url,
            headers=self._headers,
            timeout_s=self.ingest.playlist_timeout_s,
        )
        parsed = parse_playlist(fetched.body.decode("utf-8", "replace"), fetched.url)
        if not isinstance(parsed, MasterPlaylist):
            return [RenditionTarget(name="main", uri=fetched.url, kind="video", main=True)], False
        selection = select_renditions(parsed, self.stream.renditions)
        targets = [_variant_target(v, main=i == 0) for i, v in enumerate(selection.variants)]
        targets += [_media_target(m) for m in selection.media]
        return targets, True

    async def _apply(self, targets: list[RenditionTarget]) -> None:
        wanted = {t.name: t for t in targets}
        for name, worker in list(self.workers.items()):
            if wanted.get(name) != worker.target or not worker.alive:
                # A dead worker is replaced: the new one resumes after what is stored.
                await worker.stop()
                del self.workers[name]
                self.keeper.forget(name)
        self.keeper.active = set(wanted)
        for name, target in wanted.items():
            if name not in self.workers:
                worker = RenditionWorker(
                    target,
                    keeper=self.keeper,
                    http=self.http,
                    ingest=self.ingest,
                    segment_workers=self.segment_workers,
                    headers=self._headers,
                )
                self.workers[name] = worker
                await worker.start()
        self.keeper.status.renditions = {t.name: t.uri for t in targets}
        main = next((t for t in targets if t.main), None)
        self.keeper.status.media_url = None if main is None else main.uri


def _variant_target(variant: Variant, *, main: bool) -> RenditionTarget:
    return RenditionTarget(
        name=variant.name,
        uri=variant.uri,
        kind="video",
        main=main,
        bandwidth=variant.bandwidth,
        resolution=None if variant.resolution is None else "x".join(map(str, variant.resolution)),
        codecs=variant.codecs,
    )


def _media_target(media: MediaRendition) -> RenditionTarget:
    assert media.uri is not None
    return RenditionTarget(
        name=rendition_name(media),
        uri=media.uri,
        kind="audio" if media.type == "AUDIO" else "subtitles",
        main=False,
        language=media.language,
    )
