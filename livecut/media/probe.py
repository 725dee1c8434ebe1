"""Probe one media segment with PyAV: where its frames and keyframes sit in its own timeline.

DESIGN (timing): a segment's wall-clock anchor (its EXT-X-PROGRAM-DATE-TIME) marks the
presentation time of its first video packet in decode order; audio-only segments are
anchored at their first audio sample. ffmpeg's HLS muxer stamps PDT exactly there: it
measures each segment from the presentation time of the packet it cut at, a keyframe
or (with split_by_time) not. For a closed GOP that keyframe is also the segment's first
frame presented; in an open GOP the leading pictures presented before it belong to the
previous segment's stretch. Audio never anchors a segment with video: real encoders
lead with audio (AAC priming, nginx-rtmp's audio-first segments), and timing video
from it shifts every frame.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.video.stream import VideoStream


class ProbeError(ValueError):
    """The segment is not media PyAV can read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentProbe:
    ref_pts_s: float  # media time the segment's PDT marks (see the module's DESIGN note)
    duration_s: float  # from ref_pts_s to the end of the last video frame (or audio frame)
    keyframes_s: tuple[float, ...]  # video keyframe times, relative to ref_pts_s
    first_video_s: float | None  # earliest presented video frame, relative to ref_pts_s
    has_video: bool
    has_audio: bool
    params: str  # codec parameters a clip must not mix (see stream_params)
    audio_end_s: float | None = None  # where its audio ends, relative to ref_pts_s


# Opening a container normally decodes a frame of each stream to fill in its parameters;
# we need none of them (timestamps and keyframe flags come from the packets, sizes and
# profiles from the parsers), so the probe is kept small and nothing is decoded: about
# 1 ms instead of 11 ms at 1080p.
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


def probe_file(path: Path, init: bytes | None = None) -> SegmentProbe:
    """probe_segment for a segment on disk: FFmpeg reads a TS file itself, with no
    Python in its read loop; an fMP4 fragment is read whole to join its init section."""
    try:
        if init is not None:
            return probe_segment(path.read_bytes(), init)
        with open(path, "rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise ProbeError(f"cannot read the segment: {exc}") from exc
    fmt = "mpegts" if first == bytes([TS_SYNC]) else None
    try:
        with av.open(str(path), mode="r", format=fmt, options=FAST_OPEN) as container:
            return _probe(container)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ProbeError(f"unreadable segment: {exc}") from exc


def stream_params(container: InputContainer) -> str:
    """What a clip cannot change mid-track: codec, profile and size of the first video
    stream, codec, rate and channels of the first audio stream ("h264 High 1280x720|aac
    48000 2"). Two segments with different strings cannot share one MP4 track."""
    video = next((s for s in container.streams if isinstance(s, VideoStream)), None)
    audio = next((s for s in container.streams if isinstance(s, AudioStream)), None)
    parts = []
    if video is not None:
        v = video.codec_context
        if not (v.width and v.height):
            # The parser saw no parameter set it could read (a segment that starts
            # between keyframes): unknown, which the planner treats as "the same".
            return ""
        parts.append(f"{v.name} {v.profile or '-'} {v.width}x{v.height}")
    if audio is not None:
        a = audio.codec_context
        parts.append(f"{a.name} {a.sample_rate} {a.channels}")
    return "|".join(parts)


def _probe(container: InputContainer) -> SegmentProbe:
    kinds = {s.index: s.type for s in container.streams}
    if not any(k in ("video", "audio") for k in kinds.values()):
        raise ProbeError("no audio or video stream")
    time_bases = {s.index: float(s.time_base) if s.time_base else 0.0 for s in container.streams}
    audio_pts: list[float] = []
    audio_end: float | None = None
    video_pts: list[float] = []
    keyframes: list[float] = []
    for packet in container.demux():
        kind = kinds.get(packet.stream_index)
        if packet.pts is None or kind not in ("video", "audio"):
            continue
        tb = time_bases[packet.stream_index]
        pts = packet.pts * tb
        if kind == "video":
            video_pts.append(pts)
            if packet.is_keyframe:
                keyframes.append(pts)
        else:
            audio_pts.append(pts)
            end = pts + (packet.duration or 0) * tb
            audio_end = end if audio_end is None else max(audio_end, end)
    if not video_pts and not audio_pts:
        raise ProbeError("no timed packets")
    if video_pts:
        # The first packet in decode order: where the segment was cut, keyframe or not.
        ref = video_pts[0]
        # TS demuxers leave video durations at 0: the last frame lasts as long as the
        # typical gap between frames, so a segment ends where its last frame does.
        ordered = sorted(video_pts)
        gaps = sorted(b - a for a, b in itertools.pairwise(ordered) if b > a)
        end = ordered[-1] + (gaps[len(gaps) // 2] if gaps else 0.0)
    else:
        ref = min(audio_pts)
        end = audio_end if audio_end is not None else ref
    return SegmentProbe(
        ref_pts_s=ref,
        # Audio frames straddle segment boundaries; the video frames say where it ends.
        duration_s=max(0.0, end - ref),
        keyframes_s=tuple(sorted(k - ref for k in keyframes)),
        first_video_s=None if not video_pts else min(video_pts) - ref,
        has_video=bool(video_pts),
        has_audio=bool(audio_pts),
        params=stream_params(container),
        audio_end_s=None if audio_end is None else audio_end - ref,
    )
