"""Tests for livecut.hls.playlist: parsing media and master playlists into records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecut.hls.playlist import (
    ByteRange,
    InitSection,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    MediaRendition,
    PlaylistError,
    PlaylistSegment,
    RenditionFilter,
    Selection,
    ServerControl,
    Variant,
    best_variant,
    blocking_reload_url,
    parse_pdt_ms,
    parse_playlist,
    rendition_name,
    segment_iv,
    select_renditions,
)
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

URL = "https://origin.example/live/ch7/index.m3u8"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
T0_ISO = "2023-11-14T22:13:20.000Z"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Seg:
    """One segment of a test playlist, and the tags that precede its URI line."""

    uri: str
    duration: str = "6.000"
    title: str = ""
    pdt: str | None = None
    discontinuity: bool = False
    byterange: str | None = None
    gap: bool = False
    map: str | None = None  # raw EXT-X-MAP attribute list
    key: str | None = None  # raw EXT-X-KEY attribute list

    def lines(self) -> list[str]:
        out = []
        if self.discontinuity:
            out.append("#EXT-X-DISCONTINUITY")
        if self.key is not None:
            out.append(f"#EXT-X-KEY:{self.key}")
        if self.map is not None:
            out.append(f"#EXT-X-MAP:{self.map}")
        if self.pdt is not None:
            out.append(f"#EXT-X-PROGRAM-DATE-TIME:{self.pdt}")
        if self.gap:
            out.append("#EXT-X-GAP")
        out.append(f"#EXTINF:{self.duration},{self.title}")
        if self.byterange is not None:
            out.append(f"#EXT-X-BYTERANGE:{self.byterange}")
        out.append(self.uri)
        return out


def playlist(
    *segments: Seg,
    target: str | None = "6",
    media_sequence: int | None = None,
    discontinuity_sequence: int | None = None,
    ended: bool = False,
    playlist_type: str | None = None,
    version: int | None = None,
    header: tuple[str, ...] = (),
    footer: tuple[str, ...] = (),
) -> str:
    lines = ["#EXTM3U"]
    if version is not None:
        lines.append(f"#EXT-X-VERSION:{version}")
    if target is not None:
        lines.append(f"#EXT-X-TARGETDURATION:{target}")
    if media_sequence is not None:
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}")
    if discontinuity_sequence is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type is not None:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    lines.extend(header)
    for seg in segments:
        lines.extend(seg.lines())
    lines.extend(footer)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def media(text: str, url: str = URL) -> MediaPlaylist:
    parsed = parse_playlist(text, url)
    assert isinstance(parsed, MediaPlaylist)
    return parsed


def master(text: str, url: str = URL) -> MasterPlaylist:
    parsed = parse_playlist(text, url)
    assert isinstance(parsed, MasterPlaylist)
    return parsed


def iso(ms: int, offset_minutes: int = 0) -> str:
    zone = timezone_text(offset_minutes)
    local = EPOCH + timedelta(milliseconds=ms - ms % 1000, minutes=offset_minutes)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}" + zone


def timezone_text(offset_minutes: int) -> str:
    if offset_minutes == 0:
        return "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


# --- media playlists ---


def test_ts_live_playlist() -> None:
    pl = media(
        playlist(
            Seg(uri="seg100.ts", duration="6.006", title="first"),
            Seg(uri="/other/seg101.ts", duration="5.9995"),
            Seg(uri="https://cdn.example/x/seg102.ts?token=abc", duration="6"),
            media_sequence=100,
            version=3,
        )
    )
    assert pl.url == URL
    assert pl.target_duration_ms == 6000
    assert pl.media_sequence == 100
    assert pl.discontinuity_sequence == 0
    assert pl.version == 3
    assert not pl.ended
    assert pl.playlist_type is None
    assert not pl.has_pdt
    assert pl.encryption is None
    assert [s.seq for s in pl.segments] == [100, 101, 102]
    assert [s.uri for s in pl.segments] == [
        "https://origin.example/live/ch7/seg100.ts",
        "https://origin.example/other/seg101.ts",
        "https://cdn.example/x/seg102.ts?token=abc",
    ]
    assert [s.duration_ms for s in pl.segments] == [6006, 6000, 6000]
    assert pl.segments[0].title == "first"
    assert pl.segments[1].title == ""
    first = pl.segments[0]
    assert first == PlaylistSegment(
        seq=100,
        epoch=0,
        uri="https://origin.example/live/ch7/seg100.ts",
        duration_ms=6006,
        pdt_ms=None,
        pdt_tagged=False,
        discontinuity=False,
        init=None,
        byterange=None,
        gap=False,
        title="first",
    )


def test_media_sequence_defaults_to_zero() -> None:
    pl = media(playlist(Seg(uri="a.ts"), Seg(uri="b.ts")))
    assert [s.seq for s in pl.segments] == [0, 1]


def test_empty_live_playlist_is_valid() -> None:
    pl = media(playlist(media_sequence=7))
    assert pl.segments == ()
    assert pl.media_sequence == 7
    assert not pl.has_pdt


def test_fmp4_map_with_byterange_and_map_change() -> None:
    pl = media(
        playlist(
            Seg(uri="a.m4s", map='URI="init.mp4",BYTERANGE="720@0"'),
            Seg(uri="b.m4s"),
            Seg(uri="c.m4s", discontinuity=True, map='URI="https://cdn.example/init2.mp4"'),
            Seg(uri="d.m4s", map='URI="both.mp4",BYTERANGE="512"'),
            version=7,
        )
    )
    first_init = InitSection(
        uri="https://origin.example/live/ch7/init.mp4", byterange=ByteRange(length=720, offset=0)
    )
    assert pl.segments[0].init == first_init
    assert pl.segments[1].init == first_init
    assert pl.segments[2].init == InitSection(uri="https://cdn.example/init2.mp4", byterange=None)
    assert pl.segments[3].init == InitSection(
        uri="https://origin.example/live/ch7/both.mp4", byterange=ByteRange(length=512, offset=0)
    )


def test_map_without_uri_is_an_error() -> None:
    with pytest.raises(PlaylistError, match="EXT-X-MAP"):
        parse_playlist(playlist(Seg(uri="a.m4s", map='BYTERANGE="1@0"')), URL)


def test_byterange_implicit_offsets() -> None:
    pl = media(
        playlist(
            Seg(uri="all.ts", byterange="1000@500"),
            Seg(uri="all.ts", byterange="2000"),
            Seg(uri="all.ts", byterange="300"),
            Seg(uri="other.ts", byterange="10@0"),
            Seg(uri="other.ts", byterange="20"),
            Seg(uri="whole.ts"),
        )
    )
    assert [s.byterange for s in pl.segments] == [
        ByteRange(length=1000, offset=500),
        ByteRange(length=2000, offset=1500),
        ByteRange(length=300, offset=3500),
        ByteRange(length=10, offset=0),
        ByteRange(length=20, offset=10),
        None,
    ]


@pytest.mark.parametrize(
    "segments",
    [
        (Seg(uri="all.ts", byterange="100"),),
        (Seg(uri="a.ts", byterange="100@0"), Seg(uri="b.ts", byterange="100")),
        (Seg(uri="a.ts"), Seg(uri="a.ts", byterange="100")),
    ],
)
def test_byterange_without_offset_needs_a_previous_subrange(segments: tuple[Seg, ...]) -> None:
    with pytest.raises(PlaylistError, match="EXT-X-BYTERANGE has no offset"):
        parse_playlist(playlist(*segments), URL)


def test_bad_byterange_names_the_line() -> None:
    with pytest.raises(PlaylistError, match=r"line 4: bad EXT-X-BYTERANGE"):
        parse_playlist(playlist(Seg(uri="a.ts", byterange="12@x")), URL)


def test_pdt_carry_forward_and_override_across_discontinuity() -> None:
    pl = media(
        playlist(
            Seg(uri="a.ts", duration="6.006", pdt=T0_ISO),
            Seg(uri="b.ts", duration="6.006"),
            Seg(uri="c.ts", duration="4", discontinuity=True),
            Seg(uri="d.ts", duration="6", discontinuity=True, pdt=iso(T0 + 60_000)),
            Seg(uri="e.ts", duration="6"),
        )
    )
    assert pl.has_pdt
    assert [s.pdt_ms for s in pl.segments] == [
        T0,
        T0 + 6006,
        T0 + 12012,  # carried across the discontinuity: no new tag
        T0 + 60_000,
        T0 + 66_000,
    ]
    assert [s.pdt_tagged for s in pl.segments] == [True, False, False, True, False]


def test_pdt_backward_fill_before_first_tag() -> None:
    pl = media(
        playlist(
            Seg(uri="a.ts", duration="2"),
            Seg(uri="b.ts", duration="3.5"),
            Seg(uri="c.ts", duration="6", pdt=T0_ISO),
            Seg(uri="d.ts", duration="6"),
        )
    )
    assert [s.pdt_ms for s in pl.segments] == [T0 - 5500, T0 - 3500, T0, T0 + 6000]


def test_pdt_after_last_segment_is_ignored() -> None:
    pl = media(
        playlist(Seg(uri="a.ts"), footer=(f"#EXT-X-PROGRAM-DATE-TIME:{T0_ISO}",)),
    )
    assert len(pl.segments) == 1
    assert not pl.has_pdt
    assert pl.segments[0].pdt_ms is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.000Z", T0),
        ("2023-11-14T22:13:20.5Z", T0 + 500),
        ("2023-11-14T22:13:20.123456789Z", T0 + 123),
        ("2023-11-14T22:13:20.1235Z", T0 + 124),  # rounded half-up
        ("2023-11-14T22:13:20.9996Z", T0 + 1000),
        ("2023-11-14T23:13:20.250+01:00", T0 + 250),
        ("2023-11-14T23:13:20+0100", T0),
        ("2023-11-14T17:13:20-05", T0),
        ("2023-11-15T03:58:20.000+05:45", T0),
        ("2023-11-14T22:13:20.000+00:00", T0),
        ("2023-11-14 22:13:20z", T0),
        ("2023-11-14T22:13:20.000", T0),  # no zone: read as UTC
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # leap second
    ],
)
def test_pdt_formats(text: str, expected: int) -> None:
    assert parse_pdt_ms(text) == expected
    pl = media(playlist(Seg(uri="a.ts", pdt=text)))
    assert pl.segments[0].pdt_ms == expected


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2023-11-14", "2023-13-14T22:13:20Z", "2023-11-14T22:13:20+25:00", ""],
)
def test_bad_pdt_is_an_error_naming_the_line(bad: str) -> None:
    text = playlist(Seg(uri="a.ts"), Seg(uri="b.ts", pdt=bad))
    with pytest.raises(PlaylistError, match=r"line 5: bad EXT-X-PROGRAM-DATE-TIME") as info:
        parse_playlist(text, URL)
    assert bad in str(info.value)


def test_line_numbers_count_leading_blank_lines() -> None:
    text = "\r\n\n" + playlist(Seg(uri="a.ts", pdt="nope"))
    with pytest.raises(PlaylistError, match=r"^line 5: "):
        parse_playlist(text, URL)


def test_discontinuity_epochs() -> None:
    pl = media(
        playlist(
            Seg(uri="a.ts", discontinuity=True),
            Seg(uri="b.ts"),
            Seg(uri="c.ts", discontinuity=True),
            Seg(uri="d.ts", discontinuity=True),
            Seg(uri="e.ts"),
            media_sequence=40,
            discontinuity_sequence=3,
        )
    )
    assert pl.discontinuity_sequence == 3
    # The DISCONTINUITY-SEQUENCE value counts tags on segments already removed, so a
    # tag on the first listed segment still starts a new epoch.
    assert [s.epoch for s in pl.segments] == [4, 4, 5, 6, 6]
    assert [s.discontinuity for s in pl.segments] == [True, False, True, True, False]


def test_endlist_type_and_version() -> None:
    pl = media(playlist(Seg(uri="a.ts"), ended=True, playlist_type="VOD", version=6))
    assert pl.ended
    assert pl.playlist_type == "VOD"
    assert pl.version == 6
    assert media(playlist(playlist_type="EVENT")).playlist_type == "EVENT"
    assert media(playlist(playlist_type="LIVE")).playlist_type is None


def test_encryption_method() -> None:
    clear = playlist(Seg(uri="a.ts", key="METHOD=NONE"))
    assert media(clear).encryption is None
    aes = playlist(
        Seg(uri="a.ts"),
        Seg(uri="b.ts", key='METHOD=AES-128,URI="https://keys.example/k",IV=0x1'),
        Seg(uri="c.ts", key="METHOD=NONE"),
    )
    assert media(aes).encryption == "AES-128"
    sample = playlist(Seg(uri="a.ts", key='METHOD=SAMPLE-AES,URI="skd://k"'))
    assert media(sample).encryption == "SAMPLE-AES"


def test_gap_tag() -> None:
    pl = media(playlist(Seg(uri="a.ts"), Seg(uri="b.ts", gap=True), Seg(uri="c.ts")))
    assert [s.gap for s in pl.segments] == [False, True, False]


def test_target_duration_in_decimal_form_is_accepted() -> None:
    assert media(playlist(target="6.0")).target_duration_ms == 6000
    assert media(playlist(target="2.5")).target_duration_ms == 2500


def test_byte_order_mark_is_accepted() -> None:
    assert media("\ufeff" + playlist(Seg(uri="a.ts"))).segments[0].uri.endswith("/a.ts")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing #EXTM3U"),
        ("<html>404</html>", "missing #EXTM3U"),
        (playlist(Seg(uri="a.ts")).removeprefix("#EXTM3U\n"), "missing #EXTM3U"),
        (playlist(Seg(uri="a.ts"), target=None), "without EXT-X-TARGETDURATION"),
        (playlist(target="0"), "bad EXT-X-TARGETDURATION"),
        (playlist(target="six"), "bad EXT-X-TARGETDURATION"),
        (playlist(Seg(uri="a.ts", duration="-1")), r"line 3: bad EXTINF \(negative duration\)"),
        (playlist(Seg(uri="a.ts", duration="abc")), "line 3: bad EXTINF"),
        (playlist(Seg(uri="a.ts", duration="nan")), "line 3: bad EXTINF"),
        (playlist(media_sequence=-1), "line 3: bad EXT-X-MEDIA-SEQUENCE"),
        (playlist(Seg(uri="a.ts", key="METHOD")), r"line 3: bad EXT-X-KEY \(no METHOD"),
        (playlist(Seg(uri="a.ts", key='URI="k"')), r"line 3: bad EXT-X-KEY \(no METHOD"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\nv.m3u8\n", "line 2: malformed tag"),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"
            "#EXTINF:6,\na.ts\n",
            "both EXT-X-STREAM-INF and EXTINF",
        ),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        parse_playlist(text, URL)


def test_playlist_error_is_a_value_error() -> None:
    assert issubclass(PlaylistError, ValueError)


# --- master playlists ---

MASTER = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2200000,RESOLUTION=1280x720,\
CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=29.970,AUDIO="aud"
720/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS="avc1.640028,mp4a.40.2",\
FRAME-RATE=60.000
https://cdn.example/1080p60/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=1280x720
/backup/720low.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="mp4a.40.2"
audio_only.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="iframes.m3u8"
"""


