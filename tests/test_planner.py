"""Clip planning with literal numbers and with random recordings (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecut.clips.planner import JOIN_TOLERANCE_MS, NothingRecorded, nearest_spans, plan_clip
from livecut.store.records import SegmentRow

T0 = 1_767_225_600_000


def seg(
    n: int, start: int, *, length: int = 2000, gop: int = 1000, video: bool = True
) -> SegmentRow:
    return SegmentRow(
        id=n,
        rendition_id=1,
        seq=n,
        epoch=0,
        start_ms=start,
        end_ms=start + length,
        path=f"{n}.ts",
        size=1,
        init_path=None,
        ref_pts_s=10.0,
        keyframes_ms=tuple(range(start, start + length, gop)) if video else (),
        has_video=video,
        has_audio=True,
    )


def run(count: int, *, length: int = 2000) -> list[SegmentRow]:
    return [seg(i, T0 + i * length, length=length) for i in range(count)]


def test_starts_at_the_keyframe_at_or_before_start() -> None:
    plan = plan_clip(run(5), T0 + 2500, T0 + 6200)
    assert plan.start_ms == T0 + 2000
    assert plan.end_ms == T0 + 6200
    assert [p.segment.seq for p in plan.parts] == [1, 2, 3]
    assert plan.parts[0].from_ms == T0 + 2000
    assert plan.parts[-1].to_ms == T0 + 6200
    assert not plan.holes and not plan.starts_late and not plan.ends_early


def test_start_exactly_on_a_keyframe_and_a_mid_segment_keyframe() -> None:
    assert plan_clip(run(5), T0 + 3000, T0 + 4000).start_ms == T0 + 3000
    assert plan_clip(run(5), T0 + 3999, T0 + 4500).start_ms == T0 + 3000


def test_keyframe_found_in_an_earlier_segment() -> None:
    # The second segment has no keyframe of its own: decoding starts in the first.
    segments = [seg(0, T0), seg(1, T0 + 2000, gop=10_000)]
    segments[1] = SegmentRow(**{**_fields(segments[1]), "keyframes_ms": ()})
    plan = plan_clip(segments, T0 + 2500, T0 + 3500)
    assert plan.start_ms == T0 + 1000
    assert [p.segment.seq for p in plan.parts] == [0, 1]


def test_range_before_the_recording_starts_late() -> None:
    plan = plan_clip(run(3), T0 - 5000, T0 + 1500)
    assert plan.start_ms == T0 and plan.starts_late


def test_range_past_the_recording_ends_early() -> None:
    plan = plan_clip(run(3), T0 + 4000, T0 + 9000)
    assert plan.end_ms == T0 + 6000 and plan.ends_early


def test_holes_are_listed_and_cut_across() -> None:
    segments = [seg(0, T0), seg(1, T0 + 2000), seg(4, T0 + 8000), seg(5, T0 + 10_000)]
    plan = plan_clip(segments, T0 + 1000, T0 + 11_000)
    assert plan.holes == ((T0 + 4000, T0 + 8000),)
    assert [p.segment.seq for p in plan.parts] == [0, 1, 4, 5]


def test_jitter_within_tolerance_is_not_a_hole() -> None:
    segments = [seg(0, T0), seg(1, T0 + 2000 + JOIN_TOLERANCE_MS)]
    assert plan_clip(segments, T0, T0 + 4000).holes == ()


def test_nothing_recorded() -> None:
    with pytest.raises(NothingRecorded):
        plan_clip(run(3), T0 + 60_000, T0 + 70_000)
    with pytest.raises(NothingRecorded):
        plan_clip([], T0, T0 + 1000)


def test_audio_only_segments_start_at_a_segment_start() -> None:
    segments = [seg(i, T0 + i * 2000, video=False) for i in range(3)]
    assert plan_clip(segments, T0 + 2500, T0 + 5000).start_ms == T0 + 2000


def test_duplicate_coverage_is_dropped() -> None:
    segments = [*run(3), seg(99, T0 + 2000)]  # the same stretch recorded twice
    plan = plan_clip(segments, T0, T0 + 6000)
    assert [p.segment.seq for p in plan.parts] == [0, 1, 2]


def test_nearest_spans() -> None:
    spans = [(0, 10), (100, 200), (300, 400)]
    assert nearest_spans(spans, 250, 260, limit=2) == [(300, 400), (100, 200)]
    assert nearest_spans(spans, 150, 160, limit=1) == [(100, 200)]


def _fields(row: SegmentRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__}


@st.composite
def recordings(draw: st.DrawFn) -> list[SegmentRow]:
    count = draw(st.integers(1, 12))
    segments = []
    at = T0
    for n in range(count):
        at += draw(st.sampled_from([0, 0, 0, 3, -2, 5000]))  # joins, jitter, holes
        length = draw(st.integers(500, 4000))
        gop = draw(st.sampled_from([250, 500, 1000, 2000, 10_000]))
        segments.append(seg(n, at, length=length, gop=gop))
        at += length
    return segments


@given(recordings(), st.integers(-3000, 40_000), st.integers(500, 20_000))
def test_plan_properties(segments: list[SegmentRow], offset: int, length: int) -> None:
    start, end = T0 + offset, T0 + offset + length
    try:
        plan = plan_clip(segments, start, end)
    except NothingRecorded:
        assert not any(s.start_ms < end and s.end_ms > start for s in segments)
        return
    keyframes = [k for s in segments for k in s.keyframes_ms]
    # Starts on a real keyframe; at or before the request unless the recording starts later.
    assert plan.start_ms in keyframes
    earlier = [k for k in keyframes if k <= start]
    if earlier:
        assert plan.start_ms == max(earlier)
    else:
        assert plan.starts_late and plan.start_ms > start
    assert plan.end_ms <= end
    # Parts are in order, never overlap, and cover [start, end) but for the listed holes.
    covered = plan.start_ms
    for part in plan.parts:
        assert part.from_ms < part.to_ms
        assert part.from_ms >= covered - JOIN_TOLERANCE_MS
        assert part.segment.start_ms <= part.from_ms or part.from_ms == plan.start_ms
        covered = max(covered, part.to_ms)
    assert covered == plan.end_ms
    assert len({p.segment.id for p in plan.parts}) == len(plan.parts)
    for hole_start, hole_end in plan.holes:
        assert plan.start_ms <= hole_start < hole_end <= plan.end_ms
        assert not any(
            p.from_ms < hole_end - JOIN_TOLERANCE_MS and p.to_ms > hole_start + JOIN_TOLERANCE_MS
            for p in plan.parts
        )
