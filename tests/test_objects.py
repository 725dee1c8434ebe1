"""The S3 object store and its local read cache, against moto's S3 server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import aiohttp
import pytest

from livecut.config import ConfigError, S3Config
from livecut.store.objcache import ReadCache
from livecut.store.objects import (
    ListedObject,
    ObjectStore,
    RangeNotSatisfiableError,
    content_disposition,
)
from tests.engines import NO_INDEX
from tests.s3server import CREDENTIALS, MIN_PART_SIZE, S3Server, free_port

pytestmark = NO_INDEX


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@asynccontextmanager
async def opened(store: ObjectStore) -> AsyncIterator[ObjectStore]:
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def new_store(server: S3Server, bucket: str, *, prefix: str = "lc/", **tuning: Any) -> ObjectStore:
    return ObjectStore(server.config(bucket, prefix=prefix), credentials=CREDENTIALS, **tuning)


def listing(listed: list[ListedObject]) -> list[tuple[str, int]]:
    return [(o.relpath, o.size) for o in listed]


def server_keys(server: S3Server, bucket: str) -> list[str]:
    listed = server.admin.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def open_uploads(server: S3Server, bucket: str) -> list[dict[str, Any]]:
    return list(server.admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


# --- round trips ----------------------------------------------------------------------


async def test_put_get_list_size_delete_round_trip(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    segment = payload(188 * 700, seed=1)
    init = payload(1500, seed=2)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(payload(50_000, seed=3))
    async with opened(new_store(s3_server, s3_bucket)) as store:
        await store.put_bytes("streams/cam/ses_a/720p/seg_00001.ts", segment)
        await store.put_bytes("streams/cam/ses_a/720p/init.mp4", init)
        await store.put_file("clips/clp_x/clip.mp4", clip)

        # Keys are the prefix and the relpath, as the local store names files.
        assert sorted(server_keys(s3_server, s3_bucket)) == [
            "lc/clips/clp_x/clip.mp4",
            "lc/streams/cam/ses_a/720p/init.mp4",
            "lc/streams/cam/ses_a/720p/seg_00001.ts",
        ]
        head = s3_server.admin.head_object(Bucket=s3_bucket, Key="lc/clips/clp_x/clip.mp4")
        assert head["ContentType"] == "video/mp4"

        relpath = "streams/cam/ses_a/720p/seg_00001.ts"
        assert await store.get_range(relpath, 0, 188) == segment[:188]
        assert await store.get_range(relpath, 188 * 10, 188 * 12) == segment[188 * 10 : 188 * 12]
        assert (
            await store.get_range(relpath, len(segment) - 5, len(segment) + 100) == (segment[-5:])
        )
        assert await store.get_range(relpath, len(segment), len(segment) + 10) == b""
        assert await store.get_range(relpath, 7, 7) == b""
        with pytest.raises(RangeNotSatisfiableError):
            async with store.open_read(relpath, start=len(segment) + 1):
                pass

        async with store.open_read(relpath, start=100, end_exclusive=300) as reader:
            assert (reader.length, reader.size, reader.content_type) == (
                200,
                len(segment),
                "video/mp2t",
            )
            assert b"".join([c async for c in reader.chunks(64)]) == segment[100:300]

        dest = tmp_path / "copy" / "clip.mp4"
        dest.parent.mkdir()
        assert await store.fetch_to("clips/clp_x/clip.mp4", dest) == 50_000
        assert dest.read_bytes() == clip.read_bytes()
        assert [p.name for p in dest.parent.iterdir()] == ["clip.mp4"]

        assert await store.size(relpath) == len(segment)
        assert await store.size("streams/cam/ses_a/720p/seg_00002.ts") is None
        assert listing(await store.list_objects()) == [
            ("clips/clp_x/clip.mp4", 50_000),
            ("streams/cam/ses_a/720p/init.mp4", 1500),
            ("streams/cam/ses_a/720p/seg_00001.ts", len(segment)),
        ]
        assert listing(await store.list_objects("streams/cam/")) == [
            ("streams/cam/ses_a/720p/init.mp4", 1500),
            ("streams/cam/ses_a/720p/seg_00001.ts", len(segment)),
        ]
        assert listing(await store.list_objects("streams/other/")) == []
        # LastModified: when each was written (start-up reconciliation ages orphans by it).
        stamps = [o.modified_s for o in await store.list_objects()]
        assert all(abs(stamp - time.time()) < 300 for stamp in stamps), stamps

        await store.delete([relpath, "streams/cam/ses_a/720p/never_written.ts"])
        assert await store.size(relpath) is None
        assert [r for r, _ in listing(await store.list_objects())] == [
            "clips/clp_x/clip.mp4",
            "streams/cam/ses_a/720p/init.mp4",
        ]


async def test_listing_pages_and_deleting_in_batches(s3_server: S3Server, s3_bucket: str) -> None:
    relpaths = [f"streams/cam/ses_b/720p/seg_{n:05d}.ts" for n in range(7)]
    # A page of 2 keys and batches of 3 stand in for S3's 1000 at both.
    store = new_store(s3_server, s3_bucket, page_size=2, delete_batch=3)
    async with opened(store):
        await asyncio.gather(
            *(store.put_bytes(r, f"[{n}]".encode()) for n, r in enumerate(relpaths))
        )
        await store.put_bytes("clips/clp_keep/clip.mp4", b"keep")
        listed = listing(await store.list_objects("streams/"))
        assert listed == [(r, len(f"[{n}]")) for n, r in enumerate(relpaths)]
        assert [await store.get_range(r, 0, 10) for r in relpaths] == [
            f"[{n}]".encode() for n in range(7)
        ]
        await store.delete([*relpaths, relpaths[0], "streams/cam/gone.ts"])
        assert listing(await store.list_objects()) == [("clips/clp_keep/clip.mp4", 4)]
    assert server_keys(s3_server, s3_bucket) == ["lc/clips/clp_keep/clip.mp4"]


async def test_an_empty_prefix_keys_objects_by_relpath(s3_server: S3Server, s3_bucket: str) -> None:
    async with opened(new_store(s3_server, s3_bucket, prefix="")) as store:
        await store.put_bytes("clips/clp_y/clip.mp4", b"clip")
        assert server_keys(s3_server, s3_bucket) == ["clips/clp_y/clip.mp4"]
        assert listing(await store.list_objects()) == [("clips/clp_y/clip.mp4", 4)]


async def test_missing_objects_raise_file_not_found_naming_the_key(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    relpath = "clips/clp_none/clip.mp4"
    async with opened(new_store(s3_server, s3_bucket)) as store:
        with pytest.raises(FileNotFoundError) as caught:
            await store.get_range(relpath, 0, 10)
        assert caught.value.filename == "lc/clips/clp_none/clip.mp4"
        assert "lc/clips/clp_none/clip.mp4" in str(caught.value)
        assert s3_bucket in str(caught.value)

        dest = tmp_path / "out" / "clip.mp4"
        dest.parent.mkdir()
        with pytest.raises(FileNotFoundError):
            await store.fetch_to(relpath, dest)
        assert list(dest.parent.iterdir()) == []  # neither the file nor a temporary one
        assert await store.size(relpath) is None


async def test_relpaths_that_could_escape_are_refused(s3_server: S3Server, s3_bucket: str) -> None:
    async with opened(new_store(s3_server, s3_bucket)) as store:
        for bad in ("", "/etc/passwd", "clips/../../x", "clips//x", "clips\\x", "./x"):
            with pytest.raises(ValueError, match="relpath"):
                await store.put_bytes(bad, b"x")
        assert server_keys(s3_server, s3_bucket) == []


async def test_a_missing_bucket_fails_at_start_with_the_code(s3_server: S3Server) -> None:
    store = new_store(s3_server, "livecut-no-such-bucket")
    with pytest.raises(OSError, match="livecut-no-such-bucket") as caught:
        await store.start()
    assert "404" in str(caught.value) or "NoSuchBucket" in str(caught.value)
    assert not isinstance(caught.value, FileNotFoundError)
    with pytest.raises(RuntimeError, match="start"):
        await store.size("clips/x/clip.mp4")


async def test_an_unreachable_endpoint_is_an_os_error(s3_bucket: str) -> None:
    # A port nothing listens on (moto's own was probed free the same way).
    config = S3Config(bucket=s3_bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    store = ObjectStore(config, credentials=CREDENTIALS, attempts=1)
    with pytest.raises(OSError, match=s3_bucket):
        await store.start()


async def test_credentials_come_from_the_environment_or_a_file(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    config = s3_server.config(s3_bucket)
    with pytest.raises(ConfigError) as caught:
        await ObjectStore(config).start()
    (message,) = caught.value.errors
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
    assert "credentials_file" in message

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS.secret_access_key)
    async with opened(ObjectStore(config)) as store:
        await store.put_bytes("a/from-env.ts", b"env")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")

    secrets_file = tmp_path / "s3.toml"
    secrets_file.write_text(
        f'access_key_id = "{CREDENTIALS.access_key_id}"\n'
        f'secret_access_key = "{CREDENTIALS.secret_access_key}"\n'
    )
    config = S3Config(bucket=s3_bucket, endpoint=s3_server.endpoint, credentials_file=secrets_file)
    async with opened(ObjectStore(config)) as store:
        await store.put_bytes("a/from-file.ts", b"file")
        assert listing(await store.list_objects("a/")) == [
            ("a/from-env.ts", 3),
            ("a/from-file.ts", 4),
        ]


# --- multipart ------------------------------------------------------------------------


async def test_a_large_file_goes_up_in_parts(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    part = 1024 * 1024
    source = tmp_path / "export.mp4"
    data = payload(3 * part + 12_345, seed=4)
    source.write_bytes(data)
    store = new_store(s3_server, s3_bucket, part_size=part, parts_in_flight=2)
    async with opened(store):
        await store.put_file("exports/exp_1/export.mp4", source)
        head = s3_server.admin.head_object(Bucket=s3_bucket, Key="lc/exports/exp_1/export.mp4")
        # A multipart object's ETag ends in "-<number of parts>".
        assert head["ETag"].strip('"').endswith("-4")
        assert head["ContentLength"] == len(data)
        assert head["ContentType"] == "video/mp4"
        dest = tmp_path / "back.mp4"
        await store.fetch_to("exports/exp_1/export.mp4", dest)
        assert dest.read_bytes() == data
        assert (
            await store.get_range("exports/exp_1/export.mp4", part - 10, part + 10)
            == (data[part - 10 : part + 10])
        )
    assert open_uploads(s3_server, s3_bucket) == []


async def test_a_refused_multipart_upload_is_aborted(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "export.mp4"
    source.write_bytes(payload(3 * 64 * 1024 + 7, seed=5))
    # Parts smaller than the server accepts: it refuses to complete the upload.
    store = new_store(s3_server, s3_bucket, part_size=64 * 1024)
    async with opened(store):
        with pytest.raises(OSError, match="EntityTooSmall") as caught:
            await store.put_file("exports/exp_2/export.mp4", source)
        assert "lc/exports/exp_2/export.mp4" in str(caught.value)
        assert await store.size("exports/exp_2/export.mp4") is None
    assert open_uploads(s3_server, s3_bucket) == []


class StallingStore(ObjectStore):
    """Reads part 1 and then stalls on part 2 until cancelled, reporting when it does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = asyncio.Event()

    async def _read_part(self, fd: int, offset: int, length: int) -> bytes:
        if offset:
            self.stalled.set()
            await asyncio.Event().wait()
        return await super()._read_part(fd, offset, length)