def test_master_playlist() -> None:
    parsed = master(MASTER)
    assert parsed.url == URL
    by_name = {v.name: v for v in parsed.variants}
    assert [v.name for v in parsed.variants] == ["720p", "1080p60", "720p_1200k", "96k"]
    hd = by_name["720p"]
    assert hd.uri == "https://origin.example/live/ch7/720/index.m3u8"
    assert hd.bandwidth == 2_500_000
    assert hd.average_bandwidth == 2_200_000
    assert hd.resolution == (1280, 720)
    assert hd.codecs == "avc1.64001f,mp4a.40.2"
    assert hd.frame_rate == pytest.approx(29.97)
    assert by_name["1080p60"].uri == "https://cdn.example/1080p60/index.m3u8"
    assert by_name["720p_1200k"].uri == "https://origin.example/backup/720low.m3u8"
    audio = by_name["96k"]
    assert audio.resolution is None
    assert audio.frame_rate is None
    assert audio.average_bandwidth is None
    assert best_variant(parsed) == by_name["1080p60"]


def test_variant_names_are_unique() -> None:
    text = "#EXTM3U\n" + "".join(
        f"#EXT-X-STREAM-INF:BANDWIDTH={bw}{res}\nv{i}.m3u8\n"
        for i, (bw, res) in enumerate(
            [
                (1_000_000, ",RESOLUTION=640x360"),
                (1_000_000, ",RESOLUTION=640x360"),
                (2_000_000, ",RESOLUTION=640x360"),
                (500_000, ""),
                (500_000, ""),
            ]
        )
    )
    names = [v.name for v in master(text).variants]
    assert names == ["360p_1000k", "360p_1000k_2", "360p", "500k", "500k_2"]


