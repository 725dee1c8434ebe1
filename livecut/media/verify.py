"""Check a finished MP4 before it is delivered: its structure (fast, no decoding) or a full decode.

The structural check reads the sample tables and, for H.264, the first bytes of each
sample's slice header, and refuses a file in which a player would show something
other than what the clip reports:
- the first video sample is a sync sample, and decode times strictly rise;
- no picture lost a reference: H.264's frame_num grows by one per reference picture
  between sync samples, so a dropped reference (a B-frame's forward reference, say)
  shows as a jump; for other codecs a decode step far longer than the usual one
  before a sample that is not a sync sample means a frame is missing;
- the samples the edit list presents are as many as the frames reported;
- audio covers the presented span to within one audio frame at both ends.
"""

from __future__ import annotations

import io
import mmap
import statistics
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import av.logging

NAL_SLICE, NAL_IDR, NAL_SPS, NAL_PPS = 1, 5, 7, 8
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


class VerifyError(ValueError):
    """The file is not what the clip reports; the message says what is wrong."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check  # a short name, for the metric


@dataclass(kw_only=True, slots=True)
class _Trak:
    handler: bytes = b""
    timescale: int = 0
    codec: bytes = b""
    config: bytes = b""  # avcC / hvcC body
    deltas: list[int] = field(default_factory=list)  # per sample (stts, expanded)
    offsets: list[int] = field(default_factory=list)  # composition offsets (ctts)
    sync: list[int] | None = None  # 1-based sample numbers (None: every sample)
    sizes: list[int] = field(default_factory=list)
    chunk_offsets: list[int] = field(default_factory=list)
    chunk_runs: list[tuple[int, int]] = field(default_factory=list)  # (first chunk, samples)
    edits: list[tuple[int, int]] = field(default_factory=list)  # (duration, media_time)

    def dts(self) -> list[int]:
        times, at = [], 0
        for delta in self.deltas:
            times.append(at)
            at += delta
        return times

    def delay_s(self, movie_scale: int) -> float:
        """Empty edits before the media: the track starts this late."""
        return sum(d for d, t in self.edits if t == -1) / movie_scale

    def window(self, movie_scale: int) -> tuple[float, float]:
        """The media time span (in the track's timescale) the edit list presents."""
        media = [(d, t) for d, t in self.edits if t != -1]
        if not media:
            return 0.0, float(sum(self.deltas))
        duration, start = media[0]
        return float(start), start + duration * self.timescale / movie_scale

    def positions(self) -> Iterator[tuple[int, int]]:
        """(file offset, size) of every sample, in decode order."""
        sample = 0
        for index, chunk_at in enumerate(self.chunk_offsets, start=1):
            per_chunk = next(n for first, n in reversed(self.chunk_runs) if first <= index)
            at = chunk_at
            for _ in range(per_chunk):
                if sample >= len(self.sizes):
                    return
                yield at, self.sizes[sample]
                at += self.sizes[sample]
                sample += 1


def verify_mp4(
    path: Path,
    *,
    video_frames: int | None,
    length_s: float,
    audio_span_s: tuple[float, float] | None = None,
) -> None:
    """Raise VerifyError if the file's structure disagrees with what will be reported:
    `video_frames` presented, `length_s` long, audio from and to `audio_span_s` (by
    default the whole length)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        moov = next((b for b in _boxes(fh, 0, size) if b[0] == b"moov"), None)
        if moov is None:
            raise VerifyError("structure", "the file has no moov box")
        movie_scale, traks = _read_moov(fh, moov[1], moov[2])
        for trak in traks:
            if trak.handler == b"vide":
                _check_video(fh, trak, movie_scale, video_frames)
            elif trak.handler == b"soun":
                _check_audio(trak, movie_scale, audio_span_s or (0.0, length_s))


def verify_by_decoding(path: Path, *, video_frames: int | None) -> None:
    """Decode every frame; raise VerifyError on a decoder error or a frame count that
    differs from the one reported (a caller's `verify: "decode"`).

    Errors while decoding packets the edit list hides (before the first frame) do not
    count: a copy that starts at an open GOP's keyframe carries its leading pictures,
    whose references lie before the clip, and they are never shown.
    """
    errors: list[str] = []
    counted: int | None = None
    with av.logging.Capture() as logs:
        try:
            with av.open(str(path)) as container:
                for stream in (*container.streams.video[:1], *container.streams.audio[:1]):
                    # Decoded in this thread, so its log capture hears every complaint.
                    stream.codec_context.thread_count = 1
                    container.seek(0)
                    frames = 0
                    for packet in container.demux(stream):
                        before = len(logs)
                        frames += len(packet.decode())
                        if packet.pts is not None and packet.pts < 0:
                            continue  # hidden pre-roll
                        errors += [m for level, _, m in logs[before:] if level <= av.logging.ERROR]
                    if stream.type == "video":
                        counted = frames
        except (av.error.FFmpegError, ValueError) as exc:
            raise VerifyError("decode", f"decoding the clip failed: {exc}") from exc
    if errors:
        raise VerifyError("decode", f"the decoder reported errors: {errors[0].strip()}")
    if video_frames is not None and counted != video_frames:
        raise VerifyError(
            "decode", f"{counted} video frames decode, but the clip reports {video_frames}"
        )


# --- checks -----------------------------------------------------------------------------


def _check_video(fh: BinaryIO, trak: _Trak, movie_scale: int, reported: int | None) -> None:
    count = len(trak.sizes)
    if count == 0:
        raise VerifyError("structure", "the video track holds no samples")
    if trak.sync is not None and (not trak.sync or trak.sync[0] != 1):
        raise VerifyError("sync_start", "the first video sample is not a sync sample")
    if any(d <= 0 for d in trak.deltas[:-1]):
        raise VerifyError("decode_order", "video decode times do not strictly rise")
    sync = set(trak.sync) if trak.sync is not None else None
    if trak.codec in (b"avc1", b"avc3"):
        _check_frame_numbers(fh, trak, sync)
    else:
        _check_decode_steps(trak, sync)
    if reported is not None:
        begin, end = trak.window(movie_scale)
        offsets = trak.offsets or [0] * count
        shown = sum(1 for t, o in zip(trak.dts(), offsets, strict=False) if begin <= t + o < end)
        if shown != reported:
            raise VerifyError(
                "frame_count",
                f"the edit list presents {shown} video samples, but the clip reports {reported}",
            )


def _check_decode_steps(trak: _Trak, sync: set[int] | None) -> None:
    steps = trak.deltas[:-1]
    if len(steps) < 3:
        return
    usual = statistics.median(steps)
    for number, step in enumerate(steps, start=2):
        if step > 1.9 * usual and sync is not None and number not in sync:
            raise VerifyError(
                "references",
                f"video sample {number} decodes {step / usual:.1f} frames after the one "
                "before it and is not a sync sample: a frame it may reference is missing",
            )


def _check_audio(trak: _Trak, movie_scale: int, span_s: tuple[float, float]) -> None:
    """Audio samples run from 0 in the track; the edit list starts presenting them at
    `begin`, after `delay`. They must cover the span reported, to within a frame."""
    if not trak.sizes or not trak.timescale:
        raise VerifyError("audio", "the audio track holds no samples")
    begin, _ = trak.window(movie_scale)
    delay = trak.delay_s(movie_scale)
    slack = (max(trak.deltas) if trak.deltas else 0) / trak.timescale + 0.001
    end = delay + (sum(trak.deltas) - begin) / trak.timescale
    if delay > span_s[0] + slack or end < span_s[1] - slack:
        raise VerifyError(
            "audio",
            f"audio is presented from {delay:.3f} s to {end:.3f} s, but the clip reports "
            f"{span_s[0]:.3f} s to {span_s[1]:.3f} s",
        )


def _check_frame_numbers(fh: BinaryIO, trak: _Trak, sync: set[int] | None) -> None:
    """H.264: frame_num is PrevRefFrameNum or PrevRefFrameNum + 1 (mod MaxFrameNum)."""
    config = _AvcConfig.parse(trak.config)
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        _check_frame_numbers_in(data, trak, sync, config)


def _check_frame_numbers_in(
    fh: mmap.mmap, trak: _Trak, sync: set[int] | None, config: _AvcConfig
) -> None:
    previous: int | None = None
    for number, (at, size) in enumerate(trak.positions(), start=1):
        header = _first_slice(fh, at, size, config)
        if header is None:
            raise VerifyError("references", f"video sample {number} holds no H.264 slice")
        frame_num, is_reference, idr, bits = header
        limit = 1 << bits
        synced = idr or (sync is not None and number in sync) or (sync is None and number == 1)
        if (
            previous is not None
            and not synced
            and frame_num
            not in (
                previous,
                (previous + 1) % limit,
            )
        ):
            raise VerifyError(
                "references",
                f"video sample {number} has frame_num {frame_num} after {previous}: "
                "a reference picture before it is missing",
            )
        if is_reference or synced:
            previous = frame_num


@dataclass(kw_only=True, slots=True)
class _AvcConfig:
    length_size: int
    sps_bits: dict[int, tuple[int, bool]]  # sps id -> (log2 MaxFrameNum, separate planes)
    pps_sps: dict[int, int]  # pps id -> sps id

    @staticmethod
    def parse(body: bytes) -> _AvcConfig:
        config = _AvcConfig(length_size=4, sps_bits={}, pps_sps={})
        if len(body) < 7:
            return config
        config.length_size = (body[4] & 3) + 1
        at = 5
        for count_mask in (0x1F, 0xFF):
            count = body[at] & count_mask
            at += 1
            for _ in range(count):
                (length,) = struct.unpack_from(">H", body, at)
                config.learn(body[at + 2 : at + 2 + length])
                at += 2 + length
        return config

    def learn(self, unit: bytes) -> None:
        """Take an SPS or PPS (in avcC or in band) into the tables."""
        if not unit:
            return
        kind = unit[0] & 0x1F
        try:
            if kind == NAL_SPS:
                sps_id, bits, planes = _parse_sps(unit)
                self.sps_bits[sps_id] = (bits, planes)
            elif kind == NAL_PPS:
                reader = _Bits(_unescape(unit[1:64]))
                pps_id = reader.ue()
                self.pps_sps[pps_id] = reader.ue()
        except IndexError:
            return


def _first_slice(
    data: mmap.mmap, at: int, size: int, config: _AvcConfig
) -> tuple[int, bool, bool, int] | None:
    """(frame_num, is a reference, is an IDR, bits of frame_num) of a sample's first slice."""
    end = min(at + size, len(data))
    n = config.length_size
    while at + n < end:
        length = int.from_bytes(data[at : at + n], "big")
        body_at = at + n
        kind = data[body_at] & 0x1F
        if kind in (NAL_SPS, NAL_PPS):
            config.learn(data[body_at : body_at + min(length, 256)])
        elif kind in (NAL_SLICE, NAL_IDR):
            unit = data[body_at : body_at + min(length, 48)]
            reader = _Bits(_unescape(unit[1:]))
            reader.ue()  # first_mb_in_slice
            reader.ue()  # slice_type
            sps_id = config.pps_sps.get(reader.ue())
            if sps_id is None or sps_id not in config.sps_bits:
                return None
            bits, planes = config.sps_bits[sps_id]
            if planes:
                reader.u(2)
            return reader.u(bits), (unit[0] >> 5) & 3 != 0, kind == NAL_IDR, bits
        at = body_at + length
    return None


def _parse_sps(unit: bytes) -> tuple[int, int, bool]:
    reader = _Bits(_unescape(unit[1:]))
    profile = reader.u(8)
    reader.u(16)  # constraint flags, level
    sps_id = reader.ue()
    planes = False
    if profile in _HIGH_PROFILES:
        chroma = reader.ue()
        if chroma == 3:
            planes = reader.u(1) == 1
        reader.ue()  # bit depth luma
        reader.ue()  # bit depth chroma
        reader.u(1)  # qpprime_y_zero_transform_bypass
        if reader.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if reader.u(1):
                    _skip_scaling_list(reader, 16 if i < 6 else 64)
    return sps_id, reader.ue() + 4, planes


def _skip_scaling_list(reader: _Bits, size: int) -> None:
    last, following = 8, 8
    for _ in range(size):
        if following:
            following = (last + reader.se() + 256) % 256
        last = following or last


def _unescape(data: bytes) -> bytes:
    return data.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """An exp-Golomb reader over a few bytes, held as one integer."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, count: int) -> int:
        self._left -= count
        if self._left < 0:
            raise IndexError("read past the end")
        return (self._value >> self._left) & ((1 << count) - 1)

    def ue(self) -> int:
        rest = self._value & ((1 << self._left) - 1)
        if not rest:
            raise IndexError("bad exp-Golomb code")
        zeros = self._left - rest.bit_length()
        self._left -= zeros + 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


# --- boxes ------------------------------------------------------------------------------


def _boxes(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(kind, body offset, end offset) of each box between start and end."""
    at = start
    while at + 8 <= end:
        fh.seek(at)
        size, kind = struct.unpack(">I4s", fh.read(8))
        body = at + 8
        if size == 1:
            (size,) = struct.unpack(">Q", fh.read(8))
            body += 8
        elif size == 0:
            size = end - at
        if size < 8 or at + size > end:
            raise VerifyError("structure", f"box {kind!r} at {at} runs past its parent")
        yield kind, body, at + size
        at += size


def _read_moov(fh: BinaryIO, start: int, end: int) -> tuple[int, list[_Trak]]:
    fh.seek(start)
    moov = io.BytesIO(fh.read(end - start))
    movie_scale = 1000
    traks: list[_Trak] = []

    def walk(view: BinaryIO, begin: int, finish: int, trak: _Trak | None) -> None:
        nonlocal movie_scale
        for kind, body, box_end in _boxes(view, begin, finish):
            view.seek(body)
            if kind == b"trak":
                traks.append(_Trak())
                walk(view, body, box_end, traks[-1])
            elif kind in _CONTAINERS:
                walk(view, body, box_end, trak)
            elif kind == b"mvhd":
                movie_scale = _timescale(view.read(box_end - body))
            elif trak is not None:
                _read_table(trak, kind, view.read(box_end - body))

    walk(moov, 0, end - start, None)
    return movie_scale, traks


def _timescale(body: bytes) -> int:
    return struct.unpack_from(">I", body, 20 if body[0] == 1 else 12)[0]  # type: ignore[no-any-return]


def _read_table(trak: _Trak, kind: bytes, body: bytes) -> None:
    if kind == b"hdlr":
        trak.handler = body[8:12]
    elif kind == b"mdhd":
        trak.timescale = _timescale(body)
    elif kind == b"stsd":
        entry = body[8:]
        trak.codec = entry[4:8]
        if trak.codec in (b"avc1", b"avc3", b"hvc1", b"hev1"):
            # VisualSampleEntry: 8 + 70 bytes of fields, then its boxes (avcC, hvcC, ...).
            inner = io.BytesIO(entry)
            for child, child_body, child_end in _boxes(inner, 86, len(entry)):
                if child in (b"avcC", b"hvcC"):
                    trak.config = entry[child_body:child_end]
    elif kind == b"stts":
        (count,) = struct.unpack_from(">I", body, 4)
        for i in range(count):
            n, delta = struct.unpack_from(">II", body, 8 + 8 * i)
            trak.deltas += [delta] * n
    elif kind == b"ctts":
        signed = body[0] == 1
        (count,) = struct.unpack_from(">I", body, 4)
        for i in range(count):
            n, offset = struct.unpack_from(">Ii" if signed else ">II", body, 8 + 8 * i)
            trak.offsets += [offset] * n
    elif kind == b"stss":
        (count,) = struct.unpack_from(">I", body, 4)
        trak.sync = list(struct.unpack_from(f">{count}I", body, 8))
    elif kind == b"stsz":
        fixed, count = struct.unpack_from(">II", body, 4)
        trak.sizes = [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", body, 12))
    elif kind in (b"stco", b"co64"):
        (count,) = struct.unpack_from(">I", body, 4)
        trak.chunk_offsets = list(
            struct.unpack_from(f">{count}{'Q' if kind == b'co64' else 'I'}", body, 8)
        )
    elif kind == b"stsc":
        (count,) = struct.unpack_from(">I", body, 4)
        trak.chunk_runs = [struct.unpack_from(">II", body, 8 + 12 * i) for i in range(count)]
    elif kind == b"elst":
        wide = body[0] == 1
        (count,) = struct.unpack_from(">I", body, 4)
        size = 20 if wide else 12
        for i in range(count):
            duration, media_time = struct.unpack_from(">Qq" if wide else ">Ii", body, 8 + size * i)
            trak.edits.append((duration, media_time))
