"""Media in an S3 bucket (storage.backend = "s3"): the daemon against moto's S3 server and a
live origin on 127.0.0.1, a second node reading what the first stored, and the failures."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import av
import pytest
from PIL import Image

from livecut import metrics
from livecut.api.clips import content_disposition
from livecut.config import ApiKey, Config, S3Config, StorageConfig
from livecut.media.scenes import REEL
from livecut.origin import LiveOrigin
from livecut.reload import plan_reload
from livecut.store.analysis import AnalysisJobRow, JobState
from livecut.store.media import CACHE_DIR, ORPHAN_AGE_S
from livecut.store.overlays import OverlayRow
from livecut.store.records import segment_files
from livecut.store.s3media import S3Media
from livecut.store.store import INDEX_FILE, Store
from tests.engines import engine_url, open_index
from tests.harness import (
    daemon_config,
    decode_clip,
    recorded_vod,
    running,
    session_ended,
    until,
)
from tests.s3server import CREDENTIALS, S3Server, free_port
from tests.test_analysis_jobs import reel_origin
from tests.test_clips import PDT0, check_frames, clip_of, frame_covering
from tests.test_render import RED_LOGO, check_watermark, upload_overlay, watermark_render

PREFIX = "lc/"
KEY = "s3-test-key-0123456789abcdef"


def credentials_file(folder: Path) -> Path:
    path = folder / "s3-credentials.toml"
    path.write_text(
        f'access_key_id = "{CREDENTIALS.access_key_id}"\n'
        f'secret_access_key = "{CREDENTIALS.secret_access_key}"\n'
    )
    return path


def s3_config(server: S3Server, bucket: str, folder: Path, **overrides: Any) -> S3Config:
    return replace(
        server.config(bucket, prefix=PREFIX),
        credentials_file=credentials_file(folder),
        **overrides,
    )


def on_s3(s3: S3Config, **storage: Any) -> Callable[[Config], Config]:
    def adjust(config: Config) -> Config:
        return replace(config, storage=StorageConfig(backend="s3", s3=s3, **storage))

    return adjust


def object_sizes(server: S3Server, bucket: str, prefix: str = "") -> dict[str, int]:
    """relpath -> size of every object under the store's prefix."""
    found: dict[str, int] = {}
    for page in server.admin.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=PREFIX + prefix
    ):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(PREFIX)] = item["Size"]
    return found


