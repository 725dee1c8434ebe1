"""WebVTT cue placement, cutting and rendering; mov_text tracks in MP4s written by PyAV."""

from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from av.container import OutputContainer
from av.subtitles.subtitle import AssSubtitle
from hypothesis import given, settings
from hypothesis import strategies as st

from livecut.media.subtitles import (
    MPEGTS_WRAP_S,
    Cue,
    MovTextTrack,
    SubtitleError,
    _mp4_language,
    _plain_text,
    clip_cues,
    parse_segment,
    render_webvtt,
)
from livecut.media.synth import SyntheticStream
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

W0 = 1_767_225_600_000  # wall time of video PTS 10 s, the stream's first frame
SEG = W0 + 6_000  # PDT of the subtitle segment under test: the fourth 2 s segment


def video_clock(pts_s: float) -> float:
    """pts_to_wall_ms of a stream whose video PTS 10 s was shown at W0."""
    return W0 + (pts_s - 10) * 1000


def vtt(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def parse(
    data: bytes, clock: Callable[[float], float] = video_clock, start: int = SEG
) -> list[Cue]:
    return parse_segment(data, pts_to_wall_ms=clock, segment_start_ms=start)


def cue(start: float, end: float, text: str = "x", settings: str = "") -> Cue:
    return Cue(start_ms=start, end_ms=end, text=text, settings=settings)


# --- parse_segment ---------------------------------------------------------------------


def test_timestamp_map_puts_cues_on_the_media_clock() -> None:
    data = vtt(
        "WEBVTT",
        "X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000",
        "",
        "00:00:06.000 --> 00:00:07.500 align:start line:90%",
        "Hello",
        "<i>world</i>",
    )
    assert parse(data) == [cue(W0 + 6000, W0 + 7500, "Hello\n<i>world</i>", "align:start line:90%")]


def test_timestamp_map_local_offset_and_field_order() -> None:
    # Per-segment maps: cue time LOCAL is media time MPEGTS, whatever the order.
    data = vtt(
        "WEBVTT",
        "X-TIMESTAMP-MAP=LOCAL:01:00:00.000,MPEGTS:1440000",  # 16 s
        "",
        "01:00:00.250 --> 01:00:01.000",
        "a",
    )
    assert parse(data) == [cue(W0 + 6250, W0 + 7000, "a")]


def test_mpegts_wrap_after_the_video_reference() -> None:
    # The video was referenced just before the 33-bit wrap; the cue comes just after it.
    ref_s = MPEGTS_WRAP_S - 5

    def clock(pts_s: float) -> float:
        return W0 + (pts_s - ref_s) * 1000

    data = vtt(
        "WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:90000,LOCAL:00:00.000", "", "00:00.000 --> 00:02.000", "x"
    )
    assert parse(data, clock, start=W0 + 5000) == [cue(W0 + 6000, W0 + 8000)]


def test_mpegts_wrap_before_the_video_reference() -> None:
    # The video was referenced after the wrap; a long cue began just before it.
    def clock(pts_s: float) -> float:
        return W0 + (pts_s - 1) * 1000

    mpegts = 2**33 - 90_000  # 1 s before the wrap
    data = vtt(
        "WEBVTT",
        f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00.000",
        "",
        "00:00.000 --> 00:05.000",
        "x",
    )
    assert parse(data, clock, start=W0) == [cue(W0 - 2000, W0 + 3000)]


def test_cue_times_beyond_the_wrap_period() -> None:
    # One map for the whole broadcast (LOCAL 0 = PTS 10 s) and cue times 30 h in: the
    # video's PTS wrapped once meanwhile, and its clock was built from wrapped PTS.
    cue_s = 30 * 3600
    pts_s = 10 + cue_s - MPEGTS_WRAP_S
    wall = W0 + 123_456_000

    def clock(s: float) -> float:
        return wall + (s - pts_s) * 1000

    data = vtt(
        "WEBVTT",
        "X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000",
        "",
        "30:00:00.000 --> 30:00:01.000",
        "x",
    )
    [placed] = parse(data, clock, start=wall - 1000)
    assert placed.start_ms == pytest.approx(wall, abs=1e-3)
    assert placed.end_ms == pytest.approx(wall + 1000, abs=1e-3)


def test_without_map_cue_times_count_from_the_segment_start() -> None:
    data = vtt(
        "WEBVTT", "", "00:00:00.500 --> 00:00:01.750", "a", "", "00:01.000 --> 00:03.000", "b"
    )
    assert parse(data) == [cue(SEG + 500, SEG + 1750, "a"), cue(SEG + 1000, SEG + 3000, "b")]


def test_without_map_media_time_cues_are_read_as_media_time() -> None:
    # RFC 8216: no X-TIMESTAMP-MAP means cue time 0 is media time 0. Cues 100 s in, in a
    # segment whose video is at PTS 100 s, can only mean that.
    def clock(pts_s: float) -> float:
        return SEG + (pts_s - 100) * 1000

    data = vtt(
        "WEBVTT", "", "00:01:40.500 --> 00:01:42.000", "a", "", "00:01:39.000 --> 00:01:41.000", "b"
    )
    assert parse(data, clock) == [cue(SEG + 500, SEG + 2000, "a"), cue(SEG - 1000, SEG + 1000, "b")]


def test_without_map_small_cue_times_stay_segment_relative() -> None:
    # A stream whose media time starts at 0: the segment at PTS 6 s has a cue 4 s in.
    def clock(pts_s: float) -> float:
        return SEG + (pts_s - 6) * 1000

    data = vtt("WEBVTT", "", "00:04.000 --> 00:05.000", "a")
    assert parse(data, clock) == [cue(SEG + 4000, SEG + 5000, "a")]


def test_identifiers_notes_styles_and_regions_are_dropped() -> None:
    data = vtt(
        "WEBVTT - with a title",
        "Kind: captions",
        "",
        "STYLE",
        "::cue { color: yellow }",
        "",
        "REGION",
        "id:fred width:40%",
        "",
        "NOTE a comment",
        "over two lines",
        "",
        "NOTE",
        "",
        "cue-1",
        "00:00.000 --> 00:01.000 region:fred",
        "first",
        "",
        "42",
        "00:01.000 --> 00:02.000",
        "second",
    )
    assert parse(data) == [
        cue(SEG, SEG + 1000, "first", "region:fred"),
        cue(SEG + 1000, SEG + 2000, "second"),
    ]


def test_bom_crlf_and_lone_cr() -> None:
    body = (
        "WEBVTT\r\n\r\n00:00.000 --> 00:01.000\r\nline 1\r\nline 2\r\n"
        "\r\n00:01.000 --> 00:02.000\rb\r"
    )
    assert parse(b"\xef\xbb\xbf" + body.encode()) == [
        cue(SEG, SEG + 1000, "line 1\nline 2"),
        cue(SEG + 1000, SEG + 2000, "b"),
    ]


def test_timestamp_forms() -> None:
    data = vtt(
        "WEBVTT",
        "",
        "01:02.345 --> 00:01:03.000",
        "mm:ss",
        "",
        "100:00:00.000 --> 100:00:00.001",
        "three-digit hours",
    )
    assert parse(data, lambda s: 0.0) == [
        cue(SEG + 62_345, SEG + 63_000, "mm:ss"),
        cue(SEG + 360_000_000, SEG + 360_000_001, "three-digit hours"),
    ]


def test_malformed_cues_are_skipped() -> None:
    data = vtt(
        "WEBVTT",
        "",
        "00:00.000 -> 00:01.000",  # no arrow: a junk block
        "junk",
        "",
        "00:61.000 --> 00:62.000",
        "seconds out of range",
        "",
        "00:02.000 --> 00:01.000",
        "ends before it starts",
        "",
        "00:01.000 --> 00:01.000",
        "empty span",
        "",
        "00:0a.000 --> 00:02.000",
        "bad digit",
        "",
        "00:03.000 --> 00:04.000",
        "good",
    )
    assert parse(data) == [cue(SEG + 3000, SEG + 4000, "good")]


def test_a_timing_line_inside_a_payload_starts_a_new_cue() -> None:
    data = vtt("WEBVTT", "", "00:00.000 --> 00:01.000", "a", "00:01.000 --> 00:02.000", "b", "c")
    assert parse(data) == [cue(SEG, SEG + 1000, "a"), cue(SEG + 1000, SEG + 2000, "b\nc")]


def test_empty_cue_payload_is_kept() -> None:
    assert parse(vtt("WEBVTT", "", "00:00.000 --> 00:01.000")) == [cue(SEG, SEG + 1000, "")]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xef\xbb\xbf",
        b"\n\n",
        b"WEBVTT",
        b"WEBVTT\n",
        b"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\n\n",
        b"WEBVTT\n\nNOTE nothing to show\n",
    ],
)
def test_files_without_cues(data: bytes) -> None:
    assert parse(data) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<?xml version='1.0'?><tt xmlns='http://www.w3.org/ns/ttml'/>", "not a WebVTT file"),
        (b"WEBVTTX\n\n00:00.000 --> 00:01.000\nx\n", "not a WebVTT file"),
        (b"webvtt\n", "not a WebVTT file"),
        (b"1\n00:00:00,000 --> 00:00:01,000\nSRT\n", "not a WebVTT file"),
        (struct.pack(">I4s", 24, b"ftyp") + b"iso6" + bytes(12), "MP4"),
    ],
)
def test_not_webvtt(data: bytes, message: str) -> None:
    with pytest.raises(SubtitleError, match=message):
        parse(data)


