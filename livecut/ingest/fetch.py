"""HTTP GETs against an origin, with every failure turned into a named kind of error."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

import aiohttp

from livecut.hls.playlist import ByteRange
from livecut.ingest.budget import ByteBudget

# Anything we fetch, and anywhere a redirect sends us, must be http or https: an origin
# must not point us at file://, ftp:// or worse.
_SCHEMES = ("http", "https")
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
# Dropped when a redirect leaves the origin, as browsers and aiohttp itself do.
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class FetchError(Exception):
    """A failed request; `kind` is the metric label (http_404, timeout, truncated, ...)."""

    def __init__(self, kind: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True, kw_only=True, slots=True)
class Fetched:
    url: str  # after redirects
    body: bytes
    held: int = 0  # bytes of the budget it holds; the caller gives them back


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    byterange: ByteRange | None = None,
    max_bytes: int = 512 * 1024 * 1024,
    budget: ByteBudget | None = None,
    expected_bytes: int = 0,
) -> Fetched:
    """GET url (following up to MAX_REDIRECTS redirects) within timeout_s in all.

    Redirects are followed here rather than by aiohttp, so that each target is checked
    before a single byte goes to it: only http and https, and never from https back to
    plain http (that would send the stream's headers, which may carry credentials, in
    the clear). With a budget, `expected_bytes` are taken from it before the request
    (see ByteBudget), adjusted to the body's real size once read, and Fetched.held says
    how many the caller must give back; a failed fetch gives them back itself.
    """
    if _scheme(url) not in _SCHEMES:
        raise FetchError(
            "bad_uri", f"refusing to fetch {url!r}: only http and https", retryable=False
        )
    request_headers = dict(headers)
    if byterange is not None:
        last = byterange.offset + byterange.length - 1
        request_headers["Range"] = f"bytes={byterange.offset}-{last}"
    hold = _Hold(budget, expected_bytes if byterange is None else byterange.length)
    # Taken before the request: a download waiting for room holds no connection, whose
    # body would otherwise pile up in the client's buffers meanwhile.
    await hold.take()
    try:
        fetched = await _get(http, url, request_headers, timeout_s, byterange, max_bytes, hold)
    except BaseException:
        hold.give_back()
        raise
    hold.fit(len(fetched.body))
    return replace(fetched, held=hold.amount)


class _Hold:
    """The share of a budget one fetch holds."""

    def __init__(self, budget: ByteBudget | None, amount: int) -> None:
        self.budget = budget
        self.amount = amount if budget is not None else 0

    async def take(self) -> None:
        if self.budget is not None:
            await self.budget.take(self.amount)

    def fit(self, size: int) -> None:
        """Hold exactly `size` (a body longer than expected grows its share, past the
        cap if it must: a body half read never waits)."""
        if self.budget is None or size == self.amount:
            return
        if size > self.amount:
            self.budget.grow(size - self.amount)
        else:
            self.budget.give(self.amount - size)
        self.amount = size

    def give_back(self) -> None:
        if self.budget is not None:
            self.budget.give(self.amount)
        self.amount = 0


async def _get(
    http: aiohttp.ClientSession,
    url: str,
    request_headers: dict[str, str],
    timeout_s: float,
    byterange: ByteRange | None,
    max_bytes: int,
    hold: _Hold,
) -> Fetched:
    current = url
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                async with http.get(
                    current, headers=request_headers, allow_redirects=False
                ) as response:
                    if response.status in _REDIRECTS:
                        target = _redirect_target(current, response)
                        if _origin(target) != _origin(current):
                            request_headers = _without_credentials(request_headers)
                        current = target
                        continue
                    body = await _body(_Reader(response, current, max_bytes, hold), byterange)
                    return Fetched(url=current, body=body)
            raise FetchError(
                "bad_redirect", f"{url}: more than {MAX_REDIRECTS} redirects", retryable=False
            )
    except FetchError:
        raise
    except TimeoutError as exc:
        raise FetchError(
            "timeout", f"origin timed out: GET {current}: no response within {timeout_s:g} s"
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise FetchError(
            "truncated", f"origin cut the body short: GET {current}: {describe(exc)}"
        ) from exc
    except aiohttp.ClientConnectionError as exc:
        raise FetchError(
            "connection", f"origin unreachable: GET {current}: {describe(exc)}"
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise FetchError("bad_uri", f"{current}: invalid URL ({exc})", retryable=False) from exc
    except aiohttp.ClientError as exc:
        raise FetchError(
            "http_error", f"origin request failed: GET {current}: {describe(exc)}"
        ) from exc


def describe(exc: BaseException) -> str:
    """What went wrong, in words, without the exception's repr."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return f"cannot resolve {exc.host}: {os_error.strerror}"
        if os_error.errno:
            return os.strerror(os_error.errno).lower()
        return f"cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection ended before the body did"
    text = str(exc).strip()
    return text or type(exc).__name__


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


