"""Walk ISO base media (MP4) boxes: the one box iterator the MP4 editor and the checker share."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO


class BoxError(ValueError):
    """A box's size runs past its parent: the file is not well formed."""


def boxes(source: BinaryIO | memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(kind, body offset, end offset) of each box between start and end, in a file or
    in memory (a size of 0 runs to `end`; a size of 1 is followed by a 64-bit size)."""
    at = start
    while at + 8 <= end:
        header = _read(source, at, 16 if at + 16 <= end else 8)
        size, kind = struct.unpack_from(">I4s", header)
        body = at + 8
        if size == 1:
            if len(header) < 16:
                raise BoxError(f"box {kind!r} at {at} has no 64-bit size")
            (size,) = struct.unpack_from(">Q", header, 8)
            body += 8
        elif size == 0:
            size = end - at
        if size < 8 or at + size > end:
            raise BoxError(f"box {kind!r} at {at} runs past its parent")
        yield kind, body, at + size
        at += size


def _read(source: BinaryIO | memoryview, at: int, count: int) -> bytes | memoryview:
    if isinstance(source, memoryview):
        return source[at : at + count]
    source.seek(at)
    return source.read(count)