@pytest.mark.parametrize(
    "header",
    [
        "X-TIMESTAMP-MAP=LOCAL:00:00:00.000",
        "X-TIMESTAMP-MAP=MPEGTS:abc,LOCAL:00:00:00.000",
        "X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:0",
    ],
)
def test_unreadable_timestamp_map(header: str) -> None:
    with pytest.raises(SubtitleError, match="X-TIMESTAMP-MAP"):
        parse(vtt("WEBVTT", header, "", "00:00.000 --> 00:01.000", "x"))


def test_timestamp_map_without_local_means_local_zero() -> None:
    data = vtt("WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:900000", "", "00:06.000 --> 00:07.000", "x")
    assert parse(data) == [cue(W0 + 6000, W0 + 7000)]


def test_timestamp_map_after_a_stray_blank_line() -> None:
    data = vtt(
        "WEBVTT",
        "",
        "X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00.000",
        "",
        "00:06.000 --> 00:07.000",
        "x",
    )
    assert parse(data) == [cue(W0 + 6000, W0 + 7000)]


# --- clip_cues -------------------------------------------------------------------------


def test_clip_cues_trims_to_the_range_and_sorts() -> None:
    cues = [
        cue(5000, 6000, "after"),
        cue(1500, 2500, "inside"),
        cue(500, 1500, "straddles start"),
        cue(2500, 4000, "straddles end"),
        cue(0, 1000, "ends at start"),
        cue(3000, 3500, "starts at end"),
        cue(0, 9000, "spans all", "line:0"),
    ]
    assert clip_cues(cues, 1000, 3000) == [
        cue(1000, 1500, "straddles start"),
        cue(1000, 3000, "spans all", "line:0"),
        cue(1500, 2500, "inside"),
        cue(2500, 3000, "straddles end"),
    ]


