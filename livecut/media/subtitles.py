"""WebVTT subtitles: place HLS cues on the wall clock, cut them to a clip, write them out.

parse_segment, clip_cues and render_webvtt are pure. MovTextTrack muxes cues into an MP4
that PyAV is writing, as the 3GPP timed-text ('tx3g', codec mov_text) track players show.
"""

from __future__ import annotations

import html
import logging
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer

log = logging.getLogger(__name__)

MPEGTS_HZ = 90_000
MPEGTS_WRAP_S = 2**33 / MPEGTS_HZ  # PES timestamps have 33 bits: they wrap every ~26.5 h
DUPLICATE_TOLERANCE_MS = 50.0  # repeats of one cue placed via different segments' PDTs


class SubtitleError(ValueError):
    """The data is not a WebVTT file, or its X-TIMESTAMP-MAP header cannot be read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Cue:
    start_ms: float  # wall clock (Unix ms)
    end_ms: float
    text: str  # cue payload, WebVTT markup included, lines joined with "\n"
    settings: str = ""  # cue settings after the timing, kept verbatim


# --- parsing ---------------------------------------------------------------------------

_STAMP = r"(?:\d+:)?[0-5]\d:[0-5]\d[.,]\d{3}"
_STAMP_PARTS = re.compile(r"(?:(\d+):)?([0-5]\d):([0-5]\d)[.,](\d{3})")
_TIMING = re.compile(rf"\s*({_STAMP})[ \t]*-->[ \t]*({_STAMP})(?:[ \t]+(.*?))?\s*")
_ISO_BMFF_BOXES = (b"ftyp", b"styp", b"moof", b"moov", b"sidx")
# Without X-TIMESTAMP-MAP, cue times this small are offsets into the segment: media times
# (RFC 8216's reading) that small would only occur in a stream's first half minute.
_SEGMENT_RELATIVE_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class _LocalCue:
    start_s: float  # cue time as written in the file
    end_s: float
    text: str
    settings: str


def parse_segment(
    data: bytes, *, pts_to_wall_ms: Callable[[float], float], segment_start_ms: int
) -> list[Cue]:
    """The cues of one stored WebVTT segment, in file order, on the wall clock.

    With X-TIMESTAMP-MAP=MPEGTS:m,LOCAL:l (RFC 8216 section 3.5) a cue at t s is at media
    time m/90000 + t - l s, which pts_to_wall_ms turns into wall time. Without it, cue
    times count from the segment's start, unless the first cue starts more than
    _SEGMENT_RELATIVE_MAX_S in and reading the times as media times (RFC 8216's rule for
    a missing map: cue time 0 is media time 0) lands it nearer the segment start. Of the
    media times equal modulo the 33-bit MPEG-TS wrap, the one nearest the segment wins.
    Malformed cues are skipped; data that is not WebVTT raises SubtitleError.
    """
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    if not text.strip():
        return []  # some packagers serve empty segments for stretches without subtitles
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[0] != "WEBVTT" and not lines[0].startswith(("WEBVTT ", "WEBVTT\t")):
        if data[4:8] in _ISO_BMFF_BOXES:
            raise SubtitleError("an MP4 (ISO BMFF) segment, not a WebVTT text file")
        raise SubtitleError(f"not a WebVTT file: it starts with {lines[0][:32]!r}")
    header_end = next(
        (i for i, line in enumerate(lines) if not line.strip() or "-->" in line), len(lines)
    )
    timestamp_map = next(
        (line for line in lines[1:header_end] if line.startswith("X-TIMESTAMP-MAP=")), None
    )
    cues: list[_LocalCue] = []
    for block in _blocks(lines[header_end:]):
        if "-->" in block[0] or (len(block) > 1 and "-->" in block[1]):
            timing = 0 if "-->" in block[0] else 1  # block[0] is then the cue's identifier
            cue = _parse_cue(block[timing], block[timing + 1 :])
            if cue is not None:
                cues.append(cue)
        elif block[0].startswith("X-TIMESTAMP-MAP=") and timestamp_map is None and not cues:
            timestamp_map = block[0]  # a blank line too many after WEBVTT; still the header
        # Anything else is a NOTE, STYLE or REGION block, or junk: none of it is shown.
    if not cues:
        return []
    place = _placer(timestamp_map, cues, pts_to_wall_ms, segment_start_ms)
    return [
        Cue(start_ms=start, end_ms=end, text=cue.text, settings=cue.settings)
        for cue in cues
        for start, end in [place(cue)]
    ]


def _blocks(lines: Sequence[str]) -> Iterator[list[str]]:
    """Blocks separated by blank lines; as in the WebVTT parser, a line holding '-->' that
    cannot be a timing line (not first, nor second after an identifier) starts a new one."""
    block: list[str] = []
    for line in lines:
        if not line.strip():
            if block:
                yield block
            block = []
            continue
        if "-->" in line and (len(block) >= 2 or (block and "-->" in block[0])):
            yield block
            block = []
        block.append(line)
    if block:
        yield block


def _parse_cue(timing: str, payload: Sequence[str]) -> _LocalCue | None:
    match = _TIMING.fullmatch(timing)
    if match is None:
        log.debug("skipping a cue with a malformed timing line: %r", timing)
        return None
    start_s, end_s = _seconds(match[1]), _seconds(match[2])
    if end_s <= start_s:
        log.debug("skipping a cue that ends before it starts: %r", timing)
        return None
    return _LocalCue(start_s, end_s, "\n".join(payload), match[3] or "")


def _seconds(stamp: str) -> float:
    parts = _STAMP_PARTS.fullmatch(stamp.strip())
    if parts is None:
        raise ValueError(f"not a WebVTT timestamp: {stamp!r}")
    hours, minutes, seconds, millis = (int(p) if p else 0 for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _timestamp_map(line: str) -> float:
    """Media seconds of cue time 0, from an X-TIMESTAMP-MAP header line."""
    fields: dict[str, str] = {}
    for field in line.removeprefix("X-TIMESTAMP-MAP=").split(","):
        key, _, value = field.partition(":")
        fields[key.strip().upper()] = value.strip()
    try:
        mpegts = int(fields["MPEGTS"])
        local_s = _seconds(fields.get("LOCAL", "00:00.000"))
    except (KeyError, ValueError) as exc:
        raise SubtitleError(
            f"bad X-TIMESTAMP-MAP header {line!r}: want MPEGTS:<90 kHz ticks>,LOCAL:<hh:mm:ss.mmm>"
        ) from exc
    if mpegts < 0:
        raise SubtitleError(f"bad X-TIMESTAMP-MAP header {line!r}: MPEGTS is negative")
    return mpegts / MPEGTS_HZ - local_s


def _placer(
    timestamp_map: str | None,
    cues: Sequence[_LocalCue],
    pts_to_wall_ms: Callable[[float], float],
    segment_start_ms: int,
) -> Callable[[_LocalCue], tuple[float, float]]:
    def nearest_media_s(media_s: float) -> float:
        # The video's PTS wrap too, and whoever built pts_to_wall_ms saw them wrapped (or
        # unwrapped within one segment): take the reading that lands nearest this segment.
        wrapped = media_s % MPEGTS_WRAP_S
        readings = (media_s, wrapped - MPEGTS_WRAP_S, wrapped, wrapped + MPEGTS_WRAP_S)
        return min(readings, key=lambda s: abs(pts_to_wall_ms(s) - segment_start_ms))

    def on_media_clock(cue: _LocalCue, offset_s: float) -> tuple[float, float]:
        start_s = nearest_media_s(cue.start_s + offset_s)
        return pts_to_wall_ms(start_s), pts_to_wall_ms(start_s + cue.end_s - cue.start_s)

    def from_segment_start(cue: _LocalCue) -> tuple[float, float]:
        return segment_start_ms + cue.start_s * 1000, segment_start_ms + cue.end_s * 1000

    if timestamp_map is not None:
        offset_s = _timestamp_map(timestamp_map)
        return lambda cue: on_media_clock(cue, offset_s)
    first_s = min(cue.start_s for cue in cues)
    nearest_ms = abs(pts_to_wall_ms(nearest_media_s(first_s)) - segment_start_ms)
    if first_s > _SEGMENT_RELATIVE_MAX_S and nearest_ms < first_s * 1000:
        return lambda cue: on_media_clock(cue, 0.0)
    return from_segment_start


# --- cutting and writing WebVTT -----------------------------------------------------------


def clip_cues(
    cues: Iterable[Cue],
    start_ms: float,
    end_ms: float,
    *,
    tolerance_ms: float = DUPLICATE_TOLERANCE_MS,
) -> list[Cue]:
    """The cues overlapping [start_ms, end_ms), trimmed to it and sorted by start.

    HLS repeats a cue in every segment it spans: copies with the same text and settings
    whose trimmed start and end agree within tolerance_ms are kept once. Nothing else is
    merged; overlapping cues stay separate.
    """
    if end_ms <= start_ms:
        return []
    trimmed = sorted(
        (
            replace(cue, start_ms=max(cue.start_ms, start_ms), end_ms=min(cue.end_ms, end_ms))
            for cue in cues
            if cue.start_ms < end_ms and cue.end_ms > start_ms
        ),
        key=lambda c: (c.start_ms, c.end_ms, c.text, c.settings),
    )
    kept: list[Cue] = []
    for cue in trimmed:
        if not any(
            _same_cue(cue, other, tolerance_ms) for other in _recent(kept, cue, tolerance_ms)
        ):
            kept.append(cue)
    return kept


def _recent(kept: Sequence[Cue], cue: Cue, tolerance_ms: float) -> Iterator[Cue]:
    for other in reversed(kept):
        if other.start_ms < cue.start_ms - tolerance_ms:
            return
        yield other


def _same_cue(a: Cue, b: Cue, tolerance_ms: float) -> bool:
    return (
        a.text == b.text
        and a.settings == b.settings
        and abs(a.start_ms - b.start_ms) <= tolerance_ms
        and abs(a.end_ms - b.end_ms) <= tolerance_ms
    )


def render_webvtt(cues: Sequence[Cue], *, zero_ms: float) -> str:
    """A standalone WebVTT file of the cues, timed from zero_ms (the clip's first frame).

    Times are rounded to the millisecond; a cue starting before zero_ms starts at 0 and
    one that ends by then is left out.
    """
    out = ["WEBVTT", ""]
    for cue in sorted(cues, key=lambda c: c.start_ms):
        start, end = max(round(cue.start_ms - zero_ms), 0), round(cue.end_ms - zero_ms)
        if end <= start:
            continue
        timing = f"{_stamp(start)} --> {_stamp(end)}"
        settings = " ".join(cue.settings.split())
        # A blank line would end the cue and '-->' would start another.
        payload = [line.replace("-->", "--&gt;") for line in cue.text.split("\n") if line.strip()]
        out += [f"{timing} {settings}" if settings else timing, *payload, ""]
    return "\n".join(out)


def _stamp(ms: int) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


# --- mov_text --------------------------------------------------------------------------

# FFmpeg's default ASS header, as its SRT decoder hands the mov_text encoder: the encoder
# turns its style into the tx3g sample description (white Arial on black, bottom centre),
# so our track is described exactly like one `ffmpeg -i x.srt -c:s mov_text` would write.
_ASS_HEADER = (
    b"[Script Info]\n"
    b"ScriptType: v4.00+\n"
    b"PlayResX: 384\n"
    b"PlayResY: 288\n"
    b"ScaledBorderAndShadow: yes\n"
    b"\n"
    b"[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    b"BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1\n"
    b"\n"
    b"[Events]\n"
    b"Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)
# TextSampleEntry: displayFlags(4) justification(2) background(4) BoxRecord(8), then the
# default StyleRecord(12): startChar endChar fontID(2) face(1) size(1) rgba(4).
_DEFAULT_STYLE = slice(18, 30)
_FALLBACK_STYLE = bytes.fromhex("0000 0000 0001 00 10 ffffffff")
_FACE = {"b": 1, "i": 2, "u": 4}  # tx3g face-style flags for WebVTT <b>, <i>, <u>
_EMPTY_SAMPLE = b"\x00\x00"
# movenc ends a mov_text sample by itself when a packet of any track arrives whose dts,
# compared as a bare number with the text track's, lies past the sample's end. With a
# timescale at least as fine as every other track's, that only happens once the muxer
# is really past that time, so it never adds a zero-length sample ahead of ours.
_MIN_TIMESCALE = MPEGTS_HZ

# ISO 639-1 -> ISO 639-2/T, the codes an MP4 mdhd box holds (from Debian's iso-codes).
_ISO639_PAIRS = (
    "aaaar ababk aeave afafr akaka amamh anarg arara asasm avava ayaym azaze babak bebel bgbul "
    "bhbih bibis bmbam bnben bobod brbre bsbos cacat ceche chcha cocos crcre csces cuchu cvchv "
    "cycym dadan dedeu dvdiv dzdzo eeewe elell eneng eoepo esspa etest eueus fafas ffful fifin "
    "fjfij fofao frfra fyfry gagle gdgla glglg gngrn guguj gvglv hahau heheb hihin hohmo hrhrv "
    "hthat huhun hyhye hzher iaina idind ieile igibo iiiii ikipk ioido isisl itita iuiku jajpn "
    "jvjav kakat kgkon kikik kjkua kkkaz klkal kmkhm knkan kokor krkau kskas kukur kvkom kwcor "
    "kykir lalat lbltz lglug lilim lnlin lolao ltlit lulub lvlav mgmlg mhmah mimri mkmkd mlmal "
    "mnmon mrmar msmsa mtmlt mymya nanau nbnob ndnde nenep ngndo nlnld nnnno nonor nrnbl nvnav "
    "nynya ococi ojoji omorm orori ososs papan pipli plpol pspus ptpor quque rmroh rnrun roron "
    "rurus rwkin sasan scsrd sdsnd sesme sgsag sisin skslk slslv smsmo snsna sosom sqsqi srsrp "
    "ssssw stsot susun svswe swswa tatam tetel tgtgk ththa titir tktuk tltgl tntsn toton trtur "
    "tstso tttat twtwi tytah uguig ukukr ururd uzuzb veven vivie vovol wawln wowol xhxho yiyid "
    "yoyor zazha zhzho zuzul"
)
_ISO639_1_TO_2 = {pair[:2]: pair[2:] for pair in _ISO639_PAIRS.split()}


@dataclass(slots=True)
class _Shown:
    end: int  # ticks
    text: str
    faces: list[int]  # tx3g face flags of each character of text


class MovTextTrack:
    """A mov_text track of an MP4 that PyAV is writing; cues go in as samples.

    A sample shows what is on screen until the next one: cues that overlap share a
    sample, their lines stacked in start order, and an empty sample fills each gap.
    Samples are muxed as cues arrive, which must be in start order (clip_cues' order).
    Add each cue before the other tracks get more than 10 s (libavformat's interleaving
    window) past its start; simplest is to add all of a clip's cues before muxing
    anything else. A clip without cues is best left without this track.
    """

    def __init__(self, out: OutputContainer, *, language: str | None = None) -> None:
        """Add the stream to `out`; call before anything is muxed into `out`.

        language: a BCP 47 tag as in HLS ('en', 'pt-BR') or an ISO 639-2 code; the MP4
        holds it as ISO 639-2/T, and as 'und' if it is unknown.
        """
        stream = out.add_stream("mov_text")
        stream.time_base = self._time_base = Fraction(1, _timescale(out))
        code = _mp4_language(language)
        if code is not None:
            stream.metadata["language"] = code
        ctx = stream.codec_context
        ctx.subtitle_header = _ASS_HEADER
        # Opening the encoder builds the sample description now, so its default style is
        # known for our style records. It encodes nothing: we build samples ourselves.
        ctx.open()
        extradata = ctx.extradata or b""
        self._style = extradata[_DEFAULT_STYLE] if len(extradata) >= 30 else _FALLBACK_STYLE
        self._out = out
        self._stream = stream
        self._shown: list[_Shown] = []
        self._last_start: int | None = None
        self._last_dts: int | None = None
        self._last_end = 0
        self._last_payload = b""
        self._closed = False

    def add(self, cue: Cue, *, zero_ms: float) -> None:
        """Mux the cue, timed from zero_ms (the clip's first frame); before 0 is cut off."""
        if self._closed:
            raise RuntimeError("add() after close(): the mov_text track is finished")
        start = max(self._ticks(cue.start_ms - zero_ms), 0)
        end = self._ticks(cue.end_ms - zero_ms)
        if end <= start:
            return
        if self._last_start is not None and start < self._last_start:
            raise ValueError(
                f"cues must be added in start order: cue.start_ms={cue.start_ms} is "
                f"{(self._last_start - start) * 1000 / self._time_base.denominator:.3f} ms "
                "before the previous cue's start"
            )
        if self._last_dts is None and start > 0:
            self._mux(0, start, _EMPTY_SAMPLE)
        self._advance(start)
        self._last_start = start
        text, faces = _plain_text(cue.text)
        self._shown.append(_Shown(end=end, text=text, faces=faces))
        self._mux_shown(start)

    def close(self) -> None:
        """Mux the samples left for the cues still on screen; the track ends with the last."""
        if not self._closed:
            self._advance(None)
            self._closed = True

    def _ticks(self, ms: float) -> int:
        return round(ms * self._time_base.denominator / 1000)

    def _advance(self, until: int | None) -> None:
        """Mux a sample at each cue end before `until` (None: at every one left)."""
        while self._shown:
            ended_at = min(s.end for s in self._shown)
            if until is not None and ended_at > until:
                return
            self._shown = [s for s in self._shown if s.end > ended_at]
            if until is not None and ended_at == until:
                continue  # the sample at `until` shows what is left
            if self._shown:
                self._mux_shown(ended_at)
            elif until is not None:
                self._mux(ended_at, until, _EMPTY_SAMPLE)

    def _mux_shown(self, at: int) -> None:
        texts: list[str] = []
        faces: list[int] = []
        for shown in self._shown:
            if shown.text and shown.text not in texts:
                if texts:
                    faces.append(0)
                texts.append(shown.text)
                faces += shown.faces
        end = min(s.end for s in self._shown)
        self._mux(at, end, _sample("\n".join(texts), faces, self._style))

    def _mux(self, at: int, end: int, payload: bytes) -> None:
        if payload == self._last_payload and end <= self._last_end:
            return  # the sample on screen already says this for long enough
        if self._last_dts is not None and at <= self._last_dts:
            at = self._last_dts + 1  # cues starting together: the first sample lasts a tick
        packet = av.Packet(payload)
        packet.stream = self._stream
        packet.time_base = self._time_base
        packet.pts = packet.dts = at
        packet.duration = max(end - at, 1)
        packet.is_keyframe = True
        self._out.mux(packet)
        self._last_dts, self._last_end, self._last_payload = at, end, payload


def _timescale(out: OutputContainer) -> int:
    scale = _MIN_TIMESCALE
    for stream in out.streams:
        if stream.time_base is not None:
            scale = max(scale, stream.time_base.denominator)
        if isinstance(stream, AudioStream) and stream.codec_context is not None:
            scale = max(scale, stream.codec_context.sample_rate or 0)  # movenc's audio timescale
    return scale


def _mp4_language(tag: str | None) -> str | None:
    primary = (tag or "").strip().replace("_", "-").split("-")[0].lower()
    if len(primary) == 2:
        return _ISO639_1_TO_2.get(primary)
    if len(primary) == 3 and primary.isascii() and primary.isalpha() and primary != "und":
        return primary
    return None


def plain_text(payload: str) -> str:
    """The text a WebVTT cue payload shows, markup gone (see _plain_text)."""
    return _plain_text(payload)[0]


def _plain_text(payload: str) -> tuple[str, list[int]]:
    """The text a WebVTT cue payload shows, and the tx3g face flags of each character.

    Tags go (<c.x>, <v Name>, <lang>, timestamps), <b>/<i>/<u> become face flags, ruby
    annotations (<rt>) are dropped and character references are resolved.
    """
    chars: list[str] = []
    faces: list[int] = []
    depth = dict.fromkeys((*_FACE, "rt"), 0)
    for piece in re.split(r"(<[^>]*>)", payload):
        if piece.startswith("<") and piece.endswith(">"):
            tag = piece[1:-1].strip()
            name = re.split(r"[\s.]", tag.removeprefix("/"), maxsplit=1)[0].lower()
            if name in depth:
                depth[name] = max(depth[name] + (-1 if tag.startswith("/") else 1), 0)
            continue
        if depth["rt"] or not piece:
            continue
        text = html.unescape(piece)
        face = sum(flag for name, flag in _FACE.items() if depth[name])
        chars.append(text)
        faces += [face] * len(text)
    return "".join(chars), faces


def _sample(text: str, faces: Sequence[int], style: bytes) -> bytes:
    """A tx3g sample: 16-bit length, UTF-8 text, and a 'styl' box for styled runs."""
    data = text.encode()
    if len(data) > 0xFFFF:
        text = data[:0xFFFF].decode(errors="ignore")
        data, faces = text.encode(), faces[: len(text)]
    # Style records count characters (code points, as FFmpeg's mov_text codecs do).
    runs: list[tuple[int, int, int]] = []
    for index, face in enumerate(faces):
        if runs and runs[-1][1] == index and runs[-1][2] == face:
            runs[-1] = (runs[-1][0], index + 1, face)
        elif face:
            runs.append((index, index + 1, face))
    sample = struct.pack(">H", len(data)) + data
    if runs:
        sample += struct.pack(">I4sH", 10 + 12 * len(runs), b"styl", len(runs))
        for first, end, face in runs:
            sample += struct.pack(">HH", first, end) + style[4:6] + bytes([face]) + style[7:]
    return sample
