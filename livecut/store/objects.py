"""Keep media as objects in an S3-compatible bucket: put, ranged and whole reads, list, delete.

The client is aiobotocore: botocore's request signing, retries, endpoint rules and
presigner, run on aiohttp (already livecut's HTTP client) in the daemon's one event
loop. It exposes each multipart call (create, upload part, complete, abort), so a large
upload holds a bounded number of parts in memory and is aborted on any failure, and it
presigns GETs with response overrides such as Content-Disposition. Its exact botocore
pin resolves alongside moto's S3 server (which takes botocore through boto3) in one pip
environment. obstore was the alternative: fast, but its Rust core hides the multipart
steps behind one call, and the tests' S3 emulator speaks to botocore's stack either way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from io import BufferedWriter
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from livecut import metrics
from livecut.config import S3Config, S3Credentials, read_s3_credentials

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "MAX_PRESIGN_S",
    "PART_SIZE",
    "TEMP_SUFFIX",
    "ListedObject",
    "ObjectReader",
    "ObjectStore",
    "RangeNotSatisfiableError",
    "check_relpath",
    "content_disposition",
    "is_temp_name",
]

log = logging.getLogger(__name__)

PART_SIZE: Final = 8 * 1024 * 1024
# S3 numbers parts 1..10000; a file that would need more gets larger parts.
_MAX_PARTS: Final = 10_000
_PARTS_IN_FLIGHT: Final = 4
_DELETE_BATCH: Final = 1000  # the most keys one DeleteObjects request may name
_PAGE_SIZE: Final = 1000
_CHUNK: Final = 1024 * 1024
MAX_PRESIGN_S: Final = 7 * 86400  # SigV4 refuses a presigned URL that lives longer
# fetch_to writes ".<name>.<random>.part" beside the destination until the object is whole.
TEMP_SUFFIX: Final = ".part"
# Codes S3 and its imitations use for an absent object; HEAD has no body, so only "404".
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_CONTENT_TYPES: Final = {
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".zip": "application/zip",
}


class RangeNotSatisfiableError(OSError):
    """A ranged read that starts at or past the end of the object."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ListedObject:
    """An object as a listing shows it."""

    relpath: str
    size: int
    modified_s: float  # LastModified, Unix seconds: when the object was last written