def test_clip_cues_drops_cues_repeated_by_later_segments() -> None:
    cues = [
        cue(1000, 4000, "long", "align:start"),
        cue(2000, 3000, "short"),
        cue(1000, 4000, "long", "align:start"),  # the same cue, from the next segment
        cue(1000.4, 3999.7, "long", "align:start"),  # ...placed via another PDT
        cue(1000, 4000, "long", "align:end"),  # not the same: other settings
        cue(1000, 4000, "Long", "align:start"),  # other text
        cue(4000, 5000, "long", "align:start"),  # said again later
    ]
    assert clip_cues(cues, 0, 10_000) == [
        cue(1000, 4000, "Long", "align:start"),
        cue(1000, 4000, "long", "align:end"),
        cue(1000, 4000, "long", "align:start"),
        cue(2000, 3000, "short"),
        cue(4000, 5000, "long", "align:start"),
    ]


def test_clip_cues_dedupes_after_trimming() -> None:
    # Two copies of a cue that started before the clip, seen with different starts.
    cues = [cue(-5000, 2000, "a"), cue(-3000, 2000, "a")]
    assert clip_cues(cues, 0, 10_000) == [cue(0, 2000, "a")]
    assert clip_cues(cues, 0, 10_000, tolerance_ms=0) == [cue(0, 2000, "a")]
    assert clip_cues([cue(0, 2000, "a"), cue(0, 2030, "a")], 0, 5000, tolerance_ms=10) == [
        cue(0, 2000, "a"),
        cue(0, 2030, "a"),
    ]


def test_clip_cues_of_an_empty_range() -> None:
    assert clip_cues([cue(0, 1000)], 500, 500) == []


cue_lists = st.lists(
    st.builds(
        lambda start, length, text, cue_settings: cue(start, start + length, text, cue_settings),
        st.integers(0, 5000),
        st.integers(1, 3000),
        st.sampled_from(["a", "b", "a\nb"]),
        st.sampled_from(["", "line:0"]),
    ),
    max_size=12,
)


