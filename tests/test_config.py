"""Tests for livecut.config: the records it builds and the messages it gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import livecut
from livecut.config import (
    ClipsConfig,
    Config,
    ConfigError,
    IngestConfig,
    ServerConfig,
    StreamConfig,
    default_config,
    load_config,
    parse_config,
    parse_duration,
    parse_stream,
)
from livecut.config import server as server_module
from livecut.config import storage as storage_module
from livecut.config import streams as streams_module
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "livecut.example.toml"
KEY = "k" * 24
OTHER_KEY = "o" * 32

FULL = f"""
[server]
listen = "0.0.0.0:9090"
data_dir = "/srv/livecut"
api_keys = ["{KEY}", "{OTHER_KEY}"]
public_url = "https://clips.example.com/livecut/"

[clips]
workers = 4
max_wait = "2m"
max_duration = "1h30m"
keep = "3d"

[ingest]
max_concurrent_downloads = 8
segment_timeout = 12.5
playlist_timeout = "1500ms"
user_agent = "my-recorder/2"

[[streams]]
id = "channel7"
url = "https://origin.example/live/master.m3u8"
retention = "36h"
session_gap = 45
headers = {{ Authorization = "Bearer abc", Referer = "https://example.com/" }}
enabled = false

[[streams]]
id = "news_2"
url = "http://10.0.0.5:8000/news/index.m3u8"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "livecut.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def only_error(data: dict[str, object]) -> str:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


def stream(**fields: object) -> dict[str, object]:
    return {"id": "s1", "url": "https://o.example/a.m3u8", **fields}


# --- good configs ---------------------------------------------------------------------


def test_full_config_parses_into_the_right_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == Config(
        server=ServerConfig(
            listen_host="0.0.0.0",
            listen_port=9090,
            data_dir=Path("/srv/livecut"),
            api_keys=(KEY, OTHER_KEY),
            public_url="https://clips.example.com/livecut",
        ),
        clips=ClipsConfig(workers=4, max_wait_s=120.0, max_duration_ms=5_400_000, keep_s=259200.0),
        ingest=IngestConfig(
            max_concurrent_downloads=8,
            segment_timeout_s=12.5,
            playlist_timeout_s=1.5,
            user_agent="my-recorder/2",
        ),
        streams=(
            StreamConfig(
                id="channel7",
                url="https://origin.example/live/master.m3u8",
                retention_s=129600.0,
                session_gap_s=45.0,
                headers=(("Authorization", "Bearer abc"), ("Referer", "https://example.com/")),
                enabled=False,
            ),
            StreamConfig(
                id="news_2",
                url="http://10.0.0.5:8000/news/index.m3u8",
                retention_s=86400.0,
                session_gap_s=30.0,
                headers=(),
                enabled=True,
            ),
        ),
    )
    assert config.streams[0].headers_dict() == {
        "Authorization": "Bearer abc",
        "Referer": "https://example.com/",
    }
    assert config.server.base_url() == "https://clips.example.com/livecut"
    hash(config)  # records are hashable, so they can key caches and sets


def test_empty_config_gives_defaults() -> None:
    config = parse_config({})
    assert config.server == ServerConfig(
        listen_host="127.0.0.1",
        listen_port=8080,
        data_dir=Path("livecut-data"),
        api_keys=(),
        public_url=None,
    )
    assert config.clips == ClipsConfig(
        workers=2, max_wait_s=60.0, max_duration_ms=3 * 3600 * 1000, keep_s=7 * 86400.0
    )
    assert config.ingest == IngestConfig(
        max_concurrent_downloads=4,
        segment_timeout_s=10.0,
        playlist_timeout_s=5.0,
        user_agent=f"livecut/{livecut.__version__}",
    )
    assert config.streams == ()


def test_default_config_uses_the_given_data_dir(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.server.data_dir == tmp_path
    assert config.streams == ()
    assert config.clips == parse_config({}).clips
    assert config.ingest.user_agent == f"livecut/{livecut.__version__}"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("127.1.2.3:0", "127.1.2.3", 0),
        ("[::1]:65535", "::1", 65535),
        ("localhost:80", "localhost", 80),
        ("LOCALHOST:80", "LOCALHOST", 80),
    ],
)
def test_loopback_listen_needs_no_keys(listen: str, host: str, port: int) -> None:
    server = parse_config({"server": {"listen": listen}}).server
    assert (server.listen_host, server.listen_port) == (host, port)


