"""What the encoder really wrote: every frame's number, media time, keyframe flag and segment.

Read from the origin's own files, independently of livecut: a playlist parser of its own,
each segment demuxed for its packets, each continuous run decoded for barcodes and beeps.
"""

from __future__ import annotations

import bisect
import io
import itertools
import re
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av

from livecut.media.synth import read_frame_number

BEEP_THRESHOLD = 0.1
BEEP_QUIET_S = 0.3  # silence before an onset


@dataclass(frozen=True, kw_only=True, slots=True)
class OriginSegment:
    seq: int
    uri: str
    epoch: int  # discontinuities before it
    pdt_ms: int | None
    init: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceFrame:
    number: int
    pts_s: Fraction  # media time within its run
    key: bool
    seq: int
    run: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentAnchor:
    seq: int
    run: int
    pdt_ms: int | None
    anchor_pts_s: Fraction  # what the PDT marks: the first video packet in decode order
    earliest_pts_s: Fraction  # the segment's first presented video frame
    first_packet_key: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    segments: tuple[OriginSegment, ...]
    anchors: dict[int, SegmentAnchor]
    frames: tuple[SourceFrame, ...]  # in presentation order within each run, runs in order
    beep_offsets: dict[int, float]  # beep frame number -> onset minus that frame's time, s
    errors: tuple[str, ...]  # libav errors while decoding the origin itself
    # Per run: its last segment and the media time where its audio ends (encoders stop
    # audio and video at different instants; no clip can have audio the source lacks).
    audio_ends: dict[int, tuple[int, Fraction]] = field(default_factory=dict)


def parse_playlist(text: str) -> list[OriginSegment]:
    seq = 0
    epoch = 0
    pdt: int | None = None
    init: str | None = None
    out: list[OriginSegment] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY") and not line.startswith(
            "#EXT-X-DISCONTINUITY-SEQUENCE"
        ):
            epoch += 1
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = _pdt_ms(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MAP:"):
            match = re.search(r'URI="([^"]+)"', line)
            init = match.group(1) if match else None
        elif line and not line.startswith("#"):
            out.append(OriginSegment(seq=seq, uri=line, epoch=epoch, pdt_ms=pdt, init=init))
            seq += 1
            pdt = None
    return out


def _pdt_ms(value: str) -> int:
    value = value.strip().replace("Z", "+00:00")
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)
    moment = datetime.fromisoformat(value)
    return round(moment.timestamp() * 1000)


def analyse_origin(folder: Path, playlist_text: str, beep_every: int) -> Origin:
    """Demux every listed segment and decode each run; runs split at discontinuities."""
    segments = parse_playlist(playlist_text)
    anchors: dict[int, SegmentAnchor] = {}
    frames: list[SourceFrame] = []
    beeps: dict[int, float] = {}
    errors: list[str] = []
    runs: list[list[OriginSegment]] = []
    audio_ends: dict[int, tuple[int, Fraction]] = {}
    for segment in segments:
        if not runs or runs[-1][-1].epoch != segment.epoch:
            runs.append([])
        runs[-1].append(segment)
    for run_index, run in enumerate(runs):
        init = (folder / run[0].init).read_bytes() if run[0].init else b""
        bodies = [(folder / s.uri).read_bytes() for s in run]
        body = init + b"".join(bodies)
        # Demuxed as one stream, each packet belongs to the segment its bytes start in:
        # a segment too short to probe on its own (a last one of 4 frames) still counts.
        ends = list(itertools.accumulate((len(b) for b in bodies), initial=len(init)))[1:]
        by_segment: dict[int, list[tuple[Fraction, bool]]] = {}
        owner: dict[Fraction, tuple[int, bool]] = {}
        for pts, key, pos in _video_packets(body):
            segment = run[min(bisect.bisect_right(ends, pos), len(run) - 1)]
            by_segment.setdefault(segment.seq, []).append((pts, key))
            owner[pts] = (segment.seq, key)
        for segment in run:
            packets = by_segment.get(segment.seq)
            if not packets:
                continue
            first_pts, first_key = packets[0]
            anchors[segment.seq] = SegmentAnchor(
                seq=segment.seq,
                run=run_index,
                pdt_ms=segment.pdt_ms,
                anchor_pts_s=first_pts,
                earliest_pts_s=min(p for p, _ in packets),
                first_packet_key=first_key,
            )
        audio_end = _audio_end(body)
        if audio_end is not None:
            audio_ends[run_index] = (run[-1].seq, audio_end)
        decoded, onsets, run_errors, intra = decode_media(body)
        errors += run_errors
        run_frames = []
        for pts, number in decoded:
            seq, key = owner.get(pts, (-1, False))
            key = key or pts in intra
            run_frames.append(
                SourceFrame(number=number, pts_s=pts, key=key, seq=seq, run=run_index)
            )
        frames += run_frames
        beeps |= match_beeps(run_frames, onsets, beep_every)
    return Origin(
        segments=tuple(segments),
        anchors=anchors,
        frames=tuple(frames),
        beep_offsets=beeps,
        errors=tuple(errors),
        audio_ends=audio_ends,
    )


