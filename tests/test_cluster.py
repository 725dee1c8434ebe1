"""Three nodes, one PostgreSQL index, one S3 bucket, two live streams.

Each node is a `livecut serve` process of its own, so one can be SIGKILLed: the test
then holds the cluster to what operators need of it. Clips asked of any node become
ready and are served by every node; the streams of the killed node are taken over
within the lease bound, the media lost meanwhile recorded as a gap; no rendition is
recorded by two nodes; every accepted clip is told to its callback once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from livecut.origin import LiveOrigin
from tests.cluster import (
    Node,
    ask_clip,
    get_json,
    holders,
    live_edge,
    receiver,
    start_node,
    stop_node,
    wait_for,
)
from tests.engines import OWN_ENGINES
from tests.harness import decode_clip
from tests.s3server import S3Server

pytestmark = OWN_ENGINES

LEASE_S = 3.0
# A stream's new holder is found within a lease, a renewal period and a pass.
TAKEOVER_BOUND_S = LEASE_S + LEASE_S / 3 + 2.0
STREAMS = ("cam", "cam2")


async def test_three_nodes_share_the_streams_the_clips_and_a_dead_nodes_work(
    tmp_path: Path, pg_database: str, s3_server: S3Server, s3_bucket: str
) -> None:
    # Two-segment windows of 1 s segments: a takeover of a few seconds loses media.
    origins = {s: LiveOrigin(segment_ms=1000, window=2, prefill=2, path=f"/{s}") for s in STREAMS}
    urls = {s: await o.start() for s, o in origins.items()}
    nodes: list[Node] = []
    try:
        async with receiver() as (hooks, hook), aiohttp.ClientSession() as http:
            for name in ("node-1", "node-2", "node-3"):
                nodes.append(
                    await start_node(
                        tmp_path,
                        name,
                        dsn=pg_database,
                        s3=s3_server,
                        bucket=s3_bucket,
                        origins=urls,
                        lease_s=LEASE_S,
                    )
                )

            async def all_held_once() -> bool:
                held = await holders(http, nodes[-1])
                return all(len(held.get(s, [])) == 1 for s in STREAMS)

            await wait_for("each stream held by one node", all_held_once, timeout_s=30)

            first: dict[str, int] = {}

            async def recording() -> bool:
                # 3 s of each stream past its first recorded edge: the clips below lie in
                # what each stream itself has recorded, however late either one started.
                for stream in STREAMS:
                    edge = await live_edge(http, nodes[0], stream)
                    if edge > 0:
                        first.setdefault(stream, edge)
                    if edge == 0 or edge < first[stream] + 3000:
                        return False
                return True

            await wait_for("both streams recorded for 3 s", recording, timeout_s=60)
            # A clip of recorded media from every node, and one past the live edge asked
            # of each node: that one waits, woken by the recording node's notices.
            clips: dict[str, str] = {}  # clip -> the node asked
            for node in nodes:
                edge = await live_edge(http, node, "cam")
                clips[await ask_clip(http, node, "cam", edge - 3000, edge - 1000, hook)] = node.name
                edge = await live_edge(http, node, "cam2")
                clips[await ask_clip(http, node, "cam2", edge + 500, edge + 2500, hook)] = node.name

            async def all_ready() -> bool:
                return set(hooks.ready()) >= set(clips)

            await wait_for("every clip ready (its webhook)", all_ready, timeout_s=60)
            # Every node answers for every stream as the node recording it sees it.
            held = await holders(http, nodes[-1])
            for node in nodes:
                for stream in STREAMS:
                    body = await get_json(http, f"{node.url}/v1/streams/{stream}")
                    assert body["recorded_by"] == held[stream][0], (node.name, body)
                    assert body["state"] == "recording", (node.name, body)
                    assert body["segments_recorded"] >= 3, (node.name, body)
                    assert body["status_ms"] >= body["live_edge_ms"] - 3 * LEASE_S * 1000
            # Every node serves every clip: the MP4 comes from the bucket.
            for n, clip_id in enumerate(clips):
                # From a node other than the one asked (taking turns between the two).
                others = [node for node in nodes if node.name != clips[clip_id]]
                other = others[n % len(others)]
                clip = await get_json(http, f"{other.url}/v1/clips/{clip_id}")
                assert clip["state"] == "ready", clip
                async with http.get(f"{other.url}/v1/clips/{clip_id}/clip.mp4") as r:
                    assert r.status == 200, await r.text()
                    data = await r.read()
                out = tmp_path / f"{clip_id}.mp4"
                out.write_bytes(data)
                decoded = decode_clip(out)
                span_s = decoded.video_end_s - decoded.frames[0][0]
                assert 1.8 <= span_s <= 2.2, (clip_id, span_s)

            # Kill the node recording "cam": another takes the stream over in time.
            held = await holders(http, nodes[-1])
            victim = next(n for n in nodes if n.name == held["cam"][0])
            survivors = [n for n in nodes if n is not victim]
            before = await live_edge(http, survivors[0], "cam")
            killed_at = time.monotonic()
            killed_ms = int(time.time() * 1000)
            await stop_node(victim, signal.SIGKILL)
            # A clip asked of a survivor while the stream has no recorder waits for it.
            late = await ask_clip(http, survivors[0], "cam", killed_ms, killed_ms + 6000, hook)
            clips[late] = survivors[0].name

            async def taken_over() -> bool:
                now_held = await holders(http, survivors[0])
                return bool(now_held.get("cam")) and victim.name not in now_held["cam"]

            await wait_for("cam taken over", taken_over, timeout_s=TAKEOVER_BOUND_S + 5)
            takeover_s = time.monotonic() - killed_at
            assert takeover_s <= TAKEOVER_BOUND_S, takeover_s

            async def grew() -> bool:
                return await live_edge(http, survivors[0], "cam") > killed_ms + 4000

            await wait_for("cam recorded again", grew, timeout_s=30)
            assert await live_edge(http, survivors[0], "cam") > before
            # From well before the first recording: a gap left by an earlier handover (as
            # the nodes joined) counts as much as the takeover's.
            timeline = await get_json(
                http, f"{survivors[0].url}/v1/streams/cam/timeline?from_ms={before - 600_000}"
            )
            gaps = timeline["gaps"]
            assert isinstance(gaps, list), timeline
            await wait_for("the late clip ready", all_ready, timeout_s=60)

            # Each accepted clip was told to its callback exactly once.
            assert hooks.ready() == {clip_id: 1 for clip_id in clips}

        # No rendition was recorded by two nodes: every segment row once, every row an
        # object in the bucket.
        db = await asyncpg.connect(pg_database)
        try:
            doubled = await db.fetch(
                "SELECT rendition_id, seq FROM segments GROUP BY rendition_id, seq"
                " HAVING COUNT(*) > 1"
            )
            paths = [r["path"] for r in await db.fetch("SELECT path FROM segments")]
            live = await db.fetch(
                "SELECT s.stream_id, COUNT(*) AS n FROM sessions s WHERE s.state = 'live'"
                " GROUP BY s.stream_id"
            )
            recorded = await db.fetch(
                "SELECT seg.rendition_id, seg.seq FROM segments seg"
                " JOIN renditions r ON r.id = seg.rendition_id"
                " JOIN sessions s ON s.id = r.session_id WHERE s.stream_id = 'cam'"
            )
            gap_rows = await db.fetch("SELECT rendition_id, first_seq, last_seq FROM gaps")
        finally:
            await db.close()
        # Media lost while no node recorded "cam" (the takeover, and any handover) is a
        # recorded gap: every segment missing between two recorded ones lies in a gap row.
        # (The origin numbers its segments on without a reset, across epochs.)
        runs: dict[int, set[int]] = {}
        for row in recorded:
            runs.setdefault(row["rendition_id"], set()).add(row["seq"])
        missing = [
            (rendition, seq)
            for rendition, seqs in runs.items()
            for seq in range(min(seqs), max(seqs) + 1)
            if seq not in seqs
        ]
        for rendition, seq in missing:
            assert any(
                g["rendition_id"] == rendition
                and g["first_seq"] is not None
                and g["first_seq"] <= seq <= g["last_seq"]
                for g in gap_rows
            ), f"segment {seq} of rendition {rendition} lost without a gap row"
        if missing:
            assert gaps, "media was lost across the takeover: the timeline shows a gap"
        assert doubled == []
        assert all(r["n"] <= 1 for r in live), live
        stored = set()
        for page in s3_server.admin.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket):
            stored |= {obj["Key"] for obj in page.get("Contents", [])}
        unstored = [p for p in paths if p not in stored]
        assert not unstored, unstored[:5]
        takeover_note = tmp_path / "takeover_s.txt"
        takeover_note.write_text(f"{takeover_s:.2f}\n")
        print(f"takeover {takeover_s:.2f} s; clips {len(clips)}; lost {missing}; gaps {gaps}")
    finally:
        for node in nodes:
            await stop_node(node)
        for origin in origins.values():
            await origin.stop()


async def test_migrate_and_check_config_connect_to_the_index(
    tmp_path: Path, pg_database: str
) -> None:
    from livecut.store.schema import SCHEMA_VERSION
    from tests.s3server import free_port

    async def livecut(*argv: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    def config(name: str, dsn: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[server]\ndata_dir = "{tmp_path / name}"\n\n[cluster]\nindex_url = "{dsn}"\n'
            f'node_id = "{name}"\n\n[[streams]]\nid = "cam"\nurl = "http://127.0.0.1:9/x.m3u8"\n'
        )
        return path

    good = config("good", pg_database)
    code, out = await livecut("check-config", "--connect", str(good))
    assert code == 0 and f"schema version 0 of {SCHEMA_VERSION}" in out, out
    code, out = await livecut("migrate", "--config", str(good))
    assert code == 0 and f"schema version {SCHEMA_VERSION} (up to date)" in out, out
    code, out = await livecut("check-config", "--connect", str(good))
    assert code == 0 and "(up to date)" in out, out
    # Nothing listens there: the error names the server, never a password.
    nowhere = pg_database.rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/livecut"
    code, out = await livecut("migrate", "--config", str(config("bad", nowhere)))
    assert code == 1 and "127.0.0.1" in out and "unreachable" in out, out
