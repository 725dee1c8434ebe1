"""Instant HLS clips: a VOD media playlist that points at stored segments (pure, no I/O)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from livecut.clips.planner import JOIN_TOLERANCE_MS
from livecut.store.records import SegmentRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def vod_playlist(
    segments: Sequence[SegmentRow],
    *,
    segment_url: Callable[[SegmentRow], str],
    init_url: Callable[[str], str],
    holes: Sequence[tuple[int, int]] = (),
) -> str:
    """RFC 8216 VOD playlist of `segments` (in playback order), referencing them by URL.

    Every segment carries its own EXT-X-PROGRAM-DATE-TIME, so a player that maps
    wall-clock time (or a livecut that re-ingests the clip) places each one exactly.
    An EXT-X-DISCONTINUITY precedes a segment that changes epoch or rendition, that
    starts more than JOIN_TOLERANCE_MS after the previous one ended, or that lies
    across one of `holes` ((start_ms, end_ms) wall-clock stretches the caller knows
    are unrecorded); the media timestamps jump there and the player must be told.
    EXT-X-MAP is written first and again wherever the init section changes.

    Raises ValueError for an empty list, a segment that does not end after it starts,
    an fMP4 segment followed by one without an init section (not expressible in one
    playlist), an empty hole, or a URL that would break the playlist's syntax.
    """
    if not segments:
        raise ValueError("segments: a clip playlist needs at least one segment")
    for start_ms, end_ms in holes:
        if end_ms <= start_ms:
            raise ValueError(f"holes: ({start_ms}, {end_ms}) does not end after it starts")
    hole_starts, hole_reach = _join_index(holes)

    longest_ms = 0
    for segment in segments:
        duration_ms = segment.end_ms - segment.start_ms
        if duration_ms <= 0:
            raise ValueError(
                f"segments: seq {segment.seq} (epoch {segment.epoch}) ends at "
                f"{segment.end_ms}, not after its start {segment.start_ms}"
            )
        longest_ms = max(longest_ms, duration_ms)
    has_init = any(segment.init_path is not None for segment in segments)

    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if has_init else 3}",
        # RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest integer, must be at
        # most the target duration; the ceiling satisfies that and stricter validators.
        f"#EXT-X-TARGETDURATION:{-(-longest_ms // 1000)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    previous: SegmentRow | None = None
    for segment in segments:
        if previous is not None and _discontinuous(previous, segment, hole_starts, hole_reach):
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_path is not None and (
            previous is None or segment.init_path != previous.init_path
        ):
            lines.append(f'#EXT-X-MAP:URI="{_quoted_uri(init_url(segment.init_path), segment)}"')
        elif segment.init_path is None and previous is not None and previous.init_path is not None:
            raise ValueError(
                f"segments: seq {segment.seq} (epoch {segment.epoch}) has no init section but "
                f"follows an fMP4 segment; one HLS playlist cannot switch from fMP4 back to TS"
            )
        duration_ms = segment.end_ms - segment.start_ms
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(segment.start_ms)}")
        lines.append(f"#EXTINF:{duration_ms // 1000}.{duration_ms % 1000:03d},")
        lines.append(_uri_line(segment_url(segment), segment))
        previous = segment
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def format_pdt(unix_ms: int) -> str:
    """EXT-X-PROGRAM-DATE-TIME value: ISO 8601 UTC with milliseconds and 'Z'."""
    moment = _EPOCH + timedelta(milliseconds=unix_ms)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


def _join_index(holes: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Hole starts in order, and the latest hole end among the holes up to each one."""
    starts: list[int] = []
    reach: list[int] = []
    for start_ms, end_ms in sorted(holes):
        starts.append(start_ms)
        reach.append(max(end_ms, reach[-1]) if reach else end_ms)
    return starts, reach


def _discontinuous(
    previous: SegmentRow,
    segment: SegmentRow,
    hole_starts: list[int],
    hole_reach: list[int],
) -> bool:
    if (
        segment.epoch != previous.epoch
        or segment.rendition_id != previous.rendition_id
        or segment.params != previous.params
    ):
        return True
    if segment.start_ms - previous.end_ms > JOIN_TOLERANCE_MS:
        return True
    # A listed hole that starts before this segment and ends after the previous one
    # lies across the join, even when the two PDTs look adjacent.
    before = bisect.bisect_left(hole_starts, segment.start_ms)
    return before > 0 and hole_reach[before - 1] > previous.end_ms


def _uri_line(uri: str, segment: SegmentRow) -> str:
    if not uri or uri.startswith("#") or uri != uri.strip() or _has_line_break(uri):
        raise ValueError(
            f"segment_url: {uri!r} for seq {segment.seq} is not a usable playlist URI line"
        )
    return uri


def _quoted_uri(uri: str, segment: SegmentRow) -> str:
    if not uri or '"' in uri or _has_line_break(uri):
        raise ValueError(
            f"init_url: {uri!r} for seq {segment.seq} cannot be written as a quoted-string"
        )
    return uri


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text
