"""EBU R128 momentary and short-term loudness over time, from decoded audio samples.

pyloudnorm implements the BS.1770 K-weighting and block measure; its gating blocks with
a 100 ms hop are exactly R128's momentary (400 ms) and short-term (3 s) loudness.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyloudnorm

HOP_S = 0.1
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: quieter than this counts as silence


@dataclass(frozen=True, kw_only=True, slots=True)
class LoudnessCurve:
    """Loudness every HOP_S seconds; entry i covers the block *ending* at start_s + (i+1) hop
    for momentary values, as a meter shows them."""

    start_s: float
    momentary: tuple[float, ...]  # LUFS, 400 ms blocks
    short_term: tuple[float, ...]  # LUFS, 3 s blocks (padded at the start with momentary)

    def time_s(self, index: int) -> float:
        """The middle of momentary block `index`."""
        return self.start_s + index * HOP_S + 0.2


def loudness_curve(
    samples: npt.NDArray[np.float32], rate: int, *, start_s: float = 0.0
) -> LoudnessCurve:
    """`samples` is (frames, channels) or mono (frames,), floats in -1..1."""
    momentary = _blocks(samples, rate, 0.4)
    short = _blocks(samples, rate, 3.0)
    # Short-term blocks start 2.6 s later in the signal; align them on their end times.
    lead = len(momentary) - len(short)
    short_term = momentary[:lead] + short if lead > 0 else short[: len(momentary)]
    return LoudnessCurve(start_s=start_s, momentary=tuple(momentary), short_term=tuple(short_term))


def _blocks(samples: npt.NDArray[np.float32], rate: int, block_s: float) -> list[float]:
    if len(samples) < block_s * rate:
        return []
    meter = pyloudnorm.Meter(rate, block_size=block_s, overlap=1.0 - HOP_S / block_s)
    with warnings.catch_warnings():
        # Silent blocks are log(0): pyloudnorm reports them as -inf, which we floor.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        meter.integrated_loudness(np.asarray(samples, dtype=np.float64))
    return [
        max(SILENCE_LUFS, float(v)) if np.isfinite(v) else SILENCE_LUFS
        for v in meter.blockwise_loudness
    ]


@dataclass(frozen=True, kw_only=True, slots=True)
class LoudnessBucket:
    start_ms: int
    momentary_lufs: float | None  # the loudest 400 ms block ending in the bucket
    short_term_lufs: float | None  # the loudest 3 s block ending in the bucket


def envelope(
    curve: LoudnessCurve, *, zero_ms: float, from_ms: int, to_ms: int, resolution_ms: int
) -> list[LoudnessBucket]:
    """The curve in buckets of resolution_ms over [from_ms, to_ms); `zero_ms` is the wall
    time of the curve's second 0. A bucket no block ends in has no value."""
    count = -(-(to_ms - from_ms) // resolution_ms)
    momentary: list[float | None] = [None] * count
    short: list[float | None] = [None] * count
    for i, (m, s) in enumerate(zip(curve.momentary, curve.short_term, strict=False)):
        end_ms = zero_ms + (curve.start_s + (i + 1) * HOP_S + 0.3) * 1000  # the block's end
        n = int((end_ms - from_ms) // resolution_ms)
        if 0 <= n < count:
            momentary[n] = _louder(momentary[n], m)
            short[n] = _louder(short[n], s)
    return [
        LoudnessBucket(
            start_ms=from_ms + n * resolution_ms,
            momentary_lufs=_rounded(momentary[n]),
            short_term_lufs=_rounded(short[n]),
        )
        for n in range(count)
    ]


def _louder(current: float | None, value: float) -> float:
    return value if current is None else max(current, value)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
