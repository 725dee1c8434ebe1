"""Storyboards: tiles of a range at a fixed interval on one sprite sheet, and the WebVTT
file of `#xywh=` cues that players (video.js thumbnails, Mux's storyboards) read."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

MAX_TILES = 100
COLUMNS = 10
# Intervals a storyboard picks from when none is asked for: the smallest giving at most
# MAX_TILES tiles. A live session keeps its interval until it outgrows it.
INTERVALS_MS = (1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000)


def default_interval_ms(duration_ms: int) -> int:
    for interval in INTERVALS_MS:
        if duration_ms <= interval * MAX_TILES:
            return interval
    return INTERVALS_MS[-1]


def tile_instants(from_ms: int, to_ms: int, interval_ms: int) -> list[int]:
    """One tile per interval that has begun before to_ms, each showing its first instant."""
    count = max(1, -(-(to_ms - from_ms) // interval_ms))
    return [from_ms + n * interval_ms for n in range(count)]


def storyboard_vtt(
    *,
    count: int,
    interval_ms: int,
    total_ms: int,
    tile: tuple[int, int],
    image_url: str,
    columns: int = COLUMNS,
) -> str:
    """Cue n covers [n * interval, (n + 1) * interval) from the range's start (the last is
    cut at total_ms) and names tile n of the sheet."""
    width, height = tile
    lines = ["WEBVTT", ""]
    for n in range(count):
        start = n * interval_ms
        end = min(total_ms, start + interval_ms) if n == count - 1 else start + interval_ms
        x, y = (n % columns) * width, (n // columns) * height
        lines += [
            f"{_stamp(start)} --> {_stamp(max(end, start + 1))}",
            f"{image_url}#xywh={x},{y},{width},{height}",
            "",
        ]
    return "\n".join(lines)


def sprite_sheet(
    pictures: Sequence[npt.NDArray[np.uint8]], *, image_format: str, columns: int = COLUMNS
) -> bytes:
    """RGB tiles of one size, left to right, top to bottom."""
    height, width = pictures[0].shape[:2]
    cols = min(columns, len(pictures))
    rows = -(-len(pictures) // cols)
    sheet = np.zeros((rows * height, cols * width, 3), np.uint8)
    for n, picture in enumerate(pictures):
        y, x = (n // cols) * height, (n % cols) * width
        sheet[y : y + height, x : x + width] = picture
    buffer = io.BytesIO()
    Image.fromarray(sheet, "RGB").save(
        buffer, format="WEBP" if image_format == "webp" else "JPEG", quality=75
    )
    return buffer.getvalue()


def _stamp(ms: int) -> str:
    hours, minutes, seconds = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms % 1000:03d}"
