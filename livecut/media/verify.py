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
import os
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import av.logging

from livecut.media.boxes import BoxError, boxes

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
    """A track's sample tables, kept compact (arrays, run lengths): a two-hour export
    has half a million samples."""

    handler: bytes = b""
    timescale: int = 0
    codec: bytes = b""
    config: bytes = b""  # avcC / hvcC body
    deltas: tuple[array[int], array[int]] = field(default_factory=lambda: _runs())  # stts
    offsets: tuple[array[int], array[int]] = field(default_factory=lambda: _runs())  # ctts
    sync: array[int] | None = None  # 1-based sample numbers (None: every sample)
    sizes: array[int] = field(default_factory=lambda: array("I"))
    chunk_offsets: array[int] = field(default_factory=lambda: array("Q"))
    chunk_runs: list[tuple[int, int]] = field(default_factory=list)  # (first chunk, samples)
    edits: list[tuple[int, int]] = field(default_factory=list)  # (duration, media_time)

    def duration(self) -> int:
        counts, values = self.deltas
        return sum(c * v for c, v in zip(counts, values, strict=True))

    def compositions(self) -> Iterator[int]:
        """Each sample's composition time (decode time plus its offset), in decode order."""
        at = 0
        offsets = _expand(*self.offsets) if self.offsets[0] else None
        for delta in _expand(*self.deltas):
            yield at + (next(offsets, 0) if offsets is not None else 0)
            at += delta

    def delay_s(self, movie_scale: int) -> float:
        """Empty edits before the media: the track starts this late."""
        return sum(d for d, t in self.edits if t == -1) / movie_scale

    def window(self, movie_scale: int) -> tuple[float, float]:
        """The media time span (in the track's timescale) the edit list presents."""
        media = [(d, t) for d, t in self.edits if t != -1]
        if not media:
            return 0.0, float(self.duration())
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


def _runs() -> tuple[array[int], array[int]]:
    return array("I"), array("q")


def _expand(counts: array[int], values: array[int]) -> Iterator[int]:
    for count, value in zip(counts, values, strict=True):
        for _ in range(count):
            yield value


def _table(body: memoryview, at: int, count: int, code: str) -> array[int]:
    """`count` big-endian integers of type `code` from body[at:]."""
    values = array(code)
    values.frombytes(body[at : at + count * values.itemsize])
    if sys.byteorder == "little":
        values.byteswap()
    return values


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
    try:
        _verify(path, video_frames=video_frames, length_s=length_s, audio_span_s=audio_span_s)
    except BoxError as exc:
        raise VerifyError("structure", str(exc)) from exc


def _verify(
    path: Path,
    *,
    video_frames: int | None,
    length_s: float,
    audio_span_s: tuple[float, float] | None,
) -> None:
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        moov = next((b for b in boxes(fh, 0, size) if b[0] == b"moov"), None)
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
    counts, values = trak.deltas
    # The last sample's delta only says how long it lasts; every other must be > 0.
    if any(
        v <= 0 and (i + 1 < len(counts) or c > 1)
        for i, (c, v) in enumerate(zip(counts, values, strict=True))
    ):
        raise VerifyError("decode_order", "video decode times do not strictly rise")
    sync = set(trak.sync) if trak.sync is not None else None
    if trak.codec in (b"avc1", b"avc3"):
        _check_frame_numbers(fh, trak, sync)
    else:
        _check_decode_steps(trak, sync)
    if reported is not None:
        begin, end = trak.window(movie_scale)
        shown = sum(1 for t in trak.compositions() if begin <= t < end)
        if shown != reported:
            raise VerifyError(
                "frame_count",
                f"the edit list presents {shown} video samples, but the clip reports {reported}",
            )


