"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# moto's S3 server for tests of the object store (s3_server, s3_bucket).
# s3_server, s3_bucket: moto's S3 server; postgres_dsn (a throwaway server per session)
# and pg_database (a database per test).
# index_engine: every test that opens an index runs on SQLite and on PostgreSQL.
pytest_plugins = ["tests.s3server", "tests.postgres", "tests.engines"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


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
