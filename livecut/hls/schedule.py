"""When to reload a polled media playlist: just after the next segment is due, never early.

RFC 8216 §6.3.4 sets the floor: after a load that found the playlist changed (and after
the first load), the next may begin no sooner than one target duration after that load
began; after a load that found nothing new, no sooner than half a target duration.

Reloading at the floor every time lets the phase between our loads and the origin's
publishing creep: each load begins a little after its floor (timer and loop latency),
and with segments as long as the target duration nothing pulls the phase back, so the
lag from publish to listed wanders across the whole target duration. Instead the
schedule estimates when the origin publishes:

- the listing delay: how long after the end of a segment on the playlist's own timeline
  (PDT + duration, or the arrival-clock estimate without PDT) the origin lists it, kept
  as a bracket (lo, hi]. A load that lists a new segment bounds it from above (fetched -
  end); every load bounds the next segment's from below (requested - its expected end),
  since that one was not listed yet. With a trusted origin clock it starts as (0, first
  listing] (an encoder lists a segment once it has finished it), otherwise as the
  target duration before the first listing.
- reloads aim into the bracket: at its middle while it is wide (each load then halves
  it), `MARGIN_MS` past its lower end once it is narrow; or at the floor when that is
  later. Narrow means within two margins plus the time a load takes (request to parsed
  snapshot, smoothed): a load that finds its segment bounds the delay from above only
  by when its answer arrived, so on a busy machine (loads of 100 ms) no load could
  narrow it below about twice that, and a bracket still called wide there kept probing,
  one segment late each time. When the floor has drifted more than a third of the
  target duration past the due time (or, while the bracket is wide, may have), the
  reload waits for the segment after (that one segment is listed about a segment late)
  so that the phase comes back to just after publishing. A bracket proved wrong by a
  late or early segment is narrowed around the new bound rather than opened wide, so
  jitter does not set off probing again.
- a load that finds nothing new is followed up at its floor (half a target duration).
- a load aimed by the estimate (not held back by the floor) that found its segment moves
  the lower end `DECAY_MS` earlier, so an estimate raised by a one-off late segment
  falls back; a later miss raises it again.
"""

from __future__ import annotations

from typing import Final

# How long after the due time to reload: covers an encoder's publishing jitter.
MARGIN_MS: Final = 100
# How much earlier each reload that found its segment aims next time.
DECAY_MS: Final = 5
# The origin's clock is trusted when the newest segment of a first snapshot ends no more
# than this far ahead of our clock...
TRUST_AHEAD_MS: Final = 1000
# ...and no further behind than one target duration (the most it can have been listed
# before we loaded) plus this.
TRUST_BEHIND_MS: Final = 2000


def behind_limit_ms(target_ms: int) -> int:
    """How far past due the floor may drift before a reload waits for the next segment
    to bring the phase back: each such wait lists one segment about a segment late, so
    the limit trades the typical lag against how often that happens."""
    return target_ms // 3


def clock_trusted(edge_ms: int, fetched_at_ms: int, target_ms: int) -> bool:
    """Whether a playlist's newest segment end (PDT + duration) agrees with local arrival."""
    skew = fetched_at_ms - edge_ms
    return -TRUST_AHEAD_MS <= skew <= target_ms + TRUST_BEHIND_MS


class ReloadSchedule:
    """One media playlist's reload times; fed after every load, on one millisecond clock."""

    def __init__(self) -> None:
        # The listing delay (listed - segment end) lies in (lo, hi]; None until a segment.
        self.lo_ms: int | None = None
        self.hi_ms: int | None = None
        self._aimed = False  # the last reload was timed by the estimate, not the floor
        # How long a load takes, request to snapshot (smoothed): no load can bound the
        # listing delay more tightly than that, so a bracket this wide is as narrow as
        # loads can make it.
        self.load_ms = 0.0

    @property
    def delay_ms(self) -> int | None:
        """Where reloads aim, after a segment's end: inside the bracket, at its lower end
        plus the margin once it is narrow, at its middle while it is wide."""
        if self.lo_ms is None or self.hi_ms is None:
            return None
        return min(self.hi_ms, self.lo_ms + max(MARGIN_MS, (self.hi_ms - self.lo_ms) // 2))

    def forget(self) -> None:
        """A new encoder or a new clock: what was learnt of the old one no longer holds."""
        self.lo_ms = self.hi_ms = None
        self._aimed = False

    def next_reload(
        self,
        *,
        requested_at_ms: int,
        fetched_at_ms: int,
        target_ms: int,
        changed: bool,
        edge_ms: int | None,
        next_duration_ms: int,
        new_edge: bool,
        trusted: bool,
    ) -> tuple[int, int]:
        """(the RFC floor, when to reload) after one load; both absolute.

        edge_ms: where the newest known segment ends on the playlist's timeline (None
        before any); new_edge: this load listed it for the first time.
        """
        floor = requested_at_ms + (target_ms if changed else target_ms // 2)
        took = max(0, fetched_at_ms - requested_at_ms)
        self.load_ms = took if self.load_ms == 0 else self.load_ms + (took - self.load_ms) / 4
        if edge_ms is None:
            return floor, floor
        if new_edge:
            listed_by = fetched_at_ms - edge_ms
            if self.lo_ms is None or self.hi_ms is None:
                # Trusted: an encoder lists a segment once it has finished it. Otherwise it
                # may have been listed as much as a target duration before we looked.
                self.lo_ms = min(0, listed_by) - 1 if trusted else listed_by - target_ms
                self.hi_ms = listed_by
            else:
                if self._aimed:
                    self.lo_ms -= DECAY_MS
                self._upper(listed_by)
        if self.lo_ms is None:
            return floor, floor
        # The segment after the newest was not there when this load began.
        self._lower(requested_at_ms - (edge_ms + next_duration_ms))
        delay = self.delay_ms
        assert delay is not None
        step = max(1, next_duration_ms)
        due = edge_ms + next_duration_ms + delay
        if due >= floor:
            self._aimed = True
            return floor, due
        self._aimed = False
        behind = (floor - due) % step  # past the latest segment due by the floor
        worst = behind
        assert self.hi_ms is not None
        if self.hi_ms - self.lo_ms > 2 * MARGIN_MS + self.load_ms:
            # Loads held at the floor all see the same phase and teach nothing: when the
            # floor may be more than a quarter behind, step off it to halve the bracket
            # (while halving it can still teach something: not below a load's own time).
            # Behind as a function of the delay falls as the delay grows, and jumps back
            # up a whole segment where the floor is exactly a segment past due.
            worst = (floor - (edge_ms + next_duration_ms + self.lo_ms)) % step
            if self.hi_ms - self.lo_ms > worst:
                worst = step
        if not new_edge or worst <= behind_limit_ms(target_ms):
            return floor, floor
        # Too far behind publishing: wait for the segment after that instead.
        self._aimed = True
        return floor, floor - behind + step

    def _lower(self, bound: int) -> None:
        assert self.lo_ms is not None and self.hi_ms is not None
        self.lo_ms = max(self.lo_ms, bound)
        if self.hi_ms <= self.lo_ms:  # later than we thought (jitter, a slower origin)
            self.hi_ms = self.lo_ms + 2 * MARGIN_MS

    def _upper(self, bound: int) -> None:
        assert self.lo_ms is not None and self.hi_ms is not None
        self.hi_ms = min(self.hi_ms, bound)
        if self.lo_ms >= self.hi_ms:  # earlier than we thought
            self.lo_ms = self.hi_ms - 2 * MARGIN_MS
