"""The reload plan: which recorders start, stop or restart, and which keys need a restart."""

from __future__ import annotations

from pathlib import Path

from livecut.config import parse_config
from livecut.reload import ReloadOutcome, plan_reload

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
