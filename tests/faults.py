"""Scripted HTTP faults for a test origin: an aiohttp middleware that breaks chosen requests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "Delay",
    "Fault",
    "FaultScript",
    "Freeze",
    "Garbage",
    "Oversize",
    "Redirect",
    "Reset",
    "Rule",
    "Status",
    "Truncate",
]

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NO_BODY_CODES = frozenset({204, 304})
_OVERSIZE_CHUNK = bytes(64 * 1024)


class Fault:
    """What to do to a request instead of (or before) serving it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Status(Fault):
    """Answer with this status and a short text body; the real handler is not called."""

    code: int

    def __post_init__(self) -> None:
        if not 100 <= self.code <= 599:
            raise ValueError(f"Status.code must be an HTTP status in 100..599, got {self.code}")


@dataclass(frozen=True, slots=True)
class Delay(Fault):
    """Hold the request this long (or until FaultScript.clear()), then serve it normally."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"Delay.seconds must be >= 0, got {self.seconds}")


@dataclass(frozen=True, slots=True)
class Reset(Fault):
    """Drop the connection without sending a single byte of response."""


@dataclass(frozen=True, slots=True)
class Truncate(Fault):
    """Send the real headers and full Content-Length, then `keep` of the body, then hang up."""

    keep: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep < 1.0:
            raise ValueError(f"Truncate.keep must be in [0.0, 1.0), got {self.keep}")


@dataclass(frozen=True, slots=True)
class Garbage(Fault):
    """Answer 200 with `size` random bytes that parse neither as a playlist nor as media."""

    size: int = 4096

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"Garbage.size must be >= 0, got {self.size}")


@dataclass(frozen=True, slots=True)
class Freeze(Fault):
    """Keep answering 200 with the body this path served just before the freeze began."""


@dataclass(frozen=True, slots=True)
class Redirect(Fault):
    """Answer with a redirect to `location`."""

    location: str
    code: int = 302

    def __post_init__(self) -> None:
        if self.code not in _REDIRECT_CODES:
            allowed = ", ".join(map(str, sorted(_REDIRECT_CODES)))
            raise ValueError(f"Redirect.code must be one of {allowed}, got {self.code}")


@dataclass(frozen=True, slots=True)
class Oversize(Fault):
    """Answer 200 with a body of `size` zero bytes, declared in Content-Length, streamed."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"Oversize.size must be >= 0, got {self.size}")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A body the real handler served, as Freeze replays it."""

    body: bytes
    content_type: str | None


@dataclass(kw_only=True, slots=True, eq=False)
class Rule:
    """One line of a FaultScript: matching requests skip+1 .. skip+times get `fault`.

    Every rule whose pattern matches a request counts it in `seen`, even when an earlier
    rule took the request, so a rule's window is always "the Nth matching request".
    """

    pattern: str
    fault: Fault
    times: int | None
    skip: int
    seen: int = 0
    applied: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)
    _frozen: dict[str, _Snapshot] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be None (forever) or >= 1, got {self.times}")
        if self.skip < 0:
            raise ValueError(f"skip must be >= 0, got {self.skip}")
        self._regex = re.compile(self.pattern)

    @property
    def exhausted(self) -> bool:
        """True once the rule has passed its window and will never apply again."""
        return self.times is not None and self.seen >= self.skip + self.times

    def _count(self, path_qs: str) -> bool:
        """Count a request if it matches; True if it falls inside this rule's window."""
        if self._regex.search(path_qs) is None:
            return False
        self.seen += 1
        return self.seen > self.skip and (self.times is None or self.seen <= self.skip + self.times)


