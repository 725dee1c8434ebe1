"""Trim the end of an MP4's tracks by rewriting their edit lists in place.

libavformat writes an edit list that hides the pre-roll before a clip's first frame,
but always lets a track run to its last sample. A frame-accurate clip also carries,
after its last frame, the reference frames that B-frames before it need; we hide them
by shortening each track's edit (and the track and movie durations) to what should
be presented. Only fixed-size fields change, in place: no offsets move, nothing is
rewritten but a few bytes of the moov box, so this is cheap for any file size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CONTAINERS = {b"moov", b"trak", b"edts", b"mdia"}


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


def trim_track_durations(path: Path, durations_s: Sequence[float | None]) -> None:
    """Shorten track i's presentation to durations_s[i] seconds (None leaves it as is).

    A duration longer than what the track holds is ignored: an edit can hide media,
    it must not promise media that is not there.
    """
    with open(path, "r+b") as fh:
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
                target = round(wanted * movie_scale)
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