@pytest.mark.parametrize(
    ("listen", "host"),
    [("0.0.0.0:80", "0.0.0.0"), ("[::]:80", "::"), ("media-box.lan:80", "media-box.lan")],
)
def test_non_loopback_listen_with_keys_is_accepted(listen: str, host: str) -> None:
    server = parse_config({"server": {"listen": listen, "api_keys": [KEY]}}).server
    assert server.listen_host == host


def test_base_url_is_derived_from_listen() -> None:
    def base(listen: str, bound_port: int | None = None) -> str:
        server = parse_config({"server": {"listen": listen, "api_keys": [KEY]}}).server
        return server.base_url(bound_port)

    assert base("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert base("[::1]:8080") == "http://[::1]:8080"
    assert base("0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert base("127.0.0.1:0", bound_port=41234) == "http://127.0.0.1:41234"
    assert base("localhost:80") == "http://localhost:80"


def test_secrets_stay_out_of_repr() -> None:
    config = parse_config(
        {
            "server": {"api_keys": [KEY]},
            "streams": [stream(headers={"Authorization": "Bearer sekrit"})],
        }
    )
    assert KEY not in repr(config)
    assert "sekrit" not in repr(config)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (90, 90.0),
        (0.25, 0.25),
        ("500ms", 0.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5h", 5400.0),
        (" 1h 30m ", 5400.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value, key="x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [True, False, "", "90", "5x", "1h1h", "30s1m", "-5s", "1 hour", "h", None, [1], {"s": 1}],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, key="streams[1].retention")
    (message,) = info.value.errors
    assert message.startswith("streams[1].retention: ")
    assert 'use seconds as a number or a string like "90s", "15m", "24h", "7d"' in message


def test_parse_duration_message_matches_the_design() -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration("5x", key="streams[1].retention")
    assert info.value.errors == [
        'streams[1].retention: "5x" is not a duration; '
        'use seconds as a number or a string like "90s", "15m", "24h", "7d"'
    ]


@pytest.mark.parametrize("value", [-1, -0.5, float("inf"), float("nan"), 10**400])
def test_parse_duration_rejects_negative_and_non_finite(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_duration(value, key="k")


def test_parse_stream_for_api_bodies() -> None:
    parsed = parse_stream({"id": "cam1", "url": "https://o.example/cam1.m3u8"})
    assert parsed.id == "cam1"
    assert parsed.retention_s == 86400.0
    with pytest.raises(ConfigError) as info:
        parse_stream({"id": "Cam 1", "url": "rtmp://x"})
    assert [e.split(":")[0] for e in info.value.errors] == ["id", "url"]


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "allowed"),
    [
        (
            {"sever": {}},
            "sever",
            "server, clips, ingest, storage, webhooks, streams, log, overlays, cluster",
        ),
        (
            {"server": {"listn": "x"}},
            "server.listn",
            "listen, data_dir, api_keys, public_url, cors_origins, playback_secret, hlsjs_path",
        ),
        ({"clips": {"worker": 1}}, "clips.worker", "workers, max_wait, max_duration, keep"),
        (
            {"ingest": {"timeout": 1}},
            "ingest.timeout",
            "max_concurrent_downloads, segment_timeout, playlist_timeout, user_agent,"
            " max_segment_bytes, segment_workers, max_buffered_bytes",
        ),
        (
            {"streams": [stream(retension="1h")]},
            "streams[0].retension",
            "id, url, retention, session_gap, headers, enabled, renditions, playback_id, shots",
        ),
    ],
)
def test_unknown_keys_list_the_allowed_keys(
    data: dict[str, object], key: str, allowed: str
) -> None:
    message = only_error(data)
    assert message.startswith(f"{key}: unknown key")
    assert message.endswith(f"are {allowed}")


def test_unknown_key_suggests_the_close_one() -> None:
    assert '(did you mean "listen"?)' in only_error({"server": {"listn": "x"}})
    assert '(did you mean "streams"?)' in only_error({"stream": []})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"clips": {"workers": True}}, "clips.workers: true is not an integer"),
        ({"clips": {"workers": "4"}}, 'clips.workers: "4" is not an integer'),
        ({"clips": {"workers": 2.0}}, "clips.workers: 2.0 is not an integer"),
        (
            {"ingest": {"max_concurrent_downloads": False}},
            "ingest.max_concurrent_downloads: false is not an integer",
        ),
        ({"streams": [stream(enabled="yes")]}, 'streams[0].enabled: "yes" is not a boolean'),
        ({"streams": [stream(enabled=1)]}, "streams[0].enabled: 1 is not a boolean"),
        ({"server": {"listen": 8080}}, "server.listen: 8080 is not a string"),
        ({"server": {"data_dir": 3}}, "server.data_dir: 3 is not a directory path"),
        ({"server": {"api_keys": KEY}}, "server.api_keys: "),
        ({"server": {"api_keys": [1]}}, "server.api_keys[0]: an integer is not a string"),
        ({"server": {"public_url": 1}}, "server.public_url: 1 is not a string"),
        ({"ingest": {"user_agent": 7}}, "ingest.user_agent: 7 is not a usable User-Agent"),
        ({"streams": [stream(id=7)]}, "streams[0].id: 7 is not a valid stream id"),
        ({"streams": [stream(url=["x"])]}, "streams[0].url: an array is not a string"),
        ({"streams": [stream(headers="X: y")]}, 'streams[0].headers: "X: y" is not a table'),
        (
            {"streams": [stream(headers={"X-Token": 5})]},
            "streams[0].headers.X-Token: an integer is not a string",
        ),
        ({"server": "0.0.0.0"}, 'server: "0.0.0.0" is not a table'),
        ({"clips": [1]}, "clips: an array is not a table"),
        ({"streams": {"id": "x"}}, "streams: a single table is not an array of tables"),
        ({"streams": ["x"]}, 'streams[0]: "x" is not a table'),
    ],
)
def test_wrong_types_name_the_key(data: dict[str, object], expected: str) -> None:
    assert only_error(data).startswith(expected)


