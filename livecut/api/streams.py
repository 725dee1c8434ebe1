"""Streams, sessions and the timeline."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from livecut.analysis.loudness import envelope, loudness_curve
from livecut.analysis.scan import LOUDNESS_RATE, audio_in_range, planned_runs, run_files
from livecut.api.context import ApiContext, ctx_of, error, now_ms
from livecut.api.validate import (
    Invalid,
    check_query,
    optional_query_int,
    page_limit,
    query_int,
    short,
)
from livecut.api.views import session_json
from livecut.clips.planner import NothingRecorded
from livecut.ingest.sessions import StreamStatus


@dataclass(frozen=True, kw_only=True, slots=True)
class Recording:
    """Who records a stream and how it goes, as that node last said."""

    node: str | None  # this node, alone; of many, the one holding its lease (None: none)
    status: dict[str, object]  # StreamStatus.as_dict() of the node recording it
    status_ms: int  # when that node reported it (now, for this node)


async def recordings(ctx: ApiContext) -> dict[str, Recording]:
    """Every configured stream's recording. Of many nodes, the state and counters are those
    the recording node put in its last heartbeat (a third of a lease old at most), so any
    node answers for every stream alike."""
    now = now_ms(ctx)
    cluster = ctx.config.cluster
    local = {
        s: Recording(node=cluster.node_id, status=r.status.as_dict(), status_ms=now)
        for s, r in ctx.recorders.items()
    }
    if cluster.index_url is None:
        return local
    holders = {
        lease.stream_id: lease.node_id
        for lease in await ctx.store.index.cluster.leases()
        if lease.expires_ms >= now
    }
    nodes = {n.id: n for n in await ctx.store.index.cluster.nodes()}
    found: dict[str, Recording] = {}
    for stream_id, mine in local.items():
        holder = holders.get(stream_id)
        node = nodes.get(holder) if holder is not None else None
        reported = (node.load.get("recording") or {}).get(stream_id) if node else None
        if holder == cluster.node_id or holder is None:
            # Recorded here, or by nobody: this node's own account (its last error, say).
            found[stream_id] = dataclasses.replace(mine, node=holder)
        elif node is not None and isinstance(reported, dict):
            found[stream_id] = Recording(node=holder, status=reported, status_ms=node.seen_ms)
        else:  # just taken: not in the holder's heartbeat yet
            found[stream_id] = Recording(
                node=holder, status=StreamStatus().as_dict(), status_ms=now
            )
    return found


async def _stream_json(
    ctx: ApiContext, stream_id: str, edges: Mapping[str, int], recording: Recording
) -> dict[str, object]:
    recorder = ctx.recorders[stream_id]
    live = await ctx.store.index.live_session(stream_id)
    edge = edges.get(stream_id)
    return {
        "id": stream_id,
        "url": recorder.stream.url,
        **recording.status,
        "status_ms": recording.status_ms,
        "recorded_by": recording.node,
        "live_session": None if live is None else live.id,
        "live_edge_ms": edge,
        "live_edge_age_ms": None if edge is None else max(0, now_ms(ctx) - edge),
        "retention_s": recorder.stream.retention_s,
    }


async def list_streams(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    edges = await ctx.store.index.stream_live_edges()
    found = await recordings(ctx)
    return web.json_response(
        {"streams": [await _stream_json(ctx, s, edges, found[s]) for s in ctx.recorders]}
    )


def known_stream(ctx: ApiContext, stream_id: str) -> None:
    if stream_id not in ctx.recorders:
        known = ", ".join(sorted(ctx.recorders)) or "none configured"
        raise Invalid([f"unknown stream {short(stream_id)}; known streams: {known}"], status=404)


async def get_stream(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    stream_id = request.match_info["id"]
    known_stream(ctx, stream_id)
    edges = await ctx.store.index.stream_live_edges()
    recording = (await recordings(ctx))[stream_id]
    return web.json_response(await _stream_json(ctx, stream_id, edges, recording))


_session_json = session_json


async def list_sessions(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("limit",))
    known_stream(ctx, stream_id)
    limit = page_limit(request.query.get("limit"), default=100)
    sessions = await ctx.store.index.sessions(stream_id, limit=limit)
    return web.json_response({"sessions": [_session_json(s) for s in sessions]})


async def get_session(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    session = await ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {short(request.match_info['id'])}")
    renditions = [
        {
            "id": r.id,
            "name": r.name,
            "uri": r.uri,
            "bandwidth": r.bandwidth,
            "resolution": r.resolution,
            "codecs": r.codecs,
        }
        for r in await ctx.store.index.renditions(session.id)
    ]
    return web.json_response({**_session_json(session), "renditions": renditions})


TIMELINE_DEFAULT_MS = 24 * 3600 * 1000
TIMELINE_LIMIT = 5000
LOUDNESS_RESOLUTION_MS = (100, 3_600_000)
LOUDNESS_MAX_RANGE_MS = 3_600_000  # decoding more audio than this is a job, not a GET


async def stream_timeline(request: web.Request) -> web.Response:
    """Recorded ranges and gaps of a stream between from_ms and to_ms (default: the last day)."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("from_ms", "to_ms", "loudness_ms"))
    known_stream(ctx, stream_id)
    to_ms = _query_ms(request, "to_ms", now_ms(ctx))
    from_ms = _query_ms(request, "from_ms", to_ms - TIMELINE_DEFAULT_MS)
    if from_ms >= to_ms:
        raise Invalid([f"from_ms ({from_ms}) must be before to_ms ({to_ms})"], status=400)
    loudness = await _loudness(ctx, request, stream_id, from_ms, to_ms)
    spans, gaps = await ctx.store.index.timeline(stream_id, from_ms, to_ms, limit=TIMELINE_LIMIT)
    shots = await ctx.store.index.analysis.shot_cuts(
        stream_id, from_ms, to_ms, limit=TIMELINE_LIMIT
    )
    return web.json_response(
        {
            "stream": stream_id,
            "from_ms": from_ms,
            "to_ms": to_ms,
            "ranges": [{"start_ms": s, "end_ms": e, "session": sid} for s, e, sid in spans],
            "gaps": [
                {"start_ms": g.start_ms, "end_ms": g.end_ms, "reason": g.reason} for g in gaps
            ],
            # Shot boundaries found on the live recording (streams with shots = true).
            "shots": [
                {
                    "at_ms": c.at_ms,
                    "kind": c.kind,
                    "span_start_ms": c.span_start_ms,
                    "span_end_ms": c.span_end_ms,
                    "score": c.score,
                }
                for c in shots
            ],
            # With loudness_ms: EBU R128 loudness in buckets of that many milliseconds.
            **({} if loudness is None else {"loudness": loudness}),
            "truncated": TIMELINE_LIMIT in (len(spans), len(gaps), len(shots)),
        }
    )


