"""The frame presented at an instant, decoded from the keyframe before it, as an image."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import av
from PIL import Image

from livecut.clips.planner import plan_clip
from livecut.media.concat import open_run
from livecut.store.records import SegmentRow

ImageFormat = Literal["jpg", "webp", "png"]
FitMode = Literal["preserve", "stretch", "crop", "pad"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpg", "webp", "png")
FIT_MODES: tuple[FitMode, ...] = ("preserve", "stretch", "crop", "pad")
MEDIA_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
_PILLOW_FORMAT = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}


def frame_at(
    segments: Sequence[SegmentRow], at_ms: int, path_of: Callable[[str], Path]
) -> av.VideoFrame:
    """The video frame on screen at `at_ms`: the last one presented at or before it.

    Raises NothingRecorded (from the planner) when no video covers the instant.
    """
    plan = plan_clip(segments, at_ms, at_ms + 1)
    run = plan.runs[0]
    target_s = run.media_s(at_ms)
    first = run.segments[0]
    paths = [path_of(s.path) for s in run.segments]
    init = None if first.init_path is None else path_of(first.init_path)
    shown: av.VideoFrame | None = None
    with open_run(paths, init, decode=True) as container:
        stream = container.streams.video[0]
        # Slice threads decode one frame faster; frame threads would only add delay here.
        stream.thread_type = "SLICE"
        started = False
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None and not started:
                # Packets before the planned keyframe cannot change what it shows.
                started = packet.is_keyframe and float(packet.pts * packet.time_base) >= (
                    run.from_s - 0.0005
                )
                if not started:
                    continue
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame)
                if frame.pts is None or frame.time_base is None:
                    continue
                if float(frame.pts * frame.time_base) > target_s + 0.0005:
                    if shown is not None:
                        return shown
                    continue
                shown = frame
    if shown is None:
        raise LookupError(f"no video frame is presented at {at_ms}")
    return shown


def encode_image(
    frame: av.VideoFrame,
    image_format: ImageFormat,
    *,
    width: int | None = None,
    height: int | None = None,
    fit_mode: FitMode = "preserve",
) -> bytes:
    """The frame as a JPEG, WebP or PNG, sized as Mux's image API sizes thumbnails."""
    image = Image.fromarray(frame.to_ndarray(format="rgb24"), "RGB")
    image = _fit(image, width, height, fit_mode)
    buffer = io.BytesIO()
    options = {} if image_format == "png" else {"quality": 85}
    image.save(buffer, format=_PILLOW_FORMAT[image_format], **options)
    return buffer.getvalue()


def _fit(image: Image.Image, width: int | None, height: int | None, mode: FitMode) -> Image.Image:
    src_w, src_h = image.size
    if width is None and height is None:
        return image
    if width is None or height is None:
        # One side given: the other follows the picture's aspect ratio, whatever the mode.
        scale = (width or 0) / src_w if width is not None else (height or 0) / src_h
        return image.resize((max(1, round(src_w * scale)), max(1, round(src_h * scale))))
    if mode == "stretch":
        return image.resize((width, height))
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
        scaled = image.resize((max(1, round(src_w * scale)), max(1, round(src_h * scale))))
        left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
        return scaled.crop((left, top, left + width, top + height))
    scale = min(width / src_w, height / src_h)
    inner = image.resize((max(1, round(src_w * scale)), max(1, round(src_h * scale))))
    if mode == "preserve":
        return inner
    canvas = Image.new("RGB", (width, height))
    canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return canvas
