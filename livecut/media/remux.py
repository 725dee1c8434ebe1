"""Copy the packets a clip plan selects into one MP4, frame-accurate, without re-encoding.

The first presented frame is placed at t=0. Decoding starts at the keyframe before it:
those pre-roll frames get negative timestamps, and libavformat writes an edit list that
hides them. After the last presented frame, reference frames that B-frames before it
need are kept too and hidden by shortening the edit list (media/mp4edit.py). Every
frame keeps its wall-clock offset from the first; audio is cut at the same instants.

With reencode_edges, for consumers that ignore edit lists, the first partial GOP is
re-encoded instead (media/edges.py): the file's first video sample is then the first
presented frame, and copying resumes at the source's next IDR.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

from livecut.media.edges import EdgeEncoder, EdgeError
from livecut.media.mp4edit import trim_track_durations
from livecut.media.probe import NO_DECODE, TS_SYNC
from livecut.media.subtitles import Cue, MovTextTrack


class RemuxError(RuntimeError):
    """The stored media could not be turned into a clip."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RemuxPart:
    path: Path
    init_path: Path | None
    start_ms: int  # wall time of ref_pts_s
    ref_pts_s: float
    from_ms: int  # copy media presented at or after this wall time (the first part: its keyframe)
    to_ms: int  # ...and before this one


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackInfo:
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int = 0  # presented frames (video) or packets (audio)
    first_ms: float | None = None  # wall time of the first presented frame / audio sample
    end_ms: float | None = None  # wall time where presentation ends

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {}
        for key in self.__slots__:
            value = getattr(self, key)
            if value is not None:
                body[key] = round(value) if key in ("first_ms", "end_ms") else value
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class Presented:
    """What the MP4 shows: the wall-clock span of its first and last frames."""

    start_ms: float  # wall time of the first presented frame (t=0 in the file)
    end_ms: float  # wall time where the last presented frame ends
    tracks: tuple[TrackInfo, ...]
    reencoded_frames: int = 0  # frames of the first partial GOP re-encoded (reencode_edges)


@dataclass(kw_only=True, slots=True)
class _Track:
    """Output-side state for one kind of stream (one video, one audio)."""

    out: Stream
    kind: str
    codec: str
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    frame_ms: float  # fallback duration for packets that carry none (TS video)
    last_dts: int | None = None
    frames: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class _Bounds:
    zero_ms: float  # wall time of the first presented frame
    end_ms: float  # wall time where presentation ends
    copy_until_ms: float  # video frames presented before this are copied (references)
    starts_on_keyframe: bool = True  # the first presented frame is a keyframe: no pre-roll


