"""Shots of a recorded range: detection over its decoded frames, a preview for each shot
(Mux's rule), and the motion between frames that highlight scoring uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from livecut.analysis.previews import animated_webp, preview_times
from livecut.analysis.shots import Cut, ShotDetector, luma_grid

Picture = npt.NDArray[np.uint8]
# A shot keeps at most this many sampled pictures for its preview; past it, every other
# one goes and the sampling step doubles, so memory stays flat however long the shot.
_MAX_SAMPLES = 200
_FIRST_STEP_S = 0.25


@dataclass(frozen=True, kw_only=True, slots=True)
class FoundShot:
    start_s: float  # seconds from the range's start
    end_s: float
    cut: Cut | None  # the transition that began it (None: the range's first shot)
    preview: bytes  # animated WebP


@dataclass(kw_only=True, slots=True)
class _Samples:
    step_s: float = _FIRST_STEP_S
    kept: list[tuple[float, Picture]] = field(default_factory=list)

    def add(self, time_s: float, picture: Picture) -> None:
        if self.kept and time_s < self.kept[-1][0] + self.step_s:
            return
        self.kept.append((time_s, picture))
        if len(self.kept) > _MAX_SAMPLES:
            self.kept = self.kept[::2]
            self.step_s *= 2

    def split(self, at_s: float) -> list[tuple[float, Picture]]:
        """Hand out the pictures before at_s; keep the rest (the detector reports late)."""
        before = [k for k in self.kept if k[0] < at_s]
        self.kept = [k for k in self.kept if k[0] >= at_s]
        self.step_s = _FIRST_STEP_S
        return before


@dataclass(frozen=True, kw_only=True, slots=True)
class RangeAnalysis:
    shots: list[FoundShot]
    motion: list[tuple[float, float]]  # (seconds, mean absolute luma change from the frame before)


def analyse_frames(
    frames: Iterable[tuple[float, Picture]],
    fps: float,
    *,
    duration_s: float,
    previews: bool = True,
    on_progress: Callable[[float], None] = lambda _: None,
) -> RangeAnalysis:
    """Frames as (seconds from the range's start, BGR picture) in; shots and motion out."""
    detector = ShotDetector(fps)
    samples = _Samples()
    shots: list[FoundShot] = []
    motion: list[tuple[float, float]] = []
    shot_start = 0.0
    shot_cut: Cut | None = None
    previous: npt.NDArray[np.float32] | None = None
    last_s = 0.0
    reported = 0.0
    latest: list[tuple[float, Picture]] = []  # a shot shorter than the sampling step shows this

    def close(cut: Cut) -> None:
        nonlocal shot_start, shot_cut
        if cut.time_s <= shot_start:
            return
        kept = samples.split(cut.time_s) or latest
        shots.append(_shot(shot_start, cut.time_s, shot_cut, kept, previews))
        shot_start, shot_cut = cut.time_s, cut

    for time_s, picture in frames:
        last_s = time_s
        small = luma_grid(picture)
        if previous is not None:
            motion.append((time_s, float(np.mean(np.abs(small - previous)))))
        previous = small
        if previews:
            samples.add(time_s, picture)
            latest = [(time_s, picture)]
        for cut in detector.process_frame(time_s, picture):
            close(cut)
        if duration_s > 0 and time_s - reported >= 1.0:
            reported = time_s
            on_progress(min(0.99, time_s / duration_s))
    for cut in detector.flush():
        close(cut)
    end_s = max(last_s + 1 / fps, shot_start + 1 / fps)
    shots.append(_shot(shot_start, end_s, shot_cut, samples.split(end_s + 1) or latest, previews))
    return RangeAnalysis(shots=shots, motion=motion)


def _shot(
    start_s: float,
    end_s: float,
    cut: Cut | None,
    kept: list[tuple[float, Picture]],
    previews: bool,
) -> FoundShot:
    preview = b""
    if previews and kept:
        times = [t for t, _ in kept]
        pictures = []
        for wanted in preview_times(start_s, end_s):
            nearest = int(np.argmin([abs(t - wanted) for t in times]))
            pictures.append(np.ascontiguousarray(kept[nearest][1][..., ::-1]))  # BGR -> RGB
        preview = animated_webp(pictures)
    return FoundShot(start_s=start_s, end_s=end_s, cut=cut, preview=preview)
