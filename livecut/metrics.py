"""Every Prometheus metric livecut exports, in one registry."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator

import av
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecut import __version__

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

REGISTRY = CollectorRegistry(auto_describe=True)
STREAM_STATES = ("connecting", "recording", "stalled", "ended", "failing")
# Every value a labelled counter's label can take, so that each series exists at 0 from
# start-up: increase() over a series that appears with its first event sees nothing.
GAP_REASONS = (
    "expired",
    "tagged_gap",
    "pdt_jump",
    "download_failed",
    "unreadable",
    "too_large",
    "refused",
    "not_stored",
    "disk_full",
)
ORIGIN_ERROR_KINDS = (
    "http_404",
    "http_403",
    "http_410",
    "http_4xx",
    "http_5xx",
    "http_error",
    "timeout",
    "connection",
    "truncated",
    "too_large",
    "bad_uri",
    "bad_redirect",
    "bad_range",
    "playlist",
    "unreadable_media",
    "unsupported",
    "crash",
)
# write: a segment or init section; index: the SQLite index; clip: a clip's output;
# remove: deleting media that retention or the disk floor let go.
STORAGE_OPS = ("write", "index", "clip", "remove")
CLIP_OUTCOMES = ("ready", "failed")
WEBHOOK_OUTCOMES = ("delivered", "retry", "failed")

# Standard process_* metrics (CPU, memory, open files) on Linux.
ProcessCollector(registry=REGISTRY)
BUILD_INFO = Gauge(
    "livecut_build_info",
    "Always 1; the labels say which livecut, Python, PyAV and FFmpeg are running.",
    ["version", "python", "pyav", "ffmpeg"],
    registry=REGISTRY,
)
BUILD_INFO.labels(
    __version__, platform.python_version(), av.__version__, str(av.ffmpeg_version_info)
).set(1)

SEGMENTS_INGESTED = Counter(
    "livecut_segments_ingested_total",
    "Media segments written and indexed.",
    ["stream"],
    registry=REGISTRY,
)
BYTES_INGESTED = Counter(
    "livecut_ingested_bytes_total",
    "Bytes of media segments written and indexed.",
    ["stream"],
    registry=REGISTRY,
)
INGEST_LAG = Histogram(
    "livecut_ingest_lag_seconds",
    "Time from a segment first appearing in a playlist to it being indexed.",
    ["stream"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PUBLISH_TO_INDEXED = Histogram(
    "livecut_publish_to_indexed_seconds",
    "Time from the origin publishing a segment to it being indexed. clock=origin: from "
    "its end by PDT (PDT + duration), when the origin's clock agrees with ours; "
    "clock=listing: from the first playlist that listed it, otherwise.",
    ["stream", "clock"],
    buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PUBLISH_CLOCKS = ("origin", "listing")
GAPS = Counter(
    "livecut_gaps_total",
    "Stretches of a stream that could not be recorded, by reason.",
    ["stream", "reason"],
    registry=REGISTRY,
)
GAP_SECONDS = Counter(
    "livecut_gap_seconds_total",
    "Wall-clock seconds of a stream that could not be recorded.",
    ["stream"],
    registry=REGISTRY,
)
ORIGIN_ERRORS = Counter(
    "livecut_origin_errors_total",
    "Failed requests to origins, by kind (http_404, http_5xx, timeout, connection, "
    "truncated, parse, unreadable_media, ...).",
    ["stream", "kind"],
    registry=REGISTRY,
)
SESSIONS_STARTED = Counter(
    "livecut_sessions_started_total",
    "Recording sessions begun.",
    ["stream"],
    registry=REGISTRY,
)
CLIP_JOBS = Counter(
    "livecut_clip_jobs_finished_total",
    "Clip jobs that finished, by outcome (ready, failed).",
    ["outcome"],
    registry=REGISTRY,
)
ANALYSIS_JOBS = Counter(
    "livecut_analysis_jobs_finished_total",
    "Shots and highlights jobs that finished, by kind and outcome (completed, failed).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
for _kind in ("shots", "highlights"):
    for _outcome in ("completed", "failed"):
        ANALYSIS_JOBS.labels(_kind, _outcome)
ANALYSIS_SECONDS = Histogram(
    "livecut_analysis_seconds",
    "Time a shots job, or the scoring of a highlights job, spent decoding and analysing.",
    ["kind"],
    buckets=(0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)
CLIP_CHECKS_FAILED = Counter(
    "livecut_clip_checks_failed_total",
    "Clip outputs refused by the check they pass before delivery, by what failed.",
    ["check"],
    registry=REGISTRY,
)
for _check in ("structure", "sync_start", "decode_order", "references", "frame_count", "audio"):
    CLIP_CHECKS_FAILED.labels(_check)
CLIP_CHECKS_FAILED.labels("decode")
CLIP_READY_SECONDS = Histogram(
    "livecut_clip_ready_seconds",
    "Time from a clip request to its output being ready (includes waiting for the live edge).",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
CLIP_PROCESSING_SECONDS = Histogram(
    "livecut_clip_processing_seconds",
    "Time spent remuxing a clip, once its media was recorded.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
INDEX_BYTES = Gauge(
    "livecut_index_bytes",
    "Size of the index: the SQLite file, or the PostgreSQL database.",
    registry=REGISTRY,
)
LEASES_HELD = Gauge(
    "livecut_stream_leases_held",
    "Streams whose lease this node holds, and so records (many nodes on PostgreSQL).",
    registry=REGISTRY,
)
LEASE_CHANGES = Counter(
    "livecut_stream_lease_changes_total",
    "Stream leases this node took (acquired) or gave up or lost (lost).",
    ["change"],
    registry=REGISTRY,
)
for _change in ("acquired", "lost"):
    LEASE_CHANGES.labels(_change)
JOBS_TAKEN_OVER = Counter(
    "livecut_jobs_taken_over_total",
    "Unfinished jobs this node claimed after their node's lease on them ran out, by kind.",
    ["kind"],
    registry=REGISTRY,
)
for _kind in ("clip", "analysis"):
    JOBS_TAKEN_OVER.labels(_kind)
INGEST_BUFFERED_BYTES = Gauge(
    "livecut_ingest_buffered_bytes",
    "Segment bytes downloaded (or about to be) and not yet handed to a segment worker.",
    registry=REGISTRY,
)
INGEST_BUFFER_WAITS = Counter(
    "livecut_ingest_buffer_waits",
    "Downloads that waited for room under [ingest] max_buffered_bytes.",
    registry=REGISTRY,
)
DISK_FREE_BYTES = Gauge(
    "livecut_disk_free_bytes",
    "Free bytes on the data directory's file system.",
    registry=REGISTRY,
)
DISK_FLOOR_BYTES = Gauge(
    "livecut_disk_floor_bytes",
    "Free space the daemon keeps on the data directory's file system by evicting the "
    "oldest unpinned segments (storage.min_free_bytes or storage.min_free_percent).",
    registry=REGISTRY,
)
STORAGE_ERRORS = Counter(
    "livecut_storage_errors_total",
    "Failed writes and removals on the data directory, by operation (write, index, clip, remove).",
    ["op"],
    registry=REGISTRY,
)
EVICTED_SEGMENTS = Counter(
    "livecut_evicted_segments_total",
    "Segments removed before their retention to keep the disk above its floor.",
    ["stream"],
    registry=REGISTRY,
)
EVICTED_BYTES = Counter(
    "livecut_evicted_bytes_total",
    "Bytes of segments removed before their retention to keep the disk above its floor.",
    ["stream"],
    registry=REGISTRY,
)

# Requests to the S3-compatible bucket (storage.backend = "s3"), by operation: put (one
# PUT), put_part (a part of a multipart upload), multipart (its start, completion or
# abort), get, head, delete (a DeleteObjects batch), list (a page).
OBJECT_OPS = ("put", "put_part", "multipart", "get", "head", "delete", "list")
# ok; missing: the object was not there (a HEAD or GET of a deleted object); error.
OBJECT_OUTCOMES = ("ok", "missing", "error")
OBJECT_REQUESTS = Counter(
    "livecut_object_store_requests_total",
    'Requests to the media bucket (storage.backend = "s3"), by operation and outcome '
    "(ok, missing, error); retries inside one request are not counted apart.",
    ["op", "outcome"],
    registry=REGISTRY,
)
for _op in OBJECT_OPS:
    for _outcome in OBJECT_OUTCOMES:
        OBJECT_REQUESTS.labels(_op, _outcome)
OBJECT_UPLOADED_BYTES = Counter(
    "livecut_object_store_uploaded_bytes_total",
    "Bytes sent to the media bucket in PUTs and parts that succeeded.",
    registry=REGISTRY,
)
OBJECT_DOWNLOADED_BYTES = Counter(
    "livecut_object_store_downloaded_bytes_total",
    "Bytes read from the media bucket (downloads to the read cache and proxied responses).",
    registry=REGISTRY,
)
# hit: a local copy was there; miss: the request started a download; join: it waited
# for a download another reader had started.
CACHE_RESULTS = ("hit", "miss", "join")
CACHE_REQUESTS = Counter(
    "livecut_read_cache_requests_total",
    'Requests for a local copy of an object (storage.backend = "s3"), by result.',
    ["result"],
    registry=REGISTRY,
)
for _result in CACHE_RESULTS:
    CACHE_REQUESTS.labels(_result)
CACHE_BYTES = Gauge(
    "livecut_read_cache_bytes",
    "Bytes of local copies of objects in the read cache (pinned copies included).",
    registry=REGISTRY,
)
CACHE_DOWNLOADED_BYTES = Counter(
    "livecut_read_cache_downloaded_bytes_total",
    "Bytes downloaded into the read cache.",
    registry=REGISTRY,
)
CACHE_EVICTED_BYTES = Counter(
    "livecut_read_cache_evicted_bytes_total",
    "Bytes of copies the read cache let go to stay within its budget or above the disk floor.",
    registry=REGISTRY,
)


# What StateCollector yields at scrape time: (name, help, labels).
STATE_FAMILIES: tuple[tuple[str, str, list[str]], ...] = (
    (
        "livecut_live_edge_age_seconds",
        "Seconds since the end of the newest recorded media of each stream.",
        ["stream"],
    ),
    ("livecut_clip_jobs", "Clip jobs by current state.", ["state"]),
    (
        "livecut_stream_state",
        "1 for each stream's current recording state, 0 for the others.",
        ["stream", "state"],
    ),
    ("livecut_clip_queue_depth", "Clip jobs waiting for a worker.", []),
    (
        "livecut_webhook_outbox_depth",
        "Webhook deliveries not yet accepted and not given up.",
        [],
    ),
    (
        "livecut_segment_workers",
        "Segment worker processes running (they write and probe each new segment).",
        [],
    ),
    (
        "livecut_segment_workers_resident_bytes",
        "Resident memory of the segment worker processes, together (process_* metrics "
        "cover the daemon's own process only).",
        [],
    ),
)


def declare_stream(stream_id: str) -> None:
    """Create a stream's labelled series at 0, at start-up or when the stream is added."""
    for counter in (SEGMENTS_INGESTED, BYTES_INGESTED, GAP_SECONDS, SESSIONS_STARTED):
        counter.labels(stream_id)
    for counter in (EVICTED_SEGMENTS, EVICTED_BYTES):
        counter.labels(stream_id)
    INGEST_LAG.labels(stream_id)
    for clock in PUBLISH_CLOCKS:
        PUBLISH_TO_INDEXED.labels(stream_id, clock)
    for reason in GAP_REASONS:
        GAPS.labels(stream_id, reason)
    for kind in ORIGIN_ERROR_KINDS:
        ORIGIN_ERRORS.labels(stream_id, kind)


