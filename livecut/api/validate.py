"""Request validation: JSON bodies in, typed requests or a list of precise errors out."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from livecut.api.render import parse_render
from livecut.clips.jobs import FORMATS, VERIFY_MODES, ClipRequest, Window

MIN_CLIP_MS = 500
MAX_WINDOWS = 10
ACCURACIES = ("frame", "keyframe")
CLIP_FIELDS = (
    "stream",
    "session",
    "start_ms",
    "end_ms",
    "windows",
    "name",
    "accuracy",
    "formats",
    "rendition",
    "reencode_edges",
    "faststart",
    "render",
    "start_offset_ms",
    "end_offset_ms",
    "passthrough",
    "callback_url",
    "callback_id",
    "verify",
    "generate_shots",
)
NAME_MAX = 200
TEXT_MAX = 255  # passthrough, callback_id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,18}")
_SIGNED_DIGITS = re.compile(r"-?[0-9]{1,18}")
# Unix ms between 2000-01-01 and 2100-01-01: catches seconds or microseconds sent by mistake.
EARLIEST_MS = 946_684_800_000
LATEST_MS = 4_102_444_800_000


class Invalid(ValueError):
    def __init__(self, errors: list[str], status: int = 422) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status
        self.headers: dict[str, str] = {}


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipLimits:
    now_ms: int
    max_duration_ms: int
    max_wait_ms: int
    offsets_from_ms: int | None = None  # the session's start, when offsets are allowed


@dataclass(frozen=True, kw_only=True, slots=True)
class Extras:
    """What a clip request carries besides the cut: checked by the caller's own rules."""

    check_callback_url: Callable[[object], str] = field(default=lambda url: str(url))
    overlay_exists: Callable[[str], bool] = field(default=lambda overlay_id: False)


