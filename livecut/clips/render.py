"""A clip's render step: the copy path's MP4 in, the MP4 (and extra sizes) to post out.

The copy is written first, exact to the frame and checked; the render decodes it and
re-encodes what the request asks (media/render.py), then the copy is removed. What the
caller gets back says what was done: the size, the framing, where captions came from
(or that there were none), the watermark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from livecut.analysis.focus import focus_path
from livecut.media.captions import caption_spans
from livecut.media.cea608 import read_cea608
from livecut.media.remux import Presented
from livecut.media.render import (
    OverlaySpec,
    Rendered,
    RenderJob,
    RenderSpec,
    Size,
    geometry,
    render_mp4,
)
from livecut.media.subtitles import Cue


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderOutcome:
    rendered: list[Rendered]
    body: dict[str, object]  # the result's "render" object
    captions: list[Cue]  # the cues used (from WebVTT, or read from CEA-608), wall-timed


def render_spec(options: Mapping[str, object], overlay_path: Callable[[str], Path]) -> RenderSpec:
    """The spec of api/render.py's normal form."""
    overlay = options.get("overlay")
    focus = options.get("focus", "center")
    renditions = options.get("renditions") or []
    assert isinstance(renditions, list)
    return RenderSpec(
        aspect_ratio=str(options.get("aspect_ratio", "source")),
        fit="pad" if options.get("fit") == "pad" else "crop",
        background=str(options.get("background", "blur")),
        focus=float(focus) if isinstance(focus, int | float) else str(focus),
        max_width=_opt_int(options.get("max_width")),
        max_height=_opt_int(options.get("max_height")),
        fps=float(fps) if isinstance(fps := options.get("fps"), int | float) else None,
        crf=_opt_int(options.get("crf")),
        bitrate=_opt_int(options.get("bitrate")),
        preset=str(options.get("preset", "veryfast")),
        captions=str(options.get("captions", "sidecar")),
        overlay=None
        if not isinstance(overlay, dict)
        else OverlaySpec(
            image=overlay_path(str(overlay["id"])),
            ref=str(overlay["id"]),
            position=str(overlay.get("position", "top-right")),
            margin=float(overlay.get("margin", 0.03)),
            width=float(overlay.get("width", 0.15)),
            opacity=float(overlay.get("opacity", 1.0)),
        ),
        renditions=tuple(
            (_opt_int(r.get("max_width")), _opt_int(r.get("max_height")))
            for r in renditions
            if isinstance(r, dict)
        ),
    )


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def render_clip(
    spec: RenderSpec,
    *,
    copy: Path,
    presented: Presented,
    target: Path,
    cues: Sequence[Cue],
    progress: Callable[[float], None],
) -> RenderOutcome:
    """Render `copy` (the checked copy-path MP4 that `presented` describes) to `target`
    and the spec's extra sizes beside it; blocking work runs in threads."""
    video = next((t for t in presented.tracks if t.kind == "video"), None)
    if video is None or video.width is None or video.height is None:
        raise ValueError("render needs video: the clip has none")
    source = Size(width=video.width, height=video.height)
    main = geometry(source, spec)
    outputs: list[tuple[Path, Size]] = [(target, main.output)]
    for limits in spec.renditions:
        size = geometry(source, spec, limits).output
        if all(size != s for _, s in outputs):
            outputs.append((target.with_name(f"{target.stem}-{size}.mp4"), size))
    caption_source = "webvtt" if cues else None
    if not cues and spec.captions != "none":
        # No WebVTT in the range: captions carried in the video itself, if any.
        found = await asyncio.to_thread(read_cea608, copy, end_s=presented.duration_s)
        cues = [
            Cue(
                start_ms=presented.start_ms + c.start_s * 1000,
                end_ms=presented.start_ms + c.end_s * 1000,
                text=c.text,
            )
            for c in found
        ]
        caption_source = "cea608" if cues else None
    burn = spec.captions == "burn" and bool(cues)
    spans = (
        caption_spans(cues, zero_ms=presented.start_ms, end_s=presented.duration_s) if burn else []
    )
    path = None
    if spec.fit == "crop" and spec.focus == "auto" and main.crop.width < source.width:
        path = await asyncio.to_thread(focus_path, copy, source=source, crop=main.crop)
    # The frame rate is only ever reduced: an fps at or above the source's keeps it.
    fps = spec.fps if spec.fps is not None and video.fps and spec.fps < video.fps else None
    job = RenderJob(
        source=copy,
        outputs=outputs,
        geometry=main,
        spec=replace(spec, fps=fps),
        frames=video.frames,
        duration_s=presented.duration_s,
        captions=spans,
        focus_x=path,
        progress=progress,
    )
    rendered = await asyncio.to_thread(render_mp4, job)
    body: dict[str, object] = {
        "width": main.output.width,
        "height": main.output.height,
        "aspect_ratio": spec.aspect_ratio,
        "fit": spec.fit,
        "focus": spec.focus if spec.fit == "crop" else None,
        "fps": fps if fps is not None else video.fps,
        "frames": rendered[0].frames,
        "video_codec": "h264",
        "preset": spec.preset,
        "crf": spec.crf if spec.bitrate is None else None,
        "bitrate": spec.bitrate,
        "audio": "copied" if any(t.kind == "audio" for t in presented.tracks) else None,
        "captions": {
            "mode": spec.captions,
            "source": caption_source,
            "cues": len(cues),
            **({} if cues else {"note": "no WebVTT subtitles nor CEA-608 captions in this range"}),
        },
        "overlay": None
        if spec.overlay is None
        else {
            "id": spec.overlay.ref,
            "position": spec.overlay.position,
            "width": spec.overlay.width,
            "opacity": spec.overlay.opacity,
        },
    }
    return RenderOutcome(rendered=rendered, body=body, captions=list(cues))