def _check_decode_steps(trak: _Trak, sync: set[int] | None) -> None:
    counts, values = trak.deltas
    total = sum(counts) - 1  # steps between samples: the last delta is no step
    if total < 3 or sync is None:
        return
    # The median step, from the run-length table.
    ordered = sorted(zip(values, counts, strict=True))
    seen, usual = 0, ordered[-1][0]
    for value, count in ordered:
        seen += count
        if seen * 2 >= total:
            usual = value
            break
    number = 1
    for value, count in zip(values, counts, strict=True):
        for _ in range(count):
            number += 1
            if number > total + 1:
                return
            if value > 1.9 * usual and number not in sync:
                raise VerifyError(
                    "references",
                    f"video sample {number} decodes {value / usual:.1f} frames after the one "
                    "before it and is not a sync sample: a frame it may reference is missing",
                )


def _check_audio(trak: _Trak, movie_scale: int, span_s: tuple[float, float]) -> None:
    """Audio samples run from 0 in the track; the edit list starts presenting them at
    `begin`, after `delay`. They must cover the span reported, to within a frame."""
    if not trak.sizes or not trak.timescale:
        raise VerifyError("audio", "the audio track holds no samples")
    begin, _ = trak.window(movie_scale)
    delay = trak.delay_s(movie_scale)
    slack = max(trak.deltas[1], default=0) / trak.timescale + 0.001
    end = delay + (trak.duration() - begin) / trak.timescale
    if delay > span_s[0] + slack or end < span_s[1] - slack:
        raise VerifyError(
            "audio",
            f"audio is presented from {delay:.3f} s to {end:.3f} s, but the clip reports "
            f"{span_s[0]:.3f} s to {span_s[1]:.3f} s",
        )


def _check_frame_numbers(fh: BinaryIO, trak: _Trak, sync: set[int] | None) -> None:
    """H.264: frame_num is PrevRefFrameNum or PrevRefFrameNum + 1 (mod MaxFrameNum)."""
    config = _AvcConfig.parse(trak.config)
    reader = _Reader(fh.fileno())
    try:
        _check_frame_sequence(reader, trak, config, sync)
    finally:
        reader.close()


def _check_frame_sequence(
    reader: _Reader, trak: _Trak, config: _AvcConfig, sync: set[int] | None
) -> None:
    previous: int | None = None
    for number, (at, size) in enumerate(trak.positions(), start=1):
        header = _first_slice(reader, at, size, config)
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


class _Reader:
    """A few bytes at a time from a sample's start, where its NAL headers are.

    The file is memory-mapped one WINDOW at a time: a slice costs a fraction of a
    system call. A page touched in a map stays in the daemon's resident memory until
    the map is closed, and the kernel maps the pages around each one touched as well,
    so a map of the whole file raised the peak RSS of a check by about the file's size
    (+126 MB for a three-minute export of 1080p). Samples are read in file order, so
    the window moves forward once per WINDOW of media, and the peak stays about WINDOW
    however long the file; the rare read outside it maps the window that holds it.
    """

    WINDOW = 8 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY (4 KiB or 64 KiB)

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._map: mmap.mmap | None = None
        self._base = 0  # the file offset of the map's first byte
        # Reads that end by here are served by the map (any, at the file's end); -1
        # while nothing is mapped, so that not even an empty read is.
        self._end = -1

    def read(self, at: int, count: int) -> bytes:
        if self._base <= at and at + count <= self._end:
            assert self._map is not None
            return self._map[at - self._base : at - self._base + count]
        return self._move(at, count)

    def _move(self, at: int, count: int) -> bytes:
        """Map the window that holds [at, at + count) (as much of it as the file has)."""
        self.close()
        if at >= self._size:
            return b""
        base = at - at % mmap.ALLOCATIONGRANULARITY
        length = min(max(self.WINDOW, at + count - base), self._size - base)
        self._map = mmap.mmap(self._fd, length, access=mmap.ACCESS_READ, offset=base)
        self._base = base
        # A slice past the end of the last window is cut short, as a pread there would be.
        self._end = sys.maxsize if base + length == self._size else base + length
        return self._map[at - base : at - base + count]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            self._base, self._end = 0, -1


