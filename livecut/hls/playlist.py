"""Parse HLS playlists into frozen records (absolute URIs, PDT, keys) and pick renditions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import m3u8
from m3u8 import parser as m3u8_parser


@dataclass(frozen=True, kw_only=True, slots=True)
class ByteRange:
    length: int
    offset: int


@dataclass(frozen=True, kw_only=True, slots=True)
class InitSection:
    uri: str  # absolute URL
    byterange: ByteRange | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Key:
    method: str  # "AES-128", "SAMPLE-AES", ...; never "NONE" (that is no key at all)
    uri: str | None  # absolute URL of the key
    iv: bytes | None  # 16 bytes; None: derive it from the media sequence (segment_iv)
    keyformat: str | None  # KEYFORMAT as written; None means "identity"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerControl:
    """EXT-X-SERVER-CONTROL: what a low-latency origin offers its clients."""

    can_block_reload: bool  # honours _HLS_msn (blocking_reload_url)
    can_skip_until_ms: int | None
    hold_back_ms: int | None
    part_hold_back_ms: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaylistSegment:
    seq: int  # media sequence number
    epoch: int  # discontinuity sequence number this segment belongs to
    uri: str  # absolute URL, resolved against the playlist URL
    duration_ms: int  # EXTINF, rounded to ms
    pdt_ms: int | None  # wall-clock start (Unix ms); None only if the playlist has no PDT at all
    pdt_tagged: bool  # this segment carried its own EXT-X-PROGRAM-DATE-TIME
    discontinuity: bool  # EXT-X-DISCONTINUITY precedes it
    init: InitSection | None  # EXT-X-MAP in force
    byterange: ByteRange | None  # EXT-X-BYTERANGE with the implicit offset resolved
    gap: bool  # EXT-X-GAP
    title: str
    key: Key | None = None  # EXT-X-KEY in force; None when clear (METHOD=NONE or no key)


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaPlaylist:
    url: str
    target_duration_ms: int
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[PlaylistSegment, ...]
    ended: bool  # EXT-X-ENDLIST
    playlist_type: str | None  # "VOD", "EVENT" or None
    has_pdt: bool
    version: int | None
    encryption: str | None  # METHOD of any EXT-X-KEY other than NONE, else None
    server_control: ServerControl | None = None  # EXT-X-SERVER-CONTROL (LL-HLS)
    part_target_ms: int | None = None  # EXT-X-PART-INF PART-TARGET; parts are not recorded


@dataclass(frozen=True, kw_only=True, slots=True)
class Variant:
    uri: str  # absolute URL
    bandwidth: int
    average_bandwidth: int | None
    resolution: tuple[int, int] | None
    codecs: str | None
    frame_rate: float | None
    name: str  # "720p", "720p60", "128k"...; unique within its master playlist
    audio_group: str | None = None  # AUDIO attribute: GROUP-ID of its EXT-X-MEDIA audio
    subtitles_group: str | None = None  # SUBTITLES attribute
    video_group: str | None = None  # VIDEO attribute


RenditionType = Literal["AUDIO", "SUBTITLES", "VIDEO", "CLOSED-CAPTIONS"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaRendition:
    """One EXT-X-MEDIA tag of a master playlist: an alternate audio, subtitles, ..."""

    type: RenditionType
    group_id: str
    name: str
    language: str | None
    default: bool
    autoselect: bool
    uri: str | None  # absolute; None when the media is in the variant itself
    channels: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class MasterPlaylist:
    url: str
    variants: tuple[Variant, ...]
    media: tuple[MediaRendition, ...] = ()  # EXT-X-MEDIA tags in playlist order


@dataclass(frozen=True, kw_only=True, slots=True)
class RenditionFilter:
    """Selects variants; passes one when every field that is set matches it."""

    max_height: int | None = None
    min_height: int | None = None
    max_bandwidth: int | None = None
    name: str | None = None  # exact variant name (Variant.name) or media NAME


@dataclass(frozen=True, kw_only=True, slots=True)
class Selection:
    variants: tuple[Variant, ...]  # video variants to record, best first
    media: tuple[MediaRendition, ...]  # alternate audio / subtitles with a URI, unique by URI


@dataclass(frozen=True, kw_only=True, slots=True)
class _RawByteRange:
    length: int
    offset: int | None  # None: continues the previous segment's range
    lineno: int


class PlaylistError(ValueError):
    """The text is not a usable HLS playlist; the message says what is wrong and where."""


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_PDT_RE: Final = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?"
    r"(?P<tz>[Zz]|(?P<sign>[+-])(?P<tz_hour>\d{2})(?::?(?P<tz_minute>\d{2}))?)?"
)
_BYTERANGE_RE: Final = re.compile(r"(?P<length>\d+)(?:@(?P<offset>\d+))?")
_RESOLUTION_RE: Final = re.compile(r"(?P<width>\d+)[xX](?P<height>\d+)")
# RFC 8216 §4.2 attribute lists; names are upper case, but lenient servers exist.
_ATTRIBUTE_RE: Final = re.compile(r'(?P<name>[A-Za-z0-9-]+)=(?P<value>"[^"]*"|[^",]*)')
_IV_RE: Final = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]{1,32})")
_RENDITION_TYPES: Final[Mapping[str, RenditionType]] = {
    "AUDIO": "AUDIO",
    "SUBTITLES": "SUBTITLES",
    "VIDEO": "VIDEO",
    "CLOSED-CAPTIONS": "CLOSED-CAPTIONS",
}
# Low-latency tags we parse ourselves or ignore, so that m3u8 never trips on them.
_LOW_LATENCY_TAGS: Final = frozenset(
    {"#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-RENDITION-REPORT"}
)
_DELIVERY_DIRECTIVES: Final = frozenset({"_HLS_msn", "_HLS_part", "_HLS_skip"})

# Keys under which our tag hook leaves values in m3u8's per-segment custom values.
_PDT_KEY: Final = "livecut_pdt_ms"
_DURATION_KEY: Final = "livecut_duration_ms"
_BYTERANGE_KEY: Final = "livecut_byterange"
_KEY_KEY: Final = "livecut_key"


def parse_pdt_ms(value: str) -> int:
    """Parse an EXT-X-PROGRAM-DATE-TIME value into Unix milliseconds.

    Accepts 'Z' or numeric offsets (+01:00, +0100, +01) and any number of fractional
    digits (rounded half-up to the millisecond). A value without a zone is read as UTC,
    which is what the encoders that omit it mean.
    """
    match = _PDT_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}")
    second = int(match["second"])
    # A leap second (23:59:60) is one second after :59; datetime cannot hold it.
    leap_ms = 1000 if second == 60 else 0
    try:
        wall = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            min(second, 59),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {value!r} ({exc})") from None
    fraction = (match["fraction"] or "")[:9]
    fraction_ms = 0
    if fraction:
        numerator = int(fraction) * 1000
        denominator = 10 ** len(fraction)
        fraction_ms = (2 * numerator + denominator) // (2 * denominator)
    offset_ms = 0
    if match["sign"] is not None:
        tz_hour = int(match["tz_hour"])
        tz_minute = int(match["tz_minute"] or "0")
        if tz_hour > 23 or tz_minute > 59:
            raise ValueError(f"not a valid UTC offset: {value!r}")
        offset_ms = (tz_hour * 60 + tz_minute) * 60_000
        if match["sign"] == "-":
            offset_ms = -offset_ms
    return (wall - _EPOCH) // _MS + leap_ms + fraction_ms - offset_ms


def _seconds_to_ms(text: str) -> int:
    """Decimal seconds to integer ms, exactly (no float drift), rounded half-up."""
    try:
        seconds = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {text.strip()!r}") from None
    if not seconds.is_finite():
        raise ValueError(f"not a finite number: {text.strip()!r}")
    return int((seconds * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _parse_int(text: str) -> int:
    value = text.strip()
    if not value.isdecimal():
        raise ValueError(f"not a non-negative integer: {value!r}")
    return int(value)


def _parse_byterange(text: str) -> tuple[int, int | None]:
    match = _BYTERANGE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not <length>[@<offset>]: {text.strip()!r}")
    offset = match["offset"]
    return int(match["length"]), None if offset is None else int(offset)


def _tag_value(line: str) -> str:
    return line.split(":", 1)[1] if ":" in line else ""


def _attributes(text: str) -> dict[str, str]:
    """An attribute list as NAME -> value, quotes removed; never raises."""
    return {
        match["name"].upper(): match["value"].removeprefix('"').removesuffix('"')
        for match in _ATTRIBUTE_RE.finditer(text)
    }


def _parse_iv(text: str) -> bytes:
    """0x-hex into 16 bytes; shorter values are numbers and are zero-padded on the left."""
    match = _IV_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"IV is not 0x followed by at most 32 hex digits: {text.strip()!r}")
    return int(match["hex"], 16).to_bytes(16, "big")


def _lenient_ms(text: str | None) -> int | None:
    """Decimal seconds to ms, or None if absent or unusable: these only tune reloads."""
    if text is None:
        return None
    try:
        value = _seconds_to_ms(text)
    except ValueError:
        return None
    return value if value >= 0 else None


class _TagHook:
    """m3u8 custom-tags hook: parses the single-value tags m3u8 gets wrong or lossy.

    m3u8 parses PDT with float timedeltas (drift) and raises bare ValueErrors without a
    line number; target durations like "6.0" crash it; byte-range offsets are left as
    strings. We parse those here, exactly and with line numbers, and let m3u8 assemble
    segments and attribute lists.
    """

    def __init__(self, line_offset: int, url: str) -> None:
        self.line_offset = line_offset
        self.url = url
        self.lineno = 0
        self.line = ""
        self.target_duration_ms: int | None = None
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.version: int | None = None
        self.playlist_type: str | None = None
        self.server_control: ServerControl | None = None
        self.part_target_ms: int | None = None
        # Keys in force by KEYFORMAT: tags with different formats apply side by side,
        # a tag replaces the one of its own format (RFC 8216 §4.3.2.4).
        self.keys: dict[str, Key] = {}

    def current_key(self) -> Key | None:
        """The key a segment is fetched with: the identity one if there is one."""
        return self.keys.get("identity") or next(iter(self.keys.values()), None)

    def _key(self, value: str) -> None:
        attributes = _attributes(value)
        method = attributes.get("METHOD")
        if not method:
            raise ValueError("no METHOD attribute")
        if method.upper() == "NONE":
            self.keys.clear()
            return
        raw_iv = attributes.get("IV")
        uri = attributes.get("URI")
        keyformat = attributes.get("KEYFORMAT")
        self.keys[keyformat or "identity"] = Key(
            method=method,
            uri=urljoin(self.url, uri) if uri else None,
            iv=_parse_iv(raw_iv) if raw_iv is not None else None,
            keyformat=keyformat,
        )

    def _server_control(self, value: str) -> None:
        attributes = _attributes(value)
        self.server_control = ServerControl(
            can_block_reload=attributes.get("CAN-BLOCK-RELOAD", "").upper() == "YES",
            can_skip_until_ms=_lenient_ms(attributes.get("CAN-SKIP-UNTIL")),
            hold_back_ms=_lenient_ms(attributes.get("HOLD-BACK")),
            part_hold_back_ms=_lenient_ms(attributes.get("PART-HOLD-BACK")),
        )

    def error(self, what: str) -> PlaylistError:
        return PlaylistError(f"line {self.lineno}: {what}: {self.line}")

    def __call__(self, line: str, lineno: int, data: Any, state: Any) -> bool:
        self.lineno = lineno + self.line_offset
        self.line = line
        tag = line.split(":", 1)[0]
        value = _tag_value(line)
        try:
            if tag == "#EXT-X-PROGRAM-DATE-TIME":
                m3u8_parser.save_segment_custom_value(state, _PDT_KEY, parse_pdt_ms(value))
                return True
            if tag == "#EXTINF":
                duration_ms = _seconds_to_ms(value.split(",", 1)[0])
                if duration_ms < 0:
                    raise ValueError("negative duration")
                m3u8_parser.save_segment_custom_value(state, _DURATION_KEY, duration_ms)
                m3u8_parser.save_segment_custom_value(state, _KEY_KEY, self.current_key())
                return False  # m3u8 still reads the title and expects a URI next
            if tag == "#EXT-X-KEY":
                self._key(value)
                if m3u8_parser.get_segment_custom_value(state, _DURATION_KEY) is not None:
                    # Between EXTINF and its URI: it still applies to that segment.
                    m3u8_parser.save_segment_custom_value(state, _KEY_KEY, self.current_key())
                return False  # m3u8 keeps its list of keys for MediaPlaylist.encryption
            if tag == "#EXT-X-SERVER-CONTROL":
                self._server_control(value)
                return True
            if tag == "#EXT-X-PART-INF":
                self.part_target_ms = _lenient_ms(_attributes(value).get("PART-TARGET"))
                return True
            if tag in _LOW_LATENCY_TAGS:
                return True  # we record whole segments; parts and hints are not ours
            if tag == "#EXT-X-BYTERANGE":
                length, offset = _parse_byterange(value)
                m3u8_parser.save_segment_custom_value(
                    state,
                    _BYTERANGE_KEY,
                    _RawByteRange(length=length, offset=offset, lineno=self.lineno),
                )
                return False
            if tag == "#EXT-X-TARGETDURATION":
                # The RFC says decimal-integer; "6.0" is common and its meaning is plain.
                target_ms = _seconds_to_ms(value)
                if target_ms <= 0:
                    raise ValueError("must be positive")
                self.target_duration_ms = target_ms
                return True
            if tag == "#EXT-X-MEDIA-SEQUENCE":
                self.media_sequence = _parse_int(value)
                return True
            if tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                self.discontinuity_sequence = _parse_int(value)
                return True
            if tag == "#EXT-X-VERSION":
                self.version = _parse_int(value)
                return True
            if tag == "#EXT-X-PLAYLIST-TYPE":
                kind = value.strip().upper()
                # Unknown types are ignored rather than fatal: recording must go on.
                self.playlist_type = kind if kind in ("VOD", "EVENT") else None
                return True
        except ValueError as exc:
            raise self.error(f"bad {tag[1:]} ({exc})") from None
        return False


def _leading_line_count(text: str) -> int:
    """How many lines m3u8 drops when it strips leading whitespace, for line numbers."""
    stripped = len(text) - len(text.lstrip())
    return len(("x" + text[:stripped] + "x").splitlines()) - 1


# --- typed access to m3u8's untyped dicts, so Any stops here ---


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def parse_playlist(text: str, url: str) -> MediaPlaylist | MasterPlaylist:
    """Parse playlist text fetched from `url` (the final URL, after redirects)."""
    body = text.removeprefix("\ufeff")
    if not body.lstrip().startswith("#EXTM3U"):
        raise PlaylistError("not an HLS playlist: missing #EXTM3U")
    hook = _TagHook(_leading_line_count(body), url)
    try:
        raw: Mapping[str, object] = _mapping(m3u8.parse(body, custom_tags_parser=hook))
    except PlaylistError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # m3u8 raises bare errors from its attribute-list parsers; name the tag line.
        raise hook.error(f"malformed tag ({exc!r})") from None

    # A trailing tag (e.g. a PDT after the last URI) leaves m3u8 a segment without a URI.
    raw_segments = [seg for seg in _mappings(raw.get("segments")) if "uri" in seg]
    if raw.get("is_variant") is True:
        if raw_segments:
            raise PlaylistError("not a valid HLS playlist: has both EXT-X-STREAM-INF and EXTINF")
        return MasterPlaylist(url=url, variants=_variants(raw, url), media=_renditions(raw, url))
    return _media_playlist(raw, raw_segments, hook, url)


def _media_playlist(
    raw: Mapping[str, object],
    raw_segments: list[Mapping[str, object]],
    hook: _TagHook,
    url: str,
) -> MediaPlaylist:
    if hook.target_duration_ms is None:
        raise PlaylistError("media playlist without EXT-X-TARGETDURATION")
    skipped = _opt_int(_mapping(raw.get("skip")).get("skipped_segments")) or 0
    first_seq = hook.media_sequence + skipped

    segments: list[PlaylistSegment] = []
    epoch = hook.discontinuity_sequence
    for index, seg in enumerate(raw_segments):
        uri = urljoin(url, str(seg["uri"]))
        custom = _mapping(seg.get("custom_parser_values"))
        duration_ms = _opt_int(custom.get(_DURATION_KEY))
        if duration_ms is None:
            raise PlaylistError(f"segment {seg['uri']!s} has no EXTINF")
        discontinuity = seg.get("discontinuity") is True
        if discontinuity:
            epoch += 1
        pdt_ms = _opt_int(custom.get(_PDT_KEY))
        segments.append(
            PlaylistSegment(
                seq=first_seq + index,
                epoch=epoch,
                uri=uri,
                duration_ms=duration_ms,
                pdt_ms=pdt_ms,  # only the tagged ones for now; resolved below
                pdt_tagged=pdt_ms is not None,
                discontinuity=discontinuity,
                init=_init_section(_mapping(seg.get("init_section")), url),
                byterange=_byterange(custom.get(_BYTERANGE_KEY), uri, segments),
                gap=seg.get("gap_tag") is True,
                title=_opt_str(seg.get("title")) or "",
                key=_key_of(custom.get(_KEY_KEY)),
            )
        )
    resolved = resolve_pdts([seg.duration_ms for seg in segments], [seg.pdt_ms for seg in segments])
    return MediaPlaylist(
        url=url,
        target_duration_ms=hook.target_duration_ms,
        media_sequence=hook.media_sequence,
        discontinuity_sequence=hook.discontinuity_sequence,
        segments=tuple(
            replace(seg, pdt_ms=pdt) for seg, pdt in zip(segments, resolved, strict=True)
        ),
        ended=raw.get("is_endlist") is True,
        playlist_type=hook.playlist_type,
        has_pdt=any(seg.pdt_tagged for seg in segments),
        version=hook.version,
        encryption=_encryption(raw),
        server_control=hook.server_control,
        part_target_ms=hook.part_target_ms,
    )


def _key_of(value: object) -> Key | None:
    return value if isinstance(value, Key) else None


def _byterange(raw_range: object, uri: str, previous: list[PlaylistSegment]) -> ByteRange | None:
    if not isinstance(raw_range, _RawByteRange):
        return None
    offset = raw_range.offset
    if offset is None:
        # RFC 8216 §4.3.2.2: without an offset the range continues the previous
        # segment's, which must be a sub-range of the same resource.
        before = previous[-1] if previous else None
        if before is None or before.byterange is None or before.uri != uri:
            raise PlaylistError(
                f"line {raw_range.lineno}: EXT-X-BYTERANGE has no offset and the previous "
                f"segment is not a sub-range of the same resource {uri}"
            )
        offset = before.byterange.offset + before.byterange.length
    return ByteRange(length=raw_range.length, offset=offset)


def resolve_pdts(durations: list[int], tagged: list[int | None]) -> list[int | None]:
    """Wall-clock start of every segment from the PDT tags some of them carry.

    RFC 8216 §4.3.2.6: an untagged segment starts where the previous one ends, across
    discontinuities too; segments before the first tag are counted back from it.
    """
    first = next((i for i, pdt in enumerate(tagged) if pdt is not None), None)
    if first is None:
        return [None] * len(durations)
    resolved: list[int | None] = [None] * len(durations)
    start = tagged[first]
    assert start is not None
    for index in range(first - 1, -1, -1):
        start -= durations[index]
        resolved[index] = start
    previous_end = 0
    for index in range(first, len(durations)):
        own = tagged[index]
        start = own if own is not None else previous_end
        resolved[index] = start
        previous_end = start + durations[index]
    return resolved


def _init_section(raw_map: Mapping[str, object], url: str) -> InitSection | None:
    if not raw_map:
        return None
    uri = _opt_str(raw_map.get("uri"))
    if not uri:
        raise PlaylistError("EXT-X-MAP without a URI attribute")
    byterange: ByteRange | None = None
    raw_range = _opt_str(raw_map.get("byterange"))
    if raw_range is not None:
        try:
            length, offset = _parse_byterange(raw_range)
        except ValueError as exc:
            raise PlaylistError(f"EXT-X-MAP {uri}: bad BYTERANGE ({exc})") from None
        # No previous-segment rule applies to a map: a missing offset means the start.
        byterange = ByteRange(length=length, offset=offset or 0)
    return InitSection(uri=urljoin(url, uri), byterange=byterange)


def _encryption(raw: Mapping[str, object]) -> str | None:
    for key in _mappings(raw.get("keys")):
        method = _opt_str(key.get("method"))
        if method is not None and method.upper() != "NONE":
            return method
    return None


def _variants(raw: Mapping[str, object], url: str) -> tuple[Variant, ...]:
    unnamed: list[Variant] = []
    for entry in _mappings(raw.get("playlists")):
        info = _mapping(entry.get("stream_info"))
        resolution: tuple[int, int] | None = None
        raw_resolution = _opt_str(info.get("resolution"))
        if raw_resolution is not None:
            match = _RESOLUTION_RE.fullmatch(raw_resolution.strip().strip('"'))
            # A malformed RESOLUTION is cosmetic; it must not stop a recording.
            if match is not None:
                resolution = (int(match["width"]), int(match["height"]))
        unnamed.append(
            Variant(
                uri=urljoin(url, str(entry.get("uri", ""))),
                bandwidth=_opt_int(info.get("bandwidth")) or 0,
                average_bandwidth=_opt_int(info.get("average_bandwidth")),
                resolution=resolution,
                codecs=_opt_str(info.get("codecs")),
                frame_rate=_opt_float(info.get("frame_rate")),
                name="",  # below, once all variants are known
                audio_group=_opt_str(info.get("audio")) or None,
                subtitles_group=_opt_str(info.get("subtitles")) or None,
                video_group=_opt_str(info.get("video")) or None,
            )
        )
    names = _variant_names([(v.bandwidth, v.resolution, v.frame_rate) for v in unnamed])
    return tuple(replace(v, name=name) for v, name in zip(unnamed, names, strict=True))


def _renditions(raw: Mapping[str, object], url: str) -> tuple[MediaRendition, ...]:
    renditions: list[MediaRendition] = []
    for entry in _mappings(raw.get("media")):

        def text(name: str, entry: Mapping[str, object] = entry) -> str | None:
            value = _opt_str(entry.get(name))
            return value.strip('"') if value else None

        kind = _RENDITION_TYPES.get((text("type") or "").upper())
        group_id = text("group_id")
        # Unknown TYPEs and tags without a group cannot be referenced by any variant.
        if kind is None or group_id is None:
            continue
        uri = text("uri")
        renditions.append(
            MediaRendition(
                type=kind,
                group_id=group_id,
                name=text("name") or "",
                language=text("language"),
                default=(text("default") or "").upper() == "YES",
                autoselect=(text("autoselect") or "").upper() == "YES",
                uri=urljoin(url, uri) if uri else None,
                channels=text("channels"),
            )
        )
    return tuple(renditions)


def _base_name(bandwidth: int, resolution: tuple[int, int] | None, frame_rate: float | None) -> str:
    if resolution is None:
        return f"{round(bandwidth / 1000)}k"
    name = f"{resolution[1]}p"
    # Streamlink's convention: only high frame rates are part of the name ("720p60").
    if frame_rate is not None and round(frame_rate) > 30:
        name += str(round(frame_rate))
    return name


def _variant_names(specs: list[tuple[int, tuple[int, int] | None, float | None]]) -> list[str]:
    """Unique names; among equal base names the highest bandwidth keeps the plain one."""
    names = [""] * len(specs)
    taken: set[str] = set()
    bases = [_base_name(*spec) for spec in specs]
    # Plain names first, in order of preference, so a "_<kbps>k" suffix never steals one.
    order = sorted(range(len(specs)), key=lambda i: (-specs[i][0], i))
    for index in order:
        if bases[index] not in taken:
            names[index] = bases[index]
            taken.add(bases[index])
    for index in order:
        if names[index]:
            continue
        base = bases[index]
        kbps = f"{round(specs[index][0] / 1000)}k"
        candidate = base if base.endswith("k") and specs[index][1] is None else f"{base}_{kbps}"
        suffix = 2
        name = candidate
        while name in taken:
            name = f"{candidate}_{suffix}"
            suffix += 1
        names[index] = name
        taken.add(name)
    return names


def best_variant(master: MasterPlaylist) -> Variant:
    """Highest BANDWIDTH, ties broken by resolution height, then playlist order."""
    if not master.variants:
        raise PlaylistError(f"master playlist {master.url} lists no variants")
    return max(
        master.variants,
        key=lambda v: (v.bandwidth, v.resolution[1] if v.resolution is not None else 0),
    )


def _height(variant: Variant) -> int | None:
    return variant.resolution[1] if variant.resolution is not None else None


def _best_first(variants: Iterable[Variant]) -> list[Variant]:
    """The order of best_variant: bandwidth, then height, then playlist order."""
    return sorted(variants, key=lambda v: (-v.bandwidth, -(_height(v) or 0)))


_WithUri = TypeVar("_WithUri", Variant, MediaRendition)


def _unique_by_uri(items: Iterable[_WithUri]) -> tuple[_WithUri, ...]:
    seen: set[str | None] = set()
    unique: list[_WithUri] = []
    for item in items:
        if item.uri not in seen:
            seen.add(item.uri)
            unique.append(item)
    return tuple(unique)


def _variant_passes(spec: RenditionFilter, variant: Variant) -> bool:
    height = _height(variant)
    # A variant of unknown height (audio only, or no RESOLUTION) fails any height bound.
    if spec.max_height is not None and (height is None or height > spec.max_height):
        return False
    if spec.min_height is not None and (height is None or height < spec.min_height):
        return False
    if spec.max_bandwidth is not None and variant.bandwidth > spec.max_bandwidth:
        return False
    return spec.name is None or spec.name == variant.name


def _media_passes(spec: RenditionFilter, media: MediaRendition) -> bool:
    # Heights and bandwidths say nothing about a media rendition, so they cannot match.
    only_name = (spec.max_height, spec.min_height, spec.max_bandwidth) == (None, None, None)
    return only_name and spec.name is not None and spec.name == media.name


def _group_media(master: MasterPlaylist, variant: Variant) -> list[MediaRendition]:
    """What a player of `variant` would fetch besides it: one audio, every subtitle track."""
    chosen: list[MediaRendition] = []
    if variant.audio_group is not None:
        audio = [m for m in master.media if m.type == "AUDIO" and m.group_id == variant.audio_group]
        default = next((m for m in audio if m.default), audio[0] if audio else None)
        # A default without a URI is muxed into the variant: nothing more to record.
        if default is not None and default.uri is not None:
            chosen.append(default)
    if variant.subtitles_group is not None:
        chosen.extend(
            m
            for m in master.media
            if m.type == "SUBTITLES" and m.group_id == variant.subtitles_group and m.uri
        )
    return chosen


def _describe(spec: RenditionFilter) -> str:
    fields = (
        ("max_height", spec.max_height),
        ("min_height", spec.min_height),
        ("max_bandwidth", spec.max_bandwidth),
        ("name", spec.name),
    )
    shown = ", ".join(f"{name}={value!r}" for name, value in fields if value is not None)
    return "{" + shown + "}"


def select_renditions(
    master: MasterPlaylist, spec: Literal["best", "all"] | Sequence[RenditionFilter]
) -> Selection:
    """The variants and media renditions of `master` to record for a stream's `renditions`.

    "best": best_variant plus its audio (the DEFAULT=YES one of its group, else the
    first) and all of its subtitles. "all": every variant and every media rendition with
    a URI. Filters: the variants passing any filter, each with its audio and subtitles as
    for "best", plus the media renditions a filter names.
    """
    if isinstance(spec, str):
        if spec == "best":
            best = best_variant(master)
            return Selection(variants=(best,), media=_unique_by_uri(_group_media(master, best)))
        if spec == "all":
            if not master.variants:
                raise PlaylistError(f"master playlist {master.url} lists no variants")
            return Selection(
                variants=_unique_by_uri(_best_first(master.variants)),
                media=_unique_by_uri(m for m in master.media if m.uri is not None),
            )
        raise ValueError(f"renditions: {spec!r} is not 'best', 'all' or a list of filters")
    filters = tuple(spec)
    passing = [v for v in master.variants if any(_variant_passes(f, v) for f in filters)]
    variants = _best_first(passing)
    if not variants:
        wanted = " or ".join(_describe(f) for f in filters) or "(no filters)"
        available = ", ".join(v.name for v in _best_first(master.variants)) or "none"
        raise PlaylistError(
            f"no variant of {master.url} matches the rendition filters {wanted}; "
            f"its variants: {available}"
        )
    grouped = [m for v in variants for m in _group_media(master, v)]
    named = [m for m in master.media if m.uri and any(_media_passes(f, m) for f in filters)]
    return Selection(variants=_unique_by_uri(variants), media=_unique_by_uri(grouped + named))


_RENDITION_PREFIXES: Final[Mapping[RenditionType, str]] = {
    "AUDIO": "audio",
    "SUBTITLES": "subs",
    "VIDEO": "video",
    "CLOSED-CAPTIONS": "cc",
}
# Names made of these lose only case and '-'/' ' vs '_' in a slug: no server tells
# two renditions apart by that. Any other character costs the slug its uniqueness.
_SLUG_SAFE_RE: Final = re.compile(r"[A-Za-z0-9_\- ]+")
_SLUG_RE: Final = re.compile(r"[^a-z0-9_]+")


def _slug(part: str) -> tuple[str, bool]:
    """The part in [a-z0-9_], and whether it still tells the part apart from others."""
    if _SLUG_SAFE_RE.fullmatch(part):
        return part.lower().replace("-", "_").replace(" ", "_"), True
    return _SLUG_RE.sub("_", part.lower()).strip("_") or "_", False


def rendition_name(media: MediaRendition) -> str:
    """A stable name for a media rendition, unique within its master playlist.

    `audio-<group>-<name>`, `subs-<group>-<language>-<name>`, `video-...`, `cc-...`:
    lower case, [a-z0-9_-] only, parts joined by '-'. NAME is unique within a group
    (RFC 8216 §4.3.4.1.1) and the language alone is not (forced subtitles share it).
    A part with characters beyond letters, digits, '_', '-' and ' ' (or an empty one)
    gets a short hash of the rendition's identity appended, so the name stays unique.
    """
    parts = [media.group_id]
    if media.type == "SUBTITLES" and media.language:
        parts.append(media.language)
    parts.append(media.name)
    slugs = [_slug(part) for part in parts]
    name = "-".join([_RENDITION_PREFIXES[media.type], *(slug for slug, _ in slugs)])
    if not all(exact for _, exact in slugs):
        identity = "\n".join([media.type, media.group_id, media.language or "", media.name])
        name += "-" + hashlib.sha256(identity.encode()).hexdigest()[:6]
    return name


def segment_iv(segment: PlaylistSegment) -> bytes:
    """The AES-128 IV of a segment: its key's IV, else its media sequence (RFC 8216 §5.2)."""
    if segment.key is not None and segment.key.iv is not None:
        return segment.key.iv
    return segment.seq.to_bytes(16, "big")


def blocking_reload_url(playlist_url: str, next_msn: int) -> str:
    """The playlist URL asking the origin to hold the reply until segment `next_msn` exists.

    Sets `_HLS_msn` and drops any `_HLS_part` / `_HLS_skip` (we record whole segments and
    want whole playlists); every other query parameter is kept byte for byte, in order.
    """
    if next_msn < 0:
        raise ValueError(f"next_msn must be >= 0, not {next_msn}")
    parts = urlsplit(playlist_url)
    kept = [
        param
        for param in parts.query.split("&")
        if param and unquote_plus(param.split("=", 1)[0]) not in _DELIVERY_DIRECTIVES
    ]
    kept.append(f"_HLS_msn={next_msn}")
    return urlunsplit(parts._replace(query="&".join(kept)))
