"""Stored media as HTTP responses: a file of the data directory, or, with media in a bucket,
a redirect to a presigned URL or the object streamed through (storage.s3.downloads).

Handlers call these after authentication (a key or a signed URL) has been checked, so a
presigned URL is only ever handed to a client allowed to read what it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from livecut.api.context import error
from livecut.store.store import Store

if TYPE_CHECKING:
    from livecut.store.s3media import S3Media

# A redirect names a URL that expires: it is never cached, the media behind it may be.
REDIRECT_CACHE = "private, no-store"


async def stored_media(
    request: web.Request,
    store: Store,
    relpath: str,
    *,
    headers: Mapping[str, str],
    missing: str,
    check: bool = False,
) -> web.StreamResponse:
    """Serve stored media at `relpath` with `headers` (its Content-Type, a
    Content-Disposition, caching and CORS headers); a 404 saying `missing` when it is not
    there. `check`: with presigned downloads, make sure the object exists before
    redirecting (a name the client chose), rather than trust an index row."""
    remote = store.remote
    if remote is None:
        path = store.path(relpath)
        if not path.is_file():
            return error(404, missing)
        return web.FileResponse(path, headers=headers)
    if request.method == "HEAD":
        # Answered here in both modes: a presigned URL is signed for GET only.
        return await _head(remote, relpath, headers=headers, missing=missing)
    if remote.config.downloads == "presigned":
        return await _redirect(remote, relpath, headers=headers, missing=missing, check=check)
    return await _proxy(request, remote, relpath, headers=headers, missing=missing)


async def read_stored_text(store: Store, relpath: str) -> str | None:
    """A small stored text file (a clip's playlist), or None if there is none."""
    remote = store.remote
    try:
        if remote is None:
            return store.path(relpath).read_text(encoding="utf-8")
        async with remote.objects.open_read(relpath) as reader:
            return (await reader.read_all()).decode("utf-8")
    except FileNotFoundError:
        return None


async def _redirect(
    remote: S3Media, relpath: str, *, headers: Mapping[str, str], missing: str, check: bool
) -> web.StreamResponse:
    if check and await remote.objects.size(relpath) is None:
        return error(404, missing)
    url = await remote.objects.presign_get(
        relpath,
        expires_s=remote.config.url_expiry_s,
        disposition=headers.get("Content-Disposition"),
    )
    kept = {k: v for k, v in headers.items() if k.startswith("Access-Control-")}
    return web.Response(
        status=302, headers={**kept, "Location": url, "Cache-Control": REDIRECT_CACHE}
    )


async def _proxy(
    request: web.Request,
    remote: S3Media,
    relpath: str,
    *,
    headers: Mapping[str, str],
    missing: str,
) -> web.StreamResponse:
    from livecut.store.objects import RangeNotSatisfiableError  # loaded with S3Media

    if relpath in remote.cache:
        # This node has a copy (it recorded the segment, or read it lately): served from
        # disk, pinned while it is sent.
        async with remote.cache.local(relpath) as path:
            local = web.FileResponse(path, headers=headers)
            await local.prepare(request)
            return local
    try:
        wanted = request.http_range
    except ValueError:
        return await _unsatisfiable(remote, relpath, headers, missing)
    start, stop = wanted.start, wanted.stop
    if start is not None and start < 0:  # the last -start bytes
        size = await remote.objects.size(relpath)
        if size is None:
            return error(404, missing)
        start = max(0, size + start)
        if start >= size:
            return await _unsatisfiable(remote, relpath, headers, missing)
    try:
        async with remote.objects.open_read(
            relpath, start=start or 0, end_exclusive=stop
        ) as reader:
            ranged = start is not None
            response = web.StreamResponse(
                status=206 if ranged else 200,
                headers={**headers, "Accept-Ranges": "bytes"},
            )
            response.content_length = reader.length
            if ranged:
                first = start or 0
                response.headers["Content-Range"] = (
                    f"bytes {first}-{first + reader.length - 1}/{reader.size}"
                )
            await response.prepare(request)
            async for chunk in reader.chunks():
                await response.write(chunk)
            await response.write_eof()
            return response
    except FileNotFoundError:
        return error(404, missing)
    except RangeNotSatisfiableError:
        return await _unsatisfiable(remote, relpath, headers, missing)


async def _head(
    remote: S3Media, relpath: str, *, headers: Mapping[str, str], missing: str
) -> web.StreamResponse:
    size = await remote.objects.size(relpath)
    if size is None:
        return error(404, missing)
    response = web.StreamResponse(headers={**headers, "Accept-Ranges": "bytes"})
    response.content_length = size
    return response


async def _unsatisfiable(
    remote: S3Media, relpath: str, headers: Mapping[str, str], missing: str
) -> web.StreamResponse:
    size = await remote.objects.size(relpath)
    if size is None:
        return error(404, missing)
    cors = {k: v for k, v in headers.items() if k.startswith("Access-Control-")}
    response = error(416, f"the Range header selects nothing of {size} bytes")
    response.headers.update({**cors, "Content-Range": f"bytes */{size}"})
    return response
