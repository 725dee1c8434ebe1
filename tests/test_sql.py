"""The `Sql` engines: the index's one dialect gives the same answers on SQLite and on
PostgreSQL, and PostgreSQL's engine does what several nodes sharing it need."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from livecut.store.pg import (
    IndexLoginRefused,
    IndexUnreachable,
    PostgresSql,
    numbered,
    redact,
    rows_changed,
    server_of,
)
from livecut.store.sql import IndexFull, SqliteSql
from tests.engines import OWN_ENGINES

pytestmark = OWN_ENGINES

MS = 1_764_000_000_000  # a Unix millisecond in late 2025: past 32 bits
WAIT_S = 30.0  # bounds every wait on an event; a busy machine gets room

Engine = SqliteSql | PostgresSql

SEGMENTS = """
CREATE TABLE segments (
    id {serial},
    rendition TEXT NOT NULL,
    seq BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT,
    size DOUBLE PRECISION,
    UNIQUE (rendition, seq)
);
"""


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    if request.param == "sqlite":
        sqlite = SqliteSql(tmp_path / "index.sqlite3")
        yield sqlite
        await sqlite.close()
    else:
        pg = await PostgresSql.connect(request.getfixturevalue("pg_database"))
        yield pg
        await pg.close()


@pytest.fixture
async def pg(pg_database: str) -> AsyncIterator[PostgresSql]:
    pg = await PostgresSql.connect(pg_database)
    yield pg
    await pg.close()


async def script(db: Engine, ddl: str) -> None:
    """SQLite's engine runs DDL in place, PostgreSQL's awaits the server."""
    done = db.script(ddl)
    if inspect.isawaitable(done):
        await done


async def segments(db: Engine) -> None:
    await script(db, SEGMENTS)


async def count(db: Engine) -> int:
    return int(await db.scalar("SELECT COUNT(*) FROM segments"))


def with_password(dsn: str, password: str) -> str:
    """The same login with a password (the test server trusts every login, so it is
    carried and ignored)."""
    return dsn.replace("livecut@", f"livecut:{password}@", 1)


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A local port that is taken but not listening: connections to it are refused."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        yield taken.getsockname()[1]


# ---------------------------------------------------------------------------- the dialect


def test_placeholders_are_numbered_outside_literals_names_and_comments() -> None:
    sql = "SELECT '?', \"a?\", ? -- why?\nFROM t WHERE a = ? AND b = 'it''s ?' AND c = ?"
    assert numbered(sql) == (
        "SELECT '?', \"a?\", $1 -- why?\nFROM t WHERE a = $2 AND b = 'it''s ?' AND c = $3"
    )
    # Numbered once per distinct statement: the second call is the cached string.
    assert numbered(sql) is numbered(sql)


@pytest.mark.parametrize(
    ("status", "rows"),
    [("INSERT 0 1", 1), ("UPDATE 12", 12), ("DELETE 0", 0), ("SELECT 3", 3), ("CREATE TABLE", 0)],
)
def test_rows_changed_reads_the_command_status(status: str, rows: int) -> None:
    assert rows_changed(status) == rows


async def test_placeholders_bind_in_order_and_skip_literals(db: Engine) -> None:
    await segments(db)
    await db.execute(
        "INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?)", ("720p", 7, MS)
    )
    row = await db.fetchone(
        "SELECT '?' || rendition AS label, seq FROM segments WHERE rendition = ? AND seq = ?",
        ("720p", 7),
    )
    assert row is not None
    assert (row["label"], row[1]) == ("?720p", 7)
    both = await db.scalar("SELECT CAST(? AS TEXT) || '-' || CAST(? AS TEXT)", ("a", "b"))
    assert both == "a-b"


async def test_execute_counts_the_rows_it_changed(db: Engine) -> None:
    await segments(db)
    rows = [("720p", seq, MS + seq * 2000) for seq in range(5)]
    await db.executemany("INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?)", rows)
    assert await count(db) == 5
    insert = "INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?)"
    assert await db.execute(insert, ("1080p", 0, MS)) == 1
    assert await db.execute("UPDATE segments SET end_ms = start_ms + 2000 WHERE seq < ?", (2,)) == 3
    assert await db.execute("UPDATE segments SET end_ms = 0 WHERE seq > ?", (100,)) == 0
    assert await db.execute("DELETE FROM segments WHERE rendition = ?", ("720p",)) == 5
    assert await count(db) == 1


async def test_serial_ids_come_back_from_returning(db: Engine) -> None:
    await segments(db)
    insert = "INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?) RETURNING id"
    first = await db.fetchone(insert, ("720p", 0, MS))
    second = await db.scalar(insert, ("720p", 1, MS + 2000))
    assert first is not None
    assert isinstance(first["id"], int)
    assert second == first["id"] + 1
    assert [r["seq"] for r in await db.fetchall("SELECT seq FROM segments ORDER BY id")] == [0, 1]


async def test_on_conflict_do_nothing_and_do_update(db: Engine) -> None:
    await segments(db)
    insert = "INSERT INTO segments (rendition, seq, start_ms, end_ms) VALUES (?, ?, ?, ?)"
    assert await db.execute(insert, ("720p", 0, MS, None)) == 1
    ignore = insert + " ON CONFLICT (rendition, seq) DO NOTHING"
    assert await db.execute(ignore, ("720p", 0, MS + 1, MS + 2)) == 0
    assert await db.scalar("SELECT start_ms FROM segments") == MS
    upsert = (
        insert + " ON CONFLICT (rendition, seq) DO UPDATE"
        " SET end_ms = excluded.end_ms, start_ms = LEAST(segments.start_ms, excluded.start_ms)"
        " RETURNING id"
    )
    ids = await db.fetchall(upsert, ("720p", 0, MS + 5, MS + 2000))
    assert len(ids) == 1
    row = await db.fetchone("SELECT start_ms, end_ms FROM segments")
    assert row is not None
    assert (row["start_ms"], row["end_ms"]) == (MS, MS + 2000)
    assert await count(db) == 1


async def test_greatest_and_least_pass_over_nulls(db: Engine) -> None:
    pair = "SELECT GREATEST(CAST(? AS BIGINT), CAST(? AS BIGINT)), LEAST(CAST(? AS BIGINT), ?)"
    row = await db.fetchone(pair, (None, MS, None, MS))
    assert row is not None
    assert (row[0], row[1]) == (MS, MS)
    row = await db.fetchone(pair, (MS, MS + 1, MS, MS + 1))
    assert row is not None
    assert (row[0], row[1]) == (MS + 1, MS)
    assert await db.scalar("SELECT GREATEST(CAST(? AS BIGINT), NULL)", (None,)) is None
    await segments(db)
    await db.execute(
        "INSERT INTO segments (rendition, seq, start_ms, end_ms) VALUES ('a', 0, ?, NULL)", (MS,)
    )
    # A segment still open (end_ms NULL) ends at the live edge passed in.
    edge = await db.scalar("SELECT GREATEST(end_ms, ?) FROM segments", (MS + 4000,))
    assert edge == MS + 4000


async def test_row_values_compare_in_order(db: Engine) -> None:
    await segments(db)
    rows = [("720p", 1, MS), ("720p", 2, MS), ("1080p", 0, MS), ("720p", 0, MS)]
    await db.executemany("INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?)", rows)
    after = await db.fetchall(
        "SELECT rendition, seq FROM segments WHERE (rendition, seq) > (?, ?)"
        " ORDER BY rendition, seq",
        ("720p", 0),
    )
    assert [(r["rendition"], r["seq"]) for r in after] == [("720p", 1), ("720p", 2)]


async def test_milliseconds_are_bigints_on_both(db: Engine) -> None:
    await segments(db)
    await db.execute(
        "INSERT INTO segments (rendition, seq, start_ms, end_ms, size) VALUES (?, ?, ?, ?, ?)",
        ("720p", 0, MS, MS + 2002, 1.5),
    )
    row = await db.fetchone(
        "SELECT start_ms, end_ms - start_ms AS span, size FROM segments WHERE start_ms >= ?",
        (MS - 1,),
    )
    assert row is not None
    assert (row["start_ms"], row["span"], row["size"]) == (MS, 2002, 1.5)
    assert type(row["start_ms"]) is int
    # A bare `? + 1` would be typed INTEGER by PostgreSQL: 32 bits, too small for MS.
    assert await db.scalar("SELECT CAST(? AS BIGINT) + 1000", (MS,)) == MS + 1000
    # SUM over BIGINT is NUMERIC on PostgreSQL (a Decimal) unless cast back.
    total = await db.scalar("SELECT CAST(SUM(end_ms - start_ms) AS BIGINT) FROM segments")
    assert (total, type(total)) == (2002, int)


async def test_cast_placeholder_is_null_makes_a_filter_optional(db: Engine) -> None:
    await segments(db)
    rows = [("720p", 0, MS), ("1080p", 0, MS)]
    await db.executemany("INSERT INTO segments (rendition, seq, start_ms) VALUES (?, ?, ?)", rows)
    assert await db.scalar("SELECT CAST(? AS TEXT) IS NULL", (None,))
    assert not await db.scalar("SELECT CAST(? AS TEXT) IS NULL", ("720p",))
    query = (
        "SELECT rendition FROM segments WHERE CAST(? AS TEXT) IS NULL OR rendition = ?"
        " ORDER BY rendition"
    )
    every = await db.fetchall(query, (None, None))
    assert [r[0] for r in every] == ["1080p", "720p"]
    one = await db.fetchall(query, ("720p", "720p"))
    assert [r[0] for r in one] == ["720p"]


async def test_a_transaction_commits_when_its_body_ends(db: Engine) -> None:
    await segments(db)
    async with db.transaction() as tx:
        assert tx.engine == db.engine
        await tx.execute(
            "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
        )
        assert await tx.scalar("SELECT COUNT(*) FROM segments") == 1
    assert await count(db) == 1


async def test_a_transaction_rolls_back_when_its_body_raises(db: Engine) -> None:
    await segments(db)
    with pytest.raises(LookupError, match="abandon"):
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
            )
            raise LookupError("abandon")
    assert await count(db) == 0
    # The engine is usable after a rollback.
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 1, ?)", (MS,)
        )
    assert await count(db) == 1


async def test_a_transaction_inside_one_is_the_same_transaction(db: Engine) -> None:
    await segments(db)
    with pytest.raises(LookupError):
        async with db.transaction() as outer:
            await outer.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
            )
            async with outer.transaction() as inner:
                assert inner is outer
                await inner.execute(
                    "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 1, ?)", (MS,)
                )
            # The inner block's end committed nothing (no savepoint, no second BEGIN).
            raise LookupError("abandon both")
    assert await count(db) == 0


async def test_columns_and_size(db: Engine) -> None:
    await segments(db)
    columns = await db.columns("segments")
    assert columns == {"id", "rendition", "seq", "start_ms", "end_ms", "size"}
    size = await db.size_bytes()
    assert isinstance(size, int)
    assert size > 0


# ---------------------------------------------------------------------------- PostgreSQL


async def test_notifications_reach_a_listener_and_wait_for_commit(pg: PostgresSql) -> None:
    payloads: list[str] = []
    arrived: dict[str, asyncio.Event] = {p: asyncio.Event() for p in ("now", "outside", "in-tx")}

    def heard(payload: str) -> None:
        payloads.append(payload)
        arrived[payload].set()

    await pg.listen("jobs", heard)
    assert await pg.execute("SELECT pg_notify(?, ?)", ("jobs", "now")) == 1
    await asyncio.wait_for(arrived["now"].wait(), WAIT_S)
    async with pg.transaction() as tx:
        await tx.execute("SELECT pg_notify(?, ?)", ("jobs", "in-tx"))
        # Sent and committed after the one above, but delivered before it: PostgreSQL
        # delivers at commit, in commit order.
        await pg.execute("SELECT pg_notify(?, ?)", ("jobs", "outside"))
        await asyncio.wait_for(arrived["outside"].wait(), WAIT_S)
        assert payloads == ["now", "outside"]
    await asyncio.wait_for(arrived["in-tx"].wait(), WAIT_S)
    assert payloads == ["now", "outside", "in-tx"]


async def test_a_listener_comes_back_after_its_connection_is_killed(
    pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-pw"
    pg = await PostgresSql.connect(with_password(pg_database, secret))
    try:
        heard: asyncio.Queue[str] = asyncio.Queue()
        listener = await pg.listen("wake", heard.put_nowait)
        first_pid = listener.pid
        assert first_pid is not None
        caplog.set_level(logging.INFO, logger="livecut.store.pg")
        assert await pg.scalar("SELECT pg_terminate_backend(?)", (first_pid,)) is True
        # Notifications sent while it reconnects are lost: send until one arrives.
        for attempt in range(200):
            await pg.execute("SELECT pg_notify(?, ?)", ("wake", f"after-{attempt}"))
            try:
                payload = await asyncio.wait_for(heard.get(), 0.25)
            except TimeoutError:
                continue
            break
        else:
            pytest.fail("the listener never heard a notification after its connection died")
        assert payload.startswith("after-")
        assert listener.pid not in (None, first_pid)
        text = caplog.text
        assert "dropped; reconnecting" in text
        assert "listening again" in text
        assert server_of(pg_database) in text
        assert secret not in text
    finally:
        await pg.close()
    assert listener.pid is None


async def test_an_advisory_lock_has_one_holder_at_a_time(pg: PostgresSql) -> None:
    key = 0x11FECA7
    holding = asyncio.Event()
    release = asyncio.Event()
    second_in = asyncio.Event()

    async def first() -> None:
        async with pg.advisory_lock(key):
            holding.set()
            await release.wait()

    async def second() -> None:
        async with pg.advisory_lock(key):
            second_in.set()

    one = asyncio.create_task(first())
    await asyncio.wait_for(holding.wait(), WAIT_S)
    two = asyncio.create_task(second())
    # The second holder is waiting on the lock in PostgreSQL, not merely unscheduled.
    waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    for _ in range(int(WAIT_S / 0.05)):
        if await pg.scalar(waiting) == 1:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the second holder never waited on the lock")
    assert not second_in.is_set()
    assert await pg.scalar("SELECT pg_try_advisory_xact_lock(?)", (key,)) is False
    release.set()
    await asyncio.wait_for(second_in.wait(), WAIT_S)
    await asyncio.wait_for(asyncio.gather(one, two), WAIT_S)
    # Both released it on the way out.
    assert await pg.scalar("SELECT pg_try_advisory_xact_lock(?)", (key,)) is True


async def test_skip_locked_lets_two_transactions_claim_different_jobs(pg: PostgresSql) -> None:
    await pg.script("CREATE TABLE jobs (id {serial}, state TEXT NOT NULL, node TEXT);")
    await pg.executemany("INSERT INTO jobs (state) VALUES (?)", [("queued",)] * 3)
    claim = (
        "UPDATE jobs SET state = 'processing', node = ? WHERE id = ("
        "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ") RETURNING id"
    )
    async with pg.transaction() as a:
        first = await a.scalar(claim, ("node-a",))
        async with pg.transaction() as b:
            # Without SKIP LOCKED this would wait for `a` to commit: forever, here.
            second = await asyncio.wait_for(b.scalar(claim, ("node-b",)), WAIT_S)
    assert (first, second) == (1, 2)
    rows = await pg.fetchall("SELECT id, state, node FROM jobs ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (1, "processing", "node-a"),
        (2, "processing", "node-b"),
        (3, "queued", None),
    ]


async def test_a_transaction_whose_connection_dies_raises_unreachable(pg: PostgresSql) -> None:
    await pg.script(SEGMENTS)
    with pytest.raises(IndexUnreachable) as raised:
        async with pg.transaction() as tx:
            pid = await tx.scalar("SELECT pg_backend_pid()")
            await tx.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
            )
            assert await pg.scalar("SELECT pg_terminate_backend(?)", (pid,)) is True
            await tx.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 1, ?)", (MS,)
            )
    assert isinstance(raised.value, OSError)
    assert pg.server in str(raised.value)
    # Nothing of it was committed, and the pool goes on with its other connections.
    assert await count(pg) == 0


async def test_a_cancelled_transaction_rolls_back(pg: PostgresSql) -> None:
    await pg.script(SEGMENTS)

    async def slow() -> None:
        async with pg.transaction() as tx:
            await tx.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
            )
            await tx.execute("SELECT pg_sleep(120)")

    task = asyncio.create_task(slow())
    # Cancelling sends PostgreSQL a cancel request, which a server still reading the
    # statement ignores: cancel once the sleep runs, as a long statement would be.
    sleeping = (
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
    )
    for _ in range(int(WAIT_S / 0.05)):
        if await pg.scalar(sleeping) == 1:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the transaction's statement never ran")
    task.cancel()
    # asyncio.wait, not wait_for: a cancellation that did not take must fail the test,
    # not be awaited for the whole sleep.
    await asyncio.wait({task}, timeout=WAIT_S)
    assert task.cancelled()
    assert await count(pg) == 0
    async with pg.transaction() as tx:
        await tx.execute(
            "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 1, ?)", (MS,)
        )
    assert await count(pg) == 1


async def test_statements_prepared_before_a_schema_change_still_run(pg: PostgresSql) -> None:
    await pg.script(SEGMENTS)
    query = "SELECT * FROM segments"
    for _ in range(3):  # prepared and cached on the pool's connection
        assert await pg.fetchall(query) == []
    await pg.script("ALTER TABLE segments ADD COLUMN keyframes TEXT;")
    await pg.execute("INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,))
    # Inside a transaction asyncpg cannot quietly re-prepare a stale statement.
    async with pg.transaction() as tx:
        rows = await tx.fetchall(query)
    assert [r["keyframes"] for r in rows] == [None]


async def test_a_full_disk_reads_as_enospc(pg: PostgresSql) -> None:
    # PostgreSQL's own disk_full error, raised as the server raises it when a write fails.
    with pytest.raises(IndexFull) as raised:
        await pg.execute("DO $$ BEGIN RAISE EXCEPTION 'no space' USING ERRCODE = '53100'; END $$")
    assert raised.value.errno == errno.ENOSPC
    assert pg.server in str(raised.value)


async def test_an_unreachable_server_is_named_without_its_password() -> None:
    secret = "s3cret-pw"
    with socket_bound() as port:
        dsn = f"postgresql://livecut:{secret}@127.0.0.1:{port}/index"
        with pytest.raises(IndexUnreachable) as raised:
            await PostgresSql.connect(dsn)
    assert isinstance(raised.value, ConnectionError)
    assert f"127.0.0.1:{port}/index" in str(raised.value)
    assert secret not in str(raised.value)
    assert secret not in repr(raised.value.__cause__)


async def test_a_missing_database_is_a_refused_login(postgres_dsn: str) -> None:
    secret = "s3cret-pw"
    dsn = with_password(postgres_dsn, secret).rpartition("/")[0] + "/no_such_index"
    with pytest.raises(IndexLoginRefused) as raised:
        await PostgresSql.connect(dsn)
    assert isinstance(raised.value, PermissionError)
    assert "/no_such_index" in str(raised.value)
    assert "no_such_index" in str(raised.value.__cause__)
    assert secret not in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://idx:hunter2@db.example:5432/livecut",
            "postgresql://idx:***@db.example:5432/livecut",
        ),
        (
            "postgresql://idx:p%40ss@db/livecut?sslmode=require",
            "postgresql://idx:***@db/livecut?sslmode=require",
        ),
        # Unescaped `/` and `@` in a password: all of it is hidden all the same.
        ("postgres://idx:a/b@c@db/livecut", "postgres://idx:***@db/livecut"),
        (
            "postgresql://db/livecut?user=idx&password=hunter2",
            "postgresql://db/livecut?user=idx&password=***",
        ),
        (
            "host=db user=idx password='hunter 2' dbname=livecut",
            "host=db user=idx password=*** dbname=livecut",
        ),
        ("postgresql://idx@db:5432/livecut", "postgresql://idx@db:5432/livecut"),
        ("postgresql://db:5432/livecut", "postgresql://db:5432/livecut"),
    ],
)
def test_redact_hides_passwords_only(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


async def test_the_engine_repr_hides_its_password(pg_database: str) -> None:
    pg = await PostgresSql.connect(with_password(pg_database, "hunter2"))
    try:
        assert "hunter2" not in repr(pg)
        assert pg.server == server_of(pg_database)
        assert pg.server.startswith("127.0.0.1:")
    finally:
        await pg.close()


async def test_connections_killed_while_idle_are_replaced_without_a_failed_statement(
    pg_database: str,
) -> None:
    """A failover (or an administrator) ends every idle connection of the pool at once:
    the statements and transactions that next use them are run on new connections."""
    pg = await PostgresSql.connect(pg_database, min_size=3, max_size=3)
    try:
        await pg.script(SEGMENTS)
        # Three connections, each used once and now idle in the pool.
        async with pg.transaction() as a, pg.transaction() as b, pg.transaction() as c:
            pids = {await tx.scalar("SELECT pg_backend_pid()") for tx in (a, b, c)}
        assert len(pids) == 3
        killer = await PostgresSql.connect(pg_database, min_size=1, max_size=1)
        try:
            ended = await killer.fetchall(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert len(ended) == 3
        finally:
            await killer.close()
        assert await pg.scalar("SELECT 1") == 1
        await pg.execute(
            "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 0, ?)", (MS,)
        )
        async with pg.transaction() as tx:
            await tx.execute(
                "INSERT INTO segments (rendition, seq, start_ms) VALUES ('a', 1, ?)", (MS,)
            )
        assert await count(pg) == 2
        assert await pg.scalar("SELECT pg_backend_pid()") not in pids
    finally:
        await pg.close()
