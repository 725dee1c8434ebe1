"""Shots jobs of sessions and clips (manifest, previews) and highlights jobs."""

from __future__ import annotations

from aiohttp import web

from livecut.analysis.jobs import (
    MAX_HIGHLIGHTS,
    AnalysisBusy,
    AnalysisJobs,
    HighlightsRequest,
)
from livecut.analysis.results import as_json, highlights_body, shots_job_body, shots_manifest
from livecut.api.clips import RETRY_AFTER_S, extras, validate_clip
from livecut.api.context import ApiContext, Handler, ctx_of, error, options_body
from livecut.api.stored import stored_media
from livecut.api.validate import (
    EARLIEST_MS,
    LATEST_MS,
    MIN_CLIP_MS,
    Invalid,
    callback_fields,
    check_query,
    query_int,
    short,
)
from livecut.api.views import absolute
from livecut.store.analysis import AnalysisJobRow
from livecut.store.media import preview_relpath

CALLBACK_FIELDS = ("callback_url", "callback_id")
SHOTS_FIELDS = ("from_ms", "to_ms", *CALLBACK_FIELDS)
HIGHLIGHT_FIELDS = (
    "stream",
    "session",
    "from_ms",
    "to_ms",
    "max_clips",
    "min_duration_ms",
    "max_duration_ms",
    "instruction",
    "windows",
    "name",
    "accuracy",
    "formats",
    "rendition",
    "reencode_edges",
    "faststart",
    "render",
    "passthrough",
    "callback_url",
    "callback_id",
)
INSTRUCTION_MAX = 500
MAX_HIGHLIGHT_MS = 600_000  # the longest highlight window


def _analysis(ctx: ApiContext) -> AnalysisJobs:
    if ctx.analysis is None:
        raise Invalid(["analysis jobs are not running in this daemon"], status=503)
    return ctx.analysis


class _Busy(Invalid):
    def __init__(self, message: str) -> None:
        super().__init__([message], status=429)
        self.headers["Retry-After"] = str(RETRY_AFTER_S)


# shots ----------------------------------------------------------------------------------
def _shots_json(ctx: ApiContext, job: AnalysisJobRow) -> dict[str, object]:
    analysis = _analysis(ctx)
    return as_json(shots_job_body(job, base_url=ctx.base_url(), progress=analysis.progress(job.id)))


