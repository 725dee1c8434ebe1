"""Livepeer Studio's clip API under /api: what its SDKs call, shaped as their models require.

A clip is an asset (its playbackId is the clip id) and a task ("task_" + the clip's
suffix). A stream's playbackId is its id, or the alias `playback_id` from the config.
"""

from __future__ import annotations

from aiohttp import web

from livecut.api.clips import nothing_recorded, submit_row, validate_clip
from livecut.api.context import ApiContext, ctx_of, error, json_body
from livecut.api.streams import recordings
from livecut.api.validate import Invalid, check_query, page_limit, short
from livecut.api.views import absolute
from livecut.store.records import ClipRow, SessionRow

ASSET_PHASES = {
    "queued": "waiting",
    "waiting": "waiting",
    "processing": "processing",
    "ready": "ready",
    "failed": "failed",
}
TASK_PHASES = {
    "queued": "pending",
    "waiting": "waiting",
    "processing": "running",
    "ready": "completed",
    "failed": "failed",
}
CLIP_FIELDS = ("playbackId", "startTime", "endTime", "name", "sessionId")


def stream_of(ctx: ApiContext, playback_id: str) -> str | None:
    """The stream a playback id names: its id, or a configured alias."""
    if playback_id in ctx.recorders:
        return playback_id
    for stream in ctx.streams():
        if stream.playback_id == playback_id and stream.id in ctx.recorders:
            return stream.id
    return None


def playback_id_of(ctx: ApiContext, stream_id: str) -> str:
    for stream in ctx.streams():
        if stream.id == stream_id and stream.playback_id:
            return stream.playback_id
    return stream_id


def task_id(clip_id: str) -> str:
    return "task_" + clip_id.removeprefix("clip_")


def _files(clip: ClipRow) -> dict[str, dict[str, object]]:
    """The first window's files (a one-window clip's own)."""
    result = clip.result or {}
    files = result.get("files")
    if not isinstance(files, dict):
        windows = result.get("windows")
        first = windows[0] if isinstance(windows, list) and windows else {}
        files = first.get("files") if isinstance(first, dict) else None
    return {k: v for k, v in (files or {}).items() if isinstance(v, dict)}


def _status(ctx: ApiContext, clip: ClipRow, phases: dict[str, str]) -> dict[str, object]:
    status: dict[str, object] = {"phase": phases[clip.state], "updatedAt": clip.updated_ms}
    progress = 1.0 if clip.state == "ready" else ctx.jobs.progress(clip.id)
    if progress is not None:
        status["progress"] = progress
    if clip.error:
        status["errorMessage"] = clip.error
    return status


async def asset_json(ctx: ApiContext, clip: ClipRow) -> dict[str, object]:
    base = ctx.base_url()
    source: dict[str, object] = {"type": "clip", "playbackId": playback_id_of(ctx, clip.stream_id)}
    sessions = await ctx.store.index.clip_sessions(clip.id)
    if clip.session_id or sessions:
        source["sessionId"] = clip.session_id or sessions[0]
    body: dict[str, object] = {
        "id": clip.id,
        "name": clip.name or clip.id,
        "type": "video",
        "playbackId": clip.id,
        "createdAt": clip.created_ms,
        "status": _status(ctx, clip, ASSET_PHASES),
        "source": source,
    }
    files = _files(clip)
    if clip.state == "ready" and files:
        main = files.get("mp4") or files.get("hls") or next(iter(files.values()))
        if "mp4" in files:
            body["downloadUrl"] = absolute(base, str(files["mp4"]["url"]))
        body["playbackUrl"] = absolute(base, str((files.get("hls") or main)["url"]))
        size = main.get("size_bytes")
        if isinstance(size, int):
            body["size"] = size
        digest = main.get("sha256")
        if isinstance(digest, str):
            body["hash"] = [{"hash": digest, "algorithm": "sha256"}]
        body["videoSpec"] = _video_spec(clip)
    return body