def test_best_variant_breaks_ties_by_height() -> None:
    text = (
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720\nlow.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1920x1080\nhigh.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000\nnone.m3u8\n"
    )
    assert best_variant(master(text)).uri.endswith("/high.m3u8")


def test_best_variant_of_empty_master_is_an_error() -> None:
    empty = MasterPlaylist(url=URL, variants=())
    with pytest.raises(PlaylistError, match="no variants"):
        best_variant(empty)


# --- round trip ---


@st.composite
def timelines(draw: st.DrawFn) -> tuple[int, list[int], list[bool], list[bool], list[int], int]:
    """media sequence, durations, tagged, discontinuity, true PDTs, zone offset (minutes)."""
    count = draw(st.integers(min_value=0, max_value=25))
    durations = draw(st.lists(st.integers(0, 12_000), min_size=count, max_size=count))
    tagged = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    discontinuity = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    # A tagged segment may jump in time (a discontinuity's new clock); untagged ones
    # follow on, which is what the parser must reproduce.
    jumps = draw(st.lists(st.integers(-(10**7), 10**7), min_size=count, max_size=count))
    start = draw(st.integers(946_684_800_000, 4_102_444_800_000))
    first_tag = next((i for i, t in enumerate(tagged) if t), None)
    pdts: list[int] = []
    now = start
    for index in range(count):
        if tagged[index] and first_tag is not None and index > first_tag:
            now += jumps[index]
        pdts.append(now)
        now += durations[index]
    offset = draw(st.integers(-12 * 60, 14 * 60))
    media_sequence = draw(st.integers(0, 2**40))
    return media_sequence, durations, tagged, discontinuity, pdts, offset


