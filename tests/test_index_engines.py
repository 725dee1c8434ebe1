"""The store suite: every question the index answers, asked of SQLite and of PostgreSQL.

The same Index runs on both engines (livecut/store/sql.py); these tests hold them to
the same answers, and hold the cluster's claims (leases, SKIP LOCKED, NOTIFY) to what
many nodes need of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from livecut.store.cluster import NodeRow
from livecut.store.index import CLIP_CHANNEL, EDGE_CHANNEL, Index, new_id
from livecut.store.pg import PostgresSql
from livecut.store.records import AttemptRow, ClipRow, DeliveryRow, GapRow
from livecut.store.schema import SCHEMA_VERSION
from tests.engines import OWN_ENGINES

pytestmark = OWN_ENGINES

T0 = 1_764_000_000_000  # Unix ms: past 2**31, so 32-bit columns would show
ENGINES = ("sqlite", "postgresql")

OpenIndex = Callable[[str], Awaitable[Index]]  # another node's view of the same index


@pytest.fixture(params=ENGINES)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenIndex]:
    """Opens the test's index as one node; each call another node on the same index."""
    opened: list[Index] = []
    if request.param == "sqlite":
        path = tmp_path / "index.sqlite3"

        async def open_index(node_id: str) -> Index:
            index = Index(path)
            index.node_id = node_id
            opened.append(index)
            return index

    else:
        dsn = request.getfixturevalue("pg_database")

        async def open_index(node_id: str) -> Index:
            index = await Index.postgres(dsn)
            index.node_id = node_id
            opened.append(index)
            return index

    yield open_index
    for index in opened:
        await index.close()


@pytest.fixture
async def index(opener: OpenIndex) -> Index:
    return await opener("node-a")


async def _session_with_rendition(index: Index, stream: str = "cam") -> tuple[str, int]:
    await index.ensure_stream(stream, f"http://127.0.0.1/{stream}.m3u8", T0)
    session = await index.open_session(stream, clock="origin", started_ms=T0)
    rendition = await index.add_rendition(session.id, name="720p", uri="720p.m3u8")
    return session.id, rendition.id


async def _segment(
    index: Index, rendition_id: int, seq: int, *, epoch: int = 0, init: str | None = None
) -> None:
    start = T0 + seq * 2000
    await index.add_segment(
        rendition_id=rendition_id,
        seq=seq,
        epoch=epoch,
        start_ms=start,
        end_ms=start + 2000,
        path=f"streams/cam/{rendition_id}/{seq}.ts",
        size=1000 + seq,
        init_path=init,
        ref_pts_s=seq * 2.0,
        keyframes_ms=[start, start + 1000],
        has_video=True,
        has_audio=True,
        indexed_ms=start + 2100,
    )


def _clip(stream: str = "cam", *, created_ms: int = T0, state: str = "queued") -> ClipRow:
    return ClipRow(
        id=new_id("clip"),
        stream_id=stream,
        session_id=None,
        name="goal",
        state=state,  # type: ignore[arg-type]
        start_ms=T0,
        end_ms=T0 + 4000,
        created_ms=created_ms,
        updated_ms=created_ms,
        error=None,
        result=None,
        options={"accuracy": "frame"},
    )


async def test_schema_is_current_and_opening_twice_changes_nothing(opener: OpenIndex) -> None:
    first = await opener("node-a")
    assert await first.schema_version() == SCHEMA_VERSION
    second = await opener("node-b")  # migrations run again: each one is done already
    assert await second.schema_version() == SCHEMA_VERSION


