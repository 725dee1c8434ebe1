"""The suite runs on both index engines: every test that opens an index runs once on
SQLite and once on PostgreSQL (its id says [sqlite] or [postgres]).

- A PostgreSQL run of a test gets a database of its own, named to daemons through the
  LIVECUT_INDEX_URL environment variable (in this process and in any `livecut serve` it
  starts), and to tests that open an index themselves through `open_index`.
- The engine is a module-wide parameter, so a module-scoped fixture that runs a daemon
  for several tests asks for `module_index_url` (a database for the module, or None on
  SQLite) and passes it on.
- A module whose tests never open an index says so with `pytestmark = NO_INDEX`; they run
  once, and one that opens an index after all fails, naming the mark to drop.
- A module that chooses its engines itself (the engine and cluster tests) says
  `pytestmark = OWN_ENGINES`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecut.config import INDEX_URL_VARIABLE
from livecut.store.index import Index
from tests.postgres import database

ENGINES = ("sqlite", "postgres")
NO_INDEX = pytest.mark.no_index
OWN_ENGINES = pytest.mark.own_engines


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_index: the tests never open an index; run once")
    config.addinivalue_line("markers", "own_engines: the tests choose their index engines")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    on_both = definition.get_closest_marker("no_index") is None and (
        definition.get_closest_marker("own_engines") is None
    )
    if on_both and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ENGINES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> str:
    """The index engine of this run of the module's tests."""
    name: str = getattr(request, "param", "sqlite")
    return name


@pytest.fixture(scope="module")
def module_index_url(engine: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For a daemon shared by a module's tests: a database of the module's own on the
    PostgreSQL run, None on SQLite."""
    if engine != "postgres":
        yield None
        return
    with database(request.getfixturevalue("postgres_dsn")) as dsn:
        yield dsn


@pytest.fixture(autouse=True)
def index_engine(
    engine: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Point this test's daemons at its engine: LIVECUT_INDEX_URL names a database of the
    test's own on PostgreSQL, and is unset on SQLite."""
    monkeypatch.delenv(INDEX_URL_VARIABLE, raising=False)
    if request.node.get_closest_marker("no_index") is not None:

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError(
                "this test opens an index: drop its module's no_index mark, so it runs on"
                " both engines"
            )

        monkeypatch.setattr(Index, "__init__", refuse)
    if engine == "postgres":
        monkeypatch.setenv(INDEX_URL_VARIABLE, request.getfixturevalue("pg_database"))
    return engine


def engine_url() -> str | None:
    """The PostgreSQL database of this run of the test, or None on SQLite."""
    return os.environ.get(INDEX_URL_VARIABLE) or None


async def open_index(path: Path) -> Index:
    """The index a daemon with its data beside `path` keeps, opened: the SQLite file at
    `path`, or this run's PostgreSQL database."""
    url = engine_url()
    if url is None:
        return Index(path)
    return await Index.postgres(url)