def test_integer_messages_give_the_range() -> None:
    assert only_error({"clips": {"workers": "4"}}) == (
        'clips.workers: "4" is not an integer; use a whole number from 1 to 32'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"clips": {"workers": 0}},
            "clips.workers: 0 is out of range; use a whole number from 1 to 32",
        ),
        (
            {"clips": {"workers": 33}},
            "clips.workers: 33 is out of range; use a whole number from 1 to 32",
        ),
        (
            {"ingest": {"max_concurrent_downloads": 65}},
            "ingest.max_concurrent_downloads: 65 is out of range; use a whole number from 1 to 64",
        ),
        (
            {"clips": {"max_wait": "2h"}},
            'clips.max_wait: "2h" is out of range; use a duration from 0s to 1h',
        ),
        (
            {"clips": {"max_duration": "25h"}},
            'clips.max_duration: "25h" is out of range; use a duration from 1s to 24h',
        ),
        (
            {"clips": {"max_duration": "500ms"}},
            'clips.max_duration: "500ms" is out of range; use a duration from 1s to 24h',
        ),
        ({"clips": {"keep": 30}}, "clips.keep: 30 is out of range; use a duration of at least 1m"),
        (
            {"ingest": {"segment_timeout": 0}},
            "ingest.segment_timeout: 0 is out of range; use a duration from 100ms to 10m",
        ),
        (
            {"streams": [stream(retention="59s")]},
            'streams[0].retention: "59s" is out of range; use a duration of at least 1m',
        ),
        (
            {"streams": [stream(session_gap=0.5)]},
            "streams[0].session_gap: 0.5 is out of range; use a duration of at least 1s",
        ),
    ],
)
def test_out_of_range_values_give_the_range(data: dict[str, object], expected: str) -> None:
    assert only_error(data) == expected


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"clips": {"max_wait": "1 minute"}}, "clips.max_wait"),
        ({"clips": {"max_duration": True}}, "clips.max_duration"),
        ({"clips": {"keep": "-7d"}}, "clips.keep"),
        ({"ingest": {"segment_timeout": "10"}}, "ingest.segment_timeout"),
        ({"ingest": {"playlist_timeout": "5sec"}}, "ingest.playlist_timeout"),
        ({"streams": [stream(retention="5x")]}, "streams[0].retention"),
        ({"streams": [stream(session_gap="30s30s")]}, "streams[0].session_gap"),
    ],
)
def test_bad_durations_name_the_key(table: dict[str, object], key: str) -> None:
    message = only_error(table)
    assert message.startswith(f"{key}: ")
    assert "is not a duration" in message
    assert '"90s", "15m", "24h", "7d"' in message


@pytest.mark.parametrize(
    ("listen", "fragment"),
    [
        ("8080", "is not host:port"),
        (":8080", "is not host:port"),
        ("127.0.0.1", "is not host:port"),
        ("127.0.0.1:65536", 'port "65536" is not a number from 0 to 65535'),
        ("127.0.0.1:-1", 'port "-1" is not a number from 0 to 65535'),
        ("127.0.0.1:http", 'port "http" is not a number from 0 to 65535'),
        ("256.0.0.1:80", '"256.0.0.1" is not an IPv4 address'),
        ("::1:8080", "has an IPv6 address without brackets"),
        ("[::1]8080", "is not host:port"),
        ("[nope]:80", '"nope" in brackets is not an IPv6 address'),
        ("bad host:80", '"bad host" is not an IPv4 address, [IPv6] address or host name'),
    ],
)
def test_bad_listen(listen: str, fragment: str) -> None:
    message = only_error({"server": {"listen": listen}})
    assert message.startswith("server.listen: ")
    assert fragment in message
    assert '"127.0.0.1:8080", "[::1]:8080" or "localhost:8080"' in message


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:80", "box.lan:80"])
def test_non_loopback_listen_without_keys_is_refused(listen: str) -> None:
    message = only_error({"server": {"listen": listen}})
    assert message.startswith(
        "server.api_keys: required when server.listen is not a loopback address "
        "(127.0.0.0/8, ::1 or localhost)"
    )
    assert f'"{listen}"' in message