def object_bytes(server: S3Server, bucket: str, relpath: str) -> bytes:
    body = server.admin.get_object(Bucket=bucket, Key=PREFIX + relpath)["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def now_ms() -> int:
    return int(time.time() * 1000)


def copy_index(source: Path, target: Path) -> None:
    """The index as it stands (WAL included), for another node's data directory. Nodes
    on PostgreSQL share the index already: this run's database."""
    if engine_url() is not None:
        return
    with (
        contextlib.closing(sqlite3.connect(source / INDEX_FILE)) as src,
        contextlib.closing(sqlite3.connect(target / INDEX_FILE)) as dst,
    ):
        src.backup(dst)


async def engine_store(
    data_dir: Path, storage: StorageConfig, *, clock: Callable[[], float] = time.time
) -> Store:
    """A store with its data under data_dir and the index of this run's engine (the
    SQLite file there, or the database), not yet opened."""
    data_dir.mkdir(parents=True, exist_ok=True)
    index = await open_index(data_dir / INDEX_FILE)
    return Store(data_dir, storage, index=index, clock=clock)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- one node recording a live origin -------------------------------------------------


async def test_a_live_recording_puts_each_segment_before_its_row_and_clips_are_presigned(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    s3 = s3_config(s3_server, s3_bucket, tmp_path, url_expiry_s=600)
    base = daemon_config(data_dir, url)
    config = replace(
        on_s3(s3)(base),
        server=replace(base.server, api_keys=(ApiKey(name="ops", key=KEY),)),
    )
    puts_before = sample("livecut_object_store_requests_total", op="put", outcome="ok")
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        async with running(config) as daemon, aiohttp.ClientSession() as http:
            observed = []

            async def rows_are_objects() -> bool:
                # Rows first, then the listing: a row seen here was committed after its
                # PUT, so its object must be in a listing taken later.
                rows = await daemon.store.index.all_media_paths()
                objects = object_sizes(s3_server, s3_bucket, "streams/")
                assert rows <= objects.keys(), sorted(rows - objects.keys())
                observed.append(len(rows))
                edge = (await daemon.store.index.stream_live_edges()).get("cam", 0)
                return edge >= now_ms() - 2500 and len(rows) >= 8

            await until(daemon, "cam", rows_are_objects, timeout_s=30)
            assert len(observed) >= 3 and observed[-1] > observed[0], observed
            puts = sample("livecut_object_store_requests_total", op="put", outcome="ok")
            assert puts >= puts_before + 8
            # Media is in the bucket and its local copies in the cache; the data
            # directory's streams/ holds nothing but segments being staged.
            local = [p for p in (data_dir / "streams").rglob("*") if p.is_file()]
            assert all(p.parent.name == ".incoming" for p in local), local
            cached = {
                p.relative_to(data_dir / CACHE_DIR).as_posix()
                for p in (data_dir / CACHE_DIR).rglob("*")
                if p.is_file()
            }
            assert cached & await daemon.store.index.all_media_paths()

            start = now_ms() - 6000 + 130
            clip = await clip_of(
                daemon,
                {"start_ms": start, "end_ms": start + 3000, "formats": ["mp4", "hls"]},
                key=KEY,
            )
            assert clip.result is not None
            mp4 = clip.result["files"]["mp4"]  # type: ignore[index]
            clips = object_sizes(s3_server, s3_bucket, f"clips/{clip.id}/")
            assert clips == {
                f"clips/{clip.id}/clip.mp4": mp4["size_bytes"],
                f"clips/{clip.id}/index.m3u8": clips[f"clips/{clip.id}/index.m3u8"],
            }
            assert not daemon.store.clip_dir(clip.id).exists(), "uploaded, not kept locally"

            file_url = f"{daemon.base_url}/v1/clips/{clip.id}/clip.mp4"
            # Authentication comes before any redirect.
            async with http.get(file_url, allow_redirects=False) as refused:
                assert refused.status == 401
            async with http.get(file_url, headers=auth, allow_redirects=False) as redirect:
                assert redirect.status == 302
                assert redirect.headers["Cache-Control"] == "private, no-store"
                location = redirect.headers["Location"]
            query = parse_qs(urlsplit(location).query)
            assert query["X-Amz-Expires"] == ["600"]
            assert urlsplit(location).path.endswith(
                f"/{s3_bucket}/{PREFIX}clips/{clip.id}/clip.mp4"
            )
            async with http.head(file_url, headers=auth, allow_redirects=False) as head:
                # Answered by the daemon: a presigned URL is signed for GET only.
                assert head.status == 200
                assert head.headers["Content-Length"] == str(mp4["size_bytes"])
            async with http.get(location) as presigned:  # no key: the URL is the grant
                assert presigned.status == 200
                body = await presigned.read()
                assert presigned.headers["Content-Disposition"] == content_disposition(clip.id)
            assert sha256(body) == mp4["sha256"]
            (tmp_path / "clip.mp4").write_bytes(body)
            frames = decode_clip(tmp_path / "clip.mp4").frames
            first = (start - origin.epoch_ms) // 40  # frame_covering, from the live epoch
            last = (start + 3000 - 1 - origin.epoch_ms) // 40
            assert [n for _, n in frames] == list(range(first, last + 1))

            # The HLS clip's playlist comes from the daemon (its URIs are relative to it);
            # the media it lists redirect to the segments' objects.
            async with http.get(
                f"{daemon.base_url}/v1/clips/{clip.id}/index.m3u8", headers=auth
            ) as playlist:
                assert playlist.status == 200
                lines = (await playlist.text()).splitlines()
            media = next(line for line in lines if line.startswith("media/"))
            segment_id = int(media.removeprefix("media/").split(".")[0])
            segment = await daemon.store.index.pinned_segment(clip.id, segment_id)
            assert segment is not None
            async with http.get(
                f"{daemon.base_url}/v1/clips/{clip.id}/{media}", headers=auth
            ) as followed:
                assert followed.status == 200
                assert followed.url.host == urlsplit(s3_server.endpoint).hostname
                assert await followed.read() == object_bytes(s3_server, s3_bucket, segment.path)
            async with http.get(
                f"{daemon.base_url}/v1/streams/cam/media/{segment_id}.ts",
                headers=auth,
                allow_redirects=False,
            ) as playback:
                assert playback.status == 302
                assert f"/{PREFIX}{segment.path}?" in playback.headers["Location"]

            # Retention deletes the objects (and local copies) of what it drops; the
            # segments the HLS clip serves stay.
            stream = replace(config.streams[0], retention_s=1.0)
            await daemon.apply_config(replace(daemon.config, streams=(stream,)))
            before = set(object_sizes(s3_server, s3_bucket, "streams/"))
            report = await daemon.retain()
            assert report.segments_removed > 0
            kept = await daemon.store.index.all_media_paths()
            after = set(object_sizes(s3_server, s3_bucket, "streams/"))
            gone = before - after
            assert len(gone) >= report.segments_removed
            assert kept <= after, "rows still name objects"
            assert segment.path in after, "an HLS clip's segment outlives retention"
            assert not any((data_dir / CACHE_DIR / relpath).exists() for relpath in gone)

            # Deleting the clip deletes its objects.
            async with http.delete(
                f"{daemon.base_url}/v1/clips/{clip.id}", headers=auth
            ) as gone_clip:
                assert gone_clip.status == 204
            assert object_sizes(s3_server, s3_bucket, f"clips/{clip.id}/") == {}
    finally:
        await origin.stop()


# --- a second node on the same bucket --------------------------------------------------


async def test_another_node_cuts_from_the_bucket_and_proxies_ranges(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    async with recorded_vod(data_dir, tmp_path / "vod", adjust=on_s3(s3)) as first:
        clip_a = await clip_of(first, {"start_ms": PDT0 + 2530, "end_ms": PDT0 + 6970})
        session = (await first.store.index.sessions("cam"))[0]
        segments = await first.store.index.stream_segments("cam", 0, 2**62)
    # The second node: its own, empty data directory, the first node's index (as nodes on
    # one PostgreSQL index share it), the same bucket, downloads proxied through it.
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    copy_index(data_dir, second_dir)
    dead = f"http://127.0.0.1:{free_port()}/gone/index.m3u8"
    config = on_s3(replace(s3, downloads="proxy"))(daemon_config(second_dir, dead))
    misses = sample("livecut_read_cache_requests_total", result="miss")
    downloaded = sample("livecut_object_store_downloaded_bytes_total")
    async with running(config) as second, aiohttp.ClientSession() as http:
        assert not (second_dir / CACHE_DIR).exists() or not any(
            (second_dir / CACHE_DIR).rglob("*.ts")
        )
        clip_b = await clip_of(
            second,
            {"session": session.id, "start_ms": PDT0 + 2530, "end_ms": PDT0 + 6970},
        )
        # Its segments came from the bucket, into this node's cache.
        assert sample("livecut_read_cache_requests_total", result="miss") >= misses + 3
        assert sample("livecut_object_store_downloaded_bytes_total") > downloaded
        needed = [s for s in segments if s.start_ms < PDT0 + 6970 and s.end_ms > PDT0 + 2000]
        for relpath in segment_files(needed):
            assert (second_dir / CACHE_DIR / relpath).read_bytes() == object_bytes(
                s3_server, s3_bucket, relpath
            )

        for clip in (clip_a, clip_b):  # cut here, and cut on the other node
            assert clip.result is not None
            mp4 = clip.result["files"]["mp4"]  # type: ignore[index]
            url = f"{second.base_url}/v1/clips/{clip.id}/clip.mp4"
            async with http.get(url, allow_redirects=False) as whole:
                assert whole.status == 200, "proxied, not redirected"
                assert whole.headers["Content-Type"] == "video/mp4"
                assert whole.headers["Content-Disposition"] == content_disposition(clip.id)
                body = await whole.read()
            assert sha256(body) == mp4["sha256"] and len(body) == mp4["size_bytes"]
            (tmp_path / f"{clip.id}.mp4").write_bytes(body)
            check_frames(
                tmp_path / f"{clip.id}.mp4",
                frame_covering(PDT0 + 2530),
                frame_covering(PDT0 + 6969),
            )
            size = len(body)
            for header, status, want, content_range in (
                ("bytes=100-199", 206, body[100:200], f"bytes 100-199/{size}"),
                ("bytes=-50", 206, body[-50:], f"bytes {size - 50}-{size - 1}/{size}"),
                (f"bytes={size - 10}-", 206, body[-10:], f"bytes {size - 10}-{size - 1}/{size}"),
                (f"bytes={size}-", 416, None, f"bytes */{size}"),
            ):
                async with http.get(url, headers={"Range": header}) as part:
                    assert part.status == status, header
                    assert part.headers["Content-Range"] == content_range
                    if want is not None:
                        assert await part.read() == want
            async with http.head(url) as head:
                assert head.status == 200
                assert head.headers["Content-Length"] == str(size)
        async with http.get(f"{second.base_url}/v1/clips/{clip_b.id}/nothing.mp4") as missing:
            assert missing.status == 404
        # Stream media for playback: from this node's copy when it has one, else the
        # object streamed through; the same bytes and ranges either way.
        assert second.store.remote is not None
        cached = [s.path in second.store.remote.cache for s in segments]
        assert any(cached) and not all(cached), cached
        for segment in segments:
            data = object_bytes(s3_server, s3_bucket, segment.path)
            media_url = f"{second.base_url}/v1/streams/cam/media/{segment.id}.ts"
            async with http.get(media_url, headers={"Range": "bytes=10-99"}) as part:
                assert part.status == 206
                assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
                assert await part.read() == data[10:100]
            async with http.get(media_url) as whole:
                assert whole.status == 200
                assert whole.headers["Cache-Control"] == "private, max-age=86400, immutable"
                assert await whole.read() == data


async def test_another_node_serves_overlays_and_shot_previews_and_renders_the_watermark(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    async with reel_origin(tmp_path / "reel") as reel_url:

        def with_the_reel(config: Config) -> Config:
            # "cam" for the watermark (its picture is grey where the logo goes), "reel"
            # for shots (cuts and a dissolve: several previews).
            config = on_s3(s3)(config)
            reel = replace(config.streams[0], id="reel", url=reel_url)
            return replace(config, streams=(*config.streams, reel))

        async with (
            recorded_vod(
                data_dir, tmp_path / "vod", width=640, height=360, adjust=with_the_reel
            ) as first,
            aiohttp.ClientSession() as http,
        ):
            await until(first, "reel", lambda: session_ended(first, "reel"), timeout_s=30)
            # The watermark goes to the bucket (and this node's read cache), not to a
            # folder of this node's own.
            overlay = await upload_overlay(first, RED_LOGO)
            png = object_bytes(s3_server, s3_bucket, f"overlays/{overlay}.png")
            assert Image.open(io.BytesIO(png)).size == (100, 50)
            assert (data_dir / CACHE_DIR / "overlays" / f"{overlay}.png").read_bytes() == png
            assert not (data_dir / "overlays").exists()

            session = (await first.store.index.sessions("cam"))[0]
            reel = (await first.store.index.sessions("reel"))[0]
            async with http.post(f"{first.base_url}/v1/sessions/{reel.id}/shots") as r:
                assert r.status == 202
                created = await r.json()
            job = await first.analysis.wait_finished(created["id"], 60)
            assert job is not None and job.state == "completed" and job.result is not None, job
            count = len(job.result["shots"])
            assert count == len(REEL.hard_cuts_s) + 2  # the first shot, the dissolve's
            previews = {f"analysis/{job.id}/{n}.webp" for n in range(count)}
            assert set(object_sizes(s3_server, s3_bucket, "analysis/")) == previews
            assert not first.analysis.job_dir(job.id).exists(), "uploaded, not kept locally"
            # Presigned, as a clip's files are (downloads = "presigned" here).
            async with http.get(
                f"{first.base_url}/v1/shots/{job.id}/0.webp", allow_redirects=False
            ) as redirect:
                assert redirect.status == 302
                location = redirect.headers["Location"]
            assert urlsplit(location).path.endswith(f"/{PREFIX}analysis/{job.id}/0.webp")
            async with http.get(location) as presigned:
                assert presigned.status == 200 and presigned.content_type == "image/webp"
                assert await presigned.read() == object_bytes(
                    s3_server, s3_bucket, f"analysis/{job.id}/0.webp"
                )

    # The second node: an empty data directory of its own, the first node's index, the
    # same bucket, downloads proxied through it.
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    copy_index(data_dir, second_dir)
    dead = f"http://127.0.0.1:{free_port()}/gone/index.m3u8"
    config = on_s3(replace(s3, downloads="proxy"))(daemon_config(second_dir, dead))
    async with running(config) as second, aiohttp.ClientSession() as http:
        api = second.base_url
        async with http.get(f"{api}/v1/overlays/{overlay}/image.png") as image:
            assert image.status == 200 and image.content_type == "image/png"
            assert await image.read() == png
        async with http.get(f"{api}/v1/shots/{job.id}/manifest.json") as r:
            assert r.status == 200
            shots = (await r.json())["shots"]
        assert len(shots) == count
        for n, shot in enumerate(shots):
            url = shot["shot_preview_image_url"]
            assert url == f"{api}/v1/shots/{job.id}/{n}.webp"
            async with http.get(url, allow_redirects=False) as preview:
                assert preview.status == 200 and preview.content_type == "image/webp"
                body = await preview.read()
            assert body == object_bytes(s3_server, s3_bucket, f"analysis/{job.id}/{n}.webp")
            assert Image.open(io.BytesIO(body)).format == "WEBP"
        async with http.get(f"{api}/v1/shots/{job.id}/{count}.webp") as beyond:
            assert beyond.status == 404 and "0.webp to" in (await beyond.json())["errors"][0]

        # A clip cut here with the overlay uploaded to the other node: the image comes
        # from the bucket, and the watermark is in every frame.
        start = PDT0 + 1000
        clip = await clip_of(
            second,
            {
                "session": session.id,
                "start_ms": start,
                "end_ms": start + 2000,
                "render": watermark_render(overlay),
            },
        )
        assert clip.result is not None
        assert clip.result["render"]["overlay"]["id"] == overlay  # type: ignore[index]
        cached = second_dir / CACHE_DIR / "overlays" / f"{overlay}.png"
        assert cached.read_bytes() == png
        async with http.get(f"{api}/v1/clips/{clip.id}/clip.mp4") as download:
            assert download.status == 200
            (tmp_path / "watermarked.mp4").write_bytes(await download.read())
        with av.open(str(tmp_path / "watermarked.mp4")) as container:
            pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(pictures) == frame_covering(start + 1999) - frame_covering(start) + 1
        for picture in pictures:
            assert picture.shape == (640, 360, 3)
            check_watermark(picture)
        assert not (second_dir / "overlays").exists() and not (second_dir / "analysis").exists()

        # Shots detected again, here: the first node's previews give way to this one's.
        async with http.post(f"{api}/v1/sessions/{reel.id}/shots") as r:
            assert r.status == 202
            created = await r.json()
        again = await second.analysis.wait_finished(created["id"], 60)
        assert again is not None and again.state == "completed", again
        assert set(object_sizes(s3_server, s3_bucket, "analysis/")) == {
            f"analysis/{again.id}/{n}.webp" for n in range(count)
        }
        async with http.get(f"{api}/v1/shots/{job.id}/0.webp") as gone:
            assert gone.status == 404
        async with http.get(f"{api}/v1/shots/{again.id}/{count - 1}.webp") as preview:
            assert preview.status == 200 and preview.content_type == "image/webp"

        # DELETE: the objects go.
        async with http.delete(f"{api}/v1/sessions/{reel.id}/shots") as r:
            assert r.status == 204
        assert object_sizes(s3_server, s3_bucket, "analysis/") == {}
        async with http.delete(f"{api}/v1/overlays/{overlay}") as r:
            assert r.status == 204
        assert object_sizes(s3_server, s3_bucket, "overlays/") == {}
        assert not cached.exists(), "this node's copy goes with the object"
        async with http.get(f"{api}/v1/overlays/{overlay}/image.png") as gone:
            assert gone.status == 404


async def test_fetched_downloads_each_copy_once_and_keeps_it_while_in_use(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    async with recorded_vod(
        data_dir, tmp_path / "vod", container="fmp4", adjust=on_s3(s3)
    ) as first:
        segments = await first.store.index.stream_segments("cam", 0, 2**62)
    other = tmp_path / "other"
    other.mkdir()
    copy_index(data_dir, other)
    # A cache of one segment's size: copies in use outlive the budget.
    store = await engine_store(other, StorageConfig(backend="s3", s3=replace(s3, cache_bytes=1)))
    await store.open()
    try:
        assert store.remote is not None
        relpaths = segment_files(segments)
        assert any("/init-" in r for r in relpaths)
        async with asyncio.timeout(30):
            async with store.fetched(relpaths), store.fetched(relpaths[:2]):
                for relpath in relpaths:
                    assert store.path(relpath).read_bytes() == object_bytes(
                        s3_server, s3_bucket, relpath
                    )
                assert store.remote.cache.misses == len(relpaths)
                assert store.remote.cache.joins + store.remote.cache.hits == 2
            # Let go: over the budget, the copies go.
            assert not any(store.path(r).exists() for r in relpaths)
    finally:
        await store.close()


# --- the floor, failures, reconciliation, reload -----------------------------------------


async def test_below_the_floor_on_s3_the_cache_sheds_and_no_segment_is_evicted(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    evicted = sample("livecut_evicted_segments_total", stream="cam")
    # A floor no disk can keep: every write finds the disk below it.
    adjust = on_s3(s3, min_free_bytes=1024**5)
    async with recorded_vod(data_dir, tmp_path / "vod", segments=5, adjust=adjust) as daemon:
        rows = await daemon.store.index.all_media_paths()
        assert len(rows) == 5
        assert rows <= object_sizes(s3_server, s3_bucket, "streams/").keys()
        assert sample("livecut_evicted_segments_total", stream="cam") == evicted
        assert daemon.store.remote is not None
        cache = daemon.store.remote.cache
        assert cache.bytes_cached > 0, "the recorded segments were kept as local copies"
        misses = cache.misses
        # Cutting a clip makes room first: the copies go (not the segments), and come back
        # from the bucket while the clip is cut.
        clip = await clip_of(daemon, {"start_ms": PDT0 + 1290, "end_ms": PDT0 + 7610})
        assert cache.evictions >= 5
        assert cache.misses >= misses + 4
        assert len(await daemon.store.index.all_media_paths()) == 5
        assert sample("livecut_evicted_segments_total", stream="cam") == evicted
        assert clip.result is not None
        assert object_sizes(s3_server, s3_bucket, f"clips/{clip.id}/")


async def test_a_failed_put_leaves_no_row_and_no_temporary_file(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    origin = LiveOrigin(prefill=2)
    url = await origin.start()
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    write_errors = sample("livecut_storage_errors_total", op="write")
    put_errors = sample("livecut_object_store_requests_total", op="put", outcome="error")
    try:
        async with running(on_s3(s3)(daemon_config(data_dir, url))) as daemon:
            index = daemon.store.index
            failed: list[tuple[Path, str]] = []
            publish = daemon.store.publish

            async def noting_failures(staged: Path, relpath: str) -> None:
                try:
                    await publish(staged, relpath)
                except OSError:
                    failed.append((staged, relpath))
                    raise

            daemon.store.publish = noting_failures  # type: ignore[method-assign]

            async def two_stored() -> bool:
                return len(await index.all_media_paths()) >= 2

            await until(daemon, "cam", two_stored, timeout_s=20)
            # The bucket goes away: every PUT from now on fails.
            while True:
                for key in list(object_sizes(s3_server, s3_bucket)):
                    s3_server.admin.delete_object(Bucket=s3_bucket, Key=PREFIX + key)
                try:
                    s3_server.admin.delete_bucket(Bucket=s3_bucket)
                    break
                except s3_server.admin.exceptions.ClientError:
                    await asyncio.sleep(0)  # a PUT landed meanwhile: empty it again

            async def not_stored() -> list[tuple[int, int]]:
                _spans, gaps = await index.timeline("cam", 0, 2**62, limit=1000)
                return [(g.start_ms, g.end_ms) for g in gaps if g.reason == "not_stored"]

            async def a_gap_not_stored() -> bool:
                return len(await not_stored()) >= 1

            await until(daemon, "cam", a_gap_not_stored, timeout_s=60)
            segments = await index.stream_segments("cam", 0, 2**62)
            for start, end in await not_stored():
                assert not [s for s in segments if s.start_ms < end and s.end_ms > start]
            # Each segment whose PUT failed: no row, its staged file removed at once, no
            # local copy and no object.
            assert failed
            rows = await index.all_media_paths()
            for staged, relpath in failed:
                assert relpath not in rows
                assert not staged.exists()
                assert not (data_dir / CACHE_DIR / relpath).exists()
            assert sample("livecut_storage_errors_total", op="write") > write_errors
            assert (
                sample("livecut_object_store_requests_total", op="put", outcome="error")
                > put_errors
            )
            partial = [p for p in (data_dir / CACHE_DIR).rglob("*") if p.name.endswith(".part")]
            assert not partial
        # Stopped: whatever was staged and not stored is gone.
        assert [p for p in (data_dir / "streams").rglob("*") if p.is_file()] == []
    finally:
        await origin.stop()


async def test_a_write_that_cannot_be_put_raises_and_leaves_nothing(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    store = await engine_store(data_dir, StorageConfig(backend="s3", s3=s3, min_free_bytes=0))
    await store.open()
    try:
        relpath = "streams/cam/ses_a/v/init-0a0b0c0d-1.mp4"
        await store.write(relpath, b"init")
        assert store.path(relpath).read_bytes() == b"init", "written through to the cache"
        assert object_bytes(s3_server, s3_bucket, relpath) == b"init"
        await store.remove_files([relpath])
        s3_server.admin.delete_bucket(Bucket=s3_bucket)
        with pytest.raises(OSError, match="NoSuchBucket"):
            await store.write("streams/cam/ses_a/v/init-0a0b0c0d-2.mp4", b"init")
        staged = store.incoming_path(".ts")
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(b"segment")
        with pytest.raises(OSError, match="NoSuchBucket"):
            await store.publish(staged, "streams/cam/ses_a/v/0-1.ts")
        assert staged.exists(), "still the caller's, to discard"
        assert [p for p in (data_dir / CACHE_DIR).rglob("*") if p.is_file()] == []
    finally:
        await store.close()


async def test_reconciliation_deletes_only_old_unindexed_objects(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    known = "streams/cam/ses_a/v/0-1.ts"
    orphan = "streams/cam/ses_a/v/0-2.ts"
    clip_orphan = "clips/clp_gone/clip.mp4"
    # A shots job's previews stay while the job does, an uploaded watermark while its
    # row does (a crash between the PUT and the row, or a DELETE the bucket missed).
    previews = "analysis/shots_kept/0.webp"
    previews_orphan = "analysis/shots_gone/0.webp"
    overlay = "overlays/ovl_0123456789abcdef.png"
    overlay_orphan = "overlays/ovl_gone.png"
    clock = [time.time()]
    store = await engine_store(data_dir, StorageConfig(backend="s3", s3=s3), clock=lambda: clock[0])
    await store.open()
    try:
        assert isinstance(store.media, S3Media)
        everything = {
            known,
            orphan,
            clip_orphan,
            previews,
            previews_orphan,
            overlay,
            overlay_orphan,
        }
        for relpath in everything:
            await store.media.objects.put_bytes(relpath, relpath.encode())
        staged = store.incoming_path(".ts")
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(b"left by a crash")
        media = store.media

        async def reconcile() -> list[str]:
            removed = await media.reconcile({known}, clock[0])
            removed += await media.reconcile_folders("clips/", no_clip, clock[0])
            removed += await media.reconcile_folders("overlays/", one_overlay, clock[0])
            return removed + await media.reconcile_folders("analysis/", one_job, clock[0])

        async def one_overlay(overlay_id: str) -> bool:
            return overlay_id == "ovl_0123456789abcdef"

        async def no_clip(clip_id: str) -> bool:
            return False

        async def one_job(job_id: str) -> bool:
            return job_id == "shots_kept"

        # Young objects may be another node's, not yet indexed: kept.
        removed = await reconcile()
        assert removed == [staged.relative_to(data_dir).as_posix()]
        assert not staged.exists()
        assert set(object_sizes(s3_server, s3_bucket)) == everything
        clock[0] += ORPHAN_AGE_S + 60
        assert sorted(await reconcile()) == sorted(
            [previews_orphan, clip_orphan, orphan, overlay_orphan]
        )
        assert set(object_sizes(s3_server, s3_bucket)) == {known, previews, overlay}
    finally:
        await store.close()


def shots_job(job_id: str, state: JobState) -> AnalysisJobRow:
    return AnalysisJobRow(
        id=job_id,
        kind="shots",
        subject=f"session:ses_{job_id}",
        stream_id="cam",
        session_id=f"ses_{job_id}",
        clip_id=None,
        from_ms=PDT0,
        to_ms=PDT0 + 4000,
        zero_ms=PDT0,
        state=state,
        options={},
        result={"shots": []} if state == "completed" else None,
        error=None,
        created_ms=PDT0,
        updated_ms=PDT0,
    )


async def test_watermarks_and_previews_an_earlier_version_kept_on_disk_go_to_the_bucket(
    s3_server: S3Server, s3_bucket: str, data_dir: Path, tmp_path: Path
) -> None:
    s3 = s3_config(s3_server, s3_bucket, tmp_path)
    store = await engine_store(data_dir, StorageConfig(backend="s3", s3=s3))
    await store.open()
    try:
        overlay = "ovl_0123456789abcdef"
        row = OverlayRow(id=overlay, name=None, width=1, height=1, size_bytes=3, created_ms=0)
        await store.index.overlays.add(row)
        (data_dir / "overlays").mkdir()
        (data_dir / "overlays" / f"{overlay}.png").write_bytes(b"png")
        (data_dir / "overlays" / "ovl_deleted.png").write_bytes(b"old")
        jobs: list[tuple[str, JobState]] = [
            ("shots_done", "completed"),
            ("shots_busy", "processing"),
        ]
        for job_id, state in jobs:
            await store.index.analysis.add_job(shots_job(job_id, state))
            folder = data_dir / "analysis" / job_id
            folder.mkdir(parents=True)
            (folder / "0.webp").write_bytes(job_id.encode())
        # Another node runs shots_busy again and has uploaded a preview of it already.
        await store.media.write("analysis/shots_busy/0.webp", b"another node's")

        await store.reconcile()
        assert object_sizes(s3_server, s3_bucket, "overlays/").keys() == {f"overlays/{overlay}.png"}
        assert object_bytes(s3_server, s3_bucket, f"overlays/{overlay}.png") == b"png"
        assert object_bytes(s3_server, s3_bucket, "analysis/shots_done/0.webp") == b"shots_done"
        assert object_bytes(s3_server, s3_bucket, "analysis/shots_busy/0.webp") == (
            b"another node's"
        )
        assert not (data_dir / "overlays").exists()
        assert list((data_dir / "analysis").iterdir()) == []
        async with store.overlay_image(overlay) as image:
            assert image == data_dir / CACHE_DIR / "overlays" / f"{overlay}.png"
            assert image is not None and image.read_bytes() == b"png"
    finally:
        await store.close()


def test_a_change_of_backend_or_bucket_waits_for_a_restart(
    s3_server: S3Server, tmp_path: Path
) -> None:
    base = daemon_config(tmp_path / "data", "http://127.0.0.1:1/x.m3u8")
    s3 = s3_config(s3_server, "bucket-one", tmp_path)
    running_config = on_s3(s3)(base)
    moved = replace(
        running_config,
        storage=replace(
            running_config.storage,
            s3=replace(s3, bucket="bucket-two", url_expiry_s=60),
            min_free_bytes=5,
        ),
    )
    plan = plan_reload(running_config, moved)
    assert plan.needs_restart == ("storage.s3.bucket", "storage.s3.url_expiry")
    assert plan.config.storage.s3 == s3, "the running bucket is kept"
    assert plan.config.storage.min_free_bytes == 5, "the floor applies at once"
    local = plan_reload(running_config, base)
    assert local.needs_restart == ("storage.backend", "storage.s3")
    assert local.config.storage.backend == "s3"
