"""Shot boundaries from decoded frames: frames in, cuts out, each cut with its score's parts.

Hard cuts come from PySceneDetect's AdaptiveDetector: it compares each frame's content
change with the change around it, so a fast pan (large change on every frame) is not a
cut while a single jump is. Gradual transitions (dissolves, fades) change little from one
frame to the next, so no frame-to-frame detector sees them; `_GradualDetector` looks at a
window instead: across a dissolve the middle frame is the mean of the window's ends.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scenedetect import FrameTimecode, StatsManager
from scenedetect.detectors import AdaptiveDetector

Frame = npt.NDArray[np.uint8]  # height x width x 3, BGR (OpenCV's order, as PySceneDetect wants)
CutKind = Literal["cut", "dissolve"]

# Hard cuts: a frame's content change at least this many times its neighbours' average.
ADAPTIVE_THRESHOLD = 3.0
MIN_CONTENT = 15.0
# Gradual transitions: the window's ends differ by this much (mean luma, 0-255) ...
GRADUAL_MIN_CHANGE = 8.0
# ... its middle is this close to their mean (1.0: exactly a linear mix of the two) ...
GRADUAL_MIN_LINEARITY = 0.8
# ... and no single step inside it carries more than this share of the change.
GRADUAL_MAX_STEP = 0.35
GRADUAL_WINDOW_S = 1.0
LUMA_GRID = (64, 36)  # luma thumbnails the gradual detector (and the motion signal) compare


class HardCutScore(NamedTuple):
    """Why a hard cut was found: PySceneDetect's per-frame content metrics."""

    content: float  # weighted HSV change from the previous frame (0-255)
    delta_hue: float
    delta_sat: float
    delta_lum: float
    adaptive_ratio: float  # content / the average of the frames around it


class GradualScore(NamedTuple):
    """Why a dissolve or fade was found: how far the picture travelled, how linearly."""

    change: float  # mean luma difference across the window (0-255)
    linearity: float  # 1 - |middle - mean(ends)| / (change / 2)
    largest_step: float  # the largest frame-to-frame share of the change


@dataclass(frozen=True, kw_only=True, slots=True)
class Cut:
    time_s: float  # media time of the first frame of the new shot (a dissolve's middle)
    kind: CutKind
    span_s: tuple[float, float]  # the transition: one frame for a cut, the blend for a dissolve
    score: HardCutScore | GradualScore

    def explain(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in self.score._asdict().items()}


class ShotDetector:
    """Push every decoded frame in presentation order; collect the cuts it returns, then
    those of `flush()` at the end. The detector never opens a file or a decoder."""

    def __init__(self, fps: float, *, min_shot_s: float = 0.6) -> None:
        self.fps = fps
        self._rate = Fraction(fps).limit_denominator(1001)
        self._stats = StatsManager()
        self._hard = AdaptiveDetector(
            adaptive_threshold=ADAPTIVE_THRESHOLD,
            min_content_val=MIN_CONTENT,
            min_scene_len=max(1, round(min_shot_s * fps)),
        )
        self._hard.stats_manager = self._stats
        self._gradual = _GradualDetector(max(4, round(GRADUAL_WINDOW_S * fps)))
        self._frames = 0
        self._times: deque[float] = deque(maxlen=8)  # recent frames' media times, by number
        self._last_cut_s: float | None = None

    def process_frame(self, time_s: float, frame: Frame) -> list[Cut]:
        number = self._frames
        self._frames += 1
        self._times.append(time_s)
        timecode = FrameTimecode(number, self._rate)
        cuts = [self._hard_cut(t) for t in self._hard.process_frame(timecode, frame)]
        gradual = self._gradual.push(time_s, luma_grid(frame))
        if gradual is not None and not self._near_hard_cut(gradual, cuts):
            cuts.append(gradual)
        cuts.sort(key=lambda c: c.time_s)
        if cuts:
            self._last_cut_s = cuts[-1].time_s
        return cuts

    def flush(self) -> list[Cut]:
        gradual = self._gradual.flush()
        return [] if gradual is None else [gradual]

    def _hard_cut(self, timecode: FrameTimecode) -> Cut:
        number = timecode.frame_num
        back = self._frames - 1 - number
        time_s = self._times[-1 - back] if back < len(self._times) else number / self.fps
        keys = ["content_val", "delta_hue", "delta_sat", "delta_lum", "adaptive_ratio (w=2)"]
        values = self._stats.get_metrics(timecode, keys)
        score = HardCutScore(*(float(v or 0.0) for v in values))
        return Cut(time_s=time_s, kind="cut", span_s=(time_s, time_s), score=score)

    def _near_hard_cut(self, gradual: Cut, new: list[Cut]) -> bool:
        """A hard cut inside a window can look gradual at its edges: the cut wins."""
        start, end = gradual.span_s
        recent = [c.time_s for c in new]
        if self._last_cut_s is not None:
            recent.append(self._last_cut_s)
        return any(start - 1 / self.fps <= t <= end + 1 / self.fps for t in recent)