@given(timelines())
def test_parse_render_round_trip(
    timeline: tuple[int, list[int], list[bool], list[bool], list[int], int],
) -> None:
    media_sequence, durations, tagged, discontinuity, pdts, offset = timeline
    segments = [
        Seg(
            uri=f"s{i}.ts",
            duration=f"{duration / 1000:.3f}",
            pdt=iso(pdt, offset) if tag else None,
            discontinuity=disc,
        )
        for i, (duration, tag, disc, pdt) in enumerate(
            zip(durations, tagged, discontinuity, pdts, strict=True)
        )
    ]
    pl = media(playlist(*segments, target="12", media_sequence=media_sequence))
    assert [s.seq for s in pl.segments] == [media_sequence + i for i in range(len(durations))]
    assert [s.duration_ms for s in pl.segments] == durations
    assert pl.has_pdt == any(tagged)
    if any(tagged):
        assert [s.pdt_ms for s in pl.segments] == pdts
    else:
        assert all(s.pdt_ms is None for s in pl.segments)
    assert [s.pdt_tagged for s in pl.segments] == tagged
    assert [s.epoch for s in pl.segments] == [
        sum(discontinuity[: i + 1]) for i in range(len(durations))
    ]


# --- keys ---

KEY_URL = "https://origin.example/live/ch7/k1.key"