async def _loudness(
    ctx: ApiContext, request: web.Request, stream_id: str, from_ms: int, to_ms: int
) -> list[dict[str, object]] | None:
    resolution = optional_query_int(request.query, "loudness_ms", LOUDNESS_RESOLUTION_MS)
    if resolution is None:
        return None
    if to_ms - from_ms > LOUDNESS_MAX_RANGE_MS:
        raise Invalid(
            [
                f"with loudness_ms, to_ms - from_ms may be at most {LOUDNESS_MAX_RANGE_MS} ms,"
                f" not {to_ms - from_ms}"
            ],
            status=400,
        )
    if (to_ms - from_ms) // resolution > TIMELINE_LIMIT:
        raise Invalid(
            [f"loudness_ms gives more than {TIMELINE_LIMIT} buckets: choose a larger one"], 400
        )
    segments = await ctx.store.index.stream_segments(stream_id, from_ms - 30_000, to_ms)
    try:
        runs = planned_runs(segments, from_ms, to_ms)
    except NothingRecorded:
        return []
    async with ctx.store.fetched(run_files(runs)):
        samples, first_ms = await asyncio.to_thread(
            audio_in_range, runs, from_ms, to_ms, ctx.store.path
        )
    curve = await asyncio.to_thread(loudness_curve, samples, LOUDNESS_RATE)
    buckets = envelope(
        curve, zero_ms=first_ms, from_ms=from_ms, to_ms=to_ms, resolution_ms=resolution
    )
    return [dataclasses.asdict(b) for b in buckets]


def _query_ms(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    return query_int(raw, key)
