"""Each new segment written durably and probed in worker processes, away from the loop.

DESIGN (where a segment's bytes go): a downloaded segment is written, fsynced and
demuxed once (media/probe.py) for its timestamps and keyframes. Done in the daemon's
own threads, that work hands the GIL back and forth with the event loop hundreds of
times a segment (PyAV takes it back for every packet and every read, each write and
fsync takes it back too): at 300 streams of 4 Mbit/s the loop waited for the GIL for
up to 200 ms and a third of the segments were lost. So worker processes (`[ingest]
segment_workers`, default 4: they spend much of their time waiting for fsync) do it.

Each worker has its own Unix socket to the daemon, and the event loop itself streams a
segment's bytes into it (non-blocking sends, large socket buffers): no thread of the
daemon touches them, so nothing there competes with the loop for the GIL. The worker
writes them to the incoming folder, fsyncs, probes the file and answers with the
probe. A ProcessPoolExecutor was tried first: its single call pipe, fed by a thread
that pickles each 1 MB segment, queued segments behind each other for up to 1.5 s at
300 streams. The segment is moved into its session's folder later, in commit order
(Store.publish), and its bytes leave the daemon's memory once they are sent.
`segment_workers = 0` does the same work in the daemon's threads, as a one-core
machine may prefer.

A worker that dies (a segment that crashes FFmpeg, the kernel's OOM killer) costs only
the attempt it was on: it is replaced, and that segment is retried like one that was
unreadable, so one bad segment cannot take the recorder down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import pickle
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from livecut.ingest.budget import ByteBudget
from livecut.media.probe import ProbeError, SegmentProbe, probe_file
from livecut.store import files

log = logging.getLogger(__name__)

# A worker is a fresh interpreter running this module (`python -m`), about 0.15 s to
# start and 45 MB, most of it PyAV's libraries. Not multiprocessing: its spawn and
# forkserver children import the daemon's main module again (the `livecut` script, so
# the whole daemon: 190 MB a worker), and forking the daemon itself, which has threads,
# is unsafe.
WORKER_MODULE = "livecut.ingest.staging"
# A 1 MB segment leaves the loop in a few non-blocking sends. Linux caps this at
# net.core.wmem_max / rmem_max; smaller buffers only mean more sends.
SOCKET_BUFFER = 4 << 20
# Request: header lengths, then a JSON header, the init section and the segment.
_REQUEST = struct.Struct("!III")
# Reply: the length of a pickled ("ok", probe) or ("error", exception).
_REPLY = struct.Struct("!I")
STOP_WAIT_S = 2.0
START_RETRY_S = 1.0  # after a worker failed to start, before another is tried
STAGE_TIMEOUT_S = 60.0  # writing, fsyncing and probing one segment, however slow the disk


def stage_segment(
    path: Path, data: bytes | memoryview, init: bytes | None, probe: bool
) -> SegmentProbe | None:
    """Write the segment durably to `path`, then probe it (unless told not to: subtitles).

    Blocking. A failed write raises OSError and a failed probe ProbeError, with the
    file removed either way.
    """
    files.write_durable(path, data)
    if not probe:
        return None
    try:
        return probe_file(path, init)
    except BaseException:
        files.remove_quietly(path)
        raise


def serve_worker(sock: socket.socket) -> None:
    """A worker process's whole life: stage each segment the daemon sends, answer, and
    exit when the daemon closes its end."""
    with sock:
        while True:
            head = _receive(sock, _REQUEST.size)
            if head is None:
                return
            header_size, init_size, data_size = _REQUEST.unpack(head)
            body = _receive(sock, header_size + init_size + data_size)
            if body is None:
                return
            header = json.loads(body[:header_size])
            init = bytes(body[header_size : header_size + init_size]) if init_size else None
            data = memoryview(body)[header_size + init_size :]
            outcome: tuple[str, object]
            try:
                staged = stage_segment(Path(header["path"]), data, init, bool(header["probe"]))
                outcome = ("ok", staged)
            except (OSError, ProbeError) as exc:
                outcome = ("error", exc)
            reply = pickle.dumps(outcome)
            sock.sendall(_REPLY.pack(len(reply)) + reply)


def _receive(sock: socket.socket, size: int) -> bytearray | None:
    """Exactly `size` bytes, or None at end of stream."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return buffer


