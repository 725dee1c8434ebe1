"""The [server], [clips], [webhooks] and [log] sections: the API, the clip queue, events."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from livecut.config.values import (
    _CONTROL,
    _DAY,
    _HOUR,
    _MINUTE,
    _STREAM_ID,
    _STREAM_ID_HINT,
    _URL_HINT,
    _WHITESPACE_OR_CONTROL,
    ConfigError,
    _is_hostname,
    _is_loopback,
    _kind,
    _parse_file_path,
    _parse_http_url,
    _Section,
    _show,
)

LOG_FORMATS: Final = ("text", "json")
_SERVER_KEYS: Final = (
    "listen",
    "data_dir",
    "api_keys",
    "public_url",
    "cors_origins",
    "playback_secret",
    "hlsjs_path",
)
_MIN_PLAYBACK_SECRET_LENGTH: Final = 32
_API_KEY_KEYS: Final = ("name", "key", "scope")
_WEBHOOKS_KEYS: Final = (
    "endpoints",
    "secret",
    "max_age",
    "timeout",
    "concurrency",
    "allow_private",
)
_ENDPOINT_KEYS: Final = ("name", "url", "secret", "events")
WEBHOOK_EVENTS: Final = (
    "clip.ready",
    "clip.failed",
    "clip.deleted",
    "session.started",
    "session.ended",
    "stream.failing",
    "stream.recovered",
    "shots.ready",
    "highlights.ready",
)
_MIN_SECRET_LENGTH: Final = 16
_CLIPS_KEYS: Final = ("workers", "max_wait", "max_duration", "keep")

_DEFAULT_LISTEN_HOST: Final = "127.0.0.1"
_DEFAULT_LISTEN_PORT: Final = 8080
_DEFAULT_DATA_DIR: Final = "./livecut-data"
_MIN_API_KEY_LENGTH: Final = 16
_LISTEN_HINT: Final = 'use "host:port", e.g. "127.0.0.1:8080", "[::1]:8080" or "localhost:8080"'


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """A named API key; a "read" key may only read, a "write" key may do everything."""

    name: str
    key: str = field(repr=False)
    scope: Literal["read", "write"] = "write"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """The HTTP API: where it listens, where data lives, who may call it."""

    listen_host: str  # an IPv6 address is kept without brackets, ready for bind()
    listen_port: int
    data_dir: Path
    api_keys: tuple[str | ApiKey, ...] = field(repr=False)  # a bare string is a write key
    public_url: str | None  # without a trailing "/"; None means derive it from listen
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API
    # Signs playback URLs and event-stream tokens; None: one made in the data directory.
    playback_secret: str | None = field(default=None, repr=False)
    hlsjs_path: Path | None = None  # hls.min.js for the console; None: looked for (console.py)

    def keys(self) -> tuple[ApiKey, ...]:
        """Every key as an ApiKey; bare strings are write keys named by their position."""
        return tuple(
            k if isinstance(k, ApiKey) else ApiKey(name=f"key{n}", key=k)
            for n, k in enumerate(self.api_keys)
        )

    def base_url(self, bound_port: int | None = None) -> str:
        """The URL prefix for links in API responses; `bound_port` replaces a listen port 0."""
        if self.public_url is not None:
            return self.public_url
        host = self.listen_host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and address.is_unspecified:
            host = "127.0.0.1" if address.version == 4 else "::1"
        if ":" in host:
            host = "[" + host.replace("%", "%25") + "]"
        port = self.listen_port if bound_port is None else bound_port
        return f"http://{host}:{port}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipsConfig:
    """The clip job queue."""

    workers: int
    max_wait_s: float
    max_duration_ms: int
    keep_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookEndpoint:
    """A configured receiver of events."""

    name: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = WEBHOOK_EVENTS


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhooksConfig:
    """Signed event delivery: configured endpoints, and per-clip callback_url."""

    endpoints: tuple[WebhookEndpoint, ...] = ()
    secret: str | None = field(default=None, repr=False)  # signs callback_url deliveries
    max_age_s: float = 86400.0  # retries stop this long after the event
    timeout_s: float = 10.0
    concurrency: int = 4  # deliveries in flight per receiver
    allow_private: bool = False  # callback_url may name loopback/private addresses


@dataclass(frozen=True, kw_only=True, slots=True)
class LogConfig:
    """How the daemon logs."""

    format: str = "text"  # text | json (one object per line)


def _read_server(section: _Section) -> ServerConfig:
    section.check_keys(_SERVER_KEYS, "[server]")
    host, port = section.read("listen", (_DEFAULT_LISTEN_HOST, _DEFAULT_LISTEN_PORT), _parse_listen)
    data_dir = section.read("data_dir", Path(_DEFAULT_DATA_DIR), _parse_data_dir)
    no_keys: tuple[str | ApiKey, ...] = ()
    api_keys = section.read("api_keys", no_keys, _parse_api_keys)
    public_url = section.read("public_url", None, _parse_public_url)
    no_origins: tuple[str, ...] = ()
    cors_origins = section.read("cors_origins", no_origins, _parse_origins)
    playback_secret = section.read("playback_secret", None, _parse_playback_secret)
    hlsjs_path = section.read("hlsjs_path", None, _parse_file_path)
    needs_keys = not api_keys and not _is_loopback(host)
    if needs_keys and section.valid("listen") and section.valid("api_keys"):
        listen = section.data.get("listen")
        section.errors.append(
            f"{section.key('api_keys')}: required when {section.key('listen')} is not a "
            f"loopback address (127.0.0.0/8, ::1 or localhost), and it is {_show(listen)}; "
            f"add at least one random key of {_MIN_API_KEY_LENGTH} or more characters "
            '(e.g. from: python -c "import secrets; print(secrets.token_urlsafe(32))") '
            'or listen on "127.0.0.1:8080"'
        )
    return ServerConfig(
        listen_host=host,
        listen_port=port,
        data_dir=data_dir,
        api_keys=api_keys,
        public_url=public_url,
        cors_origins=cors_origins,
        playback_secret=playback_secret,
        hlsjs_path=hlsjs_path,
    )


def _parse_listen(value: object, key: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError([f"{key}: {_show(value)} is not a string; {_LISTEN_HINT}"])
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1 : end + 2] != ":":
            raise ConfigError([f"{key}: {_show(value)} is not host:port; {_LISTEN_HINT}"])
        host, port_text = value[1:end], value[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                [f"{key}: {_show(host)} in brackets is not an IPv6 address; {_LISTEN_HINT}"]
            ) from None
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon or not host:
            raise ConfigError([f"{key}: {_show(value)} is not host:port; {_LISTEN_HINT}"])
        if ":" in host:
            raise ConfigError(
                [f"{key}: {_show(value)} has an IPv6 address without brackets; {_LISTEN_HINT}"]
            )
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ConfigError(
                    [f"{key}: {_show(host)} is not an IPv4 address; {_LISTEN_HINT}"]
                ) from None
        elif not _is_hostname(host):
            raise ConfigError(
                [
                    f"{key}: {_show(host)} is not an IPv4 address, [IPv6] address or host name; "
                    + _LISTEN_HINT
                ]
            )
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        raise ConfigError(
            [f"{key}: port {_show(port_text)} is not a number from 0 to 65535; {_LISTEN_HINT}"]
        )
    return host, int(port_text)


def _parse_data_dir(value: object, key: str) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(
            [f'{key}: {_show(value)} is not a directory path; use a string like "/var/lib/livecut"']
        )
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ConfigError(
            [
                f"{key}: {_show(value)} starts with ~ but the home directory is unknown; "
                "use an absolute path"
            ]
        ) from None


def _parse_api_keys(value: object, key: str) -> tuple[str | ApiKey, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(
            [
                f"{key}: {_show(value)} is not an array; use a list of strings like "
                '["<random key of 16 or more characters>"] or tables like '
                '{ name = "app", key = "<random key>", scope = "read" }'
            ]
        )
    errors: list[str] = []
    seen: dict[str, int] = {}
    names: set[str] = set()
    keys: list[str | ApiKey] = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        entry: str | ApiKey | None = None
        secret: object = item
        if isinstance(item, Mapping):
            section = _Section(item, item_key, errors)
            section.check_keys(_API_KEY_KEYS, "an API key table")
            secret = item.get("key")
            name = section.read("name", f"key{index}", _parse_endpoint_name)
            scope = item.get("scope", "write")
            if scope not in ("read", "write"):
                errors.append(f"{item_key}.scope: {_show(scope)} is not a scope; use read or write")
                continue
            if name in names:
                errors.append(f"{item_key}.name: {_show(name)} is already used; names are unique")
                continue
            names.add(name)
            item_key += ".key"
            if isinstance(secret, str):
                entry = ApiKey(name=name, key=secret, scope="read" if scope == "read" else "write")
        elif isinstance(item, str):
            entry = item
        # Never echo a key: error output ends up in logs.
        if not isinstance(secret, str):
            errors.append(f"{item_key}: {_kind(secret)} is not a string; use a string key")
        elif len(secret) < _MIN_API_KEY_LENGTH:
            errors.append(
                f"{item_key}: a key of {len(secret)} characters is too short; "
                f"use a random key of at least {_MIN_API_KEY_LENGTH} characters"
            )
        elif _WHITESPACE_OR_CONTROL.search(secret):
            errors.append(
                f"{item_key}: the key contains spaces or control characters; "
                "use printable characters only, e.g. letters, digits, '-' and '_'"
            )
        elif secret in seen:
            errors.append(f"{item_key}: the same key as {key}[{seen[secret]}]; list each key once")
        elif entry is not None:
            seen[secret] = index
            keys.append(entry)
    if errors:
        raise ConfigError(errors)
    return tuple(keys)


def _parse_public_url(value: object, key: str) -> str | None:
    if value == "":
        return None
    url = _parse_http_url(value, key, "")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(
            [
                f"{key}: {_show(value)} has a query or fragment; use a base URL like "
                '"https://clips.example.com" or "https://example.com/livecut"'
            ]
        )
    return url.rstrip("/")


def _parse_origins(value: object, key: str) -> tuple[str, ...]:
    hint = 'use a list of origins like ["https://app.example.com", "http://localhost:3000"]'
    if not isinstance(value, list | tuple):
        raise ConfigError([f"{key}: {_show(value)} is not an array; {hint}"])
    origins: list[str] = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if item == "*":
            origins.append("*")
            continue
        url = _parse_http_url(item, item_key, "")
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError([f"{item_key}: {_show(item)} is not an origin; {hint}"])
        origins.append(f"{parts.scheme.lower()}://{parts.netloc.lower()}")
    return tuple(origins)


def _parse_playback_secret(value: object, key: str) -> str | None:
    if value == "":
        return None
    # Never echo a secret.
    if (
        not isinstance(value, str)
        or len(value) < _MIN_PLAYBACK_SECRET_LENGTH
        or _CONTROL.search(value)
    ):
        raise ConfigError(
            [
                f"{key}: use a random string of at least {_MIN_PLAYBACK_SECRET_LENGTH} "
                'printable characters, or "" for one made in the data directory'
            ]
        )
    return value


def _read_clips(section: _Section) -> ClipsConfig:
    section.check_keys(_CLIPS_KEYS, "[clips]")
    workers = section.integer("workers", 2, low=1, high=32)
    max_wait = section.duration("max_wait", 60.0, low=0.0, high=_HOUR, allowed="from 0s to 1h")
    max_duration = section.duration(
        "max_duration", 3 * _HOUR, low=1.0, high=_DAY, allowed="from 1s to 24h"
    )
    keep = section.duration("keep", 7 * _DAY, low=_MINUTE, allowed="of at least 1m")
    return ClipsConfig(
        workers=workers,
        max_wait_s=max_wait,
        max_duration_ms=round(max_duration * 1000),
        keep_s=keep,
    )


def _read_webhooks(section: _Section) -> WebhooksConfig:
    section.check_keys(_WEBHOOKS_KEYS, "[webhooks]")
    no_endpoints: tuple[WebhookEndpoint, ...] = ()
    endpoints = section.read("endpoints", no_endpoints, _parse_endpoints)
    secret = section.read("secret", None, _parse_secret)
    max_age = section.duration("max_age", _DAY, low=_MINUTE, high=30 * _DAY, allowed="1m to 30d")
    timeout = section.duration("timeout", 10.0, low=0.1, high=_MINUTE, allowed="100ms to 1m")
    concurrency = section.integer("concurrency", 4, low=1, high=64)
    allow_private = section.boolean("allow_private", False)
    return WebhooksConfig(
        endpoints=endpoints,
        secret=secret,
        max_age_s=max_age,
        timeout_s=timeout,
        concurrency=concurrency,
        allow_private=allow_private,
    )


def _parse_secret(value: object, key: str) -> str | None:
    if value == "":
        return None
    # Never echo a secret.
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LENGTH:
        raise ConfigError(
            [f"{key}: use a random string of at least {_MIN_SECRET_LENGTH} characters"]
        )
    if _CONTROL.search(value):
        raise ConfigError([f"{key}: the secret contains control characters"])
    return value


def _parse_endpoints(value: object, key: str) -> tuple[WebhookEndpoint, ...]:
    hint = "use [[webhooks.endpoints]] tables with url, secret and optionally name, events"
    if not isinstance(value, list | tuple):
        raise ConfigError([f"{key}: {_show(value)} is not an array of tables; {hint}"])
    errors: list[str] = []
    endpoints: list[WebhookEndpoint] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            errors.append(f"{item_key}: {_show(item)} is not a table; {hint}")
            continue
        section = _Section(item, item_key, errors)
        section.check_keys(_ENDPOINT_KEYS, "[[webhooks.endpoints]]")
        url = section.read("url", "", lambda v, k: _parse_http_url(v, k, " for webhooks"))
        if "url" not in item:
            errors.append(f"{item_key}.url: required; {_URL_HINT} that receives events")
        secret = section.read("secret", None, _parse_secret)
        if secret is None and section.valid("secret"):
            errors.append(
                f"{item_key}.secret: required; a random string of at least "
                f"{_MIN_SECRET_LENGTH} characters that signs every delivery"
            )
        name = section.read("name", f"endpoint{index}", _parse_endpoint_name)
        if name in names:
            errors.append(f"{item_key}.name: {_show(name)} is already used; names are unique")
        names.add(name)
        all_events: tuple[str, ...] = WEBHOOK_EVENTS
        events = section.read("events", all_events, _parse_events)
        endpoints.append(WebhookEndpoint(name=name, url=url, secret=secret or "", events=events))
    if errors:
        raise ConfigError(errors)
    return tuple(endpoints)


def _parse_endpoint_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not _STREAM_ID.fullmatch(value):
        raise ConfigError([f"{key}: {_show(value)} is not a valid name; {_STREAM_ID_HINT}"])
    return value


def _parse_events(value: object, key: str) -> tuple[str, ...]:
    allowed = ", ".join(WEBHOOK_EVENTS)
    if (
        not isinstance(value, list | tuple)
        or not value
        or any(e not in WEBHOOK_EVENTS for e in value)
    ):
        raise ConfigError([f"{key}: {_show(value)} is not a list of events; choose from {allowed}"])
    return tuple(str(e) for e in dict.fromkeys(value))


def _parse_log_format(value: object, key: str) -> str:
    if value not in LOG_FORMATS:
        raise ConfigError([f'{key}: {_show(value)} is not a log format; use "text" or "json"'])
    assert isinstance(value, str)
    return value
