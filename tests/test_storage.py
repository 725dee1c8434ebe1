"""The disk floor and a full disk, on a real size-limited file system (a tmpfs of 8 MiB)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from livecut import metrics
from livecut.api.storage import DiskBody, StorageBody, StreamStorageBody
from livecut.clips.jobs import ClipRequest, Window
from livecut.config import Config, StorageConfig, StreamConfig
from livecut.daemon import Daemon
from livecut.origin import LiveOrigin
from livecut.store.files import TMP_SUFFIX, prune_empty_folders, write_atomic
from livecut.store.index import INDEX_FILE
from tests.engines import open_index
from tests.harness import daemon_config, index_segment, running, session_ended, until

TMPFS_SIZE = 8 * 1024 * 1024
# About 145 kB a one-second segment: the 8 MiB disk fills in a minute of recording.
BITRATE = 1_000_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB mounted for the test, unmounted after it."""
    if os.geteuid() != 0:
        pytest.fail(
            "tests/test_storage.py mounts a tmpfs (mount -t tmpfs -o size=8m tmpfs DIR) "
            "and needs root for it, as CI runs; run the test as root"
        )
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        # A process killed by the test may hold a file there for a moment after it dies.
        for _ in range(100):  # 10 s at most
            if subprocess.run(["umount", str(mount_point)], check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave_bytes: int) -> Path:
    """Another program takes the disk's space, all but leave_bytes."""
    filler = disk / "filler"
    size = free_bytes(disk) - leave_bytes
    assert size > 0, "the disk is already fuller than asked"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * size)
    return filler


def part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{TMP_SUFFIX}")]


def stream(stream_id: str, url: str) -> StreamConfig:
    return StreamConfig(
        id=stream_id,
        url=url,
        retention_s=3600.0,
        session_gap_s=60.0,
        headers=(),
        enabled=True,
    )


def with_storage(config: Config, storage: StorageConfig, *streams: StreamConfig) -> Config:
    return replace(config, storage=storage, streams=streams or config.streams)


def sample(name: str, labels: dict[str, str]) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


