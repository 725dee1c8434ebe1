"""Where a vertical crop should look: a window that follows the picture's activity.

Frames are decoded small and grey; the motion between each frame and the one before
is summed per column, and the column with the most (over a width a quarter of the
crop's) is where the action is. A follower then moves the crop window only when the
action leaves a dead zone in its middle, by at most a few percent of the frame a
frame, so it pans smoothly and holds still while the subject does. It jumps at once
in two cases: a cut (the whole picture changes: a new shot may look elsewhere) and
the subject having left the window (following it slowly would lose it).

`Follower` is the sans-IO core: targets in, crop positions out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy

from livecut.media.render import Size

ANALYSIS_WIDTH = 160
CUT_MEAN_DIFF = 28.0  # mean absolute grey difference (0-255) that marks a cut
STILL_ENERGY = 2.0  # per-pixel motion in the busiest band below which nothing moves
DEAD_ZONE = 0.15  # of the crop's width, each side of its centre
MAX_STEP = 0.03  # of the frame's width, per frame


@dataclass(frozen=True, kw_only=True, slots=True)
class Activity:
    """One frame's motion: the busiest column (None if nothing moved) and a cut flag."""

    column: float | None  # in [0, 1) of the frame's width
    cut: bool


class Follower:
    """Crop window centres (fractions of the frame's width) for a run of frames."""

    def __init__(self, crop_fraction: float) -> None:
        self.half = crop_fraction / 2
        self.dead = crop_fraction * DEAD_ZONE
        self.centre: float | None = None

    def step(self, activity: Activity) -> float:
        target = activity.column
        if self.centre is None or activity.cut:
            self.centre = 0.5 if target is None else target
        elif target is not None:
            offset = target - self.centre
            if abs(offset) > self.half:
                self.centre = target  # the subject left the window: follow it at once
            elif abs(offset) > self.dead:
                move = min(abs(offset) - self.dead, MAX_STEP)
                self.centre += move if offset > 0 else -move
        self.centre = min(max(self.centre, self.half), 1 - self.half)
        return self.centre


class Motion:
    """Each grey frame's motion against the one before (the first frame has none)."""

    def __init__(self, band: int) -> None:
        self._kernel = numpy.ones(max(1, band)) / max(1, band)
        self._previous: numpy.ndarray | None = None

    def push(self, frame: numpy.ndarray) -> Activity | None:
        previous, self._previous = self._previous, frame.astype(numpy.int16)
        if previous is None:
            return None
        diff = numpy.abs(self._previous - previous)
        columns = numpy.convolve(diff.mean(axis=0), self._kernel, mode="same")
        busiest = int(columns.argmax())
        column = None if columns[busiest] < STILL_ENERGY else (busiest + 0.5) / frame.shape[1]
        return Activity(column=column, cut=float(diff.mean()) > CUT_MEAN_DIFF)


def activities(frames: Sequence[numpy.ndarray], band: int) -> list[Activity]:
    """The motion of each frame; the first takes the second's (it has no frame before)."""
    motion = Motion(band)
    found = [a for a in map(motion.push, frames) if a is not None]
    if not found:
        return [Activity(column=None, cut=False)] * len(frames)
    return [Activity(column=found[0].column, cut=False), *found]


def follow(found: Sequence[Activity], crop_fraction: float) -> list[float]:
    follower = Follower(crop_fraction)
    return [follower.step(a) for a in found]


def focus_path(source_mp4: Path, *, source: Size, crop: Size) -> Callable[[float], float]:
    """The crop's left edge (source pixels) at each presented time of the MP4; blocking."""
    times: list[float] = []
    found: list[Activity] = []
    height = max(2, round(ANALYSIS_WIDTH * source.height / source.width))
    fraction = crop.width / source.width
    motion = Motion(max(1, round(ANALYSIS_WIDTH * fraction / 4)))
    with av.open(str(source_mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts < 0 or frame.time is None:
                continue
            small = frame.reformat(width=ANALYSIS_WIDTH, height=height, format="gray")
            activity = motion.push(small.to_ndarray())
            found.append(activity or Activity(column=None, cut=False))
            times.append(float(frame.time))
    if len(found) > 1:
        found[0] = Activity(column=found[1].column, cut=False)
    centres = follow(found, fraction)
    lefts = [(c - fraction / 2) * source.width for c in centres]

    def left_at(t: float) -> float:
        if not times:
            return (source.width - crop.width) / 2
        index = max(0, bisect.bisect_right(times, t + 1e-6) - 1)
        return lefts[index]

    return left_at