@given(cues=cue_lists, start=st.integers(0, 6000), length=st.integers(0, 4000))
def test_clip_cues_invariants(cues: list[Cue], start: int, length: int) -> None:
    end = start + length
    clipped = clip_cues(cues, start, end, tolerance_ms=0)
    assert all(start <= c.start_ms < c.end_ms <= end for c in clipped)
    assert [c.start_ms for c in clipped] == sorted(c.start_ms for c in clipped)
    keys = [(c.start_ms, c.end_ms, c.text, c.settings) for c in clipped]
    assert len(keys) == len(set(keys))
    # Every instant of every cue in range is still covered by a cue saying the same.
    for c in cues:
        for t in (max(c.start_ms, start), min(c.end_ms, end) - 0.5):
            if c.start_ms <= t < c.end_ms and start <= t < end:
                assert any(k.start_ms <= t < k.end_ms and k.text == c.text for k in clipped)


# --- render_webvtt ---------------------------------------------------------------------


def test_render_webvtt() -> None:
    zero = W0 + 123.4
    cues = [
        cue(zero + 3_723_004, zero + 3_725_000, "late"),
        cue(zero - 500, zero + 1000.4, "<i>cut</i> at the start", "align:start  line:0"),
        cue(zero - 900, zero - 100, "before the clip"),
        cue(zero + 1000, zero + 2500, "two\n\nlines -->"),
    ]
    assert render_webvtt(cues, zero_ms=zero) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.000 align:start line:0\n"
        "<i>cut</i> at the start\n"
        "\n"
        "00:00:01.000 --> 00:00:02.500\n"
        "two\n"
        "lines --&gt;\n"
        "\n"
        "01:02:03.004 --> 01:02:05.000\n"
        "late\n"
    )
    assert render_webvtt([], zero_ms=zero) == "WEBVTT\n"


def test_rendered_webvtt_parses_back() -> None:
    cues = [
        cue(SEG + 250, SEG + 1500, "a\n<b>b</b>", "position:10%"),
        cue(SEG + 1500, SEG + 61_000, "c"),
    ]
    assert parse(render_webvtt(cues, zero_ms=SEG).encode()) == cues


# --- mov_text --------------------------------------------------------------------------


def test_plain_text_of_webvtt_markup() -> None:
    text, faces = _plain_text(
        "<v.loud Bob>Hi <i>there <b>you</b></i>&amp;<c.x>me</c>\n<u>ruby<rt>r</rt></u> &lt;3"
    )
    assert text == "Hi there you&me\nruby <3"
    assert faces == [0, 0, 0, 2, 2, 2, 2, 2, 2, 3, 3, 3, 0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0]


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("en", "eng"),
        ("en-US", "eng"),
        ("pt_BR", "por"),
        ("DE", "deu"),
        ("fre", "fre"),
        ("fra", "fra"),
    ],
)
def test_language_codes(tag: str, code: str) -> None:
    assert _mp4_language(tag) == code


@pytest.mark.parametrize("tag", [None, "", "und", "x-klingon", "zz", "e1g"])
def test_unknown_languages(tag: str | None) -> None:
    assert _mp4_language(tag) is None


ZERO = W0 + 40.0  # wall time of the clip's first frame

CUES = [
    cue(ZERO + 200, ZERO + 700, "Hello <i>world</i>"),
    cue(ZERO + 900, ZERO + 1500, "Two\nlines"),
    cue(ZERO + 1200, ZERO + 1800, "Over &amp; lap"),
    cue(ZERO + 1800, ZERO + 1900, "<v Bob>back</v> to back"),
]
ITALIC_WORLD = struct.pack(">I4sHHHHBB4s", 22, b"styl", 1, 6, 11, 1, 2, 16, b"\xff" * 4)

# (start s, duration s, payload) of each mov_text sample.
SAMPLES = [
    (Fraction(0), Fraction(2, 10), b"\x00\x00"),
    (Fraction(2, 10), Fraction(5, 10), b"\x00\x0bHello world" + ITALIC_WORLD),
    (Fraction(7, 10), Fraction(2, 10), b"\x00\x00"),
    (Fraction(9, 10), Fraction(3, 10), b"\x00\x09Two\nlines"),
    (Fraction(12, 10), Fraction(3, 10), b"\x00\x14Two\nlines\nOver & lap"),
    (Fraction(15, 10), Fraction(3, 10), b"\x00\x0aOver & lap"),
    (Fraction(18, 10), Fraction(1, 10), b"\x00\x0cback to back"),
]


