"""The readers every config section shares: errors, key paths, numbers, durations, URLs."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

_T = TypeVar("_T")

DURATION_HINT: Final = 'use seconds as a number or a string like "90s", "15m", "24h", "7d"'
SIZE_HINT: Final = 'use bytes as a whole number or a string like "500MB", "2GiB", "1.5TB"'
_SIZE_TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86400.0

_STREAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_STREAM_ID_HINT: Final = (
    'use 1 to 63 lowercase letters, digits, "_" or "-", starting with a letter or digit'
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_URL_HINT: Final = "use an http:// or https:// URL"

_DURATION_TEXT = re.compile(r"(?:\s*[0-9]+(?:\.[0-9]+)?\s*(?:ms|d|h|m|s))+\s*")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|d|h|m|s)")
_UNIT_SECONDS: Final = {"d": _DAY, "h": _HOUR, "m": _MINUTE, "s": 1.0, "ms": 0.001}
_UNIT_ORDER: Final = ("d", "h", "m", "s", "ms")
_TOML_POSITION = re.compile(
    r"^(?P<what>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)


class ConfigError(ValueError):
    """Every mistake found in one config; each message names its key path and the fix."""

    def __init__(self, errors: Sequence[str], *, source: str | None = None) -> None:
        self.errors: list[str] = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(prefix + error for error in self.errors)


class _Section:
    """One table being read: collects errors instead of stopping at the first."""

    def __init__(self, data: Mapping[str, object], path: str, errors: list[str]) -> None:
        self.data = data
        self.path = path
        self.errors = errors
        self._invalid: set[str] = set()

    def key(self, name: str) -> str:
        return _join_key(self.path, name)

    def valid(self, name: str) -> bool:
        return name not in self._invalid

    def check_keys(self, allowed: Sequence[str], where: str) -> None:
        _check_keys(self.data, self.path, allowed, f"in {where}", self.errors)

    def read(self, name: str, default: _T, parse: Callable[[object, str], _T]) -> _T:
        if name not in self.data:
            return default
        try:
            return parse(self.data[name], self.key(name))
        except ConfigError as exc:
            self.errors.extend(exc.errors)
            self._invalid.add(name)
            return default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        return self.read(name, default, lambda value, key: _parse_int(value, key, low, high))

    def boolean(self, name: str, default: bool) -> bool:
        return self.read(name, default, _parse_bool)

    def duration(
        self,
        name: str,
        default: float,
        *,
        low: float,
        high: float | None = None,
        allowed: str,
    ) -> float:
        def parse(value: object, key: str) -> float:
            seconds = parse_duration(value, key=key)
            if seconds < low or (high is not None and seconds > high):
                raise ConfigError(
                    [f"{key}: {_show(value)} is out of range; use a duration {allowed}"]
                )
            return seconds

        return self.read(name, default, parse)


def parse_duration(value: object, *, key: str) -> float:
    """Seconds from a number >= 0 or a string like "500ms", "90s", "1h30m", "7d"."""
    seconds: float | None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        seconds = None
    elif isinstance(value, str):
        seconds = _duration_from_text(value)
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if seconds is None:
        raise ConfigError([f"{key}: {_show(value)} is not a duration; {DURATION_HINT}"])
    if not math.isfinite(seconds):
        raise ConfigError([f"{key}: {_show(value)} is not a finite duration; {DURATION_HINT}"])
    if seconds < 0:
        raise ConfigError([f"{key}: {_show(value)} is negative; {DURATION_HINT}"])
    return seconds


def parse_size(value: object, *, key: str) -> int:
    """Bytes from a whole number >= 0 or a string like "500MB", "2GiB" (SI and binary units)."""
    size: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        match = _SIZE_TEXT.fullmatch(value)
        if match is not None:
            size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size is None:
        raise ConfigError([f"{key}: {_show(value)} is not a size; {SIZE_HINT}"])
    if size < 0:
        raise ConfigError([f"{key}: {_show(value)} is negative; {SIZE_HINT}"])
    return int(size)


def _parse_int(value: object, key: str, low: int, high: int) -> int:
    allowed = f"use a whole number from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError([f"{key}: {_show(value)} is not an integer; {allowed}"])
    if not low <= value <= high:
        raise ConfigError([f"{key}: {value} is out of range; {allowed}"])
    return value


def _parse_bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError([f"{key}: {_show(value)} is not a boolean; use true or false"])
    return value


def _parse_http_url(value: object, key: str, what: str) -> str:
    hint = _URL_HINT + what
    if not isinstance(value, str):
        raise ConfigError([f"{key}: {_show(value)} is not a string; {hint}"])
    if _WHITESPACE_OR_CONTROL.search(value):
        raise ConfigError([f"{key}: {_show(value)} contains spaces or control characters; {hint}"])
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if not scheme or not value.lower().startswith(scheme + "://"):
        raise ConfigError([f"{key}: {_show(value)} is not an absolute URL; {hint}"])
    if scheme not in ("http", "https"):
        raise ConfigError([f"{key}: {_show(value)} has scheme {_show(scheme)}; {hint}"])
    if not parts.hostname:
        raise ConfigError([f"{key}: {_show(value)} has no host; {hint}"])
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(
            [f"{key}: {_show(value)} has an invalid port; {hint} with a port from 1 to 65535"]
        ) from None
    return value


def _parse_headers(value: object, key: str) -> tuple[tuple[str, str], ...]:
    hint = 'use a table of strings, e.g. { Authorization = "Bearer ...", Referer = "..." }'
    if not isinstance(value, Mapping):
        raise ConfigError([f"{key}: {_show(value)} is not a table; {hint}"])
    errors: list[str] = []
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for name, header_value in value.items():
        header_key = _join_key(key, str(name))
        # Header values often carry credentials: describe them, never echo them.
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            errors.append(
                f"{header_key}: not a valid header name; "
                "use letters, digits and !#$%&'*+-.^_`|~ only"
            )
        elif name.lower() in seen:
            errors.append(
                f"{header_key}: the same header as {_join_key(key, seen[name.lower()])} "
                "(header names ignore case); set each header once"
            )
        elif not isinstance(header_value, str):
            errors.append(f"{header_key}: {_kind(header_value)} is not a string; {hint}")
        elif _CONTROL.search(header_value):
            errors.append(
                f"{header_key}: the value contains line breaks or control characters; "
                "use a single line of text"
            )
        else:
            seen[name.lower()] = name
            pairs.append((name, header_value))
    if errors:
        raise ConfigError(errors)
    return tuple(pairs)


def _parse_file_path(value: object, key: str) -> Path | None:
    if value == "":
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise ConfigError([f'{key}: {_show(value)} is not a file path; use a string like "/x.js"'])
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ConfigError(
            [f"{key}: {_show(value)} starts with ~ but the home directory is unknown"]
        ) from None


def _top_table(data: Mapping[str, object], name: str, errors: list[str]) -> Mapping[str, object]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(
            f"{name}: {_show(value)} is not a table; write it as [{name}] followed by its keys"
        )
        return {}
    return value


def _check_keys(
    data: Mapping[str, object],
    path: str,
    allowed: Sequence[str],
    where: str,
    errors: list[str],
) -> None:
    for name in data:
        if name in allowed:
            continue
        close = difflib.get_close_matches(str(name), allowed, n=1)
        suggestion = f' (did you mean "{close[0]}"?)' if close else ""
        errors.append(
            f"{_join_key(path, str(name))}: unknown key{suggestion}; "
            f"allowed keys {where} are {', '.join(allowed)}"
        )


def _join_key(path: str, name: str) -> str:
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _duration_from_text(text: str) -> float | None:
    if not _DURATION_TEXT.fullmatch(text):
        return None
    seconds = 0.0
    previous = -1
    for match in _DURATION_PART.finditer(text):
        rank = _UNIT_ORDER.index(match.group(2))
        if rank <= previous:  # "30s1m" or "1m1m" is more likely a typo than intended
            return None
        previous = rank
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds


def _is_hostname(host: str) -> bool:
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_HOSTNAME_LABEL.fullmatch(label) for label in name.split("."))


def _is_loopback(host: str) -> bool:
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"TOML syntax error: {message}"
    what = match.group("what")
    return f"TOML syntax error at {match.group('where')}: {what[:1].lower()}{what[1:]}"


def _show(value: object) -> str:
    """A value as the user wrote it, in TOML-ish spelling, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"
    return _kind(value)


def _kind(value: object) -> str:
    """What sort of value this is, without showing it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return f"a {type(value).__name__}"