def test_segment_keys_follow_the_key_tags() -> None:
    pl = media(
        playlist(
            Seg(uri="a.ts"),
            Seg(
                uri="b.ts", key='METHOD=AES-128,URI="k1.key",IV=0x000102030405060708090A0B0C0D0E0F'
            ),
            Seg(uri="c.ts"),
            Seg(uri="d.ts", key='METHOD=AES-128,URI="https://keys.example/k2"'),
            Seg(uri="e.ts", key="METHOD=NONE"),
            Seg(uri="f.ts"),
            media_sequence=41,
        )
    )
    first_key = Key(method="AES-128", uri=KEY_URL, iv=bytes(range(16)), keyformat=None)
    second_key = Key(method="AES-128", uri="https://keys.example/k2", iv=None, keyformat=None)
    assert [s.key for s in pl.segments] == [None, first_key, first_key, second_key, None, None]
    assert pl.encryption == "AES-128"


def test_short_iv_is_a_number_padded_to_16_bytes() -> None:
    pl = media(playlist(Seg(uri="a.ts", key='METHOD=AES-128,URI="k1.key",IV=0X1fF')))
    key = pl.segments[0].key
    assert key is not None
    assert key.iv == bytes(14) + b"\x01\xff"


@pytest.mark.parametrize("iv", ["123", "0x", "0xZZ", "0x" + "1" * 33])
def test_bad_iv_is_an_error_naming_the_line(iv: str) -> None:
    text = playlist(Seg(uri="a.ts"), Seg(uri="b.ts", key=f'METHOD=AES-128,URI="k",IV={iv}'))
    with pytest.raises(PlaylistError, match=r"^line 5: bad EXT-X-KEY \(IV "):
        parse_playlist(text, URL)


def test_keys_of_several_formats_prefer_identity() -> None:
    widevine = 'METHOD=SAMPLE-AES,URI="data:text/plain;base64,AAAA",KEYFORMAT="urn:uuid:edef8ba9"'
    pl = media(
        playlist(
            Seg(uri="a.ts", key=widevine),
            Seg(uri="b.ts", key='METHOD=AES-128,URI="k1.key",KEYFORMAT="identity"'),
            Seg(uri="c.ts", key=widevine.replace("AAAA", "BBBB")),
            Seg(uri="d.ts", key="METHOD=NONE"),
        )
    )
    sample = Key(
        method="SAMPLE-AES",
        uri="data:text/plain;base64,AAAA",
        iv=None,
        keyformat="urn:uuid:edef8ba9",
    )
    identity = Key(method="AES-128", uri=KEY_URL, iv=None, keyformat="identity")
    # A tag replaces only the key of its own KEYFORMAT; the identity one stays in force.
    assert [s.key for s in pl.segments] == [sample, identity, identity, None]


def test_key_between_extinf_and_uri_applies_to_that_segment() -> None:
    text = playlist(
        Seg(uri="a.ts"),
        footer=("#EXTINF:6,", '#EXT-X-KEY:METHOD=AES-128,URI="k1.key"', "b.ts"),
    )
    pl = media(text)
    assert pl.segments[0].key is None
    assert pl.segments[1].key == Key(method="AES-128", uri=KEY_URL, iv=None, keyformat=None)


def test_segment_iv() -> None:
    pl = media(
        playlist(
            Seg(uri="a.ts", key='METHOD=AES-128,URI="k1.key"'),
            Seg(uri="b.ts", key='METHOD=AES-128,URI="k1.key",IV=0xFF'),
            Seg(uri="c.ts", key="METHOD=NONE"),
            media_sequence=2**40 + 5,
        )
    )
    assert segment_iv(pl.segments[0]) == (2**40 + 5).to_bytes(16, "big")
    assert segment_iv(pl.segments[1]) == bytes(15) + b"\xff"
    assert segment_iv(pl.segments[2]) == (2**40 + 7).to_bytes(16, "big")


# --- low-latency HLS ---

