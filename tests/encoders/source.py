"""The mezzanine every encoder is fed: barcoded frames and a beep on every whole second."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from livecut.media.synth import barcoded_frame

AUDIO_RATE = 48_000
BEEP_HZ = 1000
BEEP_S = 0.1
BEEP_AMPLITUDE = 0.5
_CHUNK = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Mezzanine:
    """A .mov file: H.264 frames numbered 0.. in their barcode, mono PCM beeping in sync.

    The n-th frame is shown at n / fps; a beep starts on the very sample of every frame
    whose number is a multiple of `beep_every` and lasts BEEP_S.
    """

    path: Path
    fps: Fraction
    width: int
    height: int
    frames: int
    first_frame: int  # the number drawn on the first frame

    @property
    def beep_every(self) -> int:
        return round(self.fps)

    @property
    def seconds(self) -> float:
        return float(self.frames / self.fps)


def beep_onset_sample(frame: int, fps: Fraction) -> int:
    return round(frame * AUDIO_RATE / fps)


def write_mezzanine(
    path: Path, *, fps: Fraction, width: int, height: int, seconds: float, first_frame: int = 0
) -> Mezzanine:
    frames = math.ceil(seconds * fps)
    mezzanine = Mezzanine(
        path=path, fps=fps, width=width, height=height, frames=frames, first_frame=first_frame
    )
    with av.open(str(path), "w", format="mov") as output:
        video = output.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "ultrafast", "crf": "14", "g": str(2 * round(fps)), "bf": "0"},
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = output.add_stream("pcm_s16le", rate=AUDIO_RATE, layout="mono")
        samples = _soundtrack(mezzanine)
        next_sample = 0
        for n in range(frames):
            frame = barcoded_frame(first_frame + n, width, height)
            frame.pts = n
            frame.time_base = 1 / fps
            output.mux(video.encode(frame))
            until = min(len(samples), round((n + 1) * AUDIO_RATE / fps))
            while next_sample + _CHUNK <= until or (n == frames - 1 and next_sample < until):
                chunk = samples[next_sample : min(until, next_sample + _CHUNK)]
                sound = av.AudioFrame(format="s16", layout="mono", samples=len(chunk))
                sound.planes[0].update(chunk.tobytes())
                sound.sample_rate = AUDIO_RATE
                sound.pts = next_sample
                sound.time_base = Fraction(1, AUDIO_RATE)
                output.mux(audio.encode(sound))
                next_sample += len(chunk)
        output.mux(video.encode(None))
        output.mux(audio.encode(None))
    return mezzanine


def _soundtrack(mezzanine: Mezzanine) -> array[int]:
    total = round(mezzanine.frames * AUDIO_RATE / mezzanine.fps)
    samples = array("h", bytes(2 * total))
    length = round(BEEP_S * AUDIO_RATE)
    tone = [
        round(32767 * BEEP_AMPLITUDE * math.sin(2 * math.pi * BEEP_HZ * i / AUDIO_RATE))
        for i in range(length)
    ]
    every = mezzanine.beep_every
    for n in range(-mezzanine.first_frame % every, mezzanine.frames, every):
        onset = beep_onset_sample(n, mezzanine.fps)
        end = min(total, onset + length)
        samples[onset:end] = array("h", tone[: end - onset])
    return samples
