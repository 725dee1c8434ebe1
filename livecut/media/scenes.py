"""Synthetic media with known events (cuts, a dissolve, a static shot, a pan, a loud burst,
captions), written as an HLS VOD, for the analysis tests, the demo and the bench."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from livecut.media.synth import format_pdt

AUDIO_RATE = 48_000
QUIET_DBFS = -45.0
LOUD_DBFS = -6.0

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, kw_only=True, slots=True)
class Caption:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class EventReel:
    """Where every event of the reel is, in seconds from its first frame."""

    fps: int
    duration_s: float
    hard_cuts_s: tuple[float, ...]  # first frame of each new shot
    dissolve_s: tuple[float, float]  # span of the one slow dissolve
    static_s: tuple[float, float]  # a shot that does not change at all
    pan_s: tuple[float, float]  # a fast pan across one scene
    burst_s: tuple[float, float]  # loud audio inside quiet
    captions: tuple[Caption, ...]


REEL = EventReel(
    fps=25,
    duration_s=24.0,
    hard_cuts_s=(3.0, 5.0, 9.0, 14.0),
    dissolve_s=(16.0, 18.0),
    static_s=(5.0, 9.0),
    pan_s=(9.0, 14.0),
    burst_s=(11.0, 12.5),
    captions=(
        Caption(start_s=1.0, end_s=2.5, text="Welcome back to the studio"),
        Caption(start_s=6.0, end_s=7.5, text="Quiet before the match"),
        Caption(start_s=19.0, end_s=21.0, text="The goalkeeper saves it"),
    ),
)


def _scene(seed: int, width: int, height: int) -> Image:
    """A colourful picture: soft blobs of one palette on a gradient, a few per screenful."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 220, size=3).astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[:] = base
    image += (xs / width * 60 - 30)[..., None]
    for _ in range(6 * max(1, width // (2 * height))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.15, 0.45) * height
        colour = rng.uniform(-90, 90, size=3).astype(np.float32)
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius * radius))
        image += weight[..., None] * colour
    return np.clip(image, 0, 255).astype(np.uint8)


def reel_frame(reel: EventReel, n: int, width: int, height: int) -> Image:
    """Frame n of the reel at this size."""
    t = n / reel.fps
    scenes = [0.0, *reel.hard_cuts_s]
    shot = sum(1 for s in scenes if t >= s) - 1
    if t >= reel.dissolve_s[0]:
        a, b = _cached_scene(40, width, height), _cached_scene(41, width, height)
        start, end = reel.dissolve_s
        mix = min(1.0, (t - start) / (end - start))
        return (a * (1 - mix) + b * mix).astype(np.uint8)
    if reel.pan_s[0] <= t < reel.pan_s[1]:
        wide = _cached_scene(30, width * 4, height)
        # A camera sweeping a third of the picture's width every second.
        x = int((t - reel.pan_s[0]) * width / 3 * 1.0) % (width * 3)
        return np.ascontiguousarray(wide[:, x : x + width])
    if shot == len(scenes) - 1:
        return _cached_scene(40, width, height)
    return _cached_scene(10 + shot, width, height)


_SCENES: dict[tuple[int, int, int], Image] = {}


def _cached_scene(seed: int, width: int, height: int) -> Image:
    key = (seed, width, height)
    if key not in _SCENES:
        _SCENES[key] = _scene(seed, width, height)
    return _SCENES[key]


def reel_audio(reel: EventReel) -> npt.NDArray[np.float32]:
    """Mono samples: quiet pink-ish noise, with a loud burst of noise where the reel says."""
    rng = np.random.default_rng(7)
    samples = int(reel.duration_s * AUDIO_RATE)
    noise = rng.standard_normal(samples).astype(np.float32)
    noise /= np.sqrt(np.mean(noise**2))
    gain = np.full(samples, 10 ** (QUIET_DBFS / 20), np.float32)
    start, end = (int(s * AUDIO_RATE) for s in reel.burst_s)
    gain[start:end] = 10 ** (LOUD_DBFS / 20)
    out: npt.NDArray[np.float32] = np.clip(noise * gain, -1.0, 1.0)
    return out


