"""Pure clip planning: index rows and a wall-clock range in, segments and cut points out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livecut.store.records import SegmentRow

# Two segments closer than this are a join, not a hole: origins round PDT to the
# millisecond and place it by their own clock, so successive PDTs jitter slightly.
JOIN_TOLERANCE_MS = 100


class NothingRecorded(LookupError):
    """No recorded media overlaps the requested range."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedPart:
    segment: SegmentRow
    from_ms: int  # copy media presented at or after this wall time
    to_ms: int  # ...and before this one


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipPlan:
    start_ms: int  # wall time of the first presented frame (a keyframe at or before the request)
    end_ms: int  # wall time where the clip stops: the request's end or the recording's
    parts: tuple[PlannedPart, ...]
    holes: tuple[tuple[int, int], ...]  # unrecorded stretches inside [start_ms, end_ms)
    starts_late: bool  # the recording begins after the requested start
    ends_early: bool  # the recording ends before the requested end


def plan_clip(segments: Sequence[SegmentRow], start_ms: int, end_ms: int) -> ClipPlan:
    """Keyframe-accurate plan over segments ordered by start_ms.

    `segments` may include segments before start_ms (a look-back, so a keyframe at or
    before the start can be found even when the first overlapping segment lacks one).
    """
    if end_ms <= start_ms:
        raise ValueError("end_ms must be after start_ms")
    usable = _without_overlaps(segments)
    overlapping = [s for s in usable if s.start_ms < end_ms and s.end_ms > start_ms]
    if not overlapping:
        raise NothingRecorded(f"nothing recorded between {start_ms} and {end_ms}")

    clip_start, first_index = _start_point(usable, start_ms)
    chosen = [s for s in usable[first_index:] if s.start_ms < end_ms and s.end_ms > clip_start]
    clip_end = min(end_ms, max(s.end_ms for s in chosen))

    parts: list[PlannedPart] = []
    holes: list[tuple[int, int]] = []
    covered_to = clip_start
    for segment in chosen:
        if segment.start_ms - covered_to > JOIN_TOLERANCE_MS:
            holes.append((covered_to, segment.start_ms))
        # A slight overlap is PDT jitter: keep every frame. A larger one is media we
        # already have from the previous segment: skip it.
        overlap = covered_to - segment.start_ms
        from_ms = max(clip_start, covered_to if overlap > JOIN_TOLERANCE_MS else segment.start_ms)
        to_ms = min(clip_end, segment.end_ms)
        if to_ms > from_ms:
            parts.append(PlannedPart(segment=segment, from_ms=from_ms, to_ms=to_ms))
        covered_to = max(covered_to, segment.end_ms)
    return ClipPlan(
        start_ms=clip_start,
        end_ms=clip_end,
        parts=tuple(parts),
        holes=tuple(holes),
        starts_late=clip_start > start_ms,
        ends_early=clip_end < end_ms,
    )


def _start_point(segments: Sequence[SegmentRow], start_ms: int) -> tuple[int, int]:
    """The wall time to start copying from, and the index of the segment holding it."""
    best: tuple[int, int] | None = None
    for i, segment in enumerate(segments):
        if segment.start_ms > start_ms:
            break
        points = segment.keyframes_ms if segment.has_video else (segment.start_ms,)
        for point in points:
            if point <= start_ms and segment.end_ms > point and (best is None or point >= best[0]):
                best = (point, i)
    if best is not None:
        return best
    # Nothing decodable at or before the start: begin at the first sync point after it.
    for i, segment in enumerate(segments):
        points = segment.keyframes_ms if segment.has_video else (segment.start_ms,)
        later = [p for p in points if p >= start_ms]
        if later:
            return min(later), i
    raise NothingRecorded("no keyframe in the recorded range")


def _without_overlaps(segments: Sequence[SegmentRow]) -> list[SegmentRow]:
    """Drop segments wholly inside what earlier ones cover (e.g. a re-recorded window)."""
    kept: list[SegmentRow] = []
    covered_to: int | None = None
    for segment in sorted(segments, key=lambda s: (s.start_ms, s.id)):
        if covered_to is not None and segment.end_ms <= covered_to + JOIN_TOLERANCE_MS:
            continue
        kept.append(segment)
        covered_to = segment.end_ms if covered_to is None else max(covered_to, segment.end_ms)
    return kept


def nearest_spans(
    spans: Sequence[tuple[int, int]], start_ms: int, end_ms: int, *, limit: int = 3
) -> list[tuple[int, int]]:
    """The recorded spans closest to a range, nearest first, to help a caller re-aim."""

    def distance(span: tuple[int, int]) -> int:
        if span[1] <= start_ms:
            return start_ms - span[1]
        if span[0] >= end_ms:
            return span[0] - end_ms
        return 0

    return sorted(spans, key=distance)[:limit]
