"""The frame presented at an instant, decoded from the keyframe before it, as an image."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import av
from av.stream import Discard
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
        # Frame threads decode the GOP's pictures in parallel: a mid-GOP instant at 1080p
        # comes out about a third sooner than with slice threads (one slice per picture is
        # what most encoders write, leaving slice threads nothing to share).
        stream.thread_type = "FRAME"
        for other in container.streams:
            if other is not stream:
                other.discard = Discard.all  # nothing but the video is read into packets
        rate = stream.average_rate or stream.base_rate
        frame_s = 1 / float(rate) if rate else 0.04
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
                time_s = float(frame.pts * frame.time_base)
                if time_s > target_s + 0.0005:
                    if shown is not None:
                        return shown
                    continue
                shown = frame
                duration_s = float(frame.duration * frame.time_base) if frame.duration else 0.0
                if time_s + (duration_s or frame_s) > target_s + 0.0005:
                    return frame  # it covers the instant: no need to decode the next one
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
    """The frame as a JPEG, WebP or PNG, sized as Mux's image API sizes thumbnails.

    The picture is scaled while it is converted to RGB (swscale, one pass), never as a
    full-size RGB copy first: at 1080p that copy costs more than the scaling itself.
    """
    scaled_w, scaled_h = _scaled_size(frame.width, frame.height, width, height, fit_mode)
    rgb = frame.to_ndarray(width=scaled_w, height=scaled_h, format="rgb24")
    image = Image.fromarray(rgb, "RGB")
    if width is not None and height is not None and fit_mode == "crop":
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))
    elif width is not None and height is not None and fit_mode == "pad":
        canvas = Image.new("RGB", (width, height))
        canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
        image = canvas
    buffer = io.BytesIO()
    options = {} if image_format == "png" else {"quality": 85}
    image.save(buffer, format=_PILLOW_FORMAT[image_format], **options)
    return buffer.getvalue()


def _scaled_size(
    src_w: int, src_h: int, width: int | None, height: int | None, mode: FitMode
) -> tuple[int, int]:
    """The size the picture is scaled to before a crop or a pad (Mux's fit modes)."""
    if width is None and height is None:
        return src_w, src_h
    if width is None or height is None:
        # One side given: the other follows the picture's aspect ratio, whatever the mode.
        scale = (width or 0) / src_w if width is not None else (height or 0) / src_h
        return max(1, round(src_w * scale)), max(1, round(src_h * scale))
    if mode == "stretch":
        return width, height
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
    else:
        scale = min(width / src_w, height / src_h)
    return max(1, round(src_w * scale)), max(1, round(src_h * scale))
