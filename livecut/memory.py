"""Freed heap memory handed back to the kernel, so the daemon's RSS follows its use.

DESIGN: every segment body (a megabyte or more) is allocated and freed through glibc's
heap, and glibc keeps what is freed for later: at 300 streams of 4 Mbit/s the daemon
sat at 550 MB of RSS with 280 MB in use, and never gave the start-up burst back.
malloc_trim(0) every few seconds returns free heap pages (it takes a few ms, in a
thread). Forcing large allocations out to mmap instead (M_MMAP_THRESHOLD) keeps RSS
low too, but costs a page fault per 4 KiB of every body on the event loop: ingest
latency doubled. Elsewhere than glibc there is no malloc_trim, and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_EVERY_S = 1.0


def malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int

    def trim() -> None:
        function(0)

    return trim


async def trim_forever(every_s: float = TRIM_EVERY_S) -> None:
    """Trim the heap every `every_s` seconds, until cancelled (or at once, if no trim)."""
    trim = malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed heap memory stays with the daemon")
        return
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim)
