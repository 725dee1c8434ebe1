"""Analysis speed and quality: shot detection and loudness as multiples of real time
(1080p30 and 720p30), thumbnail latency through the API at 1080p, detection quality.

    .venv/bin/python bench/analysis.py

Media is generated into a temporary folder each run (about a minute at 1080p). Figures
taken on a machine shared with other work are indicative only: the load average is printed
beside them.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiohttp import web
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livecut.analysis.frames import decoded_frames
from livecut.analysis.loudness import loudness_curve
from livecut.analysis.shots import ShotDetector
from livecut.media.scenes import AUDIO_RATE, REEL, write_reel_hls
from livecut.media.synth import read_frame_number, write_hls_fixture
from tests.harness import daemon_config, running, session_ended, until

PDT0 = 1_767_225_600_000


def shot_speed(folder: Path, fps: int) -> dict[str, float]:
    segments = sorted(folder.glob("seg*.ts"), key=lambda p: int(p.stem[3:]))
    duration = len(segments) * 2.0
    began = time.perf_counter()
    frames = list(decoded_frames(segments, None))
    decode_s = time.perf_counter() - began
    detector = ShotDetector(fps)
    began = time.perf_counter()
    cuts = [c for t, f in frames for c in detector.process_frame(t - frames[0][0], f)]
    cuts += detector.flush()
    detect_s = time.perf_counter() - began
    return {
        "realtime_x": duration / (decode_s + detect_s),
        "decode_scale_s": decode_s,
        "detect_s": detect_s,
        "duration_s": duration,
        "cuts": len(cuts),
        "hard_within_frame": sum(
            1
            for expected in REEL.hard_cuts_s
            if any(c.kind == "cut" and abs(c.time_s - expected) <= 1 / fps + 1e-6 for c in cuts)
        ),
        "dissolve_found": any(
            c.kind == "dissolve" and REEL.dissolve_s[0] <= c.time_s <= REEL.dissolve_s[1]
            for c in cuts
        ),
    }


def loudness_speed(folder: Path) -> float:
    began = time.perf_counter()
    with av.open(str(folder / "index.m3u8")) as container:
        chunks = [f.to_ndarray()[0] for f in container.decode(audio=0)]
    loudness_curve(np.concatenate(chunks).astype(np.float32), AUDIO_RATE)
    return REEL.duration_s / (time.perf_counter() - began)


async def thumbnail_latency(work: Path) -> list[tuple[float, bool]]:
    vod = work / "thumb"
    playlist = write_hls_fixture(
        vod, segments=4, width=1920, height=1080, fps=30, video_bitrate=6_000_000
    )
    app = web.Application()
    app.router.add_static("/vod", playlist.parent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results = []
    try:
        config = daemon_config(work / "data", f"http://127.0.0.1:{port}/vod/index.m3u8")
        async with running(config) as daemon, aiohttp.ClientSession() as http:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=60)
            # Mid-GOP instants (a keyframe every 30 frames): the worst is just before one.
            for frame in (15, 29, 44, 59, 74, 89, 104, 119):
                at_ms = PDT0 + frame * 1000 // 30 + 10
                began = time.perf_counter()
                async with http.get(
                    f"{daemon.base_url}/v1/streams/cam/thumbnail.jpg", params={"at_ms": str(at_ms)}
                ) as response:
                    body = await response.read()
                elapsed = (time.perf_counter() - began) * 1000
                picture = av.VideoFrame.from_image(  # type: ignore[no-untyped-call]
                    Image.open(io.BytesIO(body)).convert("RGB")
                )
                results.append((elapsed, read_frame_number(picture) == frame))
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    reel30 = replace(REEL, fps=30)
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for name, (w, h) in (("1080p30", (1920, 1080)), ("720p30", (1280, 720))):
            folder = write_reel_hls(work / name, reel=reel30, width=w, height=h).parent
            speed = shot_speed(folder, 30)
            rows.append((name, speed, loudness_speed(folder)))
        print()
        print(
            "| media | shots x real time | decode+scale s | detect s | hard cuts within 1 frame"
            " | dissolve | loudness x real time |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, s, loud in rows:
            print(
                f"| {name} ({s['duration_s']:.0f} s) | {s['realtime_x']:.1f}x"
                f" | {s['decode_scale_s']:.2f} | {s['detect_s']:.2f}"
                f" | {s['hard_within_frame']}/{len(REEL.hard_cuts_s)} (cuts reported:"
                f" {s['cuts']}) | {'found' if s['dissolve_found'] else 'missed'} | {loud:.0f}x |"
            )
        print(f"load average after detection: {os.getloadavg()[0]:.1f}")
        latencies = asyncio.run(thumbnail_latency(work))
        times = [t for t, _ in latencies]
        print()
        # The first request also pays for the daemon's first image encode and the
        # client's connection: shown apart from the rest.
        later = times[1:]
        print(
            f"thumbnail 1080p mid-GOP via the API: first after start {times[0]:.0f} ms;"
            f" then median {statistics.median(later):.0f} ms, max {max(later):.0f} ms over"
            f" {len(later)} instants; exact frame {sum(ok for _, ok in latencies)}/{len(latencies)}"
        )
        bound = rows[0][1]
        share = bound["decode_scale_s"] / (bound["decode_scale_s"] + bound["detect_s"])
        print(
            f"1080p shot detection time: {share:.0%} H.264 decode and scaling to 256x144,"
            f" the rest PySceneDetect and the dissolve check"
        )


if __name__ == "__main__":
    main()