@functools.cache
def synthetic_segment() -> bytes:
    """A 2 s TS segment of H.264 video (with B-frames) and AAC audio."""
    return SyntheticStream(segment_ms=2000).next_segment().data


def write_clip(
    path: Path, cues: list[Cue], *, when: str = "first", language: str | None = "en"
) -> None:
    """Copy a synthetic 2 s TS segment into an MP4, its first frame at 0, plus mov_text.

    when="first": add all cues before any packet; "late": each cue just before the first
    video packet presented at or after its start, as a streaming remuxer would.
    """
    with (
        av.open(io.BytesIO(synthetic_segment()), "r") as source,
        av.open(str(path), "w", format="mp4") as out,
    ):
        outputs = {s.index: out.add_stream_from_template(s) for s in source.streams}
        track = MovTextTrack(out, language=language)
        packets = list(source.demux())
        first_s = min(
            p.pts * p.time_base for p in packets if p.pts is not None and p.stream.type == "video"
        )
        pending = list(cues)
        if when == "first":
            for c in pending:
                track.add(c, zero_ms=ZERO)
            pending = []
        for packet in packets:
            if packet.pts is None or packet.dts is None:
                continue
            at_s = packet.pts * packet.time_base - first_s
            while (
                pending
                and packet.stream.type == "video"
                and pending[0].start_ms <= ZERO + at_s * 1000
            ):
                track.add(pending.pop(0), zero_ms=ZERO)
            shift = round(first_s / packet.time_base)
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = outputs[packet.stream_index]
            out.mux(packet)
        for c in pending:
            track.add(c, zero_ms=ZERO)
        track.close()


def read_samples(path: Path) -> tuple[Any, list[tuple[Fraction, Fraction, bytes]]]:
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        samples = [
            (p.pts * p.time_base, (p.duration or 0) * p.time_base, bytes(p))
            for p in container.demux(stream)
            if p.pts is not None
        ]
        info = (stream.codec_context.name, stream.language, stream.time_base, stream.codec_tag)
    return info, samples


@pytest.mark.parametrize("when", ["first", "late"])
def test_mov_text_track_in_an_mp4(tmp_path: Path, when: str) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, CUES, when=when)
    info, samples = read_samples(path)
    assert info[0] == "mov_text"
    assert info[1] == "eng"
    assert info[2] == Fraction(1, 90_000)  # see _MIN_TIMESCALE
    assert info[3] == "tx3g"
    # Once the video passes the last cue's end the muxer closes it with an empty sample.
    assert samples[: len(SAMPLES)] == SAMPLES
    assert samples[len(SAMPLES) :] in ([], [(Fraction(19, 10), Fraction(0), b"\x00\x00")])
    with av.open(str(path)) as container:
        video = [p.pts * p.time_base for p in container.demux(video=0) if p.pts is not None]
    assert min(video) == 0  # the video's first frame and the cues share a timeline


@pytest.mark.parametrize("when", ["first", "late"])
def test_mov_text_beside_an_encoded_video(tmp_path: Path, when: str) -> None:
    # libx264 at 25 fps gets a 1/12800 track: were the text track's timescale coarser,
    # movenc would compare raw dts across the two and end text samples too early.
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=25, width=64, height=64)
        track = MovTextTrack(out, language="en")
        pending = list(CUES)
        if when == "first":
            for c in pending:
                track.add(c, zero_ms=ZERO)
            pending = []
        for index in range(50):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 5]) * plane.buffer_size)
            frame.pts = index
            while pending and pending[0].start_ms <= ZERO + index * 40:
                track.add(pending.pop(0), zero_ms=ZERO)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for c in pending:
            track.add(c, zero_ms=ZERO)
        track.close()
    _, samples = read_samples(path)
    assert samples[: len(SAMPLES)] == SAMPLES
    assert samples[len(SAMPLES) :] in ([], [(Fraction(19, 10), Fraction(0), b"\x00\x00")])


