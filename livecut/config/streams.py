"""The [[streams]], [ingest] and [overlays] sections: what is recorded and how."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from livecut import __version__
from livecut.config.values import (
    _CONTROL,
    _DAY,
    _MINUTE,
    _STREAM_ID,
    _STREAM_ID_HINT,
    _URL_HINT,
    ConfigError,
    _join_key,
    _parse_file_path,
    _parse_headers,
    _parse_http_url,
    _parse_int,
    _Section,
    _show,
)
from livecut.hls.playlist import RenditionFilter

# "best", "all", or filters of which any may match.
RenditionSpec = Literal["best", "all"] | tuple[RenditionFilter, ...]
_OVERLAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OVERLAY_MAX_SIDE: Final = 4096
_INGEST_KEYS: Final = (
    "max_concurrent_downloads",
    "segment_timeout",
    "playlist_timeout",
    "user_agent",
    "max_segment_bytes",
    "segment_workers",
    "max_buffered_bytes",
)
_STREAM_KEYS: Final = (
    "id",
    "url",
    "retention",
    "session_gap",
    "headers",
    "enabled",
    "renditions",
    "playback_id",
    "shots",
)
_FILTER_KEYS: Final = ("max_height", "min_height", "max_bandwidth", "name")
_RENDITIONS_HINT: Final = (
    'use "best", "all", or a list of filters like [{ max_height = 720 }, { name = "audio-aud-en" }]'
    f" with keys {', '.join(_FILTER_KEYS)}"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestConfig:
    """How the recorders talk to origins."""

    max_concurrent_downloads: int
    segment_timeout_s: float
    playlist_timeout_s: float
    user_agent: str
    max_segment_bytes: int = 64 * 1024 * 1024
    segment_workers: int = 4  # processes that write and probe new segments; 0: threads
    max_buffered_bytes: int = 64 * 1024 * 1024  # segment bytes read and not yet staged


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamConfig:
    """One configured source."""

    id: str
    url: str
    retention_s: float
    session_gap_s: float
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # may carry credentials
    enabled: bool
    renditions: RenditionSpec = "best"  # which renditions of a master playlist to record
    playback_id: str | None = None  # an alias for the Livepeer-compatible API
    shots: bool = False  # detect shot boundaries on the live recording as segments arrive

    def headers_dict(self) -> dict[str, str]:
        """The extra request headers, in file order."""
        return dict(self.headers)


def parse_stream(data: Mapping[str, object], *, key: str = "") -> StreamConfig:
    """Check one stream table (e.g. a JSON body of the API); `key` prefixes error paths."""
    errors: list[str] = []
    stream = _read_stream(_Section(data, key, errors))
    if errors:
        raise ConfigError(errors)
    return stream


def _read_streams(value: object, errors: list[str]) -> tuple[StreamConfig, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        errors.append(
            "streams: a single table is not an array of tables; "
            "write each stream as a [[streams]] block"
        )
        return ()
    if not isinstance(value, list | tuple):
        errors.append(
            f"streams: {_show(value)} is not an array of tables; "
            "write each stream as a [[streams]] block"
        )
        return ()
    streams: list[StreamConfig] = []
    first_use: dict[str, str] = {}
    for index, item in enumerate(value):
        key = f"streams[{index}]"
        if not isinstance(item, Mapping):
            errors.append(
                f"{key}: {_show(item)} is not a table; write each stream as a [[streams]] block"
            )
            continue
        section = _Section(item, key, errors)
        stream = _read_stream(section)
        if section.valid("id") and "id" in item:
            if stream.id in first_use:
                errors.append(
                    f"{key}.id: {_show(stream.id)} is already used by {first_use[stream.id]}; "
                    "stream ids must be unique"
                )
            else:
                first_use[stream.id] = key
        streams.append(stream)
    return tuple(streams)


def _read_stream(section: _Section) -> StreamConfig:
    section.check_keys(_STREAM_KEYS, "[[streams]]")
    stream_id = section.read("id", "", _parse_stream_id)
    if "id" not in section.data:
        section.errors.append(f"{section.key('id')}: required; {_STREAM_ID_HINT}")
    url = section.read("url", "", _parse_stream_url)
    if "url" not in section.data:
        section.errors.append(
            f"{section.key('url')}: required; {_URL_HINT} of a master or media playlist"
        )
    retention = section.duration("retention", _DAY, low=_MINUTE, allowed="of at least 1m")
    session_gap = section.duration("session_gap", 30.0, low=1.0, allowed="of at least 1s")
    no_headers: tuple[tuple[str, str], ...] = ()
    headers = section.read("headers", no_headers, _parse_headers)
    enabled = section.boolean("enabled", True)
    default_spec: RenditionSpec = "best"
    renditions = section.read("renditions", default_spec, _parse_renditions)
    playback_id = section.read("playback_id", None, _parse_playback_id)
    shots = section.boolean("shots", False)
    return StreamConfig(
        id=stream_id,
        url=url,
        retention_s=retention,
        session_gap_s=session_gap,
        headers=headers,
        enabled=enabled,
        renditions=renditions,
        playback_id=playback_id,
        shots=shots,
    )


def _parse_stream_id(value: object, key: str) -> str:
    if not isinstance(value, str) or not _STREAM_ID.fullmatch(value):
        raise ConfigError([f"{key}: {_show(value)} is not a valid stream id; {_STREAM_ID_HINT}"])
    return value


def _parse_stream_url(value: object, key: str) -> str:
    return _parse_http_url(value, key, " of a master or media playlist")


def _parse_playback_id(value: object, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", value):
        raise ConfigError(
            [f"{key}: {_show(value)} is not a playback id; use 1 to 63 letters, digits, _ or -"]
        )
    return value


def _parse_renditions(value: object, key: str) -> RenditionSpec:
    if value in ("best", "all"):
        return "best" if value == "best" else "all"
    if not isinstance(value, list) or not value:
        raise ConfigError([f"{key}: {_show(value)} is not a rendition choice; {_RENDITIONS_HINT}"])
    filters: list[RenditionFilter] = []
    errors: list[str] = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            errors.append(f"{item_key}: {_show(item)} is not a table; {_RENDITIONS_HINT}")
            continue
        section = _Section(item, item_key, errors)
        section.check_keys(_FILTER_KEYS, "a rendition filter")
        max_height = section.read("max_height", None, _parse_height)
        min_height = section.read("min_height", None, _parse_height)
        max_bandwidth = section.read("max_bandwidth", None, _parse_bandwidth)
        name = section.read("name", None, _parse_filter_name)
        if not item:
            errors.append(f"{item_key}: an empty filter matches everything; {_RENDITIONS_HINT}")
        filters.append(
            RenditionFilter(
                max_height=max_height,
                min_height=min_height,
                max_bandwidth=max_bandwidth,
                name=name,
            )
        )
    if errors:
        raise ConfigError(errors)
    return tuple(filters)


def _parse_height(value: object, key: str) -> int | None:
    return _parse_int(value, key, 1, 100_000)


def _parse_bandwidth(value: object, key: str) -> int | None:
    return _parse_int(value, key, 1, 1 << 40)


def _parse_filter_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError([f"{key}: {_show(value)} is not a rendition name (a non-empty string)"])
    return value


def _read_ingest(section: _Section) -> IngestConfig:
    section.check_keys(_INGEST_KEYS, "[ingest]")
    downloads = section.integer("max_concurrent_downloads", 4, low=1, high=64)
    segment_timeout = section.duration(
        "segment_timeout", 10.0, low=0.1, high=10 * _MINUTE, allowed="from 100ms to 10m"
    )
    playlist_timeout = section.duration(
        "playlist_timeout", 5.0, low=0.1, high=10 * _MINUTE, allowed="from 100ms to 10m"
    )
    user_agent = section.read("user_agent", f"livecut/{__version__}", _parse_user_agent)
    max_segment_bytes = section.integer(
        "max_segment_bytes", 64 * 1024 * 1024, low=1024, high=4 * 1024**3
    )
    segment_workers = section.integer("segment_workers", 4, low=0, high=32)
    max_buffered_bytes = section.integer(
        "max_buffered_bytes", 64 * 1024 * 1024, low=1024 * 1024, high=64 * 1024**3
    )
    return IngestConfig(
        max_concurrent_downloads=downloads,
        segment_timeout_s=segment_timeout,
        playlist_timeout_s=playlist_timeout,
        user_agent=user_agent,
        max_segment_bytes=max_segment_bytes,
        segment_workers=segment_workers,
        max_buffered_bytes=max_buffered_bytes,
    )


def _parse_user_agent(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        raise ConfigError(
            [
                f"{key}: {_show(value)} is not a usable User-Agent; use one line of text like "
                f'"livecut/{__version__}"'
            ]
        )
    return value


def _read_overlays(table: Mapping[str, object], errors: list[str]) -> tuple[tuple[str, Path], ...]:
    """[overlays]: name = image path; each image is opened now, so a render never meets a
    missing or broken one."""
    found: list[tuple[str, Path]] = []
    for name, value in table.items():
        key = _join_key("overlays", name)
        if not _OVERLAY_NAME.fullmatch(name) or name.startswith("ovl_"):
            errors.append(
                f"{key}: an overlay name is 1-64 letters, digits, '.', '_' or '-' "
                "(and does not start with ovl_, which uploaded overlays use)"
            )
            continue
        try:
            path = _parse_file_path(value, key)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        if path is None:
            errors.append(f"{key}: give the path of a PNG or WebP image")
            continue
        problem = _image_problem(path)
        if problem:
            errors.append(f"{key}: {path} {problem}")
            continue
        found.append((name, path))
    return tuple(found)


def _image_problem(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError  # only a config with overlays needs it

    try:
        with Image.open(path, formats=["PNG", "WEBP"]) as image:
            width, height = image.size
            if max(width, height) > OVERLAY_MAX_SIDE:
                return f"is {width}x{height}: at most {OVERLAY_MAX_SIDE} pixels a side"
            image.load()
    except FileNotFoundError:
        return "does not exist"
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return f"cannot be read as a PNG or WebP image ({exc})"
    return None