CONFIG_RELOADS = Counter(
    "livecut_config_reloads_total",
    "Config reloads (SIGHUP), by result: applied, partial (some keys need a restart), "
    "refused (the file has errors; the running config is kept).",
    ["result"],
    registry=REGISTRY,
)
for _result in ("applied", "partial", "refused"):
    CONFIG_RELOADS.labels(_result)
CONFIG_LAST_RELOAD_SUCCESSFUL = Gauge(
    "livecut_config_last_reload_successful",
    "1 if the last config reload was applied (or none was asked for), 0 if it was refused.",
    registry=REGISTRY,
)
CONFIG_LAST_RELOAD_SUCCESSFUL.set(1)


class StateCollector(Collector):
    """Gauges read from the daemon's state at scrape time rather than pushed on every change."""

    def __init__(
        self,
        *,
        live_edges: Callable[[], dict[str, int]],
        clip_states: Callable[[], dict[str, int]],
        queue_depth: Callable[[], int],
        stream_states: Callable[[], dict[str, str]] = dict,
        clock: Callable[[], float] = time.time,
        outbox_depth: Callable[[], int] = lambda: 0,
        worker_pids: Callable[[], list[int]] = list,
    ) -> None:
        self._outbox_depth = outbox_depth
        self._worker_pids = worker_pids
        self._stream_states = stream_states
        self._live_edges = live_edges
        self._clip_states = clip_states
        self._queue_depth = queue_depth
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        """The families collect() yields, without reading the daemon's state."""
        for name, help_text, labels in STATE_FAMILIES:
            yield GaugeMetricFamily(name, help_text, labels=labels)

    def collect(self) -> Iterator[Metric]:
        age = _state_family("livecut_live_edge_age_seconds")
        now_ms = self._clock() * 1000
        for stream, edge_ms in sorted(self._live_edges().items()):
            age.add_metric([stream], max(0.0, (now_ms - edge_ms) / 1000))
        yield age
        jobs = _state_family("livecut_clip_jobs")
        counts = self._clip_states()
        for state in ("queued", "waiting", "processing", "ready", "failed"):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        states = _state_family("livecut_stream_state")
        for stream, current in sorted(self._stream_states().items()):
            for state in STREAM_STATES:
                states.add_metric([stream, state], 1.0 if state == current else 0.0)
        yield states
        queue = _state_family("livecut_clip_queue_depth")
        queue.add_metric([], self._queue_depth())
        yield queue
        outbox = _state_family("livecut_webhook_outbox_depth")
        outbox.add_metric([], self._outbox_depth())
        yield outbox
        pids = self._worker_pids()
        workers = _state_family("livecut_segment_workers")
        workers.add_metric([], len(pids))
        yield workers
        resident = _state_family("livecut_segment_workers_resident_bytes")
        resident.add_metric([], sum(resident_bytes(pid) for pid in pids))
        yield resident