def webvtt(captions: tuple[Caption, ...]) -> str:
    def stamp(s: float) -> str:
        ms = round(s * 1000)
        hours, minutes, seconds = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
        return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms % 1000:03d}"

    cues = [f"{stamp(c.start_s)} --> {stamp(c.end_s)}\n{c.text}\n" for c in captions]
    return "WEBVTT\n\n" + "\n".join(cues)


def write_reel_hls(
    folder: Path,
    *,
    reel: EventReel = REEL,
    width: int = 320,
    height: int = 180,
    segment_s: int = 2,
    start_pdt_ms: int = 1_767_225_600_000,
    start_pts_s: float = 10.0,
) -> Path:
    """Encode the reel as TS segments of segment_s (H.264 with keyframes every segment,
    never forced at cuts, so detection cannot lean on them) and write a VOD playlist.
    `start_pts_s` is the media time of the first frame (near 2**33 / 90 kHz, the TS
    timestamps wrap inside the reel)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames_total = int(reel.duration_s * reel.fps)
    per_segment = segment_s * reel.fps
    audio = reel_audio(reel)
    audio_per_segment = segment_s * AUDIO_RATE
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{segment_s}"]
    lines += ["#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    output = _SegmentEncoder(reel.fps, width, height, per_segment, start_pts_s=start_pts_s)
    try:
        for index in range(frames_total // per_segment):
            first = index * per_segment
            pictures = [
                reel_frame(reel, n, width, height) for n in range(first, first + per_segment)
            ]
            sound = audio[index * audio_per_segment : (index + 1) * audio_per_segment]
            name = f"seg{index}.ts"
            (folder / name).write_bytes(output.segment(first, pictures, sound))
            if index == 0:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(start_pdt_ms)}")
            lines += [f"#EXTINF:{segment_s:.3f},", name]
    finally:
        output.close()
    lines.append("#EXT-X-ENDLIST")
    playlist = folder / "index.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    (folder / "captions.vtt").write_text(webvtt(reel.captions))
    return playlist


class _SegmentEncoder:
    """One encoder pair for the whole reel; each segment gets its own TS muxer."""

    def __init__(
        self, fps: int, width: int, height: int, gop: int, *, start_pts_s: float = 10.0
    ) -> None:
        self._template = av.open(io.BytesIO(), "w", format="mpegts")
        options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop)}
        options |= {"sc_threshold": "0", "bf": "0", "crf": "20", "tune": "zerolatency"}
        self.video = self._template.add_stream("libx264", rate=fps, options=options)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.audio = self._template.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self._template.start_encoding()
        self.fps = fps
        self._sample = 0
        self._first_frame = round(start_pts_s * fps)
        self._first_sample = round(start_pts_s * AUDIO_RATE)

    def segment(self, first: int, pictures: list[Image], sound: npt.NDArray[np.float32]) -> bytes:
        packets = []
        for n, picture in enumerate(pictures, start=first):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = n + self._first_frame, Fraction(1, self.fps)
            packets += self.video.encode(frame)
        for start in range(0, len(sound), 1024):
            chunk = sound[start : start + 1024]
            sound_frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            sound_frame.sample_rate = AUDIO_RATE
            sound_frame.pts = self._sample + self._first_sample
            sound_frame.time_base = Fraction(1, AUDIO_RATE)
            self._sample += len(chunk)
            packets += self.audio.encode(sound_frame)
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts") as out:
            streams = {
                self.video.index: out.add_stream_from_template(self.video),
                self.audio.index: out.add_stream_from_template(self.audio),
            }
            for packet in sorted(packets, key=lambda p: float((p.dts or 0) * p.time_base)):
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        return buffer.getvalue()

    def close(self) -> None:
        self._template.close()
