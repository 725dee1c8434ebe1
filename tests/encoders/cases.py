"""The encoder configurations the conformance suite records and clips."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Encoder = Literal["ffmpeg", "gstreamer", "nginx-rtmp"]

SIZE = (320, 180)
RESTART_SIZE = (426, 240)
LIVE_S = 34.0  # how long each encoder runs; the restart case runs twice half as long


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    name: str
    encoder: Encoder
    fps: Fraction = Fraction(25)
    container: Literal["ts", "fmp4"] = "ts"
    codec: Literal["h264", "hevc"] = "h264"
    bframes: int = 0
    x264_params: str = ""  # extra -x264-params (b-pyramid, open-gop)
    gop_s: float = 2.0
    segment_s: float = 2.0
    split_by_time: bool = False
    pdt: bool = True
    audio_lead_s: float = 0.0  # video delayed by this much against audio at the encoder
    restart: bool = False  # second run at RESTART_SIZE, appended after a discontinuity
    start_heavy: bool = False  # every range starts in the session's first segments

    @property
    def gop_frames(self) -> int:
        return round(self.gop_s * self.fps)


CASES: tuple[Case, ...] = (
    Case(name="ts_bf0", encoder="ffmpeg"),
    Case(name="ts_bf2", encoder="ffmpeg", bframes=2, x264_params="b-pyramid=none"),
    Case(name="ts_bf3_pyramid", encoder="ffmpeg", bframes=3, x264_params="b-pyramid=normal"),
    Case(name="fmp4_bf0", encoder="ffmpeg", container="fmp4"),
    Case(
        name="fmp4_bf2", encoder="ffmpeg", container="fmp4", bframes=2, x264_params="b-pyramid=none"
    ),
    Case(
        name="fmp4_bf3_pyramid",
        encoder="ffmpeg",
        container="fmp4",
        bframes=3,
        x264_params="b-pyramid=normal",
    ),
    Case(name="audio_lead_150ms", encoder="ffmpeg", bframes=2, audio_lead_s=0.15),
    Case(name="aac_priming", encoder="ffmpeg", start_heavy=True),
    Case(name="fps_29_97", encoder="ffmpeg", fps=Fraction(30000, 1001), bframes=2),
    Case(
        name="fps_59_94", encoder="ffmpeg", container="fmp4", fps=Fraction(60000, 1001), bframes=2
    ),
    # Closed GOPs: with x265's default open GOP, ffmpeg 5.1's fMP4 stamps each CRA one frame
    # early, on the pts of the frame before it (see tests/encoders/__init__.py).
    Case(name="hevc_fmp4", encoder="ffmpeg", container="fmp4", codec="hevc", bframes=3),
    Case(name="open_gop_x264", encoder="ffmpeg", bframes=3, x264_params="open-gop=1"),
    Case(name="gop_6s_split_by_time", encoder="ffmpeg", bframes=2, gop_s=6.0, split_by_time=True),
    Case(name="no_pdt", encoder="ffmpeg", bframes=2, pdt=False),
    Case(name="restart_new_size", encoder="ffmpeg", bframes=2, restart=True),
    Case(name="gstreamer_hlssink2", encoder="gstreamer", bframes=2, pdt=False),
    Case(name="nginx_rtmp", encoder="nginx-rtmp", bframes=2, pdt=False),
)
