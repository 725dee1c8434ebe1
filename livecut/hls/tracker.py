"""Turn successive snapshots of one media playlist into new segments, gaps, resets, ends, jumps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

from livecut.hls.playlist import ByteRange, MediaPlaylist, PlaylistSegment
from livecut.hls.schedule import ReloadSchedule, clock_trusted

# Two copies of one segment may resolve slightly different PDTs when only some
# segments carry the tag (EXTINF is rounded); a restarted encoder is seconds apart.
_SAME_PDT_TOLERANCE_MS: Final = 1000
# A PDT that strays from where the previous segment ended by more than this (or the
# target duration, if longer) is a clock jump, not rounding or an encoder's jitter.
_MIN_PDT_JUMP_MS: Final = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class NewSegment:
    segment: PlaylistSegment
    start_ms: int  # wall start: its pdt_ms, or for playlists without PDT an arrival-clock estimate
    clock: Literal["origin", "local"]
    first_seen_ms: int  # fetched_at of the snapshot where it first appeared
    expires_at_ms: int  # estimate of when it leaves the playlist; bounds fetch retries
    # When the origin published it: its end (PDT + duration) when the origin's clock is
    # trusted (see hls.schedule.clock_trusted), else when a playlist first listed it.
    published_ms: int = 0
    publish_clock: Literal["origin", "listing"] = "listing"
    # Listed already in the first snapshot (or the first after a reset), behind the newest:
    # recorded late because we started late, not because ingest is slow.
    backfill: bool = False
    # A new discontinuity epoch begins with it: its timestamps do not follow on from the
    # previous emitted segment's (also when the DISCONTINUITY tag itself expired unseen).
    discontinuity: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Gap:
    epoch: int
    first_seq: int  # first missing media sequence number
    last_seq: int  # last missing media sequence number (inclusive)
    start_ms: int  # wall time where the hole begins
    end_ms: int  # wall time where it ends (>= start_ms)
    # expired: segments left the playlist before we saw them; tagged_gap: EXT-X-GAP;
    # pdt_jump: the origin's clock leapt forward between two consecutive segments (no
    # segment is missing: first_seq is the segment after the leap, last_seq = first_seq - 1).
    reason: Literal["expired", "tagged_gap", "pdt_jump"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PdtJump:
    """Within one epoch, a segment's PDT is not where the previous one ended."""

    seq: int  # the segment whose PDT jumped
    expected_ms: int  # where the previous segment ended (emitted or EXT-X-GAP)
    actual_ms: int  # its PDT; below expected_ms the clock went back (start a new session)


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackerUpdate:
    new: tuple[NewSegment, ...]  # in media-sequence order, none ever emitted before
    gaps: tuple[Gap, ...]  # in media-sequence order
    reset: bool  # a new encoder: the caller starts a new session before storing `new`
    ended: bool  # EXT-X-ENDLIST seen (reported once)
    changed: bool  # new segments, new gaps, a reset or the end appeared
    reload_after_ms: int  # RFC 8216 §6.3.4 floor after the request began; 0 once ended
    pdt_jumps: tuple[PdtJump, ...] = ()  # in media-sequence order; forward ones are also Gaps
    next_msn: int | None = None  # last consumed seq + 1: the _HLS_msn of a blocking reload
    # When to reload (absolute, on fetched_at's clock): just after the next segment is due,
    # never before requested_at + reload_after_ms. See hls.schedule.
    reload_at_ms: int = 0


@dataclass(kw_only=True, slots=True)
class _Batch:
    """What one update takes from a snapshot."""

    new: list[NewSegment] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # media-sequence order
    jumps: list[PdtJump] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Identity:
    uri: str
    byterange: ByteRange | None
    duration_ms: int
    pdt_ms: int | None

    @classmethod
    def of(cls, seg: PlaylistSegment) -> _Identity:
        # Without the query: signed URLs carry tokens that change from reload to reload.
        return cls(
            uri=seg.uri.split("?", 1)[0],
            byterange=seg.byterange,
            duration_ms=seg.duration_ms,
            pdt_ms=seg.pdt_ms,
        )

    def same_as(self, other: _Identity) -> bool:
        if (self.uri, self.byterange, self.duration_ms) != (
            other.uri,
            other.byterange,
            other.duration_ms,
        ):
            return False
        if self.pdt_ms is None or other.pdt_ms is None:
            return self.pdt_ms is other.pdt_ms
        return abs(self.pdt_ms - other.pdt_ms) <= _SAME_PDT_TOLERANCE_MS