class FaultScript:
    """Rules of faults, applied by `middleware` to the requests they match, first rule first."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.hits: list[tuple[str, str]] = []
        # Last 200 body per path of text-like responses (playlists): what Freeze replays.
        # Binary bodies (segments) are not kept, so memory does not grow with the recording.
        self._last_good: dict[str, _Snapshot] = {}
        self._hit_changed = asyncio.Event()
        self._release_delays = asyncio.Event()

    def add(self, pattern: str, fault: Fault, *, times: int | None = 1, skip: int = 0) -> Rule:
        """Apply `fault` to matching requests skip+1 .. skip+times; `pattern` is a regex
        searched in request.path_qs, and times=None means forever."""
        rule = Rule(pattern=pattern, fault=fault, times=times, skip=skip)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and let requests held by Delay through at once."""
        self.rules.clear()
        release, self._release_delays = self._release_delays, asyncio.Event()
        release.set()

    @property
    def middleware(self) -> Middleware:
        return self._middleware

    def hit_count(self, pattern: str | None = None) -> int:
        """Faulted requests so far, or those whose path_qs the regex `pattern` matches."""
        if pattern is None:
            return len(self.hits)
        regex = re.compile(pattern)
        return sum(1 for path_qs, _ in self.hits if regex.search(path_qs))

    async def wait_hits(self, n: int, pattern: str | None = None, timeout: float = 20.0) -> None:
        """Wait until at least n faulted requests (matching `pattern`) have been seen."""
        try:
            async with asyncio.timeout(timeout):
                while self.hit_count(pattern) < n:
                    await self._hit_changed.wait()
        except TimeoutError:
            have = self.hit_count(pattern)
            raise AssertionError(
                f"{have} of {n} faulted requests matching {pattern!r} within {timeout}s"
            ) from None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = self._take(request.path_qs)
        if rule is None:
            return await self._serve(request, handler)
        self._record_hit(request.path_qs, rule.fault)
        match rule.fault:
            case Status(code=code):
                return _status(code)
            case Delay(seconds=seconds):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await self._release_delays.wait()
                return await self._serve(request, handler)
            case Reset():
                return _reset(request)
            case Truncate(keep=keep):
                return await _truncate(request, handler, keep)
            case Garbage(size=size):
                return _garbage(request.path_qs, rule.applied, size)
            case Freeze():
                return await self._freeze(rule, request, handler)
            case Redirect(location=location, code=code):
                return web.Response(status=code, headers={hdrs.LOCATION: location})
            case Oversize(size=size):
                return await _oversize(request, size)
            case _:
                raise TypeError(f"unknown fault {rule.fault!r}")

    def _take(self, path_qs: str) -> Rule | None:
        """Count the request in every matching rule; the first one in its window takes it."""
        taken: Rule | None = None
        for rule in self.rules:
            if rule._count(path_qs) and taken is None:
                taken = rule
        if taken is not None:
            taken.applied += 1
        return taken

    def _record_hit(self, path_qs: str, fault: Fault) -> None:
        self.hits.append((path_qs, type(fault).__name__))
        changed, self._hit_changed = self._hit_changed, asyncio.Event()
        changed.set()

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        snapshot = _snapshot(response)
        if snapshot is not None and _is_text(snapshot.content_type):
            self._last_good[request.path] = snapshot
        return response

    async def _freeze(
        self, rule: Rule, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        # The snapshot is taken when the freeze reaches this path and kept by the rule, so
        # requests that pass around the rule meanwhile cannot unfreeze it.
        snapshot = rule._frozen.get(request.path) or self._last_good.get(request.path)
        if snapshot is None:
            # Nothing served before the freeze: serve once for real, then repeat that body.
            response = await self._serve(request, handler)
            snapshot = _snapshot(response)
            if snapshot is not None:
                rule._frozen[request.path] = snapshot
            return response
        rule._frozen[request.path] = snapshot
        headers = (
            {} if snapshot.content_type is None else {hdrs.CONTENT_TYPE: snapshot.content_type}
        )
        return web.Response(body=snapshot.body, headers=headers)


def _status(code: int) -> web.Response:
    if code < 200 or code in _NO_BODY_CODES:
        return web.Response(status=code)
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return web.Response(status=code, text=f"{code} {phrase} (scripted fault)\n")


def _reset(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Never reaches the wire: aiohttp's write to the aborted transport raises a
    # ConnectionResetError, which it treats as a client that went away, without logging.
    return web.Response(status=500, text="connection aborted by fault script")


async def _truncate(request: web.Request, handler: Handler, keep: float) -> web.StreamResponse:
    try:
        original = await handler(request)
    except web.HTTPException as exc:
        original = exc
    if not isinstance(original, web.Response) or not isinstance(original.body, bytes | bytearray):
        raise RuntimeError(
            f"Truncate needs a web.Response with a bytes body; {request.path} "
            f"returned {type(original).__name__}"
        )
    body = bytes(original.body)
    declared = max(len(body), 1)  # an empty body is "truncated" by declaring one byte
    sent = body[: min(int(len(body) * keep), declared - 1)]
    response = web.StreamResponse(status=original.status, reason=original.reason)
    content_type = original.headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None:
        response.headers[hdrs.CONTENT_TYPE] = content_type
    response.content_length = declared
    response.force_close()
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(sent)  # sends the buffered headers too, even when sent == b""
    transport = request.transport
    if transport is not None:
        # close(), not abort(): close flushes what was written before hanging up, so the
        # client receives exactly `sent` and then EOF short of Content-Length.
        transport.close()
    return response


def _garbage(path_qs: str, nth: int, size: int) -> web.Response:
    # Seeded by request, so a failing test sees the same bytes when it is run again.
    body = bytearray(random.Random(f"{path_qs}#{nth}").randbytes(size))
    if body:
        body[0] = 0  # neither "#EXTM3U" nor a TS sync byte, whatever the seed
    return web.Response(body=bytes(body), content_type="application/octet-stream")


async def _oversize(request: web.Request, size: int) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    response.content_length = size
    # A client that refuses the size hangs up mid-body; that is the expected outcome.
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        left = size
        while left > 0:
            chunk = _OVERSIZE_CHUNK[: min(left, len(_OVERSIZE_CHUNK))]
            await response.write(chunk)
            left -= len(chunk)
    return response


def _snapshot(response: web.StreamResponse) -> _Snapshot | None:
    if not isinstance(response, web.Response) or response.status != 200:
        return None
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return None
    return _Snapshot(body=bytes(body), content_type=response.headers.get(hdrs.CONTENT_TYPE))


def _is_text(content_type: str | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime.endswith("mpegurl") or "charset=" in content_type