def remux_mp4(
    parts: Sequence[RemuxPart],
    *,
    start_ms: int,
    end_ms: int,
    output: Path,
    audio_parts: Sequence[RemuxPart] = (),
    reencode_edges: bool = False,
    cues: Sequence[Cue] = (),
    cue_language: str | None = None,
) -> Presented:
    """Write the frames covering [start_ms, end_ms) to `output`; blocking, run it in a thread.

    The first frame shown is the one covering start_ms, the last the one covering
    end_ms - 1. `audio_parts` are segments of an alternate-audio rendition, muxed
    beside video that has no audio of its own. Memory stays bounded by one segment:
    parts are opened one at a time, interleaved by time, and streamed to the muxer.
    `reencode_edges` re-encodes the frames before the first IDR instead of hiding
    pre-roll with an edit list (the end is still trimmed by the edit list). `cues`
    (wall-timed subtitles, already trimmed to the clip) become a mov_text track.
    """
    if not parts:
        raise RemuxError("nothing to remux")
    tmp = output.with_name(output.name + ".part")
    try:
        bounds = _bounds(parts, start_ms, end_ms)
        # Only a re-encode needs the decoder's view of the source (pixel format, profile).
        reencoding = reencode_edges and not bounds.starts_on_keyframe
        edge: EdgeEncoder | None = None
        text: MovTextTrack | None = None
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            tracks: dict[str, _Track] = {}
            pending_audio = list(audio_parts)
            for index, part in enumerate(parts):
                # Only parts the re-encoder still reads need their decoder set up.
                decode = reencoding and (index == 0 or (edge is not None and edge.active))
                with _open_part(part, decode=decode) as source:
                    if index == 0:
                        tracks = _add_tracks(out, source)
                        if reencoding:
                            edge = _edge_encoder(source, tracks, bounds)
                        if pending_audio and "audio" not in tracks:
                            with _open_part(pending_audio[0]) as audio:
                                tracks.update(_add_tracks(out, audio, kinds=("audio",)))
                        if cues:
                            # Added last, so its time base is fine enough for the others.
                            text = MovTextTrack(out, language=cue_language)
                            for cue in cues:
                                text.add(cue, zero_ms=bounds.zero_ms)
                    _copy_part(source, part, tracks, out, bounds, first=index == 0, edge=edge)
                # Alternate audio follows the video segment by segment, so the muxer's
                # interleaving queue never holds more than about one segment.
                while pending_audio and (
                    index == len(parts) - 1 or pending_audio[0].start_ms < part.to_ms
                ):
                    audio_part = pending_audio.pop(0)
                    with _open_part(audio_part) as audio:
                        _copy_part(audio, audio_part, tracks, out, bounds, first=False)
            if edge is not None and edge.active:  # the clip ends before the next IDR
                _write_edge(out, tracks["video"], edge.finish(bounds.end_ms), Fraction(0))
            if not any(t.frames for t in tracks.values()):
                raise RemuxError("the selected range holds no packets")
            if text is not None:
                text.close()
        length_s = (bounds.end_ms - bounds.zero_ms) / 1000
        trim_track_durations(tmp, [length_s] * len(tracks))
        os.replace(tmp, output)
    except (av.error.FFmpegError, EdgeError) as exc:
        tmp.unlink(missing_ok=True)
        raise RemuxError(f"remux failed: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    infos = tuple(_info(t, bounds) for t in tracks.values())
    return Presented(
        start_ms=bounds.zero_ms,
        end_ms=bounds.end_ms,
        tracks=infos,
        reencoded_frames=0 if edge is None else edge.frames,
    )


def _open_part(part: RemuxPart, *, decode: bool = False) -> InputContainer:
    """Open a stored segment; without `decode`, no frame is decoded just to open it
    (packets are copied, never decoded, so their stream parameters are not needed)."""
    data = part.path.read_bytes()
    if part.init_path is not None:
        data = part.init_path.read_bytes() + data
    fmt = "mpegts" if part.init_path is None and data[:1] == bytes([TS_SYNC]) else None
    return av.open(io.BytesIO(data), mode="r", format=fmt, options=None if decode else NO_DECODE)


def _wall_ms(part: RemuxPart, packet: Packet[Any]) -> float:
    assert packet.pts is not None and packet.time_base is not None
    return part.start_ms + (float(packet.pts * packet.time_base) - part.ref_pts_s) * 1000.0


@dataclass(frozen=True, slots=True)
class _Frame:
    wall_ms: float
    duration_ms: float
    keyframe: bool


def _video_frames(part: RemuxPart) -> list[_Frame]:
    """Each video frame of a part, in decode order."""
    frames: list[_Frame] = []
    with _open_part(part) as source:
        video = next((s for s in source.streams if s.type == "video"), None)
        if video is None:
            return frames
        frame_ms = float(1000 / video.average_rate) if video.average_rate else 0.0
        for packet in source.demux(video):
            if packet.pts is None or packet.time_base is None:
                continue
            duration_ms = float((packet.duration or 0) * packet.time_base) * 1000
            frames.append(
                _Frame(_wall_ms(part, packet), duration_ms or frame_ms, packet.is_keyframe)
            )
    return frames


def _bounds(parts: Sequence[RemuxPart], start_ms: int, end_ms: int) -> _Bounds:
    """Find the frames covering start_ms and end_ms - 1, by reading the edge segments."""
    first = [f for f in _video_frames(parts[0]) if f.wall_ms >= parts[0].from_ms - 0.5]
    if len(parts) > 1 and not any(f.wall_ms > start_ms for f in first):
        first += _video_frames(parts[1])
    covering = [f.wall_ms for f in first if f.wall_ms <= start_ms + 0.5]
    on_keyframe = True
    if first:
        zero = max(covering) if covering else min(f.wall_ms for f in first)
        on_keyframe = any(f.keyframe and abs(f.wall_ms - zero) <= 0.5 for f in first)
    else:
        zero = float(max(start_ms, parts[0].from_ms))  # audio only: cut at the instant
    last = _video_frames(parts[-1])
    if not last:
        end = float(min(end_ms, parts[-1].to_ms))
        return _Bounds(zero_ms=zero, end_ms=end, copy_until_ms=end)
    shown = [f for f in last if f.wall_ms <= end_ms - 1 + 0.5]
    end = max(f.wall_ms + f.duration_ms for f in shown) if shown else float(end_ms)
    # Frames decoded before the last shown one are needed, whenever they are presented.
    copy_until = end
    decoded_end = 0.0
    for frame in last:
        decoded_end = max(decoded_end, frame.wall_ms + frame.duration_ms)
        if frame.wall_ms < end - 0.5:
            copy_until = max(copy_until, decoded_end)
    return _Bounds(
        zero_ms=zero,
        end_ms=max(end, zero),
        copy_until_ms=copy_until,
        starts_on_keyframe=on_keyframe,
    )


def _add_tracks(
    out: OutputContainer, source: InputContainer, *, kinds: Sequence[str] = ("video", "audio")
) -> dict[str, _Track]:
    tracks: dict[str, _Track] = {}
    for stream in source.streams:
        if stream.type in tracks or stream.type not in kinds:
            continue
        if isinstance(stream, VideoStream):
            ctx = stream.codec_context
            rate = stream.average_rate
            tracks["video"] = _Track(
                out=out.add_stream_from_template(stream),
                kind="video",
                codec=ctx.name,
                width=ctx.width,
                height=ctx.height,
                fps=None if not rate else round(float(rate), 3),
                sample_rate=None,
                channels=None,
                frame_ms=float(1000 / rate) if rate else 0.0,
            )
        elif isinstance(stream, AudioStream):
            actx = stream.codec_context
            tracks["audio"] = _Track(
                out=out.add_stream_from_template(stream),
                kind="audio",
                codec=actx.name,
                width=None,
                height=None,
                fps=None,
                sample_rate=actx.sample_rate,
                channels=actx.channels,
                frame_ms=0.0,
            )
    if not tracks:
        raise RemuxError("the first segment has no audio or video stream")
    return tracks


def _copy_part(
    source: InputContainer,
    part: RemuxPart,
    tracks: dict[str, _Track],
    out: OutputContainer,
    bounds: _Bounds,
    *,
    first: bool,
    edge: EdgeEncoder | None = None,
) -> None:
    kinds = {s.index: s.type for s in source.streams}
    started = {kind: not first for kind in tracks}
    for packet in source.demux():
        kind = kinds.get(packet.stream_index)
        if kind not in tracks or packet.pts is None or packet.dts is None:
            continue
        track = tracks[kind]
        wall_ms = _wall_ms(part, packet)
        duration_ms = float((packet.duration or 0) * packet.time_base) * 1000 or track.frame_ms
        if kind == "video":
            if wall_ms < part.from_ms - 0.5 or wall_ms >= bounds.copy_until_ms - 0.5:
                continue
            if not started[kind] and not packet.is_keyframe:
                continue  # decoding must begin at the keyframe the plan chose
            started[kind] = True
            if edge is not None and edge.active:
                if not edge.is_handoff(packet, wall_ms):
                    edge.decode(packet, wall_ms)
                    continue
                reorder = Fraction(packet.pts - packet.dts) * packet.time_base
                _write_edge(out, track, edge.finish(wall_ms), reorder)
        elif wall_ms + duration_ms <= bounds.zero_ms + 0.5 or wall_ms >= bounds.end_ms - 0.5:
            continue  # audio outside the presented span (the edit list trims the edges)
        started[kind] = True
        _write(out, track, packet, wall_ms, bounds)


def _write(
    out: OutputContainer, track: _Track, packet: Packet[Any], wall_ms: float, bounds: _Bounds
) -> None:
    tb = packet.time_base
    assert packet.pts is not None and packet.dts is not None
    reorder = packet.pts - packet.dts
    pts = round(Fraction(round((wall_ms - bounds.zero_ms) * 1000), 1_000_000) / tb)
    dts = pts - reorder
    if track.last_dts is not None and dts <= track.last_dts:
        # Joins whose PDTs overlap slightly must still give the muxer rising DTS.
        dts = track.last_dts + 1
        pts = max(pts, dts)
    track.last_dts = dts
    packet.pts, packet.dts = pts, dts
    packet.stream = track.out
    packet.time_base = tb
    if track.kind == "audio" or bounds.zero_ms - 0.5 <= wall_ms < bounds.end_ms - 0.5:
        track.frames += 1
    out.mux(packet)


def _edge_encoder(
    source: InputContainer, tracks: dict[str, _Track], bounds: _Bounds
) -> EdgeEncoder | None:
    """An encoder for the first partial GOP; the video track takes its extra SPS/PPS."""
    video = next((s for s in source.streams if isinstance(s, VideoStream)), None)
    if video is None or "video" not in tracks:
        return None
    edge = EdgeEncoder(video, first_ms=bounds.zero_ms, end_ms=bounds.end_ms)
    out = tracks["video"].out.codec_context
    assert out is not None
    out.extradata = edge.extradata
    return edge


def _write_edge(
    out: OutputContainer, track: _Track, packets: list[Packet[Any]], reorder_s: Fraction
) -> None:
    """Mux the re-encoded run, its decode times shifted by the copied IDR's reorder delay.

    The run has no B-frames, but the copied stream that follows decodes reorder_s ahead
    of presentation: the same constant shift keeps decode times rising across the join.
    """
    for packet in packets:
        assert packet.pts is not None
        shift = round(reorder_s / packet.time_base)
        time_base = packet.time_base
        packet.dts = packet.pts - shift
        packet.stream = track.out
        packet.time_base = time_base
        track.last_dts = packet.dts
        track.frames += 1
        out.mux(packet)


def _info(track: _Track, bounds: _Bounds) -> TrackInfo:
    return TrackInfo(
        kind=track.kind,
        codec=track.codec,
        width=track.width,
        height=track.height,
        fps=track.fps,
        sample_rate=track.sample_rate,
        channels=track.channels,
        frames=track.frames,
        first_ms=bounds.zero_ms,
        end_ms=bounds.end_ms,
    )
