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


def animated_webp(
    pictures: Sequence[npt.NDArray[np.uint8]],
    *,
    quality: int = 60,
    frame_ms: int = PREVIEW_FRAME_MS,
) -> bytes:
    """An animated WebP with exactly one frame per RGB picture.

    libwebp's animation encoder folds a frame identical to the one before into a longer
    display of it, so a static shot's preview would decode to fewer frames than the rule
    gives; each picture is therefore encoded as a still (Pillow) and wrapped in its own
    ANMF chunk here, as the WebP container specification lays them out.
    """
    if not pictures:
        raise ValueError("pictures must not be empty")
    height, width = pictures[0].shape[:2]
    frames = b"".join(
        _chunk(
            b"ANMF",
            _u24(0)
            + _u24(0)
            + _u24(width - 1)
            + _u24(height - 1)
            + _u24(frame_ms)
            # Flags: no blending, no disposal; each frame covers the whole canvas.
            + bytes([0b10])
            + _still(picture, quality),
        )
        for picture in pictures
    )
    header = _chunk(b"VP8X", bytes([0b10, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1))
    anim = _chunk(b"ANIM", bytes([0, 0, 0, 0]) + (0).to_bytes(2, "little"))  # loop forever
    body = b"WEBP" + header + anim + frames
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _still(picture: npt.NDArray[np.uint8], quality: int) -> bytes:
    """The image chunk(s) of a still lossy WebP of the picture (what follows its header)."""
    buffer = io.BytesIO()
    Image.fromarray(picture, "RGB").save(buffer, format="WEBP", quality=quality, method=4)
    data = buffer.getvalue()
    return data[12:]  # past "RIFF", the size and "WEBP": an opaque RGB still is one VP8 chunk


def _chunk(kind: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return kind + len(payload).to_bytes(4, "little") + payload + pad


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "little")
