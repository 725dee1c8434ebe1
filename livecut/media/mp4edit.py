"""Finish an MP4 from our muxer: trim the end of its tracks, move its index to the front, hash it.

libavformat writes an edit list that hides the pre-roll before a clip's first frame,
but always lets a track run to its last sample. A frame-accurate clip also carries,
after its last frame, the reference frames that B-frames before it need; we hide them
by shortening each track's edit (and the track and movie durations) to what should
be presented. Only fixed-size fields change.

The muxer writes its index (moov) last. finish_mp4 writes the final file with the
index first (what +faststart does, so players can start before the whole file has
arrived) in the one pass that also computes its SHA-256, instead of a faststart pass
and then a second read for the hash.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CONTAINERS = {b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"}
_COPY_CHUNK = 1 << 20


class Mp4EditError(ValueError):
    """The file is not laid out as an MP4 from our muxer should be."""


@dataclass(frozen=True, slots=True)
class _Box:
    kind: bytes
    start: int  # offset of the box header
    body: int  # offset of the box body
    end: int


def _boxes(fh: BinaryIO, start: int, end: int) -> Iterator[_Box]:
    offset = start
    while offset + 8 <= end:
        fh.seek(offset)
        size, kind = struct.unpack(">I4s", fh.read(8))
        body = offset + 8
        if size == 1:
            (size,) = struct.unpack(">Q", fh.read(8))
            body += 8
        elif size == 0:
            size = end - offset
        if size < 8 or offset + size > end:
            raise Mp4EditError(f"bad box {kind!r} at {offset}")
        yield _Box(kind, offset, body, offset + size)
        offset += size


def _child(fh: BinaryIO, parent: _Box, kind: bytes) -> _Box | None:
    return next((b for b in _boxes(fh, parent.body, parent.end) if b.kind == kind), None)


@dataclass(frozen=True, slots=True)
class Finished:
    size: int
    sha256: str


def finish_mp4(source: Path, target: Path, durations_s: Sequence[float | None]) -> Finished:
    """Write `source` to `target` with its moov first and trimmed (see _trim),
    fsynced and renamed into place; the file's size and SHA-256, computed as it is written."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(source, "rb") as src:
            size = src.seek(0, 2)
            top = list(_boxes(src, 0, size))
            moov_box = next((b for b in top if b.kind == b"moov"), None)
            if moov_box is None:
                raise Mp4EditError("no moov box")
            src.seek(moov_box.start)
            moov = io.BytesIO(src.read(moov_box.end - moov_box.start))
            _trim(moov, durations_s)
            data_at = next((b.start for b in top if b.kind == b"mdat"), moov_box.start)
            moved = _shift_chunk_offsets(moov, moov_box.end - moov_box.start)
            order = (
                [b for b in top if b.start < data_at] + [moov_box]
                if moved
                else [b for b in top if b.start < data_at]
            )
            rest = [b for b in top if b.start >= data_at and b is not moov_box]
            if not moved:  # offsets would overflow 32 bits: keep the index at the end
                rest.append(moov_box)
            digest = hashlib.sha256()
            written = 0
            with open(tmp, "wb") as dst:
                for box in [*order, *rest]:
                    if box is moov_box:
                        chunk = moov.getvalue()
                        dst.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        continue
                    src.seek(box.start)
                    left = box.end - box.start
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
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Finished(size=written, sha256=digest.hexdigest())


def _shift_chunk_offsets(moov: BinaryIO, by: int) -> bool:
    """Add `by` to every chunk offset (stco/co64); False, changing nothing, if a 32-bit
    offset would overflow."""
    size = moov.seek(0, 2)
    root = next(_boxes(moov, 0, size))
    tables = []
    for trak in (b for b in _boxes(moov, root.body, root.end) if b.kind == b"trak"):
        stbl = _path(moov, trak, (b"mdia", b"minf", b"stbl"))
        if stbl is None:
            continue
        for box in _boxes(moov, stbl.body, stbl.end):
            if box.kind in (b"stco", b"co64"):
                moov.seek(box.body + 4)
                (count,) = struct.unpack(">I", moov.read(4))
                wide = box.kind == b"co64"
                fmt = f">{count}{'Q' if wide else 'I'}"
                offsets = struct.unpack(fmt, moov.read(count * (8 if wide else 4)))
                if not wide and offsets and max(offsets) + by >= 1 << 32:
                    return False
                tables.append((box.body + 8, fmt, offsets))
    for at, fmt, offsets in tables:
        moov.seek(at)
        moov.write(struct.pack(fmt, *(o + by for o in offsets)))
    return True


