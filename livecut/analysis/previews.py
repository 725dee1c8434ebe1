"""Shot previews: which instants an animated WebP shows (Mux's rule), and writing one."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

MAX_PREVIEW_FRAMES = 100
PREVIEW_FRAME_MS = 500  # each picture of a preview stays up this long


def preview_frame_count(duration_s: float) -> int:
    """One frame per whole second of shot, at most 100; a shot under a second gets one."""
    return max(1, min(MAX_PREVIEW_FRAMES, int(duration_s)))


def preview_times(start_s: float, end_s: float) -> list[float]:
    """The instants a shot's preview shows: evenly spread, each in the middle of its share
    (so none is the transition's first or last frame)."""
    count = preview_frame_count(end_s - start_s)
    step = (end_s - start_s) / count
    return [start_s + (i + 0.5) * step for i in range(count)]


def animated_webp(pictures: Sequence[npt.NDArray[np.uint8]], *, quality: int = 60) -> bytes:
    """An animated WebP of RGB pictures (Pillow writes it; FFmpeg cannot read one back)."""
    if not pictures:
        raise ValueError("pictures must not be empty")
    images = [Image.fromarray(p, "RGB") for p in pictures]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=PREVIEW_FRAME_MS,
        loop=0,
        quality=quality,
        method=4,
    )
    return buffer.getvalue()
