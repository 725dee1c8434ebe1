"""Probe one media segment with PyAV: where its frames and keyframes sit in its own timeline."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import av.error


class ProbeError(ValueError):
    """The segment is not media PyAV can read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentProbe:
    ref_pts_s: float  # earliest presentation time of any packet: what the segment's PDT marks
    duration_s: float  # from ref_pts_s to the end of the last video frame (or audio frame)
    keyframes_s: tuple[float, ...]  # video keyframe times, relative to ref_pts_s
    first_video_s: float | None  # first video frame, relative to ref_pts_s
    has_video: bool
    has_audio: bool


def probe_segment(data: bytes, init: bytes | None = None) -> SegmentProbe:
    """Demux (no decode) the segment; blocking, so call it from a worker thread."""
    try:
        with av.open(io.BytesIO((init or b"") + data), mode="r") as container:
            return _probe(container)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ProbeError(f"unreadable segment: {exc}") from exc


def _probe(container: av.container.InputContainer) -> SegmentProbe:
    kinds = {s.index: s.type for s in container.streams}
    # TS demuxers often leave video packet durations at 0; fall back to the frame rate
    # so a segment's end is the end of its last frame, not its start.
    frame_s = {
        s.index: float(1 / s.average_rate) if s.type == "video" and s.average_rate else 0.0
        for s in container.streams
    }
    if not any(k in ("video", "audio") for k in kinds.values()):
        raise ProbeError("no audio or video stream")
    starts: list[float] = []
    ends: dict[str, float] = {}
    keyframes: list[float] = []
    video_first: float | None = None
    seen_video = seen_audio = False
    for packet in container.demux():
        if packet.pts is None or packet.time_base is None:
            continue
        kind = kinds.get(packet.stream_index)
        if kind not in ("video", "audio"):
            continue
        pts = float(packet.pts * packet.time_base)
        duration = float((packet.duration or 0) * packet.time_base) or frame_s.get(
            packet.stream_index, 0.0
        )
        starts.append(pts)
        ends[kind] = max(ends.get(kind, pts), pts + duration)
        if kind == "video":
            seen_video = True
            video_first = pts if video_first is None else min(video_first, pts)
            if packet.is_keyframe:
                keyframes.append(pts)
        else:
            seen_audio = True
    if not starts:
        raise ProbeError("no timed packets")
    ref = min(starts)
    return SegmentProbe(
        ref_pts_s=ref,
        # Audio frames straddle segment boundaries; the video frames say where it ends.
        duration_s=ends.get("video", ends.get("audio", ref)) - ref,
        keyframes_s=tuple(sorted(k - ref for k in keyframes)),
        first_video_s=None if video_first is None else video_first - ref,
        has_video=seen_video,
        has_audio=seen_audio,
    )