def test_mov_text_decodes_to_the_cue_texts(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, CUES)
    texts: list[tuple[Fraction, str]] = []
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.size <= 2:
                continue
            for subtitle in stream.decode(packet):
                assert isinstance(subtitle, AssSubtitle)
                texts.append((packet.pts * packet.time_base, subtitle.dialogue.decode()))
    assert texts == [
        (Fraction(2, 10), r"Hello {\i1}world"),
        (Fraction(9, 10), "Two\nlines"),
        (Fraction(12, 10), "Two\nlines\nOver & lap"),
        (Fraction(15, 10), "Over & lap"),
        (Fraction(18, 10), "back to back"),
    ]


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_agrees(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, CUES)
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-of", "json", "-show_streams", "-show_packets", str(path)],
            check=True,
            capture_output=True,
        ).stdout
    )
    [stream] = [s for s in probe["streams"] if s["codec_type"] == "subtitle"]
    assert stream["codec_name"] == "mov_text"
    assert stream["codec_tag_string"] == "tx3g"
    assert stream["tags"]["language"] == "eng"
    index = stream["index"]
    packets = [p for p in probe["packets"] if p["stream_index"] == index]
    times = [(float(p["pts_time"]), int(p["size"])) for p in packets]
    expected = [(float(start), len(payload)) for start, _, payload in SAMPLES]
    assert times[: len(expected)] == expected


def test_cues_starting_together_share_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(
        path,
        [
            cue(ZERO, ZERO + 500, "top"),
            cue(ZERO, ZERO + 1000, "bottom"),
            cue(ZERO, ZERO + 1000, "top"),
        ],
    )
    _, samples = read_samples(path)
    tick = Fraction(1, 90_000)
    assert samples[:3] == [
        (Fraction(0), tick, b"\x00\x03top"),  # shown for one tick, until the next cue joins
        (tick, Fraction(1, 2) - tick, b"\x00\x0atop\nbottom"),  # a repeated text shows once
        (Fraction(1, 2), Fraction(1, 2), b"\x00\x0abottom\ntop"),
    ]


def test_cues_are_cut_at_the_clip_start(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, [cue(ZERO - 5000, ZERO - 1000, "gone"), cue(ZERO - 300, ZERO + 300, "cut")])
    _, samples = read_samples(path)
    assert samples[0] == (Fraction(0), Fraction(3, 10), b"\x00\x03cut")


def test_no_language(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, CUES[:1], language=None)
    info, _ = read_samples(path)
    assert info[1] in (None, "und")


@settings(max_examples=60, deadline=None)
@given(cues=cue_lists)
def test_mov_text_samples_show_the_cues_on_screen(cues: list[Cue]) -> None:
    # Whatever the overlaps, at each instant the sample shown holds the texts of the cues
    # active then, in start order, each text once; samples tile the time from 0.
    cues = sorted(cues, key=lambda c: c.start_ms)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        track = MovTextTrack(out)
        for c in cues:
            track.add(c, zero_ms=0)
        track.close()
    if not cues:
        return
    with av.open(io.BytesIO(buffer.getvalue()), "r") as container:
        samples = [
            (p.pts * p.time_base * 1000, (p.duration or 0) * p.time_base * 1000, bytes(p))
            for p in container.demux(container.streams.subtitles[0])
            if p.pts is not None
        ]
    tick_ms = Fraction(1, 90)
    at = Fraction(0)
    for start, duration, payload in samples:
        assert start == at
        at = start + duration
        if duration <= tick_ms:
            continue  # cues starting together: all but the last sample last one tick
        middle = start + duration / 2
        shown: list[str] = []
        for c in cues:
            text = _plain_text(c.text)[0]
            if c.start_ms <= middle < c.end_ms and text and text not in shown:
                shown.append(text)
        (length,) = struct.unpack(">H", payload[:2])
        assert payload[2 : 2 + length].decode() == "\n".join(shown)
    assert at == max(c.end_ms for c in cues)


def new_mp4() -> tuple[OutputContainer, MovTextTrack]:
    out = av.open(io.BytesIO(), "w", format="mp4")
    return out, MovTextTrack(out)


def test_cues_must_come_in_start_order() -> None:
    out, track = new_mp4()
    track.add(cue(1000, 2000), zero_ms=0)
    with pytest.raises(ValueError, match="start order"):
        track.add(cue(999, 2000), zero_ms=0)
    track.close()
    with pytest.raises(RuntimeError, match="close"):
        track.add(cue(3000, 4000), zero_ms=0)
    out.close()


def test_sample_text_length_is_16_bits(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, [cue(ZERO, ZERO + 100, "é" * 40_000)])
    _, samples = read_samples(path)
    payload = samples[0][2]
    (length,) = struct.unpack(">H", payload[:2])
    assert length == 65_534 and payload[2:] == "é".encode() * 32_767