def _first_slice(
    data: _Reader, at: int, size: int, config: _AvcConfig
) -> tuple[int, bool, bool, int] | None:
    """(frame_num, is a reference, is an IDR, bits of frame_num) of a sample's first slice."""
    end = at + size
    n = config.length_size
    while at + n < end:
        head = data.read(at, n + 1)
        if len(head) < n + 1:
            return None
        length = int.from_bytes(head[:n], "big")
        body_at = at + n
        kind = head[n] & 0x1F
        if kind in (NAL_SPS, NAL_PPS):
            config.learn(data.read(body_at, min(length, 256)))
        elif kind in (NAL_SLICE, NAL_IDR):
            unit = data.read(body_at, min(length, 48))
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


def _read_moov(fh: BinaryIO, start: int, end: int) -> tuple[int, list[_Trak]]:
    fh.seek(start)
    moov = memoryview(fh.read(end - start))  # tables are read from it without copies
    movie_scale = 1000
    traks: list[_Trak] = []

    def walk(begin: int, finish: int, trak: _Trak | None) -> None:
        nonlocal movie_scale
        for kind, body, box_end in boxes(moov, begin, finish):
            if kind == b"trak":
                traks.append(_Trak())
                walk(body, box_end, traks[-1])
            elif kind in _CONTAINERS:
                walk(body, box_end, trak)
            elif kind == b"mvhd":
                movie_scale = _timescale(moov[body:box_end])
            elif trak is not None:
                _read_table(trak, kind, moov[body:box_end])

    walk(0, end - start, None)
    return movie_scale, traks


def _timescale(body: bytes | memoryview) -> int:
    return struct.unpack_from(">I", body, 20 if body[0] == 1 else 12)[0]  # type: ignore[no-any-return]


def _read_table(trak: _Trak, kind: bytes, body: memoryview) -> None:
    if kind == b"hdlr":
        trak.handler = bytes(body[8:12])
    elif kind == b"mdhd":
        trak.timescale = _timescale(body)
    elif kind == b"stsd":
        entry = bytes(body[8:])
        trak.codec = entry[4:8]
        if trak.codec in (b"avc1", b"avc3", b"hvc1", b"hev1"):
            # VisualSampleEntry: 8 + 70 bytes of fields, then its boxes (avcC, hvcC, ...).
            inner = io.BytesIO(entry)
            for child, child_body, child_end in boxes(inner, 86, len(entry)):
                if child in (b"avcC", b"hvcC"):
                    trak.config = entry[child_body:child_end]
    elif kind == b"stts":
        (count,) = struct.unpack_from(">I", body, 4)
        pairs = _table(body, 8, 2 * count, "I")
        trak.deltas = (pairs[0::2], array("q", pairs[1::2]))
    elif kind == b"ctts":
        (count,) = struct.unpack_from(">I", body, 4)
        pairs = _table(body, 8, 2 * count, "i" if body[0] == 1 else "I")
        trak.offsets = (array("I", pairs[0::2]), array("q", pairs[1::2]))
    elif kind == b"stss":
        (count,) = struct.unpack_from(">I", body, 4)
        trak.sync = _table(body, 8, count, "I")
    elif kind == b"stsz":
        fixed, count = struct.unpack_from(">II", body, 4)
        if trak.handler != b"vide":  # only video samples are read: audio needs a count
            trak.sizes = array("I", [0] if count else [])
        elif fixed:
            trak.sizes = array("I", [fixed]) * count
        else:
            trak.sizes = _table(body, 12, count, "I")
    elif kind in (b"stco", b"co64") and trak.handler == b"vide":
        (count,) = struct.unpack_from(">I", body, 4)
        trak.chunk_offsets = array("Q", _table(body, 8, count, "Q" if kind == b"co64" else "I"))
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
