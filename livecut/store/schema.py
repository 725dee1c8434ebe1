"""The index's tables, and the versioned migrations that bring an index up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING

from livecut.store.sql import SqliteSql

if TYPE_CHECKING:
    from livecut.store.pg import PostgresSql

# Version 1: the tables as they stood before migrations were numbered (every statement
# idempotent, so an index of any earlier shape passes through it unharmed).
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL REFERENCES streams(id),
    state TEXT NOT NULL CHECK (state IN ('live', 'ended')),
    clock TEXT NOT NULL CHECK (clock IN ('origin', 'local')),
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    end_reason TEXT,
    live_edge_ms BIGINT,
    tracks_edge_ms BIGINT
);
CREATE INDEX IF NOT EXISTS sessions_by_stream ON sessions (stream_id, started_ms);
CREATE TABLE IF NOT EXISTS renditions (
    id {serial},
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'video',
    main BIGINT NOT NULL DEFAULT 1,
    bandwidth BIGINT,
    resolution TEXT,
    codecs TEXT,
    language TEXT,
    UNIQUE (session_id, name)
);
CREATE TABLE IF NOT EXISTS segments (
    id {serial},
    rendition_id BIGINT NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    init_path TEXT,
    ref_pts_s DOUBLE PRECISION NOT NULL,
    keyframes_ms TEXT NOT NULL,
    has_video BIGINT NOT NULL,
    has_audio BIGINT NOT NULL,
    indexed_ms BIGINT NOT NULL,
    params TEXT NOT NULL DEFAULT '',
    playback_seq BIGINT,
    playback_disc BIGINT,
    UNIQUE (rendition_id, seq)
);
CREATE INDEX IF NOT EXISTS segments_by_time ON segments (rendition_id, start_ms);
-- The disk floor evicts the oldest segments of all streams first.
CREATE INDEX IF NOT EXISTS segments_by_start ON segments (start_ms);
CREATE TABLE IF NOT EXISTS gaps (
    id {serial},
    rendition_id BIGINT NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    first_seq BIGINT,
    last_seq BIGINT,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_by_time ON gaps (rendition_id, start_ms);
-- Contiguous recorded stretches per rendition, kept up to date on every insert so the
-- timeline of a month of history is a few rows, not a scan of a million segments.
CREATE TABLE IF NOT EXISTS spans (
    id {serial},
    rendition_id BIGINT NOT NULL REFERENCES renditions(id) ON DELETE CASCADE,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_rendition ON spans (rendition_id, end_ms);
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    session_id TEXT,
    name TEXT,
    state TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    error TEXT,
    result TEXT,
    options TEXT
);
CREATE TABLE IF NOT EXISTS clip_segments (
    clip_id TEXT NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    segment_id BIGINT NOT NULL,
    PRIMARY KEY (clip_id, segment_id)
);
CREATE INDEX IF NOT EXISTS clip_segments_by_segment ON clip_segments (segment_id);
CREATE INDEX IF NOT EXISTS clips_by_created ON clips (created_ms, id);
-- Where each playback series (one rendition name of a stream, across its sessions)
-- stands: the number and discontinuity count given to its last segment.
CREATE TABLE IF NOT EXISTS playback_series (
    stream_id TEXT NOT NULL,
    name TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    last_disc BIGINT NOT NULL,
    last_segment_id BIGINT NOT NULL,
    PRIMARY KEY (stream_id, name)
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    clip_id TEXT,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    done_ms BIGINT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (state, next_ms);
CREATE INDEX IF NOT EXISTS deliveries_by_clip ON webhook_deliveries (clip_id, created_ms);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    latency_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON webhook_attempts (delivery_id, at_ms);
CREATE TABLE IF NOT EXISTS clip_sessions (
    clip_id TEXT NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    PRIMARY KEY (clip_id, session_id)
);
CREATE INDEX IF NOT EXISTS clip_sessions_by_session ON clip_sessions (session_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    clip_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS shot_cuts (
    id {serial},
    stream_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('cut', 'dissolve')),
    span_start_ms BIGINT NOT NULL,
    span_end_ms BIGINT NOT NULL,
    score TEXT NOT NULL,
    found_ms BIGINT NOT NULL,
    UNIQUE (session_id, at_ms)
);
CREATE INDEX IF NOT EXISTS shot_cuts_by_stream ON shot_cuts (stream_id, at_ms);
CREATE TABLE IF NOT EXISTS analysis_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('shots', 'highlights')),
    subject TEXT UNIQUE,
    stream_id TEXT NOT NULL,
    session_id TEXT,
    clip_id TEXT,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    zero_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS analysis_jobs_by_state ON analysis_jobs (state);
CREATE TABLE IF NOT EXISTS overlays (
    id TEXT PRIMARY KEY,
    name TEXT,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
"""

