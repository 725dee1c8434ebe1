"""Watermark images for renders: POST /v1/overlays (a PNG or WebP body), list, get, delete.

An upload is read up to MAX_BYTES, decoded with Pillow (a file that does not decode as
the image it claims to be is refused), and stored as an RGBA PNG with the media
("overlays/<id>.png": under the data directory, or in the bucket for every node), so a
render never meets a broken or hostile file. The decode takes one thread hop, and so
does a local durable write (write, fsync, rename); the stored image is served back
through aiofiles, on the event loop, from the node's local copy.
"""

from __future__ import annotations

import asyncio
import io
import re

import aiofiles
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from livecut.api.context import ctx_of, error, now_ms
from livecut.api.validate import check_query
from livecut.store.index import new_id
from livecut.store.media import overlay_relpath
from livecut.store.overlays import OverlayRow

MAX_BYTES = 4 * 1024 * 1024
MAX_SIDE = 4096
TYPES = {"image/png": "PNG", "image/webp": "WEBP"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OVERLAY_ID = re.compile(r"ovl_[0-9a-f]{16}")


class BadImage(ValueError):
    pass


def _normalize(data: bytes, expected: str) -> tuple[bytes, int, int]:
    """Decode the upload as the format its type names; return it as an RGBA PNG."""
    try:
        with Image.open(io.BytesIO(data), formats=[expected]) as image:
            width, height = image.size
            if max(width, height) > MAX_SIDE:
                raise BadImage(f"the image is {width}x{height}: at most {MAX_SIDE} a side")
            image.load()
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadImage(f"the body does not decode as {expected}: {exc}") from exc
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    return out.getvalue(), width, height


async def create_overlay(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ("name",))
    kind = request.content_type
    if kind not in TYPES:
        return error(415, f"Content-Type must be one of {', '.join(TYPES)}, not {kind!r}")
    name = request.query.get("name")
    if name is not None and not NAME.fullmatch(name):
        return error(422, "name must be 1-64 letters, digits, '.', '_' or '-'")
    if request.content_length is not None and request.content_length > MAX_BYTES:
        return error(413, f"the image is {request.content_length} bytes: at most {MAX_BYTES}")
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_BYTES:
            return error(413, f"the image is over {MAX_BYTES} bytes")
    if not data:
        return error(400, "the body is empty: send the image's bytes")
    try:
        png, width, height = await _decode(bytes(data), TYPES[kind])
    except BadImage as exc:
        return error(422, str(exc))
    overlay_id = new_id("ovl")
    relpath = overlay_relpath(overlay_id)
    try:
        await ctx.store.write(relpath, png)  # before its row: no row names a missing image
    except OSError as exc:
        return error(503, f"the image could not be stored, retry later: {exc}")
    row = OverlayRow(
        id=overlay_id,
        name=name,
        width=width,
        height=height,
        size_bytes=len(png),
        created_ms=now_ms(ctx),
    )
    try:
        await ctx.store.index.overlays.add(row)
    except BaseException:
        await ctx.store.remove_files([relpath])  # no row will ever name it
        raise
    return web.json_response(
        row.as_dict(), status=201, headers={"Location": f"/v1/overlays/{overlay_id}"}
    )


async def _decode(data: bytes, expected: str) -> tuple[bytes, int, int]:
    return await asyncio.to_thread(_normalize, data, expected)


async def list_overlays(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    configured = [
        {"id": name, "configured": True, "url": f"/v1/overlays/{name}/image.png"}
        for name in sorted(ctx.store.configured_overlays)
    ]
    uploaded = [r.as_dict() for r in await ctx.store.index.overlays.all()]
    return web.json_response({"data": configured + uploaded})


async def get_overlay(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    row = await ctx.store.index.overlays.get(request.match_info["id"])
    if row is None:
        return error(404, f"unknown overlay {request.match_info['id']!r}")
    return web.json_response(row.as_dict())


async def overlay_image(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    check_query(request.query, ())
    async with ctx.store.overlay_image(request.match_info["id"]) as image:
        if image is None:
            return error(404, f"unknown overlay {request.match_info['id']!r}")
        async with aiofiles.open(image, "rb") as fh:
            body = await fh.read()
    webp = image.suffix.lower() == ".webp"  # a configured one is served as it is
    return web.Response(body=body, content_type="image/webp" if webp else "image/png")


async def delete_overlay(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    overlay_id = request.match_info["id"]
    if overlay_id in ctx.store.configured_overlays:
        return error(
            409, f"overlay {overlay_id!r} is named in the config's [overlays]: remove it there"
        )
    if not await ctx.store.index.overlays.delete(overlay_id):
        return error(404, f"unknown overlay {overlay_id!r}")
    # Its file, or (S3) its object and this node's copy; another node's copy is only
    # ever read through a row, and goes as its cache evicts it.
    await ctx.store.remove_files([overlay_relpath(overlay_id)])
    return web.Response(status=204)


OVERLAY_ROUTES = (
    ("POST", "/v1/overlays", create_overlay),
    ("GET", "/v1/overlays", list_overlays),
    ("GET", "/v1/overlays/{id}", get_overlay),
    ("GET", "/v1/overlays/{id}/image.png", overlay_image),
    ("DELETE", "/v1/overlays/{id}", delete_overlay),
)
