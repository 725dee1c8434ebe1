"""The `render` object of a clip, export or highlights request: checked field by field.

What is accepted is kept in the clip's options in normal form (every field present),
so a job cut again after a restart renders exactly as first asked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from livecut.media.render import (
    ASPECT_RATIOS,
    CAPTION_MODES,
    DEFAULT_CRF,
    DEFAULT_PRESET,
    FITS,
    POSITIONS,
    PRESETS,
)

RENDER_FIELDS = (
    "aspect_ratio",
    "fit",
    "background",
    "focus",
    "max_width",
    "max_height",
    "fps",
    "crf",
    "bitrate",
    "preset",
    "captions",
    "overlay",
    "renditions",
)
OVERLAY_FIELDS = ("id", "position", "margin", "width", "opacity")
SIZE_FIELDS = ("max_width", "max_height")
MAX_RENDITIONS = 4
SIDE = (16, 7680)
FPS = (1.0, 120.0)
CRF = (0, 51)
BITRATE = (100_000, 100_000_000)
COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


def parse_render(
    value: object, errors: list[str], *, overlay_exists: Callable[[str], bool]
) -> dict[str, object] | None:
    """The normal form of a `render` object, or None (errors appended) if it is wrong."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append("render must be an object (see the OpenAPI document's RenderOptions)")
        return None
    before = len(errors)
    unknown = sorted(set(value) - set(RENDER_FIELDS))
    if unknown:
        errors.append(
            f"unknown render field(s) {', '.join(unknown)}; allowed: {', '.join(RENDER_FIELDS)}"
        )
    out: dict[str, object] = {
        "aspect_ratio": _choice(value, "aspect_ratio", ASPECT_RATIOS, "source", errors),
        "fit": _choice(value, "fit", FITS, "crop", errors),
        "background": _background(value, errors),
        "focus": _focus(value, errors),
        "max_width": _int(value, "max_width", SIDE, errors),
        "max_height": _int(value, "max_height", SIDE, errors),
        "fps": _number(value, "fps", FPS, errors),
        "preset": _choice(value, "preset", PRESETS, DEFAULT_PRESET, errors),
        "captions": _choice(value, "captions", CAPTION_MODES, "sidecar", errors),
    }
    crf = _int(value, "crf", CRF, errors)
    bitrate = _int(value, "bitrate", BITRATE, errors)
    if crf is not None and bitrate is not None:
        errors.append("render: give crf or bitrate, not both")
    out["crf"] = DEFAULT_CRF if crf is None and bitrate is None else crf
    out["bitrate"] = bitrate
    out["overlay"] = _overlay(value.get("overlay"), errors, overlay_exists)
    out["renditions"] = _renditions(value.get("renditions", []), errors)
    return out if len(errors) == before else None


def _choice(
    body: Mapping[str, object], key: str, allowed: tuple[str, ...], default: str, errors: list[str]
) -> str:
    got = body.get(key, default)
    if got not in allowed:
        errors.append(f"render.{key} must be one of {', '.join(allowed)}, not {got!r}")
        return default
    return str(got)


def _background(body: Mapping[str, object], errors: list[str]) -> str:
    got = body.get("background", "blur")
    if got == "blur" or (isinstance(got, str) and COLOUR.fullmatch(got)):
        return str(got).lower()
    errors.append(f'render.background must be "blur" or a colour "#rrggbb", not {got!r}')
    return "blur"


def _focus(body: Mapping[str, object], errors: list[str]) -> str | float:
    got = body.get("focus", "center")
    if got in ("center", "auto"):
        return str(got)
    if _is_number(got) and 0.0 <= float(got) <= 1.0:  # type: ignore[arg-type]
        return float(got)  # type: ignore[arg-type]
    errors.append(
        f'render.focus must be "center", "auto" or a number from 0 (left) to 1 (right), not {got!r}'
    )
    return "center"


def _int(
    body: Mapping[str, object],
    key: str,
    bounds: tuple[int, int],
    errors: list[str],
    *,
    where: str = "render",
) -> int | None:
    got = _bounded(body, key, bounds, errors, where=where, integer=True)
    return None if got is None else int(got)


def _number(
    body: Mapping[str, object],
    key: str,
    bounds: tuple[float, float],
    errors: list[str],
    *,
    where: str = "render",
) -> float | None:
    return _bounded(body, key, bounds, errors, where=where, integer=False)


def _bounded(
    body: Mapping[str, object],
    key: str,
    bounds: tuple[float, float],
    errors: list[str],
    *,
    where: str,
    integer: bool,
) -> float | None:
    """body[key] if it is a number (an integer, if asked) within bounds; None if absent."""
    got = body.get(key)
    if got is None:
        return None
    kind = "an integer" if integer else "a number"
    if (
        not _is_number(got)
        or (integer and not isinstance(got, int))
        or not bounds[0] <= float(got) <= bounds[1]  # type: ignore[arg-type]
    ):
        low, high = (f"{int(b)}" if integer else f"{b:g}" for b in bounds)
        errors.append(f"{where}.{key} must be {kind} from {low} to {high}, not {got!r}")
        return None
    return float(got)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _overlay(
    value: object, errors: list[str], overlay_exists: Callable[[str], bool]
) -> dict[str, object] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append('render.overlay must be an object such as {"id": "ovl_..."}')
        return None
    unknown = sorted(set(value) - set(OVERLAY_FIELDS))
    if unknown:
        errors.append(
            f"unknown render.overlay field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(OVERLAY_FIELDS)}"
        )
    overlay_id = value.get("id")
    if not isinstance(overlay_id, str) or not overlay_exists(overlay_id):
        errors.append(
            f"render.overlay.id must name an uploaded overlay (POST /v1/overlays) or "
            f"one in the config's [overlays], not {overlay_id!r}"
        )
    position = value.get("position", "top-right")
    if position not in POSITIONS:
        errors.append(
            f"render.overlay.position must be one of {', '.join(POSITIONS)}, not {position!r}"
        )
    where = "render.overlay"
    margin = _number(value, "margin", (0.0, 0.4), errors, where=where)
    width = _number(value, "width", (0.01, 1.0), errors, where=where)
    opacity = _number(value, "opacity", (0.0, 1.0), errors, where=where)
    return {
        "id": overlay_id,
        "position": position,
        "margin": 0.03 if margin is None else margin,
        "width": 0.15 if width is None else width,
        "opacity": 1.0 if opacity is None else opacity,
    }


def _renditions(value: object, errors: list[str]) -> list[dict[str, int | None]]:
    if not isinstance(value, list) or len(value) > MAX_RENDITIONS:
        errors.append(
            f"render.renditions must be a list of at most {MAX_RENDITIONS} sizes such as "
            f'{{"max_height": 1280}}'
        )
        return []
    out: list[dict[str, int | None]] = []
    for n, size in enumerate(value):
        where = f"render.renditions[{n}]"
        if not isinstance(size, dict) or not size or set(size) - set(SIZE_FIELDS):
            errors.append(f"{where} must be an object with max_width and/or max_height")
            continue
        out.append(
            {
                "max_width": _int(size, "max_width", SIDE, errors, where=where),
                "max_height": _int(size, "max_height", SIDE, errors, where=where),
            }
        )
    return out
