"""GET /v1/storage: what the recordings take on disk, what is pinned, and the floor."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aiohttp import web

from livecut.api.context import ctx_of
from livecut.api.validate import check_query


@dataclass(frozen=True, kw_only=True, slots=True)
class DiskBody:
    total_bytes: int
    free_bytes: int
    floor_bytes: int  # the larger of min_free_bytes and min_free_percent of total_bytes
    min_free_bytes: int
    min_free_percent: float
    below_floor: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamStorageBody:
    stream: str
    segments: int
    bytes: int
    # Held by HLS clips and exports, and by queued, waiting or running jobs.
    pinned_bytes: int
    oldest_ms: int | None
    newest_ms: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageBody:
    disk: DiskBody
    keep_live_segments: int
    index_bytes: int
    streams: list[StreamStorageBody]


async def get_storage(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    disk = await ctx.store.space.disk()
    storage = ctx.config.storage
    usage = {u.stream_id: u for u in await ctx.store.index.storage_usage()}
    streams = []
    for stream_id in sorted({*usage, *ctx.recorders}):
        used = usage.get(stream_id)
        held = await ctx.store.index.bytes_in_ranges(stream_id, ctx.jobs.read_ranges(stream_id))
        streams.append(
            StreamStorageBody(
                stream=stream_id,
                segments=0 if used is None else used.segments,
                bytes=0 if used is None else used.bytes,
                pinned_bytes=held + (0 if used is None else used.pinned_bytes),
                oldest_ms=None if used is None else used.oldest_ms,
                newest_ms=None if used is None else used.newest_ms,
            )
        )
    body = StorageBody(
        disk=DiskBody(
            total_bytes=disk.total_bytes,
            free_bytes=disk.free_bytes,
            floor_bytes=disk.floor_bytes,
            min_free_bytes=storage.min_free_bytes,
            min_free_percent=storage.min_free_percent,
            below_floor=disk.free_bytes < disk.floor_bytes,
        ),
        keep_live_segments=storage.keep_live_segments,
        index_bytes=await ctx.store.index.size_bytes(),
        streams=streams,
    )
    return web.json_response(dataclasses.asdict(body))