def test_ipv4_mapped_loopback_counts_as_loopback() -> None:
    assert parse_config({"server": {"listen": "[::ffff:127.0.0.1]:80"}}).server.api_keys == ()


def test_api_key_errors_never_echo_the_key() -> None:
    short = "short-key"
    errors = errors_of({"server": {"api_keys": [short, "has space" * 3, KEY, KEY]}})
    assert errors == [
        "server.api_keys[0]: a key of 9 characters is too short; "
        "use a random key of at least 16 characters",
        "server.api_keys[1]: the key contains spaces or control characters; "
        "use printable characters only, e.g. letters, digits, '-' and '_'",
        "server.api_keys[3]: the same key as server.api_keys[2]; list each key once",
    ]
    assert all(short not in e and KEY not in e for e in errors)


def test_invalid_api_keys_do_not_also_report_missing_keys() -> None:
    errors = errors_of({"server": {"listen": "0.0.0.0:80", "api_keys": ["short"]}})
    assert len(errors) == 1
    assert errors[0].startswith("server.api_keys[0]: ")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://origin.example/a.m3u8", 'has scheme "ftp"'),
        ("rtmp://origin.example/live", 'has scheme "rtmp"'),
        ("file:///tmp/a.m3u8", 'has scheme "file"'),
        ("origin.example/a.m3u8", "is not an absolute URL"),
        ("https:///a.m3u8", "has no host"),
        ("https://origin.example:99999/a.m3u8", "has an invalid port"),
        ("https://origin.example/a b.m3u8", "contains spaces or control characters"),
        ("", "is not an absolute URL"),
    ],
)
def test_bad_stream_url(url: str, fragment: str) -> None:
    message = only_error({"streams": [stream(url=url)]})
    assert message.startswith("streams[0].url: ")
    assert fragment in message
    assert "use an http:// or https:// URL" in message


def test_bad_public_url() -> None:
    assert only_error({"server": {"public_url": "ftp://x.example"}}).startswith(
        'server.public_url: "ftp://x.example" has scheme "ftp"'
    )
    assert "has a query or fragment" in only_error(
        {"server": {"public_url": "https://x.example/?a=1"}}
    )


@pytest.mark.parametrize(
    "stream_id", ["", "Channel7", "-lead", "_lead", "has space", "a" * 64, "ümlaut", "a.b", "a\n"]
)
def test_bad_stream_id(stream_id: str) -> None:
    message = only_error({"streams": [stream(id=stream_id)]})
    assert message.startswith("streams[0].id: ")
    assert 'use 1 to 63 lowercase letters, digits, "_" or "-"' in message


@pytest.mark.parametrize("stream_id", ["a", "0", "channel-7_b", "a" * 63])
def test_good_stream_id(stream_id: str) -> None:
    assert parse_config({"streams": [stream(id=stream_id)]}).streams[0].id == stream_id


def test_required_stream_keys() -> None:
    assert errors_of({"streams": [{}]}) == [
        "streams[0].id: required; use 1 to 63 lowercase letters, digits, "
        '"_" or "-", starting with a letter or digit',
        "streams[0].url: required; use an http:// or https:// URL of a master or media playlist",
    ]


def test_duplicate_stream_ids() -> None:
    errors = errors_of({"streams": [stream(id="a"), stream(id="b"), stream(id="a")]})
    assert errors == ['streams[2].id: "a" is already used by streams[0]; stream ids must be unique']


def test_bad_headers_never_echo_the_value() -> None:
    errors = errors_of(
        {
            "streams": [
                stream(
                    headers={
                        "Authorization": "Bearer one",
                        "authorization": "Bearer two",
                        "Bad Name": "x",
                        "X-Split": "a\r\nInjected: yes",
                    }
                )
            ]
        }
    )
    assert [e.split(": ")[0] for e in errors] == [
        "streams[0].headers.authorization",
        'streams[0].headers."Bad Name"',
        "streams[0].headers.X-Split",
    ]
    assert "header names ignore case" in errors[0]
    assert all("Bearer" not in e and "Injected" not in e for e in errors)


