"""Highlight scoring: signals over time in, ranked windows out, each score explained by part.

Pure: loudness, cuts, motion and caption text are computed elsewhere; times here are
seconds from the start of the analysed range.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from livecut.analysis.loudness import HOP_S, LoudnessCurve

STEP_S = 0.5  # candidate windows start this often
SNAP_S = 2.0  # how far a window's edge may move to land on a cut or a silence
QUIET_LU = 10.0  # this far under the range's median loudness counts as a silence
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "show",
        "me",
        "find",
        "moments",
        "moment",
        "where",
        "when",
        "clip",
        "clips",
        "best",
        "about",
    ]
)


class HighlightScore(NamedTuple):
    """Each part in 0-1; `weights` says how much each counts toward the total."""

    loudness: float  # how far above the range's typical loudness the window is
    rise: float  # the sharpest jump in loudness over the seconds before (a reaction)
    shots: float  # cuts per second: edited action
    motion: float  # how much more the picture moves than is typical for the range
    text: float  # share of the instruction's keywords said in the window's captions


WEIGHTS = HighlightScore(loudness=0.3, rise=0.3, shots=0.15, motion=0.15, text=0.1)
# An instruction is the caller saying what matters: its words then outweigh the rest.
WEIGHTS_WITH_INSTRUCTION = HighlightScore(
    loudness=0.15, rise=0.1, shots=0.05, motion=0.05, text=0.65
)
# Mean absolute luma change between frames (0-255) above the range's median that scores 1.
MOTION_FULL = 12.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptionText:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Highlight:
    start_s: float
    end_s: float
    score: float  # 0-1: the weighted mean of the parts
    parts: HighlightScore
    weights: HighlightScore
    label: str

    def explain(self) -> dict[str, dict[str, float]]:
        return {
            name: {"value": round(value, 3), "weight": weight}
            for name, value, weight in zip(
                self.parts._fields, self.parts, self.weights, strict=True
            )
        }


def keywords(instruction: str | None) -> list[str]:
    words = re.findall(r"[\w']+", (instruction or "").lower())
    return [w for w in words if w not in _STOPWORDS and len(w) > 1]


def find_highlights(
    *,
    duration_s: float,
    loudness: LoudnessCurve,
    cuts_s: Sequence[float],
    captions: Sequence[CaptionText],
    max_clips: int,
    min_duration_s: float,
    max_duration_s: float,
    instruction: str | None = None,
    motion: Sequence[tuple[float, float]] = (),
) -> list[Highlight]:
    """The best non-overlapping windows, best first.

    `motion`: (time s, mean absolute change from the frame before) for each frame.
    """
    words = keywords(instruction)
    motion_times = np.asarray([t for t, _ in motion], dtype=np.float64)
    motion_values = np.asarray([v for _, v in motion], dtype=np.float64)
    typical_motion = float(np.median(motion_values)) if len(motion_values) else 0.0
    weights = WEIGHTS_WITH_INSTRUCTION if words else WEIGHTS
    length = min(max_duration_s, max(min_duration_s, (min_duration_s + max_duration_s) / 2))
    length = min(length, duration_s)
    momentary = np.asarray(loudness.momentary, dtype=np.float64)
    typical = float(np.median(momentary)) if len(momentary) else -70.0
    candidates: list[Highlight] = []
    start = 0.0
    while start + length <= duration_s + 1e-9:
        parts = HighlightScore(
            loudness=_loudness_part(loudness, momentary, typical, start, start + length),
            rise=_rise_part(loudness, momentary, start, start + length),
            shots=_shots_part(cuts_s, start, start + length),
            motion=_motion_part(motion_times, motion_values, typical_motion, start, length),
            text=_text_part(captions, words, start, start + length),
        )
        total = sum(p * w for p, w in zip(parts, weights, strict=True)) / sum(weights)
        candidates.append(
            Highlight(
                start_s=start,
                end_s=start + length,
                score=total,
                parts=parts,
                weights=weights,
                label="",
            )
        )
        start += STEP_S
    chosen: list[Highlight] = []
    for candidate in sorted(candidates, key=lambda h: (-h.score, h.start_s)):
        if len(chosen) == max_clips:
            break
        if any(candidate.start_s < c.end_s and c.start_s < candidate.end_s for c in chosen):
            continue
        chosen.append(candidate)
    snapped: list[Highlight] = []
    for n, h in enumerate(chosen):
        moved = _snap(
            h, cuts_s, loudness, momentary, typical, min_duration_s, max_duration_s, duration_s
        )
        # A window's edges move outward: never onto another chosen window.
        others = [*snapped, *chosen[n + 1 :]]
        if any(moved.start_s < o.end_s and o.start_s < moved.end_s for o in others):
            moved = h
        snapped.append(moved)
    return [_labelled(h, captions) for h in snapped]


def _indices(loudness: LoudnessCurve, start_s: float, end_s: float) -> slice:
    first = max(0, int((start_s - loudness.start_s) / HOP_S))
    last = max(first, int((end_s - loudness.start_s - 0.4) / HOP_S) + 1)
    return slice(first, last)


def _loudness_part(
    loudness: LoudnessCurve, momentary: np.ndarray, typical: float, start: float, end: float
) -> float:
    inside = momentary[_indices(loudness, start, end)]
    if not len(inside):
        return 0.0
    # 20 LU above typical is as loud as a moment gets; the top quarter of the window counts.
    return _unit((float(np.percentile(inside, 75)) - typical) / 20.0)


def _rise_part(loudness: LoudnessCurve, momentary: np.ndarray, start: float, end: float) -> float:
    window = _indices(loudness, start, end)
    best = 0.0
    lookback = int(3.0 / HOP_S)
    for i in range(window.start, min(window.stop, len(momentary))):
        before = momentary[max(0, i - lookback) : max(0, i - 4)]
        if len(before):
            best = max(best, float(momentary[i] - np.mean(before)))
    return _unit(best / 20.0)


def _shots_part(cuts_s: Sequence[float], start: float, end: float) -> float:
    inside = sum(1 for c in cuts_s if start < c < end)
    return _unit(inside / max(1.0, end - start) * 2.5)  # a cut every 0.4 s scores 1


def _motion_part(
    times: np.ndarray, values: np.ndarray, typical: float, start: float, length: float
) -> float:
    if not len(times):
        return 0.0
    first, last = np.searchsorted(times, [start, start + length])
    inside = values[first:last]
    if not len(inside):
        return 0.0
    # A cut is one huge change: the upper quartile, not the peak, is the window's motion.
    return _unit((float(np.percentile(inside, 75)) - typical) / MOTION_FULL)


def _text_part(
    captions: Sequence[CaptionText], words: list[str], start: float, end: float
) -> float:
    if not words:
        return 0.0
    said: set[str] = set()
    for caption in captions:
        if caption.start_s < end and caption.end_s > start:
            said |= set(re.findall(r"[\w']+", caption.text.lower()))
    return sum(1 for w in words if w in said) / len(words)


def _snap(
    h: Highlight,
    cuts_s: Sequence[float],
    loudness: LoudnessCurve,
    momentary: np.ndarray,
    typical: float,
    min_s: float,
    max_s: float,
    duration_s: float,
) -> Highlight:
    """Move each edge onto a nearby cut, else a nearby silence, if the length stays allowed."""
    quiet = [loudness.time_s(i) for i, v in enumerate(momentary) if v <= typical - QUIET_LU]

    def nearest(edge: float, pool: Sequence[float], outward: int) -> float | None:
        near = [p for p in pool if 0 <= (p - edge) * outward <= SNAP_S]
        return min(near, key=lambda p: abs(p - edge)) if near else None

    start = nearest(h.start_s, cuts_s, -1) or nearest(h.start_s, quiet, -1) or h.start_s
    end = nearest(h.end_s, cuts_s, 1) or nearest(h.end_s, quiet, 1) or h.end_s
    start, end = max(0.0, start), min(duration_s, end)
    if not min_s <= end - start <= max_s:
        return h
    return Highlight(
        start_s=start, end_s=end, score=h.score, parts=h.parts, weights=h.weights, label=""
    )


def _labelled(h: Highlight, captions: Sequence[CaptionText]) -> Highlight:
    said = [c.text for c in captions if c.start_s < h.end_s and c.end_s > h.start_s]
    if said:
        label = " ".join(said)[:80]
    else:
        names = {
            "loudness": "loud moment",
            "rise": "crowd reaction",
            "shots": "fast cutting",
            "motion": "action",
            "text": "keyword match",
        }
        weighted = {n: p * w for n, p, w in zip(h.parts._fields, h.parts, h.weights, strict=True)}
        label = names[max(weighted, key=lambda n: weighted[n])]
    return Highlight(
        start_s=h.start_s,
        end_s=h.end_s,
        score=round(h.score, 4),
        parts=h.parts,
        weights=h.weights,
        label=label,
    )


def _unit(x: float) -> float:
    return max(0.0, min(1.0, x))