def _video_spec(clip: ClipRow) -> dict[str, object]:
    result = clip.result or {}
    duration = result.get("duration_ms")
    tracks = []
    raw_tracks = result.get("tracks")
    for track in raw_tracks if isinstance(raw_tracks, list) else []:
        if not isinstance(track, dict) or track.get("kind") not in ("video", "audio"):
            continue
        entry: dict[str, object] = {"type": track["kind"], "codec": str(track.get("codec"))}
        for ours, theirs in (
            ("width", "width"),
            ("height", "height"),
            ("fps", "fps"),
            ("sample_rate", "sampleRate"),
            ("channels", "channels"),
        ):
            if isinstance(track.get(ours), int | float):
                entry[theirs] = track[ours]
        first, end = track.get("first_ms"), track.get("end_ms")
        if isinstance(first, int | float) and isinstance(end, int | float):
            entry["duration"] = max(0.0, (end - first) / 1000)
        tracks.append(entry)
    spec: dict[str, object] = {"format": "mp4", "tracks": tracks}
    if isinstance(duration, int | float):
        spec["duration"] = duration / 1000
    return spec


def task_json(ctx: ApiContext, clip: ClipRow) -> dict[str, object]:
    clip_params: dict[str, object] = {
        "clipStrategy": {
            "startTime": clip.start_ms,
            "endTime": clip.end_ms,
            "playbackId": playback_id_of(ctx, clip.stream_id),
        }
    }
    if clip.session_id:
        clip_params["sessionId"] = clip.session_id
    return {
        "id": task_id(clip.id),
        "type": "clip",
        "createdAt": clip.created_ms,
        "outputAssetId": clip.id,
        "params": {"clip": clip_params},
        "status": _status(ctx, clip, TASK_PHASES),
    }


def _number(body: dict[str, object], key: str, errors: list[str]) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        errors.append(f"{key} must be a number (Unix milliseconds), not {short(value)}")
        return None
    if not -(2**53) < value < 2**53:
        errors.append(f"{key} {short(value)} is not a Unix time in milliseconds")
        return None
    return round(value)


async def create_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    body = await json_body(request)
    if not isinstance(body, dict):
        raise Invalid(["the body must be a JSON object"], status=400)
    errors: list[str] = []
    unknown = sorted(set(body) - set(CLIP_FIELDS))
    if unknown:
        shown = ", ".join(short(u) for u in unknown[:5])
        errors.append(f"unknown field(s) {shown}; allowed: {', '.join(CLIP_FIELDS)}")
    playback = body.get("playbackId")
    stream_id = stream_of(ctx, playback) if isinstance(playback, str) else None
    if not isinstance(playback, str):
        errors.append("playbackId is required: a stream's playback id")
    elif stream_id is None:
        raise Invalid([f"unknown playbackId {short(playback)}"], status=404)
    start = _number(body, "startTime", errors)
    if "startTime" not in body:
        errors.append("startTime is required: Unix milliseconds")
    end = _number(body, "endTime", errors)
    if errors:
        raise Invalid(errors)
    ours: dict[str, object] = {"stream": stream_id, "start_ms": start}
    if end is not None:
        ours["end_ms"] = end
    for theirs, key in (("name", "name"), ("sessionId", "session")):
        if body.get(theirs) is not None:
            ours[key] = body[theirs]
    req = await validate_clip(ctx, ours)
    nothing = await nothing_recorded(ctx, req)
    if nothing is not None:
        return nothing
    clip = await submit_row(ctx, req)
    return web.json_response(
        {"asset": await asset_json(ctx, clip), "task": {"id": task_id(clip.id)}}, status=200
    )


async def _clip(ctx: ApiContext, clip_id: str) -> ClipRow:
    clip = await ctx.store.index.clip(clip_id)
    if clip is None:
        raise Invalid([f"asset not found: {short(clip_id)}"], status=404)
    return clip


