"""Open a continuous run of stored segments as one input: one demuxer for the whole run.

TS segments laid end to end are one transport stream, and an init section followed by
its fMP4 fragments is one fragmented MP4, so a run needs one open (one header probe)
instead of one per segment, and packets cross segment joins as the encoder wrote them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
from av.container import InputContainer

from livecut.media.probe import NO_DECODE, TS_SYNC

# libavformat reads through this much at a time; large reads keep Python out of the loop.
_BUFFER = 1 << 20


class RunReader(io.RawIOBase):
    """The files of a run, read as one seekable byte stream, one file open at a time."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._starts: list[int] = []
        total = 0
        for path in self._paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size = total
        self._pos = 0
        self._index = -1
        self._file: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self._size
        self._pos = max(0, offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = self._file_at(self._pos)
            assert self._file is not None
            self._file.seek(self._pos - self._starts[index])
            count = self._file.readinto(view[done:])
            if not count:
                break  # the file shrank under us: report what we have
            done += count
            self._pos += count
        return done

    def _file_at(self, pos: int) -> int:
        index = self._index
        if not (index >= 0 and self._starts[index] <= pos < self._end_of(index)):
            index = next(i for i in range(len(self._paths)) if pos < self._end_of(i))
            if self._file is not None:
                self._file.close()
            self._file = open(self._paths[index], "rb")  # noqa: SIM115 (closed in close())
            self._index = index
        return index

    def _end_of(self, index: int) -> int:
        return self._starts[index + 1] if index + 1 < len(self._starts) else self._size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def open_run(
    paths: Sequence[Path], init_path: Path | None, *, decode: bool = False
) -> InputContainer:
    """Open the run for demuxing; without `decode` no frame is decoded just to open it
    (packets are copied, never decoded, so their decoders need not be set up).

    libavformat's own concat protocol reads the files: about twice as fast as reading
    them through Python. A path it cannot name ('|' separates its parts) is read
    through RunReader instead.
    """
    files = [init_path, *paths] if init_path is not None else list(paths)
    with open(files[0], "rb") as first:
        head = first.read(1)
    fmt = "mpegts" if init_path is None and head == bytes([TS_SYNC]) else None
    # Probed as far as its first segment reaches, as ingest probed that segment alone:
    # libavformat's default (5 MB and 5 s) would read several segments of a long run.
    probe_bytes = sum(path.stat().st_size for path in files[: 2 if init_path else 1])
    options = {**({} if decode else NO_DECODE), "probesize": str(max(probe_bytes, 1 << 15))}
    names = [str(path.resolve()) for path in files]
    if not any("|" in name for name in names):
        return av.open("concat:" + "|".join(names), mode="r", format=fmt, options=options)
    return av.open(RunReader(files), mode="r", format=fmt, options=options, buffer_size=_BUFFER)