async def test_segments_sessions_and_the_timeline(index: Index) -> None:
    session_id, rendition_id = await _session_with_rendition(index)
    again = await index.add_rendition(session_id, name="720p", uri="other.m3u8")
    assert again.id == rendition_id  # one row per (session, name)
    for seq in range(4):
        await _segment(index, rendition_id, seq)
    await _segment(index, rendition_id, 6, epoch=1)  # a hole, then a new epoch
    await index.add_gap(
        GapRow(
            rendition_id=rendition_id,
            start_ms=T0 + 8000,
            end_ms=T0 + 12_000,
            first_seq=4,
            last_seq=5,
            reason="missed",
        )
    )
    session = await index.session(session_id)
    assert session is not None and session.live_edge_ms == T0 + 14_000
    assert session.tracks_edge_ms == T0 + 14_000
    segments = await index.rendition_segments(rendition_id)
    assert [s.seq for s in segments] == [0, 1, 2, 3, 6]
    assert segments[1].keyframes_ms == (T0 + 2000, T0 + 3000)
    assert segments[0].has_audio and segments[0].ref_pts_s == 0.0
    # Playback numbers run on by one; the new epoch after a hole is a discontinuity.
    assert [s.playback_seq for s in segments] == [1, 2, 3, 4, 5]
    assert [s.playback_disc for s in segments] == [0, 0, 0, 0, 1]
    found = await index.stream_segments("cam", T0 + 3000, T0 + 5000)
    assert [s.seq for s in found] == [1, 2]
    assert await index.stream_segments("cam", T0, T0 + 1, session_id="ses_other") == []
    assert [
        s.seq for s in await index.stream_segments("cam", T0, T0 + 1, session_id=session_id)
    ] == [0]
    spans, gaps = await index.timeline("cam", T0, T0 + 60_000, limit=10)
    assert spans == [(T0, T0 + 8000, session_id), (T0 + 12_000, T0 + 14_000, session_id)]
    assert [(g.start_ms, g.end_ms, g.reason) for g in gaps] == [(T0 + 8000, T0 + 12_000, "missed")]
    assert await index.recorded_spans("cam") == [(T0, T0 + 8000), (T0 + 12_000, T0 + 14_000)]
    assert await index.has_segment(rendition_id, 3) and not await index.has_segment(rendition_id, 4)
    assert (await index.indexed_times(rendition_id))[2] == T0 + 4000 + 2100
    assert await index.first_segment_start(session_id) == T0
    assert await index.segment_counts() == {"cam": 5}
    assert await index.stream_live_edges() == {"cam": T0 + 14_000}
    await index.end_session(session_id, ended_ms=T0 + 20_000, reason="endlist")
    ended = await index.session(session_id)
    assert ended is not None and ended.state == "ended" and ended.end_reason == "endlist"
    assert await index.live_sessions() == []


async def test_sessions_list_in_the_order_they_were_opened(index: Index) -> None:
    await index.ensure_stream("cam", "http://127.0.0.1/cam.m3u8", T0)
    later = await index.open_session("cam", clock="origin", started_ms=T0 + 60_000)
    await index.end_session(later.id, ended_ms=T0 + 70_000, reason="gap")
    # A clock jump: the next session starts before the last one did.
    earlier = await index.open_session("cam", clock="local", started_ms=T0)
    opened = await index.sessions_in_opening_order("cam")
    assert [s.id for s in opened] == [later.id, earlier.id]
    assert [s.id for s in await index.sessions("cam")] == [later.id, earlier.id]
    live = await index.live_session("cam")
    assert live is not None and live.id == earlier.id and live.clock == "local"


async def test_retention_removes_rows_splits_spans_and_frees_unused_inits(index: Index) -> None:
    _, rendition_id = await _session_with_rendition(index)
    for seq in range(6):
        await _segment(index, rendition_id, seq, init="init-a.mp4" if seq < 3 else "init-b.mp4")
    old = await index.segments_before("cam", T0 + 6000, limit=10)
    assert [s.seq for s in old] == [0, 1, 2]
    freed = await index.delete_segments([old[1].id])
    assert freed == []  # init-a is still used by seq 0 and 2
    assert await index.recorded_spans("cam") == [(T0, T0 + 2000), (T0 + 4000, T0 + 12_000)]
    freed = await index.delete_segments([old[0].id, old[2].id])
    assert freed == ["init-a.mp4"]
    assert await index.recorded_spans("cam") == [(T0 + 6000, T0 + 12_000)]
    usage = await index.storage_usage()
    assert [(u.stream_id, u.segments, u.bytes) for u in usage] == [("cam", 3, 3000 + 3 + 4 + 5)]
    assert await index.bytes_in_ranges("cam", [(T0 + 6000, T0 + 8000)]) == 1003


