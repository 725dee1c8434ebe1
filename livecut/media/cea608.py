"""CEA-608 captions carried in H.264 video (ATSC A/53 user data in SEI), read as cues.

The caption bytes ride in SEI messages (user_data_registered_itu_t_t35, "GA94", type 3)
of the video's pictures: they are read from the packets without decoding a picture,
put in presentation order (the order 608 is defined in), and handed to FFmpeg's own
608 decoder (`cc_dec`, in PyAV's FFmpeg), which keeps the screen state (pop-on, roll-up,
paint-on) and says what is shown from when. Each change of what is shown becomes a
cue, timed on the clip's clock. Field 1 (CC1) only; CEA-708 services are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.codec.context import CodecContext
from av.subtitles.codeccontext import SubtitleCodecContext
from av.subtitles.subtitle import AssSubtitle, SubtitleSet
from av.video.stream import VideoStream

NAL_SEI = 6
SEI_USER_DATA_REGISTERED = 4
A53_PREFIX = b"\xb5\x00\x31GA94\x03"  # USA, ATSC, "GA94", cc_data
_ASS_TAG = re.compile(r"\{[^}]*\}")
_MICRO = Fraction(1, 1_000_000)


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptionCue:
    start_s: float  # in the clip's presentation time
    end_s: float
    text: str


def read_cea608(path: Path, *, end_s: float | None = None) -> list[CaptionCue]:
    """The captions of an H.264 file's first video track, a caption still shown at the
    end lasting until end_s; [] if it carries none."""
    timed = sorted(_cc_data(path))
    if not timed:
        return []
    decoder = CodecContext.create("cc_dec", "r")
    assert isinstance(decoder, SubtitleCodecContext)
    # Real time: the decoder says what the screen shows at each change, as it happens
    # (otherwise it holds each caption back until the next change).
    decoder.options = {"real_time": "1"}
    shown: list[tuple[float, str]] = []
    for t, data in timed:
        packet = av.Packet(data)
        packet.pts = round(t * 1_000_000)
        packet.time_base = _MICRO
        try:
            subtitle = decoder.decode2(packet)
        except av.error.FFmpegError:
            continue
        if subtitle is not None:
            text = _text(subtitle)
            if not shown or shown[-1][1] != text:
                shown.append((t, text))
    if not shown:
        return []
    end = end_s if end_s is not None else timed[-1][0] + 1.0
    cues: list[CaptionCue] = []
    for (start, text), (stop, _) in zip(shown, [*shown[1:], (end, "")], strict=True):
        if text and stop > start:
            cues.append(CaptionCue(start_s=start, end_s=stop, text=text))
    return cues


def _text(subtitle: SubtitleSet) -> str:
    lines: list[str] = []
    for rect in subtitle:
        if not isinstance(rect, AssSubtitle):
            continue
        text = rect.dialogue.decode("utf-8", "replace")
        text = _ASS_TAG.sub("", text).replace("\\N", "\n").replace("\\h", " ")
        lines.extend(line.strip() for line in text.splitlines() if line.strip())
    return "\n".join(lines)


def _cc_data(path: Path) -> Iterator[tuple[float, bytes]]:
    """(presentation time, cc_data triplets) of each picture that carries any."""
    with av.open(str(path)) as container:
        video = next((s for s in container.streams if isinstance(s, VideoStream)), None)
        if video is None or video.codec_context.name != "h264" or video.time_base is None:
            return
        time_base = video.time_base
        length_size = _length_size(bytes(video.codec_context.extradata or b""))
        for packet in container.demux(video):
            if packet.pts is None or not packet.size:
                continue
            data = b"".join(_a53(bytes(packet), length_size))
            if data:
                yield float(packet.pts * time_base), data


def _length_size(avcc: bytes) -> int:
    """NAL length field size of an avcC record (0: Annex B start codes)."""
    return (avcc[4] & 3) + 1 if len(avcc) > 4 and avcc[0] == 1 else 0


def _nal_units(data: bytes, length_size: int) -> Iterator[bytes]:
    if length_size:
        at = 0
        while at + length_size <= len(data):
            size = int.from_bytes(data[at : at + length_size], "big")
            yield data[at + length_size : at + length_size + size]
            at += length_size + size
        return
    for unit in re.split(b"\x00\x00\x01", data):
        if unit:
            yield unit.rstrip(b"\x00")


def _a53(data: bytes, length_size: int) -> Iterator[bytes]:
    """The cc_data triplets of field 1 in a picture's SEI messages."""
    for unit in _nal_units(data, length_size):
        if not unit or unit[0] & 0x1F != NAL_SEI:
            continue
        rbsp = unit[1:].replace(b"\x00\x00\x03", b"\x00\x00")
        at = 0
        while at < len(rbsp) and rbsp[at] != 0x80:
            kind, at = _sei_number(rbsp, at)
            size, at = _sei_number(rbsp, at)
            payload = rbsp[at : at + size]
            at += size
            if kind != SEI_USER_DATA_REGISTERED or not payload.startswith(A53_PREFIX):
                continue
            body = payload[len(A53_PREFIX) :]
            if len(body) < 2 or not body[0] & 0x40:
                continue
            count = body[0] & 0x1F
            triplets = body[2 : 2 + 3 * count]
            for n in range(0, len(triplets) - 2, 3):
                head = triplets[n]
                if head & 0x04 and head & 0x03 == 0:  # valid, NTSC field 1
                    yield triplets[n : n + 3]


def _sei_number(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    while at < len(data) and data[at] == 0xFF:
        value += 255
        at += 1
    if at < len(data):
        value += data[at]
    return value, at + 1
