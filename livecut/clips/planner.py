"""Pure clip planning: index rows and a wall-clock range in, continuous runs and cut points out.

A clip is cut from *runs*: stretches of one rendition whose media time is continuous
(same discontinuity epoch, consecutive sequence numbers, the same init section and codec
parameters, each segment starting in media time where the previous one ended). Inside a
run every packet is selected by its own timestamp, exactly once; wall-clock spans of
neighbouring segments are never compared (real encoders lead segments with audio and
stamp PDTs to the millisecond, so spans overlap and jitter). Wall time is turned into a
run's media time through the PDT of the segment that holds it (media/clock.py says why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from livecut.media.clock import continues, unwrap_s
from livecut.store.records import MEDIA_JOIN_MS, SegmentRow

# Two runs closer than this are a join, not a hole (records.MEDIA_JOIN_MS says why).
JOIN_TOLERANCE_MS = MEDIA_JOIN_MS

Change = Literal["start", "hole", "discontinuity", "parameters"]


class NothingRecorded(LookupError):
    """No recorded media overlaps the requested range."""


class NoKeyframe(NothingRecorded):
    """Media overlaps the range, but decoding could not start before its end."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedRun:
    """Consecutive segments with continuous media time, and what of them to copy."""

    segments: tuple[SegmentRow, ...]
    refs_s: tuple[float, ...]  # each segment's ref_pts_s, unwrapped onto the first one's
    wraps: bool  # MPEG-TS: 33-bit timestamps that wrap (media/clock.py)
    from_s: float  # media time to start copying at (a keyframe, or the run's start)
    to_s: float | None  # media time to stop presenting at; None: the run's end
    change: Change  # why it does not continue the run before it
    # The run's next segment, read only as far as the copy needs: encoders lead segments
    # with audio (the audio for a segment's last moments is stored in the next one).
    spill: SegmentRow | None = None

    @property
    def start_ms(self) -> int:
        return self.segments[0].start_ms

    @property
    def end_ms(self) -> int:
        return self.segments[-1].end_ms

    def media_s(self, wall_ms: float) -> float:
        """Media time of a wall instant, by the PDT of the segment holding it."""
        i = _last_at_or_before([s.start_ms for s in self.segments], wall_ms)
        return self.refs_s[i] + (wall_ms - self.segments[i].start_ms) / 1000

    def wall_ms(self, media_s: float) -> float:
        """Wall time of a media instant (already unwrapped), by its segment's PDT."""
        i = _last_at_or_before(self.refs_s, media_s + 0.0005)
        return self.segments[i].start_ms + (media_s - self.refs_s[i]) * 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipPlan:
    start_ms: int  # wall time of the start point (a keyframe at or before the request)
    end_ms: int  # wall time where the clip stops: the request's end or the recording's
    runs: tuple[PlannedRun, ...]
    holes: tuple[tuple[int, int], ...]  # unrecorded stretches inside [start_ms, end_ms)
    starts_late: bool  # the recording begins after the requested start
    ends_early: bool  # the recording ends before the requested end

    @property
    def segments(self) -> list[SegmentRow]:
        return [s for run in self.runs for s in run.segments]


def plan_clip(segments: Sequence[SegmentRow], start_ms: int, end_ms: int) -> ClipPlan:
    """Keyframe-accurate plan over the segments of one rendition (per session).

    `segments` may include segments before start_ms (a look-back, so a keyframe at or
    before the start can be found even when the first overlapping segment lacks one).
    """
    if end_ms <= start_ms:
        raise ValueError("end_ms must be after start_ms")
    if not any(s.start_ms < end_ms and s.end_ms > start_ms for s in segments):
        raise NothingRecorded(f"nothing recorded between {start_ms} and {end_ms}")
    runs = _without_overlaps(group_runs(segments))
    if not any(begin < end_ms and r[-1].end_ms > start_ms for r, begin in runs):
        raise NoKeyframe(f"no keyframe to start decoding from between {start_ms} and {end_ms}")
    first, clip_start = _start_point(runs, start_ms)
    if clip_start >= end_ms:
        raise NoKeyframe(
            f"media is recorded between {start_ms} and {end_ms}, but the first keyframe "
            f"to start decoding from is at {clip_start}"
        )
    chosen = [(r, begin) for n, (r, begin) in enumerate(runs[first:]) if n == 0 or begin < end_ms]
    clip_end = min(end_ms, max(r[-1].end_ms for r, _ in chosen))

    planned: list[PlannedRun] = []
    holes: list[tuple[int, int]] = []
    for n, (run, run_begin) in enumerate(chosen):
        begin = clip_start if n == 0 else run_begin
        kept, spill = _needed(run, begin, clip_end)
        change: Change = "start"
        if planned:
            previous = planned[-1]
            if previous.end_ms < begin - JOIN_TOLERANCE_MS:
                holes.append((previous.end_ms, begin))
            change = _change(previous.segments, run[0], _params(run))
        whole = PlannedRun(
            segments=kept,
            refs_s=_unwrapped_refs(kept),
            wraps=_wraps(kept[0]),
            from_s=0.0,
            to_s=None,
            change=change,
            spill=spill,
        )
        last = n == len(chosen) - 1
        planned.append(
            replace(
                whole,
                from_s=whole.media_s(begin),
                to_s=whole.media_s(clip_end) if last else None,
            )
        )
    return ClipPlan(
        start_ms=clip_start,
        end_ms=clip_end,
        runs=tuple(planned),
        holes=tuple(holes),
        starts_late=clip_start > start_ms,
        ends_early=clip_end < end_ms,
    )


