"""Tests for livecut.hls.schedule: reloads just after publishing, never before RFC 8216 allows."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from livecut.hls.playlist import MediaPlaylist, PlaylistSegment
from livecut.hls.schedule import MARGIN_MS, ReloadSchedule, behind_limit_ms, clock_trusted
from livecut.hls.tracker import MediaTracker
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

T0 = 1_800_000_000_000
TARGET = 2000


def load(
    schedule: ReloadSchedule,
    requested: int,
    *,
    edge: int,
    new_edge: bool = True,
    changed: bool | None = None,
    trusted: bool = True,
) -> tuple[int, int]:
    return schedule.next_reload(
        requested_at_ms=requested,
        fetched_at_ms=requested + 10,
        target_ms=TARGET,
        changed=new_edge if changed is None else changed,
        edge_ms=edge,
        next_duration_ms=2000,
        new_edge=new_edge,
        trusted=trusted,
    )


def test_wide_bracket_is_probed_at_its_middle() -> None:
    schedule = ReloadSchedule()
    # The newest segment ended (PDT + duration) 1.3 s before it reached us: with a trusted
    # clock it was listed somewhere in (0, 1.3 s] after its end.
    floor, at = load(schedule, T0 + 1_290, edge=T0)
    assert (schedule.lo_ms, schedule.hi_ms) == (-1, 1_300)
    assert floor == T0 + 3_290
    # The next is due at 2.0 s + the bracket's middle (649 ms): the floor is 641 ms past
    # that, so the reload waits for the one after, at 4.649 s.
    assert at == T0 + 4_649


def test_narrow_bracket_aims_a_margin_past_its_lower_end() -> None:
    schedule = ReloadSchedule()
    assert load(schedule, T0 + 100, edge=T0) == (T0 + 2_100, T0 + 2_100)
    assert (schedule.lo_ms, schedule.hi_ms) == (-1, 110)
    assert schedule.delay_ms == -1 + MARGIN_MS


def test_drifted_phase_waits_for_the_segment_after() -> None:
    schedule = ReloadSchedule()
    load(schedule, T0 + 100, edge=T0)
    # The next load began 800 ms after its segment ended (a floor that crept):
    floor, at = load(schedule, T0 + 2_800, edge=T0 + 2_000)
    assert floor == T0 + 4_800
    # Segment 3 is due at 4.099 s; the floor is 701 ms past that, more than a third of
    # the target, so it waits for segment 4 (6.099 s) and comes back in phase.
    assert at == T0 + 6_099


def test_miss_is_followed_up_at_half_the_target_and_raises_the_lower_end() -> None:
    schedule = ReloadSchedule()
    assert load(schedule, T0 + 50, edge=T0) == (T0 + 2_050, T0 + 2_060)
    # Nothing new at 2.06 s: the segment is listed later than 60 ms after its end.
    floor, at = load(schedule, T0 + 2_060, edge=T0, new_edge=False)
    assert (floor, at) == (T0 + 3_060, T0 + 3_060)
    assert (schedule.lo_ms, schedule.hi_ms) == (60, 60 + 2 * MARGIN_MS)


def test_untrusted_clock_starts_from_the_first_listing() -> None:
    schedule = ReloadSchedule()
    # An origin clock far from ours: listed up to a target duration before we looked.
    floor, at = load(schedule, 5_000, edge=T0, trusted=False)
    assert (schedule.lo_ms, schedule.hi_ms) == (5_010 - T0 - TARGET, 5_010 - T0)
    assert floor == 7_000
    # Due at 6.01 s by the bracket's middle; the floor is 990 ms past it: probe at 8.01 s.
    assert at == 8_010


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
    origin: Origin, *, start_ms: int, lateness: list[int], fetch_ms: list[int] | None = None
) -> tuple[dict[int, int], list[tuple[int, int, bool]]]:
    """Poll as the worker does, each load taking fetch_ms (5 ms unless given; the
    origin answers as the request reaches it); returns each segment's listing lag and
    every load's (began, previous began, previous changed)."""
    tracker = MediaTracker()
    seen: dict[int, int] = {}
    loads: list[tuple[int, int, bool]] = []
    began = start_ms
    previous: tuple[int, bool] | None = None
    for n, late in enumerate(lateness):
        fetched = began + (fetch_ms[n % len(fetch_ms)] if fetch_ms else 5)
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
    # ...and nearly all within the drift limit past the margin.
    slow = [lag for lag in lags if lag > behind_limit_ms(TARGET) + MARGIN_MS + jitter + late]
    assert len(slow) <= len(lags) // 20
    assert statistics.median(lags) <= behind_limit_ms(TARGET) + MARGIN_MS


def test_steady_origin_is_followed_closely() -> None:
    origin = Origin(duration_ms=2000, delay_ms=80, jitter_ms=(0,) * 200)
    seen, _ = simulate(origin, start_ms=T0 + 13_900, lateness=[2] * 400)
    lags = [seen[k] for k in sorted(seen) if k >= 10 and k < 190]
    # Drift of 2 ms a load is pulled back every time the phase passes the drift limit.
    assert statistics.median(lags) <= 400
    assert sum(1 for lag in lags if lag > 700) <= 3


def test_slow_loads_narrow_the_bracket_in_few_segment_late_probes() -> None:
    # A busy daemon: each load takes 60-160 ms from request to parsed snapshot, so a load
    # that finds its segment bounds the listing delay from above no tighter than that.
    # Each probe off the floor lists one segment a segment late; a bracket held "wide"
    # until it is narrower than loads can make it cost several in a row (against ffmpeg
    # on a loaded machine, every other segment for 30 s).
    late_counts = []
    for delay in (300, 450, 600):
        for start in range(0, 2000, 250):
            rng = random.Random(7)
            origin = Origin(duration_ms=2000, delay_ms=delay, jitter_ms=(0,) * 200)
            fetch = [rng.randint(60, 160) for _ in range(400)]
            seen, _ = simulate(
                origin, start_ms=T0 + 12_000 + start, lateness=[2] * 400, fetch_ms=fetch
            )
            lags = {k: lag for k, lag in seen.items() if 7 <= k < 190}
            late = [k for k, lag in lags.items() if lag > 1000]
            assert all(k < 25 for k in late), (delay, start, late)  # then it has settled
            assert statistics.median(lags.values()) <= 400
            late_counts.append(len(late))
    assert max(late_counts) <= 5
    assert statistics.mean(late_counts) <= 3.5