async def test_eviction_keeps_the_live_edge_and_what_clips_pin(index: Index) -> None:
    _, rendition_id = await _session_with_rendition(index)
    for seq in range(5):
        await _segment(index, rendition_id, seq)
    clip = _clip()
    await index.add_clip(clip)
    pinned = (await index.rendition_segments(rendition_id))[1]
    await index.pin_segments(clip.id, [pinned.id])
    candidates = await index.eviction_candidates(keep_live=2, limit=10)
    assert [s.seq for _, s in candidates] == [0, 2]  # 1 is pinned; 3 and 4 are the live edge
    page = await index.eviction_candidates(keep_live=2, limit=10, after=(T0, candidates[0][1].id))
    assert [s.seq for _, s in page] == [2]
    assert (await index.pinned_segment(clip.id, pinned.id)) == pinned
    usage = (await index.storage_usage())[0]
    assert usage.pinned_bytes == pinned.size
    await index.unpin_segments(clip.id)
    assert await index.pinned_segment(clip.id, pinned.id) is None


async def test_clips_pages_filters_and_idempotency(index: Index) -> None:
    session_id, _ = await _session_with_rendition(index)
    clips = [_clip(created_ms=T0 + n) for n in range(5)]
    for n, clip in enumerate(clips):
        await index.add_clip(
            clip,
            sessions=[session_id] if n % 2 == 0 else [],
            idempotency=(f"key-{n}", "sha") if n == 4 else None,
        )
    first = await index.clips(after=None, limit=2)
    assert [c.id for c in first] == [clips[4].id, clips[3].id]
    rest = await index.clips(after=(first[-1].created_ms, first[-1].id), limit=10)
    assert [c.id for c in rest] == [clips[2].id, clips[1].id, clips[0].id]
    by_session = await index.clips(after=None, limit=10, session=session_id)
    assert [c.id for c in by_session] == [clips[4].id, clips[2].id, clips[0].id]
    assert await index.idempotent_clip("key-4", T0) == ("sha", clips[4].id)
    assert await index.idempotent_clip("key-4", T0 + 10) is None
    await index.update_clip(clips[0].id, state="ready", now_ms=T0 + 50, result={"bytes": 7})
    done = await index.clip(clips[0].id)
    assert done is not None and done.state == "ready" and done.result == {"bytes": 7}
    assert done.options == {"accuracy": "frame"}
    assert await index.clip_state_counts() == {"queued": 4, "ready": 1}
    assert [c.id for c in await index.clips_finished_before(T0 + 51)] == [clips[0].id]
    assert await index.clip_sessions(clips[0].id) == [session_id]
    await index.delete_clip(clips[0].id)
    assert await index.clip(clips[0].id) is None


async def test_state_changes_and_their_outbox_rows_are_one_transaction(index: Index) -> None:
    async def hook(event: str, subject: object) -> list[DeliveryRow]:
        assert isinstance(subject, ClipRow)
        return [
            DeliveryRow(
                id=new_id("whd"),
                target="ops",
                url="http://127.0.0.1:9/hook",
                event=event,
                clip_id=subject.id,
                body=json.dumps({"state": subject.state}),
                created_ms=T0,
                next_ms=T0,
            )
        ]

    index.on_event = hook
    clip = _clip()
    await index.add_clip(clip)
    await index.update_clip(clip.id, state="ready", now_ms=T0 + 1, result={"ok": True})
    rows = await index.deliveries(clip_id=clip.id)
    assert [(r.event, json.loads(r.body)) for r in rows] == [("clip.ready", {"state": "ready"})]
    assert await index.outbox_depth() == 1
    assert await index.next_delivery_ms() == T0


