"""The daemon: owns the store, the recorders, the clip jobs, retention and the API server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from livecut import memory, metrics
from livecut.analysis.jobs import AnalysisJobs
from livecut.analysis.live import LiveShots
from livecut.api.app import make_app
from livecut.api.console import find_hlsjs
from livecut.api.context import ApiContext
from livecut.api.feed import ClipFeed
from livecut.api.signed import Signer, load_secret
from livecut.clips.jobs import ClipJobs
from livecut.config import Config, ConfigError, StreamConfig, load_config
from livecut.ingest.recorder import Recorder
from livecut.ingest.staging import SegmentWorkers
from livecut.nodes import Node
from livecut.notify import Notifier
from livecut.reload import ReloadOutcome, plan_reload
from livecut.store.index import CLIP_CHANNEL, EDGE_CHANNEL, Index, IndexState
from livecut.store.pg import PostgresSql
from livecut.store.store import Store
from livecut.webhooks.events import EventBuilder
from livecut.webhooks.outbox import Deliverer

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 30.0
RETENTION_BATCH = 500
STREAM_WATCH_S = 1.0
IDEMPOTENCY_KEEP_MS = 24 * 3600 * 1000
STATUS_EVERY_S = 1.0  # how often the service manager's STATUS= is checked for a change


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionReport:
    segments_removed: int
    clips_removed: int


class Daemon:
    """Start, run, stop: every long-lived task below is owned and stopped from here."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.config_path = config_path  # re-read on reload(); None: nothing to re-read
        self.notifier = Notifier(None) if notifier is None else notifier
        self.last_reload: ReloadOutcome | None = None
        self._reload_wanted = asyncio.Event()
        self._reloader: asyncio.Task[None] | None = None
        self._status: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._sent_status = ""  # the last STATUS= told to the service manager
        cluster = config.cluster
        self.store = Store(
            config.server.data_dir,
            config.storage,
            index=None if cluster.index_url is None else Index.on_postgres(cluster.index_url),
        )
        self.store.index.node_id = cluster.node_id
        # Many nodes: the streams this node records are the ones whose leases it holds.
        self.node: Node | None = None
        self.store.configured_overlays = dict(config.overlays)
        self.segment_workers = SegmentWorkers(
            config.ingest.segment_workers, buffer_bytes=config.ingest.max_buffered_bytes
        )
        self.jobs = ClipJobs(self.store, config.clips, clock=clock)
        self.live_shots = LiveShots(self.store, config.streams, clock=clock)
        self.analysis = AnalysisJobs(
            self.store, self.jobs, base_url=lambda: self.base_url, clock=clock
        )
        self.store.space.busy = self.read_ranges  # the disk floor keeps what jobs read
        self.jobs.follow_ups = self.analysis.jobs_for_clip
        self.jobs.on_finished = self.analysis.clip_done
        self.jobs.on_deleted = self.analysis.clip_gone
        if cluster.index_url is not None:
            self.jobs.lease_ms = self.analysis.lease_ms = round(cluster.lease_s * 1000)
        self.recorders: dict[str, Recorder] = {}
        self._index_state = IndexState()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._retention: asyncio.Task[None] | None = None
        self._uninstall_metrics: Callable[[], None] | None = None
        self._stream_watch: asyncio.Task[None] | None = None
        self.deliverer: Deliverer | None = None
        self.base_url = ""
        self.events = EventBuilder(
            config.webhooks,
            self.store.index,
            base_url=lambda: self.base_url,
            clock=clock,
            wake=self._wake_webhooks,
        )
        # Clip and session changes write their webhook rows in their own transaction.
        self.store.index.on_event = self.events
        # ...and every clip change, once committed, goes to the console's event streams.
        self.clip_feed = ClipFeed()
        self.store.index.clip_watchers.append(self.clip_feed.publish)
        self.signer = Signer(load_secret(config.server.playback_secret, config.server.data_dir))

    def _wake_webhooks(self) -> None:
        if self.deliverer is not None:
            # After the current transaction commits: the loop runs it once we yield.
            # No loop (a synchronous caller): the next pass finds the rows anyway.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self.deliverer.wake)

    async def start(self) -> str:
        """Bring everything up; returns the API's base URL."""
        await self.store.open()
        await self._listen()
        if self.config.cluster.index_url is not None and self.config.storage.backend == "local":
            log.warning(
                "the index is shared but media stays on this node's disk: other nodes cannot"
                ' cut what it records; set [storage] backend = "s3" to run several nodes'
            )
        if self.notifier.watchdog_s is not None:
            self._watchdog = asyncio.create_task(
                self._feed_watchdog(self.notifier.watchdog_s), name="watchdog"
            )
            self._watchdog.add_done_callback(_log_death)
        removed = await self.store.reconcile()
        if removed:
            log.info("removed %d orphan file(s) left by an interrupted write", len(removed))
        now_ms = int(self.clock() * 1000)
        # No connection cap: every rendition may hold a blocking playlist reload open
        # (LL-HLS) while its downloads need connections of their own, often to one CDN
        # host; per-stream download concurrency is bounded by the recorders instead.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            auto_decompress=True,
        )
        for stream in self.config.streams:
            await self.store.index.ensure_stream(stream.id, stream.url, now_ms)
            metrics.declare_stream(stream.id)
            if stream.enabled:
                self.recorders[stream.id] = self._recorder(stream)
        await self._end_unrecorded_sessions()
        await self.refresh_index_state()
        self._uninstall_metrics = metrics.install_state_collector(
            metrics.StateCollector(
                live_edges=lambda: self._index_state.live_edges,
                clip_states=lambda: self._index_state.clip_states,
                queue_depth=self.jobs.queue_depth,
                stream_states=lambda: {k: r.status.state for k, r in self.recorders.items()},
                clock=self.clock,
                outbox_depth=lambda: self._index_state.outbox_depth,
                worker_pids=self.segment_workers.pids,
            )
        )
        self.deliverer = Deliverer(
            self.config.webhooks,
            self.store.index,
            user_agent=self.config.ingest.user_agent,
            clock=self.clock,
        )
        self.deliverer.start()
        await self.jobs.start()
        await self.analysis.start()
        self.live_shots.start()
        app = make_app(
            ApiContext(
                config=self.config,
                store=self.store,
                jobs=self.jobs,
                analysis=self.analysis,
                recorders=self.recorders,
                clock=self.clock,
                base_url=lambda: self.base_url,
                wake_webhooks=self._wake_webhooks,
                streams=lambda: self.config.streams,
                last_reload=lambda: self.last_reload,
                signer=self.signer,
                clip_feed=self.clip_feed,
                before_scrape=self.refresh_index_state,
                started_ms=now_ms,
                load=self._load,
                hlsjs=find_hlsjs(self.config.server),
            )
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        server = self.config.server
        site = web.TCPSite(self._runner, server.listen_host, server.listen_port)
        await site.start()
        port = _bound_port(self._runner, server.listen_port)
        # Links (and webhook bodies) use the public URL; the log also names the bound address.
        self.base_url = server.base_url(port)
        if self.config.cluster.index_url is None:
            for recorder in self.recorders.values():
                await recorder.start()
        else:
            self.node = Node(
                self.store.index,
                self.config.cluster,
                streams=lambda: list(self.recorders),
                record=self._record_stream,
                stop_recording=self._stop_recording,
                load=self._load,
                url=lambda: self.base_url,
                statuses=lambda held: {
                    s: self.recorders[s].status.as_dict() for s in held if s in self.recorders
                },
                clock=self.clock,
            )
            await self.node.start()
            node = self.node
            self.store.space.evictable = lambda stream_id: stream_id in node.held
        self._retention = asyncio.create_task(self._retain_forever(), name="retention")
        self._trimmer = asyncio.create_task(memory.trim_forever(), name="malloc-trim")
        self._trimmer.add_done_callback(_log_death)
        self._stream_watch = asyncio.create_task(self._watch_streams(), name="stream-watch")
        self._stream_watch.add_done_callback(_log_death)
        self._reloader = asyncio.create_task(self._reload_when_asked(), name="config-reload")
        self._reloader.add_done_callback(_log_death)
        bound = ", ".join(_address(a) for a in self._runner.addresses)
        log.info(
            "livecut API listening on %s (links use %s), recording %d stream(s)",
            bound,
            self.base_url,
            len(self.recorders),
        )
        # The index is open and the API answers: the service manager may send traffic.
        self._ready()
        self._status = asyncio.create_task(self._report_status(), name="notify-status")
        self._status.add_done_callback(_log_death)
        return self.base_url

    async def add_stream(self, stream: StreamConfig) -> Recorder:
        await self.store.index.ensure_stream(stream.id, stream.url, int(self.clock() * 1000))
        metrics.declare_stream(stream.id)
        recorder = self._recorder(stream)
        self.recorders[stream.id] = recorder
        await self._start_recorder(stream.id)
        return recorder

    async def _start_recorder(self, stream_id: str) -> None:
        """Record the stream here: one node alone records every stream; of many nodes,
        the one holding the stream's lease (the others are told to look again)."""
        if self.node is None or stream_id in self.node.held:
            await self.recorders[stream_id].start()
        else:
            self.node.poke()

    async def _record_stream(self, stream_id: str) -> None:
        """This node took the stream's lease."""
        recorder = self.recorders.get(stream_id)
        if recorder is not None:
            await recorder.start()

    async def _stop_recording(self, stream_id: str) -> None:
        """This node gave up or lost the stream's lease."""
        recorder = self.recorders.get(stream_id)
        if recorder is not None:
            await recorder.stop()

    def _load(self) -> dict[str, object]:
        """What this node is doing, for GET /v1/nodes."""
        return {
            "clips_active": self.jobs.active_count(),
            "clips_queued": self.jobs.queue_depth(),
        }

    async def _listen(self) -> None:
        """Many nodes: hear of recordings growing and clips changing on the others."""
        index = self.store.index
        if not isinstance(index.engine_sql, PostgresSql):
            return
        await index.engine_sql.listen(EDGE_CHANNEL, self.store.edges.changed)
        await index.engine_sql.listen(CLIP_CHANNEL, self._clip_notice)

    def _clip_notice(self, payload: str) -> None:
        node_id, _, rest = payload.partition(" ")
        event, _, clip_id = rest.partition(" ")
        if node_id == self.config.cluster.node_id or not clip_id:
            return  # this node's own change: its watchers were told already
        self.clip_feed.publish(event, clip_id)
        self.jobs.changed_elsewhere(clip_id)

    def _recorder(self, stream: StreamConfig) -> Recorder:
        assert self._http is not None
        return Recorder(
            stream,
            store=self.store,
            http=self._http,
            ingest=self.config.ingest,
            segment_workers=self.segment_workers,
            clock=self.clock,
        )

    async def stop(self) -> None:
        self.notifier.stopping()
        for task in (self._reloader, self._status, self._trimmer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reloader = self._status = self._trimmer = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.node is not None:
            await self.node.stop()  # its streams' leases go back at once
            self.node = None
        for recorder in self.recorders.values():
            await recorder.stop()
        await self.segment_workers.close()
        await self.jobs.stop()
        await self.analysis.stop()
        await self.live_shots.stop()
        if self._stream_watch is not None:
            self._stream_watch.cancel()
            await asyncio.gather(self._stream_watch, return_exceptions=True)
            self._stream_watch = None
        if self.deliverer is not None:
            await self.deliverer.stop()
            self.deliverer = None
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
            self._retention = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._uninstall_metrics is not None:
            self._uninstall_metrics()
            self._uninstall_metrics = None
        await self.store.close()
        # Fed until the very end: a slow but live shutdown is not a hang.
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        self.notifier.close()

    # the service manager -----------------------------------------------------------
    def status_line(self) -> str:
        """One line for `systemctl status`: what is recording, what is queued, where the API is."""
        recording = sum(1 for r in self.recorders.values() if r.status.state == "recording")
        line = (
            f"recording {recording} of {len(self.recorders)} stream(s), "
            f"{self.jobs.queue_depth()} clip(s) queued; API on {self.base_url}"
        )
        last = self.last_reload
        if last is not None and last.result == "refused":
            line += "; last config reload refused (see the log)"
        elif last is not None and last.needs_restart:
            line += "; restart to apply " + ", ".join(last.needs_restart)
        return line

    def _ready(self) -> None:
        self._sent_status = self.status_line()
        self.notifier.ready(self._sent_status)

    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            status = self.status_line()
            if status != self._sent_status:
                self.notifier.status(status)
                self._sent_status = status

    async def _feed_watchdog(self, period_s: float) -> None:
        # Runs on the event loop: if the loop stalls, the pings stop and systemd restarts us.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(period_s)

    # reload ------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask for the config file to be re-read (SIGHUP); requests during a reload coalesce."""
        self._reload_wanted.set()

    async def _reload_when_asked(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reload()
            except (OSError, sqlite3.Error):
                # The index or a file failed mid-way. self.config changes only once all is
                # applied, so the next SIGHUP plans the same changes again and finishes them.
                log.exception("config reload failed while applying; send SIGHUP to retry")

    async def reload(self) -> ReloadOutcome:
        """Re-read the config file and apply it; a config with errors is refused whole."""
        self.notifier.reloading()
        try:
            outcome = await self._reload()
        finally:
            self._ready()
        return outcome

    async def _reload(self) -> ReloadOutcome:
        now_ms = int(self.clock() * 1000)
        if self.config_path is None:
            errors = ["no config file to re-read: the daemon was started without one"]
        else:
            try:
                return await self.apply_config(load_config(self.config_path))
            except ConfigError as exc:
                errors = [str(ConfigError([e], source=exc.source)) for e in exc.errors]
        for message in errors:
            log.error("config reload refused, the running config is kept: %s", message)
        return self._record(ReloadOutcome(at_ms=now_ms, result="refused", errors=tuple(errors)))

    async def apply_config(self, new: Config) -> ReloadOutcome:
        """Start, stop or replace the recorders whose streams changed; leave the rest running."""
        plan = plan_reload(self.config, new)
        for stream_id in plan.shots:
            await self.live_shots.unfollow(stream_id)
        for stream_id in plan.stopped:
            stopped = self.recorders.pop(stream_id, None)
            if stopped is not None:  # None: stopped by a reload that failed half-way
                await stopped.stop()
        for stream in plan.restarted:
            if stream.id in self.recorders:
                await self.recorders[stream.id].stop()
            await self.store.index.ensure_stream(stream.id, stream.url, int(self.clock() * 1000))
            self.recorders[stream.id] = self._recorder(stream)
            await self._start_recorder(stream.id)
        for stream in plan.started:
            if stream.id in self.recorders:  # left by a reload that failed half-way
                await self.recorders[stream.id].stop()
            await self.add_stream(stream)
        await self._end_unrecorded_sessions()
        now_ms = int(self.clock() * 1000)
        for stream in plan.config.streams:
            await self.store.index.ensure_stream(stream.id, stream.url, now_ms)
        self.config = plan.config
        self.store.space.config = plan.config.storage  # the floor holds from the next write
        for stream in plan.config.streams:
            if stream.id in plan.shots and stream.enabled and stream.shots:
                self.live_shots.follow(stream.id)
        for key in plan.needs_restart:
            log.warning("config reload: %s changed; it takes effect after a restart", key)
        outcome = ReloadOutcome(
            at_ms=now_ms,
            result="partial" if plan.needs_restart else "applied",
            needs_restart=plan.needs_restart,
            started=tuple(s.id for s in plan.started),
            stopped=plan.stopped,
            restarted=tuple(s.id for s in plan.restarted),
            updated=plan.updated,
        )
        log.info("%s", outcome.summary())
        return self._record(outcome)

    async def _end_unrecorded_sessions(self) -> None:
        """A session whose stream is no longer recorded (removed from the config or
        disabled, by a reload or while the daemon was down) ends at its live edge, with
        end_reason "stopped": nothing will add to it, and a session left live would keep
        clips waiting for an edge that never moves and hold its stream's state."""
        for session in await self.store.index.live_sessions():
            if session.stream_id in self.recorders:
                continue
            await self.store.index.end_session(
                session.id, ended_ms=session.live_edge_ms or session.started_ms, reason="stopped"
            )
            self.store.edges.changed(session.stream_id)
            log.info(
                "stream %s: session %s ended (stopped: the stream is no longer recorded)",
                session.stream_id,
                session.id,
            )

    def _record(self, outcome: ReloadOutcome) -> ReloadOutcome:
        self.last_reload = outcome
        metrics.CONFIG_RELOADS.labels(outcome.result).inc()
        metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(0 if outcome.result == "refused" else 1)
        return outcome

    # stream events ---------------------------------------------------------------
    async def _watch_streams(self) -> None:
        """stream.failing when a recorder starts failing, stream.recovered when it stops."""
        failing = {k for k, r in self.recorders.items() if r.status.state == "failing"}
        while True:
            await asyncio.sleep(STREAM_WATCH_S)
            failing &= self.recorders.keys()  # a stream a reload removed starts afresh
            for stream_id, recorder in list(self.recorders.items()):
                status = recorder.status
                now_failing = status.state == "failing"
                if now_failing == (stream_id in failing):
                    continue
                event = "stream.failing" if now_failing else "stream.recovered"
                (failing.add if now_failing else failing.discard)(stream_id)
                data = {
                    "stream": stream_id,
                    "state": status.state,
                    "last_error": status.last_error,
                    "last_error_ms": status.last_error_ms,
                }
                await self.store.index.add_deliveries(await self.events(event, data))

    # retention -------------------------------------------------------------------
    async def _retain_forever(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_EVERY_S)
            try:
                await self.retain()
                await self.store.space.make_room()  # clip outputs take disk space too
            except OSError:
                log.exception("retention pass failed; trying again in %ss", RETENTION_EVERY_S)

    async def refresh_index_state(self) -> None:
        """Read what the metrics report of the index (before each scrape)."""
        self._index_state = await self.store.index.state()

    async def read_ranges(self, stream_id: str) -> list[tuple[int, int]]:
        """What queued or running clip and analysis jobs will read of a stream, and what
        is being read outside them (a thumbnail)."""
        return (
            self.jobs.read_ranges(stream_id)
            + await self.analysis.read_ranges(stream_id)
            + self.store.reads(stream_id)
        )

    async def retain(self) -> RetentionReport:
        """Drop segments older than each stream's retention, except what clip jobs still read."""
        now_ms = int(self.clock() * 1000)
        segments_removed = 0
        for stream in self.config.streams:
            if self.node is not None and stream.id not in self.node.held:
                continue  # of many nodes, the one recording a stream keeps its retention
            cutoff = now_ms - round(stream.retention_s * 1000)
            # What jobs will open, the keyframe before a start included (as the floor keeps).
            busy = await self.read_ranges(stream.id)
            from_ms: int | None = None
            while True:
                old = await self.store.index.segments_before(
                    stream.id, cutoff, limit=RETENTION_BATCH, from_ms=from_ms
                )
                doomed = [
                    s for s in old if not any(s.start_ms < e and s.end_ms > b for b, e in busy)
                ]
                if doomed:
                    # Row first, then file: a crash in between leaves an orphan, never a
                    # dangling row.
                    inits = await self.store.index.delete_segments([s.id for s in doomed])
                    await self.store.remove_files([s.path for s in doomed] + inits)
                    segments_removed += len(doomed)
                # Busy segments stay behind: the next page starts where this one ended.
                if len(old) < RETENTION_BATCH or old[-1].start_ms == from_ms:
                    break
                from_ms = old[-1].start_ms
            await self.store.index.forget_emptied(stream.id, cutoff)
        await self.store.index.forget_idempotency_keys(now_ms - IDEMPOTENCY_KEEP_MS)
        clips_removed = 0
        keep_cutoff = now_ms - round(self.config.clips.keep_s * 1000)
        for clip in await self.store.index.clips_finished_before(keep_cutoff):
            await self.jobs.delete(clip.id)
            clips_removed += 1
        if segments_removed or clips_removed:
            log.info(
                "retention removed %d segment(s) and %d clip(s)", segments_removed, clips_removed
            )
        return RetentionReport(segments_removed=segments_removed, clips_removed=clips_removed)


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for site_address in runner.addresses:
        if isinstance(site_address, tuple) and len(site_address) >= 2:
            return int(site_address[1])
    return configured
