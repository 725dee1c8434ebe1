"""What ingest logs and reports: readable one-line errors, quiet after the end, summaries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from livecut.config import ConfigError, parse_config
from livecut.ingest.fetch import FetchError, fetch
from livecut.ingest.rendition import ended_reload_ms
from livecut.logs import Repeats, configure
from tests.encoders.runners import free_port
from tests.faults import Status
from tests.test_ingest_faults import PLAYLIST, rig


async def test_an_unreachable_origin_is_one_readable_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/live/index.m3u8"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(FetchError) as caught:
            await fetch(http, url, headers={}, timeout_s=5)
    assert caught.value.kind == "connection"
    assert str(caught.value) == f"origin unreachable: GET {url}: connection refused"


def test_repeats_are_logged_once_then_summarised_once_a_minute() -> None:
    repeats = Repeats(60.0)
    assert repeats.note("origin answered HTTP 503: GET u", 100.0) == (
        "origin answered HTTP 503: GET u"
    )
    assert [repeats.note("origin answered HTTP 503: GET u", 100.0 + k) for k in range(1, 60)] == [
        None
    ] * 59
    assert repeats.note("origin answered HTTP 503: GET u", 160.0) == (
        "origin answered HTTP 503: GET u … repeated 60 times in the last 60 s"
    )
    # Another message is its own: logged at once.
    assert repeats.note("origin timed out: GET u", 161.0) == "origin timed out: GET u"
    assert repeats.note("origin answered HTTP 503: GET u", 170.0) is None
    assert repeats.flush(175.0) == [
        "origin answered HTTP 503: GET u … repeated 1 times in the last 15 s"
    ]
    assert repeats.note("origin answered HTTP 503: GET u", 176.0) == (
        "origin answered HTTP 503: GET u"
    )


def test_ended_playlists_are_reloaded_ever_more_slowly_up_to_a_minute() -> None:
    assert [ended_reload_ms(n) for n in range(1, 8)] == [
        5_000,
        10_000,
        20_000,
        40_000,
        60_000,
        60_000,
        60_000,
    ]


async def test_repeated_errors_are_summarised_and_last_error_clears_on_recovery(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="livecut")
    async with rig(data_dir, prefill=3) as r:
        await r.until(r.recorded(3))
        r.script.add(PLAYLIST, Status(503), times=None)
        await r.until(lambda: r.errors().get("http_5xx", 0) >= 4)
        status = await r.api_stream()
        assert status["state"] in ("recording", "failing")
        assert (
            status["last_error"] == f"origin answered HTTP 503: GET {r.origin.base_url}/index.m3u8"
        )
        warned = [m for m in caplog.messages if "HTTP 503" in m]
        assert len(warned) == 1  # the rest wait for a summary
        [record] = [rec for rec in caplog.records if "HTTP 503" in rec.getMessage()]
        # The fields a JSON log line carries beside the text:
        assert (getattr(record, "stream", None), getattr(record, "kind", None)) == (
            r.stream,
            "http_5xx",
        )
        assert "Error" not in warned[0] and "(" not in warned[0]  # no exception repr

        r.script.clear()
        r.advance()
        await r.until(r.recorded(4))
        await r.until(lambda: r.daemon.recorders[r.stream].status.last_error is None)
        status = await r.api_stream()
        assert status["state"] == "recording" and status["last_error"] is None
        summaries = [m for m in caplog.messages if "HTTP 503" in m and "repeated" in m]
        assert len(summaries) == 1
        assert any(m.endswith("recovered") for m in caplog.messages)


async def test_after_endlist_a_vanished_origin_is_not_an_origin_error(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="livecut")
    async with rig(data_dir, prefill=3, end_after=4) as r:
        r.advance()
        await r.until(r.ended)
        await r.origin.stop()
        first = len(caplog.records)
        # The first reload after the end comes 5 s later; it finds nobody there.
        await r.until(
            lambda: any("(ended)" in rec.getMessage() for rec in caplog.records[first:]),
            timeout_s=20,
        )
        after = caplog.records[first:]
        assert not [rec for rec in after if rec.levelno >= logging.WARNING]
        assert any("origin unreachable" in rec.getMessage() for rec in after)
        assert "connection" not in r.errors()
        status = await r.api_stream()
        assert status["state"] == "ended" and status["last_error"] is None
        ended = [m for m in caplog.messages if "ended (EXT-X-ENDLIST)" in m]
        assert len(ended) == 1


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_logs_are_one_object_per_line(root_logging: None) -> None:
    sink = io.StringIO()
    configure("json", level=logging.INFO, stream=sink)
    log = logging.getLogger("livecut.ingest.sessions")
    fields = {"stream": "cam", "kind": "timeout"}
    log.warning("stream %s: %s: %s", "cam", "timeout", "origin timed out: GET u", extra=fields)
    log.info("two\nlines")
    first, second = sink.getvalue().splitlines()
    entry = json.loads(first)
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    assert (entry["level"], entry["logger"]) == ("warning", "livecut.ingest.sessions")
    assert entry["msg"] == "stream cam: timeout: origin timed out: GET u"
    assert (entry["stream"], entry["kind"]) == ("cam", "timeout")
    assert json.loads(second)["msg"] == "two\nlines"


def test_log_format_is_checked() -> None:
    assert parse_config({"log": {"format": "json"}}).log.format == "json"
    assert parse_config({}).log.format == "text"
    with pytest.raises(ConfigError) as caught:
        parse_config({"log": {"format": "xml", "colour": True}})
    text = str(caught.value)
    assert "log.format" in text and '"text" or "json"' in text
    assert "colour" in text