def test_bad_user_agent() -> None:
    assert only_error({"ingest": {"user_agent": ""}}).startswith("ingest.user_agent: ")
    assert only_error({"ingest": {"user_agent": "a\nb"}}).startswith("ingest.user_agent: ")


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
listen = "0.0.0.0:80"
colour = "blue"

[clips]
workers = "two"
max_wait = "5x"

[ingest]
max_concurrent_downloads = 0

[[streams]]
id = "Bad Id"
url = "ftp://x"
retention = "1s"

[[streams]]
id = "ok"
url = "https://o.example/a.m3u8"

[[streams]]
id = "ok"
url = "https://o.example/b.m3u8"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [e.split(": ")[0] for e in info.value.errors]
    assert keys == [
        "server.colour",
        "server.api_keys",
        "clips.workers",
        "clips.max_wait",
        "ingest.max_concurrent_downloads",
        "streams[0].id",
        "streams[0].url",
        "streams[0].retention",
        "streams[2].id",
    ]
    text = str(info.value)
    assert text.splitlines() == [f"{path}: {e}" for e in info.value.errors]
    assert info.value.source == str(path)


def test_config_error_is_a_value_error() -> None:
    error = ConfigError(["a: one", "b: two"])
    assert isinstance(error, ValueError)
    assert str(error) == "a: one\nb: two"
    assert error.errors == ["a: one", "b: two"]


# --- files ----------------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "127.0.0.1:8080"\ndata_dir = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (message,) = info.value.errors
    assert message.startswith("TOML syntax error at line 3, column ")
    assert str(info.value).startswith(f"{path}: TOML syntax error at line 3")


def test_toml_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "127.0.0.1:8080\n')
    with pytest.raises(ConfigError, match=r"TOML syntax error at line 2"):
        load_config(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[ingest]\n\nuser_agent = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == ["line 3: not valid UTF-8; save the file as UTF-8"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[clips]\nworkers = 3\n")
    assert load_config(path).clips.workers == 3


def test_semantic_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[clips]\nworkers = 99\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: clips.workers: 99 is out of range; use a whole number from 1 to 32"
    )


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert len(config.streams) == 2
    assert any(s.headers for s in config.streams)
    assert config.server.api_keys == ()


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for table in ("server", "clips", "ingest", "storage", "webhooks", "streams"):
        assert table in text
    assert re.search(r"^#? ?\[storage\.s3\]$", text, re.MULTILINE)
    assert re.search(r"^#? ?\[cluster\]$", text, re.MULTILINE)
    for name in (
        *storage_module._CLUSTER_KEYS,
        *(key for key in storage_module._STORAGE_KEYS if key != "s3"),
        *storage_module._S3_KEYS,
        *server_module._WEBHOOKS_KEYS,
        *server_module._ENDPOINT_KEYS,
        *server_module._SERVER_KEYS,
        *server_module._CLIPS_KEYS,
        *streams_module._INGEST_KEYS,
        *streams_module._STREAM_KEYS,
    ):
        assert re.search(rf"^#? ?{name} = ", text, re.MULTILINE), name


def test_rendition_choices() -> None:
    from livecut.config import parse_config
    from livecut.hls.playlist import RenditionFilter

    def renditions(value: object) -> object:
        config = parse_config(
            {"streams": [{"id": "a", "url": "http://o/x.m3u8", "renditions": value}]}
        )
        return config.streams[0].renditions

    assert renditions("all") == "all"
    assert renditions([{"max_height": 720}, {"name": "audio-aud-en"}]) == (
        RenditionFilter(max_height=720),
        RenditionFilter(name="audio-aud-en"),
    )
    for bad, fragment in [
        ("some", 'use "best", "all"'),
        ([{"max_hieght": 720}], "streams[0].renditions[0].max_hieght: unknown key"),
        ([{"max_height": "720"}], "streams[0].renditions[0].max_height"),
        ([{}], "an empty filter matches everything"),
    ]:
        with pytest.raises(ConfigError) as caught:
            renditions(bad)
        assert any(fragment in e for e in caught.value.errors), caught.value.errors


def test_storage_floor_keys() -> None:
    from livecut.config import ConfigError, StorageConfig, parse_config

    storage = parse_config(
        {"storage": {"min_free_bytes": "2GiB", "min_free_percent": 7.5, "keep_live_segments": 4}}
    ).storage
    assert storage == StorageConfig(
        min_free_bytes=2 * 1024**3, min_free_percent=7.5, keep_live_segments=4
    )
    assert parse_config({"storage": {"min_free_bytes": "500 MB"}}).storage.min_free_bytes == (
        500_000_000
    )
    assert parse_config({"storage": {"min_free_bytes": 0}}).storage.min_free_bytes == 0
    assert parse_config({}).storage == StorageConfig()
    for bad, key, allowed in (
        ({"min_free_bytes": "lots"}, "storage.min_free_bytes", '"2GiB"'),
        ({"min_free_bytes": -1}, "storage.min_free_bytes", "negative"),
        ({"min_free_bytes": True}, "storage.min_free_bytes", "whole number"),
        ({"min_free_bytes": "2PiB"}, "storage.min_free_bytes", "is not a size"),
        ({"min_free_percent": 95}, "storage.min_free_percent", "from 0 to 90"),
        ({"min_free_percent": "5%"}, "storage.min_free_percent", "from 0 to 90"),
        ({"keep_live_segments": 0}, "storage.keep_live_segments", "from 1 to 100000"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({"storage": bad})
        (message,) = caught.value.errors
        assert message.startswith(f"{key}: ") and allowed in message, message


def test_overlays_name_images_that_open(tmp_path: Path) -> None:
    from PIL import Image

    logo = tmp_path / "logo.png"
    Image.new("RGBA", (40, 20), (255, 0, 0, 128)).save(logo)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    config = parse_config({"overlays": {"logo": str(logo)}})
    assert config.overlays == (("logo", logo),)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "overlays": {
                    "missing": str(tmp_path / "missing.png"),
                    "broken": str(tmp_path / "broken.png"),
                    "ovl_x": str(logo),
                }
            }
        )
    text = "\n".join(caught.value.errors)
    assert "overlays.missing:" in text and "does not exist" in text
    assert "overlays.broken:" in text and "cannot be read as a PNG or WebP image" in text
    assert "overlays.ovl_x:" in text


S3_TABLE = {"bucket": "livecut-media", "endpoint": "http://127.0.0.1:9000/"}


def storage_errors(storage: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"storage": storage})
    return caught.value.errors