def _redirect_target(current: str, response: aiohttp.ClientResponse) -> str:
    location = response.headers.get("Location")
    if not location:
        raise FetchError("http_error", f"{current}: HTTP {response.status} without a Location")
    target = urljoin(current, location)
    if _scheme(target) not in _SCHEMES:
        raise FetchError(
            "bad_redirect",
            f"{current} redirected to {target!r}: refusing, only http and https",
            retryable=False,
        )
    if _scheme(current) == "https" and _scheme(target) == "http":
        raise FetchError(
            "bad_redirect",
            f"{current} redirected to {target}: refusing to leave https for plain http",
            retryable=False,
        )
    return target


def _without_credentials(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}


class _Reader:
    """Reads a response's body, growing its fetch's hold on the budget as bytes come."""

    def __init__(
        self, response: aiohttp.ClientResponse, url: str, max_bytes: int, hold: _Hold
    ) -> None:
        self.response = response
        self.url = url
        self.max_bytes = max_bytes
        self.hold = hold

    async def read(self, *, max_bytes: int, stop_at: int | None) -> bytes:
        """The whole body (or its first stop_at bytes), refusing more than max_bytes.

        StreamReader.read(n) returns whatever happens to be buffered, so read to the end.
        """
        response, url = self.response, self.url
        declared = response.content_length
        if stop_at is None and declared is not None and declared > max_bytes:
            raise FetchError("too_large", f"{url} is {declared} bytes", retryable=False)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.hold.amount:
                self.hold.fit(size)
            if stop_at is not None and size >= stop_at:
                return b"".join(chunks)[:stop_at]
            if size > max_bytes:
                raise FetchError("too_large", f"{url} exceeds {max_bytes} bytes", retryable=False)
        body = b"".join(chunks)
        # Content-Length counts encoded bytes; with gzip on the wire, aiohttp hands us more.
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if declared is not None and not encoded and len(body) != declared:
            raise FetchError("truncated", f"{url}: {len(body)} of {declared} bytes")
        return body


async def _body(read: _Reader, byterange: ByteRange | None) -> bytes:
    response, url, max_bytes = read.response, read.url, read.max_bytes
    status = response.status
    if not 200 <= status < 300:
        raise FetchError(_status_kind(status), f"origin answered HTTP {status}: GET {url}")
    if byterange is not None and status != 206:
        # The server ignored Range and sends the whole resource: keep just our range.
        wanted = byterange.offset + byterange.length
        body = await read.read(max_bytes=max_bytes + byterange.offset, stop_at=wanted)
        if len(body) < wanted:
            raise FetchError(
                "bad_range",
                f"{url}: {len(body)} bytes, too short for bytes "
                f"{byterange.offset}-{wanted - 1} (and Range was not honoured)",
            )
        return body[byterange.offset : wanted]
    body = await read.read(max_bytes=max_bytes, stop_at=None)
    if byterange is not None:
        _check_content_range(response, url, byterange, len(body))
    return body


def _check_content_range(
    response: aiohttp.ClientResponse, url: str, byterange: ByteRange, size: int
) -> None:
    first, last = byterange.offset, byterange.offset + byterange.length - 1
    match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
    got = (int(match[1]), int(match[2])) if match else None
    if got != (first, last) or size != byterange.length:
        raise FetchError(
            "bad_range",
            f"{url}: asked for bytes {first}-{last}, got "
            f"{response.headers.get('Content-Range')!r} with {size} bytes",
        )


def _status_kind(status: int) -> str:
    if status in (403, 404, 410):
        return f"http_{status}"
    if status >= 500:
        return "http_5xx"
    return "http_4xx" if status >= 400 else f"http_{status // 100}xx"


def backoff_s(attempt: int, *, base_s: float = 0.25, cap_s: float = 8.0) -> float:
    """Exponential backoff with full jitter, so many streams do not retry in lockstep."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


async def sleep_backoff(attempt: int, *, limit_s: float | None = None) -> None:
    delay = backoff_s(attempt)
    if limit_s is not None:
        delay = min(delay, max(0.0, limit_s))
    await asyncio.sleep(delay)
