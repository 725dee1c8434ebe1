"""The [storage], [storage.s3] and [cluster] sections, and reading the S3 credentials."""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from livecut.config.values import (
    _MINUTE,
    _WHITESPACE_OR_CONTROL,
    ConfigError,
    _check_keys,
    _describe_toml_error,
    _kind,
    _parse_file_path,
    _parse_http_url,
    _Section,
    _show,
    parse_size,
)

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

_MAX_FLOOR_BYTES: Final = 1024**5
_CLUSTER_KEYS: Final = ("index_url", "node_id", "lease_s")
# Set and not empty, this environment variable overrides [cluster] index_url.
INDEX_URL_VARIABLE: Final = "LIVECUT_INDEX_URL"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
