"""Synthetic test media: an endless barcoded, beeping H.264/AAC stream cut into HLS segments."""

from __future__ import annotations

import functools
import io
import math
import random
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypedDict, Unpack

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

Container = Literal["ts", "fmp4"]

# Every timestamp starts 10 s in, so no decode timestamp (B-frames, AAC priming) is ever
# negative and no muxer feels entitled to shift the timeline.
STREAM_OFFSET_S = 10
AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 1024
BARCODE_BITS = 24
BARCODE_BLOCK = 12  # pixels per side of one barcode block
BEEP_HZ = 375  # period of 128 samples at 48 kHz, so one 1024-sample buffer loops seamlessly
BEEP_AMPLITUDE = 0.5
BEEP_WINDOW_SAMPLES = AUDIO_RATE // 10  # the first 100 ms of every second beeps

_LUMA_ON = 235
_LUMA_OFF = 16
_BAR_WIDTH = 16
_AUDIO_BITRATE = 128_000
_NOISE_SEED = 0x5EED

# (level_idc, max macroblocks/s, max macroblocks/frame, max High-profile kbit/s), Table A-1.
_H264_LEVELS = (
    (30, 40_500, 1_620, 12_500),
    (31, 108_000, 3_600, 17_500),
    (32, 216_000, 5_120, 25_000),
    (40, 245_760, 8_192, 25_000),
    (41, 245_760, 8_192, 62_500),
    (42, 522_240, 8_704, 62_500),
    (50, 589_824, 22_080, 168_750),
    (51, 983_040, 36_864, 300_000),
)

_FMP4_OPTIONS = {
    # frag_discont + no edit list + no negative-ts fixing keep the absolute 10 s offset in
    # tfdt; without them movenc rebases every track to 0 (or to 2 frames via an edit list).
    "movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont+skip_trailer",
    "use_editlist": "0",
    "avoid_negative_ts": "disabled",
}
# Each segment gets its own TS muxer, so its continuity counters restart at 0; flag that
# as a discontinuity so demuxers reading segments back to back do not report corruption.
_TS_OPTIONS = {"mpegts_flags": "initial_discontinuity"}


@dataclass(frozen=True, kw_only=True, slots=True)
class SynthSegment:
    index: int  # 0-based
    data: bytes  # the whole TS segment, or the fMP4 media segment (moof+mdat pairs)
    duration_ms: int
    first_frame: int  # global frame number of its first video frame


class SynthOptions(TypedDict, total=False):
    """Picture options of SyntheticStream that callers pass through unchanged."""

    fps: int
    width: int
    height: int
    video_bitrate: int | None