class MediaTracker:
    """Remembers what one media playlist has already yielded; never yields it twice."""

    def __init__(self) -> None:
        self._loaded = False
        self._last_seq: int | None = None  # highest seq consumed (emitted or covered by a gap)
        self._last_epoch = 0
        self._last_end_ms = 0  # wall end of the last consumed segment
        self._last_emitted_epoch: int | None = None  # of the last NewSegment this session
        self._media_sequence: int | None = None  # of the previous non-empty snapshot
        self._discontinuity_sequence: int | None = None
        self._ended_reported = False
        self._last_change_ms: int | None = None
        # Segments of the recent snapshots by seq, about two windows' worth: enough to
        # recognise a stale copy, too little to mistake a restart from seq 0 for one.
        self._known: dict[int, _Identity] = {}
        self._longest_window = 0
        self._schedule = ReloadSchedule()
        self._trusted: bool | None = None  # the origin's PDT clock; decided on first sight

    @property
    def last_change_ms(self) -> int | None:
        """fetched_at of the last snapshot that brought a new segment."""
        return self._last_change_ms

    @property
    def last_seq(self) -> int | None:
        """Highest media sequence number consumed: emitted, or covered by a Gap."""
        return self._last_seq

    def silent_for_ms(self, now_ms: int) -> int:
        if self._last_change_ms is None:
            return 0
        return max(0, now_ms - self._last_change_ms)

    @property
    def origin_clock_trusted(self) -> bool:
        return bool(self._trusted)

    def update(
        self, playlist: MediaPlaylist, fetched_at_ms: int, *, requested_at_ms: int | None = None
    ) -> TrackerUpdate:
        """One snapshot, as it arrived at fetched_at_ms; its request began at requested_at_ms."""
        requested_ms = fetched_at_ms if requested_at_ms is None else requested_at_ms
        first_load = not self._loaded
        self._loaded = True
        reset = False
        stale = False
        # Empty snapshots say nothing about the encoder; keep comparing with real ones.
        if playlist.segments and (self._went_back(playlist) or self._replaced(playlist)):
            stale = self._is_stale_copy(playlist)
            reset = not stale
            if reset:
                self._forget()
        if playlist.segments:
            self._remember(playlist, newest=not stale)

        if self._trusted is None and playlist.segments:
            last = playlist.segments[-1]
            self._trusted = last.pdt_ms is not None and clock_trusted(
                last.pdt_ms + last.duration_ms, fetched_at_ms, playlist.target_duration_ms
            )
        if self._last_seq is None:
            batch = self._take_all(playlist, fetched_at_ms)
        else:
            batch = self._take_after(playlist, fetched_at_ms, self._last_seq)
        new, gaps = batch.new, batch.gaps

        ended = playlist.ended and not self._ended_reported
        self._ended_reported = self._ended_reported or playlist.ended
        if new:
            self._last_change_ms = fetched_at_ms
        changed = bool(new or gaps or reset or ended)
        if any(j.actual_ms != j.expected_ms for j in batch.jumps):
            self._schedule.forget()  # the origin's clock moved: learn its phase anew
        floor_ms, reload_at_ms = self._schedule.next_reload(
            requested_at_ms=requested_ms,
            fetched_at_ms=fetched_at_ms,
            target_ms=playlist.target_duration_ms,
            changed=changed or first_load,
            edge_ms=None if self._last_seq is None else self._last_end_ms,
            next_duration_ms=(
                playlist.segments[-1].duration_ms
                if playlist.segments
                else playlist.target_duration_ms
            ),
            new_edge=bool(new or gaps),
            trusted=bool(self._trusted),
        )
        if playlist.ended:
            reload_after_ms = 0
            reload_at_ms = requested_ms
        else:
            reload_after_ms = floor_ms - requested_ms
        return TrackerUpdate(
            new=tuple(new),
            gaps=tuple(gaps),
            reset=reset,
            ended=ended,
            changed=changed,
            reload_after_ms=reload_after_ms,
            pdt_jumps=tuple(batch.jumps),
            next_msn=None if self._last_seq is None else self._last_seq + 1,
            reload_at_ms=reload_at_ms,
        )

    def _forget(self) -> None:
        self._last_seq = None
        self._last_epoch = 0
        self._last_end_ms = 0
        self._last_emitted_epoch = None
        self._ended_reported = False
        self._known.clear()
        self._longest_window = 0
        self._schedule.forget()
        self._trusted = None

    def _remember(self, playlist: MediaPlaylist, *, newest: bool) -> None:
        if newest:
            self._media_sequence = playlist.media_sequence
            self._discontinuity_sequence = playlist.discontinuity_sequence
        for seg in playlist.segments:
            self._known[seg.seq] = _Identity.of(seg)
        self._longest_window = max(self._longest_window, len(playlist.segments))
        edge = playlist.segments[-1].seq
        if self._last_seq is not None:
            edge = max(edge, self._last_seq)
        oldest = edge - 2 * self._longest_window
        self._known = {seq: known for seq, known in self._known.items() if seq > oldest}

    def _went_back(self, playlist: MediaPlaylist) -> bool:
        if self._last_seq is None or self._media_sequence is None:
            return False
        return (
            playlist.segments[-1].seq < self._last_seq
            or playlist.media_sequence < self._media_sequence
            or (
                self._discontinuity_sequence is not None
                and playlist.discontinuity_sequence < self._discontinuity_sequence
            )
        )

    def _replaced(self, playlist: MediaPlaylist) -> bool:
        """A sequence number already consumed now names another segment: a new encoder
        whose numbering caught up with the old one's (e.g. both windows end at seq 1)."""
        if self._last_seq is None:
            return False
        return any(
            (known := self._known.get(seg.seq)) is not None and not known.same_as(_Identity.of(seg))
            for seg in playlist.segments
            if seg.seq <= self._last_seq
        )

    def _is_stale_copy(self, playlist: MediaPlaylist) -> bool:
        """An older copy of the playlist (a lagging CDN edge), not a new encoder.

        It is one when it overlaps the recent snapshots and every shared sequence number
        names the same segment (URI, byte range, duration, PDT). A restarted encoder that
        reuses names shows itself by its PDTs, or by starting further back than a window;
        a stale edge lags by a reload or two.
        """
        shared = 0
        for seg in playlist.segments:
            known = self._known.get(seg.seq)
            if known is None:
                continue
            if not known.same_as(_Identity.of(seg)):
                return False
            shared += 1
        return shared > 0

    def _take_all(self, playlist: MediaPlaylist, fetched_at_ms: int) -> _Batch:
        """First snapshot (or after a reset): the whole window is new."""
        segments = playlist.segments
        batch = _Batch()
        if not segments:
            return batch
        if playlist.has_pdt:
            start_ms = _pdt(segments[0])
        else:
            # Arrival clock: the live edge (end of the last segment) is now.
            start_ms = fetched_at_ms - sum(seg.duration_ms for seg in segments)
        self._last_epoch = segments[0].epoch
        self._consume(playlist, 0, start_ms, fetched_at_ms, batch)
        # Only the newest was listed just now; the rest were published before we looked.
        batch.new[:-1] = [replace(n, backfill=True) for n in batch.new[:-1]]
        return batch

    def _take_after(self, playlist: MediaPlaylist, fetched_at_ms: int, last_seq: int) -> _Batch:
        segments = playlist.segments
        batch = _Batch()
        index = next((i for i, seg in enumerate(segments) if seg.seq > last_seq), None)
        if index is None:
            return batch
        first = segments[index]
        if playlist.has_pdt:
            start_ms = _pdt(first)
        else:
            start_ms = self._last_end_ms
            if first.seq > last_seq + 1:
                # The expired segments took time we cannot sum; carrying forward would
                # make the hole zero-length, so place the window on the arrival clock.
                live_edge_start = fetched_at_ms - sum(seg.duration_ms for seg in segments[index:])
                start_ms = max(start_ms, live_edge_start)
        if first.seq > last_seq + 1:
            batch.gaps.append(
                Gap(
                    epoch=self._last_epoch,
                    first_seq=last_seq + 1,
                    last_seq=first.seq - 1,
                    start_ms=self._last_end_ms,
                    end_ms=max(self._last_end_ms, start_ms),
                    reason="expired",
                )
            )
        self._consume(playlist, index, start_ms, fetched_at_ms, batch)
        return batch

    def _pdt_jump(
        self, playlist: MediaPlaylist, seg: PlaylistSegment, start_ms: int
    ) -> PdtJump | None:
        """Whether seg's PDT leaves where the previous consumed segment ended.

        Only within an epoch: a discontinuity may take up any new clock. Across expired
        segments the time they took is unknown, so only a step back can be told apart.
        """
        if (
            not playlist.has_pdt
            or self._last_seq is None
            or seg.seq <= self._last_seq
            or seg.epoch != self._last_epoch
        ):
            return None
        threshold = max(_MIN_PDT_JUMP_MS, playlist.target_duration_ms)
        expected_ms = self._last_end_ms
        backward = start_ms < expected_ms - threshold
        forward = seg.seq == self._last_seq + 1 and start_ms > expected_ms + threshold
        if not (backward or forward):
            return None
        return PdtJump(seq=seg.seq, expected_ms=expected_ms, actual_ms=start_ms)

    def _consume(
        self,
        playlist: MediaPlaylist,
        index: int,
        start_ms: int,
        fetched_at_ms: int,
        batch: _Batch,
    ) -> None:
        """Emit segments[index:], the first starting at start_ms; GAP segments become Gaps."""
        clock: Literal["origin", "local"] = "origin" if playlist.has_pdt else "local"
        trusted = playlist.has_pdt and bool(self._trusted)
        gaps = batch.gaps
        elapsed_ms = sum(seg.duration_ms for seg in playlist.segments[:index])
        for seg in playlist.segments[index:]:
            if playlist.has_pdt:
                start_ms = _pdt(seg)
            jump = self._pdt_jump(playlist, seg, start_ms)
            if jump is not None:
                batch.jumps.append(jump)
                if jump.actual_ms > jump.expected_ms:
                    gaps.append(
                        Gap(
                            epoch=seg.epoch,
                            first_seq=seg.seq,
                            last_seq=seg.seq - 1,  # nothing is missing but time
                            start_ms=jump.expected_ms,
                            end_ms=jump.actual_ms,
                            reason="pdt_jump",
                        )
                    )
            elapsed_ms += seg.duration_ms
            end_ms = start_ms + seg.duration_ms
            if seg.gap:
                last = gaps[-1] if gaps else None
                if (
                    last is not None
                    and last.reason == "tagged_gap"
                    and last.last_seq == seg.seq - 1
                    and last.epoch == seg.epoch
                ):
                    gaps[-1] = Gap(
                        epoch=last.epoch,
                        first_seq=last.first_seq,
                        last_seq=seg.seq,
                        start_ms=last.start_ms,
                        end_ms=max(last.end_ms, end_ms),
                        reason="tagged_gap",
                    )
                else:
                    gaps.append(
                        Gap(
                            epoch=seg.epoch,
                            first_seq=seg.seq,
                            last_seq=seg.seq,
                            start_ms=start_ms,
                            end_ms=max(start_ms, end_ms),
                            reason="tagged_gap",
                        )
                    )
            else:
                previous_epoch = self._last_emitted_epoch
                batch.new.append(
                    NewSegment(
                        segment=seg,
                        start_ms=start_ms,
                        clock=clock,
                        first_seen_ms=fetched_at_ms,
                        # It scrolls out once everything up to and including it has.
                        expires_at_ms=fetched_at_ms + elapsed_ms,
                        published_ms=end_ms if trusted else fetched_at_ms,
                        publish_clock="origin" if trusted else "listing",
                        # By epoch, not only the tag: the tagged segment may have expired
                        # or been a GAP, and the epoch number still tells.
                        discontinuity=seg.discontinuity
                        or (previous_epoch is not None and previous_epoch != seg.epoch),
                    )
                )
                self._last_emitted_epoch = seg.epoch
            self._last_seq = seg.seq
            self._last_epoch = seg.epoch
            self._last_end_ms = end_ms
            start_ms = end_ms


def _pdt(seg: PlaylistSegment) -> int:
    # The parser resolves a PDT for every segment of a playlist that has any.
    assert seg.pdt_ms is not None
    return seg.pdt_ms
