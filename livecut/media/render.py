"""Render a clip for where it will be posted: framing, size, captions burned in, a watermark.

The input is the copy path's MP4 (media/remux.py), whose edit list already presents
exactly the requested frames: a render decodes it once and keeps those frames, first
and last, so it is as frame-accurate as the copy. The picture goes through one
libavfilter graph (crop or pad, scale, the watermark and the caption strip overlaid,
then a split and a scale per extra size), is encoded with libx264, and the audio
packets are copied beside it. Decoding, filtering and encoding run in FFmpeg's own
threads, with the GIL let go: Python only hands frames from one to the next.

Geometry (all sizes even, as 4:2:0 needs):
- crop: the largest window of the asked aspect ratio inside the source, placed by
  `focus` (centre, a fixed fraction of the free width, or a path per frame: auto),
  scaled to the output size.
- pad: the whole source scaled to fit inside the output, on a blurred, enlarged copy of
  itself or on a plain colour.
- The output's shorter side is the source's shorter side (a 1080p source gives
  1080x1920 for 9:16, 1080x1080 for 1:1), then made to fit max_width and max_height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.error
import numpy
from av.container import InputContainer, OutputContainer
from av.filter import Graph
from av.filter.context import FilterContext
from av.video.format import VideoFormat
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from livecut.media.captions import CaptionLayout, CaptionPainter, CaptionSpan

ASPECT_RATIOS = ("9:16", "4:5", "1:1", "16:9", "source")
FITS = ("crop", "pad")
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
CAPTION_MODES = ("burn", "sidecar", "none")
DEFAULT_CRF = 23
DEFAULT_PRESET = "veryfast"
BLUR_SIGMA = 20  # of the pad background, at an eighth of the output's size
MIN_SIDE = 16


class RenderError(RuntimeError):
    """The clip could not be rendered."""


@dataclass(frozen=True, kw_only=True, slots=True)
class OverlaySpec:
    """A watermark: an image placed by position, margin and width (fractions of the
    output's width) at an opacity."""

    image: Path
    ref: str = ""  # what the request named it by: an upload's id, or a configured name
    position: str = "top-right"
    margin: float = 0.03
    width: float = 0.15
    opacity: float = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderSpec:
    aspect_ratio: str = "source"
    fit: Literal["crop", "pad"] = "crop"
    background: str = "blur"  # pad: "blur" or a colour "#rrggbb"
    focus: str | float = "center"  # crop: "center", "auto" or a fraction of the free width
    max_width: int | None = None
    max_height: int | None = None
    fps: float | None = None  # None: the source's
    crf: int | None = DEFAULT_CRF
    bitrate: int | None = None  # bits/s; instead of crf
    preset: str = DEFAULT_PRESET
    captions: str = "sidecar"
    overlay: OverlaySpec | None = None
    renditions: tuple[tuple[int | None, int | None], ...] = ()  # (max_width, max_height)


@dataclass(frozen=True, kw_only=True, slots=True)
class Geometry:
    source: Size
    crop: Size  # the window taken from the source (crop), or the source (pad)
    output: Size
    inner: Size  # pad: the source scaled into the output; crop: the output


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendered:
    path: Path
    size: Size
    frames: int


@dataclass(kw_only=True, slots=True)
class RenderJob:
    """One render: a source clip, its outputs, and what goes over the picture."""

    source: Path
    outputs: Sequence[tuple[Path, Size]]  # the first is the main output
    geometry: Geometry
    spec: RenderSpec
    frames: int  # presented frames of the source (its edit list's)
    duration_s: float
    captions: Sequence[CaptionSpan] = ()
    focus_x: Callable[[float], float] | None = None  # auto: crop's left edge at time t
    progress: Callable[[float], None] = field(default=lambda done: None)


def aspect_fraction(aspect_ratio: str, source: Size) -> Fraction:
    if aspect_ratio == "source":
        return Fraction(source.width, source.height)
    width, height = aspect_ratio.split(":")
    return Fraction(int(width), int(height))


def geometry(
    source: Size, spec: RenderSpec, limits: tuple[int | None, int | None] = (None, None)
) -> Geometry:
    """The crop window, output size and (pad) inner size of a render."""
    aspect = aspect_fraction(spec.aspect_ratio, source)
    if spec.aspect_ratio == "source":
        output = Size(width=_even(source.width), height=_even(source.height))
    else:
        short = min(source.width, source.height)
        if aspect < 1:
            output = Size(width=_even(short), height=_even(round(short / aspect)))
        else:
            output = Size(width=_even(round(short * aspect)), height=_even(short))
    max_width = limits[0] if limits[0] is not None else spec.max_width
    max_height = limits[1] if limits[1] is not None else spec.max_height
    output = _fit_within(output, max_width, max_height)
    if spec.fit == "pad":
        inner = _fit_within(output, None, None, into=source)
        return Geometry(source=source, crop=source, output=output, inner=inner)
    if Fraction(source.width, source.height) > aspect:
        crop = Size(width=_even(round(source.height * aspect)), height=_even(source.height))
    else:
        crop = Size(width=_even(source.width), height=_even(round(source.width / aspect)))
    return Geometry(source=source, crop=crop, output=output, inner=output)


def _fit_within(
    size: Size, max_width: int | None, max_height: int | None, *, into: Size | None = None
) -> Size:
    """`size` scaled down to fit the limits; with `into`, `into` scaled to fit `size`."""
    if into is not None:
        scale = min(size.width / into.width, size.height / into.height)
        return Size(
            width=max(MIN_SIDE, _even(round(into.width * scale))),
            height=max(MIN_SIDE, _even(round(into.height * scale))),
        )
    scale = 1.0
    if max_width is not None:
        scale = min(scale, max_width / size.width)
    if max_height is not None:
        scale = min(scale, max_height / size.height)
    if scale >= 1.0:
        return size
    return Size(
        width=max(MIN_SIDE, _even(math.floor(size.width * scale))),
        height=max(MIN_SIDE, _even(math.floor(size.height * scale))),
    )


def _even(value: float) -> int:
    number = int(value)
    return number - number % 2


def overlay_image(spec: OverlaySpec, output: Size) -> tuple[Image.Image, int, int]:
    """The watermark scaled to its width fraction at its opacity, and where it goes."""
    with Image.open(spec.image) as opened:
        image = opened.convert("RGBA")
    width = max(2, round(output.width * spec.width))
    height = max(2, round(image.height * width / image.width))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    if spec.opacity < 1.0:
        alpha = image.getchannel("A").point(lambda a: round(a * spec.opacity))
        image.putalpha(alpha)
    margin = round(output.width * spec.margin)
    x = {"left": margin, "right": output.width - width - margin}
    y = {"top": margin, "bottom": output.height - height - margin}
    if spec.position == "center":
        return image, (output.width - width) // 2, (output.height - height) // 2
    vertical, horizontal = spec.position.split("-")
    return image, max(0, x[horizontal]), max(0, y[vertical])


class _Graph:
    """The filter graph of one render: video in; the main output and each extra size out."""

    def __init__(self, job: RenderJob, video: VideoStream, time_base: Fraction) -> None:
        self.job = job
        self.time_base = time_base
        self.last_s = -math.inf  # the last frame pushed in (the fps filter only drops)
        geo = job.geometry
        graph = Graph()
        graph.threads = 0
        self.graph = graph
        self.source = graph.add_buffer(template=video, time_base=time_base)
        last = self._frame(self.source, geo)
        if job.spec.fps is not None:
            last = self._link(last, graph.add("fps", f"fps={_rate(job.spec.fps)}"))
        self.overlay_source: FilterContext | None = None
        self.overlay_frame: VideoFrame | None = None
        if job.spec.overlay is not None:
            image, x, y = overlay_image(job.spec.overlay, geo.output)
            self.overlay_source = graph.add_buffer(
                width=image.width,
                height=image.height,
                format=VideoFormat("rgba"),
                time_base=time_base,
            )
            self.overlay_frame = _rgba_frame(image)
            last = self._over(last, self.overlay_source, x, y)
        self.caption_source: FilterContext | None = None
        self.caption_overlay: FilterContext | None = None
        self.painter: CaptionPainter | None = None
        self._captions = list(job.captions)
        # The caption strip is blended only while a caption shows (timeline "enable"):
        # a blank strip blended over every frame would cost as much as a shown one.
        self._shown = [(span.start_s, bool(span.text)) for span in job.captions]
        self._showing: bool | None = None
        if self._captions:
            layout = CaptionLayout.for_frame(geo.output.width, geo.output.height)
            self.painter = CaptionPainter(layout)
            self.caption_source = graph.add_buffer(
                width=layout.width,
                height=layout.strip_height,
                format=VideoFormat("rgba"),
                time_base=time_base,
            )
            last = self._over(last, self.caption_source, 0, layout.strip_y)
            self.caption_overlay = last
        last = self._link(last, graph.add("format", "pix_fmts=yuv420p"))
        self.sinks: list[FilterContext] = []
        sizes = [size for _, size in job.outputs]
        if len(sizes) > 1:
            split = self._link(last, graph.add("split", str(len(sizes))))
            for n, size in enumerate(sizes):
                branch: FilterContext = split
                if size != geo.output:
                    scale = graph.add("scale", f"w={size.width}:h={size.height}:flags=bicubic")
                    split.link_to(scale, n, 0)
                    branch = scale
                    sink = graph.add("buffersink")
                    branch.link_to(sink, 0, 0)
                else:
                    sink = graph.add("buffersink")
                    split.link_to(sink, n, 0)
                self.sinks.append(sink)
        else:
            sink = graph.add("buffersink")
            last.link_to(sink, 0, 0)
            self.sinks.append(sink)
        graph.configure()
        self.crop: FilterContext | None = getattr(self, "crop", None)
        if self.overlay_source is not None and self.overlay_frame is not None:
            self.overlay_frame.pts = 0
            self.overlay_frame.time_base = time_base
            self.overlay_source.push(self.overlay_frame)
            self.overlay_source.push(None)  # shown over every frame (repeated after its end)

    def _link(self, a: FilterContext, b: FilterContext) -> FilterContext:
        a.link_to(b, 0, 0)
        return b

    def _over(self, under: FilterContext, source: FilterContext, x: int, y: int) -> FilterContext:
        # Blended in 4:2:0, as the output is: "auto" would pick a format for the RGBA
        # image and convert every frame of the picture to it and back (several times
        # slower than the encoder at 1080x1920).
        overlay = self.graph.add("overlay", f"x={x}:y={y}:format=yuv420:eof_action=repeat")
        under.link_to(overlay, 0, 0)
        source.link_to(overlay, 0, 1)
        return overlay

    def _frame(self, source: FilterContext, geo: Geometry) -> FilterContext:
        graph = self.graph
        out = geo.output
        spec = self.job.spec
        if spec.fit == "pad":
            inner = graph.add("scale", f"w={geo.inner.width}:h={geo.inner.height}:flags=bicubic")
            if spec.background == "blur":
                split = graph.add("split", "2")
                source.link_to(split, 0, 0)
                small = Size(
                    width=max(MIN_SIDE, _even(out.width // 8)),
                    height=max(MIN_SIDE, _even(out.height // 8)),
                )
                cover = graph.add(
                    "scale",
                    f"w={small.width}:h={small.height}:force_original_aspect_ratio=increase:flags=fast_bilinear",
                )
                crop = graph.add("crop", f"w={small.width}:h={small.height}")
                blur = graph.add("gblur", f"sigma={BLUR_SIGMA / 8:g}")
                up = graph.add("scale", f"w={out.width}:h={out.height}:flags=bilinear")
                split.link_to(cover, 0, 0)
                self._link(self._link(self._link(cover, crop), blur), up)
                split.link_to(inner, 1, 0)
                left = (out.width - geo.inner.width) // 2
                top = (out.height - geo.inner.height) // 2
                place = graph.add("overlay", f"x={left}:y={top}")
                up.link_to(place, 0, 0)
                inner.link_to(place, 0, 1)
                return place
            source.link_to(inner, 0, 0)
            colour = spec.background.lstrip("#")
            pad = graph.add(
                "pad",
                f"w={out.width}:h={out.height}:x=(ow-iw)/2:y=(oh-ih)/2:color=0x{colour}",
            )
            return self._link(inner, pad)
        x = self._crop_x(0.0)
        y = (geo.source.height - geo.crop.height) // 2
        crop = graph.add("crop", f"w={geo.crop.width}:h={geo.crop.height}:x={x}:y={y}:exact=1")
        source.link_to(crop, 0, 0)
        self.crop = crop
        last = crop
        if geo.crop != out:
            last = self._link(
                crop, graph.add("scale", f"w={out.width}:h={out.height}:flags=bicubic")
            )
        return last

    def _crop_x(self, t: float) -> int:
        geo = self.job.geometry
        free = geo.source.width - geo.crop.width
        focus = self.job.spec.focus
        if self.job.focus_x is not None:
            x = self.job.focus_x(t)
        elif isinstance(focus, float):
            x = focus * free
        else:
            x = free / 2
        return _even(min(max(0.0, x), free))

    def push(self, frame: VideoFrame, t: float) -> None:
        if self.crop is not None and self.job.focus_x is not None:
            self.crop.process_command("x", str(self._crop_x(t)))
        if self.caption_source is not None:
            self._captions_until(t)
        if self.caption_overlay is not None:
            while len(self._shown) > 1 and self._shown[1][0] <= t + 1e-6:
                self._shown.pop(0)
            showing = bool(self._shown) and self._shown[0][1]
            if showing != self._showing:
                self.caption_overlay.process_command("enable", "1" if showing else "0")
                self._showing = showing
        self.last_s = max(self.last_s, t)
        self.source.push(frame)

    def _captions_until(self, t: float) -> None:
        """Push caption strips through the first that starts after t: the overlay knows
        then which strip covers t (and holds no more than two)."""
        assert self.caption_source is not None and self.painter is not None
        while self._captions and self._captions[0].start_s <= t + 1e-6:
            self._push_caption(self._captions.pop(0))
        if self._captions and self._captions[0].start_s < self.job.duration_s:
            self._push_caption(self._captions.pop(0))
        elif self.caption_source is not None:
            # Nothing changes before the end: a strip stamped after the last frame would
            # make the overlay repeat that frame at the strip's time.
            self.caption_source.push(None)
            self.caption_source = None

    def _push_caption(self, span: CaptionSpan) -> None:
        assert self.caption_source is not None and self.painter is not None
        image = self.painter.draw(span.text) if span.text else self.painter.blank()
        strip = _rgba_frame(image)
        strip.pts = round(span.start_s / self.time_base)
        strip.time_base = self.time_base
        self.caption_source.push(strip)

    def end(self) -> None:
        if self.caption_source is not None:
            self.caption_source.push(None)
            self.caption_source = None
        self.source.push(None)


def _rgba_frame(image: Image.Image) -> VideoFrame:
    return VideoFrame.from_ndarray(numpy.asarray(image.convert("RGBA")), format="rgba")


def _rate(fps: float) -> str:
    rate = Fraction(fps).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"


def render_mp4(job: RenderJob) -> list[Rendered]:
    """Render the job's outputs; blocking, run it in a thread. Each output is written to
    a temporary name and renamed when whole."""
    parts = [path.with_name(path.name + ".part") for path, _ in job.outputs]
    try:
        with av.open(str(job.source), mode="r") as source:
            rendered = _render(job, source, parts)
        for part, (path, _) in zip(parts, job.outputs, strict=True):
            part.replace(path)
        return rendered
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise RenderError(f"render failed: {exc}") from exc
    finally:
        for part in parts:
            part.unlink(missing_ok=True)


def _render(job: RenderJob, source: InputContainer, parts: Sequence[Path]) -> list[Rendered]:
    video = next((s for s in source.streams if isinstance(s, VideoStream)), None)
    if video is None:
        raise RenderError("the clip has no video to render")
    audio = next((s for s in source.streams if s.type == "audio"), None)
    video.thread_type = "AUTO"
    time_base = video.time_base or Fraction(1, 90_000)
    graph = _Graph(job, video, time_base)
    outs: list[OutputContainer] = []
    encoders: list[Any] = []
    audio_outs: list[Any] = []
    rate = Fraction(job.spec.fps).limit_denominator(1001) if job.spec.fps else video.average_rate
    try:
        for part, (_, size) in zip(parts, job.outputs, strict=True):
            out = av.open(str(part), mode="w", format="mp4")
            outs.append(out)
            encoder = out.add_stream("libx264", rate=rate or Fraction(30))
            encoder.width, encoder.height = size.width, size.height
            encoder.pix_fmt = "yuv420p"
            encoder.time_base = time_base
            encoder.codec_context.thread_count = 0
            # PyAV's default (slices) would make x264 split each frame across threads:
            # frame threads, as the ffmpeg CLI uses, keep both cores busier.
            encoder.codec_context.thread_type = "AUTO"
            options: dict[str, object] = {"preset": job.spec.preset}
            if job.spec.bitrate is not None:
                encoder.bit_rate = job.spec.bitrate
                options["maxrate"] = str(job.spec.bitrate * 3 // 2)
                options["bufsize"] = str(job.spec.bitrate * 2)
            else:
                options["crf"] = str(job.spec.crf if job.spec.crf is not None else DEFAULT_CRF)
            encoder.options = options
            encoders.append(encoder)
            audio_outs.append(None if audio is None else out.add_stream_from_template(audio))
        counts = [0] * len(outs)
        end_ticks = job.duration_s / time_base
        shown = 0

        last_s = [-math.inf] * len(outs)

        def drain() -> None:
            for n, sink in enumerate(graph.sinks):
                while True:
                    try:
                        frame = sink.pull()
                    except (BlockingIOError, av.error.EOFError):
                        break
                    at = frame.time
                    if at is None or not last_s[n] < at <= graph.last_s + 1e-6:
                        continue  # no frame twice, none after the last (an overlay's flush)
                    last_s[n] = at
                    for packet in encoders[n].encode(frame):
                        outs[n].mux(packet)
                    counts[n] += 1

        streams = [video] if audio is None else [video, audio]
        # demux() ends with an empty packet per stream, which flushes the decoder.
        for packet in source.demux(*streams):
            if packet.stream is audio:
                if packet.dts is None:
                    continue
                for n, out in enumerate(outs):
                    copy = packet if n == len(outs) - 1 else av.Packet(bytes(packet))
                    if copy is not packet:
                        copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
                        copy.is_keyframe = packet.is_keyframe
                    copy.stream = audio_outs[n]
                    copy.time_base = packet.time_base
                    out.mux(copy)
                continue
            for frame in video.decode(packet):
                if frame.pts is None or frame.pts < 0 or frame.pts >= end_ticks - 0.5:
                    continue  # pre-roll and trailing references: decoded, not shown
                frame.pict_type = av.video.frame.PictureType.NONE
                graph.push(frame, float(frame.pts * time_base))
                shown += 1
                drain()
                job.progress(shown / max(1, job.frames))
        graph.end()
        drain()
        for n, encoder in enumerate(encoders):
            for packet in encoder.encode(None):
                outs[n].mux(packet)
    finally:
        for out in outs:
            out.close()
    if shown != job.frames:
        raise RenderError(f"decoded {shown} frames of the clip, expected {job.frames}")
    return [
        Rendered(path=path, size=size, frames=count)
        for (path, size), count in zip(job.outputs, counts, strict=True)
    ]