def test_storage_s3_keys() -> None:
    from livecut.config import S3Config, StorageConfig

    storage = parse_config(
        {
            "storage": {
                "backend": "s3",
                "s3": {
                    "endpoint": "https://s3.example.com:9000/",
                    "region": "eu-central-1",
                    "bucket": "livecut-media",
                    "prefix": "media/livecut",
                    "downloads": "proxy",
                    "url_expiry": "2h",
                    "cache_bytes": "512MiB",
                },
            }
        }
    ).storage
    assert storage == StorageConfig(
        backend="s3",
        s3=S3Config(
            endpoint="https://s3.example.com:9000",
            region="eu-central-1",
            bucket="livecut-media",
            prefix="media/livecut/",
            downloads="proxy",
            url_expiry_s=7200,
            cache_bytes=512 * 1024**2,
        ),
    )
    assert storage.s3 is not None
    assert storage.s3.key("clips/clp_x/clip.mp4") == "media/livecut/clips/clp_x/clip.mp4"

    defaults = parse_config({"storage": {"backend": "s3", "s3": {"bucket": "b.c-1"}}}).storage.s3
    assert defaults == S3Config(bucket="b.c-1")
    assert (defaults.endpoint, defaults.region, defaults.prefix) == (None, "us-east-1", "")
    assert (defaults.downloads, defaults.url_expiry_s, defaults.cache_bytes) == (
        "presigned",
        3600,
        2 * 1024**3,
    )
    assert defaults.key("streams/cam/x.ts") == "streams/cam/x.ts"
    for prefix, normalised in (("", ""), ("a", "a/"), ("a/b/", "a/b/"), ("x_1.y=z+", "x_1.y=z+/")):
        table = {"storage": {"backend": "s3", "s3": {**S3_TABLE, "prefix": prefix}}}
        s3 = parse_config(table).storage.s3
        assert s3 is not None and s3.prefix == normalised, prefix

    # Without backend = "s3" the table is checked but not used.
    local = parse_config({"storage": {"s3": S3_TABLE}}).storage
    assert (local.backend, local.s3) == ("local", None)
    assert parse_config({}).storage.backend == "local"
    assert any(
        e.startswith("storage.s3.bucket: ")
        for e in storage_errors({"s3": {**S3_TABLE, "bucket": "Bad_Bucket"}})
    )