LL_HLS = f"""#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:9
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24.0,PART-HOLD-BACK=1.002,HOLD-BACK=12
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:{T0_ISO}
#EXTINF:4.00008,
fileSequence266.mp4
#EXT-X-PART:DURATION=2.00004,URI="filePart267.0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=2.00004,URI="filePart267.1.mp4"
#EXTINF:4.00008,
fileSequence267.mp4
#EXT-X-PROGRAM-DATE-TIME:{iso(T0 + 8000)}
#EXT-X-PART:DURATION=0.33334,URI="filePart268.0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=oops,URI="filePart268.1.mp4"
#EXT-X-PART:URI="filePart268.2.mp4",BYTERANGE=nonsense
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="filePart268.3.mp4"
#EXT-X-RENDITION-REPORT:URI="../1M/waitForMSN.php",LAST-MSN=268,LAST-PART=1
#EXT-X-RENDITION-REPORT:URI="../4M/waitForMSN.php",LAST-MSN=x
"""


def test_low_latency_playlist_records_whole_segments() -> None:
    pl = media(LL_HLS)
    assert [(s.seq, s.uri.rsplit("/", 1)[1]) for s in pl.segments] == [
        (266, "fileSequence266.mp4"),
        (267, "fileSequence267.mp4"),
    ]
    assert [s.pdt_ms for s in pl.segments] == [T0, T0 + 4000]
    assert [s.duration_ms for s in pl.segments] == [4000, 4000]
    assert pl.server_control == ServerControl(
        can_block_reload=True,
        can_skip_until_ms=24_000,
        hold_back_ms=12_000,
        part_hold_back_ms=1002,
    )
    assert pl.part_target_ms == 333
    assert pl.target_duration_ms == 4000


def test_server_control_is_lenient_and_optional() -> None:
    assert media(playlist(Seg(uri="a.ts"))).server_control is None
    assert media(playlist(Seg(uri="a.ts"))).part_target_ms is None
    pl = media(
        playlist(
            Seg(uri="a.ts"),
            header=(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=NO,HOLD-BACK=soon,PART-HOLD-BACK=-1",
                "#EXT-X-PART-INF:PART-TARGET=x",
            ),
        )
    )
    assert pl.server_control == ServerControl(
        can_block_reload=False, can_skip_until_ms=None, hold_back_ms=None, part_hold_back_ms=None
    )
    assert pl.part_target_ms is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://o.example/live/index.m3u8", "https://o.example/live/index.m3u8?_HLS_msn=42"),
        (
            "https://o.example/live/index.m3u8?token=a%2Fb%3D&_HLS_msn=7&x=1",
            "https://o.example/live/index.m3u8?token=a%2Fb%3D&x=1&_HLS_msn=42",
        ),
        (
            "https://o.example/i.m3u8?_HLS_part=3&_HLS_skip=YES&_HLS_msn=41&&flag#frag",
            "https://o.example/i.m3u8?flag&_HLS_msn=42#frag",
        ),
        ("https://o.example/i.m3u8?", "https://o.example/i.m3u8?_HLS_msn=42"),
    ],
)
def test_blocking_reload_url(url: str, expected: str) -> None:
    assert blocking_reload_url(url, 42) == expected


def test_blocking_reload_url_rejects_a_negative_msn() -> None:
    with pytest.raises(ValueError, match="next_msn"):
        blocking_reload_url(URL, -1)


query_names = st.sampled_from(["a", "token", "_HLS_msn", "_HLS_part", "_HLS_skip", "_HLS_x", "b"])
query_values = st.text(alphabet="abcXYZ019-_.~%2F", max_size=6)


@given(
    st.lists(st.tuples(query_names, query_values), max_size=6),
    st.integers(0, 2**63),
)
def test_blocking_reload_url_sets_only_the_msn(params: list[tuple[str, str]], msn: int) -> None:
    query = "&".join(f"{name}={value}" for name, value in params)
    url = f"https://o.example/live/index.m3u8?{query}" if query else URL
    result = blocking_reload_url(url, msn)
    split = urlsplit(result)
    assert result.startswith(url.split("?")[0] + "?")
    pairs = split.query.split("&")
    assert pairs[-1] == f"_HLS_msn={msn}"
    directives = [p for p in pairs if p.split("=")[0] in ("_HLS_msn", "_HLS_part", "_HLS_skip")]
    assert directives == [f"_HLS_msn={msn}"]
    # Every other parameter survives byte for byte and in order.
    others = [f"{n}={v}" for n, v in params if n not in ("_HLS_msn", "_HLS_part", "_HLS_skip")]
    assert pairs[:-1] == others
    assert dict(parse_qsl(split.query))["_HLS_msn"] == str(msn)


# --- renditions of a master playlist ---

