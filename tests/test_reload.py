"""Reload: which recorders start, stop or restart, which keys need a restart; applying it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp

from livecut.config import parse_config
from livecut.daemon import Daemon
from livecut.origin import LiveOrigin
from livecut.reload import ReloadOutcome, plan_reload
from tests.harness import daemon_config, running, until

WAIT_S = 30.0  # an upper bound; a passing test never comes close

A = {"id": "a", "url": "http://o/a.m3u8"}
B = {"id": "b", "url": "http://o/b.m3u8"}
C = {"id": "c", "url": "http://o/c.m3u8"}


def test_added_removed_changed_and_untouched_streams() -> None:
    running = parse_config({"streams": [A, B, C]})
    new = parse_config(
        {"streams": [A, {**B, "url": "http://o/b2.m3u8"}, {"id": "d", "url": "http://o/d.m3u8"}]}
    )
    plan = plan_reload(running, new)
    assert [s.id for s in plan.started] == ["d"]
    assert plan.stopped == ("c",)
    assert [s.id for s in plan.restarted] == ["b"]
    assert plan.restarted[0].url == "http://o/b2.m3u8"
    assert plan.updated == () and plan.needs_restart == () and plan.shots == ()
    assert [s.id for s in plan.config.streams] == ["a", "b", "d"]


def test_what_a_recorder_reads_restarts_it_the_rest_does_not() -> None:
    running = parse_config({"streams": [A, B, C]})
    new = parse_config(
        {
            "streams": [
                {**A, "retention": "2h", "playback_id": "alias"},
                {**B, "headers": {"Authorization": "Bearer x"}},
                {**C, "renditions": "all"},
            ]
        }
    )
    plan = plan_reload(running, new)
    assert plan.updated == ("a",)
    assert [s.id for s in plan.restarted] == ["b", "c"]
    assert plan.config.streams[0].retention_s == 7200.0


def test_enabling_disabling_and_shots() -> None:
    running = parse_config({"streams": [A, {**B, "shots": True}, {**C, "enabled": False}]})
    new = parse_config({"streams": [{**A, "shots": True}, {**B, "enabled": False}, C]})
    plan = plan_reload(running, new)
    assert [s.id for s in plan.started] == ["c"]
    assert plan.stopped == ("b",)
    assert plan.updated == ("a",)  # shots on: its recorder keeps running
    assert plan.shots == ("a", "b")


def test_fixed_sections_keep_their_running_values_and_are_listed() -> None:
    running = parse_config({"server": {"listen": "127.0.0.1:8080"}, "streams": [A]})
    new = parse_config(
        {
            "server": {"listen": "127.0.0.1:9090", "data_dir": "/elsewhere"},
            "clips": {"workers": 4, "keep": "1d"},
            "ingest": {"segment_timeout": "3s"},
            "streams": [A, B],
        }
    )
    plan = plan_reload(running, new)
    assert plan.needs_restart == (
        "server.data_dir",
        "server.listen",
        "clips.keep",
        "clips.workers",
        "ingest.segment_timeout",
    )
    assert plan.config.server == running.server and plan.config.clips == running.clips
    assert plan.config.server.data_dir == Path("./livecut-data")
    assert [s.id for s in plan.started] == ["b"]


def test_the_same_config_changes_nothing() -> None:
    running = parse_config({"streams": [A, B]})
    plan = plan_reload(running, parse_config({"streams": [A, B]}))
    assert not plan.changes_anything and plan.needs_restart == ()
    assert plan.config == running


def test_outcome_summary_and_json() -> None:
    refused = ReloadOutcome(at_ms=5, result="refused", errors=("streams[0].url: bad",))
    assert "refused (1 error(s))" in refused.summary()
    assert refused.as_dict()["errors"] == ["streams[0].url: bad"]
    partial = ReloadOutcome(
        at_ms=6, result="partial", needs_restart=("server.listen",), started=("d",)
    )
    assert partial.summary() == (
        "config reloaded: 1 started stream(s); needs a restart: server.listen"
    )
    assert partial.as_dict()["streams"] == {
        "started": ["d"],
        "stopped": [],
        "restarted": [],
        "updated": [],
    }


async def test_apply_leaves_untouched_recorders_running_and_follows_aliases(
    data_dir: Path,
) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    base = daemon_config(data_dir, url, stream_id="a")
    a = base.streams[0]
    config = replace(base, streams=(a, replace(a, id="b")))
    try:
        async with running(config) as daemon, aiohttp.ClientSession() as http:
            before = dict(daemon.recorders)
            new = replace(
                config,
                streams=(
                    replace(a, retention_s=60.0, playback_id="alias-a", shots=True),
                    replace(a, id="b", headers=(("X-Test", "1"),)),
                    replace(a, id="c"),
                ),
            )
            outcome = await daemon.apply_config(new)
            assert (outcome.updated, outcome.restarted, outcome.started) == (("a",), ("b",), ("c",))
            assert daemon.recorders["a"] is before["a"], "a's recorder was not touched"
            assert daemon.recorders["b"] is not before["b"]
            assert daemon.config.streams[0].retention_s == 60.0
            # On a cluster (the PostgreSQL run), c's recorder starts once this node's lease
            # pass, woken by the reload, takes c's lease.
            await recording(daemon, "c")
            assert {"recorder:a", "recorder:b", "recorder:c", "live-shots:a"} <= task_names()
            async with http.get(f"{daemon.base_url}/api/stream/alias-a") as response:
                assert response.status == 200
                assert (await response.json())["playbackId"] == "alias-a"
            async with http.get(f"{daemon.base_url}/healthz") as response:
                health = await response.json()
            assert health["last_reload"]["streams"]["started"] == ["c"]

            await recording(daemon, "a", "b")
            live = await daemon.store.index.live_session("a")
            assert live is not None
            outcome = await daemon.apply_config(replace(new, streams=new.streams[1:]))
            assert outcome.stopped == ("a",) and not outcome.started
            # Nothing records a any more: its session ends where its recording does.
            ended = await daemon.store.index.session(live.id)
            assert ended is not None and ended.state == "ended"
            assert ended.end_reason == "stopped"
            assert ended.ended_ms == (ended.live_edge_ms or ended.started_ms)
            assert await daemon.store.index.live_session("b") is not None, "b records on"
            names = task_names()
            assert "live-shots:a" not in names and "recorder:a" not in names
            async with http.get(f"{daemon.base_url}/api/stream/alias-a") as response:
                assert response.status == 404
    finally:
        await origin.stop()


def task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


async def test_a_stream_dropped_while_the_daemon_was_down_has_its_session_ended(
    data_dir: Path,
) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    base = daemon_config(data_dir, url, stream_id="a")
    a = base.streams[0]
    both = replace(base, streams=(a, replace(a, id="b")))
    try:
        async with running(both) as daemon:
            await recording(daemon, "a", "b")
        # Back up with a disabled and b gone: neither is recorded, so neither stays live.
        async with running(replace(base, streams=(replace(a, enabled=False),))) as daemon:
            assert await daemon.store.index.live_sessions() == []
            for stream_id in ("a", "b"):
                [session] = await daemon.store.index.sessions(stream_id)
                assert (session.state, session.end_reason) == ("ended", "stopped")
    finally:
        await origin.stop()


async def recording(daemon: Daemon, *stream_ids: str) -> None:
    """Until each stream has a live session."""
    for stream_id in stream_ids:

        async def live(s: str = stream_id) -> bool:
            return await daemon.store.index.live_session(s) is not None

        await until(daemon, stream_id, live, timeout_s=WAIT_S)