def test_storage_s3_errors_name_the_key_and_the_allowed_values() -> None:
    for storage, key, allowed in (
        ({"backend": "nfs"}, "storage.backend", '"local" or "s3"'),
        ({"backend": "s3"}, "storage.s3", "[storage.s3] table with at least bucket"),
        ({"backend": "s3", "s3": "bucket"}, "storage.s3", "write it as [storage.s3]"),
        ({"s3": {"endpoint": "http://x"}}, "storage.s3.bucket", "required"),
        ({"s3": {"bucket": "ab"}}, "storage.s3.bucket", "3 to 63 lowercase letters"),
        ({"s3": {"bucket": "a..b"}}, "storage.s3.bucket", "3 to 63 lowercase letters"),
        ({"s3": {"bucket": "-abc"}}, "storage.s3.bucket", "3 to 63 lowercase letters"),
        ({"s3": {**S3_TABLE, "endpoint": "ftp://x"}}, "storage.s3.endpoint", "http:// or https://"),
        ({"s3": {**S3_TABLE, "endpoint": "http://x/bucket"}}, "storage.s3.endpoint", "base URL"),
        ({"s3": {**S3_TABLE, "region": "us east"}}, "storage.s3.region", '"us-east-1"'),
        ({"s3": {**S3_TABLE, "prefix": "/abs"}}, "storage.s3.prefix", "folder names"),
        ({"s3": {**S3_TABLE, "prefix": "a//b"}}, "storage.s3.prefix", "folder names"),
        ({"s3": {**S3_TABLE, "prefix": "a/../b"}}, "storage.s3.prefix", "folder names"),
        ({"s3": {**S3_TABLE, "prefix": "/"}}, "storage.s3.prefix", "folder names"),
        ({"s3": {**S3_TABLE, "prefix": 7}}, "storage.s3.prefix", "not a string"),
        ({"s3": {**S3_TABLE, "downloads": "redirect"}}, "storage.s3.downloads", '"proxy"'),
        ({"s3": {**S3_TABLE, "url_expiry": "30s"}}, "storage.s3.url_expiry", "from 1m to 7d"),
        ({"s3": {**S3_TABLE, "url_expiry": "8d"}}, "storage.s3.url_expiry", "from 1m to 7d"),
        ({"s3": {**S3_TABLE, "cache_bytes": "lots"}}, "storage.s3.cache_bytes", '"2GiB"'),
        ({"s3": {**S3_TABLE, "cache_bytes": 2 * 1024**5}}, "storage.s3.cache_bytes", "0 to 1PiB"),
        ({"s3": {**S3_TABLE, "bukket": "x"}}, "storage.s3.bukket", 'did you mean "bucket"'),
    ):
        errors = storage_errors(storage)
        assert len(errors) == 1, errors
        (message,) = errors
        assert message.startswith(f"{key}: ") and allowed in message, message


def test_access_keys_in_the_main_config_are_refused_without_being_echoed() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    errors = storage_errors(
        {
            "backend": "s3",
            "secret_access_key": secret,
            "s3": {**S3_TABLE, "access_key_id": "AKIAEXAMPLE", "secret_access_key": secret},
        }
    )
    assert [e.partition(":")[0] for e in errors] == [
        "storage.secret_access_key",
        "storage.s3.access_key_id",
        "storage.s3.secret_access_key",
    ]
    for message in errors:
        assert "do not belong in the main config" in message
        assert "storage.s3.credentials_file" in message
        assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
        assert secret not in message and "AKIAEXAMPLE" not in message
        assert "unknown key" not in message


