"""The muxer's output file: written by a thread of its own, and read as it passes.

libavformat hands its output to Python in 1 MB writes (immutable bytes). They are
queued and written with pwrite by a writer thread, which holds no GIL while the kernel
copies them, so the demuxer and the muxer keep the main thread; it also flushes them to
disk every few megabytes, so the fsync at the end is short. The queue is bounded:
a slow disk holds the muxer back instead of filling memory. A write that fails is
raised at the muxer's next write, or at close.

With `scan`, the writer also follows the top-level boxes as they go by (a fragmented
MP4 is written front to back, never seeking): it hands each moov and moof to a callback
once whole, and hashes the bytes as the finished file will hold them, with those boxes'
types (and mfra's and sidx's) already turned into `free` (media/mp4edit.py turns the
file into a progressive MP4 by appending a new moov and patching those four-byte types
in place). So the SHA-256 of a clip is done when its last byte is written, on the other
core. A write anywhere but the end (a seek back) gives the streamed hash up: the caller
then reads the file again.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import struct
import threading
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

FREE = b"free"
# Boxes that become `free` in the finished file: the muxer's own (fragmented) moov,
# the fragment headers, and the indexes of fragments.
FREED = frozenset({b"moov", b"moof", b"mfra", b"sidx"})
KEPT = frozenset({b"moov", b"moof"})  # handed to on_box once whole
_HEADER = 16  # the longest box header: size, type, 64-bit size
_QUEUE = 4  # writes in flight: 4 MB
# Written data is flushed to disk this often, by the writer, so that the fsync before a
# clip is ready has little left to do (and a long export never holds gigabytes dirty).
_SYNC_BYTES = 8 << 20


class MuxerOutput(io.RawIOBase):
    """A file seen from `offset` on, written by a writer thread (see the module's text)."""

    def __init__(
        self,
        fh: BinaryIO,
        *,
        offset: int = 0,
        on_box: Callable[[bytes, int, bytes], None] | None = None,
    ) -> None:
        super().__init__()
        self._fd = fh.fileno()
        self.offset = offset
        self._pos = 0
        self.size = 0  # bytes the muxer wrote (the end of its output)
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(_QUEUE)
        self._scan = None if on_box is None else _Scan(on_box)
        self._thread = threading.Thread(target=self._drain, name="mp4-writer", daemon=True)
        self._thread.start()

    @property
    def scanned(self) -> _Scan | None:
        """The boxes and the hash of a front-to-back output, once closed; None if the
        muxer sought back (or no scan was asked for)."""
        scan = self._scan
        return scan if scan is not None and scan.whole else None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise OSError(f"writing the clip failed: {self._error}") from self._error
        chunk = bytes(data)  # PyAV hands bytes already: no copy then
        self._queue.put((self._pos, chunk))
        self._pos += len(chunk)
        self.size = max(self.size, self._pos)
        return len(chunk)

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        self._pos = max(0, offset)
        return self._pos

    def close(self) -> None:
        if not self.closed and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        super().close()
        if self._error is not None:
            raise OSError(f"writing the clip failed: {self._error}") from self._error

    def _drain(self) -> None:
        unsynced = 0
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking, so the muxer is never blocked on a full queue
            at, data = item
            try:
                view = memoryview(data)
                where = self.offset + at
                while view:
                    written = os.pwrite(self._fd, view, where)
                    view, where = view[written:], where + written
                if self._scan is not None:
                    self._scan.take(at, data)
                unsynced += len(data)
                if unsynced >= _SYNC_BYTES:
                    os.fdatasync(self._fd)
                    unsynced = 0
            except Exception as exc:  # noqa: BLE001 (raised on the muxer's thread)
                self._error = exc
        if self._scan is not None and self._error is None:
            try:
                self._scan.finish()
            except Exception as exc:  # noqa: BLE001 (raised on the muxer's thread)
                self._error = exc


class _Scan:
    """Top-level boxes and the finished file's hash, from writes that come in order.

    The last 16 bytes written are held back from the hash until more come: a box header
    that straddles two writes is then still unhashed when its type is seen, and can be
    hashed as `free`.
    """

    def __init__(self, on_box: Callable[[bytes, int, bytes], None]) -> None:
        self._on_box = on_box
        self.digest: Any = hashlib.sha256()
        self.whole = True  # every write so far came at the end
        self.patches: array[int] = array("Q")  # offsets of box types that become `free`
        self._end = 0  # bytes taken
        self._next = 0  # offset of the next box header
        self._hashed = 0
        self._unhashed: deque[tuple[int, memoryview]] = deque()
        self._pending: list[int] = []  # patches not hashed yet
        self._keeping: tuple[bytes, int, int, list[bytes]] | None = None  # kind, at, end, parts

    def take(self, at: int, data: bytes) -> None:
        if not self.whole:
            return
        if at != self._end:
            self.whole = False  # a seek back: the stream is no longer the file
            self._unhashed.clear()
            return
        view = memoryview(data)
        end = at + len(view)
        self._unhashed.append((at, view))
        self._end = end
        if self._keeping is not None:
            self._keep_until(end)
        while self._keeping is None and self._next + 8 <= end:
            if not self._box(end):
                break
        self._hash_until(end - _HEADER)

    def finish(self) -> None:
        if not self.whole:
            return
        if self._keeping is not None or self._next != self._end:
            raise OSError("the muxer's output ends inside a box")
        self._hash_until(self._end)

    def _box(self, end: int) -> bool:
        """Read the header at self._next (False: it is not all written yet)."""
        at = self._next
        header = self._slice(at, min(at + _HEADER, end))
        size, kind = struct.unpack_from(">I4s", header)
        if size == 1:
            if len(header) < 16:
                return False
            (size,) = struct.unpack_from(">Q", header, 8)
        if size < 8:  # 0 ("to the end of the file") is not known while writing
            raise OSError(f"box {kind!r} at {at} has size {size}: not a muxer's fragment")
        self._next = at + size
        if kind in FREED:
            self.patches.append(at + 4)
            self._pending.append(at + 4)
        if kind in KEPT:
            self._keeping = (kind, at, at + size, [])
            self._keep_until(end)
        return True

    def _keep_until(self, end: int) -> None:
        assert self._keeping is not None
        kind, at, box_end, parts = self._keeping
        start = at + sum(len(p) for p in parts)
        parts.append(self._slice(start, min(box_end, end)))
        if box_end <= end:
            self._keeping = None
            self._on_box(kind, at, b"".join(parts))

    def _slice(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of what is not hashed yet."""
        out = []
        for at, view in self._unhashed:
            lo, hi = max(start, at), min(stop, at + len(view))
            if lo < hi:
                out.append(view[lo - at : hi - at])
        return b"".join(out)

    def _hash_until(self, limit: int) -> None:
        update = self.digest.update
        while self._unhashed and self._hashed < limit:
            at, view = self._unhashed[0]
            stop = min(at + len(view), limit)
            done = self._hashed
            for patch in self._pending:
                lo, hi = max(patch, done), min(patch + 4, stop)
                if lo >= hi:
                    continue
                if lo > done:
                    update(view[done - at : lo - at])
                update(FREE[lo - patch : hi - patch])
                done = hi
            if stop > done:
                update(view[done - at : stop - at])
            self._hashed = stop
            self._pending = [p for p in self._pending if p + 4 > stop]
            if stop == at + len(view):
                self._unhashed.popleft()