RENDITIONS = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",LANGUAGE="en",DEFAULT=NO,\
AUTOSELECT=YES,CHANNELS="2",URI="audio/en.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="Deutsch",LANGUAGE="de",DEFAULT=YES,\
AUTOSELECT=YES,CHANNELS="6",URI="audio/de.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=YES,\
AUTOSELECT=YES,URI="subs/en.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English (Forced)",LANGUAGE="en",\
FORCED=YES,URI="subs/en-forced.m3u8"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC1",INSTREAM-ID="CC1"
#EXT-X-MEDIA:TYPE=THUMBNAILS,GROUP-ID="thumbs",NAME="x",URI="thumbs.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,AUDIO="aac",SUBTITLES="subs",\
CLOSED-CAPTIONS="cc"
1080/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO="aac",SUBTITLES="subs"
720/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=640x360,AUDIO="aac-low"
360/index.m3u8
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac-low",NAME="Main",DEFAULT=YES
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac-low",NAME="English",LANGUAGE="en",URI="audio/en.m3u8"
"""
BASE = "https://origin.example/live/ch7/"
AUDIO_ONLY = '#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="mp4a.40.2"\naudio_only.m3u8\n'


def rendition(**fields: object) -> MediaRendition:
    defaults: dict[str, object] = {
        "type": "AUDIO",
        "group_id": "aac",
        "name": "English",
        "language": None,
        "default": False,
        "autoselect": False,
        "uri": None,
        "channels": None,
    }
    return MediaRendition(**{**defaults, **fields})  # type: ignore[arg-type]


EN = rendition(
    name="English", language="en", autoselect=True, channels="2", uri=BASE + "audio/en.m3u8"
)
DE = rendition(
    name="Deutsch",
    language="de",
    default=True,
    autoselect=True,
    channels="6",
    uri=BASE + "audio/de.m3u8",
)
SUBS_EN = rendition(
    type="SUBTITLES",
    group_id="subs",
    name="English",
    language="en",
    default=True,
    autoselect=True,
    uri=BASE + "subs/en.m3u8",
)
SUBS_FORCED = rendition(
    type="SUBTITLES",
    group_id="subs",
    name="English (Forced)",
    language="en",
    uri=BASE + "subs/en-forced.m3u8",
)
CC1 = rendition(type="CLOSED-CAPTIONS", group_id="cc", name="CC1")
LOW_MAIN = rendition(group_id="aac-low", name="Main", default=True)
LOW_EN = rendition(group_id="aac-low", name="English", language="en", uri=BASE + "audio/en.m3u8")


def variants_by_name(parsed: MasterPlaylist) -> dict[str, Variant]:
    return {v.name: v for v in parsed.variants}


def test_master_playlist_media_and_groups() -> None:
    parsed = master(RENDITIONS)
    # Unknown TYPEs (THUMBNAILS) are left out; order is the playlist's.
    assert parsed.media == (EN, DE, SUBS_EN, SUBS_FORCED, CC1, LOW_MAIN, LOW_EN)
    by_name = variants_by_name(parsed)
    assert list(by_name) == ["1080p", "720p", "360p"]
    assert (by_name["1080p"].audio_group, by_name["1080p"].subtitles_group) == ("aac", "subs")
    assert by_name["1080p"].video_group is None
    assert (by_name["360p"].audio_group, by_name["360p"].subtitles_group) == ("aac-low", None)
    assert variants_by_name(master(MASTER))["96k"].audio_group is None


def test_master_media_defaults() -> None:
    # No DEFAULT, LANGUAGE or CHANNELS: the RFC defaults; an absent group is None.
    assert master(MASTER).media == (
        rendition(group_id="aud", uri="https://origin.example/live/ch7/audio/en.m3u8"),
    )
    assert master("#EXTM3U\n" + AUDIO_ONLY).media == ()
    assert MasterPlaylist(url=URL, variants=()).media == ()


def test_select_best() -> None:
    parsed = master(RENDITIONS)
    by_name = variants_by_name(parsed)
    assert select_renditions(parsed, "best") == Selection(
        variants=(by_name["1080p"],),
        media=(DE, SUBS_EN, SUBS_FORCED),  # the DEFAULT=YES audio, every subtitle track
    )


def test_select_best_without_a_default_takes_the_first_audio() -> None:
    parsed = master(RENDITIONS.replace('DEFAULT=YES,AUTOSELECT=YES,CHANNELS="6"', "X=1"))
    assert parsed.media[1].default is False
    assert select_renditions(parsed, "best").media == (EN, SUBS_EN, SUBS_FORCED)


def test_select_all() -> None:
    parsed = master(RENDITIONS)
    by_name = variants_by_name(parsed)
    assert select_renditions(parsed, "all") == Selection(
        variants=(by_name["1080p"], by_name["720p"], by_name["360p"]),
        # CC1 and Main live inside their variants; LOW_EN has EN's URI.
        media=(EN, DE, SUBS_EN, SUBS_FORCED),
    )


def test_select_by_filters() -> None:
    parsed = master(RENDITIONS)
    by_name = variants_by_name(parsed)
    up_to_720 = select_renditions(parsed, [RenditionFilter(max_height=720)])
    # 360p's default audio is muxed in, so only 720p's group adds media.
    assert up_to_720 == Selection(
        variants=(by_name["720p"], by_name["360p"]), media=(DE, SUBS_EN, SUBS_FORCED)
    )
    low = select_renditions(parsed, (RenditionFilter(name="360p"),))
    assert low == Selection(variants=(by_name["360p"],), media=())
    # Filters are alternatives; the output is best first whatever the filter order.
    either = select_renditions(
        parsed, [RenditionFilter(name="360p"), RenditionFilter(min_height=1000)]
    )
    assert either.variants == (by_name["1080p"], by_name["360p"])
    by_bandwidth = select_renditions(parsed, [RenditionFilter(max_bandwidth=3_000_000)])
    assert by_bandwidth.variants == (by_name["720p"], by_name["360p"])
    one_filter = select_renditions(
        parsed, [RenditionFilter(min_height=700, max_height=800, max_bandwidth=3_000_000)]
    )
    assert one_filter.variants == (by_name["720p"],)


def test_filters_naming_media_add_it() -> None:
    parsed = master(RENDITIONS)
    by_name = variants_by_name(parsed)
    picked = select_renditions(
        parsed,
        [RenditionFilter(name="360p"), RenditionFilter(name="English (Forced)")],
    )
    assert picked == Selection(variants=(by_name["360p"],), media=(SUBS_FORCED,))
    # A name matches media of every type and group; equal URIs are recorded once.
    english = select_renditions(
        parsed, [RenditionFilter(name="360p"), RenditionFilter(name="English")]
    )
    assert english.media == (EN, SUBS_EN)
    # Heights and bandwidths cannot match an audio rendition.
    strict = select_renditions(
        parsed, [RenditionFilter(name="360p"), RenditionFilter(name="Deutsch", max_height=9999)]
    )
    assert strict.media == ()


def test_filters_selecting_no_variant_are_an_error_naming_them() -> None:
    parsed = master(RENDITIONS)
    with pytest.raises(PlaylistError) as info:
        select_renditions(
            parsed, [RenditionFilter(max_height=240), RenditionFilter(name="Deutsch")]
        )
    message = str(info.value)
    assert "{max_height=240} or {name='Deutsch'}" in message
    assert "its variants: 1080p, 720p, 360p" in message
    with pytest.raises(PlaylistError, match="no filters"):
        select_renditions(parsed, [])
    # A variant of unknown height fails a height bound.
    with pytest.raises(PlaylistError, match="min_height=1"):
        select_renditions(master("#EXTM3U\n" + AUDIO_ONLY), [RenditionFilter(min_height=1)])


def test_select_from_an_empty_master_is_an_error() -> None:
    empty = MasterPlaylist(url=URL, variants=())
    for spec in ("best", "all"):
        with pytest.raises(PlaylistError, match="no variants"):
            select_renditions(empty, spec)


def test_unknown_spec_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'best', 'all' or a list of filters"):
        select_renditions(master(RENDITIONS), "worst")  # type: ignore[arg-type]


def test_rendition_names() -> None:
    names = [rendition_name(m) for m in master(RENDITIONS).media]
    assert names[:3] == ["audio-aac-english", "audio-aac-deutsch", "subs-subs-en-english"]
    assert names[3].startswith("subs-subs-en-english_forced-")
    assert names[4:] == ["cc-cc-cc1", "audio-aac_low-main", "audio-aac_low-english"]
    assert len(set(names)) == len(names)
    assert rendition_name(rendition(type="VIDEO", group_id="cams", name="Angle 2")) == (
        "video-cams-angle_2"
    )
    assert rendition_name(rendition(type="SUBTITLES", group_id="s", name="Sub")) == "subs-s-sub"
    # Stable: the same rendition always gets the same name, hash included.
    assert rendition_name(SUBS_FORCED) == rendition_name(SUBS_FORCED)
    assert rendition_name(SUBS_FORCED) == "subs-subs-en-english_forced-" + names[3][-6:]


renditions_st = st.builds(
    rendition,
    type=st.sampled_from(["AUDIO", "SUBTITLES", "VIDEO", "CLOSED-CAPTIONS"]),
    group_id=st.text(alphabet="aB-_ 1é(", max_size=4),
    name=st.text(alphabet="aB-_ 1é(", max_size=4),
    language=st.none() | st.text(alphabet="aB-_ 1é(", max_size=3),
)


def identity(media: MediaRendition) -> tuple[str, ...]:
    """What rendition_name promises to tell apart: case and '-'/' '/'_' aside."""

    def fold(text: str) -> str:
        return text.lower().replace("-", "_").replace(" ", "_")

    language = media.language if media.type == "SUBTITLES" and media.language else ""
    return (media.type, fold(media.group_id), fold(language), fold(media.name))


@given(st.lists(renditions_st, max_size=12))
def test_rendition_names_are_safe_and_unique(medias: list[MediaRendition]) -> None:
    names = {identity(m): rendition_name(m) for m in medias}
    for name in names.values():
        assert name
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in name)
    assert len(set(names.values())) == len(names)
