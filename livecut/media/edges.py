"""Re-encode a clip's first partial GOP, so it starts on an IDR without an edit list.

A frame-accurate copy starts decoding at the keyframe before the first presented frame
and hides that pre-roll with an edit list; consumers that ignore edit lists show it.
EdgeEncoder decodes the first GOP from its keyframe, re-encodes with libx264 only the
frames the clip presents before the source's next IDR, and hands back packets that sit
in the same H.264 track as the copied rest. The two runs share one stream, so their
parameter sets must not collide: the re-encoded run uses its own SPS/PPS id, its SPS
and PPS ride in band on its IDR (as x264 writes them) and are also added to the track's
decoder configuration, so readers that only trust avcC find both.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
from av.codec.context import Flags
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
MAX_SPS_ID = 31
_START_CODE = b"\x00\x00\x00\x01"

# libavcodec's profile names -> x264's; profiles x264 cannot write are left to x264.
# Extended is a superset of constrained baseline, which is what x264's baseline writes.
_X264_PROFILES = {
    "Baseline": "baseline",
    "Constrained Baseline": "baseline",
    "Extended": "baseline",
    "Main": "main",
    "High": "high",
    "High 10": "high10",
    "High 4:2:2": "high422",
    "High 4:4:4 Predictive": "high444",
}
_QUALITY = {"preset": "veryfast", "crf": "17", "bf": "0"}
# H.264 Table A-1, level_idc -> (MaxBR kbit/s, MaxCPB kbit) for Baseline and Main; the
# High profiles allow more (Table A-2). crf 17 on grainy video can outrun the level the
# run's SPS claims, so the level caps it through x264's VBV.
_LEVEL_LIMITS = {
    9: (128, 350),
    10: (64, 175),
    11: (192, 500),
    12: (384, 1000),
    13: (768, 2000),
    20: (2000, 2000),
    21: (4000, 4000),
    22: (4000, 4000),
    30: (10000, 10000),
    31: (14000, 14000),
    32: (20000, 20000),
    40: (20000, 25000),
    41: (50000, 62500),
    42: (50000, 62500),
    50: (135000, 135000),
    51: (240000, 240000),
    52: (240000, 240000),
    60: (240000, 240000),
    61: (480000, 480000),
    62: (800000, 800000),
}
_PROFILE_FACTORS = {"high": 1.25, "high10": 3.0, "high422": 4.0, "high444": 4.0}


class EdgeError(ValueError):
    """The source's H.264 configuration could not be read or matched."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ParameterSets:
    """SPS and PPS NAL units (no start code, no length) of one decoder configuration."""

    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    length_size: int | None  # NAL length prefix size for avcC sources; None for annex-B

    def ids(self) -> set[int]:
        """Every SPS and PPS id in use: a new run must avoid both (x264 gives both one id)."""
        return {sps_id(unit) for unit in self.sps} | {pps_id(unit) for unit in self.pps}


def annexb_units(data: bytes) -> Iterator[bytes]:
    """NAL units of an annex-B byte stream, without start codes."""
    at = data.find(b"\x00\x00\x01")
    while at >= 0:
        start = at + 3
        at = data.find(b"\x00\x00\x01", start)
        # A NAL unit never ends in 0x00, so trailing zeros belong to the next start code.
        unit = data[start : at if at >= 0 else len(data)].rstrip(b"\x00")
        if unit:
            yield unit


def length_prefixed_units(data: bytes, length_size: int) -> Iterator[bytes]:
    """NAL units of an avcC-style sample: each prefixed by its big-endian length."""
    at = 0
    while at + length_size <= len(data):
        size = int.from_bytes(data[at : at + length_size], "big")
        at += length_size
        if size == 0 or at + size > len(data):
            raise EdgeError(f"bad NAL length {size} at byte {at} of a {len(data)}-byte sample")
        yield data[at : at + size]
        at += size


def pack_units(units: Sequence[bytes], length_size: int | None) -> bytes:
    """NAL units as one sample: length-prefixed (avcC) or with start codes (annex-B)."""
    if length_size is None:
        return b"".join(_START_CODE + unit for unit in units)
    limit = 1 << (8 * length_size)
    out = bytearray()
    for unit in units:
        if len(unit) >= limit:
            raise EdgeError(f"a {len(unit)}-byte NAL unit does not fit a {length_size}-byte length")
        out += len(unit).to_bytes(length_size, "big") + unit
    return bytes(out)


def sample_units(data: bytes, length_size: int | None) -> Iterator[bytes]:
    return annexb_units(data) if length_size is None else length_prefixed_units(data, length_size)


def sps_id(unit: bytes) -> int:
    """seq_parameter_set_id: ue(v) after profile_idc, the constraint flags and level_idc."""
    reader = _Bits(_unescape(unit[1:]))
    reader.skip(24)
    return reader.ue()


def pps_id(unit: bytes) -> int:
    return _Bits(_unescape(unit[1:])).ue()


