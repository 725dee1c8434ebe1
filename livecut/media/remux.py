"""Copy the packets a clip plan selects into one MP4, rebased to start at 0, without re-encoding."""

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


class RemuxError(RuntimeError):
    """The stored media could not be turned into a clip."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RemuxPart:
    path: Path
    init_path: Path | None
    start_ms: int  # wall time of ref_pts_s
    ref_pts_s: float
    from_ms: int
    to_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackInfo:
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    packets: int = 0
    first_ms: int | None = None  # wall time of the first presented frame / audio frame
    end_ms: int | None = None  # wall time where the last one ends

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(kw_only=True, slots=True)
class _Track:
    """Output-side state for one kind of stream (one video, one audio)."""

    out: Stream
    info: TrackInfo
    last_dts: int | None = None  # in out-stream ticks of its own time base, per packet time base
    first_ms: float | None = None
    end_ms: float | None = None
    packets: int = 0
    frame_ms: float = 0.0  # fallback duration for packets that carry none (TS video)


def remux_mp4(parts: Sequence[RemuxPart], *, clip_start_ms: int, output: Path) -> list[TrackInfo]:
    """Write the clip to `output` (via a temporary name); blocking, run it in a thread.

    Memory stays bounded by one segment: parts are opened one at a time and packets
    are streamed to the muxer.
    """
    if not parts:
        raise RemuxError("nothing to remux")
    tmp = output.with_name(output.name + ".part")
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            tracks: dict[str, _Track] = {}
            last = len(parts) - 1
            for index, part in enumerate(parts):
                with _open_part(part) as source:
                    if index == 0:
                        tracks = _add_tracks(out, source)
                    cut_ms = _cut_point(part) if index == last else part.to_ms
                    _copy_part(source, part, tracks, out, clip_start_ms, index == 0, cut_ms)
            if not any(t.packets for t in tracks.values()):
                raise RemuxError("the selected range holds no packets")
        os.replace(tmp, output)
    except av.error.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise RemuxError(f"remux failed: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return [_finished_info(t) for t in tracks.values()]


def _open_part(part: RemuxPart) -> InputContainer:
    data = part.path.read_bytes()
    if part.init_path is not None:
        data = part.init_path.read_bytes() + data
    return av.open(io.BytesIO(data), mode="r")


def _add_tracks(out: OutputContainer, source: InputContainer) -> dict[str, _Track]:
    tracks: dict[str, _Track] = {}
    for stream in source.streams:
        kind = stream.type
        if kind not in ("video", "audio") or kind in tracks:
            continue
        out_stream = out.add_stream_from_template(stream)
        if isinstance(stream, VideoStream):
            vctx = stream.codec_context
            info = TrackInfo(kind=kind, codec=vctx.name, width=vctx.width, height=vctx.height)
        elif isinstance(stream, AudioStream):
            actx = stream.codec_context
            info = TrackInfo(
                kind=kind, codec=actx.name, sample_rate=actx.sample_rate, channels=actx.channels
            )
        else:
            continue
        rate = stream.average_rate if kind == "video" else None
        tracks[kind] = _Track(
            out=out_stream, info=info, frame_ms=float(1000 / rate) if rate else 0.0
        )
    if not tracks:
        raise RemuxError("the first segment has no audio or video stream")
    return tracks


def _wall_ms(part: RemuxPart, packet: Packet[Any]) -> float:
    assert packet.pts is not None and packet.time_base is not None
    return part.start_ms + (float(packet.pts * packet.time_base) - part.ref_pts_s) * 1000.0


def _cut_point(part: RemuxPart) -> float:
    """Where the clip really ends: past to_ms by however many frames B-frame reordering needs.

    Video frames presented before to_ms may reference frames presented after it, which
    come earlier in decode order; those must be kept, and with them every frame
    presented before them, so the clip has no hole. Audio is cut at the same instant.
    """
    with _open_part(part) as source:
        video = next((s for s in source.streams if s.type == "video"), None)
        if video is None:
            return part.to_ms
        frame_ms = float(1000 / video.average_rate) if video.average_rate else 0.0
        end = needed_end = float(part.to_ms)
        for packet in source.demux(video):
            if packet.pts is None or packet.time_base is None:
                continue
            wall = _wall_ms(part, packet)
            duration_ms = float((packet.duration or 0) * packet.time_base) * 1000
            end = max(end, wall + (duration_ms or frame_ms))
            # Once a frame presented before to_ms is decoded, all decoded before it is needed.
            if wall < part.to_ms - 0.5:
                needed_end = end
        return needed_end


def _copy_part(
    source: InputContainer,
    part: RemuxPart,
    tracks: dict[str, _Track],
    out: OutputContainer,
    clip_start_ms: int,
    first: bool,
    cut_ms: float,
) -> None:
    kinds = {s.index: s.type for s in source.streams}
    started = {kind: not first for kind in tracks}
    for packet in source.demux():
        kind = kinds.get(packet.stream_index)
        if kind not in tracks or packet.pts is None or packet.dts is None:
            continue
        track = tracks[kind]
        wall_ms = _wall_ms(part, packet)
        if wall_ms < part.from_ms - 0.5 or wall_ms >= cut_ms - 0.5:
            continue
        if kind == "video" and not started[kind] and not packet.is_keyframe:
            continue  # decoding must begin at the keyframe the plan chose
        started[kind] = True
        _write(out, track, packet, wall_ms, clip_start_ms)


def _write(
    out: OutputContainer, track: _Track, packet: Packet[Any], wall_ms: float, clip_start_ms: int
) -> None:
    tb = packet.time_base
    assert packet.pts is not None and packet.dts is not None
    reorder = packet.pts - packet.dts
    pts = round(Fraction(round((wall_ms - clip_start_ms) * 1000), 1_000_000) / tb)
    dts = pts - reorder
    if track.last_dts is not None and dts <= track.last_dts:
        # Joins whose PDTs overlap slightly must still give the muxer rising DTS.
        dts = track.last_dts + 1
        pts = max(pts, dts)
    track.last_dts = dts
    packet.pts, packet.dts = pts, dts
    packet.stream = track.out
    packet.time_base = tb
    duration_ms = float((packet.duration or 0) * tb) * 1000.0 or track.frame_ms
    track.first_ms = wall_ms if track.first_ms is None else min(track.first_ms, wall_ms)
    end = wall_ms + duration_ms
    track.end_ms = end if track.end_ms is None else max(track.end_ms, end)
    track.packets += 1
    out.mux(packet)


def _finished_info(track: _Track) -> TrackInfo:
    info = track.info
    return TrackInfo(
        kind=info.kind,
        codec=info.codec,
        width=info.width,
        height=info.height,
        sample_rate=info.sample_rate,
        channels=info.channels,
        packets=track.packets,
        first_ms=None if track.first_ms is None else round(track.first_ms),
        end_ms=None if track.end_ms is None else round(track.end_ms),
    )