async def test_floor_evicts_the_oldest_segments_but_not_what_a_clip_serves(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    old_origin = LiveOrigin(segment_ms=1000, prefill=6, end_after=6, video_bitrate=BITRATE)
    new_origin = LiveOrigin(segment_ms=1000, prefill=1, window=6, video_bitrate=BITRATE)
    old_url = await old_origin.start()
    new_url = await new_origin.start()
    floor = 2 * 1024 * 1024
    storage = StorageConfig(min_free_bytes=floor, keep_live_segments=3)
    config = with_storage(
        daemon_config(data_dir, old_url), storage, stream("old", old_url), stream("new", new_url)
    )
    evicted_before = sample("livecut_evicted_segments_total", {"stream": "old"}) or 0.0
    try:
        async with running(config) as daemon:
            await until(daemon, "old", lambda: session_ended(daemon, "old"), timeout_s=30)
            old = await daemon.store.index.stream_segments("old", 0, 2**62)
            assert len(old) == 6
            # An HLS clip of the second and third segments pins them.
            clip = await daemon.jobs.submit(
                ClipRequest(
                    stream_id="old",
                    session_id=None,
                    windows=(Window(start_ms=old[1].start_ms, end_ms=old[2].end_ms),),
                    formats=("hls",),
                )
            )
            done = await daemon.jobs.wait_finished(clip.id, timeout_s=30)
            assert done is not None and done.state == "ready", done
            pinned = {old[1].id, old[2].id}
            unpinned = [s for s in old if s.id not in pinned]

            # Other programs use the disk up to just above the floor: the new stream's
            # next segments would cross it.
            fill(small_disk, leave_bytes=floor + 100_000)

            seen: list[list[int]] = []

            async def progress() -> bool:
                segments = await daemon.store.index.stream_segments("old", 0, 2**62)
                left = [s.seq for s in segments]
                if not seen or seen[-1] != left:
                    seen.append(left)
                # Rows go first, then their files (in a thread): wait for both.
                ids = {s.id for s in segments}
                return not any(s.id in ids or (data_dir / s.path).exists() for s in unpinned)

            await until(daemon, "new", progress, timeout_s=60)
            # Oldest first: each step took the oldest unpinned segments that were left.
            order = [s.seq for s in unpinned]
            for left in seen:
                gone = [seq for seq in order if seq not in left]
                assert gone == order[: len(gone)], f"evicted out of order: {seen}"
            left = await daemon.store.index.stream_segments("old", 0, 2**62)
            assert {s.id for s in left} == pinned
            for segment in unpinned:
                assert not (data_dir / segment.path).exists()
            for segment in left:
                assert (data_dir / segment.path).is_file()
            assert free_bytes(small_disk) >= floor - 200_000, "the floor is kept"
            spans, _gaps = await daemon.store.index.timeline("old", 0, 2**62, limit=100)
            assert [(a, b) for a, b, _ in spans] == [(old[1].start_ms, old[2].end_ms)]
            evicted = sample("livecut_evicted_segments_total", {"stream": "old"})
            assert evicted == evicted_before + len(unpinned)

            async with aiohttp.ClientSession() as http:
                # The clip still plays: its playlist and every segment it names.
                base = f"{daemon.base_url}/v1/clips/{clip.id}/"
                async with http.get(base + "index.m3u8") as response:
                    assert response.status == 200
                    playlist = await response.text()
                media = [line for line in playlist.splitlines() if line.startswith("media/")]
                assert len(media) == 2
                for name in media:
                    async with http.get(base + name) as response:
                        assert response.status == 200
                        assert len(await response.read()) in {s.size for s in left}
                async with http.get(f"{daemon.base_url}/v1/storage") as response:
                    assert response.status == 200
                    report = await response.json()
            by_stream = {s["stream"]: s for s in report["streams"]}
            assert by_stream["old"]["segments"] == 2
            assert by_stream["old"]["pinned_bytes"] == sum(s.size for s in left)
            assert by_stream["old"]["bytes"] == sum(s.size for s in left)
            assert by_stream["old"]["oldest_ms"] == old[1].start_ms
            assert by_stream["new"]["segments"] >= 3
            assert report["disk"]["floor_bytes"] == floor
            assert report["disk"]["total_bytes"] == TMPFS_SIZE
            assert 0 < report["disk"]["free_bytes"] < TMPFS_SIZE
            assert report["keep_live_segments"] == 3
    finally:
        await old_origin.stop()
        await new_origin.stop()


async def test_full_disk_is_a_disk_full_gap_and_recording_resumes(small_disk: Path) -> None:
    data_dir = small_disk / "data"
    origin = LiveOrigin(segment_ms=1000, prefill=2, window=6, video_bitrate=BITRATE)
    url = await origin.start()
    # No floor, and nothing the floor could take: the disk simply fills up.
    storage = StorageConfig(min_free_bytes=0, keep_live_segments=100_000)
    config = with_storage(daemon_config(data_dir, url, session_gap_s=60.0), storage)
    write_errors = sample("livecut_storage_errors_total", {"op": "write"}) or 0.0
    try:
        async with running(config) as daemon:
            index = daemon.store.index

            async def recorded_two() -> bool:
                return len(await index.stream_segments("cam", 0, 2**62)) >= 2

            await until(daemon, "cam", recorded_two, timeout_s=30)
            live = await index.live_session("cam")
            assert live is not None
            rendition = (await index.renditions(live.id))[0]
            # Room for the index to note a gap, not for a ~145 kB segment.
            filler = fill(small_disk, leave_bytes=64 * 1024)

            async def full_gaps() -> list[int]:
                return [
                    g.last_seq or 0
                    for g in await index.rendition_gaps(rendition.id)
                    if g.reason == "disk_full"
                ]

            async def a_full_gap() -> bool:
                return bool(await full_gaps())

            await until(daemon, "cam", a_full_gap, timeout_s=30)
            assert part_files(data_dir) == [], "a failed write leaves no temporary file"
            assert sample("livecut_storage_errors_total", {"op": "write"}) > write_errors
            assert sample("livecut_origin_errors_total", {"stream": "cam", "kind": "storage"}) in (
                None,
                0.0,
            )
            assert daemon.recorders["cam"].status.state != "failing", "the origin is fine"

            filler.unlink()
            lost = max(await full_gaps())

            async def resumed() -> bool:
                newest = await index.last_segment(rendition.id)
                return newest is not None and newest.seq > lost

            await until(daemon, "cam", resumed, timeout_s=30)
            assert len(await index.sessions("cam")) == 1, "the same session goes on"
            assert part_files(data_dir) == []
            for segment in await index.stream_segments("cam", 0, 2**62):
                assert (data_dir / segment.path).stat().st_size == segment.size
    finally:
        await origin.stop()


async def test_failed_clip_removes_its_folder(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=2, end_after=2)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            start = origin.segment_pdt_ms(0) - 3_600_000  # an hour before anything recorded
            clip = await daemon.jobs.submit(
                ClipRequest(
                    stream_id="cam",
                    session_id=None,
                    windows=(Window(start_ms=start, end_ms=start + 2000),),
                )
            )
            done = await daemon.jobs.wait_finished(clip.id, timeout_s=20)
            assert done is not None and done.state == "failed"
            assert not daemon.store.clip_dir(clip.id).exists()
            assert sample("livecut_clip_jobs_finished_total", {"outcome": "failed"}) >= 1
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{daemon.base_url}/v1/storage?stream=cam") as response:
                    assert response.status == 400
                    (message,) = (await response.json())["errors"]
                    assert "stream" in message
                async with http.head(f"{daemon.base_url}/v1/storage") as response:
                    assert response.status == 200
                async with http.get(f"{daemon.base_url}/v1/storage") as response:
                    body = await response.json()
            (cam,) = body["streams"]
            recorded = await daemon.store.index.stream_segments("cam", 0, 2**62)
            assert cam["segments"] == len(recorded) == 2
            assert cam["bytes"] == sum(s.size for s in recorded)
            assert cam["pinned_bytes"] == 0, "a failed clip holds nothing"
            assert cam["newest_ms"] == recorded[-1].end_ms
            assert body["index_bytes"] > 0
    finally:
        await origin.stop()


def test_failed_write_leaves_no_part_file_and_a_pruned_folder_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "streams").mkdir(parents=True)
    with pytest.raises(TypeError):
        write_atomic(root, "streams/a/b/1.ts", "not bytes")
    assert part_files(root) == []
    prune_empty_folders(root, ["streams/a/b/1.ts"])
    assert not (root / "streams" / "a").exists()
    assert (root / "streams").is_dir(), "the tree's own folders stay"
    write_atomic(root, "streams/a/b/2.ts", b"[2]")
    assert (root / "streams/a/b/2.ts").read_bytes() == b"[2]"


