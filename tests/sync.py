"""Run an index call to completion where a test cannot await (a lambda, a sync helper)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def settled(call: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends: the SQLite index's calls, which run
    in-process. One that suspends (PostgreSQL, a real wait) is a test bug, and fails."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    call.close()
    raise AssertionError("settled() was given a call that waits; await it instead")
