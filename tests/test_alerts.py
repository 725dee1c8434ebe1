"""The shipped alert rules and Grafana dashboard: promtool's unit tests pass, and every
livecut_* metric their PromQL names is one the daemon exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from livecut import metrics
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

CONFIG = Path(__file__).resolve().parent.parent / "config"
RULES = CONFIG / "prometheus-alerts.yml"
RULE_TESTS = CONFIG / "prometheus-alerts.test.yml"
DASHBOARD = CONFIG / "grafana-dashboard.json"
# A metric name in PromQL: not part of a longer identifier, not a label value in quotes.
METRIC_NAME = re.compile(r"(?<![\w\"'])livecut_[a-zA-Z0-9_]+")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: install Debian's `prometheus` package "
            "(apt-get install prometheus), as .ci/run does"
        )
    return found


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    def walk(item: object) -> Iterator[str]:
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(item, list):
            for value in item:
                yield from walk(value)

    return list(walk(json.loads(DASHBOARD.read_text())))


def unknown_metrics(expressions: list[str]) -> set[str]:
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    return used - metrics.exported_names()


def test_alert_rules_pass_their_promtool_tests() -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_rule_tests_cover_every_alert() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"


def test_alert_rules_name_only_exported_metrics() -> None:
    expressions = rule_expressions()
    assert len(expressions) >= 10
    assert not unknown_metrics(expressions)


def test_dashboard_names_only_exported_metrics() -> None:
    expressions = dashboard_expressions()
    assert not unknown_metrics(expressions)
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    # What the dashboard is for: streams, live-edge lag, clip latency, queue, disk, errors.
    for needed in (
        "livecut_stream_state",
        "livecut_live_edge_age_seconds",
        "livecut_ingest_lag_seconds_bucket",
        "livecut_clip_ready_seconds_bucket",
        "livecut_clip_queue_depth",
        "livecut_disk_free_bytes",
        "livecut_disk_floor_bytes",
        "livecut_origin_errors_total",
        "livecut_storage_errors_total",
    ):
        assert needed in used, needed


def test_the_name_check_catches_a_metric_that_does_not_exist() -> None:
    assert (
        unknown_metrics(['rate(livecut_clip_jobs_finished_total{outcome="failed"}[5m])']) == set()
    )
    assert unknown_metrics(["livecut_disk_free_bytez < 1"]) == {"livecut_disk_free_bytez"}
    # Histogram series, and a label value that merely looks like a name, are fine.
    assert not unknown_metrics(['livecut_clip_ready_seconds_count{x="livecut_nothing"}'])