async def _queued_delivery(index: Index, n: int) -> DeliveryRow:
    row = DeliveryRow(
        id=f"whd_{n}",
        target="ops",
        url="http://127.0.0.1:9/hook",
        event="stream.failing",
        clip_id=None,
        body="{}",
        created_ms=T0,
        next_ms=T0 + n,
    )
    await index.add_deliveries([row])
    return row


async def test_a_delivery_is_sent_by_one_node_at_a_time(opener: OpenIndex) -> None:
    a, b = await opener("node-a"), await opener("node-b")
    for n in range(3):
        await _queued_delivery(a, n)
    claimed = await a.due_deliveries(T0 + 10, limit=2, lease_ms=1000)
    assert [d.id for d in claimed] == ["whd_0", "whd_1"]
    assert [d.id for d in await b.due_deliveries(T0 + 10, limit=10, lease_ms=1000)] == ["whd_2"]
    assert await b.due_deliveries(T0 + 10, limit=10, lease_ms=1000) == []  # all held
    # node-a answers for whd_0; whd_1's hold runs out and node-b takes it.
    await a.record_attempt(
        AttemptRow(delivery_id="whd_0", at_ms=T0 + 20, status=204, error=None, latency_ms=3),
        state="delivered",
        next_ms=T0,
    )
    retaken = await b.due_deliveries(T0 + 1011, limit=10, lease_ms=1000)
    assert [d.id for d in retaken] == ["whd_1", "whd_2"]
    assert [a.status for a in await a.attempts("whd_0")] == [204]
    # A node restarting lets go of what it held, for any node to send at once.
    await b.release_deliveries()
    assert [d.id for d in await a.due_deliveries(T0 + 1012, limit=10)] == ["whd_1", "whd_2"]


async def test_one_node_holds_a_stream_lease_until_it_runs_out(opener: OpenIndex) -> None:
    a, b = await opener("node-a"), await opener("node-b")
    assert await a.cluster.acquire("cam", "node-a", now_ms=T0, ttl_ms=10_000)
    assert not await b.cluster.acquire("cam", "node-b", now_ms=T0 + 1, ttl_ms=10_000)
    assert await a.cluster.acquire("cam", "node-a", now_ms=T0 + 5000, ttl_ms=10_000)  # renewed
    assert not await b.cluster.acquire("cam", "node-b", now_ms=T0 + 14_000, ttl_ms=10_000)
    # node-a stops renewing: once its lease runs out node-b takes the stream...
    assert await b.cluster.acquire("cam", "node-b", now_ms=T0 + 15_001, ttl_ms=10_000)
    # ...and node-a, late, cannot renew it any more.
    assert not await a.cluster.acquire("cam", "node-a", now_ms=T0 + 15_002, ttl_ms=10_000)
    leases = await a.cluster.leases()
    assert [(x.stream_id, x.node_id, x.acquired_ms) for x in leases] == [
        ("cam", "node-b", T0 + 15_001)
    ]
    await b.cluster.release("cam", "node-b")
    assert await a.cluster.acquire("cam", "node-a", now_ms=T0 + 15_003, ttl_ms=10_000)


async def test_nodes_report_heartbeats_and_leave(opener: OpenIndex) -> None:
    a = await opener("node-a")
    node = NodeRow(id="node-a", name="node-a", url=None, started_ms=T0, seen_ms=T0, load={"x": 1})
    await a.cluster.heartbeat(node)
    await a.cluster.heartbeat(dataclasses.replace(node, seen_ms=T0 + 5, load={"x": 2}))
    assert await a.cluster.nodes() == [dataclasses.replace(node, seen_ms=T0 + 5, load={"x": 2})]
    assert await a.cluster.acquire("cam", "node-a", now_ms=T0, ttl_ms=1000)
    await a.cluster.forget_node("node-a")
    assert await a.cluster.nodes() == [] and await a.cluster.leases() == []


