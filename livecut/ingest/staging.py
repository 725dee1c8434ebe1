"""Each new segment written durably and probed in worker processes, away from the loop.

DESIGN (where a segment's bytes go): a downloaded segment is written, fsynced and
demuxed once (media/probe.py) for its timestamps and keyframes. Done in the daemon's
own threads, that work hands the GIL back and forth with the event loop several
hundred times a segment (PyAV takes it back for every packet and every read; each
write and fsync takes it back too): at 300 streams of 4 Mbit/s the writes cost 2-3 ms
of CPU each instead of 0.4 ms, probes twice their cost alone, and the loop waited for
the GIL for up to 200 ms. So a small pool of worker processes (`[ingest]
segment_workers`, default 4: they spend most of their time waiting for fsync) takes
the bytes through a pipe, writes them to the incoming folder, fsyncs and probes them,
and answers with the probe; the daemon's part is one copy into the pipe. The segment
is moved into its session's folder later, in commit order (Store.publish), and its
bytes leave the daemon's memory as soon as they are staged, not when it is indexed.
`segment_workers = 0` does the same in the daemon's threads, as a one-core machine
may prefer.

A worker that dies (a segment that crashes FFmpeg, the kernel's OOM killer) costs only
that segment's attempt: the pool is replaced and the segment is retried like one that
was unreadable, so one bad segment cannot take the recorder down with it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from livecut.media.probe import ProbeError, SegmentProbe, probe_file
from livecut.store import files

log = logging.getLogger(__name__)

# Workers fork from a small server process that has imported PyAV once, rather than
# from the daemon (forking a process with threads is unsafe) or from nothing (spawning
# re-imports PyAV in every worker, a few hundred ms each).
_START_METHOD = "forkserver"
_PRELOAD = ["livecut.ingest.staging"]


def stage_segment(path: Path, data: bytes, init: bytes | None, probe: bool) -> SegmentProbe | None:
    """Write the segment durably to `path`, then probe it (unless told not to: subtitles).

    Blocking; runs in a worker process (or thread). A failed write raises OSError and
    a failed probe ProbeError, with the file removed either way.
    """
    files.write_durable(path, data)
    if not probe:
        return None
    try:
        return probe_file(path, init)
    except BaseException:
        files.remove_quietly(path)
        raise


class SegmentWorkers:
    """Stages segments in `workers` processes (0: in the daemon's own threads).

    The processes start on the first segment, not before: a daemon with nothing to
    record never starts them.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    async def stage(
        self, path: Path, data: bytes, init: bytes | None, *, probe: bool
    ) -> SegmentProbe | None:
        """stage_segment in a worker. OSError: not written; ProbeError: PyAV cannot read
        it, or its worker died. Cancelled, the file is removed once the worker is done."""
        if self.workers == 0:
            work: asyncio.Future[SegmentProbe | None] = asyncio.ensure_future(
                asyncio.to_thread(stage_segment, path, data, init, probe)
            )
        else:
            work = asyncio.wrap_future(self._submit(path, data, init, probe))
        try:
            return await asyncio.shield(work)
        except BrokenProcessPool as exc:
            self._replace()
            raise ProbeError(f"the segment's worker process died ({exc})") from exc
        except asyncio.CancelledError:
            work.add_done_callback(lambda _: files.remove_quietly(path))
            raise

    def close(self) -> None:
        """Stop the workers (a segment still being staged is abandoned, not waited for)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _submit(
        self, path: Path, data: bytes, init: bytes | None, probe: bool
    ) -> Future[SegmentProbe | None]:
        try:
            return self._ensure_pool().submit(stage_segment, path, data, init, probe)
        except BrokenProcessPool:
            # Broken before this segment got to it (a worker killed while idle): not
            # this segment's fault, so it goes to a new pool at once.
            self._replace()
            return self._ensure_pool().submit(stage_segment, path, data, init, probe)

    def pids(self) -> list[int]:
        """The worker processes' ids (none until the first segment)."""
        if self._pool is None:
            return []
        # Not in the executor's public interface; read-only, for tests and diagnostics.
        return sorted(self._pool._processes or {})

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._closed:
            raise ProbeError("the daemon is stopping: no more segments are staged")
        if self._pool is None:
            context = multiprocessing.get_context(_START_METHOD)
            context.set_forkserver_preload(_PRELOAD)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    def _replace(self) -> None:
        if self._pool is not None:
            log.warning("a segment worker process died; starting new ones")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