def match_beeps(
    frames: list[SourceFrame], onsets: list[Fraction], beep_every: int
) -> dict[int, float]:
    """Each beep onset against the beep frame nearest to it (beeps are a second apart)."""
    marks = [f for f in frames if f.number % beep_every == 0]
    out: dict[int, float] = {}
    for onset in onsets:
        nearest = min(marks, key=lambda f: abs(f.pts_s - onset), default=None)
        if nearest is not None and abs(nearest.pts_s - onset) < Fraction(1, 2):
            out[nearest.number] = float(onset - nearest.pts_s)
    return out


def _audio_end(data: bytes) -> Fraction | None:
    """Media time where the run's audio ends: its last audio packet's end."""
    with av.logging.Capture(local=False), av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            return None
        ends = [
            Fraction(p.pts + (p.duration or 0)) * p.time_base
            for p in container.demux(container.streams.audio[0])
            if p.pts is not None and p.time_base is not None
        ]
    return max(ends, default=None)


def _video_packets(data: bytes) -> list[tuple[Fraction, bool, int]]:
    """(pts in s, keyframe, byte position) of each video packet, in decode order."""
    with av.logging.Capture(local=False), av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return [
            (Fraction(p.pts) * p.time_base, p.is_keyframe, p.pos)
            for p in container.demux(stream)
            if p.size and p.pts is not None and p.pos is not None
        ]


def decode_media(
    data: bytes | Path,
) -> tuple[list[tuple[Fraction, int]], list[Fraction], list[str], set[Fraction]]:
    """(pts, barcode) per video frame in presentation order, beep onsets, libav errors,
    and the pts of intra pictures (an open GOP's I-frames are random access points too,
    though their packets are not flagged as keyframes)."""
    av.logging.set_level(av.logging.ERROR)
    source = str(data) if isinstance(data, Path) else io.BytesIO(data)
    with av.logging.Capture(local=False) as logs:
        frames: list[tuple[Fraction, int]] = []
        intra: set[Fraction] = set()
        with av.open(source) as container:
            for frame in container.decode(video=0):
                assert frame.pts is not None
                pts = Fraction(frame.pts) * frame.time_base
                frames.append((pts, read_frame_number(frame)))
                if frame.pict_type == av.video.frame.PictureType.I:
                    intra.add(pts)
        onsets: list[Fraction] = []
        with av.open(source if isinstance(data, Path) else io.BytesIO(data)) as container:
            if container.streams.audio:
                onsets = _onsets(container)
    frames.sort()
    errors = [
        f"{name}: {message.strip()}" for level, name, message in logs if level <= av.logging.ERROR
    ]
    return frames, onsets, errors, intra


def audio_span(path: Path) -> tuple[Fraction, Fraction] | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        start: Fraction | None = None
        end = Fraction(0)
        for frame in container.decode(audio=0):
            assert frame.pts is not None
            t = Fraction(frame.pts) * frame.time_base
            start = t if start is None else min(start, t)
            end = max(end, t + Fraction(frame.samples, frame.sample_rate))
        return None if start is None else (start, end)


def _onsets(container: av.container.InputContainer) -> list[Fraction]:
    onsets: list[Fraction] = []
    last_loud: Fraction | None = None
    for frame in container.decode(audio=0):
        assert frame.pts is not None
        t0 = Fraction(frame.pts) * frame.time_base
        samples = array("f", bytes(frame.planes[0])[: 4 * frame.samples])
        if max(samples) < BEEP_THRESHOLD and -min(samples) < BEEP_THRESHOLD:
            continue
        for i, value in enumerate(samples):
            if abs(value) >= BEEP_THRESHOLD:
                t = t0 + Fraction(i, frame.sample_rate)
                if last_loud is None or t - last_loud > BEEP_QUIET_S:
                    onsets.append(t)
                last_loud = t
    return onsets
