"""The ingest byte budget, fetch's use of it, and the heap trim."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from livecut import memory
from livecut.ingest.budget import ByteBudget
from livecut.ingest.fetch import FetchError, fetch
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

MIB = 1024 * 1024


async def test_takes_within_the_cap_go_at_once_and_the_rest_wait_in_order() -> None:
    budget = ByteBudget(10)
    await budget.take(6)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.take(size)
        order.append(name)

    big = asyncio.create_task(take("big", 8))
    small = asyncio.create_task(take("small", 1))  # would fit, but waits behind "big"
    await asyncio.sleep(0)
    assert order == [] and budget.held == 6
    budget.give(6)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.held == 9


async def test_a_take_larger_than_the_cap_goes_alone() -> None:
    budget = ByteBudget(10)
    await budget.take(3)
    huge = asyncio.create_task(budget.take(25))
    await asyncio.sleep(0)
    assert not huge.done()
    budget.give(3)
    await huge
    assert budget.held == 25
    budget.grow(5)  # a body longer than expected: never waits
    assert budget.held == 30
    budget.give(30)
    assert budget.held == 0


async def test_a_cancelled_waiter_leaves_no_hold_and_no_queue() -> None:
    budget = ByteBudget(10)
    await budget.take(10)
    waiting = asyncio.create_task(budget.take(4))
    behind = asyncio.create_task(budget.take(4))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.give(10)
    await behind
    assert budget.held == 4


async def test_random_holders_never_deadlock_and_stay_under_the_cap() -> None:
    rng = random.Random(7)
    budget = ByteBudget(100)
    grown = 0  # held past what was taken: bodies longer than expected
    worst = 0  # the most ever held by takes alone

    async def holder(size: int, extra: int) -> None:
        nonlocal grown, worst
        await budget.take(size)
        worst = max(worst, budget.held - grown)
        budget.grow(extra)
        grown += extra
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        grown -= extra
        budget.give(size + extra)

    sizes = [(rng.randint(1, 60), rng.choice([0, 0, rng.randint(1, 20)])) for _ in range(500)]
    async with asyncio.timeout(10):
        await asyncio.gather(*(holder(s, e) for s, e in sizes))
    assert budget.held == 0
    assert 60 < worst <= 100


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async def body(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["size"]))

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    async def chunked(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(_)
        for _part in range(4):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/bytes/{size}", body)
    app.router.add_get("/missing", missing)
    app.router.add_get("/chunked", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_fetch_holds_the_body_size_and_gives_back_on_failure(origin: str) -> None:
    budget = ByteBudget(MIB)
    async with aiohttp.ClientSession() as http:
        small = await fetch(
            http,
            f"{origin}/bytes/300",
            headers={},
            timeout_s=5,
            budget=budget,
            expected_bytes=5000,
        )
        assert small.held == 300 == budget.held  # fitted down to the body
        large = await fetch(
            http,
            f"{origin}/bytes/9000",
            headers={},
            timeout_s=5,
            budget=budget,
            expected_bytes=100,
        )
        assert large.held == 9000 and budget.held == 9300  # grown to the body
        streamed = await fetch(
            http,
            f"{origin}/chunked",
            headers={},
            timeout_s=5,
            budget=budget,
            expected_bytes=10,
        )
        assert streamed.held == 4000 and budget.held == 13300  # no Content-Length
        with pytest.raises(FetchError):
            await fetch(
                http,
                f"{origin}/missing",
                headers={},
                timeout_s=5,
                budget=budget,
                expected_bytes=777,
            )
        assert budget.held == 13300  # the failed fetch gave its share back
        with pytest.raises(FetchError):
            await fetch(
                http,
                f"{origin}/bytes/5000",
                headers={},
                timeout_s=5,
                budget=budget,
                expected_bytes=10,
                max_bytes=4000,
            )
        assert budget.held == 13300


async def test_the_heap_trim_runs_here_and_stops_when_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trim = memory.malloc_trim()
    assert trim is not None  # glibc, as on Debian
    trim()
    calls = 0
    trimmed_thrice = asyncio.Event()
    loop = asyncio.get_running_loop()

    def counting() -> None:
        nonlocal calls
        trim()
        calls += 1
        if calls == 3:  # in trim_forever's thread
            loop.call_soon_threadsafe(trimmed_thrice.set)

    monkeypatch.setattr(memory, "malloc_trim", lambda: counting)
    task = asyncio.create_task(memory.trim_forever(every_s=0.001))
    async with asyncio.timeout(10):
        await trimmed_thrice.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