async def test_a_cancelled_multipart_upload_is_aborted(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "export.mp4"
    source.write_bytes(payload(3 * MIN_PART_SIZE, seed=6))
    store = StallingStore(
        s3_server.config(s3_bucket, prefix="lc/"), credentials=CREDENTIALS, part_size=MIN_PART_SIZE
    )
    await store.start()
    upload = asyncio.create_task(store.put_file("exports/exp_3/export.mp4", source))
    await store.stalled.wait()
    assert len(open_uploads(s3_server, s3_bucket)) == 1
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    await store.close()  # waits for the abort
    assert open_uploads(s3_server, s3_bucket) == []
    assert server_keys(s3_server, s3_bucket) == []


# --- presigned URLs -------------------------------------------------------------------


def sigv4_query_problem(url: str, *, secret: str, now: datetime) -> str | None:
    """Why S3 would refuse a presigned GET URL at `now`, or None; SigV4 as AWS documents
    it, written apart from botocore so the URL is checked rather than re-derived."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "algorithm"
    _key_id, date, region, service, terminal = params["X-Amz-Credential"].split("/")
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = int(params["X-Amz-Expires"])
    if not 1 <= expires <= 604800:
        return "expiry out of range"
    if now > signed_at + timedelta(seconds=expires):
        return "expired"

    def encode(text: str) -> str:
        return quote(text, safe="-_.~")

    canonical_query = "&".join(
        f"{encode(k)}={encode(v)}" for k, v in sorted(query) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = f"{date}/{region}/{service}/{terminal}"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = f"AWS4{secret}".encode()
    for part in (date, region, service, terminal):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        return "signature"
    return None


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    text = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items())
    return urlunsplit(parts._replace(query=text))


async def test_a_presigned_url_serves_the_object_as_an_attachment(
    s3_server: S3Server, s3_bucket: str
) -> None:
    data = payload(70_000, seed=7)
    name = 'Tor! ünd "Jubel".mp4'
    async with opened(new_store(s3_server, s3_bucket)) as store:
        await store.put_bytes("clips/clp_p/clip.mp4", data)
        url = await store.presign_get("clips/clp_p/clip.mp4", expires_s=600, filename=name)
        plain = await store.presign_get("clips/clp_p/clip.mp4", expires_s=60)
        with pytest.raises(ValueError, match="expires_s"):
            await store.presign_get("clips/clp_p/clip.mp4", expires_s=604801)
    assert url.startswith(f"{s3_server.endpoint}/{s3_bucket}/lc/clips/clp_p/clip.mp4?")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 200
            assert await response.read() == data
            assert response.headers["Content-Disposition"] == content_disposition(name)
            assert response.content_disposition is not None
            assert response.content_disposition.type == "attachment"
            assert response.content_disposition.filename == name
        async with http.get(plain) as response:
            assert response.status == 200
            assert "Content-Disposition" not in response.headers
            assert await response.read() == data
        # Without its signature the same object is refused.
        async with http.get(url.partition("?")[0]) as response:
            assert response.status == 403


def test_presigned_urls_expire_and_cannot_be_altered(s3_server: S3Server, s3_bucket: str) -> None:
    """moto serves any URL that carries a signature without checking it (nor its expiry),
    so the URL is checked here against SigV4 itself, as S3 checks it."""

    async def sign() -> tuple[str, datetime]:
        async with opened(new_store(s3_server, s3_bucket)) as store:
            signed_at = datetime.now(UTC)
            url = await store.presign_get("clips/c/clip.mp4", expires_s=300, filename="a.mp4")
        return url, signed_at

    url, signed_at = asyncio.run(sign())
    secret = CREDENTIALS.secret_access_key
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["X-Amz-Expires"] == "300"
    assert params["X-Amz-Credential"].startswith(CREDENTIALS.access_key_id + "/")
    assert params["response-content-disposition"] == content_disposition("a.mp4")
    assert CREDENTIALS.secret_access_key not in url

    assert sigv4_query_problem(url, secret=secret, now=signed_at) is None
    assert sigv4_query_problem(url, secret=secret, now=signed_at + timedelta(seconds=299)) is None
    later = signed_at + timedelta(seconds=302)
    assert sigv4_query_problem(url, secret=secret, now=later) == "expired"
    assert sigv4_query_problem(url, secret="another-secret", now=signed_at) == "signature"
    forged = [
        url.replace("/lc/clips/c/clip.mp4", "/lc/clips/c/other.mp4"),
        with_query(url, **{"X-Amz-Expires": "604800"}),
        with_query(url, **{"response-content-disposition": "inline"}),
        with_query(url, **{"X-Amz-Signature": "0" * 64}),
    ]
    for url_forged in forged:
        assert sigv4_query_problem(url_forged, secret=secret, now=signed_at) == "signature"


def test_content_disposition_keeps_the_exact_name_and_a_safe_fallback() -> None:
    assert content_disposition("clip.mp4") == (
        "attachment; filename=\"clip.mp4\"; filename*=UTF-8''clip.mp4"
    )
    header = content_disposition('ä/b\\"c\r\n.mp4')
    assert "\r" not in header and "\n" not in header
    assert header == ("attachment; filename=\"_b_c.mp4\"; filename*=UTF-8''%C3%A4b%22c.mp4")
    assert content_disposition("\x00") == (
        "attachment; filename=\"download\"; filename*=UTF-8''download"
    )


# --- the read cache -------------------------------------------------------------------


class CountingSource:
    """Downloads from the store, counting them; each waits for `gate` once it is set up."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.downloads: list[str] = []
        self.gate: asyncio.Event | None = None

    async def fetch_to(self, relpath: str, dest: Path) -> int:
        self.downloads.append(relpath)
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.fetch_to(relpath, dest)


@asynccontextmanager
async def cache_over(
    server: S3Server, bucket: str, directory: Path, *, max_bytes: int, objects: dict[str, bytes]
) -> AsyncIterator[tuple[ReadCache, CountingSource]]:
    async with opened(new_store(server, bucket)) as store:
        for relpath, data in objects.items():
            await store.put_bytes(relpath, data)
        source = CountingSource(store)
        cache = ReadCache(source, directory, max_bytes=max_bytes)
        await cache.start()
        try:
            yield cache, source
        finally:
            await cache.close()


async def settle(condition: Any, *, rounds: int = 1000) -> None:
    """Let other tasks run until `condition()` holds; bounded, and never a timed sleep."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_concurrent_readers_share_one_download(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    data = payload(300_000, seed=8)
    relpath = "streams/cam/ses_c/720p/seg_00001.ts"
    async with cache_over(
        s3_server, s3_bucket, tmp_path / "cache", max_bytes=10**7, objects={relpath: data}
    ) as (cache, source):
        source.gate = asyncio.Event()

        async def read() -> bytes:
            async with cache.local(relpath) as path:
                return path.read_bytes()

        readers = [asyncio.create_task(read()) for _ in range(5)]
        await settle(lambda: cache.joins == 4 and source.downloads)
        assert source.downloads == [relpath]
        source.gate.set()
        assert await asyncio.gather(*readers) == [data] * 5
        assert source.downloads == [relpath]
        assert (cache.misses, cache.joins, cache.hits) == (1, 4, 0)
        assert cache.bytes_downloaded == len(data)
        async with cache.local(relpath) as path:
            assert path == tmp_path / "cache" / relpath
        assert (cache.hits, len(source.downloads)) == (1, 1)


async def test_a_failed_download_reaches_every_reader_and_is_retried(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    relpath = "streams/cam/ses_d/720p/seg_00001.ts"
    async with cache_over(
        s3_server, s3_bucket, tmp_path / "cache", max_bytes=10**7, objects={}
    ) as (
        cache,
        source,
    ):
        source.gate = asyncio.Event()

        async def read() -> bytes:
            async with cache.local(relpath) as path:
                return path.read_bytes()

        readers = [asyncio.create_task(read()) for _ in range(3)]
        await settle(lambda: cache.joins == 2 and source.downloads)
        source.gate.set()
        results = await asyncio.gather(*readers, return_exceptions=True)
        assert all(isinstance(r, FileNotFoundError) for r in results), results
        assert relpath not in cache and cache.bytes_cached == 0
        await source.store.put_bytes(relpath, b"[late]")
        async with cache.local(relpath) as path:
            assert path.read_bytes() == b"[late]"
        assert source.downloads == [relpath, relpath]


async def test_least_recently_used_copies_are_evicted_first(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    objects = {f"streams/cam/ses_e/720p/seg_{n:05d}.ts": payload(1000, seed=n) for n in range(4)}
    a, b, c, d = objects
    root = tmp_path / "cache"
    async with cache_over(s3_server, s3_bucket, root, max_bytes=2500, objects=objects) as (
        cache,
        source,
    ):
        for relpath in (a, b, a, c):  # b is now the least recently used
            async with cache.local(relpath) as path:
                assert path.read_bytes() == objects[relpath]
        assert (a in cache, b in cache, c in cache) == (True, False, True)
        assert not (root / b).exists() and (root / a).exists() and (root / c).exists()
        assert cache.bytes_cached == 2000
        assert (cache.evictions, cache.bytes_evicted) == (1, 1000)
        async with cache.local(d) as path:
            assert path.read_bytes() == objects[d]
        assert (a in cache, c in cache, d in cache) == (False, True, True)
        assert source.downloads == [a, b, c, d]
        assert (cache.hits, cache.misses) == (1, 4)


async def test_pinned_copies_outlive_the_budget_until_released(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    small = {f"clips/clp_{n}/clip.mp4": payload(1000, seed=n) for n in range(3)}
    big = "exports/exp_big/export.mp4"
    objects = {**small, big: payload(5000, seed=9)}
    first, second, third = small
    root = tmp_path / "cache"
    async with cache_over(s3_server, s3_bucket, root, max_bytes=1500, objects=objects) as (
        cache,
        _source,
    ):
        async with cache.local(first) as pinned:
            async with cache.local(second):
                async with cache.local(third):
                    # Three copies held, twice the budget: none may go while in use.
                    assert cache.bytes_cached == 3000 and cache.evictions == 0
                assert pinned.read_bytes() == objects[first]
                assert third not in cache  # released, least recently used unpinned
            assert second not in cache and first in cache
            assert pinned.read_bytes() == objects[first]
        assert cache.bytes_cached == 1000

        # Larger than the whole budget: served whole, then gone once released.
        async with cache.local(big) as path:
            assert path.read_bytes() == objects[big]
        assert big not in cache and not (root / big).exists()
        assert cache.bytes_cached <= 1500


async def test_a_restart_finds_copies_and_drops_unfinished_downloads(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    objects = {f"streams/cam/ses_f/720p/seg_{n:05d}.ts": payload(1000, seed=n) for n in range(3)}
    a, b, c = objects
    root = tmp_path / "cache"
    async with cache_over(s3_server, s3_bucket, root, max_bytes=10_000, objects=objects) as (
        cache,
        _source,
    ):
        for relpath in (a, b, c):
            async with cache.local(relpath):
                pass
    leftover = root / "streams/cam/ses_f/720p/.seg_00009.ts.0123abcd.part"
    leftover.write_bytes(b"half")
    (root / "streams/cam/ses_gone/720p").mkdir(parents=True)
    old = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    os.utime(root / b, (old, old))  # b was used longest ago

    async with opened(new_store(s3_server, s3_bucket)) as store:
        source = CountingSource(store)
        cache = ReadCache(source, root, max_bytes=2000)
        await cache.start()
        assert not leftover.exists()
        assert not (root / "streams/cam/ses_gone").exists()
        # Over the smaller budget: the least recently used copy went at start.
        assert (a in cache, b in cache, c in cache) == (True, False, True)
        assert cache.bytes_cached == 2000
        async with cache.local(a) as path:
            assert path.read_bytes() == objects[a]
        assert source.downloads == [] and cache.hits == 1
        await cache.close()


async def test_a_copy_deleted_behind_the_cache_is_downloaded_again(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    relpath = "clips/clp_z/clip.mp4"
    root = tmp_path / "cache"
    async with cache_over(
        s3_server, s3_bucket, root, max_bytes=10**6, objects={relpath: b"[clip]"}
    ) as (cache, source):
        async with cache.local(relpath):
            pass
        (root / relpath).unlink()
        async with cache.local(relpath) as path:
            assert path.read_bytes() == b"[clip]"
        assert source.downloads == [relpath, relpath]
        assert cache.bytes_cached == len(b"[clip]")


async def test_adopted_files_are_copies_and_dropped_ones_go_once_let_go(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    objects = {f"streams/cam/ses_g/720p/seg_{n:05d}.ts": payload(1000, seed=n) for n in range(3)}
    a, b, c = objects
    root = tmp_path / "cache"
    async with cache_over(s3_server, s3_bucket, root, max_bytes=10**6, objects=objects) as (
        cache,
        source,
    ):
        # A file the writer just stored becomes the copy: no download.
        written = tmp_path / "staged.ts"
        written.write_bytes(objects[a])
        cache.adopt(a, written)
        assert not written.exists() and (root / a).read_bytes() == objects[a]
        async with cache.local(a) as path:
            assert path.read_bytes() == objects[a]
        assert (cache.hits, source.downloads) == (1, [])

        # Dropped while in use: readable until let go, then gone and forgotten.
        async with cache.local_all([b, c]) as paths:
            assert source.downloads == [b, c] or source.downloads == [c, b]
            cache.drop([a, b])
            assert not (root / a).exists() and a not in cache
            assert paths[b].read_bytes() == objects[b], "still in use"
        assert not (root / b).exists() and b not in cache
        assert cache.bytes_cached == 1000 and c in cache

        # Shed for the disk floor: unpinned copies, least recently used first.
        cache.adopt(a, _written(tmp_path / "again.ts", objects[a]))
        async with cache.local(c):
            assert cache.shed(1) == 1000
            assert c in cache and a not in cache, "the pinned copy stays"
        assert cache.shed(10**6) == 1000 and cache.bytes_cached == 0


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
