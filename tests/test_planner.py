"""Clip planning with literal numbers and with random recordings (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecut.clips.planner import (
    JOIN_TOLERANCE_MS,
    NoKeyframe,
    NothingRecorded,
    nearest_spans,
    plan_clip,
)
from livecut.media.clock import TS_WRAP_S
from livecut.store.records import SegmentRow
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

T0 = 1_767_225_600_000
REF0 = 10.0  # media time of T0


def seg(
    n: int,
    start: int,
    *,
    length: int = 2000,
    gop: int = 1000,
    video: bool = True,
    ref: float | None = None,
    epoch: int = 0,
    params: str = "h264 High 320x180|aac 48000 2",
) -> SegmentRow:
    return SegmentRow(
        id=n,
        rendition_id=1,
        seq=n,
        epoch=epoch,
        start_ms=start,
        end_ms=start + length,
        path=f"{n}.ts",
        size=1,
        init_path=None,
        ref_pts_s=REF0 + (start - T0) / 1000 if ref is None else ref,
        keyframes_ms=tuple(range(start, start + length, gop)) if video else (),
        has_video=video,
        has_audio=True,
        params=params,
    )


def run(count: int, *, length: int = 2000) -> list[SegmentRow]:
    return [seg(i, T0 + i * length, length=length) for i in range(count)]


def seqs(plan_runs: object) -> list[list[int]]:
    return [[s.seq for s in r.segments] for r in plan_runs]  # type: ignore[attr-defined]


def test_starts_at_the_keyframe_at_or_before_start() -> None:
    plan = plan_clip(run(5), T0 + 2500, T0 + 6200)
    assert plan.start_ms == T0 + 2000
    assert plan.end_ms == T0 + 6200
    assert seqs(plan.runs) == [[1, 2, 3]]
    assert plan.runs[0].from_s == pytest.approx(REF0 + 2.0)
    assert plan.runs[0].to_s == pytest.approx(REF0 + 6.2)
    assert not plan.holes and not plan.starts_late and not plan.ends_early


def test_start_exactly_on_a_keyframe_and_a_mid_segment_keyframe() -> None:
    assert plan_clip(run(5), T0 + 3000, T0 + 4000).start_ms == T0 + 3000
    assert plan_clip(run(5), T0 + 3999, T0 + 4500).start_ms == T0 + 3000


def test_audio_led_segments_overlapping_in_wall_time_are_one_run() -> None:
    """nginx-rtmp: each segment's audio starts ~120 ms before its first video frame, so
    spans overlap; media time is continuous, so nothing is skipped at the joins."""
    segments = [
        replace(s, end_ms=s.end_ms + 120, keyframes_ms=(s.start_ms,)) for s in run(10, length=2000)
    ]
    plan = plan_clip(segments, T0 + 500, T0 + 19_500)
    assert seqs(plan.runs) == [list(range(10))]
    assert plan.runs[0].from_s == pytest.approx(REF0)
    assert plan.runs[0].to_s == pytest.approx(REF0 + 19.5)
    assert not plan.holes


def test_pdt_jitter_is_followed_locally() -> None:
    # Segment 2's PDT is 7 ms late against media time: an instant in it is turned into
    # media time by its own PDT, and the run stays one run.
    segments = run(4)
    segments[2] = replace(
        segments[2], start_ms=segments[2].start_ms + 7, end_ms=segments[2].end_ms + 7
    )
    plan = plan_clip(segments, T0 + 1000, T0 + 5007)
    assert seqs(plan.runs) == [[0, 1, 2]]
    assert plan.runs[0].to_s == pytest.approx(REF0 + 5.0)
    assert plan.runs[0].wall_ms(REF0 + 4.5) == pytest.approx(T0 + 4507)
    assert plan.runs[0].media_s(T0 + 1500) == pytest.approx(REF0 + 1.5)


def test_keyframe_found_in_an_earlier_segment() -> None:
    # The second segment has no keyframe of its own: decoding starts in the first.
    segments = [seg(0, T0), replace(seg(1, T0 + 2000), keyframes_ms=())]
    plan = plan_clip(segments, T0 + 2500, T0 + 3500)
    assert plan.start_ms == T0 + 1000
    assert seqs(plan.runs) == [[0, 1]]


def test_a_keyframe_of_another_run_cannot_start_decoding() -> None:
    # A discontinuity at segment 1, whose first keyframe is 500 ms in.
    segments = [seg(0, T0), replace(seg(1, T0 + 2000, epoch=1, ref=0.0), keyframes_ms=(T0 + 2500,))]
    plan = plan_clip(segments, T0 + 2200, T0 + 3500)
    assert plan.start_ms == T0 + 2500 and plan.starts_late
    assert seqs(plan.runs) == [[1]]
    assert plan.runs[0].from_s == pytest.approx(0.5)


def test_range_before_the_recording_starts_late() -> None:
    plan = plan_clip(run(3), T0 - 5000, T0 + 1500)
    assert plan.start_ms == T0 and plan.starts_late


def test_range_past_the_recording_ends_early() -> None:
    plan = plan_clip(run(3), T0 + 4000, T0 + 9000)
    assert plan.end_ms == T0 + 6000 and plan.ends_early
    assert plan.runs[-1].to_s == pytest.approx(REF0 + 6.0)


def test_holes_are_listed_and_cut_across() -> None:
    segments = [seg(0, T0), seg(1, T0 + 2000), seg(4, T0 + 8000), seg(5, T0 + 10_000)]
    plan = plan_clip(segments, T0 + 1000, T0 + 11_000)
    assert plan.holes == ((T0 + 4000, T0 + 8000),)
    assert seqs(plan.runs) == [[0, 1], [4, 5]]
    assert [r.change for r in plan.runs] == ["start", "hole"]
    assert plan.runs[0].to_s is None and plan.runs[1].to_s == pytest.approx(REF0 + 11.0)


def test_jitter_within_tolerance_is_not_a_hole() -> None:
    segments = [seg(0, T0), seg(1, T0 + 2000 + JOIN_TOLERANCE_MS, ref=REF0 + 2.0)]
    plan = plan_clip(segments, T0, T0 + 4000)
    assert plan.holes == () and seqs(plan.runs) == [[0, 1]]


def test_discontinuities_and_parameter_changes_start_new_runs() -> None:
    segments = [
        seg(0, T0),
        seg(1, T0 + 2000, epoch=1, ref=50.0),
        seg(2, T0 + 4000, epoch=1, ref=52.0, params="h264 High 640x360|aac 48000 2"),
    ]
    plan = plan_clip(segments, T0 + 500, T0 + 5500)
    assert seqs(plan.runs) == [[0], [1], [2]]
    assert [r.change for r in plan.runs] == ["start", "discontinuity", "parameters"]
    assert plan.runs[1].from_s == pytest.approx(50.0)
    assert plan.runs[2].to_s == pytest.approx(53.5)


def test_unknown_parameters_are_not_a_change() -> None:
    # A segment that starts between keyframes (or an open-GOP segment without parameter
    # sets) shows no codec parameters; a known change further on still splits.
    segments = run(4)
    segments[1] = replace(segments[1], params="")
    segments[3] = replace(segments[3], params="h264 High 640x360|aac 48000 2")
    plan = plan_clip(segments, T0 + 500, T0 + 7500)
    assert seqs(plan.runs) == [[0, 1, 2], [3]]
    assert [r.change for r in plan.runs] == ["start", "parameters"]


def test_the_segment_after_the_end_is_read_ahead_not_planned() -> None:
    plan = plan_clip(run(5), T0 + 500, T0 + 3500)
    assert seqs(plan.runs) == [[0, 1]]
    assert plan.runs[0].spill is not None and plan.runs[0].spill.seq == 2
    assert plan_clip(run(2), T0 + 500, T0 + 3500).runs[0].spill is None


def test_media_time_that_does_not_follow_on_starts_a_new_run() -> None:
    # An encoder restarted without a discontinuity tag: timestamps begin again.
    segments = [seg(0, T0), seg(1, T0 + 2000, ref=1.4)]
    plan = plan_clip(segments, T0 + 500, T0 + 3500)
    assert seqs(plan.runs) == [[0], [1]]
    assert plan.runs[1].to_s == pytest.approx(2.9)


def test_ts_timestamps_that_wrap_stay_one_run() -> None:
    ref = TS_WRAP_S - 1.0  # segment 1 starts 1 s after the 33-bit wrap
    segments = [seg(0, T0, ref=ref), seg(1, T0 + 2000, ref=1.0), seg(2, T0 + 4000, ref=3.0)]
    plan = plan_clip(segments, T0 + 500, T0 + 5000)
    (only,) = plan.runs
    assert only.refs_s == pytest.approx((ref, TS_WRAP_S + 1.0, TS_WRAP_S + 3.0))
    assert only.wraps and only.to_s == pytest.approx(TS_WRAP_S + 4.0)
    assert only.wall_ms(TS_WRAP_S + 2.0) == pytest.approx(T0 + 3000)


def test_open_gop_leading_pictures_in_the_next_segment_are_kept() -> None:
    # Segment 0's frames are presented up to 1900 ms; the last 100 ms before segment 1's
    # keyframe are leading pictures stored in segment 1.
    segments = [replace(seg(0, T0), end_ms=T0 + 1900), seg(1, T0 + 2000)]
    plan = plan_clip(segments, T0 + 500, T0 + 1950)
    assert seqs(plan.runs) == [[0, 1]]


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
    assert seqs(plan.runs) == [[0, 1, 2]]


def test_nearest_spans() -> None:
    spans = [(0, 10), (100, 200), (300, 400)]
    assert nearest_spans(spans, 250, 260, limit=2) == [(300, 400), (100, 200)]
    assert nearest_spans(spans, 150, 160, limit=1) == [(100, 200)]


@st.composite
def recordings(draw: st.DrawFn) -> list[SegmentRow]:
    """Runs with PDT jitter, audio-led overlaps, lost segments and discontinuities."""
    count = draw(st.integers(1, 12))
    segments = []
    at, ref, seq, epoch = T0, REF0, 0, 0
    for _ in range(count):
        event = draw(st.sampled_from(["join", "join", "join", "lost", "discontinuity"]))
        if event == "lost":
            seq += 1
            at += 2000
            ref += 2.0
        elif event == "discontinuity":
            epoch += 1
            ref = draw(st.floats(0, 100))
        length = draw(st.integers(500, 4000))
        gop = draw(st.sampled_from([250, 500, 1000, 2000, 10_000]))
        jitter = draw(st.integers(-3, 3))
        lead = draw(st.sampled_from([0, 0, 120]))  # audio before the first frame
        segments.append(
            replace(
                seg(seq, at + jitter, length=length, gop=gop, ref=ref, epoch=epoch),
                end_ms=at + jitter + length + lead,
            )
        )
        seq += 1
        at += length
        ref += length / 1000
    return segments


@settings(max_examples=400)
@given(recordings(), st.integers(-3000, 40_000), st.integers(500, 20_000))
def test_plan_properties(segments: list[SegmentRow], offset: int, length: int) -> None:
    start, end = T0 + offset, T0 + offset + length
    try:
        plan = plan_clip(segments, start, end)
    except NoKeyframe:
        # Recorded, but decoding could only start past the end.
        assert any(s.start_ms < end and s.end_ms > start for s in segments)
        return
    except NothingRecorded:
        assert not any(s.start_ms < end and s.end_ms > start for s in segments)
        return
    keyframes = {k for s in segments for k in s.keyframes_ms}
    assert plan.start_ms in keyframes
    if not plan.starts_late:
        assert plan.start_ms <= start
    assert plan.end_ms <= end
    chosen = plan.segments
    # No segment twice; inside a run, consecutive sequence numbers of one epoch: nothing
    # between a run's first and last segment is ever skipped.
    assert len({s.id for s in chosen}) == len(chosen)
    for planned in plan.runs:
        numbers = [s.seq for s in planned.segments]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len({s.epoch for s in planned.segments}) == 1
        assert planned.refs_s == tuple(sorted(planned.refs_s))
        # Wall and media time convert back and forth through the same local PDT.
        for s, ref in zip(planned.segments, planned.refs_s, strict=True):
            assert planned.wall_ms(ref) == pytest.approx(s.start_ms)
            assert planned.media_s(s.start_ms) == pytest.approx(ref)
        if planned.to_s is not None:
            assert planned.to_s >= planned.from_s - 1e-9
    assert plan.runs[-1].to_s == pytest.approx(plan.runs[-1].media_s(plan.end_ms))
    # The first run starts at the chosen keyframe; holes lie between runs.
    assert plan.runs[0].from_s == pytest.approx(plan.runs[0].media_s(plan.start_ms))
    for hole_start, hole_end in plan.holes:
        assert plan.start_ms <= hole_start < hole_end <= plan.end_ms