@dataclass(kw_only=True, slots=True)
class _Worker:
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class WorkerDied(Exception):
    """The worker process went away in the middle of a segment."""


class SegmentWorkers:
    """Stages segments in `workers` processes (0: in the daemon's own threads).

    The processes start as segments need them, not before: a daemon with nothing to
    record never starts one. DESIGN (a spare): starting one takes 0.15 s on an idle
    machine and over 2 s on a busy one, which a segment waiting for it would add to its
    lag. So whenever a segment takes the last idle worker, another one starts in the
    background (up to `workers`), and a segment finding none idle waits for whichever
    comes first, a new worker or a busy one coming back. A single stream keeps two.
    """

    def __init__(self, workers: int, *, buffer_bytes: int = 64 * 1024 * 1024) -> None:
        self.workers = workers
        # Bytes on their way here: taken as a body is read, given back once it is staged.
        self.budget = ByteBudget(buffer_bytes)
        # None in the queue: a start failed, and whoever waits looks again.
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._all: list[_Worker] = []
        self._starting: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._start_failed: tuple[float, OSError] | None = None
        self._closed = False

    async def stage(
        self, path: Path, data: bytes, init: bytes | None, *, probe: bool
    ) -> SegmentProbe | None:
        """stage_segment in a worker. OSError: not written; ProbeError: PyAV cannot read
        it, or its worker died. Cancelled, the file is removed once the worker is done."""
        work: asyncio.Future[SegmentProbe | None]
        if self.workers == 0:
            work = asyncio.ensure_future(asyncio.to_thread(stage_segment, path, data, init, probe))
        else:
            # Shielded: a worker's stream must never be left between a request and its
            # reply, whatever happens to the caller.
            work = asyncio.ensure_future(self._exchange(path, data, init, probe))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(functools.partial(_abandoned, path))
            raise

    def pids(self) -> list[int]:
        """The worker processes' ids (none until the first segment)."""
        return sorted(w.process.pid for w in self._all)

    async def settled(self) -> None:
        """Until no worker is starting (each start has succeeded or failed)."""
        while self._starting:
            await asyncio.wait(set(self._starting))

    async def close(self) -> None:
        """Stop the workers: each finishes the segment it is on, then sees its socket close."""
        self._closed = True
        await self.settled()  # a worker that was starting is now in _all, or reaped
        workers, self._all = self._all, []
        for worker in workers:
            worker.writer.close()
        for worker in workers:
            await _reap(worker.process)

    async def _exchange(
        self, path: Path, data: bytes, init: bytes | None, probe: bool
    ) -> SegmentProbe | None:
        worker = await self._take()
        try:
            header = json.dumps({"path": str(path), "probe": probe}).encode()
            init_bytes = init or b""
            worker.writer.write(_REQUEST.pack(len(header), len(init_bytes), len(data)))
            worker.writer.write(header + init_bytes)
            worker.writer.write(data)
            async with asyncio.timeout(STAGE_TIMEOUT_S):
                await worker.writer.drain()
                (size,) = _REPLY.unpack(await worker.reader.readexactly(_REPLY.size))
                status, value = pickle.loads(await worker.reader.readexactly(size))
        except TimeoutError as exc:  # before OSError, of which it is a kind
            # A demuxer stuck on a hostile segment, or a disk that stopped answering:
            # the worker is killed and the segment retried, once, like an unreadable one.
            self._drop(worker)
            files.remove_quietly(path)
            raise ProbeError(
                f"the segment's worker gave no answer within {STAGE_TIMEOUT_S:g} s; stopped it"
            ) from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._drop(worker)
            files.remove_quietly(path)  # whatever it got to write
            raise ProbeError(f"the segment's worker process died ({exc!r})") from exc
        except BaseException:
            self._drop(worker)  # cancelled mid-exchange: its stream is out of step
            raise
        self._give_back(worker)
        if status == "error":
            assert isinstance(value, (OSError, ProbeError))
            raise value
        assert value is None or isinstance(value, SegmentProbe)
        return value

    async def _take(self) -> _Worker:
        if self._closed:
            raise ProbeError("the daemon is stopping: no more segments are staged")
        if self._idle is None:
            self._idle = asyncio.Queue()
        while True:
            if self._idle.empty():
                self._start_soon()
                self._check_startable()
            self._waiting += 1
            try:
                worker = await self._idle.get()
            finally:
                self._waiting -= 1
            if worker is None:
                self._check_startable()
                continue  # others will answer
            if worker not in self._all:
                continue  # dropped while it waited in the queue
            if not worker.reader.at_eof() and worker.process.returncode is None:
                if self._idle.empty():
                    self._start_soon()  # the spare
                return worker
            # Died while idle (killed, OOM): not this segment's doing; take another.
            self._drop(worker)

    def _check_startable(self) -> None:
        """ProbeError when no worker runs, none is starting and the last start failed:
        nothing would ever answer a segment that waited."""
        if not self._all and not self._starting and self._start_failed is not None:
            raise ProbeError(f"no segment worker could be started: {self._start_failed[1]}")

    def _give_back(self, worker: _Worker) -> None:
        if self._idle is not None and worker in self._all:
            self._idle.put_nowait(worker)

    def _start_soon(self) -> None:
        """Start one more worker in the background, if there is room for one and the
        last start did not fail within the past second."""
        if self._closed or len(self._all) + len(self._starting) >= self.workers:
            return
        if self._start_failed and time.monotonic() - self._start_failed[0] < START_RETRY_S:
            return
        task = asyncio.create_task(self._start_one())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        try:
            worker = await self._start()
        except OSError as exc:  # no such executable, out of processes or descriptors
            log.error("could not start a segment worker: %s", exc)
            self._start_failed = (time.monotonic(), exc)
            assert self._idle is not None
            for _ in range(max(1, self._waiting)):
                self._idle.put_nowait(None)  # each waiter looks again
            return
        finally:
            # Now, not in the done callback: a waiter woken by the None above runs
            # before that, and must not count this start as still under way.
            self._starting.discard(asyncio.current_task())
        self._start_failed = None
        if self._closed:
            worker.writer.close()
            await _reap(worker.process)
            return
        self._all.append(worker)
        self._give_back(worker)

    async def _start(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (ours, theirs):
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                WORKER_MODULE,
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=SOCKET_BUFFER)
        return _Worker(process=process, reader=reader, writer=writer)

    def _drop(self, worker: _Worker) -> None:
        if worker in self._all:
            self._all.remove(worker)
            log.warning(
                "segment worker %s stopped answering; a new one starts when needed",
                worker.process.pid,
            )
        worker.writer.close()
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()


def _abandoned(path: Path, work: asyncio.Future[SegmentProbe | None]) -> None:
    """A staging its caller gave up on: whatever it wrote goes, and how it ended (a
    stopping daemon's closed worker, say) is not reported as never retrieved."""
    if not work.cancelled():
        work.exception()
    files.remove_quietly(path)


async def _reap(process: asyncio.subprocess.Process) -> None:
    try:
        async with asyncio.timeout(STOP_WAIT_S):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


if __name__ == "__main__":
    # A segment worker: the daemon passes its end of a socket pair by number. The daemon
    # going away mid-segment (a stop, a crash) is an ordinary end, not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        serve_worker(socket.socket(fileno=int(sys.argv[1])))