# Later versions, in order: (version, statements). Each runs once, in a transaction,
# and records its number in meta.schema_version.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        2,
        (
            # The order sessions were opened in (a clock jump can start one earlier).
            "ALTER TABLE sessions ADD COLUMN opened BIGINT",
            "UPDATE sessions SET opened = {opened_default}",
            # Nodes sharing one index, and which of them records each stream.
            "CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " url TEXT, started_ms BIGINT NOT NULL, seen_ms BIGINT NOT NULL,"
            " load TEXT NOT NULL DEFAULT '{}')",
            "CREATE TABLE IF NOT EXISTS leases (stream_id TEXT PRIMARY KEY,"
            " node_id TEXT NOT NULL, acquired_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL)",
            # Work claimed by a node until lease_ms; another node takes it after that.
            "ALTER TABLE clips ADD COLUMN node_id TEXT",
            "ALTER TABLE clips ADD COLUMN lease_ms BIGINT",
            "ALTER TABLE analysis_jobs ADD COLUMN node_id TEXT",
            "ALTER TABLE analysis_jobs ADD COLUMN lease_ms BIGINT",
            "ALTER TABLE webhook_deliveries ADD COLUMN node_id TEXT",
            "ALTER TABLE webhook_deliveries ADD COLUMN lease_ms BIGINT",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# PostgreSQL: every node migrates at start-up; this advisory lock lets one at a time.
_MIGRATION_LOCK = 0x6C697665637574  # "livecut"


def migrate_sqlite(sql: SqliteSql) -> int:
    """Bring a SQLite index up to date; the version it was at."""
    sql.script(_TABLES)
    _add_missing_columns(sql)
    version = sql.version()
    for number, statements in MIGRATIONS:
        if number > version:
            sql.run_migration(
                number,
                [s.replace("{opened_default}", "rowid") for s in statements],
            )
    return version


def _add_missing_columns(sql: SqliteSql) -> None:
    """Columns added before migrations were numbered; old rows take the default."""
    if "params" not in sql.columns_now("segments"):
        sql.script("ALTER TABLE segments ADD COLUMN params TEXT NOT NULL DEFAULT ''")
    if "tracks_edge_ms" not in sql.columns_now("sessions"):
        sql.script("ALTER TABLE sessions ADD COLUMN tracks_edge_ms BIGINT")
    if "playback_seq" not in sql.columns_now("segments"):
        # Segments stored before playback numbering stay out of live playlists.
        sql.script(
            "ALTER TABLE segments ADD COLUMN playback_seq BIGINT;"
            "ALTER TABLE segments ADD COLUMN playback_disc BIGINT"
        )


async def migrate_postgres(sql: PostgresSql) -> int:
    """Bring a PostgreSQL index up to date, one node at a time; the version it was at."""
    async with sql.advisory_lock(_MIGRATION_LOCK):
        await sql.script(_TABLES)
        version = int(await sql.scalar("SELECT value FROM meta WHERE key = 'schema_version'") or 1)
        for number, statements in MIGRATIONS:
            if number <= version:
                continue
            async with sql.transaction() as tx:
                for statement in statements:
                    await tx.execute(statement.replace("{opened_default}", "started_ms"))
                await tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
    return version