def test_s3_credentials_from_a_file(tmp_path: Path) -> None:
    from livecut.config import S3Config, read_s3_credentials

    good = tmp_path / "s3.toml"
    good.write_text('access_key_id = "AKIAEXAMPLE"\nsecret_access_key = "s3cr3t/Value+1"\n')
    table = {**S3_TABLE, "credentials_file": str(good)}
    s3 = parse_config({"storage": {"backend": "s3", "s3": table}}).storage.s3
    assert s3 is not None and s3.credentials_file == good
    credentials = read_s3_credentials(s3, {"AWS_ACCESS_KEY_ID": "ignored"})
    assert (credentials.access_key_id, credentials.secret_access_key) == (
        "AKIAEXAMPLE",
        "s3cr3t/Value+1",
    )
    assert credentials.session_token is None and credentials.source == str(good)
    assert "s3cr3t" not in repr(credentials) and "AKIAEXAMPLE" not in repr(credentials)

    cases = {
        "missing.toml": (None, "does not exist"),
        "syntax.toml": ('access_key_id = "AKIA\nsecret', "TOML syntax error at line 1"),
        "half.toml": ('access_key_id = "AKIAEXAMPLE"\n', "has no secret_access_key"),
        "number.toml": ('access_key_id = 7\nsecret_access_key = "s3cr3t"\n', "in quotes"),
        "spaces.toml": ('access_key_id = "AKIA X"\nsecret_access_key = "s3cr3t"\n', "spaces"),
        "extra.toml": (
            'access_key_id = "AKIAEXAMPLE"\nsecret_access_key = "s3cr3t"\nregion = "x"\n',
            "region: unknown key",
        ),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        errors = storage_errors({"s3": {**S3_TABLE, "credentials_file": str(path)}})
        assert len(errors) == 1, errors
        (message,) = errors
        assert message.startswith(f"storage.s3.credentials_file: {path}"), message
        assert fragment in message, message
        assert "s3cr3t" not in message

    with pytest.raises(ConfigError) as caught:
        read_s3_credentials(S3Config(bucket="abc", credentials_file=tmp_path / "gone.toml"), {})
    assert "does not exist" in caught.value.errors[0]


def test_s3_credentials_from_the_environment() -> None:
    from livecut.config import S3Config, read_s3_credentials

    s3 = S3Config(bucket="abc")
    credentials = read_s3_credentials(
        s3,
        {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "AWS_SESSION_TOKEN": "token",
        },
    )
    assert (credentials.access_key_id, credentials.secret_access_key) == ("AKIAEXAMPLE", "s3cr3t")
    assert credentials.session_token == "token" and credentials.source == "the environment"
    for environ, missing in (
        ({}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are"),
        ({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}, "AWS_SECRET_ACCESS_KEY is"),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}, "AWS_ACCESS_KEY_ID is"),
    ):
        with pytest.raises(ConfigError) as caught:
            read_s3_credentials(s3, environ)
        (message,) = caught.value.errors
        assert message.startswith("storage.s3.credentials_file: not set, and ")
        assert f"{missing} not in the environment" in message
        assert "s3cr3t" not in message


def test_storage_config_keeps_backend_and_s3_together() -> None:
    from livecut.config import S3Config, StorageConfig

    with pytest.raises(ValueError, match="backend"):
        StorageConfig(backend="s3")
    with pytest.raises(ValueError, match="backend"):
        StorageConfig(s3=S3Config(bucket="abc"))


def test_cluster_section() -> None:
    from livecut.config import parse_config

    base: dict[str, object] = {"streams": [{"id": "a", "url": "http://o/x.m3u8"}]}
    alone = parse_config(base)
    assert alone.cluster.index_url is None and alone.cluster.node_id
    config = parse_config(
        {
            **base,
            "cluster": {
                "index_url": "postgresql://livecut@db.example:5432/livecut?sslmode=require",
                "node_id": "rec-1",
                "lease_s": "5s",
            },
        }
    )
    assert (
        config.cluster.index_url == "postgresql://livecut@db.example:5432/livecut?sslmode=require"
    )
    assert (config.cluster.node_id, config.cluster.lease_s) == ("rec-1", 5.0)
    for cluster, wanted in (
        ({"index_url": "postgresql://livecut:hunter2@db/livecut"}, "PGPASSWORD"),
        ({"index_url": "mysql://db/livecut"}, "scheme 'mysql' is not supported"),
        ({"index_url": "postgresql://livecut@db"}, "needs a host and a database"),
        ({"index_url": 5}, "is not a URL"),
        ({"node_id": "two words"}, "cluster.node_id"),
        ({"lease_s": "1s"}, "from 2s to 300s"),
        ({"lease": 3}, "lease"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({**base, "cluster": cluster})
        assert wanted in str(caught.value), (cluster, str(caught.value))
        assert "hunter2" not in str(caught.value)


def test_the_environment_names_the_index_over_the_file() -> None:
    from livecut.config import INDEX_URL_VARIABLE, parse_config

    data: dict[str, object] = {"cluster": {"index_url": "postgresql://a@file.example/x"}}
    env = {INDEX_URL_VARIABLE: "postgresql://b@env.example:5433/y"}
    assert parse_config(data, environ=env).cluster.index_url == env[INDEX_URL_VARIABLE]
    assert parse_config({}, environ=env).cluster.index_url == env[INDEX_URL_VARIABLE]
    # Set but empty: the file's (or none).
    empty = {INDEX_URL_VARIABLE: ""}
    assert parse_config(data, environ=empty).cluster.index_url == "postgresql://a@file.example/x"
    assert parse_config({}, environ={}).cluster.index_url is None
    with pytest.raises(ConfigError) as caught:
        parse_config({}, environ={INDEX_URL_VARIABLE: "postgresql://b:hunter2@env/y"})
    assert f"{INDEX_URL_VARIABLE}: holds a password" in str(caught.value)
    assert "hunter2" not in str(caught.value)