async def test_a_clip_whose_node_stopped_renewing_is_claimed_by_another(opener: OpenIndex) -> None:
    a, b = await opener("node-a"), await opener("node-b")
    held, free = _clip(created_ms=T0), _clip(created_ms=T0 + 1)
    await a.add_clip(held, lease_until_ms=T0 + 1000)
    await a.add_clip(free)  # accepted by one node alone: nobody holds it
    claimed = await b.claim_clips(now_ms=T0 + 10, until_ms=T0 + 2000, limit=10)
    assert [c.id for c in claimed] == [free.id]
    assert await a.renew_clips([held.id], T0 + 3000) == []
    assert await b.claim_clips(now_ms=T0 + 1500, until_ms=T0 + 5000, limit=10) == []
    assert await b.renew_clips([free.id], T0 + 6000) == []
    taken = await b.claim_clips(now_ms=T0 + 3001, until_ms=T0 + 6000, limit=10)
    assert [c.id for c in taken] == [held.id]  # the one node-a stopped renewing
    # A node restarted under its own name takes back what it held.
    back = await b.claim_clips(now_ms=T0 + 3002, until_ms=T0 + 6000, limit=10, own=True)
    assert {c.id for c in back} == {held.id, free.id}
    assert await a.renew_clips([held.id], T0 + 7000) == [held.id]
    # node-a, late, cannot mark it ready or failed over node-b's work; node-b can.
    for state in ("ready", "failed", "processing"):
        assert not await a.update_clip(held.id, state=state, now_ms=T0 + 7001, held_by="node-a")
    row = await b.clip(held.id)
    assert row is not None and row.state == held.state and row.updated_ms == held.updated_ms
    assert await b.update_clip(held.id, state="ready", now_ms=T0 + 7002, held_by="node-b")
    row = await a.clip(held.id)
    assert row is not None and (row.state, row.updated_ms) == ("ready", T0 + 7002)


async def test_analysis_jobs_are_claimed_like_clips(opener: OpenIndex) -> None:
    from livecut.store.analysis import AnalysisJobRow

    a, b = await opener("node-a"), await opener("node-b")
    await a.ensure_stream("cam", "http://127.0.0.1/cam.m3u8", T0)
    job = AnalysisJobRow(
        id="shots_1",
        kind="shots",
        subject="session:x",
        stream_id="cam",
        session_id=None,
        clip_id=None,
        from_ms=T0,
        to_ms=T0 + 1000,
        zero_ms=T0,
        state="pending",
        options={},
        result=None,
        error=None,
        created_ms=T0,
        updated_ms=T0,
    )
    await a.analysis.add_job(job)
    await a.analysis.hold_job(job.id, "node-a", T0 + 1000)
    assert await b.analysis.claim_jobs("node-b", now_ms=T0, until_ms=T0 + 500, limit=5) == []
    taken = await b.analysis.claim_jobs("node-b", now_ms=T0 + 1001, until_ms=T0 + 2000, limit=5)
    assert [j.id for j in taken] == [job.id]
    # node-a, restarted, does not take back what node-b now holds.
    assert (
        await a.analysis.claim_jobs(
            "node-a", now_ms=T0 + 1002, until_ms=T0 + 3000, limit=5, own=True
        )
        == []
    )
    done = await b.analysis.update_job(job.id, state="completed", now_ms=T0 + 5, result={"n": 1})
    assert done is not None and (await a.analysis.job(job.id)) == done


async def test_concurrent_claims_never_take_one_clip_twice(opener: OpenIndex) -> None:
    nodes = [await opener(f"node-{n}") for n in range(4)]
    clips = [_clip(created_ms=T0 + n) for n in range(40)]
    for clip in clips:
        await nodes[0].add_clip(clip)

    async def claim_all(node: Index) -> list[str]:
        got: list[str] = []
        for _ in range(len(clips)):  # bounded: each round takes at least one, or stops
            batch = await node.claim_clips(now_ms=T0, until_ms=T0 + 60_000, limit=3)
            if not batch:
                break
            got += [c.id for c in batch]
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(claim_all(n) for n in nodes))
    taken = [clip_id for got in results for clip_id in got]
    assert sorted(taken) == sorted(c.id for c in clips)  # each clip once, none left over


