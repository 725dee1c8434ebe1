"""Every endpoint answers bad input with a 4xx JSON error that names the problem, never a 500."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp
import pytest

from livecut.api.app import OPENAPI, routes
from livecut.origin import LiveOrigin
from tests.encoders.runners import free_port
from tests.harness import daemon_config, running, session_ended, until

NOW = int(time.time() * 1000)


def clip(**fields: object) -> dict[str, object]:
    return {"stream": "cam", "start_ms": NOW - 4000, "end_ms": NOW - 1000, **fields}


BAD_CLIPS: list[tuple[object, int, str]] = [
    ({}, 422, "start_ms is required"),
    ({"stream": "cam", "end_ms": NOW - 1000}, 422, "start_ms is required"),
    ({"start_ms": NOW - 4000, "end_ms": NOW}, 422, "one of stream or session"),
    (clip(start_ms="yesterday"), 422, "start_ms must be an integer"),
    (clip(end_ms=str(NOW)), 422, "end_ms must be an integer"),
    (clip(start_ms=NOW - 4000.5), 422, "start_ms must be an integer"),
    (clip(start_ms=True), 422, "start_ms must be an integer"),
    (clip(start_ms=None), 422, "start_ms must be an integer"),
    (clip(start_ms=NOW // 1000, end_ms=NOW // 1000 + 5), 422, "Unix time in milliseconds"),
    (clip(start_ms=NOW, end_ms=NOW - 5000), 422, "must be after start_ms"),
    (clip(start_ms=NOW - 1000, end_ms=NOW - 1000), 422, "must be after start_ms"),
    (clip(start_ms=NOW - 1300, end_ms=NOW - 1000), 422, "at least 500 ms"),
    (clip(start_ms=NOW - 30 * 86_400_000), 422, "clips.max_duration"),
    (clip(end_ms=NOW + 3_600_000), 422, "clips.max_wait"),
    (clip(stream="nope"), 404, "unknown stream 'nope'"),
    (clip(stream=7), 422, "stream must be a string"),
    (clip(session="ses_missing", stream=None), 404, "unknown session"),
    (clip(duration=5), 422, "unknown field(s) duration"),
    (clip(name="x" * 500), 422, "name must be a string"),
    (clip(name="a\x00b"), 400, "a NUL character (\\u0000) in a string"),
    ([1, 2], 400, "must be a JSON object"),
    ("text", 400, "must be a JSON object"),
]


@pytest.fixture
async def daemon_url(data_dir: Path):  # type: ignore[no-untyped-def]
    origin = LiveOrigin(prefill=2, end_after=2)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            yield daemon.base_url
    finally:
        await origin.stop()


async def expect_error(response: aiohttp.ClientResponse, status: int, fragment: str) -> None:
    body = await response.json()
    assert response.status == status, body
    assert isinstance(body["errors"], list) and body["errors"]
    assert any(fragment in e for e in body["errors"]), body["errors"]


async def test_bad_clip_requests(daemon_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for body, status, fragment in BAD_CLIPS:
            async with http.post(f"{daemon_url}/v1/clips", json=body) as response:
                await expect_error(response, status, fragment)
        async with http.post(
            f"{daemon_url}/v1/clips",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as response:
            await expect_error(response, 400, "not valid JSON")
        async with http.post(f"{daemon_url}/v1/clips", data=b"x" * 200_000) as response:
            await expect_error(response, 413, "larger than")


async def test_range_with_no_media_lists_recorded_ranges(daemon_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        body = clip(start_ms=NOW - 600_000, end_ms=NOW - 590_000)
        async with http.post(f"{daemon_url}/v1/clips", json=body) as response:
            await expect_error(response, 422, "nothing of stream 'cam' is recorded")
            ranges = (await response.json())["recorded_ranges"]
            assert len(ranges) == 1 and ranges[0]["end_ms"] > ranges[0]["start_ms"]


async def test_a_clip_of_a_stream_that_has_recorded_nothing_yet_says_what_to_wait_for(
    data_dir: Path,
) -> None:
    # An origin that is not up yet: nothing listens on its port.
    config = daemon_config(data_dir, f"http://127.0.0.1:{free_port()}/live.m3u8")
    async with running(config) as daemon, aiohttp.ClientSession() as http:
        async with http.post(f"{daemon.base_url}/v1/clips", json=clip()) as response:
            await expect_error(response, 422, "stream 'cam' has recorded nothing yet")
            body = await response.json()
        said = re.search(r"its recorder is (\w+)", body["errors"][0])
        assert said is not None and said[1] in ("connecting", "failing"), body
        assert "session.started" in body["errors"][0]
        assert body["recorded_ranges"] == []


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/v1/clips/clip_nope", 404, "unknown clip"),
        ("GET", "/v1/clips/clip_nope/clip.mp4", 404, "unknown clip"),
        ("DELETE", "/v1/clips/clip_nope", 404, "unknown clip"),
        ("GET", "/v1/clips?limit=abc", 400, "limit must be an integer"),
        ("GET", "/v1/clips?limit=0", 400, "limit must be an integer"),
        ("GET", "/v1/clips?cursor=zzz", 400, "cursor"),
        ("GET", "/v1/streams/nope", 404, "unknown stream 'nope'"),
        ("GET", "/v1/streams/nope/sessions", 404, "unknown stream"),
        ("GET", "/v1/streams/cam/sessions?limit=-1", 400, "limit"),
        ("GET", "/v1/sessions/ses_nope", 404, "unknown session"),
        ("GET", "/v1/nothing-here", 404, "Not Found"),
        ("PUT", "/v1/clips", 405, "Method Not Allowed"),
        # No index stores a NUL (PostgreSQL's text cannot even be asked for one).
        ("GET", "/v1/webhooks/deliveries?clip=a%00b", 400, "query parameter 'clip' holds a NUL"),
        ("GET", "/v1/clips/clip_%00", 400, "the path holds a NUL"),
    ],
)
async def test_bad_reads(
    daemon_url: str, method: str, path: str, status: int, fragment: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{daemon_url}{path}") as response,
    ):
        await expect_error(response, status, fragment)


async def test_clip_not_ready_is_409_and_deleted_clip_is_gone(daemon_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon_url}/v1/streams/cam/sessions") as response:
            session = (await response.json())["sessions"][0]
        body = {"stream": "cam", "start_ms": session["start_ms"], "end_ms": session["end_ms"]}
        async with http.post(f"{daemon_url}/v1/clips", json=body) as response:
            assert response.status == 202
            clip_id = (await response.json())["id"]
        async with http.delete(f"{daemon_url}/v1/clips/{clip_id}") as response:
            assert response.status == 204
        async with http.get(f"{daemon_url}/v1/clips/{clip_id}") as response:
            await expect_error(response, 404, "unknown clip")


def test_openapi_document_lists_exactly_the_routes() -> None:
    spec = json.loads(OPENAPI.read_text())
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    served = {(method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)) for method, path, _ in routes()}
    served |= {("HEAD", path) for method, path in served if method == "GET"}
    assert documented == served
