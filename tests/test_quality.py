"""Lint-clean, formatted and strictly typed: checked by the test suite, so CI checks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engines import NO_INDEX

pytestmark = NO_INDEX

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize(
    "command",
    [
        [
            "ruff",
            "check",
            *[d for d in ("livecut", "tests", "fixtures", "bench") if (ROOT / d).is_dir()],
        ],
        ["ruff", "format", "--check", "livecut", "tests", "bench"],
        ["mypy"],
        # The benchmarks run against the product's API: strictly typed, they cannot drift
        # from it unseen (an unawaited coroutine, a changed signature).
        ["mypy", "bench"],
    ],
    ids=["ruff-check", "ruff-format", "mypy", "mypy-bench"],
)
def test_static_checks(command: list[str]) -> None:
    result = subprocess.run(
        [tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
