"""Read the TOML config into frozen records, reporting every mistake by its key path."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Final, Literal, TypeVar
from urllib.parse import urlsplit

from livecut import __version__
from livecut.hls.playlist import RenditionFilter

# "best", "all", or filters of which any may match.
RenditionSpec = Literal["best", "all"] | tuple[RenditionFilter, ...]

__all__ = [
    "ApiKey",
    "ClipsConfig",
    "Config",
    "ConfigError",
    "IngestConfig",
    "S3Config",
    "S3Credentials",
    "ServerConfig",
    "StorageConfig",
    "StreamConfig",
    "WebhookEndpoint",
    "WebhooksConfig",
    "default_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "parse_stream",
    "read_s3_credentials",
]

_T = TypeVar("_T")

DURATION_HINT: Final = 'use seconds as a number or a string like "90s", "15m", "24h", "7d"'

_TOP_KEYS: Final = (
    "server",
    "clips",
    "ingest",
    "storage",
    "webhooks",
    "streams",
    "log",
    "overlays",
    "cluster",
)
_CLUSTER_KEYS: Final = ("index_url", "node_id", "lease_s")
# Set and not empty, this environment variable overrides [cluster] index_url.
INDEX_URL_VARIABLE: Final = "LIVECUT_INDEX_URL"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_OVERLAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OVERLAY_MAX_SIDE: Final = 4096
_STORAGE_KEYS: Final = ("backend", "min_free_bytes", "min_free_percent", "keep_live_segments", "s3")
_S3_KEYS: Final = (
    "endpoint",
    "region",
    "bucket",
    "prefix",
    "credentials_file",
    "downloads",
    "url_expiry",
    "cache_bytes",
)
# Names under which access keys tend to be pasted into a config; each is refused with
# where credentials go instead, rather than as an unknown key.
_S3_SECRET_NAMES: Final = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "access_key",
    "secret_key",
)
_CREDENTIAL_FILE_KEYS: Final = ("access_key_id", "secret_access_key", "session_token")
_CREDENTIALS_HINT: Final = (
    "put access_key_id and secret_access_key in a TOML file readable only by the daemon "
    "and name it in storage.s3.credentials_file, or set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY in the daemon's environment"
)
# AWS's own rules, which S3-compatible services accept too: 3-63 lowercase letters,
# digits, "." and "-", starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_HINT: Final = (
    '3 to 63 lowercase letters, digits, "." and "-", starting and ending with a letter or digit'
)
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._=+-]+")
_MAX_PREFIX_LENGTH: Final = 512
# SigV4 refuses presigned URLs that live longer than seven days.
_MAX_URL_EXPIRY_S: Final = 7 * 86400
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

_DEFAULT_LISTEN_HOST: Final = "127.0.0.1"
_DEFAULT_LISTEN_PORT: Final = 8080
_DEFAULT_DATA_DIR: Final = "./livecut-data"
_MIN_API_KEY_LENGTH: Final = 16

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
_LISTEN_HINT: Final = 'use "host:port", e.g. "127.0.0.1:8080", "[::1]:8080" or "localhost:8080"'
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
class S3Config:
    """An S3-compatible bucket for media; the credentials are never part of it."""

    bucket: str
    endpoint: str | None = None  # without a trailing "/"; None: AWS's endpoint for the region
    region: str = "us-east-1"
    prefix: str = ""  # "" or ending with "/": every key is prefix + the local relative path
    # A TOML file with access_key_id and secret_access_key; None: AWS_* environment variables.
    credentials_file: Path | None = None
    downloads: Literal["presigned", "proxy"] = "presigned"
    url_expiry_s: int = 3600  # lifetime of a presigned download URL
    cache_bytes: int = 2 * 1024**3  # local copies of objects kept for cutting clips

    def key(self, relpath: str) -> str:
        """The object key of a path relative to the data directory."""
        return self.prefix + relpath


@dataclass(frozen=True, kw_only=True, slots=True)
class S3Credentials:
    """An access key pair, read from the credentials file or the environment."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str  # where they came from, for messages: a file path or "the environment"


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageConfig:
    """Where media is kept, and the free-disk floor: below it the oldest unpinned segments
    are evicted first."""

    min_free_bytes: int = 1024**3
    min_free_percent: float = 0.0  # of the data directory's file system
    # The newest segments of each rendition of a live session the floor never takes.
    keep_live_segments: int = 10
    backend: Literal["local", "s3"] = "local"
    s3: S3Config | None = None  # set exactly when backend is "s3"

    def __post_init__(self) -> None:
        if (self.backend == "s3") != (self.s3 is not None):
            raise ValueError('StorageConfig: s3 is given exactly when backend is "s3"')

    def floor_bytes(self, total_bytes: int) -> int:
        """The free space to keep on a file system of `total_bytes`: the larger of the two."""
        return max(self.min_free_bytes, int(total_bytes * self.min_free_percent / 100))


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterConfig:
    """[cluster]: nodes sharing one PostgreSQL index. Without index_url, one node keeps
    its index in SQLite in its data directory."""

    index_url: str | None = None  # postgresql://USER@HOST[:PORT]/DATABASE, no password
    # This node's name on the leases and jobs it holds: unique among the nodes.
    node_id: str = field(default_factory=socket.gethostname)
    # A stream's lease runs out this long after its holder last renewed it; another node
    # then takes the stream over. The holder renews every third of it.
    lease_s: float = 10.0


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


