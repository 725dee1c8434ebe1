"""Shared fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# s3_server, s3_bucket: moto's S3 server; postgres_dsn (a throwaway server per session)
# and pg_database (a database per test).
# index_engine: every test that opens an index runs on SQLite and on PostgreSQL.
pytest_plugins = ["tests.s3server", "tests.postgres", "tests.engines"]

# A test id's engine parameter: test_x[sqlite], test_x[postgres-ts].
ENGINE_IN_ID = re.compile(r"\[(?:.*-)?(sqlite|postgres)(?:-.*)?\]$")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first (stable otherwise), so that under -n they do not start last and
    leave the other workers idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under -n, a module's tests on one engine go to one worker together: its
    module-scoped fixtures (a recording shared by its tests) are made once per engine,
    and the two engines' halves of a slow module run side by side."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModuleAndEngine(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            engine = ENGINE_IN_ID.search(nodeid)
            return f"{module}[{engine.group(1)}]" if engine else module

    return ByModuleAndEngine(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.encoders import report as conformance

    for name, value in report.user_properties:
        if name == conformance.PROPERTY and isinstance(value, (list, tuple)):
            conformance.SHOWN[str(value[0])] = tuple(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.encoders import report

    if report.SHOWN:
        terminalreporter.section("conformance against real encoders")
        for line in report.table():
            terminalreporter.write_line(line)
