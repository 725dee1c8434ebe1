"""Read the TOML config into frozen records, reporting every mistake by its key path."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from livecut.config.server import (
    LOG_FORMATS,
    WEBHOOK_EVENTS,
    ApiKey,
    ClipsConfig,
    LogConfig,
    ServerConfig,
    WebhookEndpoint,
    WebhooksConfig,
    _parse_log_format,
    _read_clips,
    _read_server,
    _read_webhooks,
)
from livecut.config.storage import (
    INDEX_URL_VARIABLE,
    ClusterConfig,
    S3Config,
    S3Credentials,
    StorageConfig,
    _read_cluster,
    _read_storage,
    read_s3_credentials,
)
from livecut.config.streams import (
    OVERLAY_MAX_SIDE,
    IngestConfig,
    RenditionSpec,
    StreamConfig,
    _read_ingest,
    _read_overlays,
    _read_streams,
    parse_stream,
)
from livecut.config.values import (
    DURATION_HINT,
    SIZE_HINT,
    ConfigError,
    _check_keys,
    _describe_toml_error,
    _Section,
    _top_table,
    parse_duration,
    parse_size,
)

__all__ = [
    "DURATION_HINT",
    "INDEX_URL_VARIABLE",
    "LOG_FORMATS",
    "OVERLAY_MAX_SIDE",
    "SIZE_HINT",
    "WEBHOOK_EVENTS",
    "ApiKey",
    "ClipsConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "IngestConfig",
    "LogConfig",
    "RenditionSpec",
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


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The whole daemon configuration."""

    server: ServerConfig
    clips: ClipsConfig
    ingest: IngestConfig
    streams: tuple[StreamConfig, ...]
    # These defaults are frozen records, so one shared instance is safe; ruff cannot
    # see that they are frozen once they are defined in another module.
    webhooks: WebhooksConfig = WebhooksConfig()  # noqa: RUF009
    storage: StorageConfig = StorageConfig()  # noqa: RUF009
    log: LogConfig = LogConfig()  # noqa: RUF009
    # Watermark images for renders, by name ([overlays] logo = "/etc/livecut/logo.png").
    overlays: tuple[tuple[str, Path], ...] = ()
    cluster: ClusterConfig = ClusterConfig()  # noqa: RUF009


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


def default_config(data_dir: Path) -> Config:
    """Every default, no streams, data under `data_dir` (the demo adds its own stream)."""
    config = parse_config({}, source="<defaults>")
    server = dataclasses.replace(config.server, data_dir=data_dir)
    return dataclasses.replace(config, server=server)
