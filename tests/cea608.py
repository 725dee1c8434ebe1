"""Test media: an HLS VOD whose H.264 carries CEA-608 pop-on captions in A/53 SEI.

Nothing else here makes 608 bytes, so this is a small encoder of its own: the byte
pairs of a pop-on caption (RCL, ENM, a row-15 PAC, the text, EOC; EDM to clear), one
pair a frame on field 1, with odd parity, wrapped in GA94 user data and inserted as an
SEI NAL before each picture's first slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from livecut.media.synth import barcoded_frame, render_media_playlist

RCL, ENM, EOC, EDM = (0x14, 0x20), (0x14, 0x2E), (0x14, 0x2F), (0x14, 0x2C)
PAC_ROW_15 = (0x14, 0x70)
FPS = 25
LEAD = 10  # frames of timestamp before frame 0


@dataclass(frozen=True, kw_only=True, slots=True)
class PopOn:
    text: str  # upper-case ASCII
    show_frame: int  # EOC here: shown from this frame
    clear_frame: int  # EDM here


def _parity(byte: int) -> int:
    return byte | 0x80 if bin(byte).count("1") % 2 == 0 else byte


def schedule(captions: list[PopOn]) -> dict[int, tuple[int, int]]:
    """frame -> the byte pair it carries (loading starts well before each EOC)."""
    pairs: dict[int, tuple[int, int]] = {}
    for caption in captions:
        text = caption.text + (" " if len(caption.text) % 2 else "")
        loading = [RCL, ENM, PAC_ROW_15] + [
            (ord(text[i]), ord(text[i + 1])) for i in range(0, len(text), 2)
        ]
        first = caption.show_frame - len(loading)
        assert first >= 0 and all(first + n not in pairs for n in range(len(loading)))
        for n, pair in enumerate(loading):
            pairs[first + n] = pair
        pairs[caption.show_frame] = EOC
        pairs[caption.clear_frame] = EDM
    return pairs


def sei(pair: tuple[int, int]) -> bytes:
    cc = bytes([0xFC, _parity(pair[0]), _parity(pair[1])])
    payload = b"\xb5\x00\x31GA94\x03" + bytes([0x40 | 1, 0xFF]) + cc + b"\xff"
    body = bytes([4, len(payload)]) + payload + b"\x80"
    escaped = bytearray()
    zeros = 0
    for byte in body:
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x00\x00\x00\x01\x06" + bytes(escaped)


def _with_sei(data: bytes, pair: tuple[int, int] | None) -> bytes:
    if pair is None:
        return data
    units = data.split(b"\x00\x00\x01")
    out = [units[0]]
    inserted = False
    for unit in units[1:]:
        if not inserted and unit and unit[0] & 0x1F in (1, 5):
            out[-1] = out[-1].rstrip(b"\x00")
            out.append(sei(pair)[4:])  # joined back with a start code below
            inserted = True
        out.append(unit)
    return b"\x00\x00\x01".join(out)


def write_cea608_vod(
    folder: Path, captions: list[PopOn], *, segments: int = 3, start_pdt_ms: int
) -> Path:
    """3 segments of 2 s, 640x360 at 25 fps, barcoded; returns the playlist."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = schedule(captions)
    per_segment = 2 * FPS
    for seg in range(segments):
        name = f"seg{seg}.ts"
        with av.open(str(folder / name), "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            stream.time_base = Fraction(1, FPS)
            stream.options = {"preset": "ultrafast", "bf": "2", "g": str(per_segment)}
            # ultrafast turns B-frames off; keep them, so the captions must be reordered.
            stream.options = {**stream.options, "x264-params": "bframes=2:b-adapt=0"}
            for n in range(seg * per_segment, (seg + 1) * per_segment):
                frame = barcoded_frame(n, 640, 360)
                # Past the B-frame delay: no segment's muxer shifts its timestamps, so
                # they run on across the joins.
                frame.pts = n + LEAD
                frame.time_base = Fraction(1, FPS)
                for packet in stream.encode(frame):
                    _mux(out, stream, packet, pairs)
            for packet in stream.encode(None):
                _mux(out, stream, packet, pairs)
    playlist = folder / "index.m3u8"
    playlist.write_text(
        render_media_playlist(
            first=0,
            end=segments,
            segment_ms=2000,
            container="ts",
            epoch_ms=start_pdt_ms,
            ended=True,
            vod=True,
        )
    )
    return playlist


def _mux(
    out: av.container.OutputContainer,
    stream: av.VideoStream,
    packet: av.Packet,
    pairs: dict[int, tuple[int, int]],
) -> None:
    assert packet.pts is not None
    data = _with_sei(bytes(packet), pairs.get(packet.pts - LEAD))
    copy = av.Packet(data)
    copy.pts, copy.dts, copy.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
    copy.time_base = packet.time_base
    copy.stream = stream
    out.mux(copy)