class _GradualDetector:
    """Flags windows whose middle frame is the mean of their ends; joins flagged windows
    into one transition, reported once it is over."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._frames: deque[tuple[float, npt.NDArray[np.float32]]] = deque(maxlen=window + 1)
        self._steps: deque[float] = deque(maxlen=window)
        self._open: tuple[float, float, GradualScore] | None = None  # start, end, best score

    def push(self, time_s: float, luma: npt.NDArray[np.float32]) -> Cut | None:
        if self._frames:
            self._steps.append(float(np.mean(np.abs(luma - self._frames[-1][1]))))
        self._frames.append((time_s, luma))
        if len(self._frames) <= self.window:
            return None
        score = self._score()
        if score is not None:
            start, end = self._frames[0][0], self._frames[-1][0]
            if self._open is None:
                self._open = (start, end, score)
            else:
                best = max(self._open[2], score, key=lambda s: s.change)
                self._open = (self._open[0], end, best)
            return None
        return self.flush()

    def flush(self) -> Cut | None:
        if self._open is None:
            return None
        start, end, score = self._open
        self._open = None
        middle = (start + end) / 2
        return Cut(time_s=middle, kind="dissolve", span_s=(start, end), score=score)

    def _score(self) -> GradualScore | None:
        pictures = [luma for _, luma in self._frames]
        first, last = pictures[0], pictures[-1]
        delta = last - first
        change = float(np.mean(np.abs(delta)))
        if change < GRADUAL_MIN_CHANGE:
            return None
        # Each frame between is fitted as first + a * delta; a dissolve fits every one of
        # them with a rising `a`, a pan (the picture moves, it does not mix) fits none.
        norm = float(np.sum(delta * delta))
        mixes, off_line = [], 0.0
        for picture in pictures[1:-1]:
            mix = float(np.sum((picture - first) * delta)) / norm
            mixes.append(mix)
            off_line += float(np.mean(np.abs(picture - first - mix * delta)))
        off_line /= len(pictures) - 2
        linearity = 1.0 - off_line / (change / 2)
        largest = max(self._steps) / change
        rising = all(b >= a - 0.05 for a, b in itertools.pairwise(mixes))
        if linearity < GRADUAL_MIN_LINEARITY or largest > GRADUAL_MAX_STEP or not rising:
            return None
        return GradualScore(change=change, linearity=linearity, largest_step=largest)


def luma_grid(frame: Frame) -> npt.NDArray[np.float32]:
    """A coarse luma picture: block means over a fixed grid, whatever the frame's size."""
    height, width = frame.shape[:2]
    cols, rows = LUMA_GRID
    cropped = frame[: height - height % rows, : width - width % cols].astype(np.float32)
    luma = cropped[..., 0] * 0.114 + cropped[..., 1] * 0.587 + cropped[..., 2] * 0.299
    blocks = luma.reshape(rows, luma.shape[0] // rows, cols, luma.shape[1] // cols)
    small: npt.NDArray[np.float32] = blocks.mean(axis=(1, 3), dtype=np.float32)
    return small
