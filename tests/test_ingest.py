"""Recording through what live origins do: expiring windows, stalls, missing PDT, errors."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from livecut import metrics
from livecut.daemon import Daemon
from livecut.origin import LiveOrigin
from tests.harness import daemon_config, running, until

Predicate = Callable[[], Awaitable[bool]]


async def segment_count(daemon: Daemon, stream: str = "cam") -> int:
    return len(await daemon.store.index.stream_segments(stream, 0, 2**62))


def segments_reach(daemon: Daemon, count: int, *, exactly: bool = False) -> Predicate:
    """A predicate for until(): the stream holds `count` segments (at least, or exactly)."""

    async def holds() -> bool:
        have = await segment_count(daemon)
        return have == count if exactly else have >= count

    return holds


async def test_segments_that_expired_unfetched_are_recorded_as_a_gap(data_dir: Path) -> None:
    now = [time.time()]
    origin = LiveOrigin(window=3, prefill=3, clock=lambda: now[0])
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", segments_reach(daemon, 3, exactly=True), timeout_s=20)
            now[0] += 20.0  # ten segments published while we were not looking
            await until(daemon, "cam", segments_reach(daemon, 6), timeout_s=20)
            session = (await daemon.store.index.sessions("cam"))[0]
            rendition = (await daemon.store.index.renditions(session.id))[0]
            gaps = await daemon.store.index.gaps([rendition.id], 0, 2**62)
            assert [(g.first_seq, g.last_seq, g.reason) for g in gaps] == [(3, 9, "expired")]
            assert (gaps[0].start_ms, gaps[0].end_ms) == (
                origin.segment_pdt_ms(3),
                origin.segment_pdt_ms(10),
            )
            seqs = [s.seq for s in await daemon.store.index.stream_segments("cam", 0, 2**62)]
            assert seqs == [0, 1, 2, 10, 11, 12]
            # A clip across the hole is cut, and the hole is listed.
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{daemon.base_url}/v1/clips",
                    json={
                        "stream": "cam",
                        "start_ms": origin.segment_pdt_ms(2),
                        "end_ms": origin.segment_pdt_ms(11),
                    },
                ) as response,
            ):
                assert response.status == 202
                clip_id = (await response.json())["id"]
            clip = await daemon.jobs.wait_finished(clip_id, timeout_s=30)
            assert clip is not None and clip.state == "ready" and clip.result is not None
            assert clip.result["holes"] == [
                {"start_ms": origin.segment_pdt_ms(3), "end_ms": origin.segment_pdt_ms(10)}
            ]
    finally:
        await origin.stop()


async def test_a_stalled_origin_ends_the_session_and_a_new_one_begins(data_dir: Path) -> None:
    now = [time.time()]
    origin = LiveOrigin(window=3, prefill=2, clock=lambda: now[0])
    url = await origin.start()
    try:
        config = daemon_config(data_dir, url, session_gap_s=1.5)
        async with running(config) as daemon:
            await until(daemon, "cam", segments_reach(daemon, 2, exactly=True), timeout_s=20)

            async def first_ended() -> bool:
                # The recorder updates its status when the index has taken the session's
                # end; on PostgreSQL the index answers others a round trip before that.
                ended = (await daemon.store.index.sessions("cam"))[0].state == "ended"
                return ended and daemon.recorders["cam"].status.state != "recording"

            await until(daemon, "cam", first_ended, timeout_s=20)
            first = (await daemon.store.index.sessions("cam"))[0]
            assert first.end_reason == "silence"
            assert first.ended_ms == origin.segment_pdt_ms(2)
            assert daemon.recorders["cam"].status.state == "stalled"
            now[0] += 2.0  # the origin moves again

            async def second_began() -> bool:
                return len(await daemon.store.index.sessions("cam")) == 2

            await until(daemon, "cam", second_began, timeout_s=20)
            second = (await daemon.store.index.sessions("cam"))[0]
            assert second.state == "live" and second.started_ms == origin.segment_pdt_ms(2)
    finally:
        await origin.stop()


async def test_a_playlist_without_pdt_uses_the_arrival_clock(data_dir: Path) -> None:
    origin = LiveOrigin(window=3, prefill=3, end_after=3, with_pdt=False)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            before = int(time.time() * 1000)
            await until(daemon, "cam", segments_reach(daemon, 3, exactly=True), timeout_s=20)
            session = (await daemon.store.index.sessions("cam"))[0]
            assert session.clock == "local"
            segments = await daemon.store.index.stream_segments("cam", 0, 2**62)
            # The newest segment ends about when it was fetched; each follows the last.
            assert abs(segments[-1].end_ms - before) < 2000
            for earlier, later in itertools.pairwise(segments):
                assert later.start_ms == earlier.start_ms + 2000
    finally:
        await origin.stop()


async def test_origin_errors_are_counted_and_the_recorder_keeps_trying(data_dir: Path) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    missing = url.replace("index.m3u8", "missing.m3u8")
    labels = {"stream": "cam", "kind": "http_404"}

    def counted() -> float:
        return metrics.REGISTRY.get_sample_value("livecut_origin_errors_total", labels) or 0.0

    before = counted()
    try:
        async with running(daemon_config(data_dir, missing)) as daemon:
            recorder = daemon.recorders["cam"]
            # Every origin error wakes the stream's watchers.
            await until(daemon, "cam", lambda: recorder.status.errors >= 3, timeout_s=20)
            assert recorder.status.errors >= 3
            assert recorder.status.state == "failing"
            assert recorder.status.last_error is not None and "404" in recorder.status.last_error
            assert counted() - before >= 3
            assert await daemon.store.index.sessions("cam") == []
    finally:
        await origin.stop()
