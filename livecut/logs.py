"""How livecut logs: text or one JSON object per line, and repeated errors summarised."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from dataclasses import dataclass
from typing import Final, TextIO

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else was passed in `extra` and is a field.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the record's extra fields
    (stream, kind, url, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        entry: dict[str, object] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str, *, level: int | None = None, stream: TextIO | None = None) -> None:
    """Point the root logger at stderr (or `stream`) in the given format, replacing handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)


@dataclass(kw_only=True, slots=True)
class _Seen:
    logged_s: float  # when it was last logged
    suppressed: int = 0  # occurrences since then, not logged


class Repeats:
    """Which occurrences of a repeated message to log: the first, then at most one
    summary per interval ("... repeated N times in the last M s")."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._seen: dict[str, _Seen] = {}

    def note(self, message: str, now_s: float) -> str | None:
        """The line to log for this occurrence, or None to keep quiet."""
        seen = self._seen.get(message)
        if seen is None:
            if len(self._seen) >= 64:  # a flood of distinct messages: forget the oldest
                del self._seen[next(iter(self._seen))]
            self._seen[message] = _Seen(logged_s=now_s)
            return message
        seen.suppressed += 1
        if now_s - seen.logged_s < self.interval_s:
            return None
        line = _summary(message, seen, now_s)
        seen.logged_s, seen.suppressed = now_s, 0
        return line

    def flush(self, now_s: float) -> list[str]:
        """Summaries of what was kept quiet since last logged; forgets everything."""
        lines = [_summary(m, seen, now_s) for m, seen in self._seen.items() if seen.suppressed]
        self._seen.clear()
        return lines


def _summary(message: str, seen: _Seen, now_s: float) -> str:
    return f"{message} … repeated {seen.suppressed} times in the last {now_s - seen.logged_s:.0f} s"