def parameter_sets(extradata: bytes | None) -> ParameterSets:
    """Parse extradata as avcC (first byte 1) or as annex-B SPS/PPS (what TS demuxers give)."""
    if not extradata:
        return ParameterSets(sps=(), pps=(), length_size=None)
    if extradata[0] != 1:
        units = list(annexb_units(extradata))
        return ParameterSets(
            sps=tuple(u for u in units if u[0] & 0x1F == NAL_SPS),
            pps=tuple(u for u in units if u[0] & 0x1F == NAL_PPS),
            length_size=None,
        )
    sps, at = _avcc_array(extradata, 5, 0x1F)
    pps, _ = _avcc_array(extradata, at, 0xFF)
    return ParameterSets(sps=sps, pps=pps, length_size=(extradata[4] & 0x03) + 1)


def with_parameter_sets(
    extradata: bytes | None, sps: Sequence[bytes], pps: Sequence[bytes]
) -> bytes:
    """The extradata, in its own format, with these SPS and PPS appended after its own."""
    if not extradata or extradata[0] != 1:
        return (extradata or b"") + b"".join(_START_CODE + unit for unit in (*sps, *pps))
    old_sps, at = _avcc_array(extradata, 5, 0x1F)
    old_pps, end = _avcc_array(extradata, at, 0xFF)
    all_sps, all_pps = (*old_sps, *sps), (*old_pps, *pps)
    if len(all_sps) > 31 or len(all_pps) > 255:
        raise EdgeError("avcC cannot hold that many parameter sets")
    return b"".join(
        (
            extradata[:5],
            bytes([0xE0 | len(all_sps)]),
            *(struct.pack(">H", len(u)) + u for u in all_sps),
            bytes([len(all_pps)]),
            *(struct.pack(">H", len(u)) + u for u in all_pps),
            extradata[end:],  # High-profile fields (chroma format, bit depths, SPS ext)
        )
    )


def free_id(used: set[int]) -> int:
    """The lowest SPS/PPS id the source does not use."""
    for candidate in range(MAX_SPS_ID + 1):
        if candidate not in used:
            return candidate
    raise EdgeError("the source uses every SPS id 0..31")


class EdgeEncoder:
    """Decodes a clip's first GOP and re-encodes the frames it presents before the next IDR.

    Feed it the video packets from the GOP's keyframe on, in decode order, with their
    wall times; stop at the first packet `is_handoff` accepts and copy from there. Frames
    are re-encoded as they are decoded, so memory holds one GOP of re-encoded packets.
    """

    def __init__(self, template: VideoStream, *, first_ms: float, end_ms: float) -> None:
        source = template.codec_context
        if source.name != "h264":
            raise EdgeError(f"only H.264 edges can be re-encoded, not {source.name}")
        self._first_ms = first_ms
        self._end_ms = end_ms
        self.time_base: Fraction = template.time_base or Fraction(1, 90_000)
        self._source_sets = parameter_sets(source.extradata)
        self._decoder = _decoder(source)
        self._encoder = _encoder(
            template, self.time_base, free_id(self._source_sets.ids()), source.extradata
        )
        own = parameter_sets(self._encoder.extradata)
        if not own.sps or not own.pps:
            raise EdgeError("libx264 wrote no SPS/PPS")
        self.extradata = with_parameter_sets(source.extradata, own.sps, own.pps)
        self._walls: dict[int, float] = {}  # source pts -> wall time, for decoded frames
        self._frame_walls: list[float] = []  # wall time of each re-encoded frame, in order
        self._packets: list[Packet[Any]] = []
        self.active = True

    @property
    def frames(self) -> int:
        return len(self._frame_walls)

    def is_handoff(self, packet: Packet[Any], wall_ms: float) -> bool:
        """True for an IDR presented after the first frame: copying may resume there.

        Keyframes that are not IDRs (open GOPs, recovery points) do not qualify: frames
        after them may still reference, and number themselves after, what came before.
        """
        if not packet.is_keyframe or wall_ms <= self._first_ms + 0.5:
            return False
        length_size = self._source_sets.length_size
        return any(u[0] & 0x1F == NAL_IDR for u in sample_units(bytes(packet), length_size))

    def decode(self, packet: Packet[Any], wall_ms: float) -> None:
        if packet.pts is not None:
            self._walls[packet.pts] = wall_ms
        for frame in self._decoder.decode(packet):
            self._encode(frame)

    def finish(self, stop_ms: float) -> list[Packet[Any]]:
        """Flush; the re-encoded packets, timed from the first frame (pts = dts, in time_base).

        stop_ms is where the run's last frame ends: the handoff IDR or the clip's end.
        """
        for frame in self._decoder.decode(None):
            self._encode(frame)
        self._packets += self._encoder.encode(None)
        self.active = False
        if len(self._packets) != len(self._frame_walls):
            raise EdgeError(
                f"libx264 returned {len(self._packets)} packets for {self.frames} frames"
            )
        ends = [*self._frame_walls[1:], stop_ms]
        length_size = self._source_sets.length_size
        packets: list[Packet[Any]] = []
        for encoded, wall, end in zip(self._packets, self._frame_walls, ends, strict=True):
            # x264's only SEI is its version banner, written twice with global headers
            # plus repeat-headers: drop it. With an avcC source movenc copies samples
            # byte for byte, so ours get the source's NAL length size; with annex-B
            # extradata (TS sources) movenc rewrites start codes itself.
            units = [u for u in annexb_units(bytes(encoded)) if u[0] & 0x1F != NAL_SEI]
            packet = Packet(pack_units(units, length_size))
            packet.pts = packet.dts = self._ticks(wall)
            packet.duration = max(1, self._ticks(end) - self._ticks(wall))
            packet.time_base = self.time_base
            packet.is_keyframe = encoded.is_keyframe
            packets.append(packet)
        self._packets.clear()
        return packets

    def _encode(self, frame: VideoFrame) -> None:
        wall = self._walls.pop(frame.pts, None) if frame.pts is not None else None
        if wall is None or not self._first_ms - 0.5 <= wall < self._end_ms - 0.5:
            return  # pre-roll before the first frame, or a reference after the clip
        encoder = self._encoder
        if (frame.width, frame.height, frame.format.name) != (
            encoder.width,
            encoder.height,
            encoder.pix_fmt,
        ):
            frame = frame.reformat(encoder.width, encoder.height, encoder.pix_fmt)
        # libx264 honours a frame's picture type: a decoded B-frame would stay a B-frame.
        frame.pict_type = PictureType.NONE
        frame.pts = self._ticks(wall)
        frame.time_base = self.time_base
        self._frame_walls.append(wall)
        self._packets += encoder.encode(frame)

    def _ticks(self, wall_ms: float) -> int:
        return round(Fraction(round((wall_ms - self._first_ms) * 1000), 1_000_000) / self.time_base)


