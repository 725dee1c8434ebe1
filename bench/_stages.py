"""Where a clip job's time goes: wall-clock timers wrapped around livecut's own functions.

Each timer is charged its own (exclusive) time: a timed function called inside another
timed function is subtracted from the caller. Only module and class attributes are
replaced; the job machinery is unchanged, and the wrappers cost microseconds a call.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import livecut.clips.jobs
import livecut.media.remux

try:  # reencode_edges: absent from older trees, then simply not timed
    from livecut.media.edges import EdgeEncoder
except ImportError:
    EdgeEncoder = None  # type: ignore[misc, assignment]

# (module or class, attribute, stage name), in the order a job meets them. Attributes
# that do not exist (yet) are skipped.
_TIMED: tuple[tuple[Any, str, str], ...] = (
    (livecut.media.remux, "open_run", "open a run (one header probe)"),
    (livecut.media.remux._RunCopy, "copy", "demux+mux packets"),
    (EdgeEncoder, "decode", "re-encode first GOP (reencode_edges)"),
    (EdgeEncoder, "finish", "re-encode first GOP (reencode_edges)"),
    (livecut.clips.jobs, "remux_mp4", "rest of remux: mp4 trailer"),
    (livecut.media.remux, "finish_appended", "append the moov (hashed while written)"),
    (livecut.media.remux, "finish_mp4", "moov to the front + sha256 (faststart)"),
    (livecut.media.remux, "verify_mp4", "structural check"),
    (livecut.clips.jobs, "_sha256", "sha256 (HLS, WebVTT)"),
)
STAGES = tuple(dict.fromkeys(name for _, _, name in _TIMED))
OTHER = "other (HTTP, SQLite, queue, plan)"


class StageTimer:
    """Accumulates exclusive wall time per stage, across the threads a job hops between."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._installed: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for module, attribute, name in _TIMED:
            original = getattr(module, attribute, None)
            if original is None:
                continue
            self._installed.append((module, attribute, original))
            setattr(module, attribute, self._wrap(name, original))

    def uninstall(self) -> None:
        for module, attribute, original in reversed(self._installed):
            setattr(module, attribute, original)
        self._installed.clear()

    def take(self) -> dict[str, float]:
        """Seconds per stage since the last take, and reset."""
        with self._lock:
            totals, self._totals = self._totals, {}
        return totals

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[float] = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                inner = stack.pop()
                if stack:
                    stack[-1] += elapsed
                with self._lock:
                    self._totals[name] = self._totals.get(name, 0.0) + elapsed - inner

        return timed


def breakdown(stages: dict[str, float], total_s: float) -> list[tuple[str, float]]:
    """(stage, seconds) for every stage that took time, plus what the timers did not see."""
    rows = [(name, stages[name]) for name in STAGES if stages.get(name)]
    rows.append((OTHER, max(0.0, total_s - sum(stages.values()))))
    return rows
