"""HTTP GETs against an origin, with every failure turned into a named kind of error."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from livecut.hls.playlist import ByteRange

# Allowed schemes for anything we fetch: an origin must not point us at file:// or worse.
_SCHEMES = ("http://", "https://")


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


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    byterange: ByteRange | None = None,
    max_bytes: int = 512 * 1024 * 1024,
) -> Fetched:
    if not url.startswith(_SCHEMES):
        raise FetchError(
            "bad_uri", f"refusing to fetch {url!r}: only http and https", retryable=False
        )
    request_headers = dict(headers)
    if byterange is not None:
        last = byterange.offset + byterange.length - 1
        request_headers["Range"] = f"bytes={byterange.offset}-{last}"
    try:
        async with http.get(
            url, headers=request_headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            final_url = str(response.url)
            if url.startswith("https://") and not final_url.startswith("https://"):
                raise FetchError(
                    "bad_redirect", f"{url} redirected to {final_url}: not https", retryable=False
                )
            if response.status >= 400:
                raise FetchError(_status_kind(response.status), f"HTTP {response.status} for {url}")
            if response.content_length is not None and response.content_length > max_bytes:
                raise FetchError(
                    "too_large", f"{url} is {response.content_length} bytes", retryable=False
                )
            body = await response.content.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise FetchError("too_large", f"{url} exceeds {max_bytes} bytes", retryable=False)
            if response.content_length is not None and len(body) != response.content_length:
                raise FetchError(
                    "truncated", f"{url}: {len(body)} of {response.content_length} bytes"
                )
            return Fetched(url=final_url, body=body)
    except FetchError:
        raise
    except TimeoutError as exc:
        raise FetchError("timeout", f"timed out after {timeout_s:g}s fetching {url}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise FetchError("truncated", f"{url}: body cut short ({exc})") from exc
    except aiohttp.ClientConnectionError as exc:
        raise FetchError("connection", f"{url}: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise FetchError("http_error", f"{url}: {exc}") from exc


def _status_kind(status: int) -> str:
    if status in (403, 404, 410):
        return f"http_{status}"
    return "http_5xx" if status >= 500 else "http_4xx"


def backoff_s(attempt: int, *, base_s: float = 0.25, cap_s: float = 8.0) -> float:
    """Exponential backoff with full jitter, so many streams do not retry in lockstep."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


async def sleep_backoff(attempt: int, *, limit_s: float | None = None) -> None:
    delay = backoff_s(attempt)
    if limit_s is not None:
        delay = min(delay, max(0.0, limit_s))
    await asyncio.sleep(delay)
