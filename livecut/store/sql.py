"""The SQL engines under the index: one dialect of SQL, run on SQLite or PostgreSQL.

The index's queries are written once, in the subset both engines share: `?`
placeholders, `GREATEST`/`LEAST`, `ON CONFLICT`, `RETURNING`, row values, and
`CAST(? AS ...)` where a bare placeholder would have no type. Table definitions use
`{serial}` for an auto-numbered key and PostgreSQL's type names (SQLite reads BIGINT
and DOUBLE PRECISION with the same affinity as INTEGER and REAL).

SQLite runs in-process on the event loop thread: its statements take microseconds,
so a thread hop would cost more than it saves. A transaction holds a lock that no
coroutine waits on in practice, since a transaction's body awaits nothing but its
own statements and those never suspend.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from livecut import metrics


class Row(Protocol):
    """A result row, by column position or name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class IndexFull(OSError):
    """The index could not be written because its file system is full (SQLITE_FULL)."""


class Sql(Protocol):
    """What the index needs of an engine. A transaction is a `Sql` bound to one
    connection; `transaction()` inside one reuses it."""

    engine: str  # "sqlite" | "postgresql"

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    async def scalar(self, sql: str, params: Sequence[object] = ()) -> Any: ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Sql]: ...


class Engine(Sql, Protocol):
    """A whole database: statements, and what its owner does with it."""

    async def size_bytes(self) -> int: ...

    async def columns(self, table: str) -> set[str]:
        """The table's columns (none if there is no such table)."""
        ...

    async def close(self) -> None: ...


@contextlib.contextmanager
def _full_is_enospc() -> Iterator[None]:
    """A full disk under the index reads as the OSError (ENOSPC) a full disk under a
    media file gives, so ingest treats both alike."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
            raise
        metrics.STORAGE_ERRORS.labels("index").inc()
        raise IndexFull(errno.ENOSPC, f"the index cannot grow: {exc}") from exc


def _greatest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _least(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class SqliteSql:
    """One connection, used from the event loop thread only: the single writer."""

    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a process crash (SIGKILL) with every committed row intact;
        # on power loss the last commits may be lost, leaving orphan files that
        # start-up reconciliation removes. Never a row without its file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # PostgreSQL's names for the scalar max and min (SQLite's are MAX and MIN).
        for name, fn in (("GREATEST", _greatest), ("LEAST", _least)):
            self._db.create_function(name, -1, fn, deterministic=True)
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        self._db.close()

    async def size_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages or 0) * int(page or 0)

    def script(self, ddl: str) -> None:
        """Run table definitions, `{serial}` read as SQLite's auto-numbered key."""
        self._db.executescript(ddl.replace("{serial}", "INTEGER PRIMARY KEY"))

    async def columns(self, table: str) -> set[str]:
        return self.columns_now(table)

    def columns_now(self, table: str) -> set[str]:
        return {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}

    def version(self) -> int:
        """The schema version recorded in meta (1 for an index from before numbering)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return 1 if row is None else int(row[0])

    def run_migration(self, number: int, statements: Sequence[str]) -> None:
        """One numbered migration and its number, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in statements:
                self._db.execute(statement)
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(number),),
            )

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        with _full_is_enospc():
            return self._db.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with _full_is_enospc():
            self._db.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._db.execute(sql, params).fetchone()
        return row

    async def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        async with self._lock:
            with _full_is_enospc():
                self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            with _full_is_enospc():
                self._db.execute("COMMIT")


class _SqliteTransaction:
    """The open transaction's statements: the connection's, without a second BEGIN."""

    engine = "sqlite"

    def __init__(self, owner: SqliteSql) -> None:
        self._owner = owner

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self._owner.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._owner.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return await self._owner.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return await self._owner.fetchone(sql, params)

    async def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        return await self._owner.scalar(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Sql]:
        yield self


def skip_locked(sql: Sql) -> str:
    """The clause that lets concurrent claims pass over rows another has locked: only
    PostgreSQL has it (and needs it); SQLite has one writer at a time anyway."""
    return " FOR UPDATE SKIP LOCKED" if sql.engine == "postgresql" else ""


def placeholders(count: int) -> str:
    """`?, ?, ?` for an IN list of `count` values."""
    return ",".join("?" * count)
