"""Benchmark media: a cached pool of 1080p30 HLS segments, and quick checks of clip outputs.

The pool is one continuous synthetic stream (livecut.media.synth) written as a static
VOD folder: seg{i}.ts, index.m3u8 (PDT on every segment) and pool.json, which is
written last and names how many segments are complete, so an interrupted run is
never mistaken for a finished pool.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import av

from livecut.media.synth import SyntheticStream, read_frame_number, render_media_playlist

CACHE = Path(__file__).resolve().parent / ".cache"
PDT0_MS = 1_767_225_600_000  # the pool's first PDT (2026-01-01T00:00:00Z)


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSpec:
    width: int = 1920
    height: int = 1080
    fps: int = 30
    video_bitrate: int = 6_000_000
    segment_ms: int = 2000

    @property
    def folder(self) -> Path:
        kbit = self.video_bitrate // 1000
        return CACHE / (
            f"pool-{self.width}x{self.height}p{self.fps}-{kbit}k-{self.segment_ms}ms-ts"
        )

    def frame_ms(self, frame: int) -> float:
        """Wall time of a frame, relative to the pool's first PDT."""
        return frame * 1000 / self.fps

    def frame_covering(self, offset_ms: float) -> int:
        """The frame presented at offset_ms (ms from the first PDT)."""
        return math.floor(offset_ms * self.fps / 1000 + 1e-9)


@dataclass(frozen=True, kw_only=True, slots=True)
class Pool:
    spec: PoolSpec
    folder: Path
    playlist: Path
    segments: list[Path]
    encode_s: float | None  # None when it came from the cache

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.segments)

    @property
    def mbit_per_s(self) -> float:
        seconds = len(self.segments) * self.spec.segment_ms / 1000
        return self.total_bytes * 8 / seconds / 1e6


def ensure_pool(spec: PoolSpec, count: int) -> Pool:
    """The cached pool if it holds at least `count` segments; else encode one (slow)."""
    folder = spec.folder
    marker = folder / "pool.json"
    have = 0
    if marker.exists():
        have = int(json.loads(marker.read_text()).get("segments", 0))
    encode_s = None
    if have < count:
        encode_s = _encode_pool(spec, folder, count)
        have = count
    segments = [folder / f"seg{i}.ts" for i in range(have)]
    return Pool(
        spec=spec,
        folder=folder,
        playlist=folder / "index.m3u8",
        segments=segments,
        encode_s=encode_s,
    )


def _encode_pool(spec: PoolSpec, folder: Path, count: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pool.json").unlink(missing_ok=True)
    print(
        f"encoding {count} x {spec.segment_ms / 1000:g} s of {spec.width}x{spec.height}"
        f"p{spec.fps} into {folder} (once; later runs reuse it) ...",
        flush=True,
    )
    began = time.perf_counter()
    stream = SyntheticStream(
        segment_ms=spec.segment_ms,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        video_bitrate=spec.video_bitrate,
    )
    try:
        for n in range(count):
            segment = stream.next_segment()
            (folder / f"seg{segment.index}.ts").write_bytes(segment.data)
            if (n + 1) % 10 == 0 or n + 1 == count:
                print(f"  {n + 1}/{count} segments", flush=True)
    finally:
        stream.close()
    (folder / "index.m3u8").write_text(
        render_media_playlist(
            first=0,
            end=count,
            segment_ms=spec.segment_ms,
            container="ts",
            epoch_ms=PDT0_MS,
            ended=True,
            vod=True,
        )
    )
    elapsed = time.perf_counter() - began
    (folder / "pool.json").write_text(
        json.dumps({"segments": count, "encode_s": round(elapsed, 1)}) + "\n"
    )
    return elapsed


# --- checks ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Mp4Check:
    """What a player would show: frames presented, their barcodes, the container's span."""

    frames: int  # decoded (presented) video frames
    first_number: int | None  # barcode of the first presented frame
    last_number: int | None
    repeated: int  # frames whose barcode was already shown (duplicated pictures)
    missing: int  # barcodes between the first and the last that never show
    duration_s: float  # container duration (mvhd, after edit lists)
    width: int
    height: int
    audio: bool

    def describe(self) -> str:
        text = f"{self.frames} fr #{self.first_number}-#{self.last_number} {self.duration_s:.3f}s"
        if self.repeated or self.missing:
            text += f", {self.repeated} repeated, {self.missing} missing"
        return text


def check_mp4(path: Path) -> Mp4Check:
    """Decode the whole video track (threaded) and read every frame's barcode.

    Decoding honours the edit list, as players do: pre-roll and trailing reference
    frames are not counted.
    """
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        numbers = [read_frame_number(frame) for frame in container.decode(video)]
        distinct = set(numbers)
        return Mp4Check(
            frames=len(numbers),
            first_number=numbers[0] if numbers else None,
            last_number=numbers[-1] if numbers else None,
            repeated=len(numbers) - len(distinct),
            missing=0 if not numbers else numbers[-1] - numbers[0] + 1 - len(distinct),
            duration_s=(container.duration or 0) / av.time_base,
            width=video.codec_context.width,
            height=video.codec_context.height,
            audio=bool(container.streams.audio),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Mp4Summary:
    """From the moov box alone: cheap for any file size."""

    duration_s: float
    video_samples: int  # stored samples, pre-roll and trailing references included
    audio_samples: int


def summarize_mp4(path: Path) -> Mp4Summary:
    with av.open(str(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        return Mp4Summary(
            duration_s=(container.duration or 0) / av.time_base,
            video_samples=0 if video is None else video.frames,
            audio_samples=0 if audio is None else audio.frames,
        )