def test_storage_body_matches_the_openapi_document() -> None:
    from livecut.api.app import OPENAPI

    schema = json.loads(OPENAPI.read_text())["components"]["schemas"]["Storage"]
    assert {f.name for f in dataclasses.fields(StorageBody)} == set(schema["properties"])
    assert set(schema["required"]) == set(schema["properties"])
    disk = schema["properties"]["disk"]
    assert {f.name for f in dataclasses.fields(DiskBody)} == set(disk["properties"])
    item = schema["properties"]["streams"]["items"]
    assert {f.name for f in dataclasses.fields(StreamStorageBody)} == set(item["properties"])


def test_floor_is_the_larger_of_bytes_and_percent() -> None:
    config = StorageConfig(min_free_bytes=1000, min_free_percent=5.0)
    assert config.floor_bytes(10_000) == 1000
    assert config.floor_bytes(1_000_000) == 50_000


async def test_every_alerted_series_exists_at_zero_from_start(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=1, end_after=1)
    url = await origin.start()
    try:
        config = daemon_config(data_dir, url, stream_id="fresh")
        daemon = Daemon(config)
        await daemon.start()
        try:
            for reason in metrics.GAP_REASONS:
                labels = {"stream": "fresh", "reason": reason}
                assert sample("livecut_gaps_total", labels) is not None, reason
            assert sample("livecut_gap_seconds_total", {"stream": "fresh"}) is not None
            assert (
                sample("livecut_origin_errors_total", {"stream": "fresh", "kind": "timeout"}) == 0
            )
            assert sample("livecut_evicted_bytes_total", {"stream": "fresh"}) is not None
            assert sample("livecut_clip_jobs_finished_total", {"outcome": "failed"}) is not None
            assert sample("livecut_webhook_attempts_total", {"outcome": "failed"}) is not None
            assert sample("livecut_storage_errors_total", {"op": "write"}) is not None
            later = stream("later", url)
            await daemon.add_stream(later)
            assert sample("livecut_gaps_total", {"stream": "later", "reason": "expired"}) == 0
            info = [
                s
                for family in metrics.REGISTRY.collect()
                if family.name == "livecut_build_info"
                for s in family.samples
            ]
            assert len(info) == 1 and info[0].value == 1
            assert set(info[0].labels) == {"version", "python", "pyav", "ffmpeg"}
            assert all(info[0].labels.values())
            assert sample("process_cpu_seconds_total", {}) is not None
            # Whatever the alert rules and the dashboard count has a series already.
            from tests.test_alerts import METRIC_NAME, dashboard_expressions, rule_expressions

            used = {
                name
                for expr in rule_expressions() + dashboard_expressions()
                for name in METRIC_NAME.findall(expr)
            }
            for family in metrics.REGISTRY.collect():
                if family.type in ("counter", "histogram") and any(
                    name.startswith(family.name + "_") for name in used
                ):
                    assert family.samples, f"{family.name} has no series before its first event"
        finally:
            await daemon.stop()
    finally:
        await origin.stop()


