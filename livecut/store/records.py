"""Plain records read from and written to the index; shared by store, planner and API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

SessionState = Literal["live", "ended"]
ClipState = Literal["queued", "waiting", "processing", "ready", "failed"]
CLIP_STATES: tuple[ClipState, ...] = ("queued", "waiting", "processing", "ready", "failed")


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRow:
    id: str
    stream_id: str
    state: SessionState
    clock: Literal["origin", "local"]
    started_ms: int  # wall time of the first recorded media
    ended_ms: int | None
    end_reason: str | None
    live_edge_ms: int | None  # end of the last recorded segment
    # Where every track of the main rendition is recorded to (audio may trail the video).
    tracks_edge_ms: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RenditionRow:
    id: int
    session_id: str
    name: str
    uri: str
    kind: str  # video, audio, subtitles
    main: bool  # the rendition clips are cut from
    bandwidth: int | None
    resolution: str | None
    codecs: str | None
    language: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentRow:
    id: int
    rendition_id: int
    seq: int
    epoch: int
    start_ms: int  # wall time of `ref_pts_s` (the segment's PDT, see media/probe.py)
    end_ms: int
    path: str  # relative to the data directory
    size: int
    init_path: str | None  # fMP4 init section, relative to the data directory
    ref_pts_s: float  # media time (seconds, in the segment's own timeline) that start_ms marks
    keyframes_ms: tuple[int, ...] = field(default=())  # wall times of video keyframes
    has_video: bool = True
    has_audio: bool = False
    params: str = ""  # codec parameters (media.probe.stream_params); a change splits a clip
    # Its number in the stream's playback playlists (EXT-X-MEDIA-SEQUENCE): consecutive
    # over every stored segment of one series (the main renditions, or one rendition
    # name) across sessions; and how many discontinuities that series had up to it.
    playback_seq: int | None = None
    playback_disc: int | None = None


# Two segments closer than this are a join, not a hole: origins round PDT to the
# millisecond and place it by their own clock, so successive PDTs jitter slightly.
MEDIA_JOIN_MS = 100


def media_runs_on(previous: SegmentRow, segment: SegmentRow) -> bool:
    """A player may go from `previous` to `segment` without being told of a discontinuity:
    same rendition, epoch and codec parameters, and no hole between their spans."""
    return (
        segment.epoch == previous.epoch
        and segment.rendition_id == previous.rendition_id
        and segment.params == previous.params
        and segment.start_ms - previous.end_ms <= MEDIA_JOIN_MS
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class GapRow:
    rendition_id: int
    start_ms: int
    end_ms: int
    first_seq: int | None
    last_seq: int | None
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipRow:
    id: str
    stream_id: str
    session_id: str | None
    name: str | None
    state: ClipState
    start_ms: int  # as requested
    end_ms: int
    created_ms: int
    updated_ms: int
    error: str | None
    result: dict[str, object] | None  # what was delivered, once ready
    options: dict[str, Any] | None = None  # windows, accuracy, formats, rendition

    def delivered_span(self) -> tuple[int, int]:
        """The wall-clock span the clip delivered (its first frame to its end) once ready;
        the span asked for until then."""
        result = self.result or {}
        start, end = result.get("start_ms"), result.get("end_ms")
        if isinstance(start, int) and isinstance(end, int) and end > start:
            return start, end
        return self.start_ms, self.end_ms


DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryRow:
    """One webhook delivery in the outbox: one event for one receiver."""

    id: str  # the delivery id the receiver sees (stable across retries)
    target: str  # a configured endpoint's name, or "callback" for a clip's callback_url
    url: str
    event: str
    clip_id: str | None
    body: str  # the exact JSON that is signed and sent
    created_ms: int
    state: DeliveryState = "pending"
    attempts: int = 0
    next_ms: int = 0
    last_status: int | None = None
    last_error: str | None = None
    done_ms: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRow:
    delivery_id: str
    at_ms: int
    status: int | None  # HTTP status, or None when no response came
    error: str | None
    latency_ms: int


def segment_files(segments: Iterable[SegmentRow]) -> list[str]:
    """The relpaths a reader of these segments opens: each segment and its init section
    (for Store.fetched)."""
    wanted: dict[str, None] = {}
    for segment in segments:
        if segment.init_path is not None:
            wanted[segment.init_path] = None
        wanted[segment.path] = None
    return list(wanted)