class SyntheticStream:
    """An endless stream; each call to next_segment encodes the next segment in order.

    Encoders are opened once and never restarted, so timestamps run on continuously and
    AAC priming silence appears only at the very start. first_frame numbers the first
    frame (barcode and beep phase) while timestamps still start at STREAM_OFFSET_S: that
    is an encoder restarted mid-broadcast, whose pictures still tell the wall time.
    """

    def __init__(
        self,
        *,
        segment_ms: int = 2000,
        fps: int = 25,
        width: int = 320,
        height: int = 180,
        audio: bool = True,
        container: Container = "ts",
        video_bitrate: int | None = None,
        video: bool = True,
        first_frame: int = 0,
    ) -> None:
        _validate(segment_ms=segment_ms, fps=fps, width=width, height=height)
        if container not in ("ts", "fmp4"):
            raise ValueError(f"container must be 'ts' or 'fmp4', got {container!r}")
        if not (video or audio):
            raise ValueError("video and audio are both False: a stream needs at least one")
        if first_frame < 0:
            raise ValueError(f"first_frame must be >= 0, got {first_frame}")
        if video_bitrate is not None and video_bitrate < 50_000:
            raise ValueError(f"video_bitrate must be None or >= 50000 bit/s, got {video_bitrate}")
        self.segment_ms = segment_ms
        self.fps = fps
        self.width = width
        self.height = height
        self.audio = audio
        self.video = video
        self.container: Container = container
        self.video_bitrate = video_bitrate
        self.first_frame = first_frame
        self._frames_per_segment = segment_ms * fps // 1000
        self._samples_per_segment = segment_ms * AUDIO_RATE // 1000
        self._level = _h264_level(width, height, fps, video_bitrate)
        self._picture = _Picture(width, height, noisy=video_bitrate is not None)
        self._sound = _Sound(first_sample=first_frame * AUDIO_RATE // fps)
        self._encoders = _Encoders(
            fps=fps,
            width=width,
            height=height,
            video=video,
            audio=audio,
            global_header=container == "fmp4",
            video_bitrate=video_bitrate,
            level=self._level,
        )
        self._next_index = 0
        self._next_frame = 0
        self._next_sample = 0
        self._video_queue: list[Packet[Stream]] = []
        self._audio_queue: list[Packet[Stream]] = []
        self._next_fragment = 1  # mfhd sequence numbers run on across segments
        self._init = self._write_init() if container == "fmp4" else None

    @property
    def init_section(self) -> bytes | None:
        """ftyp+moov shared by every fMP4 segment; None for TS."""
        return self._init

    @property
    def codecs(self) -> str:
        """RFC 6381 codecs string for a master playlist, e.g. 'avc1.64001e,mp4a.40.2'."""
        codecs = [f"avc1.6400{self._level:02x}"] if self.video else []
        if self.audio:
            codecs.append("mp4a.40.2")
        return ",".join(codecs)

    @property
    def bandwidth(self) -> int:
        """Peak bits/s for EXT-X-STREAM-INF; generous, since players only rank variants by it."""
        if not self.video:
            video = 0
        elif self.video_bitrate is not None:
            video = self.video_bitrate * 5 // 4
        else:
            # crf 23 spends under 0.02 bit/pixel on this picture; 0.2 also covers the TS
            # overhead of many tiny audio packets with room to spare.
            video = self.width * self.height * self.fps // 5
        return video + (_AUDIO_BITRATE * 5 // 4 if self.audio else 0)

    @property
    def frames_per_segment(self) -> int:
        return self._frames_per_segment

    def restarted(self, first_frame: int) -> SyntheticStream:
        """A fresh encoder with these settings, its frames numbered from first_frame."""
        return SyntheticStream(
            segment_ms=self.segment_ms,
            fps=self.fps,
            width=self.width,
            height=self.height,
            audio=self.audio,
            container=self.container,
            video_bitrate=self.video_bitrate,
            video=self.video,
            first_frame=first_frame,
        )

    def next_segment(self) -> SynthSegment:
        index = self._next_index
        video_end = _video_pts(self.fps, (index + 1) * self._frames_per_segment)
        audio_end = _audio_pts((index + 1) * self._samples_per_segment)
        while not self._has_segment(video_end, audio_end):
            self._encode_gop()
        video = [p for p in self._video_queue if _pts(p) < video_end]
        self._video_queue = [p for p in self._video_queue if _pts(p) >= video_end]
        audio = [p for p in self._audio_queue if _pts(p) < audio_end]
        self._audio_queue = [p for p in self._audio_queue if _pts(p) >= audio_end]
        packets = sorted(video + audio, key=_dts_seconds)
        data = self._mux_ts(packets) if self.container == "ts" else self._mux_fmp4(packets)
        self._next_index += 1
        return SynthSegment(
            index=index,
            data=data,
            duration_ms=self.segment_ms,
            first_frame=self.first_frame + index * self._frames_per_segment,
        )

    def close(self) -> None:
        """Free the encoders; the stream cannot produce segments afterwards."""
        self._video_queue.clear()
        self._audio_queue.clear()
        self._encoders.close()

    def _has_segment(self, video_end: int, audio_end: int) -> bool:
        # x264 emits exactly one packet per frame but reorders them, so count rather than
        # wait for a particular pts; AAC output is monotonic, so one packet past the end
        # proves every earlier one is out.
        video_done = (
            not self.video
            or sum(1 for p in self._video_queue if _pts(p) < video_end) == self._frames_per_segment
        )
        audio_done = not self.audio or any(_pts(p) >= audio_end for p in self._audio_queue)
        return video_done and audio_done

    def _encode_gop(self) -> None:
        video = self._encoders.video
        if video is None:
            # Audio alone still advances one GOP's worth of time, so segments cut the same.
            self._next_frame += self.fps
            self._encode_audio_until(self._next_frame * AUDIO_RATE // self.fps)
            return
        for n in range(self._next_frame, self._next_frame + self.fps):
            frame = self._picture.frame(self.first_frame + n)
            frame.pts = _video_pts(self.fps, n)
            frame.time_base = Fraction(1, self.fps)
            for packet in video.encode(frame):
                # x264 leaves duration 0; mp4 needs it for each fragment's last sample.
                packet.duration = 1
                self._video_queue.append(packet)
            self._encode_audio_until((n + 1) * AUDIO_RATE // self.fps)
        self._next_frame += self.fps

    def _encode_audio_until(self, sample: int) -> None:
        audio = self._encoders.audio
        if audio is None:
            return
        while self._next_sample < sample:
            frame = self._sound.frame(self._next_sample)
            for packet in audio.encode(frame):
                # The encoder's first packet is priming stamped 1024 samples before the
                # stream starts; no segment covers that time, so drop it rather than let
                # segment 0 begin earlier than its first video frame.
                if _pts(packet) >= _audio_pts(0):
                    self._audio_queue.append(packet)
            self._next_sample += AUDIO_FRAME_SAMPLES

    def _add_streams(self, output: OutputContainer) -> dict[int, int]:
        """Streams copied from the encoders; returns encoder stream index -> output index."""
        templates: list[Stream] = [
            s for s in (self._encoders.video, self._encoders.audio) if s is not None
        ]
        return {t.index: output.add_stream_from_template(t).index for t in templates}

    def _mux_ts(self, packets: list[Packet[Stream]]) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts", options=_TS_OPTIONS) as output:
            _mux_all(output, self._add_streams(output), packets)
        return buffer.getvalue()

    def _write_init(self) -> bytes:
        sink = _Sink()
        with av.open(sink, "w", format="mp4", options=_FMP4_OPTIONS) as output:
            self._add_streams(output)
            output.start_encoding()
        init = b"".join(box for kind, box in _top_level_boxes(bytes(sink.data)) if kind in _INIT)
        if not init:
            raise RuntimeError("mp4 muxer wrote no ftyp/moov header")
        return init

    def _mux_fmp4(self, packets: list[Packet[Stream]]) -> bytes:
        # A fresh muxer per segment: its fragments then hold exactly this segment's
        # packets (the same split as TS), and its moov is dropped in favour of init.
        sink = _Sink()
        options = {**_FMP4_OPTIONS, "fragment_index": str(self._next_fragment)}
        with av.open(sink, "w", format="mp4", options=options) as output:
            _mux_all(output, self._add_streams(output), packets)
        boxes = [(kind, box) for kind, box in _top_level_boxes(bytes(sink.data)) if kind in _MEDIA]
        self._next_fragment += sum(1 for kind, _ in boxes if kind == b"moof")
        return b"".join(box for _, box in boxes)


def barcoded_frame(number: int, width: int, height: int) -> av.VideoFrame:
    """A yuv420p picture carrying `number` in the barcode that read_frame_number reads."""
    return _picture(width, height).frame(number)


@functools.lru_cache(maxsize=8)
def _picture(width: int, height: int) -> _Picture:
    if width < BARCODE_BITS * BARCODE_BLOCK or width % 2 or height % 2 or height <= BARCODE_BLOCK:
        raise ValueError(
            f"width must be even and >= {BARCODE_BITS * BARCODE_BLOCK}, height even and "
            f"> {BARCODE_BLOCK}; got {width}x{height}"
        )
    return _Picture(width, height, noisy=False)


def read_frame_number(frame: av.VideoFrame) -> int:
    """Decode the 24-bit frame-number barcode drawn along the top of a synthetic frame."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "gray", "nv12"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    stride = plane.line_size
    rows = bytes(memoryview(plane)[: BARCODE_BLOCK * stride])
    # Only the centre of each block: edges blur into the neighbours under compression.
    margin = BARCODE_BLOCK // 4
    inner = BARCODE_BLOCK - 2 * margin
    threshold = 128 * inner * inner
    value = 0
    for bit in range(BARCODE_BITS):
        x = bit * BARCODE_BLOCK + margin
        total = sum(
            sum(rows[y * stride + x : y * stride + x + inner])
            for y in range(margin, margin + inner)
        )
        value = (value << 1) | (total >= threshold)
    return value


def frame_wall_ms(pdt0_ms: int, frame: int, fps: int = 25) -> int:
    """Wall time of a frame when the stream starts at pdt0_ms; exact when fps divides 1000."""
    return pdt0_ms + frame * 1000 // fps


def format_pdt(unix_ms: int) -> str:
    """EXT-X-PROGRAM-DATE-TIME value: ISO 8601 UTC with milliseconds and 'Z'."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=unix_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"


def render_media_playlist(
    *,
    first: int,
    end: int,
    segment_ms: int,
    container: Container,
    epoch_ms: int | None,
    ended: bool,
    vod: bool = False,
) -> str:
    """Media playlist of segments [first, end); segment i's PDT is epoch_ms + i*segment_ms."""
    extension = "ts" if container == "ts" else "m4s"
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{3 if container == 'ts' else 7}",
        f"#EXT-X-TARGETDURATION:{math.ceil(segment_ms / 1000)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    if vod:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    if container == "fmp4":
        lines.append('#EXT-X-MAP:URI="init.mp4"')
    for index in range(first, end):
        if epoch_ms is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(epoch_ms + index * segment_ms)}")
        lines.append(f"#EXTINF:{segment_ms / 1000:.3f},")
        lines.append(f"seg{index}.{extension}")
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_hls_fixture(
    folder: Path,
    *,
    segments: int,
    segment_ms: int = 2000,
    container: Container = "ts",
    audio: bool = True,
    start_pdt_ms: int = 1_767_225_600_000,
    **kw: Unpack[SynthOptions],
) -> Path:
    """Write a VOD HLS folder (segments, init.mp4 for fMP4, index.m3u8); return the playlist."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    folder.mkdir(parents=True, exist_ok=True)
    stream = SyntheticStream(segment_ms=segment_ms, container=container, audio=audio, **kw)
    try:
        if stream.init_section is not None:
            (folder / "init.mp4").write_bytes(stream.init_section)
        extension = "ts" if container == "ts" else "m4s"
        for _ in range(segments):
            segment = stream.next_segment()
            (folder / f"seg{segment.index}.{extension}").write_bytes(segment.data)
    finally:
        stream.close()
    playlist = folder / "index.m3u8"
    playlist.write_text(
        render_media_playlist(
            first=0,
            end=segments,
            segment_ms=segment_ms,
            container=container,
            epoch_ms=start_pdt_ms,
            ended=True,
            vod=True,
        )
    )
    return playlist


class _Encoders:
    """The stream's encoders, opened once on a throwaway container and used as templates."""

    def __init__(
        self,
        *,
        fps: int,
        width: int,
        height: int,
        video: bool,
        audio: bool,
        global_header: bool,
        video_bitrate: int | None,
        level: int,
    ) -> None:
        # An mp4 template makes PyAV set GLOBAL_HEADER, so x264 fills extradata for avcC;
        # an mpegts one leaves SPS/PPS in band on every keyframe, as TS segments need.
        self._template = av.open(io.BytesIO(), "w", format="mp4" if global_header else "mpegts")
        self.video: VideoStream | None = None
        self.audio: AudioStream | None = None
        if video:
            self.video = self._add_video(fps, width, height, video_bitrate, level)
        if audio:
            sound = self._template.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            sound.bit_rate = _AUDIO_BITRATE
            self.audio = sound
        # Opens the encoders and copies their parameters (size, extradata) onto the
        # streams; add_stream_from_template reads the stream side, not the codec context.
        self._template.start_encoding()

    def _add_video(
        self, fps: int, width: int, height: int, video_bitrate: int | None, level: int
    ) -> VideoStream:
        options = {
            "preset": "veryfast",
            "profile": "high",
            "level": f"{level / 10:.1f}",
            "g": str(fps),
            "keyint_min": str(fps),
            "sc_threshold": "0",
            "bf": "2",
        }
        if video_bitrate is None:
            options["crf"] = "23"
        else:
            options |= {
                "b": str(video_bitrate),
                "maxrate": str(video_bitrate),
                "bufsize": str(video_bitrate),
            }
        video = self._template.add_stream("libx264", rate=fps, options=options)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        return video

    def close(self) -> None:
        self._template.close()


class _Picture:
    """Builds frame n: the barcode of n on top, a bar moving over a gradient (or noise) below."""

    def __init__(self, width: int, height: int, *, noisy: bool) -> None:
        self.width = width
        self.height = height
        self._body_rows = height - BARCODE_BLOCK
        gradient = bytes(48 + x * 160 // width for x in range(width))
        self._gradient_body = gradient
        self._bar = bytes([_LUMA_ON]) * _BAR_WIDTH
        self._on = bytes([_LUMA_ON]) * BARCODE_BLOCK
        self._off = bytes([_LUMA_OFF]) * BARCODE_BLOCK
        self._barcode_tail = bytes([_LUMA_OFF]) * (width - BARCODE_BITS * BARCODE_BLOCK)
        chroma_size = (width // 2) * (height // 2)
        self._u = bytes([112]) * chroma_size
        self._v = bytes([140]) * chroma_size
        self._noise = b""
        if noisy:
            # Fresh entropy every frame forces x264 up to its bitrate; slicing a pool at
            # per-frame offsets is far cheaper than drawing new random bytes each time.
            body = self._body_rows * width
            self._noise = random.Random(_NOISE_SEED).randbytes(2 * body + 7919)

    def frame(self, n: int) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        bar_x = (n * 8) % (self.width - _BAR_WIDTH)
        if self._noise:
            body = self._noisy_body(n, bar_x)
        else:
            row = self._gradient_body
            body = (row[:bar_x] + self._bar + row[bar_x + _BAR_WIDTH :]) * self._body_rows
        _fill_plane(frame, 0, self._barcode(n) + body)
        _fill_plane(frame, 1, self._u)
        _fill_plane(frame, 2, self._v)
        return frame

    def _barcode(self, n: int) -> bytes:
        blocks = (
            self._on if (n >> (BARCODE_BITS - 1 - bit)) & 1 else self._off
            for bit in range(BARCODE_BITS)
        )
        return (b"".join(blocks) + self._barcode_tail) * BARCODE_BLOCK

    def _noisy_body(self, n: int, bar_x: int) -> bytes:
        width = self.width
        size = self._body_rows * width
        offset = (n * 104_729) % (len(self._noise) - size)
        noise = self._noise[offset : offset + size]
        parts: list[bytes] = []
        for start in range(0, size, width):
            parts += (
                noise[start : start + bar_x],
                self._bar,
                noise[start + bar_x + _BAR_WIDTH : start + width],
            )
        return b"".join(parts)


class _Sound:
    """Silence with a 375 Hz beep in the first 100 ms of every second; payloads built once.

    Seconds count from first_sample, so a restarted encoder keeps beeping on the second.
    """

    def __init__(self, *, first_sample: int = 0) -> None:
        self._first_sample = first_sample
        # fltp is native-endian float, which is exactly what array("f") holds.
        self._beep = array(
            "f",
            (
                BEEP_AMPLITUDE * math.sin(2 * math.pi * BEEP_HZ * i / AUDIO_RATE)
                for i in range(AUDIO_FRAME_SAMPLES)
            ),
        ).tobytes()
        self._silence = bytes(len(self._beep))

    def frame(self, sample: int) -> av.AudioFrame:
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=AUDIO_FRAME_SAMPLES)
        second_phase = (self._first_sample + sample) % AUDIO_RATE
        payload = self._beep if second_phase < BEEP_WINDOW_SAMPLES else self._silence
        for plane in frame.planes:
            plane.update(payload)
        frame.sample_rate = AUDIO_RATE
        frame.pts = _audio_pts(sample)
        frame.time_base = Fraction(1, AUDIO_RATE)
        return frame


class _Sink:
    """Write-only file object collecting a muxer's output (non-seekable, so movenc streams)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)


_INIT = (b"ftyp", b"moov")
_MEDIA = (b"moof", b"mdat")


def _top_level_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, whole box) for each complete top-level ISO BMFF box."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        if size < 8 or offset + size > len(data):
            raise ValueError(f"truncated or corrupt mp4 box {kind!r} at offset {offset}")
        yield kind, data[offset : offset + size]
        offset += size


def _mux_all(
    output: OutputContainer, mapping: dict[int, int], packets: list[Packet[Stream]]
) -> None:
    streams = {stream.index: stream for stream in output.streams}
    for packet in packets:
        packet.stream = streams[mapping[packet.stream_index]]
        output.mux(packet)


def _fill_plane(frame: av.VideoFrame, index: int, data: bytes) -> None:
    plane = frame.planes[index]
    if plane.line_size == plane.width:
        plane.update(data)
        return
    # libav pads rows to its alignment; spread our tightly packed rows onto that stride.
    width = plane.width
    padding = bytes(plane.line_size - width)
    plane.update(b"".join(data[row : row + width] + padding for row in range(0, len(data), width)))


def _pts(packet: Packet[Stream]) -> int:
    if packet.pts is None:
        raise ValueError("encoder produced a packet without pts")
    return packet.pts


def _dts_seconds(packet: Packet[Stream]) -> Fraction:
    dts = packet.dts if packet.dts is not None else _pts(packet)
    return dts * packet.time_base


def _video_pts(fps: int, frame: int) -> int:
    return frame + STREAM_OFFSET_S * fps


def _audio_pts(sample: int) -> int:
    return sample + STREAM_OFFSET_S * AUDIO_RATE


def _h264_level(width: int, height: int, fps: int, video_bitrate: int | None) -> int:
    """Smallest level that fits, so CODECS can be stated before a single frame is encoded."""
    frame_mbs = math.ceil(width / 16) * math.ceil(height / 16)
    kbps = (video_bitrate or 0) // 1000
    for level, mbs_per_s, max_frame_mbs, max_kbps in _H264_LEVELS:
        if frame_mbs <= max_frame_mbs and frame_mbs * fps <= mbs_per_s and kbps <= max_kbps:
            return level
    raise ValueError(f"width/height/fps/video_bitrate exceed H.264 level 5.1: {width}x{height}")


def _validate(*, segment_ms: int, fps: int, width: int, height: int) -> None:
    if segment_ms <= 0 or segment_ms % 1000:
        raise ValueError(
            f"segment_ms must be a positive multiple of 1000 (whole GOPs), got {segment_ms}"
        )
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be between 1 and 120, got {fps}")
    if width < BARCODE_BITS * BARCODE_BLOCK or width % 2 or width < _BAR_WIDTH * 2:
        raise ValueError(f"width must be even and >= {BARCODE_BITS * BARCODE_BLOCK}, got {width}")
    if height < 2 * BARCODE_BLOCK or height % 2:
        raise ValueError(f"height must be even and >= {2 * BARCODE_BLOCK}, got {height}")
