"""Request validation: JSON bodies in, typed requests or a list of precise errors out."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from livecut.clips.jobs import ClipRequest

MIN_CLIP_MS = 500
CLIP_FIELDS = ("stream", "session", "start_ms", "end_ms", "name")
NAME_MAX = 200
# Unix ms between 2000-01-01 and 2100-01-01: catches seconds or microseconds sent by mistake.
EARLIEST_MS = 946_684_800_000
LATEST_MS = 4_102_444_800_000


class Invalid(ValueError):
    def __init__(self, errors: list[str], *, status: int = 422) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipLimits:
    now_ms: int
    max_duration_ms: int
    max_wait_ms: int


def clip_request(
    body: object,
    *,
    streams: Collection[str],
    session_owner: Callable[[str], str | None],
    limits: ClipLimits,
) -> ClipRequest:
    """Validate a POST /v1/clips body; `session_owner` gives a session's stream, or None."""
    if not isinstance(body, dict):
        raise Invalid(["the body must be a JSON object"], status=400)
    errors: list[str] = []
    unknown = sorted(set(body) - set(CLIP_FIELDS))
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(CLIP_FIELDS)}")
    start = _unix_ms(body, "start_ms", errors)
    end = _unix_ms(body, "end_ms", errors)
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > NAME_MAX):
        errors.append(f"name must be a string of at most {NAME_MAX} characters")
    stream_id, session_id = _target(body, streams, session_owner, errors)
    if start is not None and end is not None:
        length = end - start
        if length <= 0:
            errors.append(f"end_ms ({end}) must be after start_ms ({start})")
        elif length < MIN_CLIP_MS:
            errors.append(f"the range is {length} ms; a clip must be at least {MIN_CLIP_MS} ms")
        elif length > limits.max_duration_ms:
            errors.append(
                f"the range is {length} ms; a clip may be at most {limits.max_duration_ms} ms"
                " (clips.max_duration)"
            )
        ahead = end - limits.now_ms
        if ahead > limits.max_wait_ms:
            errors.append(
                f"end_ms is {ahead} ms in the future; a clip waits at most "
                f"{limits.max_wait_ms} ms for the live edge (clips.max_wait)"
            )
    if errors:
        only_unknown = len(errors) == 1 and errors[0].startswith(
            ("unknown stream", "unknown session")
        )
        status = 404 if only_unknown else 422
        raise Invalid(errors, status=status)
    assert start is not None and end is not None and stream_id is not None
    return ClipRequest(
        stream_id=stream_id,
        session_id=session_id,
        start_ms=start,
        end_ms=end,
        name=name if isinstance(name, str) else None,
    )


def _unix_ms(body: Mapping[str, object], key: str, errors: list[str]) -> int | None:
    if key not in body:
        errors.append(f"{key} is required: an integer Unix time in milliseconds")
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"{key} must be an integer Unix time in milliseconds, not {value!r}")
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
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise Invalid([f"limit must be an integer from 1 to {maximum}, not {raw!r}"], status=400)
    return int(raw)