async def test_eviction_candidates_oldest_first_sparing_pins_and_live_edges(
    tmp_path: Path,
) -> None:
    from livecut.store.records import ClipRow, SegmentRow

    index = await open_index(tmp_path / "index.sqlite3")
    try:
        await index.ensure_stream("a", "http://127.0.0.1/a.m3u8", 0)
        await index.ensure_stream("b", "http://127.0.0.1/b.m3u8", 0)
        ended = await index.open_session("a", clock="origin", started_ms=0)
        live = await index.open_session("b", clock="origin", started_ms=500)
        ids: dict[str, int] = {}

        async def add(session_id: str, name: str, seq: int, start_ms: int) -> None:
            rendition = await index.add_rendition(session_id, name="main", uri="u")
            await index_segment(index, rendition.id, seq, start_ms, path=f"{name}.ts")
            last = await index.last_segment(rendition.id)
            assert last is not None
            ids[name] = last.id

        # Interleaved in time across the two streams.
        for n in range(4):
            await add(ended.id, f"a{n}", n, n * 1000)
            await add(live.id, f"b{n}", n, n * 1000 + 500)
        await index.end_session(ended.id, ended_ms=4000, reason="endlist")
        clip = ClipRow(
            id="clip_pin",
            stream_id="a",
            session_id=None,
            name=None,
            state="ready",
            start_ms=1000,
            end_ms=2000,
            created_ms=0,
            updated_ms=0,
            error=None,
            result=None,
        )
        await index.add_clip(clip)
        await index.pin_segments(clip.id, [ids["a1"]])

        def names(candidates: list[tuple[str, SegmentRow]]) -> list[str]:
            by_id = {v: k for k, v in ids.items()}
            return [by_id[s.id] for _, s in candidates]

        everything = await index.eviction_candidates(keep_live=2, limit=100)
        # Oldest first across streams; a1 is pinned; b2 and b3 are the live edge.
        assert names(everything) == ["a0", "b0", "b1", "a2", "a3"]
        assert {stream for stream, _ in everything} == {"a", "b"}
        first = await index.eviction_candidates(keep_live=2, limit=2)
        last = first[-1][1]
        rest = await index.eviction_candidates(
            keep_live=2, limit=100, after=(last.start_ms, last.id)
        )
        assert names(first + rest) == names(everything)
        await index.unpin_segments(clip.id)
        assert "a1" in names(await index.eviction_candidates(keep_live=2, limit=100))
        # Deleting rows hands back what must go from disk with them.
        assert await index.delete_segments([ids["a0"]]) == []
    finally:
        await index.close()


async def test_sigkill_while_the_floor_evicts_leaves_a_consistent_index(
    small_disk: Path, tmp_path: Path
) -> None:
    import asyncio
    import signal
    import sys

    from tests.test_crash import rows_match_files

    data_dir = small_disk / "data"
    # Thirty segments at once on a disk with room for about fifteen: the floor evicts
    # while the catch-up is still being written.
    origin = LiveOrigin(segment_ms=1000, window=30, prefill=30, video_bitrate=BITRATE)
    url = await origin.start()
    config_path = tmp_path / "livecut.toml"
    config_path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