def _path(fh: BinaryIO, box: _Box, kinds: Sequence[bytes]) -> _Box | None:
    found: _Box | None = box
    for kind in kinds:
        found = None if found is None else _child(fh, found, kind)
    return found


def _trim(fh: BinaryIO, durations_s: Sequence[float | None]) -> None:
    """Trim the tracks of the moov box at offset 0 of fh.

    A duration longer than what the track holds is ignored: an edit can hide media,
    it must not promise media that is not there.
    """
    size = fh.seek(0, 2)
    moov = next((b for b in _boxes(fh, 0, size) if b.kind == b"moov"), None)
    if moov is None:
        raise Mp4EditError("no moov box")
    mvhd = _child(fh, moov, b"mvhd")
    if mvhd is None:
        raise Mp4EditError("no mvhd box")
    movie_scale, movie_duration_at, movie_wide = _timescale_and_duration(fh, mvhd)
    longest = 0
    traks = [b for b in _boxes(fh, moov.body, moov.end) if b.kind == b"trak"]
    for index, trak in enumerate(traks):
        wanted = durations_s[index] if index < len(durations_s) else None
        elst = _elst(fh, trak)
        duration = _media_edit_duration(fh, elst) if elst is not None else None
        if wanted is not None and elst is not None and duration is not None:
            # Down, never up: rounding up would show a sliver of the next frame.
            target = math.floor(wanted * movie_scale + 1e-9)
            if 0 < target < duration[1]:
                _write_int(fh, duration[0], target, duration[2])
                duration = (duration[0], target, duration[2])
        tkhd = _child(fh, trak, b"tkhd")
        if tkhd is not None and duration is not None:
            # tkhd: version/flags, then created, modified, track_ID, reserved, duration.
            fh.seek(tkhd.body)
            wide = fh.read(1)[0] == 1
            at = tkhd.body + 4 + (8 + 8 + 4 + 4 if wide else 4 + 4 + 4 + 4)
            _write_int(fh, at, duration[1], wide)
        if duration is not None:
            longest = max(longest, duration[1])
    if longest:
        _write_int(fh, movie_duration_at, longest, movie_wide)


def _elst(fh: BinaryIO, trak: _Box) -> _Box | None:
    edts = _child(fh, trak, b"edts")
    return None if edts is None else _child(fh, edts, b"elst")


def _media_edit_duration(fh: BinaryIO, elst: _Box) -> tuple[int, int, bool] | None:
    """(offset of the duration field, its value, 64-bit) of the edit that maps media."""
    fh.seek(elst.body)
    version = fh.read(1)[0]
    fh.read(3)
    (count,) = struct.unpack(">I", fh.read(4))
    wide = version == 1
    entry_size = 20 if wide else 12
    found = None
    for n in range(count):
        at = elst.body + 8 + n * entry_size
        fh.seek(at)
        if wide:
            duration, media_time = struct.unpack(">Qq", fh.read(16))
        else:
            duration, media_time = struct.unpack(">Ii", fh.read(8))
        if media_time != -1:  # -1 is an empty edit (a delay), not media
            found = (at, duration, wide)
    return found


def _timescale_and_duration(fh: BinaryIO, box: _Box) -> tuple[int, int, bool]:
    """For mvhd/mdhd: (timescale, offset of the duration field, 64-bit)."""
    fh.seek(box.body)
    wide = fh.read(1)[0] == 1
    at = box.body + 4 + (16 if wide else 8)
    fh.seek(at)
    (scale,) = struct.unpack(">I", fh.read(4))
    return scale, at + 4, wide


def _write_int(fh: BinaryIO, at: int, value: int, wide: bool) -> None:
    fh.seek(at)
    fh.write(struct.pack(">Q" if wide else ">I", value))