def _decoder(source: VideoCodecContext) -> VideoCodecContext:
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = source.extradata
    decoder.thread_type = "AUTO"
    return decoder


def _encoder(
    template: VideoStream, time_base: Fraction, own_id: int, extradata: bytes | None
) -> VideoCodecContext:
    source = template.codec_context
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width = source.width
    encoder.height = source.height
    encoder.pix_fmt = source.pix_fmt or "yuv420p"
    encoder.time_base = time_base
    encoder.framerate = template.average_rate or Fraction(25)
    if source.sample_aspect_ratio:
        encoder.sample_aspect_ratio = source.sample_aspect_ratio
    encoder.color_range = source.color_range
    encoder.color_primaries = source.color_primaries
    encoder.color_trc = source.color_trc
    encoder.colorspace = source.colorspace
    encoder.thread_type = "FRAME"
    options = dict(_QUALITY)
    profile = _X264_PROFILES.get(source.profile or "")
    if profile is not None:
        options["profile"] = profile
    level = source.level or _level_from(extradata)
    if level > 0:
        options["level"] = "1b" if level == 9 else f"{level / 10:.1f}"
    # One IDR at the start and never another; headers in band as well as global.
    params = f"sps-id={own_id}:repeat-headers=1:keyint=infinite:scenecut=0"
    if level in _LEVEL_LIMITS:
        factor = _PROFILE_FACTORS.get(profile or "", 1.0)
        max_br, max_cpb = (round(v * factor) for v in _LEVEL_LIMITS[level])
        params += f":vbv-maxrate={max_br}:vbv-bufsize={max_cpb}"
    options["x264-params"] = params
    encoder.options = options
    encoder.flags |= Flags.global_header
    try:
        encoder.open()
    except av.error.FFmpegError as exc:
        raise EdgeError(f"libx264 could not match the source: {exc}") from exc
    return encoder


def _level_from(extradata: bytes | None) -> int:
    sets = parameter_sets(extradata)
    return sets.sps[0][3] if sets.sps and len(sets.sps[0]) > 3 else 0


def _avcc_array(avcc: bytes, at: int, count_mask: int) -> tuple[tuple[bytes, ...], int]:
    """The NAL units of one avcC array (count byte, then 16-bit length + unit each)."""
    if at >= len(avcc):
        raise EdgeError("truncated avcC")
    units: list[bytes] = []
    count = avcc[at] & count_mask
    at += 1
    for _ in range(count):
        (size,) = struct.unpack_from(">H", avcc, at)
        units.append(avcc[at + 2 : at + 2 + size])
        at += 2 + size
    if at > len(avcc):
        raise EdgeError("truncated avcC")
    return tuple(units), at


def _unescape(payload: bytes) -> bytes:
    """RBSP from a NAL payload: drop the 0x03 of every 00 00 03 emulation prevention."""
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """Big-endian bit reader for the exp-Golomb fields at the head of SPS and PPS."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def bit(self) -> int:
        if self._left <= 0:
            raise EdgeError("parameter set ends inside a field")
        self._left -= 1
        return (self._value >> self._left) & 1

    def skip(self, bits: int) -> None:
        self._left -= bits

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise EdgeError("exp-Golomb code longer than 32 bits")
        suffix = 0
        for _ in range(zeros):
            suffix = (suffix << 1) | self.bit()
        return (1 << zeros) - 1 + suffix