def check_relpath(relpath: str) -> str:
    """`relpath` if it is a relative path of the data directory's kind ("a/b/c.ts"), which
    is safe both as the tail of an object key and below a local directory."""
    parts = relpath.split("/")
    if (
        not relpath
        or "\\" in relpath
        or "\x00" in relpath
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(
            f"relpath: {relpath!r} is not a relative path; use names joined by '/' without "
            "'.', '..', empty parts, a leading '/' or backslashes"
        )
    return relpath


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of fetch_to's unfinished downloads."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def content_disposition(filename: str) -> str:
    """An attachment header naming `filename`: a plain-ASCII fallback for old clients
    and the exact name in RFC 6266's UTF-8 form."""
    name = "".join(c for c in filename if c.isprintable() and c not in "/\\") or "download"
    fallback = "".join(c if " " <= c <= "~" and c not in '"%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class ObjectReader:
    """An open GET: its sizes and type, and its bytes as they arrive."""

    def __init__(
        self,
        *,
        key: str,
        bucket: str,
        body: StreamingBody,
        length: int,
        size: int,
        content_type: str,
        etag: str,
    ) -> None:
        self.key = key
        self.length = length  # bytes in this response (the range)
        self.size = size  # bytes in the whole object
        self.content_type = content_type
        self.etag = etag
        self._bucket = bucket
        self._body = body

    async def chunks(self, chunk_size: int = _CHUNK) -> AsyncIterator[bytes]:
        """The body in pieces of at most `chunk_size` bytes; a cut-short body is an OSError."""
        while True:
            with _failures("GET", self._bucket, self.key):
                chunk = await self._body.read(chunk_size)
            if not chunk:
                return
            metrics.OBJECT_DOWNLOADED_BYTES.inc(len(chunk))
            yield chunk

    async def read_all(self) -> bytes:
        """The whole body (mind its length: this holds it in memory)."""
        return b"".join([chunk async for chunk in self.chunks()])


class ObjectStore:
    """One bucket and key prefix of an S3-compatible service, through one client that the
    caller starts and closes."""

    def __init__(
        self,
        config: S3Config,
        *,
        credentials: S3Credentials | None = None,
        part_size: int = PART_SIZE,
        parts_in_flight: int = _PARTS_IN_FLIGHT,
        delete_batch: int = _DELETE_BATCH,
        page_size: int = _PAGE_SIZE,
        attempts: int = 4,
    ) -> None:
        # S3 itself refuses parts under 5 MiB except the last; smaller ones are for tests
        # against a server told to accept them.
        for name, value, high in (
            ("part_size", part_size, 5 * 1024**3),
            ("parts_in_flight", parts_in_flight, 64),
            ("delete_batch", delete_batch, _DELETE_BATCH),
            ("page_size", page_size, _PAGE_SIZE),
            ("attempts", attempts, 10),
        ):
            if not 1 <= value <= high:
                raise ValueError(f"{name}: {value} is out of range; use 1 to {high}")
        self.config = config
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.delete_batch = delete_batch
        self.page_size = page_size
        self.attempts = attempts  # per request, the first included; retries back off
        self._credentials = credentials  # None: read from the config's file or environment
        self._client: S3Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._aborts: set[asyncio.Task[None]] = set()

    @property
    def bucket(self) -> str:
        return self.config.bucket

    def key(self, relpath: str) -> str:
        """The object key of a relative path: the configured prefix, then the path."""
        return self.config.key(check_relpath(relpath))

    async def start(self) -> None:
        """Open the client and check that the bucket answers, so a wrong endpoint, bucket
        or key pair shows at startup rather than at the first segment."""
        if self._client is not None:
            raise RuntimeError("ObjectStore.start(): already started")
        credentials = self._credentials or read_s3_credentials(self.config, os.environ)
        boto_config = AioConfig(
            signature_version="s3v4",
            # A custom endpoint (MinIO, Ceph, moto) rarely has wildcard DNS for bucket
            # subdomains; AWS chooses for itself.
            s3={"addressing_style": "path" if self.config.endpoint else "auto"},
            retries={"mode": "standard", "max_attempts": self.attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max(10, 2 * self.parts_in_flight),
            # Since botocore 1.36 every upload carries CRC trailers by default, which
            # several S3-compatible services refuse; uploads send Content-MD5 instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Only the config chooses the endpoint, not AWS_ENDPOINT_URL* in the environment.
            ignore_configured_endpoint_urls=True,
        )
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=self.config.endpoint,
                    region_name=self.config.region,
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    aws_session_token=credentials.session_token,
                    config=boto_config,
                )
            )
            with _failures("HEAD", self.bucket, "", missing_is_absent=False, op="head"):
                await client.head_bucket(Bucket=self.bucket)
        except BaseException:
            await stack.aclose()
            raise
        self._client = client
        self._stack = stack

    async def close(self) -> None:
        """Let aborts of failed uploads finish, then close the client's connections."""
        if self._aborts:
            await asyncio.gather(*self._aborts, return_exceptions=True)
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # --- writes -----------------------------------------------------------------------

    async def put_bytes(self, relpath: str, data: bytes) -> None:
        """Store `data` as one object (a single PUT)."""
        key = self.key(relpath)
        with _failures("PUT", self.bucket, key, op="put"):
            await self._require().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=_content_type(relpath),
                ContentMD5=_md5(data),
            )
        metrics.OBJECT_UPLOADED_BYTES.inc(len(data))

    async def put_file(self, relpath: str, path: Path) -> None:
        """Upload a file: one PUT up to part_size, else a multipart upload that holds at
        most parts_in_flight parts in memory and is aborted if anything fails."""
        key = self.key(relpath)
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self.part_size:
            await self.put_bytes(relpath, await asyncio.to_thread(path.read_bytes))
            return
        await self._put_multipart(key, _content_type(relpath), path, size)

    async def _put_multipart(self, key: str, content_type: str, path: Path, size: int) -> None:
        client = self._require()
        part_size = max(self.part_size, -(-size // _MAX_PARTS))
        count = -(-size // part_size)
        with _failures("multipart upload start", self.bucket, key, op="multipart"):
            created = await client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        upload_id = created["UploadId"]
        try:
            etags = await self._send_parts(key, upload_id, path, size, part_size, count)
            with _failures("multipart upload completion", self.bucket, key, op="multipart"):
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [
                            {"ETag": etag, "PartNumber": number}
                            for number, etag in enumerate(etags, start=1)
                        ]
                    },
                )
        except BaseException:
            # Parts of an upload neither completed nor aborted stay in the bucket, unseen
            # by listings and billed; the abort runs on even if this task is cancelled.
            abort = asyncio.create_task(self._abort(key, upload_id))
            self._aborts.add(abort)
            abort.add_done_callback(self._aborts.discard)
            await asyncio.shield(abort)
            raise

    async def _send_parts(
        self, key: str, upload_id: str, path: Path, size: int, part_size: int, count: int
    ) -> list[str]:
        client = self._require()
        etags = [""] * count
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)

        async def send(number: int) -> None:
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            data = await self._read_part(fd, offset, length)
            if len(data) != length:
                raise OSError(f"{path} became shorter while it was being uploaded to {key}")
            with _failures(f"upload of part {number}", self.bucket, key, op="put_part"):
                part = await client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_md5(data),
                )
            metrics.OBJECT_UPLOADED_BYTES.inc(length)
            etags[number - 1] = part["ETag"]

        pending: set[asyncio.Task[None]] = set()
        try:
            for number in range(1, count + 1):
                if len(pending) >= self.parts_in_flight:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                pending.add(asyncio.create_task(send(number)))
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in pending:
                task.cancel()
            # The descriptor is closed only once no part reads from it.
            await asyncio.gather(*pending, return_exceptions=True)
            os.close(fd)
        return etags

    async def _read_part(self, fd: int, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(os.pread, fd, length, offset)

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            with _failures("multipart upload abort", self.bucket, key, op="multipart"):
                await self._require().abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
        except (OSError, RuntimeError) as exc:
            log.warning(
                "could not abort multipart upload %s of %s; a bucket lifecycle rule for "
                "incomplete uploads removes its parts: %s",
                upload_id,
                key,
                exc,
            )

    async def delete(self, relpaths: Iterable[str]) -> None:
        """Delete objects, delete_batch keys a request; keys already gone are fine."""
        keys = list(dict.fromkeys(self.key(relpath) for relpath in relpaths))
        client = self._require()
        for first in range(0, len(keys), self.delete_batch):
            batch = keys[first : first + self.delete_batch]
            with _failures("DeleteObjects", self.bucket, batch[0], op="delete"):
                response = await client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            refused = [e for e in response.get("Errors", []) if e.get("Code") not in _MISSING]
            if refused:
                error = refused[0]
                raise OSError(
                    f"S3 DeleteObjects in bucket {self.bucket} refused {len(refused)} of "
                    f"{len(batch)} keys, first {error.get('Key')}: {error.get('Code')} "
                    f"({error.get('Message')})"
                )

    # --- reads ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_read(
        self, relpath: str, *, start: int = 0, end_exclusive: int | None = None
    ) -> AsyncIterator[ObjectReader]:
        """A GET of the object, or of bytes [start, end_exclusive) of it, whose body is
        read while the block runs (to stream it on, e.g. for a proxied download)."""
        if start < 0 or (end_exclusive is not None and end_exclusive <= start):
            raise ValueError(
                f"range: [{start}, {end_exclusive}) is empty or negative; "
                "use 0 <= start < end_exclusive"
            )
        key = self.key(relpath)
        client = self._require()
        ranged = start > 0 or end_exclusive is not None
        with _failures("GET", self.bucket, key, op="get"):
            if ranged:
                last = "" if end_exclusive is None else str(end_exclusive - 1)
                response = await client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{last}"
                )
            else:
                response = await client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            length = response["ContentLength"]
            # "bytes 0-9/100": the whole object's size follows the slash.
            total = response.get("ContentRange", "").rpartition("/")[2]
            yield ObjectReader(
                key=key,
                bucket=self.bucket,
                body=body,
                length=length,
                size=int(total) if total.isdigit() else length,
                content_type=response.get("ContentType", "application/octet-stream"),
                etag=response.get("ETag", ""),
            )
        finally:
            body.close()

    async def get_range(self, relpath: str, start: int, end_exclusive: int) -> bytes:
        """Bytes [start, end_exclusive) of an object; fewer when the object ends first,
        none when it ends before `start` (as a file read would)."""
        if 0 <= start == end_exclusive:
            return b""
        try:
            async with self.open_read(relpath, start=start, end_exclusive=end_exclusive) as r:
                return await r.read_all()
        except RangeNotSatisfiableError:
            return b""

    async def fetch_to(self, relpath: str, dest: Path) -> int:
        """Download an object to `dest` and return its size. The bytes go to a temporary
        file beside `dest`, synced and then renamed, so `dest` is whole or absent."""
        temp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        written = 0
        try:
            async with self.open_read(relpath) as reader:
                handle = await asyncio.to_thread(_create, temp)
                try:
                    async for chunk in reader.chunks():
                        await asyncio.to_thread(handle.write, chunk)
                        written += len(chunk)
                    await asyncio.to_thread(_sync, handle)
                finally:
                    await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        await asyncio.to_thread(_sync_directory, dest.parent)
        return written

    async def size(self, relpath: str) -> int | None:
        """An object's size in bytes, or None if there is no such object."""
        key = self.key(relpath)
        try:
            with _failures("HEAD", self.bucket, key, op="head"):
                head = await self._require().head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None
        return head["ContentLength"]

    async def list_objects(self, prefix: str = "") -> list[ListedObject]:
        """Every object whose relpath starts with `prefix`, by key."""
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ValueError(f"prefix: {prefix!r} is not a relative path prefix")
        full = self.config.prefix + prefix
        cut = len(self.config.prefix)
        found: list[ListedObject] = []
        paginator = self._require().get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.page_size}
        ).__aiter__()
        while True:
            # Each page is its own request, counted as one.
            with _failures("LIST", self.bucket, full or "(all keys)", op="list"):
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    break
            for item in page.get("Contents", []):
                modified = item["LastModified"]
                found.append(
                    ListedObject(
                        relpath=item["Key"][cut:],
                        size=item["Size"],
                        modified_s=modified.timestamp()
                        if isinstance(modified, datetime)
                        else float(modified),
                    )
                )
        return found

    async def presign_get(
        self,
        relpath: str,
        *,
        expires_s: int,
        filename: str | None = None,
        disposition: str | None = None,
    ) -> str:
        """A URL that GETs the object without credentials for `expires_s` seconds; with
        `filename` the response is an attachment of that name, with `disposition` it
        carries that Content-Disposition header as given."""
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise ValueError(
                f"expires_s: {expires_s} is out of range; use 1 to {MAX_PRESIGN_S} seconds"
            )
        if filename is not None and disposition is not None:
            raise ValueError("presign_get: give filename or disposition, not both")
        key = self.key(relpath)
        params = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        elif disposition is not None:
            params["ResponseContentDisposition"] = disposition
        with _failures("presign", self.bucket, key):
            return await self._require().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_s
            )

    def _require(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("ObjectStore: call start() first (or it was closed)")
        return self._client


@contextlib.contextmanager
def _failures(
    action: str,
    bucket: str,
    key: str,
    *,
    missing_is_absent: bool = True,
    op: str | None = None,
) -> Iterator[None]:
    """Turn the client's exceptions into the OSErrors the daemon treats as storage failures:
    FileNotFoundError for an absent object, the S3 error code in the message otherwise.
    With `op`, the request is counted by its outcome (reads of a body are not requests)."""
    what = f"S3 {action} of {key} in bucket {bucket}" if key else f"S3 {action} of bucket {bucket}"
    outcome: str | None = "error"
    try:
        yield
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = None  # given up on, not failed
        raise
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "unknown"))
        message = error.get("Message") or "no message"
        if code in _MISSING and missing_is_absent:
            outcome = "missing"
            raise FileNotFoundError(
                errno.ENOENT, f"no such object in bucket {bucket}", key
            ) from None
        if code == "InvalidRange":
            raise RangeNotSatisfiableError(f"{what}: InvalidRange ({message})") from None
        raise OSError(f"{what} failed: {code} ({message})") from exc
    except (BotoCoreError, aiohttp.ClientError) as exc:
        raise OSError(f"{what} failed: {exc}") from exc
    finally:
        if op is not None and outcome is not None:
            metrics.OBJECT_REQUESTS.labels(op, outcome).inc()


def _content_type(relpath: str) -> str:
    return _CONTENT_TYPES.get(os.path.splitext(relpath)[1].lower(), "application/octet-stream")


def _md5(data: bytes) -> str:
    # Content-MD5 lets the service refuse a body damaged on the way; it is no security hash.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _create(path: Path) -> BufferedWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("xb")


def _sync(handle: BufferedWriter) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
