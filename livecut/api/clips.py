"""Clip jobs and their files, and session exports (which are clip jobs too)."""

from __future__ import annotations

from aiohttp import web

from livecut.api.context import ApiContext, ctx_of, error, json_body, now_ms
from livecut.api.validate import ClipLimits, Invalid, clip_request, page_limit
from livecut.clips.jobs import ClipRequest, QueueFull
from livecut.clips.planner import nearest_spans
from livecut.store.records import ClipRow


def _clip_json(clip: ClipRow) -> dict[str, object]:
    body: dict[str, object] = {
        "id": clip.id,
        "name": clip.name,
        "stream": clip.stream_id,
        "session": clip.session_id,
        "state": clip.state,
        "requested": {"start_ms": clip.start_ms, "end_ms": clip.end_ms},
        "created_ms": clip.created_ms,
        "updated_ms": clip.updated_ms,
        "error": clip.error,
        "links": {"self": f"/v1/clips/{clip.id}"},
    }
    if clip.result is not None:
        body.update(clip.result)
    if clip.state == "ready" and isinstance(clip.result, dict):
        body["links"] = {"self": f"/v1/clips/{clip.id}", **_file_links(clip.result)}
    body["options"] = clip.options or {}
    return body


async def create_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await json_body(request)
    now = now_ms(ctx)
    clips_config = ctx.config.clips

    def session_owner(session_id: str) -> str | None:
        session = ctx.store.index.session(session_id)
        return None if session is None else session.stream_id

    req = clip_request(
        body,
        streams=ctx.recorders.keys(),
        session_owner=session_owner,
        limits=ClipLimits(
            now_ms=now,
            max_duration_ms=clips_config.max_duration_ms,
            max_wait_ms=round(clips_config.max_wait_s * 1000),
        ),
    )
    if not _may_have_media(ctx, req.stream_id, req.session_id, req.start_ms, req.end_ms):
        spans = nearest_spans(
            ctx.store.index.recorded_spans(req.stream_id), req.start_ms, req.end_ms
        )
        return error(
            422,
            f"nothing of stream {req.stream_id!r} is recorded between {req.start_ms} and "
            f"{req.end_ms}",
            recorded_ranges=[{"start_ms": s, "end_ms": e} for s, e in spans],
        )
    return _submit(ctx, req)


def _file_links(result: dict[str, object]) -> dict[str, str]:
    """By format for a one-window clip (mp4, hls, vtt), and by file name for every window."""
    links: dict[str, str] = {}
    files = result.get("files")
    if isinstance(files, dict):
        links.update({kind: f["url"] for kind, f in files.items() if isinstance(f, dict)})
    windows = result.get("windows")
    for window in windows if isinstance(windows, list) else []:
        for f in window.get("files", {}).values() if isinstance(window, dict) else []:
            if isinstance(f, dict):
                links[f["name"]] = f["url"]
    return links


def _submit(ctx: ApiContext, req: ClipRequest) -> web.Response:
    """Queue the job: 202 with the clip and where to follow it, or 503 when full."""
    try:
        clip = ctx.jobs.submit(req)
    except QueueFull as exc:
        return error(503, str(exc))
    return web.json_response(
        _clip_json(clip), status=202, headers={"Location": f"/v1/clips/{clip.id}"}
    )


def _may_have_media(
    ctx: ApiContext, stream_id: str, session_id: str | None, start_ms: int, end_ms: int
) -> bool:
    """Recorded media overlaps the range, or the live session will still record into it."""
    if ctx.store.index.stream_segments(stream_id, start_ms, end_ms, session_id=session_id):
        return True
    session = (
        ctx.store.index.session(session_id)
        if session_id
        else ctx.store.index.live_session(stream_id)
    )
    return (
        session is not None
        and session.state == "live"
        and end_ms > (session.live_edge_ms or session.started_ms)
    )


async def list_clips(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = page_limit(request.query.get("limit"))
    after = _cursor(request.query.get("cursor"))
    clips = ctx.store.index.clips(after=after, limit=limit)
    next_cursor = f"{clips[-1].created_ms}.{clips[-1].id}" if len(clips) == limit else None
    return web.json_response({"clips": [_clip_json(c) for c in clips], "next_cursor": next_cursor})


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    created, _, clip_id = raw.partition(".")
    if not created.isdigit() or not clip_id:
        raise Invalid(
            [f"cursor {raw!r} is not one this API handed out (use next_cursor)"], status=400
        )
    return int(created), clip_id


async def get_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    clip = ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {request.match_info['id']!r}")
    return web.json_response(_clip_json(clip))


async def delete_clip(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    if not ctx.jobs.delete(request.match_info["id"]):
        return error(404, f"unknown clip {request.match_info['id']!r}")
    return web.Response(status=204)


CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".vtt": "text/vtt",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
}


# Web players (hls.js, <video>) on another origin fetch clip files with XHR or ranges.
PLAYER_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "*"}


async def clip_file(request: web.Request) -> web.StreamResponse:
    """A clip's own output: clip.mp4, index.m3u8, clip.vtt, or wN.* for a window."""
    ctx = ctx_of(request)
    clip = ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {request.match_info['id']!r}")
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    name = request.match_info["file"]
    path = ctx.store.clip_dir(clip.id) / name
    if not path.is_file():
        return error(404, f"clip {clip.id} has no file {name!r}; its files are in its links")
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        **PLAYER_HEADERS,
    }
    if path.suffix == ".mp4":
        filename = (clip.name or clip.id).replace('"', "")
        headers["Content-Disposition"] = f'inline; filename="{filename}.mp4"'
    return web.FileResponse(path, headers=headers)


async def clip_media(request: web.Request) -> web.StreamResponse:
    """A stored segment (or its init section) that an HLS clip's playlist names."""
    ctx = ctx_of(request)
    clip_id, name = request.match_info["id"], request.match_info["name"]
    is_init = name.startswith("init-")
    number = name.removeprefix("init-").split(".", 1)[0]
    segment = ctx.store.index.pinned_segment(clip_id, int(number)) if number.isdigit() else None
    if segment is None:
        return error(404, f"clip {clip_id!r} has no media {name!r}")
    relpath = segment.init_path if is_init else segment.path
    if relpath is None:
        return error(404, f"segment {segment.id} has no init section")
    path = ctx.store.path(relpath)
    suffix = ".mp4" if is_init else path.suffix
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
            **PLAYER_HEADERS,
        },
    )


EXPORT_FIELDS = (
    "start_ms",
    "end_ms",
    "formats",
    "accuracy",
    "name",
    "rendition",
    "reencode_edges",
    "verify",
)


async def export_session(request: web.Request) -> web.Response:
    """A whole session, or a slice of it, through the clip machinery (no length limit)."""
    ctx = ctx_of(request)
    session = ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {request.match_info['id']!r}")
    body = await json_body(request, empty_ok=True)
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object (or empty for the whole session)")
    unknown = sorted(set(body) - set(EXPORT_FIELDS))
    if unknown:
        return error(
            422, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(EXPORT_FIELDS)}"
        )
    first = ctx.store.index.first_segment_start(session.id)
    edge = session.live_edge_ms
    if first is None or edge is None:
        return error(422, f"session {session.id} has no recorded media to export")
    clip_body = {"session": session.id, "start_ms": first, "end_ms": edge, **body}
    req = clip_request(
        clip_body,
        streams=ctx.recorders.keys(),
        session_owner=lambda sid: session.stream_id if sid == session.id else None,
        limits=ClipLimits(now_ms=now_ms(ctx), max_duration_ms=max(edge - first, 1), max_wait_ms=0),
    )
    return _submit(ctx, req)
