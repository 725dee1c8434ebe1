"""The fault-script middleware, against a two-route aiohttp app on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from tests.engines import NO_INDEX
from tests.faults import (
    Delay,
    FaultScript,
    Freeze,
    Garbage,
    Oversize,
    Redirect,
    Reset,
    Status,
    Truncate,
)

pytestmark = NO_INDEX

BYTES_BODY = bytes(range(256)) * 4  # 1024 bytes
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


@dataclass(kw_only=True, slots=True)
class Origin:
    script: FaultScript
    session: aiohttp.ClientSession
    base: str

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.read()

    async def text(self, path: str = "/text") -> str:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200
            return await response.text()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    version = 0

    async def text(request: web.Request) -> web.Response:
        nonlocal version
        version += 1
        return web.Response(text=f"version {version}", content_type=PLAYLIST_TYPE)

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=BYTES_BODY, content_type="video/mp2t")

    script = FaultScript()
    app = web.Application(middlewares=[script.middleware])
    app.router.add_get("/text", text)
    app.router.add_get("/bytes", data)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            yield Origin(script=script, session=session, base=f"http://{host}:{port}")
    finally:
        script.clear()  # lets any request still held by a Delay go
        await runner.cleanup()


async def test_unmatched_requests_pass_through(origin: Origin) -> None:
    origin.script.add("^/bytes", Status(500))
    assert await origin.text() == "version 1"
    assert origin.script.hits == []


@pytest.mark.parametrize("code", [403, 404, 410, 500, 503])
async def test_status_answers_code_then_recovers(origin: Origin, code: int) -> None:
    origin.script.add("^/text", Status(code))
    status, body = await origin.get("/text")
    assert status == code
    assert body.startswith(str(code).encode())
    assert await origin.text() == "version 1"  # the real handler never saw the faulted one
    assert origin.script.hits == [("/text", "Status")]


async def test_delay_trips_the_client_timeout(origin: Origin) -> None:
    origin.script.add("^/bytes", Delay(60.0))
    with pytest.raises(TimeoutError):
        await origin.session.get(origin.base + "/bytes", timeout=aiohttp.ClientTimeout(total=0.2))
    assert await origin.get("/bytes") == (200, BYTES_BODY)


async def test_delay_serves_the_real_body_when_released(origin: Origin) -> None:
    origin.script.add("^/text", Delay(60.0))
    held = asyncio.create_task(origin.text())
    await origin.script.wait_hits(1)
    assert not held.done()
    origin.script.clear()
    assert await held == "version 1"


async def test_reset_is_a_connection_error(origin: Origin) -> None:
    # times=2: aiohttp's client retries an idempotent request once after a disconnect.
    origin.script.add("^/bytes", Reset(), times=2)
    with pytest.raises(aiohttp.ClientConnectionError) as caught:
        await origin.get("/bytes")
    assert isinstance(caught.value, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
    assert origin.script.hit_count() == 2
    assert await origin.get("/bytes") == (200, BYTES_BODY)


async def raw_get(origin: Origin, path: str) -> bytes:
    """Everything the server sends for one request, up to its hang-up: no client smarts."""
    host, port = origin.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


async def test_reset_sends_not_a_byte(origin: Origin) -> None:
    origin.script.add("^/bytes", Reset())
    assert await raw_get(origin, "/bytes") == b""


@pytest.mark.parametrize(("keep", "sent"), [(0.0, 0), (0.5, 512), (0.99, 1013)])
async def test_truncate_sends_headers_then_exactly_keep_of_the_body(
    origin: Origin, keep: float, sent: int
) -> None:
    origin.script.add("^/bytes", Truncate(keep))
    head, _, body = (await raw_get(origin, "/bytes")).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nContent-Length: 1024" in head
    assert body == BYTES_BODY[:sent]


async def test_single_reset_is_hidden_by_the_aiohttp_client_retry(origin: Origin) -> None:
    rule = origin.script.add("^/bytes", Reset())
    assert await origin.get("/bytes") == (200, BYTES_BODY)
    assert (rule.seen, rule.applied) == (2, 1)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
async def test_truncate_declares_full_length_and_breaks_the_payload(
    origin: Origin, keep: float
) -> None:
    origin.script.add("^/bytes", Truncate(keep))
    async with origin.session.get(origin.base + "/bytes") as response:
        assert response.status == 200
        assert response.content_length == len(BYTES_BODY)
        assert response.content_type == "video/mp2t"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert await origin.get("/bytes") == (200, BYTES_BODY)


async def test_garbage_is_random_bytes_of_the_given_size(origin: Origin) -> None:
    origin.script.add("^/text", Garbage(1000), times=2)
    first = await origin.get("/text")
    second = await origin.get("/text")
    for status, body in (first, second):
        assert status == 200
        assert len(body) == 1000
        assert not body.startswith(b"#EXTM3U")
    assert first[1] != second[1]
    with pytest.raises(UnicodeDecodeError):
        first[1].decode()
    assert await origin.text() == "version 1"


async def test_freeze_repeats_the_last_body_while_the_route_moves_on(origin: Origin) -> None:
    assert await origin.text() == "version 1"
    assert await origin.text() == "version 2"
    origin.script.add("^/text$", Freeze(), times=3)
    async with origin.session.get(origin.base + "/text") as response:
        assert response.content_type == PLAYLIST_TYPE
        assert await response.text() == "version 2"
    # The same route reached around the rule has moved on; the freeze must not follow it.
    assert await origin.text("/text?around") == "version 3"
    assert await origin.text() == "version 2"
    assert await origin.text() == "version 2"
    assert await origin.text() == "version 4"
    assert origin.script.hit_count("^/text$") == 3


async def test_freeze_without_history_freezes_on_the_first_body(origin: Origin) -> None:
    origin.script.add("^/text", Freeze(), times=None)
    assert [await origin.text() for _ in range(3)] == ["version 1"] * 3


@pytest.mark.parametrize("code", [301, 302, 307])
async def test_redirect(origin: Origin, code: int) -> None:
    origin.script.add("^/text", Redirect("/bytes", code), times=2)
    async with origin.session.get(origin.base + "/text", allow_redirects=False) as response:
        assert response.status == code
        assert response.headers["Location"] == "/bytes"
    assert await origin.get("/text") == (200, BYTES_BODY)


async def test_oversize_declares_and_sends_the_size(origin: Origin) -> None:
    size = 3 * 1024 * 1024 + 7
    origin.script.add("^/bytes", Oversize(size))
    async with origin.session.get(origin.base + "/bytes") as response:
        assert response.content_length == size
        body = await response.read()
    assert body == bytes(size)


async def test_oversize_survives_a_client_that_hangs_up(origin: Origin) -> None:
    origin.script.add("^/bytes", Oversize(64 * 1024 * 1024))
    async with origin.session.get(origin.base + "/bytes") as response:
        await response.content.readexactly(1024)
        response.close()
    assert await origin.get("/bytes") == (200, BYTES_BODY)


async def test_skip_and_times_pick_the_window(origin: Origin) -> None:
    rule = origin.script.add("^/bytes", Status(503), skip=2, times=2)
    statuses = [(await origin.get("/bytes"))[0] for _ in range(5)]
    assert statuses == [200, 200, 503, 503, 200]
    assert (rule.seen, rule.applied, rule.exhausted) == (5, 2, True)


async def test_times_none_is_forever(origin: Origin) -> None:
    rule = origin.script.add("^/bytes", Status(404), times=None)
    assert [(await origin.get("/bytes"))[0] for _ in range(4)] == [404] * 4
    assert not rule.exhausted


async def test_first_active_rule_wins_and_every_rule_counts(origin: Origin) -> None:
    freeze = origin.script.add("^/text", Freeze(), times=2)
    gone = origin.script.add("^/text", Status(410), skip=2, times=1)
    broken = origin.script.add("^/text", Status(500), times=None)
    statuses = [(await origin.get("/text"))[0] for _ in range(4)]
    assert statuses == [200, 200, 410, 500]
    assert [(r.seen, r.applied) for r in (freeze, gone, broken)] == [(4, 2), (4, 1), (4, 1)]
    assert [name for _, name in origin.script.hits] == ["Freeze", "Freeze", "Status", "Status"]


async def test_wait_hits_wakes_on_the_nth_matching_fault(origin: Origin) -> None:
    origin.script.add("^/bytes", Status(503), times=None)
    origin.script.add("^/text", Status(503), times=None)
    waiter = asyncio.create_task(origin.script.wait_hits(2, "^/bytes"))
    await origin.get("/bytes")
    await origin.get("/text")
    await asyncio.sleep(0)
    assert not waiter.done()
    await origin.get("/bytes")
    await asyncio.wait_for(waiter, 5.0)
    assert origin.script.hit_count("^/bytes") == 2
    assert origin.script.hit_count() == 3


async def test_wait_hits_times_out_with_a_reason(origin: Origin) -> None:
    with pytest.raises(AssertionError, match="0 of 1 faulted requests"):
        await origin.script.wait_hits(1, timeout=0.05)


async def test_clear_removes_rules(origin: Origin) -> None:
    origin.script.add("^/bytes", Status(500), times=None)
    origin.script.clear()
    assert await origin.get("/bytes") == (200, BYTES_BODY)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Status(42), "Status.code"),
        (lambda: Delay(-1.0), "Delay.seconds"),
        (lambda: Truncate(1.0), "Truncate.keep"),
        (lambda: Garbage(-1), "Garbage.size"),
        (lambda: Redirect("/x", 200), "Redirect.code"),
        (lambda: Oversize(-5), "Oversize.size"),
        (lambda: FaultScript().add("x", Reset(), times=0), "times"),
        (lambda: FaultScript().add("x", Reset(), skip=-1), "skip"),
    ],
)
def test_bad_arguments_name_the_field(make: object, field: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=field):
        make()