def _needed(
    run: Sequence[SegmentRow], begin_ms: int, end_ms: int
) -> tuple[tuple[SegmentRow, ...], SegmentRow | None]:
    """The segments of a run that hold media presented in [begin_ms, end_ms), and the
    one after them, if the run has one (see PlannedRun.spill)."""
    kept: list[SegmentRow] = []
    for i, segment in enumerate(run):
        if segment.end_ms <= begin_ms and i + 1 < len(run) and run[i + 1].start_ms <= begin_ms:
            continue
        if kept and segment.start_ms >= end_ms and kept[-1].end_ms >= end_ms:
            return tuple(kept), segment
        kept.append(segment)
    return tuple(kept), None


def group_runs(segments: Sequence[SegmentRow]) -> list[list[SegmentRow]]:
    """Segments grouped into continuous runs, ordered by their first segment's start."""
    runs: list[list[SegmentRow]] = []
    for segment in sorted(segments, key=lambda s: (s.start_ms, s.id)):
        home = next((r for r in reversed(runs) if _continues(r, segment)), None)
        if home is None:
            runs.append([segment])
        else:
            home.append(segment)
    return sorted(runs, key=lambda r: (r[0].start_ms, r[0].id))


def _continues(run: Sequence[SegmentRow], segment: SegmentRow) -> bool:
    prev = run[-1]
    if _change(run, segment, segment.params) != "start":
        return False
    duration_s = (prev.end_ms - prev.start_ms) / 1000
    return continues(prev.ref_pts_s, duration_s, segment.ref_pts_s, wraps=_wraps(segment))


def _change(before: Sequence[SegmentRow], segment: SegmentRow, params: str) -> Change:
    """Why `segment` (whose run's codec parameters are `params`) cannot follow the
    segments `before` in one run: "start" when it can, media time permitting."""
    prev = before[-1]
    known = _params(reversed(before))
    if known and params and known != params:
        return "parameters"
    if (
        prev.rendition_id != segment.rendition_id
        or prev.epoch != segment.epoch
        or prev.init_path != segment.init_path
    ):
        return "discontinuity"
    if segment.seq != prev.seq + 1:
        return "hole"
    return "start"


def _params(segments: Iterable[SegmentRow]) -> str:
    """The first known codec parameters ("" where a segment's could not be read)."""
    return next((s.params for s in segments if s.params), "")


def _wraps(segment: SegmentRow) -> bool:
    return segment.init_path is None  # MPEG-TS; fMP4 decode times are 64-bit


def _unwrapped_refs(run: Sequence[SegmentRow]) -> tuple[float, ...]:
    refs = [run[0].ref_pts_s]
    for segment in run[1:]:
        refs.append(unwrap_s(segment.ref_pts_s, refs[-1], wraps=_wraps(segment)))
    return tuple(refs)


def _sync_points(run: Sequence[SegmentRow]) -> list[int]:
    """Where decoding may begin: video keyframes, or any segment start for audio only."""
    return [p for s in run for p in (s.keyframes_ms if s.has_video else (s.start_ms,))]


def _start_point(runs: Sequence[tuple[list[SegmentRow], int]], start_ms: int) -> tuple[int, int]:
    """(index of the run to start in, wall time of the sync point to start at).

    The sync point is the last one at or before start_ms in the run holding start_ms;
    a keyframe of an earlier run cannot start a later one's decoding.
    """
    holding = [i for i, (r, b) in enumerate(runs) if b <= start_ms < r[-1].end_ms]
    for i in reversed(holding):
        run, begin = runs[i]
        earlier = [p for p in _sync_points(run) if begin <= p <= start_ms]
        if earlier:
            return i, max(earlier)
    # Nothing decodable at or before the start: begin at the first sync point after it.
    for i, (run, begin) in enumerate(runs):
        if run[-1].end_ms <= start_ms:
            continue
        later = [p for p in _sync_points(run) if p >= max(start_ms, begin)]
        if later:
            return i, min(later)
    raise NoKeyframe("no keyframe in the recorded range")


def _without_overlaps(
    runs: list[list[SegmentRow]],
) -> list[tuple[list[SegmentRow], int]]:
    """Each run with the wall time it may be copied from: runs wholly inside what earlier
    runs cover (a re-recorded window) are dropped, and one that overlaps the runs before
    it begins at its first sync point past them."""
    kept: list[tuple[list[SegmentRow], int]] = []
    covered_to: int | None = None
    for run in runs:
        begin = run[0].start_ms
        if covered_to is not None:
            if run[-1].end_ms <= covered_to + JOIN_TOLERANCE_MS:
                continue
            if begin < covered_to - JOIN_TOLERANCE_MS:
                past = [p for p in _sync_points(run) if p >= covered_to]
                if not past:
                    continue
                begin = past[0]
        kept.append((run, begin))
        covered_to = run[-1].end_ms if covered_to is None else max(covered_to, run[-1].end_ms)
    return kept


def _last_at_or_before(values: Sequence[float], x: float) -> int:
    index = 0
    for i, value in enumerate(values):
        if value <= x:
            index = i
        else:
            break
    return index


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