@dataclass(frozen=True, kw_only=True, slots=True)
class LogConfig:
    """How the daemon logs."""

    format: str = "text"  # text | json (one object per line)


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The whole daemon configuration."""

    server: ServerConfig
    clips: ClipsConfig
    ingest: IngestConfig
    streams: tuple[StreamConfig, ...]
    webhooks: WebhooksConfig = WebhooksConfig()
    storage: StorageConfig = StorageConfig()
    log: LogConfig = LogConfig()
    # Watermark images for renders, by name ([overlays] logo = "/etc/livecut/logo.png").
    overlays: tuple[tuple[str, Path], ...] = ()
    cluster: ClusterConfig = ClusterConfig()


def load_config(path: Path) -> Config:
    """Read and check a TOML config file; raise ConfigError listing every mistake."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=source) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a config file"], source=source) from None
    except PermissionError:
        raise ConfigError(["cannot read the file: permission denied"], source=source) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"cannot read the file: {reason}"], source=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"line {line}: not valid UTF-8; save the file as UTF-8"
        raise ConfigError([message], source=source) from None
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_describe_toml_error(exc)], source=source) from None
    return parse_config(data, source=source)


def parse_config(
    data: Mapping[str, object],
    *,
    source: str = "<config>",
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Check decoded TOML (or equivalent JSON) and build the Config records. From
    `environ`, LIVECUT_INDEX_URL stands in for [cluster] index_url when set (a
    container's secret, say, or a test run choosing its engine)."""
    errors: list[str] = []
    _check_keys(data, "", _TOP_KEYS, "at the top level", errors)
    server = _read_server(_Section(_top_table(data, "server", errors), "server", errors))
    clips = _read_clips(_Section(_top_table(data, "clips", errors), "clips", errors))
    ingest = _read_ingest(_Section(_top_table(data, "ingest", errors), "ingest", errors))
    storage = _read_storage(_Section(_top_table(data, "storage", errors), "storage", errors))
    streams = _read_streams(data.get("streams"), errors)
    webhooks = _read_webhooks(_Section(_top_table(data, "webhooks", errors), "webhooks", errors))
    log_section = _Section(_top_table(data, "log", errors), "log", errors)
    log_section.check_keys(("format",), "[log]")
    log = LogConfig(format=log_section.read("format", "text", _parse_log_format))
    overlays = _read_overlays(_top_table(data, "overlays", errors), errors)
    cluster = _read_cluster(
        _Section(_top_table(data, "cluster", errors), "cluster", errors), environ, errors
    )
    if errors:
        raise ConfigError(errors, source=source)
    return Config(
        server=server,
        clips=clips,
        ingest=ingest,
        streams=streams,
        webhooks=webhooks,
        storage=storage,
        log=log,
        overlays=overlays,
        cluster=cluster,
    )


def _read_cluster(
    section: _Section, environ: Mapping[str, str], errors: list[str]
) -> ClusterConfig:
    section.check_keys(_CLUSTER_KEYS, "[cluster]")
    defaults = ClusterConfig()
    index_url = section.read("index_url", None, _parse_index_url)
    from_env = environ.get(INDEX_URL_VARIABLE, "")
    if from_env:
        try:
            index_url = _parse_index_url(from_env, INDEX_URL_VARIABLE)
        except ConfigError as exc:
            errors.extend(exc.errors)

    def parse_node_id(value: object, key: str) -> str:
        if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
            raise ConfigError(
                [
                    f"{key}: {_show(value)} is not a node id; use 1-64 letters, digits, '.', '_'"
                    " or '-', starting with a letter or digit"
                ]
            )
        return value

    return ClusterConfig(
        index_url=index_url,
        node_id=section.read("node_id", defaults.node_id, parse_node_id),
        lease_s=section.duration(
            "lease_s", defaults.lease_s, low=2, high=300, allowed="from 2s to 300s"
        ),
    )


def _parse_index_url(value: object, key: str) -> str:
    """A PostgreSQL connection URL without a password (that comes from PGPASSWORD or a
    ~/.pgpass file, never the config in clear)."""
    shape = "postgresql://USER@HOST[:PORT]/DATABASE"
    if not isinstance(value, str):
        raise ConfigError([f"{key}: {_show(value)} is not a URL; use {shape}"])
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            [f"{key}: scheme {parts.scheme or '(none)'!r} is not supported; use {shape}"]
        )
    if parts.password is not None:
        raise ConfigError(
            [
                f"{key}: holds a password; put it in the PGPASSWORD environment variable or a"
                " ~/.pgpass file (PGPASSFILE), and write the URL as " + shape
            ]
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or parts.path.strip("/") == "":
        raise ConfigError([f"{key}: {_show(value)} needs a host and a database; use {shape}"])
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


def _parse_log_format(value: object, key: str) -> str:
    if value not in LOG_FORMATS:
        raise ConfigError([f'{key}: {_show(value)} is not a log format; use "text" or "json"'])
    assert isinstance(value, str)
    return value


def parse_stream(data: Mapping[str, object], *, key: str = "") -> StreamConfig:
    """Check one stream table (e.g. a JSON body of the API); `key` prefixes error paths."""
    errors: list[str] = []
    stream = _read_stream(_Section(data, key, errors))
    if errors:
        raise ConfigError(errors)
    return stream


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


def default_config(data_dir: Path) -> Config:
    """Every default, no streams, data under `data_dir` (the demo adds its own stream)."""
    config = parse_config({}, source="<defaults>")
    server = dataclasses.replace(config.server, data_dir=data_dir)
    return dataclasses.replace(config, server=server)


# --- sections -------------------------------------------------------------------------


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


def _read_storage(section: _Section) -> StorageConfig:
    _refuse_secrets(section)
    section.check_keys(_STORAGE_KEYS, "[storage]")
    defaults = StorageConfig()

    def parse_floor(value: object, key: str) -> int:
        size = parse_size(value, key=key)
        if size > _MAX_FLOOR_BYTES:
            raise ConfigError([f"{key}: {_show(value)} is out of range; use 0 to 1PiB"])
        return size

    def parse_percent(value: object, key: str) -> float:
        allowed = "use a number from 0 to 90 (percent of the file system)"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError([f"{key}: {_show(value)} is not a number; {allowed}"])
        if not 0 <= value <= 90:
            raise ConfigError([f"{key}: {_show(value)} is out of range; {allowed}"])
        return float(value)

    backend = section.read("backend", defaults.backend, _parse_backend)
    s3: S3Config | None = None
    table = section.data.get("s3")
    if table is not None and not isinstance(table, Mapping):
        section.errors.append(
            f"{section.key('s3')}: {_show(table)} is not a table; write it as [storage.s3] "
            "followed by its keys"
        )
    elif isinstance(table, Mapping):
        # Read even while backend is "local", so a mistake shows before the switch.
        s3 = _read_s3(_Section(table, section.key("s3"), section.errors))
    elif backend == "s3":
        section.errors.append(
            f'{section.key("s3")}: required when {section.key("backend")} is "s3"; add a '
            "[storage.s3] table with at least bucket (and endpoint unless it is AWS)"
        )
    return StorageConfig(
        min_free_bytes=section.read("min_free_bytes", defaults.min_free_bytes, parse_floor),
        min_free_percent=section.read("min_free_percent", defaults.min_free_percent, parse_percent),
        keep_live_segments=section.integer(
            "keep_live_segments", defaults.keep_live_segments, low=1, high=100_000
        ),
        backend="s3" if backend == "s3" and s3 is not None else "local",
        s3=s3 if backend == "s3" else None,
    )


def _parse_backend(value: object, key: str) -> Literal["local", "s3"]:
    if value == "local":
        return "local"
    if value == "s3":
        return "s3"
    raise ConfigError([f'{key}: {_show(value)} is not a storage backend; use "local" or "s3"'])


def _refuse_secrets(section: _Section) -> None:
    """Access keys in the main config end up in backups, diffs and bug reports: refuse them
    by name, with where they go instead, and leave them out of the unknown-key check."""
    secrets = [name for name in _S3_SECRET_NAMES if name in section.data]
    for name in secrets:
        section.errors.append(
            f"{section.key(name)}: credentials do not belong in the main config; "
            + _CREDENTIALS_HINT
        )
    if secrets:
        section.data = {k: v for k, v in section.data.items() if k not in secrets}


def _read_s3(section: _Section) -> S3Config:
    _refuse_secrets(section)
    section.check_keys(_S3_KEYS, "[storage.s3]")
    defaults = S3Config(bucket="")
    bucket = section.read("bucket", "", _parse_bucket)
    if "bucket" not in section.data:
        section.errors.append(
            f"{section.key('bucket')}: required; the name of a bucket, " + _BUCKET_HINT
        )
    credentials_file = section.read("credentials_file", None, _parse_credentials_file)
    return S3Config(
        bucket=bucket,
        endpoint=section.read("endpoint", defaults.endpoint, _parse_s3_endpoint),
        region=section.read("region", defaults.region, _parse_region),
        prefix=section.read("prefix", defaults.prefix, _parse_prefix),
        credentials_file=credentials_file,
        downloads=section.read("downloads", defaults.downloads, _parse_downloads),
        url_expiry_s=round(
            section.duration(
                "url_expiry",
                defaults.url_expiry_s,
                low=_MINUTE,
                high=_MAX_URL_EXPIRY_S,
                allowed="from 1m to 7d",
            )
        ),
        cache_bytes=section.read("cache_bytes", defaults.cache_bytes, _parse_cache_bytes),
    )


def _parse_bucket(value: object, key: str) -> str:
    if not isinstance(value, str) or not _BUCKET.fullmatch(value) or ".." in value:
        raise ConfigError([f"{key}: {_show(value)} is not a bucket name; use {_BUCKET_HINT}"])
    return value


def _parse_s3_endpoint(value: object, key: str) -> str | None:
    if value == "":
        return None
    url = _parse_http_url(value, key, " of the S3 service")
    parts = urlsplit(url)
    # botocore adds the bucket to the endpoint's path; a path of its own would be lost.
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            [
                f"{key}: {_show(value)} has a path, query or fragment; use the service's base "
                'URL like "https://s3.example.com" or "http://127.0.0.1:9000"'
            ]
        )
    return url.rstrip("/")


def _parse_region(value: object, key: str) -> str:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ConfigError(
            [
                f"{key}: {_show(value)} is not a region; use a name like "
                '"us-east-1" or "eu-central-1" (letters, digits, "-" and "_")'
            ]
        )
    return value


def _parse_prefix(value: object, key: str) -> str:
    hint = (
        'use "" or folder names of letters, digits and ._=+- joined by "/", '
        'like "livecut" or "media/livecut/"'
    )
    if not isinstance(value, str):
        raise ConfigError([f"{key}: {_show(value)} is not a string; {hint}"])
    text = value.removesuffix("/")
    if not text:
        if value:
            raise ConfigError([f"{key}: {_show(value)} is not a key prefix; {hint}"])
        return ""
    parts = text.split("/")
    if len(value) > _MAX_PREFIX_LENGTH or any(
        not _PREFIX_PART.fullmatch(part) or part in (".", "..") for part in parts
    ):
        raise ConfigError([f"{key}: {_show(value)} is not a key prefix; {hint}"])
    return text + "/"


def _parse_downloads(value: object, key: str) -> Literal["presigned", "proxy"]:
    if value == "presigned":
        return "presigned"
    if value == "proxy":
        return "proxy"
    raise ConfigError(
        [
            f'{key}: {_show(value)} is not a download mode; use "presigned" (clients fetch '
            'from the bucket with an expiring URL) or "proxy" (the daemon streams the object)'
        ]
    )


def _parse_cache_bytes(value: object, key: str) -> int:
    size = parse_size(value, key=key)
    if size > _MAX_FLOOR_BYTES:
        raise ConfigError([f"{key}: {_show(value)} is out of range; use 0 to 1PiB"])
    return size


def _parse_credentials_file(value: object, key: str) -> Path | None:
    path = _parse_file_path(value, key)
    if path is not None:
        # Read now, so check-config and a reload catch a missing or malformed file; the
        # keys themselves are read again when the store starts.
        _read_credentials_file(path, key=key)
    return path


def read_s3_credentials(s3: S3Config, environ: Mapping[str, str]) -> S3Credentials:
    """The access keys for `s3`: from its credentials file, else AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set) in `environ`."""
    if s3.credentials_file is not None:
        return _read_credentials_file(s3.credentials_file, key="storage.s3.credentials_file")
    key_id = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    missing = [
        name
        for name, found in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret))
        if not found
    ]
    if missing:
        raise ConfigError(
            [
                f"storage.s3.credentials_file: not set, and {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not in the environment; "
                + _CREDENTIALS_HINT
            ]
        )
    return S3Credentials(
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=environ.get("AWS_SESSION_TOKEN") or None,
        source="the environment",
    )


