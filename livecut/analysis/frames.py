"""Decoded pictures of stored segments, scaled down for analysis (the I/O shell of shots)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from av.stream import Discard

from livecut.media.concat import open_run

# PySceneDetect's metrics are averages over pixels: 256x144 keeps every cut a 1080p
# frame shows while making the colour conversion ~50 times cheaper.
ANALYSIS_SIZE = (256, 144)


def decoded_frames(
    paths: Sequence[Path],
    init_path: Path | None,
    *,
    from_s: float | None = None,
    to_s: float | None = None,
    size: tuple[int, int] = ANALYSIS_SIZE,
    pixel_format: str = "bgr24",
    keyframes_only: bool = False,
) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """(media time, picture) of every video frame of a run (or only its keyframes), in
    presentation order; BGR unless `pixel_format` says otherwise (rgb24)."""
    with open_run(paths, init_path, decode=True) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        # Frame threads keep both cores busy; decoding dominates the cost of analysis.
        stream.thread_type = "AUTO"
        for other in container.streams:
            if other is not stream:
                other.discard = Discard.all  # audio is never turned into packets here
        if keyframes_only:
            # The decoder skips every other picture: a storyboard of an hour costs seconds.
            stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            time_s = float(frame.pts * frame.time_base)
            if from_s is not None and time_s < from_s - 1e-6:
                continue
            if to_s is not None and time_s >= to_s - 1e-6:
                break
            width, height = size
            picture = frame.to_ndarray(width=width, height=height, format=pixel_format)
            yield time_s, picture.astype(np.uint8, copy=False)


def video_fps(paths: Sequence[Path], init_path: Path | None) -> float:
    """The run's frame rate as its first stream declares it (25 when it does not)."""
    with open_run(paths, init_path) as container:
        if container.streams.video:
            rate = container.streams.video[0].average_rate or container.streams.video[0].base_rate
            if rate:
                return float(rate)
    return 25.0