def clip_request(
    body: object,
    *,
    streams: Collection[str],
    session_owner: Callable[[str], str | None],
    limits: ClipLimits,
    session_start: Callable[[str], int | None] = lambda _: None,
    extras: Extras | None = None,
) -> ClipRequest:
    """Validate a POST /v1/clips body; `session_owner` gives a session's stream, or None."""
    if not isinstance(body, dict):
        raise Invalid(["the body must be a JSON object"], status=400)
    errors: list[str] = []
    unknown = sorted(set(body) - set(CLIP_FIELDS))
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(CLIP_FIELDS)}")
    body = _offsets(body, session_start, limits, errors)
    windows = _windows(body, limits, errors)
    name = body.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > NAME_MAX or _CONTROL.search(name)
    ):
        errors.append(
            f"name must be a string of at most {NAME_MAX} characters without control characters"
        )
    meta = _meta(body, extras or Extras(), errors)
    accuracy = body.get("accuracy", "frame")
    if accuracy not in ACCURACIES:
        errors.append(f"accuracy must be one of {', '.join(ACCURACIES)}, not {accuracy!r}")
    formats = _formats(body.get("formats", ["mp4"]), errors)
    rendition = body.get("rendition", "best")
    if not isinstance(rendition, str) or not rendition:
        errors.append('rendition must be a rendition name (see GET /v1/sessions/{id}) or "best"')
    reencode_edges = body.get("reencode_edges", False)
    if not isinstance(reencode_edges, bool):
        errors.append(f"reencode_edges must be true or false, not {reencode_edges!r}")
    faststart = body.get("faststart", False)
    if not isinstance(faststart, bool):
        errors.append(f"faststart must be true or false, not {faststart!r}")
    render = parse_render(
        body.get("render"), errors, overlay_exists=(extras or Extras()).overlay_exists
    )
    verify = body.get("verify", "structure")
    if verify not in VERIFY_MODES:
        errors.append(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
    stream_id, session_id = _target(body, streams, session_owner, errors)
    if errors:
        only_unknown = len(errors) == 1 and errors[0].startswith(
            ("unknown stream", "unknown session")
        )
        raise Invalid(errors, status=404 if only_unknown else 422)
    assert stream_id is not None and windows
    return ClipRequest(
        stream_id=stream_id,
        session_id=session_id,
        windows=tuple(windows),
        name=name if isinstance(name, str) else None,
        accuracy="keyframe" if accuracy == "keyframe" else "frame",
        formats=tuple(formats),
        rendition=rendition if isinstance(rendition, str) else "best",
        reencode_edges=reencode_edges is True,
        faststart=faststart is True,
        render=render,
        meta=meta or None,
        verify="decode" if verify == "decode" else "structure",
    )


def _meta(body: Mapping[str, object], extras: Extras, errors: list[str]) -> dict[str, object]:
    meta: dict[str, object] = {}
    passthrough = _short_text(body, "passthrough", errors)
    if passthrough is not None:
        meta["passthrough"] = passthrough
    meta.update(callback_fields(body, extras, errors))
    shots = body.get("generate_shots", False)
    if not isinstance(shots, bool):
        errors.append(f"generate_shots must be true or false, not {short(shots)}")
    elif shots:
        meta["generate_shots"] = True  # a shots job starts once the clip is cut
    return meta


def _offsets(
    body: dict[str, object],
    session_start: Callable[[str], int | None],
    limits: ClipLimits,
    errors: list[str],
) -> dict[str, object]:
    """start_offset_ms/end_offset_ms from a session's start, as start_ms/end_ms."""
    if "start_offset_ms" not in body and "end_offset_ms" not in body:
        return body
    if "start_ms" in body or "end_ms" in body or "windows" in body:
        errors.append("give start_offset_ms/end_offset_ms or start_ms/end_ms/windows, not both")
        return body
    session = body.get("session")
    start = session_start(session) if isinstance(session, str) else None
    if start is None:
        start = limits.offsets_from_ms
    if start is None:
        errors.append("start_offset_ms and end_offset_ms need a session (offsets from its start)")
        return body
    out = {k: v for k, v in body.items() if k not in ("start_offset_ms", "end_offset_ms")}
    for key in ("start_offset_ms", "end_offset_ms"):
        if key not in body:
            continue
        offset = _whole(body[key])
        if offset is None or not 0 <= offset <= LATEST_MS - EARLIEST_MS:
            errors.append(f"{key} must be a whole number of milliseconds >= 0, not {body[key]!r}")
            return body
        out[key.replace("_offset", "")] = start + offset
    if "start_ms" not in out:
        out["start_ms"] = start
    return out


def _whole(value: object) -> int | None:
    """An integer, or a float with no fraction (as JSON from JavaScript often has)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return None


def _windows(body: Mapping[str, object], limits: ClipLimits, errors: list[str]) -> list[Window]:
    raw = body.get("windows")
    if raw is None:
        window = _window(body, "", limits, errors)
        return [] if window is None else [window]
    if "start_ms" in body or "end_ms" in body:
        errors.append("give either start_ms and end_ms, or windows, not both")
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_WINDOWS:
        errors.append(
            f"windows must be a list of 1 to {MAX_WINDOWS} objects "
            '{"start_ms": ..., "end_ms": ..., "label": ...}'
        )
        return []
    windows: list[Window] = []
    for n, item in enumerate(raw):
        where = f"windows[{n}]."
        if not isinstance(item, dict):
            errors.append(f"windows[{n}] must be an object with start_ms, end_ms and label")
            continue
        extra = sorted(set(item) - {"start_ms", "end_ms", "label"})
        if extra:
            errors.append(
                f"{where[:-1]}: unknown field(s) {', '.join(extra)}; allowed: "
                "start_ms, end_ms, label"
            )
        window = _window(item, where, limits, errors)
        if window is not None:
            windows.append(window)
    return windows


def _window(
    body: Mapping[str, object], where: str, limits: ClipLimits, errors: list[str]
) -> Window | None:
    start = _unix_ms(body, "start_ms", errors, where)
    # No end: up to now (a live clip waits for the live edge to reach it).
    end = _unix_ms(body, "end_ms", errors, where) if "end_ms" in body else limits.now_ms
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > NAME_MAX):
        errors.append(f"{where}label must be a string of at most {NAME_MAX} characters")
        label = None
    if start is None or end is None:
        return None
    length = end - start
    if length <= 0:
        errors.append(f"{where}end_ms ({end}) must be after {where}start_ms ({start})")
        return None
    if length < MIN_CLIP_MS:
        errors.append(f"{where}the range is {length} ms; a clip must be at least {MIN_CLIP_MS} ms")
        return None
    if length > limits.max_duration_ms:
        errors.append(
            f"{where}the range is {length} ms; a clip may be at most {limits.max_duration_ms} ms"
            " (clips.max_duration)"
        )
        return None
    ahead = end - limits.now_ms
    if ahead > limits.max_wait_ms:
        errors.append(
            f"{where}end_ms is {ahead} ms in the future; a clip waits at most "
            f"{limits.max_wait_ms} ms for the live edge (clips.max_wait)"
        )
        return None
    return Window(start_ms=start, end_ms=end, label=label if isinstance(label, str) else None)


def _formats(value: object, errors: list[str]) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or any(f not in FORMATS for f in value)
        or len(set(value)) != len(value)
    ):
        errors.append(
            f"formats must be a non-empty list of distinct values from {', '.join(FORMATS)}"
        )
        return []
    return [str(f) for f in value]


def _unix_ms(
    body: Mapping[str, object], key: str, errors: list[str], where: str = ""
) -> int | None:
    key = f"{where}{key}"
    name = key.rsplit(".", 1)[-1]
    if name not in body:
        errors.append(f"{key} is required: an integer Unix time in milliseconds")
        return None
    value = _whole(body[name])
    if value is None:
        shown = repr(body[name])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        errors.append(f"{key} must be an integer Unix time in milliseconds, not {shown}")
        return None
    if not EARLIEST_MS <= value <= LATEST_MS:
        errors.append(
            f"{key} {value} is not a Unix time in milliseconds between "
            f"{EARLIEST_MS} (2000) and {LATEST_MS} (2100)"
        )
        return None
    return value


def _target(
    body: Mapping[str, object],
    streams: Collection[str],
    session_owner: Callable[[str], str | None],
    errors: list[str],
) -> tuple[str | None, str | None]:
    stream = body.get("stream")
    session = body.get("session")
    if stream is None and session is None:
        errors.append("one of stream or session is required")
        return None, None
    if stream is not None and not isinstance(stream, str):
        errors.append("stream must be a string (a stream id)")
        return None, None
    if session is not None and not isinstance(session, str):
        errors.append("session must be a string (a session id)")
        return None, None
    if session is not None:
        owner = session_owner(session)
        if owner is None:
            errors.append(f"unknown session {session!r}")
            return None, None
        if stream is not None and stream != owner:
            errors.append(f"session {session!r} belongs to stream {owner!r}, not {stream!r}")
            return None, None
        return owner, session
    assert isinstance(stream, str)
    if stream not in streams:
        known = ", ".join(sorted(streams)) or "none configured"
        errors.append(f"unknown stream {stream!r}; known streams: {known}")
        return None, None
    return stream, None


def page_limit(raw: str | None, *, default: int = 50, maximum: int = 500) -> int:
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise Invalid(
            [f"limit must be an integer from 1 to {maximum}, not {short(raw)}"], status=400
        )
    return int(raw)


def query_int(raw: str, key: str, *, signed: bool = True) -> int:
    """An ASCII integer of at most 18 digits from a query string or path (fits SQLite)."""
    pattern = _SIGNED_DIGITS if signed else _DIGITS
    if not pattern.fullmatch(raw):
        raise Invalid(
            [f"{key} must be an integer of at most 18 digits, not {short(raw)}"], status=400
        )
    return int(raw)


def optional_query_int(
    query: Mapping[str, str], key: str, bounds: tuple[int, int], unit: str = ""
) -> int | None:
    """A non-negative integer query parameter within bounds, or None when absent."""
    raw = query.get(key)
    if raw is None:
        return None
    low, high = bounds
    value = query_int(raw, key, signed=False)
    if not low <= value <= high:
        raise Invalid([f"{key} must be from {low} to {high}{unit}, not {value}"], status=400)
    return value


def short(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def check_query(query: Mapping[str, str], allowed: Collection[str]) -> None:
    """Unknown query parameters are a 400, not silently ignored."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        shown = ", ".join(short(u) for u in unknown[:5])
        allowed_text = ", ".join(allowed) or "none"
        raise Invalid([f"unknown query parameter(s) {shown}; allowed: {allowed_text}"], status=400)


def callback_fields(
    body: Mapping[str, object], extras: Extras, errors: list[str]
) -> dict[str, str]:
    """callback_url (checked: http(s), public unless allowed, a secret to sign with) and
    callback_id, for any job that reports by webhook; problems go to `errors`."""
    fields: dict[str, str] = {}
    callback_id = _short_text(body, "callback_id", errors)
    if callback_id is not None:
        fields["callback_id"] = callback_id
    if body.get("callback_url") is not None:
        try:
            fields["callback_url"] = extras.check_callback_url(body["callback_url"])
        except ValueError as exc:
            errors.append(str(exc))
    elif "callback_id" in fields:
        errors.append("callback_id is sent with webhooks to callback_url; give callback_url too")
    return fields


def _short_text(body: Mapping[str, object], key: str, errors: list[str]) -> str | None:
    """An optional string field of at most TEXT_MAX characters (None if absent or bad)."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > TEXT_MAX:
        errors.append(f"{key} must be a string of at most {TEXT_MAX} characters")
        return None
    return value
