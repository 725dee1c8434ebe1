"""Benchmark: a 1080p30 clip rendered vertical with captions and a watermark, beside ffmpeg.

    python bench/render.py [--seconds 60] [--source camera|noise] [--preset veryfast]
                           [--crf 23] [--repeat 1]

1. A clip of --seconds is cut by livecut's copy path (the render's input, as in a clip
   job), with WebVTT cues (1 s shown of every 2 s) and a watermark PNG. The source is
   `camera` (default): ffmpeg's moving test pattern with a light film grain, encoded
   once at 6 Mbit/s into bench/.cache/, about what a camera gives x264 to chew on; or
   `noise`: the clip benchmark's pool, whose picture is fresh noise every frame (the
   worst case for any encoder: 34 Mbit/s out at crf 23).
2. livecut renders it to 1080x1920 (9:16 crop at the centre), captions burned in, the
   watermark top-right at 80% opacity (media/render.py, in-process, timed alone).
3. The ffmpeg CLI does the same on the same file: crop, scale, overlay, subtitles
   (libass), libx264 with the same preset and crf, the audio copied.
4. Every output is decoded: frame counts, and the SSIM of the luma of every 30th frame
   against a reference (the source frame cropped and scaled without compression), over
   the middle of the picture (clear of the watermark and the captions, which the two
   draw differently).

Progress goes to stderr; the report goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy
from _media import CACHE, PoolSpec, ensure_pool
from PIL import Image

from livecut.media.captions import caption_spans
from livecut.media.remux import RemuxRun, remux_mp4
from livecut.media.render import OverlaySpec, RenderJob, RenderSpec, Size, geometry, render_mp4
from livecut.media.subtitles import Cue, render_webvtt

TARGET_OVER_FFMPEG = 1.2
TARGET_REAL_TIME = 1.0
SSIM_EVERY = 30
OUTPUT = Size(width=1080, height=1920)
WATERMARK_OPACITY = 0.8
WATERMARK_WIDTH = 0.2
WATERMARK_MARGIN = 0.03


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class Inputs:
    clip: Path
    vtt: Path
    watermark: Path
    cues: list[Cue]
    frames: int
    duration_s: float
    source: Size


def camera_source(seconds: float) -> Path:
    """A 1080p30 H.264 + AAC MPEG-TS file of a moving pattern with grain (cached)."""
    path = CACHE / f"render-camera-1080p30-{seconds + 2:g}s.ts"
    if path.exists():
        return path
    log(f"encoding the camera-like source once: {path.name}")
    part = path.with_name(path.name + ".part")
    command = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=8:allf=t+u",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", f"{seconds + 2:g}", "-c:v", "libx264", "-preset", "veryfast",
        "-b:v", "6M", "-maxrate", "6M", "-bufsize", "12M", "-g", "30", "-bf", "2",
        "-c:a", "aac", "-f", "mpegts", str(part),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=3600)
    part.replace(path)
    return path


def make_inputs(work: Path, seconds: float, source: str) -> Inputs:
    if source == "noise":
        spec = PoolSpec()
        segments = int(seconds * 1000 // spec.segment_ms) + 2
        paths = tuple(ensure_pool(spec, max(segments, 4)).segments[:segments])
    else:
        paths = (camera_source(seconds),)
    with av.open(str(paths[0])) as first:
        stream = first.streams.video[0]
        assert stream.start_time is not None and stream.time_base is not None
        ref_s = float(stream.start_time * stream.time_base)
    run = RemuxRun(
        paths=paths,
        init_path=None,
        wraps=True,
        ref_s=ref_s,
        from_s=ref_s,
        to_s=ref_s + seconds,
        wall_ms=lambda t: (t - ref_s) * 1000,
    )
    clip = work / "clip.mp4"
    presented = remux_mp4([run], first_s=ref_s, output=clip, expected_s=seconds)
    video = next(t for t in presented.tracks if t.kind == "video")
    cues = [
        Cue(start_ms=s * 1000.0, end_ms=s * 1000.0 + 1000, text=f"Caption number {s // 2 + 1}")
        for s in range(0, int(seconds), 2)
    ]
    vtt = work / "cues.vtt"
    vtt.write_text(render_webvtt(cues, zero_ms=0))
    watermark = work / "logo.png"
    logo = Image.new("RGBA", (400, 160), (240, 240, 240, 255))
    logo.paste((200, 30, 30, 255), (20, 20, 380, 140))
    logo.save(watermark)
    assert video.width is not None and video.height is not None
    return Inputs(
        clip=clip,
        vtt=vtt,
        watermark=watermark,
        cues=cues,
        frames=video.frames,
        duration_s=presented.duration_s,
        source=Size(width=video.width, height=video.height),
    )


def render_ours(inputs: Inputs, out: Path, preset: str, crf: int) -> float:
    spec = RenderSpec(
        aspect_ratio="9:16",
        preset=preset,
        crf=crf,
        captions="burn",
        overlay=OverlaySpec(
            image=inputs.watermark,
            position="top-right",
            margin=WATERMARK_MARGIN,
            width=WATERMARK_WIDTH,
            opacity=WATERMARK_OPACITY,
        ),
    )
    geo = geometry(inputs.source, spec)
    assert geo.output == OUTPUT, geo
    job = RenderJob(
        source=inputs.clip,
        outputs=[(out, geo.output)],
        geometry=geo,
        spec=spec,
        frames=inputs.frames,
        duration_s=inputs.duration_s,
        captions=caption_spans(inputs.cues, zero_ms=0, end_s=inputs.duration_s),
    )
    began = time.perf_counter()
    render_mp4(job)
    return time.perf_counter() - began


def ffmpeg_command(inputs: Inputs, out: Path, preset: str, crf: int) -> list[str]:
    geo = geometry(inputs.source, RenderSpec(aspect_ratio="9:16"))
    x = (inputs.source.width - geo.crop.width) // 2
    width = round(OUTPUT.width * WATERMARK_WIDTH)
    margin = round(OUTPUT.width * WATERMARK_MARGIN)
    graph = (
        f"[0:v]crop={geo.crop.width}:{geo.crop.height}:{x}:0,"
        f"scale={OUTPUT.width}:{OUTPUT.height}:flags=bicubic[v];"
        f"[1:v]scale={width}:-1,format=rgba,colorchannelmixer=aa={WATERMARK_OPACITY}[w];"
        f"[v][w]overlay=W-w-{margin}:{margin},subtitles={inputs.vtt},format=yuv420p[out]"
    )
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(inputs.clip),
        "-i",
        str(inputs.watermark),
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-c:a",
        "copy",
        str(out),
    ]


def render_ffmpeg(inputs: Inputs, out: Path, preset: str, crf: int) -> float:
    command = ffmpeg_command(inputs, out, preset, crf)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr[-2000:]}")
    return elapsed


def reference(inputs: Inputs) -> dict[int, numpy.ndarray]:
    """Every SSIM_EVERY-th source frame, cropped and scaled, uncompressed (luma)."""
    geo = geometry(inputs.source, RenderSpec(aspect_ratio="9:16"))
    x = (inputs.source.width - geo.crop.width) // 2
    frames: dict[int, numpy.ndarray] = {}
    with av.open(str(inputs.clip)) as container:
        for n, frame in enumerate(f for f in container.decode(video=0) if (f.pts or 0) >= 0):
            if n % SSIM_EVERY:
                continue
            luma = frame.to_ndarray(format="gray")[:, x : x + geo.crop.width]
            image = Image.fromarray(luma).resize(
                (OUTPUT.width, OUTPUT.height), Image.Resampling.BICUBIC
            )
            frames[n] = numpy.asarray(image)
    return frames


def decoded(path: Path) -> tuple[int, dict[int, numpy.ndarray]]:
    count = 0
    sampled: dict[int, numpy.ndarray] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if count % SSIM_EVERY == 0:
                sampled[count] = frame.to_ndarray(format="gray")
            count += 1
    return count, sampled


def ssim(a: numpy.ndarray, b: numpy.ndarray) -> float:
    """Mean SSIM of two luma planes over 8x8 windows (the classic constants)."""
    x, y = a.astype(numpy.float64), b.astype(numpy.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = (x.shape[0] // 8) * 8, (x.shape[1] // 8) * 8

    def blocks(m: numpy.ndarray) -> numpy.ndarray:
        return m[:h, :w].reshape(h // 8, 8, w // 8, 8)

    bx, by = blocks(x), blocks(y)
    mx, my = bx.mean(axis=(1, 3)), by.mean(axis=(1, 3))
    vx = bx.var(axis=(1, 3))
    vy = by.var(axis=(1, 3))
    cov = (bx * by).mean(axis=(1, 3)) - mx * my
    score = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(score.mean())


def quality(path: Path, ref: dict[int, numpy.ndarray]) -> tuple[int, float]:
    count, sampled = decoded(path)
    rows = slice(round(OUTPUT.height * 0.25), round(OUTPUT.height * 0.6))  # clear of overlays
    scores = [ssim(sampled[n][rows], ref[n][rows]) for n in sorted(ref) if n in sampled]
    return count, statistics.fmean(scores) if scores else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--source", choices=("camera", "noise"), default="camera")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-", dir=CACHE) as tmp:
        work = Path(tmp)
        log("cutting the input clip (copy path)")
        inputs = make_inputs(work, args.seconds, args.source)
        ours_s: list[float] = []
        peer_s: list[float] = []
        for n in range(args.repeat):
            log(f"livecut render, run {n + 1}/{args.repeat}")
            ours_s.append(render_ours(inputs, work / "ours.mp4", args.preset, args.crf))
            log(f"ffmpeg render, run {n + 1}/{args.repeat}")
            peer_s.append(render_ffmpeg(inputs, work / "ffmpeg.mp4", args.preset, args.crf))
        log("decoding the outputs")
        ref = reference(inputs)
        ours_frames, ours_ssim = quality(work / "ours.mp4", ref)
        peer_frames, peer_ssim = quality(work / "ffmpeg.mp4", ref)
        sizes = {k: (work / f"{k}.mp4").stat().st_size for k in ("ours", "ffmpeg")}
    ours, peer = statistics.median(ours_s), statistics.median(peer_s)
    ratio = ours / peer
    real = inputs.duration_s / ours
    lines = [
        f"livecut render benchmark: --seconds {args.seconds:g} --source {args.source} "
        f"--preset {args.preset} "
        f"--crf {args.crf} --repeat {args.repeat}",
        f"host: {os.cpu_count()} CPUs; PyAV {av.__version__}; load average {load:.2f} at start",
        f"input: {inputs.source.width}x{inputs.source.height} H.264 + AAC, "
        f"{inputs.duration_s:.3f} s, {inputs.frames} frames; {len(inputs.cues)} cues",
        f"render: 9:16 crop at the centre -> {OUTPUT}, captions burned in, watermark "
        f"{WATERMARK_WIDTH:.0%} wide at {WATERMARK_OPACITY:.0%} opacity, libx264 "
        f"{args.preset} crf {args.crf}, audio copied",
        "",
        f"{'':<36} {'time':>8} {'x real':>7} {'frames':>7} {'SSIM':>7} {'MB':>7}",
        f"{'livecut (media/render.py)':<36} {ours:>7.1f}s {real:>6.2f}x {ours_frames:>7} "
        f"{ours_ssim:>7.4f} {sizes['ours'] / 1e6:>7.1f}",
        f"{'ffmpeg crop,scale,overlay,subtitles':<36} {peer:>7.1f}s "
        f"{inputs.duration_s / peer:>6.2f}x {peer_frames:>7} {peer_ssim:>7.4f} "
        f"{sizes['ffmpeg'] / 1e6:>7.1f}",
        "",
        f"livecut / ffmpeg  {ratio:.2f}   target <= {TARGET_OVER_FFMPEG:g}: "
        f"{'met' if ratio <= TARGET_OVER_FFMPEG else 'MISSED'}",
        f"real time         {real:.2f}x  target >= {TARGET_REAL_TIME:g}x: "
        f"{'met' if real >= TARGET_REAL_TIME else 'MISSED'}",
        f"frames            {ours_frames} (livecut), {peer_frames} (ffmpeg), "
        f"{inputs.frames} in the clip",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
