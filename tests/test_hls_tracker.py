"""Tests for livecut.hls.tracker: playlist snapshots in, new segments, gaps and resets out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from livecut.hls.playlist import MediaPlaylist, PlaylistSegment
from livecut.hls.tracker import Gap, MediaTracker, NewSegment, PdtJump, TrackerUpdate
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

T0 = 1_700_000_000_000
DUR = 6000


def seg(
    seq: int,
    *,
    duration_ms: int = DUR,
    pdt_ms: int | None = None,
    gap: bool = False,
    epoch: int = 0,
    name: str = "seg",
    discontinuity: bool = False,
) -> PlaylistSegment:
    return PlaylistSegment(
        seq=seq,
        epoch=epoch,
        uri=f"https://origin.example/{name}{seq}.ts",
        duration_ms=duration_ms,
        pdt_ms=pdt_ms,
        pdt_tagged=pdt_ms is not None,
        discontinuity=discontinuity,
        init=None,
        byterange=None,
        gap=gap,
        title="",
    )


def media(
    *segments: PlaylistSegment,
    target_ms: int = DUR,
    ended: bool = False,
    media_sequence: int | None = None,
    discontinuity_sequence: int = 0,
) -> MediaPlaylist:
    return MediaPlaylist(
        url="https://origin.example/index.m3u8",
        target_duration_ms=target_ms,
        media_sequence=(
            media_sequence if media_sequence is not None else segments[0].seq if segments else 0
        ),
        discontinuity_sequence=discontinuity_sequence,
        segments=segments,
        ended=ended,
        playlist_type=None,
        has_pdt=any(s.pdt_ms is not None for s in segments),
        version=None,
        encryption=None,
    )


def live(
    first: int,
    last: int,
    *,
    pdt: bool = True,
    origin_ms: int = T0,
    gaps: frozenset[int] = frozenset(),
    name: str = "seg",
    ended: bool = False,
    discontinuity_sequence: int = 0,
) -> MediaPlaylist:
    """A window of a steady stream of 6 s segments whose seq 0 starts at origin_ms."""
    return media(
        *(
            seg(
                seq,
                pdt_ms=origin_ms + seq * DUR if pdt else None,
                gap=seq in gaps,
                name=name,
            )
            for seq in range(first, last + 1)
        ),
        ended=ended,
        discontinuity_sequence=discontinuity_sequence,
    )


def seqs(update: TrackerUpdate) -> list[int]:
    return [n.segment.seq for n in update.new]


def test_first_snapshot_emits_the_whole_window() -> None:
    tracker = MediaTracker()
    assert tracker.last_seq is None
    assert tracker.last_change_ms is None
    fetched = T0 + 15 * DUR + 500
    update = tracker.update(live(10, 14), fetched)
    assert seqs(update) == [10, 11, 12, 13, 14]
    assert update.new[0] == NewSegment(
        segment=seg(10, pdt_ms=T0 + 10 * DUR),
        start_ms=T0 + 10 * DUR,
        clock="origin",
        first_seen_ms=fetched,
        expires_at_ms=fetched + DUR,
        published_ms=T0 + 11 * DUR,  # its end on the origin's clock, which agrees with ours
        publish_clock="origin",
        backfill=True,
    )
    assert [n.backfill for n in update.new] == [True, True, True, True, False]
    assert [n.expires_at_ms for n in update.new] == [fetched + k * DUR for k in range(1, 6)]
    assert update.gaps == ()
    assert not update.reset
    assert not update.ended
    assert update.changed
    assert update.reload_after_ms == DUR
    assert tracker.last_seq == 14
    assert tracker.last_change_ms == fetched


def test_sliding_window_emits_each_segment_once() -> None:
    tracker = MediaTracker()
    tracker.update(live(10, 14), 1_000)
    update = tracker.update(live(11, 15), 7_000)
    assert seqs(update) == [15]
    assert update.new[0].first_seen_ms == 7_000
    assert update.new[0].expires_at_ms == 7_000 + 5 * DUR
    assert update.changed
    assert update.reload_after_ms == DUR
    update = tracker.update(live(13, 18), 13_000)
    assert seqs(update) == [16, 17, 18]
    assert tracker.last_seq == 18


def test_unchanged_reload_waits_half_the_target_duration() -> None:
    tracker = MediaTracker()
    tracker.update(live(10, 14), 1_000)
    update = tracker.update(live(10, 14), 7_000)
    assert update == TrackerUpdate(
        new=(),
        gaps=(),
        reset=False,
        ended=False,
        changed=False,
        reload_after_ms=DUR // 2,
        pdt_jumps=(),
        next_msn=15,
        reload_at_ms=7_000 + DUR // 2,
    )
    assert tracker.last_change_ms == 1_000
    assert tracker.silent_for_ms(10_000) == 9_000


def test_silent_for_is_zero_before_any_segment() -> None:
    tracker = MediaTracker()
    assert tracker.silent_for_ms(123) == 0
    update = tracker.update(media(media_sequence=5), 1_000)
    assert update.new == ()
    assert not update.changed
    assert update.reload_after_ms == DUR  # first load
    assert tracker.silent_for_ms(5_000) == 0
    assert tracker.last_change_ms is None
    assert tracker.update(media(media_sequence=5), 2_000).reload_after_ms == DUR // 2


def test_empty_first_snapshot_then_segments_emits_them_all() -> None:
    tracker = MediaTracker()
    tracker.update(media(media_sequence=0), 1_000)
    update = tracker.update(live(0, 2), 20_000)
    assert seqs(update) == [0, 1, 2]
    assert update.gaps == ()


def test_expired_segments_become_one_gap() -> None:
    tracker = MediaTracker()
    tracker.update(live(10, 14), 1_000)
    update = tracker.update(live(20, 24), 60_000)
    assert update.gaps == (
        Gap(
            epoch=0,
            first_seq=15,
            last_seq=19,
            start_ms=T0 + 15 * DUR,  # end of seq 14
            end_ms=T0 + 20 * DUR,  # start of seq 20
            reason="expired",
        ),
    )
    assert seqs(update) == [20, 21, 22, 23, 24]
    assert update.changed


def test_expired_gap_on_the_local_clock_is_placed_by_arrival() -> None:
    tracker = MediaTracker()
    tracker.update(live(10, 14, pdt=False), 100_000)
    update = tracker.update(live(20, 24, pdt=False), 160_000)
    # Seq 14 ended at the first fetch; seq 24 ends at the second one.
    assert update.gaps == (
        Gap(
            epoch=0,
            first_seq=15,
            last_seq=19,
            start_ms=100_000,
            end_ms=160_000 - 5 * DUR,
            reason="expired",
        ),
    )
    assert [n.start_ms for n in update.new] == [130_000 + k * DUR for k in range(5)]
    assert {n.clock for n in update.new} == {"local"}


def test_expired_gap_on_the_local_clock_never_goes_back_in_time() -> None:
    tracker = MediaTracker()
    tracker.update(live(10, 14, pdt=False), 100_000)
    # A fetch that returns early (by the arrival clock) must not overlap what we have.
    update = tracker.update(live(16, 17, pdt=False), 101_000)
    assert update.gaps[0].start_ms == update.gaps[0].end_ms == 100_000
    assert update.new[0].start_ms == 100_000


def test_local_clock_anchors_the_live_edge_then_carries_forward() -> None:
    tracker = MediaTracker()
    first = tracker.update(live(0, 2, pdt=False), 50_000)
    assert [n.start_ms for n in first.new] == [32_000, 38_000, 44_000]
    assert {n.clock for n in first.new} == {"local"}
    # A late fetch does not move the timeline: seq 3 starts where seq 2 ended.
    later = tracker.update(live(1, 3, pdt=False), 70_000)
    assert [n.start_ms for n in later.new] == [50_000]
    assert later.new[0].first_seen_ms == 70_000


def test_media_sequence_going_back_is_a_reset() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104), 1_000)
    update = tracker.update(live(0, 2, name="new", origin_ms=T0 + 10**7), 7_000)
    assert update.reset
    assert update.changed
    assert seqs(update) == [0, 1, 2]
    assert update.gaps == ()
    assert update.new[0].start_ms == T0 + 10**7
    assert tracker.last_seq == 2
    assert seqs(tracker.update(live(1, 3, name="new", origin_ms=T0 + 10**7), 13_000)) == [3]


def test_restart_reusing_segment_names_is_a_reset_by_its_pdt() -> None:
    tracker = MediaTracker()
    tracker.update(live(0, 3), 1_000)
    update = tracker.update(live(0, 1, origin_ms=T0 + 60_000), 61_000)
    assert update.reset
    assert seqs(update) == [0, 1]


def test_lower_media_sequence_with_new_names_is_a_reset() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104), 1_000)
    update = tracker.update(live(98, 110, name="other"), 7_000)
    assert update.reset
    assert seqs(update) == list(range(98, 111))


def test_discontinuity_sequence_going_back_is_a_reset() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104, discontinuity_sequence=7), 1_000)
    update = tracker.update(live(5000, 5002, name="b", discontinuity_sequence=0), 7_000)
    assert update.reset
    assert seqs(update) == [5000, 5001, 5002]


def test_reset_reanchors_the_local_clock() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104, pdt=False), 100_000)
    update = tracker.update(live(0, 1, pdt=False, name="b"), 500_000)
    assert update.reset
    assert [n.start_ms for n in update.new] == [488_000, 494_000]


def test_stale_copy_from_a_lagging_edge_is_not_a_reset() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104), 1_000)
    tracker.update(live(101, 105), 7_000)
    stale = tracker.update(live(100, 104), 10_000)
    assert stale == TrackerUpdate(
        new=(),
        gaps=(),
        reset=False,
        ended=False,
        changed=False,
        reload_after_ms=DUR // 2,
        next_msn=106,
        reload_at_ms=10_000 + DUR // 2,  # nothing new: followed up at the floor
    )
    assert seqs(tracker.update(live(102, 106), 13_000)) == [106]


def test_older_start_with_the_same_segments_is_not_a_reset() -> None:
    tracker = MediaTracker()
    tracker.update(live(100, 104), 1_000)
    update = tracker.update(live(99, 106), 7_000)
    assert not update.reset
    assert seqs(update) == [105, 106]


def test_ended_is_reported_once() -> None:
    tracker = MediaTracker()
    tracker.update(live(0, 2), 1_000)
    update = tracker.update(live(0, 3, ended=True), 7_000)
    assert update.ended
    assert update.changed
    assert seqs(update) == [3]
    assert update.reload_after_ms == 0
    again = tracker.update(live(0, 3, ended=True), 8_000)
    assert not again.ended
    assert not again.changed
    assert again.reload_after_ms == 0


def test_ended_without_new_segments_is_a_change() -> None:
    tracker = MediaTracker()
    tracker.update(live(0, 2), 1_000)
    update = tracker.update(live(0, 2, ended=True), 7_000)
    assert update.ended
    assert update.changed
    assert update.new == ()


def test_gap_tagged_segments_become_merged_gaps() -> None:
    tracker = MediaTracker()
    update = tracker.update(live(10, 16, gaps=frozenset({12, 13, 15})), 1_000)
    assert seqs(update) == [10, 11, 14, 16]
    assert update.gaps == (
        Gap(
            epoch=0,
            first_seq=12,
            last_seq=13,
            start_ms=T0 + 12 * DUR,
            end_ms=T0 + 14 * DUR,
            reason="tagged_gap",
        ),
        Gap(
            epoch=0,
            first_seq=15,
            last_seq=15,
            start_ms=T0 + 15 * DUR,
            end_ms=T0 + 16 * DUR,
            reason="tagged_gap",
        ),
    )
    assert tracker.last_seq == 16
    # A gap at the live edge counts as consumed, and as a change of the playlist.
    later = tracker.update(live(12, 17, gaps=frozenset({12, 13, 15, 17})), 7_000)
    assert later.new == ()
    assert [(g.first_seq, g.last_seq) for g in later.gaps] == [(17, 17)]
    assert later.changed
    assert tracker.last_change_ms == 1_000


def test_gap_tagged_segments_are_not_merged_across_epochs() -> None:
    tracker = MediaTracker()
    update = tracker.update(
        media(
            seg(1, gap=True, epoch=0, pdt_ms=T0),
            seg(2, gap=True, epoch=1, pdt_ms=T0 + DUR),
            seg(3, epoch=1, pdt_ms=T0 + 2 * DUR),
        ),
        1_000,
    )
    assert [(g.epoch, g.first_seq, g.last_seq) for g in update.gaps] == [(0, 1, 1), (1, 2, 2)]


def test_gap_segments_advance_the_local_clock() -> None:
    tracker = MediaTracker()
    update = tracker.update(live(0, 3, pdt=False, gaps=frozenset({1, 2})), 24_000)
    assert [n.start_ms for n in update.new] == [0, 18_000]
    assert update.gaps[0].start_ms == 6_000
    assert update.gaps[0].end_ms == 18_000


def test_next_msn_follows_what_was_consumed() -> None:
    tracker = MediaTracker()
    assert tracker.update(media(media_sequence=5), 1_000).next_msn is None
    assert tracker.update(live(10, 14), 2_000).next_msn == 15
    assert tracker.update(live(10, 14), 3_000).next_msn == 15
    # A GAP segment at the edge is consumed too; so are expired ones.
    assert tracker.update(live(12, 16, gaps=frozenset({16})), 4_000).next_msn == 17
    assert tracker.update(live(30, 31), 5_000).next_msn == 32
    reset = tracker.update(live(0, 1, name="new", origin_ms=T0 + 10**7), 6_000)
    assert reset.reset
    assert reset.next_msn == 2


def jumpy(*pdts: int, first: int = 10, epochs: tuple[int, ...] = ()) -> MediaPlaylist:
    """Consecutive 6 s segments from seq `first` with the given PDTs (and epochs)."""
    return media(
        *(
            seg(first + i, pdt_ms=pdt, epoch=epochs[i] if epochs else 0)
            for i, pdt in enumerate(pdts)
        )
    )


def test_forward_pdt_jump_is_reported_and_becomes_a_gap() -> None:
    tracker = MediaTracker()
    update = tracker.update(jumpy(T0, T0 + DUR, T0 + 60_000, T0 + 66_000), 1_000)
    assert seqs(update) == [10, 11, 12, 13]
    assert update.pdt_jumps == (PdtJump(seq=12, expected_ms=T0 + 2 * DUR, actual_ms=T0 + 60_000),)
    assert update.gaps == (
        Gap(
            epoch=0,
            first_seq=12,
            last_seq=11,  # no segment is missing, only time
            start_ms=T0 + 2 * DUR,
            end_ms=T0 + 60_000,
            reason="pdt_jump",
        ),
    )
    assert [n.start_ms for n in update.new] == [T0, T0 + DUR, T0 + 60_000, T0 + 66_000]
    assert not any(n.discontinuity for n in update.new)


def test_forward_pdt_jump_between_snapshots() -> None:
    tracker = MediaTracker()
    tracker.update(jumpy(T0, T0 + DUR), 1_000)
    update = tracker.update(jumpy(T0 + DUR, T0 + 30_000, first=11), 7_000)
    assert seqs(update) == [12]
    assert update.pdt_jumps == (PdtJump(seq=12, expected_ms=T0 + 2 * DUR, actual_ms=T0 + 30_000),)
    assert [(g.reason, g.start_ms, g.end_ms) for g in update.gaps] == [
        ("pdt_jump", T0 + 2 * DUR, T0 + 30_000)
    ]


def test_backward_pdt_jump_is_only_reported() -> None:
    tracker = MediaTracker()
    update = tracker.update(jumpy(T0, T0 + DUR, T0 - 3_600_000, T0 - 3_594_000), 1_000)
    assert seqs(update) == [10, 11, 12, 13]
    assert update.pdt_jumps == (
        PdtJump(seq=12, expected_ms=T0 + 2 * DUR, actual_ms=T0 - 3_600_000),
    )
    assert update.gaps == ()
    assert not update.reset


def test_small_pdt_drift_is_not_a_jump() -> None:
    tracker = MediaTracker()
    # Within max(1 s, target duration) either way: encoder jitter, not a new clock.
    update = tracker.update(jumpy(T0, T0 + DUR + DUR, T0 + 2 * DUR, T0 + 3 * DUR + 5), 1_000)
    assert update.pdt_jumps == ()
    assert update.gaps == ()
    short = media(
        seg(0, duration_ms=500, pdt_ms=T0),
        seg(1, duration_ms=500, pdt_ms=T0 + 1_500),
        seg(2, duration_ms=500, pdt_ms=T0 + 3_001),
        target_ms=500,
    )
    # A 500 ms target still tolerates 1 s; 1001 ms is a jump.
    assert MediaTracker().update(short, 1_000).pdt_jumps == (
        PdtJump(seq=2, expected_ms=T0 + 2_000, actual_ms=T0 + 3_001),
    )


def test_no_pdt_jump_across_a_discontinuity() -> None:
    tracker = MediaTracker()
    update = tracker.update(jumpy(T0, T0 + DUR, T0 + 10**7, T0 - 10**7, epochs=(0, 0, 1, 2)), 1_000)
    assert update.pdt_jumps == ()
    assert update.gaps == ()
    assert [n.discontinuity for n in update.new] == [False, False, True, True]


def test_pdt_jumps_across_expired_segments() -> None:
    tracker = MediaTracker()
    tracker.update(jumpy(T0, T0 + DUR), 1_000)
    # Forward: the expired segments may have taken the time; the expired gap covers it.
    forward = tracker.update(jumpy(T0 + 10**6, first=20), 7_000)
    assert forward.pdt_jumps == ()
    assert [(g.reason, g.start_ms, g.end_ms) for g in forward.gaps] == [
        ("expired", T0 + 2 * DUR, T0 + 10**6)
    ]
    # Backward: no amount of expired segments takes negative time.
    backward = tracker.update(jumpy(T0, first=30), 13_000)
    assert backward.pdt_jumps == (PdtJump(seq=30, expected_ms=T0 + 10**6 + DUR, actual_ms=T0),)
    assert [g.reason for g in backward.gaps] == ["expired"]


def test_gap_segment_after_a_pdt_jump_is_its_own_gap() -> None:
    tracker = MediaTracker()
    update = tracker.update(
        media(
            seg(1, pdt_ms=T0),
            seg(2, pdt_ms=T0 + 60_000, gap=True),
            seg(3, pdt_ms=T0 + 60_000 + DUR, gap=True),
            seg(4, pdt_ms=T0 + 60_000 + 2 * DUR),
        ),
        1_000,
    )
    assert [(g.reason, g.first_seq, g.last_seq, g.start_ms, g.end_ms) for g in update.gaps] == [
        ("pdt_jump", 2, 1, T0 + DUR, T0 + 60_000),
        ("tagged_gap", 2, 3, T0 + 60_000, T0 + 60_000 + 2 * DUR),
    ]
    assert seqs(update) == [1, 4]


def test_discontinuity_flags() -> None:
    tracker = MediaTracker()
    first = tracker.update(
        media(
            seg(10, pdt_ms=T0, epoch=3, discontinuity=True),
            seg(11, pdt_ms=T0 + DUR, epoch=3),
            seg(12, pdt_ms=T0 + 2 * DUR, epoch=4, discontinuity=True),
            seg(13, pdt_ms=T0 + 3 * DUR, epoch=4),
            discontinuity_sequence=2,
        ),
        1_000,
    )
    # The first segment carries the tag itself; 12 starts a new epoch.
    assert [n.discontinuity for n in first.new] == [True, False, True, False]
    # The tagged segment (seq 14) expired unseen: seq 20 is in epoch 5 all the same.
    later = tracker.update(
        media(
            seg(20, pdt_ms=T0 + 10 * DUR, epoch=5),
            seg(21, pdt_ms=T0 + 11 * DUR, epoch=5),
            discontinuity_sequence=5,
        ),
        60_000,
    )
    assert [n.discontinuity for n in later.new] == [True, False]
    assert [g.epoch for g in later.gaps] == [4]


def test_discontinuity_carried_by_a_gap_segment_flags_the_next_emitted_one() -> None:
    tracker = MediaTracker()
    update = tracker.update(
        media(
            seg(1, pdt_ms=T0, epoch=0),
            seg(2, pdt_ms=T0 + DUR, epoch=1, discontinuity=True, gap=True),
            seg(3, pdt_ms=T0 + 2 * DUR, epoch=1),
            seg(4, pdt_ms=T0 + 3 * DUR, epoch=1),
        ),
        1_000,
    )
    assert [(n.segment.seq, n.discontinuity) for n in update.new] == [
        (1, False),
        (3, True),
        (4, False),
    ]


def test_discontinuity_without_pdt() -> None:
    tracker = MediaTracker()
    tracker.update(live(0, 1, pdt=False), 12_000)
    update = tracker.update(
        media(seg(1), seg(2, epoch=1, discontinuity=True), seg(3, epoch=1)), 24_000
    )
    assert [(n.segment.seq, n.discontinuity) for n in update.new] == [(2, True), (3, False)]
    assert update.pdt_jumps == ()


# --- properties ---


@dataclass(frozen=True, kw_only=True)
class Scenario:
    first_seq: int
    durations: list[int]
    gap_flags: list[bool]
    has_pdt: bool
    windows: list[tuple[int, int]]  # (first index, last index) into the timeline
    fetch_times: list[int]
    # Per segment: how far its PDT leaps past where the previous one ended (0: none),
    # and whether an EXT-X-DISCONTINUITY precedes it.
    jumps: list[int] | None = None
    discontinuities: list[bool] | None = None

    def pdt(self, index: int) -> int:
        leaps = sum(self.jumps[: index + 1]) if self.jumps else 0
        return T0 + sum(self.durations[:index]) + leaps

    def epoch(self, index: int) -> int:
        return sum(self.discontinuities[: index + 1]) if self.discontinuities else 0


@st.composite
def scenarios(draw: st.DrawFn, *, replays: bool, jumps: bool = False) -> Scenario:
    length = draw(st.integers(1, 80))
    durations = draw(st.lists(st.integers(0, 10_000), min_size=length, max_size=length))
    flag = st.sampled_from([False] * 5 + [True]) if draw(st.booleans()) else st.just(False)
    gap_flags = draw(st.lists(flag, min_size=length, max_size=length))
    ends: list[int] = []
    end = draw(st.integers(0, length - 1))
    windows: list[tuple[int, int]] = []
    accepted: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 30))):
        last_accepted = accepted[-1] if accepted else None
        overlapping = [
            w
            for w in accepted[:-1]
            if last_accepted is not None and w[1] >= last_accepted[0] and w[0] <= last_accepted[1]
        ]
        if replays and overlapping and draw(st.integers(0, 3)) == 0:
            # A lagging edge serves an older copy that still overlaps the current one.
            windows.append(draw(st.sampled_from(overlapping)))
            ends.append(end)
            continue
        size = draw(st.integers(1, 8))
        window = (max(0, end - size + 1), end)
        windows.append(window)
        accepted.append(window)
        ends.append(end)
        end = min(length - 1, end + draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3, 5, 9, 20])))
    edges = [sum(durations[: e + 1]) for e in ends]
    jitter = draw(st.lists(st.integers(0, 3_000), min_size=len(ends), max_size=len(ends)))
    fetch_times: list[int] = []
    for edge, extra in zip(edges, jitter, strict=True):
        fetch_times.append(max([T0 + edge + extra, *fetch_times[-1:]]))
    # Leaps beyond the tracker's tolerance (the 10 s target duration), or none at all.
    leap = st.sampled_from([0, 0, 0, 10_001]) | st.integers(10_001, 10**7)
    return Scenario(
        first_seq=draw(st.integers(0, 10**9)),
        durations=durations,
        gap_flags=gap_flags,
        has_pdt=jumps or draw(st.booleans()),
        windows=windows,
        fetch_times=fetch_times,
        jumps=[0, *draw(st.lists(leap, min_size=length - 1, max_size=length - 1))]
        if jumps
        else None,
        discontinuities=draw(
            st.lists(st.sampled_from([False] * 4 + [True]), min_size=length, max_size=length)
        )
        if jumps
        else None,
    )


def snapshot(scenario: Scenario, first: int, last: int) -> MediaPlaylist:
    segments = []
    for index in range(first, last + 1):
        segments.append(
            seg(
                scenario.first_seq + index,
                duration_ms=scenario.durations[index],
                pdt_ms=scenario.pdt(index) if scenario.has_pdt else None,
                gap=scenario.gap_flags[index],
                epoch=scenario.epoch(index),
                discontinuity=bool(scenario.discontinuities and scenario.discontinuities[index]),
            )
        )
    # DISCONTINUITY-SEQUENCE counts the tags of the segments already gone.
    before = scenario.epoch(first) - (segments[0].discontinuity if segments else 0)
    return media(*segments, target_ms=10_000, discontinuity_sequence=before)


def run(scenario: Scenario) -> tuple[list[NewSegment], list[Gap], list[TrackerUpdate]]:
    tracker = MediaTracker()
    emitted: list[NewSegment] = []
    gaps: list[Gap] = []
    updates: list[TrackerUpdate] = []
    for (first, last), fetched in zip(scenario.windows, scenario.fetch_times, strict=True):
        update = tracker.update(snapshot(scenario, first, last), fetched)
        updates.append(update)
        emitted.extend(update.new)
        gaps.extend(update.gaps)
    return emitted, gaps, updates


def check_coverage(scenario: Scenario, emitted: list[NewSegment], gaps: list[Gap]) -> None:
    emitted_seqs = [n.segment.seq for n in emitted]
    gap_seqs = [seq for g in gaps for seq in range(g.first_seq, g.last_seq + 1)]
    assert len(set(emitted_seqs)) == len(emitted_seqs), "a segment was emitted twice"
    assert len(set(gap_seqs)) == len(gap_seqs), "a seq is in two gaps"
    assert not set(emitted_seqs) & set(gap_seqs), "a seq is both emitted and missing"
    first_seen = scenario.first_seq + scenario.windows[0][0]
    last_seen = scenario.first_seq + max(last for _, last in scenario.windows)
    assert sorted(emitted_seqs + gap_seqs) == list(range(first_seen, last_seen + 1))
    assert emitted_seqs == sorted(emitted_seqs)
    starts = [n.start_ms for n in emitted]
    assert starts == sorted(starts), "start_ms went backwards"
    for gap in gaps:
        assert gap.start_ms <= gap.end_ms
        if gap.reason == "tagged_gap":
            flags = scenario.gap_flags[
                gap.first_seq - scenario.first_seq : gap.last_seq + 1 - scenario.first_seq
            ]
            assert all(flags)
    for new in emitted:
        assert not new.segment.gap
        assert new.clock == ("origin" if scenario.has_pdt else "local")
        if scenario.has_pdt:
            assert new.start_ms == new.segment.pdt_ms


@settings(max_examples=300)
@given(scenarios(replays=False))
def test_sliding_windows_cover_every_seq_exactly_once(scenario: Scenario) -> None:
    emitted, gaps, updates = run(scenario)
    check_coverage(scenario, emitted, gaps)
    assert not any(u.reset for u in updates)
    for update in updates:
        half = 5_000 if not update.changed else 10_000
        assert update.reload_after_ms == (10_000 if update is updates[0] else half)


@settings(max_examples=300)
@given(scenarios(replays=True))
def test_stale_copies_never_reset_or_repeat(scenario: Scenario) -> None:
    emitted, gaps, updates = run(scenario)
    check_coverage(scenario, emitted, gaps)
    assert not any(u.reset for u in updates)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 6), st.booleans()), max_size=30))
def test_any_snapshot_sequence_never_emits_a_segment_twice_within_a_session(
    steps: list[tuple[int, int, bool]],
) -> None:
    """Arbitrary jumps back and forth: within one session no seq comes out twice."""
    tracker = MediaTracker()
    seen: set[int] = set()
    for fetched, (first, size, has_pdt) in enumerate(steps):
        playlist = media(
            *(seg(s, pdt_ms=T0 + s * DUR if has_pdt else None) for s in range(first, first + size))
        )
        update = tracker.update(playlist, fetched * 1000)
        if update.reset:
            seen = set()
        batch = [n.segment.seq for n in update.new] + [
            s for g in update.gaps for s in range(g.first_seq, g.last_seq + 1)
        ]
        assert not seen & set(batch)
        assert len(set(batch)) == len(batch)
        seen |= set(batch)


@settings(max_examples=300)
@given(scenarios(replays=False, jumps=True))
def test_forward_pdt_jumps_never_make_coverage_overlap(scenario: Scenario) -> None:
    """Emitted segments and gaps tile the timeline: leaps become gaps, never overlaps."""
    emitted, gaps, updates = run(scenario)
    check_coverage(scenario, emitted, gaps)
    assert not any(u.reset for u in updates)
    assert scenario.jumps is not None
    assert scenario.discontinuities is not None
    # In timeline order: a pdt_jump gap sits before the segment that leapt.
    pieces = sorted(
        [(n.segment.seq, 1, n.start_ms, n.start_ms + n.segment.duration_ms) for n in emitted]
        + [(g.first_seq, 0 if g.reason == "pdt_jump" else 1, g.start_ms, g.end_ms) for g in gaps]
    )
    for (_, _, _, previous_end), (seq, _, start, end) in itertools.pairwise(pieces):
        assert start <= end
        index = seq - scenario.first_seq
        if scenario.epoch(index) == scenario.epoch(index - 1):
            assert start == previous_end, f"hole or overlap before seq {seq}"
        else:
            # A new epoch takes PDT afresh: no jump is reported, a leap leaves a hole.
            assert start >= previous_end, f"overlap at the discontinuity before seq {seq}"
    jumps = [j for u in updates for j in u.pdt_jumps]
    jump_gaps = [g for g in gaps if g.reason == "pdt_jump"]
    assert len(jump_gaps) == len(jumps)
    for jump, gap in zip(jumps, jump_gaps, strict=True):
        index = jump.seq - scenario.first_seq
        assert jump.actual_ms - jump.expected_ms == scenario.jumps[index] > 0
        assert not scenario.discontinuities[index]
        assert (gap.first_seq, gap.last_seq) == (jump.seq, jump.seq - 1)
        assert (gap.start_ms, gap.end_ms) == (jump.expected_ms, jump.actual_ms)
    flagged = {n.segment.seq for n in emitted if n.discontinuity}
    for previous, new in itertools.pairwise(emitted):
        epoch_changed = previous.segment.epoch != new.segment.epoch
        assert (new.segment.seq in flagged) == (epoch_changed or new.segment.discontinuity)
