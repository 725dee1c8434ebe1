"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# moto's S3 server for tests of the object store (s3_server, s3_bucket).
pytest_plugins = ["tests.s3server"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.encoders import report

    if report.ROWS:
        terminalreporter.section("conformance against real encoders")
        for line in report.table():
            terminalreporter.write_line(line)
