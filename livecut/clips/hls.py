"""HLS media playlists over stored segments (pure, no I/O): instant clips and recordings
as VOD, and the live (DVR) playlist of a stream."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from livecut.store.records import MEDIA_JOIN_MS, SegmentRow, media_runs_on

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GAP_CLASS = "com.livecut.gap"  # EXT-X-DATERANGE CLASS of an unrecorded stretch


@dataclass(frozen=True, kw_only=True, slots=True)
class GapMark:
    """An unrecorded stretch, written as an EXT-X-DATERANGE so players can show it."""

    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveWindow:
    """What makes a media playlist a live one: where its numbering stands, and whether
    it may still grow. Segments are then numbered by their own `playback_seq` (which
    must run on by one from `segments[0]`), and a discontinuity is written wherever
    `playback_disc` changes, so the numbers agree from one reload to the next."""

    event: bool  # EXT-X-PLAYLIST-TYPE:EVENT: nothing listed will ever be removed
    ended: bool  # EXT-X-ENDLIST: nothing more will be added
    can_block_reload: bool  # EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES (_HLS_msn)


def vod_playlist(
    segments: Sequence[SegmentRow],
    *,
    segment_url: Callable[[SegmentRow], str],
    init_url: Callable[[str], str],
    holes: Sequence[tuple[int, int]] = (),
    gaps: Sequence[GapMark] = (),
) -> str:
    """RFC 8216 VOD playlist of `segments` (in playback order), referencing them by URL.

    Every segment carries its own EXT-X-PROGRAM-DATE-TIME, so a player that maps
    wall-clock time (or a livecut that re-ingests the clip) places each one exactly.
    An EXT-X-DISCONTINUITY precedes a segment that changes epoch or rendition, that
    starts more than MEDIA_JOIN_MS after the previous one ended, or that lies
    across one of `holes` ((start_ms, end_ms) wall-clock stretches the caller knows
    are unrecorded); the media timestamps jump there and the player must be told.
    EXT-X-MAP is written first and again wherever the init section changes. Each of
    `gaps` becomes an EXT-X-DATERANGE of CLASS GAP_CLASS before the segment after it.

    Raises ValueError for an empty list, a segment that does not end after it starts,
    an fMP4 segment followed by one without an init section (not expressible in one
    playlist), an empty hole, or a URL that would break the playlist's syntax.
    """
    for start_ms, end_ms in holes:
        if end_ms <= start_ms:
            raise ValueError(f"holes: ({start_ms}, {end_ms}) does not end after it starts")
    hole_starts, hole_reach = _join_index(holes)

    def discontinuous(previous: SegmentRow, segment: SegmentRow) -> bool:
        return _discontinuous(previous, segment, hole_starts, hole_reach)

    return _media_playlist(
        segments,
        segment_url=segment_url,
        init_url=init_url,
        discontinuous=discontinuous,
        gaps=gaps,
        live=None,
    )


def live_playlist(
    segments: Sequence[SegmentRow],
    *,
    window: LiveWindow,
    segment_url: Callable[[SegmentRow], str],
    init_url: Callable[[str], str],
    gaps: Sequence[GapMark] = (),
) -> str:
    """A live media playlist of a stream's stored segments (a DVR window): as
    vod_playlist, but numbered and cut into discontinuities by the index's playback
    numbering, so that every reload agrees with the one before.

    Raises ValueError as vod_playlist does, and for segments without a playback
    number or whose numbers do not run on by one.
    """
    for previous, segment in pairwise(segments):
        if (
            previous.playback_seq is None
            or segment.playback_seq is None
            or segment.playback_seq != previous.playback_seq + 1
        ):
            raise ValueError(
                f"segments: playback numbers must run on by one, not {previous.playback_seq} "
                f"then {segment.playback_seq}"
            )
    if segments and segments[0].playback_seq is None:
        raise ValueError("segments: a live playlist needs the index's playback numbers")
    return _media_playlist(
        segments,
        segment_url=segment_url,
        init_url=init_url,
        discontinuous=lambda previous, segment: segment.playback_disc != previous.playback_disc,
        gaps=gaps,
        live=window,
    )


def _media_playlist(
    segments: Sequence[SegmentRow],
    *,
    segment_url: Callable[[SegmentRow], str],
    init_url: Callable[[str], str],
    discontinuous: Callable[[SegmentRow, SegmentRow], bool],
    gaps: Sequence[GapMark],
    live: LiveWindow | None,
) -> str:
    if not segments:
        raise ValueError("segments: a playlist needs at least one segment")
    longest_ms = 0
    for segment in segments:
        duration_ms = segment.end_ms - segment.start_ms
        if duration_ms <= 0:
            raise ValueError(
                f"segments: seq {segment.seq} (epoch {segment.epoch}) ends at "
                f"{segment.end_ms}, not after its start {segment.start_ms}"
            )
        longest_ms = max(longest_ms, duration_ms)
    for gap in gaps:
        if gap.end_ms <= gap.start_ms:
            raise ValueError(f"gaps: ({gap.start_ms}, {gap.end_ms}) does not end after it starts")
    has_init = any(segment.init_path is not None for segment in segments)
    first = segments[0]

    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if has_init else 3}",
        # RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest integer, must be at
        # most the target duration; the ceiling satisfies that and stricter validators.
        f"#EXT-X-TARGETDURATION:{-(-longest_ms // 1000)}",
    ]
    if live is None:
        lines += ["#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    else:
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first.playback_seq}")
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{first.playback_disc or 0}")
        if live.event:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        if live.can_block_reload and not live.ended:
            lines.append("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    pending = sorted(gaps, key=lambda g: (g.start_ms, g.end_ms))
    previous: SegmentRow | None = None
    for segment in segments:
        # A gap is marked where the player reaches it: before the segment that ends after it.
        while pending and pending[0].start_ms < segment.end_ms:
            lines.append(_gap_tag(pending.pop(0)))
        if previous is not None and discontinuous(previous, segment):
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
    lines.extend(_gap_tag(gap) for gap in pending)
    if live is None or live.ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _gap_tag(gap: GapMark) -> str:
    # RFC 8216 §4.3.2.7: attribute values are quoted strings; a client attribute is X-.
    reason = "".join(c for c in gap.reason if c.isprintable() and c not in '"')
    return (
        f'#EXT-X-DATERANGE:ID="gap-{gap.start_ms}-{gap.end_ms}",CLASS="{GAP_CLASS}",'
        f'START-DATE="{format_pdt(gap.start_ms)}",END-DATE="{format_pdt(gap.end_ms)}",'
        f'X-REASON="{reason}"'
    )


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
    if not media_runs_on(previous, segment):
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


def gap_marks(
    segments: Sequence[SegmentRow], recorded_gaps: Sequence[tuple[int, int, str]] = ()
) -> list[GapMark]:
    """The unrecorded stretches between consecutive `segments` (in playback order), each
    with the reason of a recorded gap (start_ms, end_ms, reason) that overlaps it, or
    "not_recorded" (between sessions, or before a recording resumed)."""
    marks: list[GapMark] = []
    for previous, segment in pairwise(segments):
        if segment.start_ms - previous.end_ms <= MEDIA_JOIN_MS:
            continue
        start_ms, end_ms = previous.end_ms, segment.start_ms
        reason = next(
            (why for low, high, why in recorded_gaps if low < end_ms and high > start_ms),
            "not_recorded",
        )
        marks.append(GapMark(start_ms=start_ms, end_ms=end_ms, reason=reason))
    return marks


def carry_query(playlist: str, query: str) -> str:
    """The playlist with `query` added to every URI it lists (segment lines and URI="…"
    attributes), so a signed playlist's media open with the same signature."""
    if not query:
        return playlist

    def signed(uri: str) -> str:
        return f"{uri}{'&' if '?' in uri else '?'}{query}"

    lines = []
    for line in playlist.split("\n"):
        if line and not line.startswith("#"):
            line = signed(line)
        elif 'URI="' in line:
            head, _, rest = line.partition('URI="')
            uri, _, tail = rest.partition('"')
            line = f'{head}URI="{signed(uri)}"{tail}'
        lines.append(line)
    return "\n".join(lines)
