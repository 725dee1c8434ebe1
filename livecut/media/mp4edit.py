"""Finish an MP4: fragmented as the muxer wrote it, progressive as delivered.

libavformat's MP4 muxer keeps every sample's entry in memory until it writes the index
at the end: about 27 MB an hour of 1080p30 + AAC, and growing with the clip. So clips
are muxed as fragmented MP4 (each fragment flushed as it is cut, memory flat), and this
module turns that into the progressive MP4 players expect. The fragment headers (moof)
are read into run-length sample tables (a few bytes a sample), a new moov is built
from them, and the fragment headers become free boxes, so the media stays where the
muxer wrote it. Two layouts:
- finish_appended: the moov goes after the media, as most muxers write it. The tables
  were built and the file hashed while it was written (media/mp4out.py): nothing is
  read back.
- finish_mp4 (faststart): the moov goes first, so a player can start at once, into
  room left in front of the media (or the media is copied behind it when the room is
  short); the file is then read once for its hash.

The new moov also carries the edit lists we want: the pre-roll before a clip's first
frame (the muxer's own edit, kept) and the end, shortened to what should be presented
so the reference frames that B-frames before the end need are decoded but not shown.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from livecut.media.boxes import boxes

_COPY_CHUNK = 1 << 20
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf"}
_TABLES = {b"stts", b"ctts", b"stss", b"stsc", b"stsz", b"stz2", b"stco", b"co64"}


class Mp4EditError(ValueError):
    """The file is not laid out as an MP4 from our muxer should be."""


@dataclass(frozen=True, slots=True)
class Finished:
    size: int
    sha256: str


@dataclass(slots=True)
class _Node:
    """A box: its children if it is a container we edit, else its raw body."""

    kind: bytes
    body: bytes = b""
    children: list[_Node] | None = None

    def find(self, kind: bytes) -> _Node | None:
        return next((c for c in self.children or () if c.kind == kind), None)

    def size(self) -> int:
        payload = len(self.body) + sum(c.size() for c in self.children or ())
        return payload + (16 if payload + 8 >= 1 << 32 else 8)

    def write(self, fh: BinaryIO) -> None:
        """Write the box out, children in place: no copy of the whole box is ever built
        (a long export's tables run to megabytes)."""
        size = self.size()
        if size > 0xFFFFFFFF:
            fh.write(struct.pack(">I4sQ", 1, self.kind, size))
        else:
            fh.write(struct.pack(">I4s", size, self.kind))
        fh.write(self.body)
        for child in self.children or ():
            child.write(fh)

    def encode(self) -> bytes:
        out = io.BytesIO()
        self.write(out)
        return out.getvalue()


class _Runs:
    """A run-length table (stts, ctts) in two compact arrays: 8 bytes a run (ctts has
    about a run a sample when there are B-frames). Values fit 32 bits, as in the boxes."""

    __slots__ = ("counts", "values")

    def __init__(self, typecode: str) -> None:
        self.counts: array[int] = array("I")
        self.values: array[int] = array(typecode)

    def total(self) -> int:
        return sum(c * v for c, v in zip(self.counts, self.values, strict=True))

    def encode(self, *, signed: bool) -> bytes:
        pairs = array("i" if signed else "I")
        for count, value in zip(self.counts, self.values, strict=True):
            pairs.append(count)
            pairs.append(value)
        return _be(struct.pack(">II", (1 << 24) if signed else 0, len(self.counts)), pairs)


@dataclass(kw_only=True, slots=True)
class _Samples:
    """One track's sample tables, built fragment by fragment."""

    timescale: int = 0
    deltas: _Runs = field(default_factory=lambda: _Runs("I"))  # stts: unsigned
    offsets: _Runs = field(default_factory=lambda: _Runs("i"))  # ctts: signed (version 1)
    sizes: array[int] = field(default_factory=lambda: array("I"))
    sync: array[int] = field(default_factory=lambda: array("I"))  # 1-based sample numbers
    # Each fragment's run of samples: where it lies in the source, and how many.
    chunk_at: array[int] = field(default_factory=lambda: array("Q"))
    chunk_samples: array[int] = field(default_factory=lambda: array("I"))
    decoded_to: int = 0  # decode time after the last sample
    presented_to: int = 0  # composition time after the last presented sample

    def start_at(self, decode_time: int) -> None:
        """A fragment starts at decode_time: a gap or overlap is folded into the last delta."""
        if not self.sizes or decode_time == self.decoded_to:
            return
        fixed = max(1, self.deltas.values[-1] + decode_time - self.decoded_to)
        if self.deltas.counts[-1] == 1:
            self.deltas.values[-1] = fixed
        else:
            self.deltas.counts[-1] -= 1
            self.deltas.counts.append(1)
            self.deltas.values.append(fixed)
        self.decoded_to = decode_time


def finish_mp4(
    source: Path,
    target: Path,
    durations_s: Sequence[float | None],
    *,
    start: int = 0,
    check: Callable[[Path], None] = lambda path: None,
) -> Finished:
    """Turn the fragmented MP4 at offset `start` of `source` into a progressive MP4 at
    `target` with its moov first, track i presented for durations_s[i] seconds (None:
    all it holds); fsynced and renamed into place. Returns its size and SHA-256.

    The muxer is given `start` bytes of room before its output. When the new ftyp and
    moov fit there, the media stays where it is: the header goes in front, a free box
    covers what is left of the room and the muxer's own header, and each fragment
    header (moof) becomes a free box, so the media boxes (mdat) are read by the new
    moov's chunk offsets where they lie. Nothing is copied; the file is read once more
    for its hash. Otherwise the media is copied behind the new header.

    `check` (media/verify.py) reads the finished file before it is renamed into place,
    alongside the hash and the fsync; if it raises, `target` is never written.
    """
    with open(source, "r+b") as src:
        size = src.seek(0, 2)
        top = list(boxes(src, start, size))
        moov = _load(src, next((b for b in top if b[0] == b"moov"), None))
        tracks = _read_fragments(src, top, moov)
        payloads = [(body, end) for kind, body, end in top if kind == b"mdat"]
        head_bytes = b"".join(_read(src, b[1] - 8, b[2]) for b in top if b[0] == b"ftyp")
        new_moov = _progressive_moov(moov, tracks, durations_s)
        first_fragment = next((b[1] - 8 for b in top if b[0] == b"moof"), size)
        _place_chunks(new_moov, tracks, lambda at: at, wide=size >= 1 << 32)
        room = first_fragment - len(head_bytes) - new_moov.size()
        if room == 0 or 8 <= room < 1 << 32:
            src.seek(0)
            src.write(head_bytes)
            new_moov.write(src)
            # The tables are written: let them go before the check reads the file.
            del moov, tracks, new_moov
            return _finish_in_place(src, source, target, room, top, check)
    return _finish_by_copy(source, target, head_bytes, new_moov, tracks, payloads, check)


def finish_appended(
    source: Path,
    target: Path,
    durations_s: Sequence[float | None],
    *,
    tables: FragmentTables,
    written: int,
    freed: Sequence[int],
    digest: Any,
    check: Callable[[Path], None] = lambda path: None,
) -> Finished:
    """Turn the fragmented MP4 the muxer wrote at the start of `source` (`written` bytes,
    its boxes already read into `tables` as they were written: media/mp4out.py) into a
    progressive MP4 at `target` with its moov last, as most muxers write it.

    The new moov is appended; the box types at the offsets `freed` (the muxer's own
    moov, the moofs) become `free`, so the media stays where it is and the new moov's
    chunk offsets point into it. `digest` has hashed the file as it will be up to
    `written`: only the moov is hashed here, and nothing is read back.
    """
    if tables.moov is None:
        raise Mp4EditError("no moov box")
    new_moov = _progressive_moov(tables.moov, tables.tracks, durations_s)
    wide = written + new_moov.size() + 16 >= 1 << 32
    _place_chunks(new_moov, tables.tracks, lambda at: at, wide=wide)
    encoded = new_moov.encode()
    del new_moov  # the tables are encoded: let them go before the check reads the file
    digest.update(encoded)
    with open(source, "r+b") as fh:
        fd = fh.fileno()
        os.pwrite(fd, encoded, written)
        for at in freed:
            os.pwrite(fd, b"free", at)
        os.ftruncate(fd, written + len(encoded))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mp4-finish") as pool:
            synced = pool.submit(os.fsync, fd)
            check(source)
            synced.result()
    os.replace(source, target)
    return Finished(size=written + len(encoded), sha256=digest.hexdigest())


def _finish_in_place(
    src: BinaryIO,
    source: Path,
    target: Path,
    room: int,
    top: list[tuple[bytes, int, int]],
    check: Callable[[Path], None],
) -> Finished:
    """The new header is written at the start of `src`: cover the rest of the room."""
    if room:
        src.write(struct.pack(">I4s", room, b"free"))
    for kind, body, _ in top:
        if kind in (b"moof", b"mfra", b"sidx"):  # fragment headers and index: no longer read
            src.seek(body - 4)
            src.write(b"free")
    src.flush()
    # The hash (hashlib lets go of the GIL) and the fsync run beside the check.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mp4-finish") as pool:
        synced = pool.submit(os.fsync, src.fileno())
        hashed = pool.submit(_sha256, source)
        check(source)
        synced.result()
        size, digest = hashed.result()
    os.replace(source, target)
    return Finished(size=size, sha256=digest)


def _sha256(path: Path) -> tuple[int, str]:
    """Read into one reused buffer: no new bytes object a chunk (a few ms a minute of 1080p)."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_COPY_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while count := fh.readinto(buffer):
            digest.update(view[:count])
            size += count
    return size, digest.hexdigest()


def _finish_by_copy(
    source: Path,
    target: Path,
    head_bytes: bytes,
    new_moov: _Node,
    tracks: dict[int, _Samples],
    payloads: list[tuple[int, int]],
    check: Callable[[Path], None],
) -> Finished:
    tmp = target.with_name(target.name + ".tmp")
    media = sum(end - body for body, end in payloads)
    try:
        with open(source, "rb") as src:
            wide = len(head_bytes) + len(new_moov.encode()) + media + 16 >= 1 << 32
            for _ in range(2):  # the second time with the moov's final size
                data_at = len(head_bytes) + len(new_moov.encode()) + (16 if wide else 8)
                moved = _mover(payloads, data_at)
                _place_chunks(new_moov, tracks, moved, wide=wide)
            mdat_header = (
                struct.pack(">I4sQ", 1, b"mdat", media + 16)
                if wide
                else struct.pack(">I4s", media + 8, b"mdat")
            )
            digest = hashlib.sha256()
            written = 0
            with open(tmp, "wb") as dst:
                for chunk in (head_bytes, new_moov.encode(), mdat_header):
                    dst.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                for body, end in payloads:
                    src.seek(body)
                    left = end - body
                    while left:
                        chunk = src.read(min(left, _COPY_CHUNK))
                        if not chunk:
                            raise Mp4EditError("file shorter than its boxes")
                        dst.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        left -= len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        check(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Finished(size=written, sha256=digest.hexdigest())


def _mover(payloads: list[tuple[int, int]], data_at: int) -> Callable[[int], int]:
    """Where a byte of the source's media lands when the mdat payloads are laid end to
    end from data_at."""
    starts: list[tuple[int, int, int]] = []
    at = data_at
    for body, end in payloads:
        starts.append((body, end, at))
        at += end - body

    def moved(source: int) -> int:
        for begin, end, new in starts:
            if begin <= source < end:
                return new + source - begin
        raise Mp4EditError(f"a sample run at {source} lies outside every mdat")

    return moved


# --- reading ------------------------------------------------------------------------------


def _read(fh: BinaryIO, start: int, end: int) -> bytes:
    fh.seek(start)
    return fh.read(end - start)


def _load(fh: BinaryIO, box: tuple[bytes, int, int] | None) -> _Node:
    if box is None:
        raise Mp4EditError("no moov box")
    return _node(fh, *box)


def _node(fh: BinaryIO, kind: bytes, body: int, end: int) -> _Node:
    if kind not in _CONTAINERS:
        return _Node(kind, _read(fh, body, end))
    return _Node(kind, b"", [_node(fh, *child) for child in boxes(fh, body, end)])


@dataclass(frozen=True, slots=True)
class _Defaults:
    duration: int
    size: int
    flags: int


def _read_fragments(
    fh: BinaryIO, top: list[tuple[bytes, int, int]], moov: _Node
) -> dict[int, _Samples]:
    tables = FragmentTables()
    tables.add(b"moov", 0, moov)
    for kind, body, end in top:
        if kind == b"moof":
            tables.add(kind, body - 8, _node(fh, kind, body, end))
    return tables.tracks


class FragmentTables:
    """The sample tables of a fragmented MP4, built box by box: its moov, then its moofs
    in file order, each given with the offset it was written at."""

    def __init__(self) -> None:
        self.moov: _Node | None = None
        self.tracks: dict[int, _Samples] = {}
        self._defaults: dict[int, _Defaults] = {}

    def add(self, kind: bytes, at: int, box: _Node | bytes) -> None:
        if isinstance(box, bytes):  # a whole box, header included, as written
            body = 16 if box[:4] == b"\0\0\0\1" else 8
            box = _node(io.BytesIO(box), kind, body, len(box))
        if kind == b"moov":
            if self.moov is not None:
                raise Mp4EditError("a second moov box")
            self.moov = box
            self._tracks_of(box)
        elif kind == b"moof":
            if self.moov is None:
                raise Mp4EditError("a fragment before the moov")
            try:
                _read_moof(at, box, self.tracks, self._defaults)
            except OverflowError as exc:  # the tables hold 32-bit values, as the boxes do
                raise Mp4EditError(f"a sample time does not fit 32 bits: {exc}") from exc

    def _tracks_of(self, moov: _Node) -> None:
        for trak in (c for c in moov.children or () if c.kind == b"trak"):
            tkhd, mdhd = trak.find(b"tkhd"), _find_path(trak, (b"mdia", b"mdhd"))
            if tkhd is None or mdhd is None:
                raise Mp4EditError("a track without tkhd or mdhd")
            self.tracks[_track_id(tkhd.body)] = _Samples(timescale=_timescale(mdhd.body))
        mvex = moov.find(b"mvex")
        for trex in (c for c in (mvex.children or ()) if c.kind == b"trex") if mvex else ():
            track_id, _, duration, size, flags = struct.unpack_from(">IIIII", trex.body, 4)
            self._defaults[track_id] = _Defaults(duration, size, flags)


def _read_moof(
    moof_at: int,
    moof: _Node,
    tracks: dict[int, _Samples],
    defaults: dict[int, _Defaults],
) -> None:
    for traf in (c for c in moof.children or () if c.kind == b"traf"):
        tfhd = traf.find(b"tfhd")
        if tfhd is None:
            raise Mp4EditError("a traf without tfhd")
        flags = int.from_bytes(tfhd.body[1:4], "big")
        (track_id,) = struct.unpack_from(">I", tfhd.body, 4)
        at = 8
        base = moof_at
        if flags & 0x1:
            (base,) = struct.unpack_from(">Q", tfhd.body, at)
            at += 8
        if flags & 0x2:
            at += 4
        known = defaults.get(track_id, _Defaults(0, 0, 0))
        duration, size, sample_flags = known.duration, known.size, known.flags
        if flags & 0x8:
            (duration,) = struct.unpack_from(">I", tfhd.body, at)
            at += 4
        if flags & 0x10:
            (size,) = struct.unpack_from(">I", tfhd.body, at)
            at += 4
        if flags & 0x20:
            (sample_flags,) = struct.unpack_from(">I", tfhd.body, at)
        samples = tracks.get(track_id)
        if samples is None:
            raise Mp4EditError(f"a fragment of unknown track {track_id}")
        tfdt = traf.find(b"tfdt")
        if tfdt is not None:
            wide = tfdt.body[0] == 1
            (decode_time,) = struct.unpack_from(">Q" if wide else ">I", tfdt.body, 4)
            samples.start_at(decode_time)
        for trun in (c for c in traf.children or () if c.kind == b"trun"):
            _read_trun(trun.body, base, samples, _Defaults(duration, size, sample_flags))


def _read_trun(body: bytes, base: int, samples: _Samples, defaults: _Defaults) -> None:
    signed = body[0] == 1
    flags = int.from_bytes(body[1:4], "big")
    (count,) = struct.unpack_from(">I", body, 4)
    at = 8
    data = base
    if flags & 0x1:
        (offset,) = struct.unpack_from(">i", body, at)
        data = base + offset
        at += 4
    first_flags = None
    if flags & 0x4:
        (first_flags,) = struct.unpack_from(">I", body, at)
        at += 4
    samples.chunk_at.append(data)
    samples.chunk_samples.append(count)
    # One struct per sample entry, fields in the order the flags lay them out: this
    # loop meets every sample of the clip (an hour of 1080p30 + AAC has 280,000).
    layout = ((0x100, "I"), (0x200, "I"), (0x400, "I"), (0x800, "i" if signed else "I"))
    present = [(bit, code) for bit, code in layout if flags & bit]
    entry = struct.Struct(">" + "".join(code for _, code in present))
    column = {bit: n for n, (bit, _) in enumerate(present)}  # absent fields: -1 below
    d_at, s_at, f_at, o_at = (column.get(bit, -1) for bit, _ in layout)
    end = at + entry.size * count
    if end > len(body):
        raise Mp4EditError("a trun shorter than its sample count")
    # _Samples.add, inlined: a call per sample was half of this loop's time.
    delta_counts, delta_values = samples.deltas.counts, samples.deltas.values
    offset_counts, offset_values = samples.offsets.counts, samples.offsets.values
    sizes, sync = samples.sizes, samples.sync
    decoded, presented = samples.decoded_to, samples.presented_to
    rows = entry.iter_unpack(body[at:end]) if entry.size else iter(((),) * count)
    for n, values in enumerate(rows):
        duration = values[d_at] if d_at >= 0 else defaults.duration
        offset = values[o_at] if o_at >= 0 else 0
        sample_flags = values[f_at] if f_at >= 0 else defaults.flags
        if n == 0 and first_flags is not None:
            sample_flags = first_flags
        if decoded + offset + duration > presented:
            presented = decoded + offset + duration
        if delta_values and delta_values[-1] == duration:
            delta_counts[-1] += 1
        else:
            delta_counts.append(1)
            delta_values.append(duration)
        if offset_values and offset_values[-1] == offset:
            offset_counts[-1] += 1
        else:
            offset_counts.append(1)
            offset_values.append(offset)
        sizes.append(values[s_at] if s_at >= 0 else defaults.size)
        if not (sample_flags >> 16) & 1:
            sync.append(len(sizes))
        decoded += duration
    samples.decoded_to, samples.presented_to = decoded, presented


# --- writing ------------------------------------------------------------------------------


def _progressive_moov(
    moov: _Node, tracks: dict[int, _Samples], durations_s: Sequence[float | None]
) -> _Node:
    mvhd = moov.find(b"mvhd")
    if mvhd is None:
        raise Mp4EditError("no mvhd box")
    movie_scale = _timescale(mvhd.body)
    children: list[_Node] = []
    longest = 0
    index = 0
    for child in moov.children or ():
        if child.kind == b"mvex":
            continue  # no longer fragmented
        if child.kind != b"trak":
            children.append(child)
            continue
        wanted = durations_s[index] if index < len(durations_s) else None
        index += 1
        trak, presented = _progressive_trak(child, tracks, movie_scale, wanted)
        longest = max(longest, presented)
        children.append(trak)
    result = _Node(b"moov", b"", children)
    mvhd_index = children.index(mvhd)
    children[mvhd_index] = _Node(b"mvhd", _with_duration(mvhd.body, longest))
    return result


def _progressive_trak(
    trak: _Node, tracks: dict[int, _Samples], movie_scale: int, wanted_s: float | None
) -> tuple[_Node, int]:
    tkhd = trak.find(b"tkhd")
    assert tkhd is not None
    samples = tracks[_track_id(tkhd.body)]
    media_duration = samples.deltas.total()
    delay, media_time = _muxer_edit(trak)
    end = max(samples.presented_to, media_duration)
    available = delay + max(0, end - media_time) * movie_scale // max(1, samples.timescale)
    presented = available
    if wanted_s is not None:
        # Down, never up: rounding up would show a sliver of the next frame.
        presented = min(available, math.floor(wanted_s * movie_scale + 1e-9))
    edits = _elst(delay, max(0, presented - delay), media_time)
    edts = _Node(b"edts", b"", [_Node(b"elst", edits)])
    children: list[_Node] = []
    for child in trak.children or ():
        if child.kind == b"edts":
            continue
        if child.kind == b"tkhd":
            children.append(_Node(b"tkhd", _with_duration(child.body, presented, tkhd=True)))
            children.append(edts)
        elif child.kind == b"mdia":
            children.append(_progressive_mdia(child, samples, media_duration))
        else:
            children.append(child)
    return _Node(b"trak", b"", children), presented


def _progressive_mdia(mdia: _Node, samples: _Samples, media_duration: int) -> _Node:
    children: list[_Node] = []
    for child in mdia.children or ():
        if child.kind == b"mdhd":
            children.append(_Node(b"mdhd", _with_duration(child.body, media_duration)))
        elif child.kind == b"minf":
            stbl = child.find(b"stbl")
            inner = [
                _progressive_stbl(stbl, samples) if c is stbl else c for c in child.children or ()
            ]
            children.append(_Node(b"minf", b"", inner))
        else:
            children.append(child)
    return _Node(b"mdia", b"", children)


def _progressive_stbl(stbl: _Node, samples: _Samples) -> _Node:
    kept = [c for c in stbl.children or () if c.kind not in _TABLES]
    count = len(samples.sizes)
    tables = [_Node(b"stts", samples.deltas.encode(signed=False))]
    if any(samples.offsets.values):
        negative = min(samples.offsets.values) < 0
        tables.append(_Node(b"ctts", samples.offsets.encode(signed=negative)))
    if len(samples.sync) < count:
        tables.append(_Node(b"stss", _be(struct.pack(">II", 0, len(samples.sync)), samples.sync)))
    tables.append(_Node(b"stsc", b""))  # filled by _place_chunks
    tables.append(_Node(b"stsz", _be(struct.pack(">III", 0, 0, count), samples.sizes)))
    tables.append(_Node(b"stco", b""))
    # Encoded now: the arrays need not live on beside their encodings (a long export's
    # tables are megabytes). Only the chunk runs are read again (_place_chunks).
    samples.sizes = array("I")
    samples.deltas, samples.offsets = _Runs("I"), _Runs("i")
    samples.sync = array("I")
    return _Node(b"stbl", b"", kept + tables)


def _place_chunks(
    moov: _Node,
    tracks: dict[int, _Samples],
    moved: Callable[[int], int],
    *,
    wide: bool,
) -> None:
    """Fill stsc and stco/co64: each fragment's run of samples is one chunk, at `moved`
    of where it lies in the source."""
    for trak in (c for c in moov.children or () if c.kind == b"trak"):
        tkhd = trak.find(b"tkhd")
        stbl = _find_path(trak, (b"mdia", b"minf", b"stbl"))
        assert tkhd is not None and stbl is not None and stbl.children is not None
        samples = tracks[_track_id(tkhd.body)]
        offsets = array("Q" if wide else "I")
        runs: list[tuple[int, int]] = []
        pairs = zip(samples.chunk_at, samples.chunk_samples, strict=True)
        for chunk, (source, count) in enumerate(pairs, start=1):
            offsets.append(moved(source))
            if not runs or runs[-1][1] != count:
                runs.append((chunk, count))
        stsc = struct.pack(">II", 0, len(runs)) + b"".join(
            struct.pack(">III", first, count, 1) for first, count in runs
        )
        stco = _be(struct.pack(">II", 0, len(offsets)), offsets)
        for i, child in enumerate(stbl.children):
            if child.kind == b"stsc":
                stbl.children[i] = _Node(b"stsc", stsc)
            elif child.kind in (b"stco", b"co64"):
                stbl.children[i] = _Node(b"co64" if wide else b"stco", stco)


def _muxer_edit(trak: _Node) -> tuple[int, int]:
    """The muxer's own edit: (empty time before the track starts, in the movie's
    timescale, e.g. audio that begins a little after the first frame; the media time
    where presenting starts, e.g. past the pre-roll it hides)."""
    elst = _find_path(trak, (b"edts", b"elst"))
    if elst is None:
        return 0, 0
    wide = elst.body[0] == 1
    (count,) = struct.unpack_from(">I", elst.body, 4)
    size = 20 if wide else 12
    delay = 0
    for n in range(count):
        duration, media_time = struct.unpack_from(">Qq" if wide else ">Ii", elst.body, 8 + n * size)
        if media_time == -1:
            delay += duration
        else:
            return delay, int(media_time)
    return delay, 0


def _elst(delay: int, duration: int, media_time: int) -> bytes:
    """An edit list: `delay` of nothing (if any), then `duration` of media from media_time."""
    entries = ([(delay, -1)] if delay else []) + [(duration, media_time)]
    wide = any(d >= 1 << 32 or t >= 1 << 31 for d, t in entries)
    fmt = ">QqHH" if wide else ">IiHH"
    return struct.pack(">II", (1 << 24) if wide else 0, len(entries)) + b"".join(
        struct.pack(fmt, d, t, 1, 0) for d, t in entries
    )


def _be(head: bytes, values: array[int]) -> bytes:
    """A table box's body: `head`, then the values big-endian (one copy of them)."""
    copy = array(values.typecode, values)
    if copy.itemsize not in (4, 8):
        raise Mp4EditError("unexpected table width")
    if sys.byteorder == "little":
        copy.byteswap()
    return b"".join((head, copy))


def _find_path(node: _Node, kinds: Sequence[bytes]) -> _Node | None:
    found: _Node | None = node
    for kind in kinds:
        found = None if found is None else found.find(kind)
    return found


def _track_id(tkhd: bytes) -> int:
    return struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]  # type: ignore[no-any-return]


def _timescale(body: bytes) -> int:
    """mvhd/mdhd: the timescale after version, flags and the two times."""
    return struct.unpack_from(">I", body, 20 if body[0] == 1 else 12)[0]  # type: ignore[no-any-return]


def _with_duration(body: bytes, duration: int, *, tkhd: bool = False) -> bytes:
    """mvhd/mdhd/tkhd with a new duration, widened to version 1 if it needs 64 bits."""
    wide = body[0] == 1
    # mvhd/mdhd: times then timescale then duration; tkhd: times, track_ID, reserved, duration.
    at = (28 if wide else 20) if tkhd else (24 if wide else 16)
    if not wide and duration >= 1 << 32:
        raise Mp4EditError("duration too long for a version 0 header")
    packed = struct.pack(">Q" if wide else ">I", duration)
    return body[:at] + packed + body[at + len(packed) :]