async def get_asset(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    return web.json_response(await asset_json(ctx, await _clip(ctx, request.match_info["id"])))


async def delete_asset(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    if not await ctx.jobs.delete(request.match_info["id"]):
        return error(404, f"asset not found: {short(request.match_info['id'])}")
    return web.Response(status=204)


async def list_assets(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ("limit",))
    clips = await ctx.store.index.clips(after=None, limit=page_limit(request.query.get("limit")))
    return web.json_response([await asset_json(ctx, c) for c in clips])


async def get_task(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    raw = request.match_info["id"]
    clip = await ctx.store.index.clip("clip_" + raw.removeprefix("task_"))
    if clip is None or not raw.startswith("task_"):
        return error(404, f"task not found: {short(raw)}")
    return web.json_response(task_json(ctx, clip))


def _session_json(ctx: ApiContext, session: SessionRow) -> dict[str, object]:
    body: dict[str, object] = {
        "id": session.id,
        "name": session.id,
        "parentId": session.stream_id,
        "playbackId": playback_id_of(ctx, session.stream_id),
        "createdAt": session.started_ms,
        "record": True,
        "recordingStatus": "waiting" if session.state == "live" else "ready",
    }
    if session.live_edge_ms is not None:
        body["lastSeen"] = session.live_edge_ms
        body["sourceSegmentsDuration"] = max(0, session.live_edge_ms - session.started_ms) / 1000
    return body


async def _session(ctx: ApiContext, session_id: str) -> SessionRow:
    session = await ctx.store.index.session(session_id)
    if session is None:
        raise Invalid([f"session not found: {short(session_id)}"], status=404)
    return session


async def get_session(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    return web.json_response(_session_json(ctx, await _session(ctx, request.match_info["id"])))


async def session_clips(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ("limit",))
    session = await _session(ctx, request.match_info["id"])
    limit = page_limit(request.query.get("limit"), default=100)
    clips = await ctx.store.index.clips(after=None, limit=limit, session=session.id)
    return web.json_response([await asset_json(ctx, c) for c in clips])


def _stream(ctx: ApiContext, raw: str) -> str:
    stream_id = stream_of(ctx, raw)
    if stream_id is None:
        raise Invalid([f"stream not found: {short(raw)}"], status=404)
    return stream_id


async def _stream_json(ctx: ApiContext, stream_id: str) -> dict[str, object]:
    status = (await recordings(ctx))[stream_id].status
    state, last_error = status.get("state"), status.get("last_error")
    live = await ctx.store.index.live_session(stream_id)
    edge = (await ctx.store.index.stream_live_edges()).get(stream_id)
    body: dict[str, object] = {
        "id": stream_id,
        "name": stream_id,
        "playbackId": playback_id_of(ctx, stream_id),
        "isActive": live is not None,
        "record": True,
        "isHealthy": state not in ("failing", "stalled"),
        "issues": [last_error] if state == "failing" and last_error else [],
    }
    if edge is not None:
        body["lastSeen"] = edge
    return body


async def get_stream(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    return web.json_response(await _stream_json(ctx, _stream(ctx, request.match_info["id"])))


async def stream_clips(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ("limit",))
    stream_id = _stream(ctx, request.match_info["id"])
    limit = page_limit(request.query.get("limit"), default=100)
    clips = await ctx.store.index.clips(after=None, limit=limit, stream=stream_id)
    return web.json_response([await asset_json(ctx, c) for c in clips])


async def playback(request: web.Request) -> web.Response:
    """live for a stream, vod for a ready clip, recording for a session."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    raw = request.match_info["id"]
    stream_id = stream_of(ctx, raw)
    if stream_id is not None:
        live = await ctx.store.index.live_session(stream_id) is not None
        # livecut records streams; it does not restream them live, so no live source.
        return web.json_response({"type": "live", "meta": {"live": int(live), "source": []}})
    session = await ctx.store.index.session(raw)
    if session is not None:
        return web.json_response({"type": "recording", "meta": {"live": 0, "source": []}})
    clip = await ctx.store.index.clip(raw)
    if clip is None or clip.state != "ready":
        return error(404, f"no playback for {short(raw)} (unknown, or a clip not ready yet)")
    base = ctx.base_url()
    sources: list[dict[str, object]] = []
    files = _files(clip)
    if "mp4" in files:
        mp4: dict[str, object] = {
            "hrn": "MP4",
            "type": "html5/video/mp4",
            "url": absolute(base, str(files["mp4"]["url"])),
        }
        if isinstance(files["mp4"].get("size_bytes"), int):
            mp4["size"] = files["mp4"]["size_bytes"]
        sources.append(mp4)
    if "hls" in files:
        sources.append(
            {
                "hrn": "HLS (TS)",
                "type": "html5/application/vnd.apple.mpegurl",
                "url": absolute(base, str(files["hls"]["url"])),
            }
        )
    return web.json_response({"type": "vod", "meta": {"live": 0, "source": sources}})