def _whole_ms(body: dict[str, object], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid([f"{key} must be an integer Unix time in milliseconds, not {short(value)}"])
    if not EARLIEST_MS <= value <= LATEST_MS:
        raise Invalid(
            [f"{key} must be a Unix time in milliseconds from {EARLIEST_MS} to {LATEST_MS}"]
        )
    return value


async def post_session_shots(request: web.Request) -> web.Response:
    """Detect the shots of a session (or of from_ms..to_ms inside it)."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    analysis = _analysis(ctx)
    session = await ctx.store.index.session(request.match_info["id"])
    if session is None:
        return error(404, f"unknown session {short(request.match_info['id'])}")
    body = await options_body(request, SHOTS_FIELDS)
    first = await ctx.store.index.first_segment_start(session.id)
    edge = session.live_edge_ms
    if first is None or edge is None:
        return error(422, f"session {session.id} has no recorded media to analyse")
    from_ms = _whole_ms(body, "from_ms", first)
    to_ms = _whole_ms(body, "to_ms", edge)
    if not (first <= from_ms < to_ms <= edge) or to_ms - from_ms < MIN_CLIP_MS:
        return error(
            422,
            f"from_ms and to_ms must lie within the session's recording ({first} to {edge}),"
            f" from_ms before to_ms, at least {MIN_CLIP_MS} ms apart",
        )
    callback = await _callback(ctx, body)
    try:
        job = await analysis.submit_shots(
            stream_id=session.stream_id,
            session_id=session.id,
            clip_id=None,
            from_ms=from_ms,
            to_ms=to_ms,
            zero_ms=session.started_ms,
            callback=callback,
        )
    except AnalysisBusy as exc:
        raise _Busy(str(exc)) from exc
    return _accepted(ctx, job, f"/v1/sessions/{session.id}/shots")


async def post_clip_shots(request: web.Request) -> web.Response:
    """Detect the shots of a clip that is ready (start_time counts from its first frame)."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    analysis = _analysis(ctx)
    clip = await ctx.store.index.clip(request.match_info["id"])
    if clip is None:
        return error(404, f"unknown clip {short(request.match_info['id'])}")
    callback = await _callback(ctx, await options_body(request, CALLBACK_FIELDS))
    if clip.state != "ready":
        return error(409, f"clip {clip.id} is {clip.state}, not ready", state=clip.state)
    from_ms, to_ms = clip.delivered_span()
    try:
        job = await analysis.submit_shots(
            stream_id=clip.stream_id,
            session_id=clip.session_id,
            clip_id=clip.id,
            from_ms=from_ms,
            to_ms=to_ms,
            zero_ms=from_ms,
            callback=callback,
        )
    except AnalysisBusy as exc:
        raise _Busy(str(exc)) from exc
    return _accepted(ctx, job, f"/v1/clips/{clip.id}/shots")


async def _callback(ctx: ApiContext, body: dict[str, object]) -> dict[str, str]:
    """A shots job's own callback_url and callback_id: shots.ready goes there, signed,
    as a clip's events go to its callback_url."""
    errors: list[str] = []
    fields = callback_fields(body, await extras(ctx), errors)
    if errors:
        raise Invalid(errors)
    return fields


def _accepted(ctx: ApiContext, job: AnalysisJobRow, path: str) -> web.Response:
    return web.json_response(
        _shots_json(ctx, job), status=202, headers={"Location": absolute(ctx.base_url(), path)}
    )


async def _subject_job(ctx: ApiContext, request: web.Request, kind: str) -> AnalysisJobRow:
    subject_id = request.match_info["id"]
    exists = (
        await ctx.store.index.session(subject_id)
        if kind == "session"
        else await ctx.store.index.clip(subject_id)
    )
    if exists is None:
        raise Invalid([f"unknown {kind} {short(subject_id)}"], status=404)
    job = await _analysis(ctx).index.job_of(f"{kind}:{subject_id}")
    if job is None:
        raise Invalid(
            [f"{kind} {subject_id} has no shots; POST to this path to detect them"], status=404
        )
    return job


def shots_handlers(kind: str) -> tuple[Handler, Handler]:
    async def get_shots(request: web.Request) -> web.Response:
        ctx = ctx_of(request)
        check_query(request.query, ())
        return web.json_response(_shots_json(ctx, await _subject_job(ctx, request, kind)))

    async def delete_shots(request: web.Request) -> web.Response:
        ctx = ctx_of(request)
        check_query(request.query, ())
        job = await _subject_job(ctx, request, kind)
        await _analysis(ctx).delete(job)
        return web.Response(status=204)

    return get_shots, delete_shots


get_session_shots, delete_session_shots = shots_handlers("session")
get_clip_shots, delete_clip_shots = shots_handlers("clip")


async def _shots_job(ctx: ApiContext, job_id: str) -> AnalysisJobRow:
    job = await _analysis(ctx).index.job(job_id)
    if job is None or job.kind != "shots":
        raise Invalid([f"unknown shots job {short(job_id)}"], status=404)
    if job.state != "completed":
        raise Invalid([f"shots job {job.id} is {job.state}, not completed"], status=409)
    return job


async def shots_manifest_file(request: web.Request) -> web.Response:
    """Every shot: start_time, start_ms, end_ms, how it began, and its preview's URL."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    job = await _shots_job(ctx, request.match_info["id"])
    return web.json_response(as_json(shots_manifest(job, base_url=ctx.base_url())))


async def shot_preview(request: web.Request) -> web.StreamResponse:
    """A shot's preview: an animated WebP, one frame per second of shot (at most 100)."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    job = await _shots_job(ctx, request.match_info["id"])
    raw = request.match_info["n"]
    number = query_int(raw, "n", signed=False)
    count = len((job.result or {}).get("shots") or [])
    missing = f"shots job {job.id} has previews 0.webp to {count - 1}.webp"
    if number >= count:
        return error(404, missing)
    # Stored like a clip's files: this disk's file, or (S3) the object redirected to or
    # streamed through, whichever node the job ran on.
    return await stored_media(
        request,
        ctx.store,
        preview_relpath(job.id, number),
        headers={"Content-Type": "image/webp"},
        missing=missing,
    )


# highlights -------------------------------------------------------------------------------
def _highlights_json(ctx: ApiContext, job: AnalysisJobRow) -> dict[str, object]:
    analysis = _analysis(ctx)
    return as_json(
        highlights_body(job, base_url=ctx.base_url(), progress=analysis.progress(job.id))
    )


def _bounded(body: dict[str, object], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid([f"{key} must be an integer from {low} to {high}, not {short(value)}"])
    return value


async def post_highlights(request: web.Request) -> web.Response:
    """Score a range's moments and cut the best as windows of one clip job (or cut the
    windows given, scoring nothing)."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    analysis = _analysis(ctx)
    body = await options_body(request, HIGHLIGHT_FIELDS)
    max_clips = _bounded(body, "max_clips", 3, 1, MAX_HIGHLIGHTS)
    min_ms = _bounded(body, "min_duration_ms", 5_000, MIN_CLIP_MS, MAX_HIGHLIGHT_MS)
    max_ms = _bounded(body, "max_duration_ms", max(min_ms, 30_000), min_ms, MAX_HIGHLIGHT_MS)
    instruction = body.get("instruction")
    if instruction is not None and (
        not isinstance(instruction, str) or len(instruction) > INSTRUCTION_MAX
    ):
        raise Invalid([f"instruction must be a string of at most {INSTRUCTION_MAX} characters"])
    session_id = body.get("session")
    clip_body = {
        k: v
        for k, v in body.items()
        if k not in ("from_ms", "to_ms", "max_clips", "min_duration_ms", "max_duration_ms")
        and k != "instruction"
    }
    session = await ctx.store.index.session(session_id) if isinstance(session_id, str) else None
    if "windows" not in body:
        if "from_ms" in body or session is None:
            clip_body["start_ms"] = body.get("from_ms")
            clip_body["end_ms"] = body.get("to_ms")
        else:
            clip_body["start_ms"] = await ctx.store.index.first_segment_start(session.id)
            clip_body["end_ms"] = session.live_edge_ms
        if clip_body["start_ms"] is None:
            raise Invalid(["from_ms is required (with to_ms) unless a session is given"])
    elif "from_ms" in body or "to_ms" in body:
        raise Invalid(["give either from_ms and to_ms (scored), or windows (cut as given)"])
    req = await validate_clip(ctx, clip_body)
    try:
        job = await analysis.submit_highlights(
            HighlightsRequest(
                stream_id=req.stream_id,
                session_id=req.session_id,
                from_ms=req.start_ms,
                to_ms=req.end_ms,
                max_clips=max_clips,
                min_duration_ms=min_ms,
                max_duration_ms=max_ms,
                instruction=instruction if isinstance(instruction, str) else None,
                windows=req.windows if "windows" in body else (),
                clip_options={
                    "name": req.name,
                    "accuracy": req.accuracy,
                    "formats": list(req.formats),
                    "rendition": req.rendition,
                    "reencode_edges": req.reencode_edges,
                    "faststart": req.faststart,
                    **({"render": req.render} if req.render else {}),
                    **({"meta": req.meta} if req.meta else {}),
                },
            )
        )
    except AnalysisBusy as exc:
        raise _Busy(str(exc)) from exc
    return web.json_response(
        _highlights_json(ctx, job),
        status=202,
        headers={"Location": absolute(ctx.base_url(), f"/v1/highlights/{job.id}")},
    )


async def get_highlights(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    check_query(request.query, ())
    job = await _analysis(ctx).index.job(request.match_info["id"])
    if job is None or job.kind != "highlights":
        return error(404, f"unknown highlights job {short(request.match_info['id'])}")
    return web.json_response(_highlights_json(ctx, job))


SHOTS_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/sessions/{id}/shots", post_session_shots),
    ("GET", "/v1/sessions/{id}/shots", get_session_shots),
    ("DELETE", "/v1/sessions/{id}/shots", delete_session_shots),
    ("POST", "/v1/clips/{id}/shots", post_clip_shots),
    ("GET", "/v1/clips/{id}/shots", get_clip_shots),
    ("DELETE", "/v1/clips/{id}/shots", delete_clip_shots),
    ("GET", "/v1/shots/{id}/manifest.json", shots_manifest_file),
    ("GET", r"/v1/shots/{id}/{n:\d+}.webp", shot_preview),
    ("POST", "/v1/highlights", post_highlights),
    ("GET", "/v1/highlights/{id}", get_highlights),
]
