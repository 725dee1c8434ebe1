"""Probe one media segment with PyAV: where its frames and keyframes sit in its own timeline."""

from __future__ import annotations

import io
import itertools
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


# Opening a container normally decodes a frame of each stream to fill in its parameters;
# we need none of them (timestamps and keyframe flags come from the packets), so the
# probe is kept small and nothing is decoded: about 1 ms instead of 11 ms at 1080p.
FAST_OPEN = {"probesize": "32768", "analyzeduration": "0", "skip_frame": "all"}
# Copying into MP4 needs what the headers say (dimensions, sample rate, extradata), so
# the stream is probed in full there, still without decoding a frame.
NO_DECODE = {"skip_frame": "all"}
TS_SYNC = 0x47


def probe_segment(data: bytes, init: bytes | None = None) -> SegmentProbe:
    """Demux (no decode) the segment; blocking, so call it from a worker thread."""
    fmt = "mpegts" if init is None and data[:1] == bytes([TS_SYNC]) else None
    try:
        with av.open(
            io.BytesIO((init or b"") + data), mode="r", format=fmt, options=FAST_OPEN
        ) as container:
            return _probe(container)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ProbeError(f"unreadable segment: {exc}") from exc


def _probe(container: av.container.InputContainer) -> SegmentProbe:
    kinds = {s.index: s.type for s in container.streams}
    if not any(k in ("video", "audio") for k in kinds.values()):
        raise ProbeError("no audio or video stream")
    time_bases = {s.index: float(s.time_base) if s.time_base else 0.0 for s in container.streams}
    starts: list[float] = []
    ends: dict[str, float] = {}
    video_pts: list[float] = []
    keyframes: list[float] = []
    for packet in container.demux():
        kind = kinds.get(packet.stream_index)
        if packet.pts is None or kind not in ("video", "audio"):
            continue
        tb = time_bases[packet.stream_index]
        pts = packet.pts * tb
        starts.append(pts)
        if kind == "video":
            video_pts.append(pts)
            if packet.is_keyframe:
                keyframes.append(pts)
        else:
            ends["audio"] = max(ends.get("audio", pts), pts + (packet.duration or 0) * tb)
    if not starts:
        raise ProbeError("no timed packets")
    if video_pts:
        # TS demuxers leave video durations at 0: the last frame lasts as long as the
        # typical gap between frames, so a segment ends where its last frame does.
        ordered = sorted(video_pts)
        gaps = sorted(b - a for a, b in itertools.pairwise(ordered) if b > a)
        ends["video"] = ordered[-1] + (gaps[len(gaps) // 2] if gaps else 0.0)
    ref = min(starts)
    return SegmentProbe(
        ref_pts_s=ref,
        # Audio frames straddle segment boundaries; the video frames say where it ends.
        duration_s=ends.get("video", ends.get("audio", ref)) - ref,
        keyframes_s=tuple(sorted(k - ref for k in keyframes)),
        first_video_s=None if not video_pts else min(video_pts) - ref,
        has_video=bool(video_pts),
        has_audio="audio" in ends,
    )