async def test_other_nodes_hear_of_a_growing_recording_and_of_clip_changes(
    request: pytest.FixtureRequest, opener: OpenIndex
) -> None:
    if request.node.callspec.params["opener"] == "sqlite":
        # One node alone: its own watchers are told directly, nothing goes out.
        index = await opener("node-a")
        seen: list[tuple[str, str]] = []
        index.clip_watchers.append(lambda event, clip_id: seen.append((event, clip_id)))
        clip = _clip()
        await index.add_clip(clip)
        await index.update_clip(clip.id, state="processing", now_ms=T0)
        assert seen == [("clip.processing", clip.id)]
        return
    writer, reader = await opener("node-a"), await opener("node-b")
    heard: dict[str, list[str]] = {EDGE_CHANNEL: [], CLIP_CHANNEL: []}
    arrived = asyncio.Event()

    def on(channel: str) -> Callable[[str], None]:
        def note(payload: str) -> None:
            heard[channel].append(payload)
            arrived.set()

        return note

    sql = reader.engine_sql
    assert isinstance(sql, PostgresSql)
    await sql.listen(EDGE_CHANNEL, on(EDGE_CHANNEL))
    await sql.listen(CLIP_CHANNEL, on(CLIP_CHANNEL))
    _, rendition_id = await _session_with_rendition(writer)
    await _segment(writer, rendition_id, 0)
    clip = _clip()
    await writer.add_clip(clip)
    await writer.update_clip(clip.id, state="processing", now_ms=T0)
    async with asyncio.timeout(10):
        while not (heard[EDGE_CHANNEL] and heard[CLIP_CHANNEL]):
            arrived.clear()
            await arrived.wait()
    assert heard[EDGE_CHANNEL] == ["cam"]
    assert heard[CLIP_CHANNEL] == [f"node-a clip.processing {clip.id}"]


async def test_overlays_round_trip(index: Index) -> None:
    from livecut.store.overlays import OverlayRow

    row = OverlayRow(id="ovl_1", name="logo", width=64, height=32, size_bytes=900, created_ms=T0)
    await index.overlays.add(row)
    assert await index.overlays.get("ovl_1") == row
    assert await index.overlays.all() == [row]
    assert await index.overlays.delete("ovl_1") and not await index.overlays.delete("ovl_1")


async def test_a_sqlite_index_from_before_numbered_migrations_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the shape of a version-1 index, some rows in it
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE streams (id TEXT PRIMARY KEY, url TEXT NOT NULL, created_ms INTEGER);"
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, state TEXT"
            " NOT NULL, clock TEXT NOT NULL, started_ms INTEGER NOT NULL, ended_ms INTEGER,"
            " end_reason TEXT, live_edge_ms INTEGER);"
            "INSERT INTO streams VALUES ('cam', 'http://127.0.0.1/x.m3u8', 1);"
            "INSERT INTO sessions VALUES ('ses_b', 'cam', 'ended', 'origin', 50, 60, 'gap', 60);"
            "INSERT INTO sessions VALUES ('ses_a', 'cam', 'live', 'origin', 10, NULL, NULL, 20);"
        )
    index = Index(path)
    try:
        assert await index.schema_version() == SCHEMA_VERSION
        # Opening order survives as it was (the rows' insertion order).
        order = await index.sessions_in_opening_order("cam")
        assert [s.id for s in order] == ["ses_b", "ses_a"]
        opened = await index.open_session("cam", clock="origin", started_ms=5)
        assert (await index.sessions_in_opening_order("cam"))[-1].id == opened.id
    finally:
        await index.close()