def resident_bytes(pid: int) -> int:
    """A process's resident memory (Linux /proc); 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _state_family(name: str) -> GaugeMetricFamily:
    help_text, labels = next((h, ls) for n, h, ls in STATE_FAMILIES if n == name)
    return GaugeMetricFamily(name, help_text, labels=labels)


def install_state_collector(collector: StateCollector) -> Callable[[], None]:
    """Register the daemon's collector; returns the function that removes it again."""
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)


WEBHOOK_DELIVERIES = Counter(
    "livecut_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed: given up).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "livecut_webhook_delivery_seconds",
    "Time from an event to its webhook being accepted by the receiver.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0),
    registry=REGISTRY,
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
for _outcome in CLIP_OUTCOMES:
    CLIP_JOBS.labels(_outcome)
for _op in STORAGE_OPS:
    STORAGE_ERRORS.labels(_op)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_names() -> set[str]:
    """Every livecut_* sample name /metrics can carry (the daemon's state gauges included)."""
    names = {name for name, _, _ in STATE_FAMILIES}
    for family in REGISTRY.collect():
        if family.name.startswith("livecut_"):
            names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
    return names


EVENT_STREAMS = Gauge(
    "livecut_event_streams",
    "Open event streams (GET /v1/events: consoles following clip states).",
    registry=REGISTRY,
)
EVENT_STREAM_RESYNCS = Counter(
    "livecut_event_stream_resyncs_total",
    "Event streams that fell too far behind: their backlog was dropped and the client "
    "told to read the clip list afresh.",
    registry=REGISTRY,
)
