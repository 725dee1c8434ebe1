"""Tests for livecut.clips.hls: instant clip playlists parse back to the segments they list."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecut.clips.hls import (
    GapMark,
    LiveWindow,
    carry_query,
    format_pdt,
    gap_marks,
    live_playlist,
    vod_playlist,
)
from livecut.hls.playlist import MediaPlaylist, parse_pdt_ms, parse_playlist
from livecut.store.records import SegmentRow
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

URL = "http://127.0.0.1:8080/v1/clips/clip_1/index.m3u8"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def row(
    seq: int,
    start_ms: int,
    end_ms: int,
    *,
    epoch: int = 0,
    rendition_id: int = 1,
    init_path: str | None = None,
) -> SegmentRow:
    return SegmentRow(
        id=seq + 1,
        rendition_id=rendition_id,
        seq=seq,
        epoch=epoch,
        start_ms=start_ms,
        end_ms=end_ms,
        path=f"streams/demo/s1/r{rendition_id}/{epoch}-{seq}.{'m4s' if init_path else 'ts'}",
        size=1000,
        init_path=init_path,
        ref_pts_s=10.0,
    )


def segment_url(segment: SegmentRow) -> str:
    return f"../../segments/{segment.id}"


def init_url(init_path: str) -> str:
    return f"/v1/init/{init_path}"


def render(segments: Sequence[SegmentRow], holes: Sequence[tuple[int, int]] = ()) -> str:
    return vod_playlist(segments, segment_url=segment_url, init_url=init_url, holes=holes)


def parse(text: str) -> MediaPlaylist:
    parsed = parse_playlist(text, URL)
    assert isinstance(parsed, MediaPlaylist)
    return parsed


def contiguous(count: int, *, ms: int = 2000, init_path: str | None = None) -> list[SegmentRow]:
    return [row(i, T0 + i * ms, T0 + (i + 1) * ms, init_path=init_path) for i in range(count)]


def test_ts_clip_is_the_exact_playlist() -> None:
    assert render(contiguous(2)) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n"
        "#EXTINF:2.000,\n"
        "../../segments/1\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:02.000Z\n"
        "#EXTINF:2.000,\n"
        "../../segments/2\n"
        "#EXT-X-ENDLIST\n"
    )


def test_ts_clip_round_trips() -> None:
    segments = contiguous(3)
    parsed = parse(render(segments))
    assert parsed.ended
    assert parsed.playlist_type == "VOD"
    assert parsed.version == 3
    assert parsed.media_sequence == 0
    assert parsed.target_duration_ms == 2000
    assert [s.seq for s in parsed.segments] == [0, 1, 2]
    assert [s.pdt_ms for s in parsed.segments] == [T0, T0 + 2000, T0 + 4000]
    assert all(s.pdt_tagged for s in parsed.segments)
    assert [s.duration_ms for s in parsed.segments] == [2000, 2000, 2000]
    assert [s.epoch for s in parsed.segments] == [0, 0, 0]
    assert [s.init for s in parsed.segments] == [None, None, None]
    assert [s.uri for s in parsed.segments] == [
        "http://127.0.0.1:8080/v1/segments/1",
        "http://127.0.0.1:8080/v1/segments/2",
        "http://127.0.0.1:8080/v1/segments/3",
    ]


def test_fmp4_clip_declares_its_init_section_once() -> None:
    text = render(contiguous(3, init_path="streams/demo/s1/r1/init.mp4"))
    assert "#EXT-X-VERSION:7\n" in text
    assert text.count("#EXT-X-MAP:") == 1
    assert text.index("#EXT-X-MAP:") < text.index("#EXT-X-PROGRAM-DATE-TIME:")
    parsed = parse(text)
    assert parsed.version == 7
    init_uris = {s.init.uri if s.init else None for s in parsed.segments}
    assert init_uris == {"http://127.0.0.1:8080/v1/init/streams/demo/s1/r1/init.mp4"}


@pytest.mark.parametrize(
    ("longest_ms", "target"),
    [(1, 1), (999, 1), (1000, 1), (1001, 2), (1999, 2), (2000, 2), (2001, 3), (6000, 6)],
)
def test_target_duration_is_the_ceiling_of_the_longest_segment(
    longest_ms: int, target: int
) -> None:
    segments = [row(0, T0, T0 + 500), row(1, T0 + 500, T0 + 500 + longest_ms)]
    text = render(segments)
    assert f"#EXT-X-TARGETDURATION:{target}\n" in text
    assert parse(text).target_duration_ms == target * 1000


def test_durations_keep_milliseconds() -> None:
    segments = [row(0, T0, T0 + 1234), row(1, T0 + 1234, T0 + 1234 + 5)]
    text = render(segments)
    assert "#EXTINF:1.234,\n" in text
    assert "#EXTINF:0.005,\n" in text
    assert [s.duration_ms for s in parse(text).segments] == [1234, 5]


def test_a_new_epoch_is_a_discontinuity() -> None:
    segments = [row(0, T0, T0 + 2000), row(1, T0 + 2000, T0 + 4000, epoch=1)]
    text = render(segments)
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert [s.discontinuity for s in parse(text).segments] == [False, True]
    assert [s.epoch for s in parse(text).segments] == [0, 1]


def test_another_rendition_is_a_discontinuity() -> None:
    segments = [row(0, T0, T0 + 2000), row(1, T0 + 2000, T0 + 4000, rendition_id=2)]
    assert [s.discontinuity for s in parse(render(segments)).segments] == [False, True]


@pytest.mark.parametrize(("gap_ms", "discontinuity"), [(-40, False), (0, False), (100, False)])
def test_pdt_jitter_is_a_join(gap_ms: int, discontinuity: bool) -> None:
    segments = [row(0, T0, T0 + 2000), row(1, T0 + 2000 + gap_ms, T0 + 4000)]
    assert [s.discontinuity for s in parse(render(segments)).segments] == [False, discontinuity]


def test_a_hole_over_100_ms_is_a_discontinuity_and_keeps_its_pdt() -> None:
    segments = [row(0, T0, T0 + 2000), row(5, T0 + 2101, T0 + 4101)]
    parsed = parse(render(segments))
    assert [s.discontinuity for s in parsed.segments] == [False, True]
    assert [s.pdt_ms for s in parsed.segments] == [T0, T0 + 2101]


def test_a_listed_hole_across_a_join_is_a_discontinuity() -> None:
    segments = contiguous(3)
    # The index says media is missing around the second join even though PDTs touch.
    parsed = parse(render(segments, holes=[(T0 + 3990, T0 + 4010)]))
    assert [s.discontinuity for s in parsed.segments] == [False, False, True]


def test_a_listed_hole_away_from_any_join_changes_nothing() -> None:
    segments = contiguous(3)
    holes = [(T0 - 5000, T0 - 1000), (T0 + 500, T0 + 1500), (T0 + 9000, T0 + 9500)]
    assert render(segments, holes=holes) == render(segments)


def test_holes_that_only_touch_a_join_change_nothing() -> None:
    segments = contiguous(2)
    holes = [(T0 + 1000, T0 + 2000), (T0 + 2000, T0 + 3000)]  # inside either segment
    assert render(segments, holes=holes) == render(segments)


def test_the_map_follows_the_discontinuity_when_the_init_section_changes() -> None:
    segments = [
        row(0, T0, T0 + 2000, init_path="a/init.mp4"),
        row(1, T0 + 2000, T0 + 4000, init_path="a/init.mp4"),
        row(0, T0 + 9000, T0 + 11000, epoch=1, rendition_id=2, init_path="b/init.mp4"),
    ]
    text = render(segments)
    lines = text.splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1] == '#EXT-X-MAP:URI="/v1/init/b/init.mp4"'
    assert lines[at + 2] == "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:09.000Z"
    parsed = parse(text)
    assert [s.init.uri if s.init else None for s in parsed.segments] == [
        "http://127.0.0.1:8080/v1/init/a/init.mp4",
        "http://127.0.0.1:8080/v1/init/a/init.mp4",
        "http://127.0.0.1:8080/v1/init/b/init.mp4",
    ]
    assert [s.seq for s in parsed.segments] == [0, 1, 2]  # playlist positions, not origin seqs


def test_ts_then_fmp4_is_allowed() -> None:
    segments = [
        row(0, T0, T0 + 2000),
        row(0, T0 + 2000, T0 + 4000, epoch=1, init_path="init.mp4"),
    ]
    parsed = parse(render(segments))
    assert parsed.version == 7
    assert [s.init is not None for s in parsed.segments] == [False, True]


def test_fmp4_then_ts_is_refused() -> None:
    segments = [
        row(7, T0, T0 + 2000, init_path="init.mp4"),
        row(8, T0 + 2000, T0 + 4000, epoch=1),
    ]
    with pytest.raises(ValueError, match="seq 8"):
        render(segments)


def test_an_empty_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        render([])


@pytest.mark.parametrize("end_ms", [T0, T0 - 1])
def test_a_segment_without_duration_is_refused(end_ms: int) -> None:
    with pytest.raises(ValueError, match="seq 0"):
        render([row(0, T0, end_ms)])


def test_an_empty_hole_is_refused() -> None:
    with pytest.raises(ValueError, match="holes"):
        render(contiguous(2), holes=[(T0 + 10, T0 + 10)])


@pytest.mark.parametrize("url", ["", "#seg.ts", "seg\n.ts", " seg.ts"])
def test_a_segment_url_that_breaks_the_syntax_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="segment_url"):
        vod_playlist(contiguous(1), segment_url=lambda _: url, init_url=init_url)


@pytest.mark.parametrize("url", ["", 'in"it.mp4', "init\r.mp4"])
def test_an_init_url_that_breaks_the_syntax_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="init_url"):
        vod_playlist(
            contiguous(1, init_path="init.mp4"), segment_url=segment_url, init_url=lambda _: url
        )


@given(st.integers(min_value=-(10**12), max_value=4 * 10**12))
def test_pdt_round_trips(unix_ms: int) -> None:
    text = format_pdt(unix_ms)
    assert text.endswith("Z")
    assert len(text.split(".")[1]) == 4  # three digits and the Z
    assert parse_pdt_ms(text) == unix_ms


# One step of a random recording: how long, how far after the previous segment it
# starts (negative: PDT jitter backwards), and what changes.
_step = st.tuples(
    st.integers(min_value=1, max_value=12_000),  # duration_ms
    st.integers(min_value=-80, max_value=5_000),  # start - previous end
    st.booleans(),  # new epoch
    st.booleans(),  # new rendition
    st.sampled_from(["keep", "keep", "change"]),  # init section
)


@st.composite
def recordings(draw: st.DrawFn) -> list[SegmentRow]:
    fmp4_from = draw(st.integers(min_value=0, max_value=30))
    steps = draw(st.lists(_step, min_size=1, max_size=30))
    segments: list[SegmentRow] = []
    seq, epoch, rendition_id, init_number = 100, 0, 1, 0
    end_ms = T0 + draw(st.integers(min_value=-(10**9), max_value=10**9))
    for index, (duration_ms, gap_ms, new_epoch, new_rendition, init) in enumerate(steps):
        if index:
            epoch += new_epoch
            rendition_id += new_rendition
            init_number += init == "change"
        start_ms = end_ms + (gap_ms if index else 0)
        end_ms = start_ms + duration_ms
        init_path = f"r{rendition_id}/init{init_number}.mp4" if index >= fmp4_from else None
        segments.append(
            row(seq, start_ms, end_ms, epoch=epoch, rendition_id=rendition_id, init_path=init_path)
        )
        seq += 1
    return segments


@st.composite
def holes_near(draw: st.DrawFn, segments: list[SegmentRow]) -> list[tuple[int, int]]:
    """Holes starting and ending on or near segment edges, where joins are decided."""
    edges = sorted({edge for s in segments for edge in (s.start_ms, s.end_ms)})
    near = st.one_of(st.just(0), st.integers(min_value=-1, max_value=1), st.integers(-3000, 3000))
    holes = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        start_ms = draw(st.sampled_from(edges)) + draw(near)
        end_ms = draw(st.sampled_from(edges)) + draw(near)
        holes.append((start_ms, end_ms) if end_ms > start_ms else (start_ms, start_ms + 1))
    return holes


def expected_discontinuities(
    segments: Sequence[SegmentRow], holes: Sequence[tuple[int, int]]
) -> list[bool]:
    flags = [False]
    for previous, segment in pairwise(segments):
        flags.append(
            segment.epoch != previous.epoch
            or segment.rendition_id != previous.rendition_id
            or segment.start_ms - previous.end_ms > 100
            or any(start < segment.start_ms and end > previous.end_ms for start, end in holes)
        )
    return flags


@given(st.data())
def test_random_clips_round_trip(data: st.DataObject) -> None:
    segments = data.draw(recordings())
    holes = data.draw(holes_near(segments))
    text = render(segments, holes)
    parsed = parse(text)
    flags = expected_discontinuities(segments, holes)

    assert parsed.ended
    assert parsed.playlist_type == "VOD"
    assert parsed.media_sequence == 0
    has_init = any(s.init_path for s in segments)
    assert parsed.version == (7 if has_init else 3)
    longest_ms = max(s.end_ms - s.start_ms for s in segments)
    assert parsed.target_duration_ms == math.ceil(longest_ms / 1000) * 1000
    for got in parsed.segments:
        assert round(got.duration_ms / 1000) * 1000 <= parsed.target_duration_ms

    assert len(parsed.segments) == len(segments)
    assert [s.seq for s in parsed.segments] == list(range(len(segments)))
    assert [s.uri for s in parsed.segments] == [urljoin(URL, segment_url(s)) for s in segments]
    assert [s.pdt_ms for s in parsed.segments] == [s.start_ms for s in segments]
    assert [s.duration_ms for s in parsed.segments] == [s.end_ms - s.start_ms for s in segments]
    assert [s.discontinuity for s in parsed.segments] == flags
    epochs = [sum(flags[: i + 1]) for i in range(len(flags))]
    assert [s.epoch for s in parsed.segments] == epochs
    # Segments the source kept in one epoch and rendition stay together in the clip.
    for (a, b), (pa, pb) in zip(
        pairwise(segments),
        pairwise(parsed.segments),
        strict=True,
    ):
        if (a.epoch, a.rendition_id) != (b.epoch, b.rendition_id):
            assert pa.epoch != pb.epoch
    assert [s.init.uri if s.init else None for s in parsed.segments] == [
        urljoin(URL, init_url(s.init_path)) if s.init_path else None for s in segments
    ]
    # A MAP only where the init section changes: one per distinct run.
    runs = sum(
        1
        for i, s in enumerate(segments)
        if s.init_path and (i == 0 or segments[i - 1].init_path != s.init_path)
    )
    assert text.count("#EXT-X-MAP:") == runs
    # Every DISCONTINUITY comes before the MAP and the PDT of its segment.
    lines = text.splitlines()
    for at, line in enumerate(lines):
        if line == "#EXT-X-DISCONTINUITY":
            assert lines[at + 1].startswith(("#EXT-X-MAP:", "#EXT-X-PROGRAM-DATE-TIME:"))


# live (DVR) playlists --------------------------------------------------------------------


def numbered(seq: int, disc: int, start_ms: int, **fields: object) -> SegmentRow:
    return replace(
        row(seq, start_ms, start_ms + 2000, **fields),  # type: ignore[arg-type]
        playback_seq=seq + 100,
        playback_disc=disc,
    )


def render_live(segments: Sequence[SegmentRow], **window: bool) -> str:
    flags = {"event": False, "ended": False, "can_block_reload": True, **window}
    return live_playlist(
        segments, window=LiveWindow(**flags), segment_url=segment_url, init_url=init_url
    )


def test_a_live_playlist_is_numbered_by_the_index() -> None:
    segments = [numbered(n, 3 if n < 2 else 4, T0 + n * 2000) for n in range(4)]
    text = render_live(segments)
    parsed = parse(text)
    assert parsed.media_sequence == 100 and parsed.discontinuity_sequence == 3
    assert [s.seq for s in parsed.segments] == [100, 101, 102, 103]
    # The index's count changed between the second and third: the only discontinuity.
    assert [s.discontinuity for s in parsed.segments] == [False, False, True, False]
    assert parsed.playlist_type is None and not parsed.ended
    assert parsed.server_control is not None and parsed.server_control.can_block_reload


def test_live_playlist_event_and_end() -> None:
    segments = [numbered(n, 0, T0 + n * 2000) for n in range(2)]
    assert parse(render_live(segments, event=True)).playlist_type == "EVENT"
    ended = render_live(segments, ended=True)
    assert parse(ended).ended and "SERVER-CONTROL" not in ended


def test_a_live_playlist_refuses_numbers_that_do_not_run_on() -> None:
    segments = [numbered(0, 0, T0), numbered(2, 0, T0 + 4000)]
    with pytest.raises(ValueError, match="run on by one"):
        render_live(segments)
    with pytest.raises(ValueError, match="playback numbers"):
        render_live([row(0, T0, T0 + 2000)])


def test_gaps_are_marked_where_the_player_reaches_them() -> None:
    segments = [row(0, T0, T0 + 2000), row(1, T0 + 6000, T0 + 8000)]
    marks = gap_marks(segments, [(T0 + 2000, T0 + 4000, "download_failed")])
    assert marks == [GapMark(start_ms=T0 + 2000, end_ms=T0 + 6000, reason="download_failed")]
    assert gap_marks(segments) == [
        GapMark(start_ms=T0 + 2000, end_ms=T0 + 6000, reason="not_recorded")
    ]
    text = render(segments, holes=[(T0 + 2000, T0 + 6000)])
    with_marks = vod_playlist(segments, segment_url=segment_url, init_url=init_url, gaps=marks)
    lines = with_marks.splitlines()
    tag = next(n for n, line in enumerate(lines) if line.startswith("#EXT-X-DATERANGE"))
    assert lines[tag + 1] == "#EXT-X-DISCONTINUITY"  # just before the segment after it
    assert 'START-DATE="2026-01-01T00:00:02.000Z"' in lines[tag]
    assert 'END-DATE="2026-01-01T00:00:06.000Z"' in lines[tag]
    assert 'X-REASON="download_failed"' in lines[tag]
    assert parse(with_marks).segments == parse(text).segments


def test_carry_query_signs_every_uri() -> None:
    text = render([row(0, T0, T0 + 2000, init_path="i.mp4")])
    signed = carry_query(text, "exp=1&sig=ab")
    assert '#EXT-X-MAP:URI="/v1/init/i.mp4?exp=1&sig=ab"' in signed
    assert "../../segments/1?exp=1&sig=ab" in signed
    assert carry_query("a.ts?x=1\n", "exp=1") == "a.ts?x=1&exp=1\n"