def _read_credentials_file(path: Path, *, key: str) -> S3Credentials:
    hint = (
        'a TOML file with access_key_id = "..." and secret_access_key = "..." '
        "(and optionally session_token)"
    )
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except FileNotFoundError:
        raise ConfigError([f"{key}: {path} does not exist; name {hint}"]) from None
    except PermissionError:
        raise ConfigError(
            [f"{key}: {path} cannot be read: permission denied; the daemon's user must read it"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{key}: {path} cannot be read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{key}: {path} is not UTF-8 text; name {hint}"]) from None
    except tomllib.TOMLDecodeError as exc:
        # The parser's message quotes no values, only where the mistake is.
        raise ConfigError([f"{key}: {path}: {_describe_toml_error(exc)}"]) from None
    errors: list[str] = []
    _check_keys(data, "", _CREDENTIAL_FILE_KEYS, "in a credentials file", errors)
    values: dict[str, str] = {}
    for name in _CREDENTIAL_FILE_KEYS:
        value = data.get(name)
        required = name != "session_token"
        # Never echo a credential: describe it.
        if value is None and required:
            errors.append(f"has no {name}; it needs to be {hint}")
        elif value is not None and not isinstance(value, str):
            errors.append(f"{name} is {_kind(value)}; write it in quotes")
        elif value is not None and (not value or _WHITESPACE_OR_CONTROL.search(value)):
            errors.append(
                f"{name} is empty or has spaces or control characters; "
                "use the key as the service gave it"
            )
        elif isinstance(value, str):
            values[name] = value
    if errors:
        raise ConfigError([f"{key}: {path}: {error}" for error in errors])
    return S3Credentials(
        access_key_id=values["access_key_id"],
        secret_access_key=values["secret_access_key"],
        session_token=values.get("session_token"),
        source=str(path),
    )


_MAX_FLOOR_BYTES: Final = 1024**5


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


# --- values ---------------------------------------------------------------------------


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


def _parse_stream_id(value: object, key: str) -> str:
    if not isinstance(value, str) or not _STREAM_ID.fullmatch(value):
        raise ConfigError([f"{key}: {_show(value)} is not a valid stream id; {_STREAM_ID_HINT}"])
    return value


def _parse_stream_url(value: object, key: str) -> str:
    return _parse_http_url(value, key, " of a master or media playlist")


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


def _parse_user_agent(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        raise ConfigError(
            [
                f"{key}: {_show(value)} is not a usable User-Agent; use one line of text like "
                f'"livecut/{__version__}"'
            ]
        )
    return value


# --- helpers --------------------------------------------------------------------------


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
