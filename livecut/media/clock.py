"""Pure media-time arithmetic shared by ingest and the planner: TS wrap-around, continuity.

DESIGN (PDT versus media time): within a continuous run of segments (one rendition, one
discontinuity epoch, consecutive sequence numbers, media time following on) the media
timestamps are the truth about *duration and order*: they come from the encoder's own
sample clock, and a clip copies every packet of the run exactly once by them. PDT is
the truth about *where on the wall clock* a run sits: a clip's requested instants are
turned into media time through the PDT of the segment that holds them, so an origin
whose PDT drifts from its media clock is followed locally and the error never adds up
across a long recording. Where two successive PDTs disagree with the media time between
them by more than jitter, the media still plays continuously (nothing is skipped or
doubled to hide it); the tracker records the jump, and a clip across it reports the
wall times of its own first and last frames.
"""

from __future__ import annotations

from typing import Final

# MPEG-TS timestamps are 33-bit counts of a 90 kHz clock: they wrap every 26.5 hours.
TS_WRAP_S: Final = (1 << 33) / 90_000
# Two segments continue one another when the second starts within this of where the
# first ends in media time: a frame or two of rounding, never a restarted encoder.
CONTINUITY_S: Final = 0.25


def unwrap_s(t: float, reference: float, *, wraps: bool) -> float:
    """t moved by whole TS periods to lie within half a period of `reference`."""
    if not wraps:
        return t
    while t < reference - TS_WRAP_S / 2:
        t += TS_WRAP_S
    while t > reference + TS_WRAP_S / 2:
        t -= TS_WRAP_S
    return t


def continues(prev_ref_s: float, prev_duration_s: float, ref_s: float, *, wraps: bool) -> bool:
    """Whether media time at ref_s follows on from a segment at prev_ref_s."""
    expected = prev_ref_s + prev_duration_s
    return abs(unwrap_s(ref_s, expected, wraps=wraps) - expected) <= CONTINUITY_S
