"""The frame presented at an instant, decoded from the keyframe before it, as an image."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
from av.container import InputContainer
from av.stream import Discard
from PIL import Image

from livecut.clips.planner import plan_clip
from livecut.media.concat import open_run
from livecut.store.records import SegmentRow, segment_files

ImageFormat = Literal["jpg", "webp", "png"]
FitMode = Literal["preserve", "stretch", "crop", "pad"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpg", "webp", "png")
FIT_MODES: tuple[FitMode, ...] = ("preserve", "stretch", "crop", "pad")
MEDIA_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
_PILLOW_FORMAT = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
# Decoders kept open at the frame they last showed: scrubbing forward through a GOP goes
# on from there instead of decoding again from the keyframe.
OPEN_DECODERS = 4
_SAME_FRAME_S = 0.0005


@dataclass(kw_only=True, slots=True)
class _Decoding:
    """One run opened for decoding, and where its decoder stands."""

    container: InputContainer
    frames: Iterator[av.VideoFrame]
    frame_s: float  # nominal frame duration, for frames that carry none
    lock: threading.Lock = field(default_factory=threading.Lock)
    shown: av.VideoFrame | None = None  # the last frame handed out
    ahead: av.VideoFrame | None = None  # decoded after it, not yet shown
    target_s: float = 0.0  # the instant being decoded towards

    def position_s(self) -> float | None:
        frame = self.ahead or self.shown
        return None if frame is None else _time_s(frame)


_decoders: OrderedDict[tuple[str, ...], _Decoding] = OrderedDict()
_decoders_lock = threading.Lock()


def frame_files(segments: Sequence[SegmentRow], at_ms: int) -> list[str]:
    """The relpaths frame_at opens for `at_ms`: its run's segments, from the keyframe's,
    and their init section (to fetch them first). Raises NothingRecorded as frame_at."""
    return segment_files(plan_clip(segments, at_ms, at_ms + 1).runs[0].segments)


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
    key = tuple(str(p) for p in ([init] if init else []) + paths)
    decoding = _reusable(key, run.from_s, target_s)
    if decoding is None:
        decoding = _open(paths, init, run.from_s)
        owned = _keep(key, decoding)
    else:
        owned = True
    try:
        return _advance(decoding, target_s)
    finally:
        if owned:
            decoding.lock.release()
        else:
            decoding.container.close()


def _reusable(key: tuple[str, ...], keyframe_s: float, target_s: float) -> _Decoding | None:
    """A kept decoder (locked for the caller) that can go on to target_s: it stands past
    the keyframe the instant needs, and not past the instant."""
    with _decoders_lock:
        decoding = _decoders.get(key)
        if decoding is None or not decoding.lock.acquire(blocking=False):
            return None
        _decoders.move_to_end(key)
    shown_s = None if decoding.shown is None else _time_s(decoding.shown)
    position = decoding.position_s()
    if (
        shown_s is not None
        and position is not None
        and keyframe_s - _SAME_FRAME_S <= shown_s <= target_s + _SAME_FRAME_S
    ):
        return decoding
    decoding.lock.release()
    return None


def _keep(key: tuple[str, ...], decoding: _Decoding) -> bool:
    """Keep a new decoder (locked for the caller); False when it could not be kept."""
    decoding.lock.acquire()
    closing: list[_Decoding] = []
    with _decoders_lock:
        old = _decoders.get(key)
        if old is not None and not old.lock.acquire(blocking=False):
            decoding.lock.release()
            return False  # another request is using the kept one: this one is private
        if old is not None:
            closing.append(old)
        _decoders[key] = decoding
        _decoders.move_to_end(key)
        while len(_decoders) > OPEN_DECODERS:
            evicted_key, evicted = next(iter(_decoders.items()))
            if not evicted.lock.acquire(blocking=False):
                break  # in use: it goes next time
            del _decoders[evicted_key]
            closing.append(evicted)
    for gone in closing:
        gone.container.close()
        gone.lock.release()
    return True


def _open(paths: Sequence[Path], init: Path | None, keyframe_s: float) -> _Decoding:
    # Opened without decoding to probe: the decoder below decodes the keyframe anyway.
    container = open_run(paths, init)
    stream = container.streams.video[0]
    # Slice threads decode one frame faster; frame threads would add delay here and, on a
    # busy machine, cost more than they share.
    stream.thread_type = "SLICE"
    for other in container.streams:
        if other is not stream:
            other.discard = Discard.all  # nothing but the video is read into packets
    rate = stream.average_rate or stream.base_rate
    decoding = _Decoding(
        container=container, frames=iter(()), frame_s=1 / float(rate) if rate else 0.04
    )
    decoding.frames = _decoded(container, stream, keyframe_s, decoding)
    return decoding


def _decoded(
    container: InputContainer,
    stream: av.video.stream.VideoStream,
    keyframe_s: float,
    decoding: _Decoding,
) -> Iterator[av.VideoFrame]:
    started = False
    context = stream.codec_context
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            pts_s = float(packet.pts * packet.time_base)
            if not started:
                # Packets before the planned keyframe cannot change what it shows.
                started = packet.is_keyframe and pts_s >= keyframe_s - _SAME_FRAME_S
                if not started:
                    continue
            # A picture that no other refers to and that is gone before the instant is
            # never shown: the decoder skips it (about half the B-frames of a GOP).
            gone = pts_s + decoding.frame_s < decoding.target_s - _SAME_FRAME_S
            context.skip_frame = "NONREF" if gone else "DEFAULT"
        for frame in packet.decode():
            assert isinstance(frame, av.VideoFrame)
            if frame.pts is not None and frame.time_base is not None:
                yield frame


def _advance(decoding: _Decoding, target_s: float) -> av.VideoFrame:
    """Decode on to the frame presented at target_s, stopping as soon as it is known."""
    shown = decoding.shown
    decoding.target_s = target_s
    while True:
        frame = decoding.ahead or next(decoding.frames, None)
        decoding.ahead = None
        if frame is None:
            break
        time_s = _time_s(frame)
        if time_s > target_s + _SAME_FRAME_S:
            decoding.ahead = frame
            if shown is None:
                shown = frame  # the instant is before the first frame: show that one
            break
        shown = frame
        decoding.shown = frame
        duration_s = decoding.frame_s
        if frame.duration and frame.time_base is not None:
            duration_s = float(frame.duration * frame.time_base)
        if time_s + duration_s > target_s + _SAME_FRAME_S:
            break  # it covers the instant: no need to decode the next one
    if shown is None:
        raise LookupError("no video frame is presented at the instant")
    return shown


def _time_s(frame: av.VideoFrame) -> float:
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base)


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
