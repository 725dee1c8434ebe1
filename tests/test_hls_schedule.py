"""Tests for livecut.hls.schedule: reloads just after publishing, never before RFC 8216 allows."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from livecut.hls.playlist import MediaPlaylist, PlaylistSegment
from livecut.hls.schedule import MARGIN_MS, ReloadSchedule, clock_trusted
from livecut.hls.tracker import MediaTracker

T0 = 1_800_000_000_000
TARGET = 2000


def test_first_reload_aims_just_after_the_next_segment_with_a_trusted_clock() -> None:
    schedule = ReloadSchedule()
    # Loaded 1.3 s after the newest segment ended (PDT + duration): the next one ends
    # 0.7 s from now, and is listed then.
    floor, at = schedule.next_reload(
        requested_at_ms=T0 + 1_290,
        fetched_at_ms=T0 + 1_300,
        target_ms=TARGET,
        changed=True,
        edge_ms=T0,
        next_duration_ms=2000,
        new_edge=True,
        trusted=True,
    )
    assert floor == T0 + 1_290 + TARGET
    assert schedule.delay_ms == 0
    # Segment 2 is due at 2.0 s, before the floor (3.29 s); reloading at the floor would
    # list it 1.29 s late, and every one after it too: wait for segment 3 instead.
    assert at == T0 + 4_000 + MARGIN_MS


def test_drifted_phase_waits_for_the_segment_after() -> None:
    schedule = ReloadSchedule()
    schedule.next_reload(
        requested_at_ms=T0 + 100,
        fetched_at_ms=T0 + 110,
        target_ms=TARGET,
        changed=True,
        edge_ms=T0,
        next_duration_ms=2000,
        new_edge=True,
        trusted=True,
    )
    # The next load began 700 ms after segment 2 was due (floor-bound drift):
    floor, at = schedule.next_reload(
        requested_at_ms=T0 + 2_700,
        fetched_at_ms=T0 + 2_710,
        target_ms=TARGET,
        changed=True,
        edge_ms=T0 + 2000,
        next_duration_ms=2000,
        new_edge=True,
        trusted=True,
    )
    assert floor == T0 + 4_700
    # 4.7 s is 700 ms past segment 3's due time (4.0 s, less 5 ms of decay): more than a
    # quarter of the target, so it waits for segment 4 (6.0 s) and comes back in phase.
    assert at == T0 + 6_000 - 5 + MARGIN_MS


def test_miss_is_followed_up_at_half_the_target_and_raises_the_estimate() -> None:
    schedule = ReloadSchedule()
    schedule.next_reload(
        requested_at_ms=T0 + 50,
        fetched_at_ms=T0 + 60,
        target_ms=TARGET,
        changed=True,
        edge_ms=T0,
        next_duration_ms=2000,
        new_edge=True,
        trusted=True,
    )
    assert schedule.delay_ms == 0
    # Aimed at 2.1 s; the segment due at 2.0 s was not listed yet.
    floor, at = schedule.next_reload(
        requested_at_ms=T0 + 2_100,
        fetched_at_ms=T0 + 2_105,
        target_ms=TARGET,
        changed=False,
        edge_ms=T0,
        next_duration_ms=2000,
        new_edge=False,
        trusted=True,
    )
    assert (floor, at) == (T0 + 3_100, T0 + 3_100)
    assert schedule.delay_ms == 101


def test_untrusted_clock_starts_from_the_first_listing() -> None:
    schedule = ReloadSchedule()
    floor, at = schedule.next_reload(
        requested_at_ms=5_000,
        fetched_at_ms=5_020,
        target_ms=TARGET,
        changed=True,
        edge_ms=T0,  # an origin clock far from ours
        next_duration_ms=2000,
        new_edge=True,
        trusted=False,
    )
    assert schedule.delay_ms == 5_020 - T0
    assert floor == 7_000
    assert at == 5_020 + 2000 + MARGIN_MS


def test_clock_trusted_within_the_bounds() -> None:
    assert clock_trusted(10_000, 10_000, 2000)
    assert clock_trusted(11_000, 10_000, 2000)
    assert not clock_trusted(11_001, 10_000, 2000)
    assert clock_trusted(6_000, 10_000, 2000)
    assert not clock_trusted(5_999, 10_000, 2000)


# a simulated polling origin ------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    """Publishes segment k (2 s) at T0 + (k+1)*dur + delay + jitter[k]; PDT = T0 + k*dur."""

    duration_ms: int
    delay_ms: int
    jitter_ms: tuple[int, ...]
    window: int = 6

    def published_ms(self, k: int) -> int:
        return T0 + (k + 1) * self.duration_ms + self.delay_ms + self.jitter_ms[k]

    def playlist(self, at_ms: int) -> MediaPlaylist:
        listed = [k for k in range(len(self.jitter_ms)) if self.published_ms(k) <= at_ms]
        # A real origin lists in order: a late segment holds back those after it.
        count = 0
        while count < len(listed) and listed[count] == count:
            count += 1
        seqs = range(max(0, count - self.window), count)
        segments = tuple(
            PlaylistSegment(
                seq=k,
                epoch=0,
                uri=f"s{k}.ts",
                duration_ms=self.duration_ms,
                pdt_ms=T0 + k * self.duration_ms,
                pdt_tagged=True,
                discontinuity=False,
                init=None,
                byterange=None,
                gap=False,
                title="",
            )
            for k in seqs
        )
        return MediaPlaylist(
            url="http://127.0.0.1/index.m3u8",
            target_duration_ms=TARGET,
            media_sequence=segments[0].seq if segments else 0,
            discontinuity_sequence=0,
            segments=segments,
            ended=False,
            playlist_type=None,
            has_pdt=bool(segments),
            version=None,
            encryption=None,
        )


def simulate(
    origin: Origin, *, start_ms: int, lateness: list[int]
) -> tuple[dict[int, int], list[tuple[int, int, bool]]]:
    """Poll as the worker does; returns each segment's listing lag and every load's
    (began, previous began, previous changed)."""
    tracker = MediaTracker()
    seen: dict[int, int] = {}
    loads: list[tuple[int, int, bool]] = []
    began = start_ms
    previous: tuple[int, bool] | None = None
    for late in lateness:
        fetched = began + 5
        update = tracker.update(origin.playlist(began), fetched, requested_at_ms=began)
        if previous is not None:
            loads.append((began, previous[0], previous[1]))
        for new in update.new:
            seen.setdefault(new.segment.seq, began - origin.published_ms(new.segment.seq))
        previous = (began, update.changed or previous is None)
        began = max(update.reload_at_ms, began + update.reload_after_ms) + late
    return seen, loads


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    delay=st.integers(0, 400),
    jitter=st.integers(0, 60),
    late=st.integers(0, 15),
    start=st.integers(0, 1999),
)
def test_reloads_never_precede_the_rfc_floor_and_lag_stays_bounded(
    seed: int, delay: int, jitter: int, late: int, start: int
) -> None:
    rng = random.Random(seed)
    segments = 400
    origin = Origin(
        duration_ms=2000,
        delay_ms=delay,
        jitter_ms=tuple(rng.randint(0, jitter) for _ in range(segments + 10)),
    )
    lateness = [rng.randint(0, late) for _ in range(segments * 2)]
    seen, loads = simulate(origin, start_ms=T0 + 2000 * 6 + start, lateness=lateness)
    for began, previous, changed in loads:
        assert began - previous >= (TARGET if changed else TARGET // 2)
    lags = [seen[k] for k in sorted(seen) if k >= 16 and k < segments - 2]
    assert len(lags) > 200
    assert min(lags) >= 0
    # Every segment is listed within a segment, a margin and the noise of one load...
    assert max(lags) <= 2000 + MARGIN_MS + jitter + 2 * late + 10
    # ...and nearly all within a quarter of the target past the margin.
    slow = [lag for lag in lags if lag > TARGET // 4 + MARGIN_MS + jitter + late]
    assert len(slow) <= len(lags) // 20
    assert statistics.median(lags) <= TARGET // 4 + MARGIN_MS


def test_steady_origin_is_followed_closely() -> None:
    origin = Origin(duration_ms=2000, delay_ms=80, jitter_ms=(0,) * 200)
    seen, _ = simulate(origin, start_ms=T0 + 13_900, lateness=[2] * 400)
    lags = [seen[k] for k in sorted(seen) if k >= 10 and k < 190]
    # Drift of 2 ms a load is pulled back every time the phase passes a quarter target.
    assert statistics.median(lags) <= 400
    assert sum(1 for lag in lags if lag > 700) <= 3
