"""Every Prometheus metric livecut exports, in one registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
STREAM_STATES = ("connecting", "recording", "stalled", "ended", "failing")

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
    "Size of the SQLite index file.",
    registry=REGISTRY,
)
DISK_FREE_BYTES = Gauge(
    "livecut_disk_free_bytes",
    "Free bytes on the data directory's file system.",
    registry=REGISTRY,
)


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
    ) -> None:
        self._outbox_depth = outbox_depth
        self._stream_states = stream_states
        self._live_edges = live_edges
        self._clip_states = clip_states
        self._queue_depth = queue_depth
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "livecut_live_edge_age_seconds",
            "Seconds since the end of the newest recorded media of each stream.",
            labels=["stream"],
        )
        now_ms = self._clock() * 1000
        for stream, edge_ms in sorted(self._live_edges().items()):
            age.add_metric([stream], max(0.0, (now_ms - edge_ms) / 1000))
        yield age
        jobs = GaugeMetricFamily(
            "livecut_clip_jobs", "Clip jobs by current state.", labels=["state"]
        )
        counts = self._clip_states()
        for state in ("queued", "waiting", "processing", "ready", "failed"):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        states = GaugeMetricFamily(
            "livecut_stream_state",
            "1 for each stream's current recording state, 0 for the others.",
            labels=["stream", "state"],
        )
        for stream, current in sorted(self._stream_states().items()):
            for state in STREAM_STATES:
                states.add_metric([stream, state], 1.0 if state == current else 0.0)
        yield states
        yield GaugeMetricFamily(
            "livecut_clip_queue_depth",
            "Clip jobs waiting for a worker.",
            value=self._queue_depth(),
        )
        yield GaugeMetricFamily(
            "livecut_webhook_outbox_depth",
            "Webhook deliveries not yet accepted and not given up.",
            value=self._outbox_depth(),
        )


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