data_dir = "{data_dir}"

[storage]
min_free_bytes = "5MiB"
keep_live_segments = 3

[[streams]]
id = "cam"
url = "{url}"
session_gap = "60s"
"""
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "serve",
            "--config",
            str(config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its segment workers die with it, as in a crash
        )
        seen: set[Path] = set()
        try:
            for _ in range(1200):  # 60 s at most
                # Published segments only: a staged one leaves streams/.incoming when it
                # is published, not evicted.
                now = {p for p in (data_dir / "streams" / "cam").rglob("*.ts")}
                if seen - now:
                    break  # a segment that was stored has been evicted
                seen |= now
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the floor never evicted anything")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert await rows_match_files(data_dir) > 0, "every row names a whole file"

        storage = StorageConfig(min_free_bytes=5 * 1024 * 1024, keep_live_segments=3)
        config = with_storage(daemon_config(data_dir, url, session_gap_s=60.0), storage)
        # Start-up reconciliation alone, with nothing being recorded meanwhile.
        config = replace(config, streams=(replace(config.streams[0], enabled=False),))
        async with running(config) as daemon:
            known = await daemon.store.index.all_media_paths()
            on_disk = {
                p.relative_to(data_dir).as_posix() for p in (data_dir / "streams").rglob("*")
            }
            on_disk = {p for p in on_disk if (data_dir / p).is_file()}
            assert on_disk <= known, f"files no row names survived: {sorted(on_disk - known)}"
            assert part_files(data_dir) == []
    finally:
        await origin.stop()


async def test_make_room_pages_through_pins_and_busy_ranges(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livecut.store import space
    from livecut.store.records import ClipRow
    from livecut.store.store import Store

    monkeypatch.setattr(space, "EVICT_PAGE", 4)  # several pages, one left half-read
    data = small_disk / "data"
    data.mkdir()
    index = await open_index(data / INDEX_FILE)
    store = Store(data, StorageConfig(min_free_bytes=0, keep_live_segments=1), index=index)
    try:
        await index.ensure_stream("cam", "http://127.0.0.1/cam.m3u8", 0)
        session = await index.open_session("cam", clock="origin", started_ms=0)
        rendition = await index.add_rendition(session.id, name="main", uri="u")
        size = 256 * 1024
        for seq in range(12):
            relpath = f"streams/cam/{session.id}/main/0-{seq}.ts"
            await store.write(relpath, bytes([seq]) * size)
            await index_segment(index, rendition.id, seq, seq * 1000, path=relpath, size=size)
        await index.end_session(session.id, ended_ms=12_000, reason="endlist")
        segments = await index.rendition_segments(rendition.id)
        await index.add_clip(
            ClipRow(
                id="clip_hls",
                stream_id="cam",
                session_id=None,
                name=None,
                state="ready",
                start_ms=1000,
                end_ms=2000,
                created_ms=0,
                updated_ms=0,
                error=None,
                result=None,
            )
        )
        await index.pin_segments("clip_hls", [segments[1].id])

        async def busy(stream: str) -> list[tuple[int, int]]:
            return [(3000, 5000)] if stream == "cam" else []

        store.space.busy = busy
        # One segment's file is gone already (its row is not): evicting it frees nothing,
        # and another round must go on from the first candidate not yet examined.
        (store.root / segments[5].path).unlink()
        need = free_bytes(small_disk) + 3 * size - 100_000
        eviction = await store.space.make_room(need)
        left = [s.seq for s in await index.rendition_segments(rendition.id)]
        # 1 is pinned by an HLS clip, 3 and 4 are read by a job: 0, 2, 5, then 6 go.
        assert left == [1, 3, 4, 7, 8, 9, 10, 11]
        assert eviction.segments == 4 and eviction.bytes == 4 * size
        assert eviction.short_bytes == 0
        for gone in (segments[0], segments[2], segments[6]):
            assert not (store.root / gone.path).exists()
        assert (store.root / segments[1].path).read_bytes()[:1] == b"\x01"
    finally:
        await store.close()


async def test_a_reload_moves_the_floor(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=1, end_after=1)
    url = await origin.start()
    try:
        config = daemon_config(data_dir, url)
        async with running(config) as daemon:
            assert daemon.store.space.config == StorageConfig()
            raised = StorageConfig(min_free_bytes=0, min_free_percent=90.0)
            outcome = await daemon.apply_config(replace(config, storage=raised))
            assert outcome.result == "applied"
            assert daemon.store.space.config == raised
            disk = await daemon.store.space.disk()
            assert disk.floor_bytes == int(disk.total_bytes * 0.9)
            assert sample("livecut_disk_floor_bytes", {}) == disk.floor_bytes
    finally:
        await origin.stop()


# Its subject is the SQLite file on the full disk: an index on PostgreSQL is not there,
# so its gap rows are never refused.
@pytest.mark.own_engines
async def test_a_disk_too_full_for_the_index_too_does_not_stop_the_recorder(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    origin = LiveOrigin(segment_ms=1000, prefill=2, window=6, video_bitrate=BITRATE)
    url = await origin.start()
    storage = StorageConfig(min_free_bytes=0, keep_live_segments=100_000)
    config = with_storage(daemon_config(data_dir, url, session_gap_s=60.0), storage)
    index_errors = sample("livecut_storage_errors_total", {"op": "index"}) or 0.0
    # The registry is the process's: earlier tests may have counted crashes of a "cam".
    crashes_before = (
        sample("livecut_origin_errors_total", {"stream": "cam", "kind": "crash"}) or 0.0
    )
    try:
        async with running(config) as daemon:
            index = daemon.store.index

            async def recorded_two() -> bool:
                return len(await index.stream_segments("cam", 0, 2**62)) >= 2

            await until(daemon, "cam", recorded_two, timeout_s=30)
            live = await index.live_session("cam")
            assert live is not None
            rendition = (await index.renditions(live.id))[0]
            before = await index.last_segment(rendition.id)
            assert before is not None
            # Not a byte left: neither a segment nor the index's next page can be written.
            filler = fill(small_disk, leave_bytes=0)
            write_errors = sample("livecut_storage_errors_total", {"op": "write"}) or 0.0

            def failed_twice() -> bool:
                now = sample("livecut_storage_errors_total", {"op": "write"}) or 0.0
                return now >= write_errors + 2

            await until(daemon, "cam", failed_twice, timeout_s=30)
            assert part_files(data_dir) == []
            filler.unlink()

            async def resumed() -> bool:
                newest = await index.last_segment(rendition.id)
                return newest is not None and newest.seq > before.seq + 2

            await until(daemon, "cam", resumed, timeout_s=30)
            crashes = sample("livecut_origin_errors_total", {"stream": "cam", "kind": "crash"})
            assert crashes == crashes_before, "the rendition worker never died"
            assert len(await index.sessions("cam")) == 1
            # The gaps could not be indexed either: counted, and survived.
            assert (sample("livecut_storage_errors_total", {"op": "index"}) or 0.0) > index_errors
    finally:
        await origin.stop()


async def test_deleting_segments_cuts_the_recorded_spans(tmp_path: Path) -> None:
    index = await open_index(tmp_path / "index.sqlite3")
    try:
        await index.ensure_stream("cam", "http://127.0.0.1/cam.m3u8", 0)
        session = await index.open_session("cam", clock="origin", started_ms=0)
        rendition = await index.add_rendition(session.id, name="main", uri="u")
        for seq in range(5):
            await index_segment(index, rendition.id, seq, seq * 1000, path=f"{seq}.ts", size=1)
        ids = [s.id for s in await index.rendition_segments(rendition.id)]

        async def ranges() -> list[tuple[int, int]]:
            spans, _gaps = await index.timeline("cam", 0, 10_000, limit=100)
            return [(start, end) for start, end, _session in spans]

        assert await ranges() == [(0, 5000)]
        await index.delete_segments([ids[2]])  # a pinned clip kept its neighbours
        assert await ranges() == [(0, 2000), (3000, 5000)]
        await index.delete_segments([ids[0], ids[4]])
        assert await ranges() == [(1000, 2000), (3000, 4000)]
        await index.delete_segments([ids[1], ids[3]])
        assert await ranges() == []
    finally:
        await index.close()
