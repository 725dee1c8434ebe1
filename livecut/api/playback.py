"""Playback of the recording: a stream's live (DVR) playlist, any range as VOD, a master
playlist over its renditions, the stored media they list, and signed URLs for them."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web

from livecut.api.clips import CONTENT_TYPES, PLAYER_HEADERS, check_range
from livecut.api.context import ApiContext, ctx_of, error, now_ms, options_body
from livecut.api.signed import (
    DEFAULT_EXPIRES_S,
    EXPIRES_S,
    SIGNED_QUERY,
    stream_scope,
)
from livecut.api.stored import stored_media
from livecut.api.streams import known_stream
from livecut.api.validate import Invalid, check_query, optional_query_int, query_int, short
from livecut.api.views import absolute
from livecut.clips.hls import LiveWindow, gap_marks, live_playlist, vod_playlist
from livecut.store.records import MEDIA_JOIN_MS, RenditionRow, SegmentRow

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# Playlists change as the recording grows; stored segments never change.
LIVE_CACHE = "private, no-cache"
VOD_CACHE = "private, max-age=10"
MEDIA_CACHE = "private, max-age=86400, immutable"
DVR_S = (10, 7 * 86_400)
VOD_MAX_MS = 24 * 3600 * 1000
# Retention removes a segment once it ends this long before its cutoff at the latest (it
# runs every 30 s): a live playlist leaves out what it would remove within a minute,
# so a player is not handed segments about to go.
RETENTION_MARGIN_MS = 60_000
# RFC 8216bis §6.2.5.2: a blocking reload may ask for at most two segments past the last,
# and is held for at most three target durations.
MSN_AHEAD = 2
HOLD_TARGET_DURATIONS = 3
PLAYBACK_FIELDS = ("expires_in_s",)


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackUrls:
    """Signed playback URLs of one stream: no API key is needed to use them until expiry."""

    stream: str
    expires_ms: int
    query: str  # exp=…&sig=…: valid on every URL under the stream's path, and its clips' files
    live_url: str  # the DVR playlist of the main rendition
    master_url: str  # every recorded rendition, alternate audio and subtitles
    vod_url: str  # add &from_ms=…&to_ms=… for a range as VOD


async def create_playback(request: web.Request) -> web.Response:
    """POST /v1/streams/{id}/playback: signed URLs for a page or a player without the key."""
    ctx = ctx_of(request)
    check_query(request.query, ())
    stream_id = request.match_info["id"]
    known_stream(ctx, stream_id)
    body = await options_body(request, PLAYBACK_FIELDS)
    low, high = EXPIRES_S
    expires_in = body.get("expires_in_s", DEFAULT_EXPIRES_S)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in != int(expires_in)
        or not low <= expires_in <= high
    ):
        raise Invalid(
            [
                f"expires_in_s must be a whole number of seconds from {low} to {high}, "
                f"not {short(expires_in)}"
            ]
        )
    exp = int(ctx.clock()) + int(expires_in)
    query = ctx.signer.sign(stream_scope(stream_id), exp).query()
    base = absolute(ctx.base_url(), f"/v1/streams/{quote(stream_id)}")
    urls = PlaybackUrls(
        stream=stream_id,
        expires_ms=exp * 1000,
        query=query,
        live_url=f"{base}/live.m3u8?{query}",
        master_url=f"{base}/master.m3u8?{query}",
        vod_url=f"{base}/vod.m3u8?{query}",
    )
    return web.json_response(dataclasses.asdict(urls))


# live ---------------------------------------------------------------------------------------
async def live_m3u8(request: web.Request) -> web.Response:
    """The DVR playlist: every stored segment of one rendition across sessions (or the last
    dvr_s seconds), PDT on each, growing at the live edge; _HLS_msn blocks until it is."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(
        request.query, ("dvr_s", "rendition", "_HLS_msn", "_HLS_part", "_HLS_skip", *SIGNED_QUERY)
    )
    known_stream(ctx, stream_id)
    dvr_s = _dvr_s(request)
    name = await _rendition_name(ctx, stream_id, request.query.get("rendition"))
    msn = request.query.get("_HLS_msn")
    if msn is None and "_HLS_part" in request.query:
        raise Invalid(["_HLS_part needs _HLS_msn (RFC 8216bis §6.2.5.2)"], status=400)
    segments = await _window(ctx, stream_id, name, dvr_s)
    if msn is not None:
        wanted = query_int(msn, "_HLS_msn", signed=False)
        segments = await _hold(ctx, stream_id, name, dvr_s, segments, wanted)
    if not segments:
        return error(
            404,
            f"nothing of stream {short(stream_id)} (rendition {short(name)}) is stored for "
            "live playback yet",
        )
    live = await ctx.store.index.live_session(stream_id)
    window = LiveWindow(
        # Nothing has left the head yet, and nothing will unless retention removes it.
        event=dvr_s is None and segments[0].playback_seq == 1,
        ended=live is None,
        can_block_reload=True,
    )
    text = live_playlist(
        segments,
        window=window,
        segment_url=_segment_url(request),
        init_url=_init_url(request, segments),
        gaps=gap_marks(segments, await _recorded_gaps(ctx, stream_id, name, segments)),
    )
    return _playlist(text, LIVE_CACHE)


async def _window(
    ctx: ApiContext, stream_id: str, name: str, dvr_s: int | None
) -> list[SegmentRow]:
    retention_ms = round(ctx.recorders[stream_id].stream.retention_s * 1000)
    since_ms = now_ms(ctx) - retention_ms + RETENTION_MARGIN_MS
    segments = await ctx.store.index.playback_window(stream_id, name, since_ms)
    if dvr_s is not None and segments:
        edge_ms = segments[-1].end_ms
        segments = [s for s in segments if s.end_ms > edge_ms - dvr_s * 1000]
    return segments


async def _hold(
    ctx: ApiContext,
    stream_id: str,
    name: str,
    dvr_s: int | None,
    segments: list[SegmentRow],
    wanted: int,
) -> list[SegmentRow]:
    """Wait until the playlist lists segment `wanted` (a blocking reload), for at most three
    target durations; then answer with what there is, and the player asks again."""
    last = segments[-1].playback_seq if segments else None
    if last is not None and wanted > last + MSN_AHEAD:
        raise Invalid(
            [f"_HLS_msn {wanted} is more than {MSN_AHEAD} past the last segment ({last})"],
            status=400,
        )
    target_s = max((s.end_ms - s.start_ms for s in segments), default=2000) / 1000
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD_TARGET_DURATIONS * math.ceil(target_s)
    while (
        (last is None or last < wanted)
        and await ctx.store.index.live_session(stream_id) is not None
        and not ctx.stopping.is_set()
    ):
        left = deadline - loop.time()
        if left <= 0:
            break
        await ctx.store.edges.wait(stream_id, left)
        segments = await _window(ctx, stream_id, name, dvr_s)
        last = segments[-1].playback_seq if segments else None
    return segments


# VOD ----------------------------------------------------------------------------------------
async def vod_m3u8(request: web.Request) -> web.Response:
    """Any recorded range as VOD, across sessions and discontinuities, its gaps marked."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("from_ms", "to_ms", "rendition", *SIGNED_QUERY))
    known_stream(ctx, stream_id)
    from_ms, to_ms = _range(request)
    # By name across every session; without one, each session's main rendition.
    name = request.query.get("rendition")
    segments = await ctx.store.index.stream_segments(stream_id, from_ms, to_ms, rendition=name)
    segments = _one_series(segments)
    if not segments:
        which = "" if name is None else f" (rendition {short(name)})"
        return error(
            404,
            f"nothing of stream {short(stream_id)}{which} is recorded between {from_ms} and "
            f"{to_ms}",
        )
    recorded = await _recorded_gaps(ctx, stream_id, name, segments)
    text = vod_playlist(
        segments,
        segment_url=_segment_url(request),
        init_url=_init_url(request, segments),
        holes=[(low, high) for low, high, _ in recorded if high > low],
        gaps=gap_marks(segments, recorded),
    )
    return _playlist(text, VOD_CACHE)


def _one_series(segments: list[SegmentRow]) -> list[SegmentRow]:
    """Segments in playback order with no overlap: two sessions cover the same wall time
    only around an origin clock that jumped back, and then the first one recorded plays."""
    kept: list[SegmentRow] = []
    for segment in sorted(segments, key=lambda s: (s.start_ms, s.id)):
        if kept and segment.start_ms < kept[-1].end_ms - MEDIA_JOIN_MS:
            continue
        kept.append(segment)
    # fMP4 then TS cannot share a playlist: keep the run after the last such switch.
    for n in range(len(kept) - 1, 0, -1):
        if kept[n].init_path is None and kept[n - 1].init_path is not None:
            return kept[n:]
    return kept


def _range(request: web.Request) -> tuple[int, int]:
    missing = [k for k in ("from_ms", "to_ms") if k not in request.query]
    if missing:
        raise Invalid(
            [f"{', '.join(missing)} required: the range to play, in Unix milliseconds"], 400
        )
    from_ms = query_int(request.query["from_ms"], "from_ms")
    to_ms = query_int(request.query["to_ms"], "to_ms")
    if from_ms >= to_ms:
        raise Invalid([f"from_ms ({from_ms}) must be before to_ms ({to_ms})"], status=400)
    if to_ms - from_ms > VOD_MAX_MS:
        raise Invalid(
            [f"to_ms - from_ms may be at most {VOD_MAX_MS} ms (24 h), not {to_ms - from_ms}"],
            status=400,
        )
    return from_ms, to_ms


# master -------------------------------------------------------------------------------------
async def master_m3u8(request: web.Request) -> web.Response:
    """Every video rendition of the newest session as a variant, with its alternate audio
    and subtitles: live, or as VOD with from_ms and to_ms."""
    ctx = ctx_of(request)
    stream_id = request.match_info["id"]
    check_query(request.query, ("from_ms", "to_ms", "dvr_s", *SIGNED_QUERY))
    known_stream(ctx, stream_id)
    vod = "from_ms" in request.query or "to_ms" in request.query
    if vod and "dvr_s" in request.query:
        raise Invalid(["dvr_s is for live playback; give it without from_ms and to_ms"], 400)
    extra: dict[str, str] = {}
    if vod:
        from_ms, to_ms = _range(request)
        extra = {"from_ms": str(from_ms), "to_ms": str(to_ms)}
    elif "dvr_s" in request.query:
        extra = {"dvr_s": str(_dvr_s(request))}
    renditions = await _newest_renditions(ctx, stream_id)
    if not renditions:
        return error(404, f"nothing of stream {short(stream_id)} is recorded yet")
    playlist = "vod.m3u8" if vod else "live.m3u8"

    def uri(rendition: RenditionRow) -> str:
        query = {**extra, "rendition": rendition.name, **_signature(request)}
        return f"{playlist}?{urlencode(query)}"

    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio = [r for r in renditions if r.kind == "audio"]
    subtitles = [r for r in renditions if r.kind == "subtitles"]
    for n, rendition in enumerate(audio):
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",{_named(rendition)}'
            f'DEFAULT={"YES" if n == 0 else "NO"},AUTOSELECT=YES,URI="{uri(rendition)}"'
        )
    for rendition in subtitles:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",{_named(rendition)}'
            f'DEFAULT=NO,AUTOSELECT=YES,URI="{uri(rendition)}"'
        )
    videos = sorted((r for r in renditions if r.kind == "video"), key=lambda r: (not r.main, r.id))
    for rendition in videos:
        attributes = [f"BANDWIDTH={rendition.bandwidth or await _bandwidth(ctx, rendition)}"]
        if rendition.resolution:
            attributes.append(f"RESOLUTION={rendition.resolution}")
        if rendition.codecs:
            attributes.append(f'CODECS="{_attr(rendition.codecs)}"')
        if audio:
            attributes.append('AUDIO="audio"')
        if subtitles:
            attributes.append('SUBTITLES="subs"')
        lines.append(f"#EXT-X-STREAM-INF:{','.join(attributes)}")
        lines.append(uri(rendition))
    return _playlist("\n".join(lines) + "\n", VOD_CACHE if vod else LIVE_CACHE)


async def _newest_renditions(ctx: ApiContext, stream_id: str) -> list[RenditionRow]:
    sessions = await ctx.store.index.sessions(stream_id, limit=1)
    return [] if not sessions else await ctx.store.index.renditions(sessions[0].id)


async def _bandwidth(ctx: ApiContext, rendition: RenditionRow) -> int:
    """Peak bits per second of the rendition's last segments, when the origin gave none."""
    last = await ctx.store.index.last_segment(rendition.id)
    if last is None or last.end_ms <= last.start_ms:
        return 1
    return max(1, last.size * 8 * 1000 // (last.end_ms - last.start_ms))


def _named(rendition: RenditionRow) -> str:
    name = f'NAME="{_attr(rendition.language or rendition.name)}",'
    return name + (f'LANGUAGE="{_attr(rendition.language)}",' if rendition.language else "")


def _attr(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in '"')


# media --------------------------------------------------------------------------------------
async def stream_media(request: web.Request) -> web.StreamResponse:
    """A stored segment (or the init section before it) that a playback playlist lists."""
    ctx = ctx_of(request)
    check_query(request.query, SIGNED_QUERY)
    stream_id, name = request.match_info["id"], request.match_info["name"]
    known_stream(ctx, stream_id)
    is_init = name.startswith("init-")
    number = name.removeprefix("init-").split(".", 1)[0]
    segment = (
        await ctx.store.index.stream_segment(stream_id, int(number))
        if number.isascii() and number.isdigit() and len(number) <= 18
        else None
    )
    relpath = None if segment is None else segment.init_path if is_init else segment.path
    # Retention or the disk floor may have removed it since the playlist was read.
    missing = (
        f"stream {short(stream_id)} has no stored media {short(name)} (it may have been "
        "removed by retention or the disk floor; reload the playlist)"
    )
    if relpath is None or (ctx.store.remote is None and not ctx.store.path(relpath).is_file()):
        return error(404, missing)
    check_range(request)
    suffix = ".mp4" if is_init else Path(relpath).suffix
    return await stored_media(
        request,
        ctx.store,
        relpath,
        headers={
            "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
            "Cache-Control": MEDIA_CACHE,
            **PLAYER_HEADERS,
        },
        missing=missing,
    )


# shared -------------------------------------------------------------------------------------
def _playlist(text: str, cache: str) -> web.Response:
    return web.Response(
        body=text.encode(),
        headers={"Content-Type": PLAYLIST_TYPE, "Cache-Control": cache, **PLAYER_HEADERS},
    )


def _signature(request: web.Request) -> dict[str, str]:
    """The request's own signature, carried onto every URI its playlist lists."""
    return {k: request.query[k] for k in SIGNED_QUERY if k in request.query}


def _suffix(request: web.Request) -> str:
    signature = _signature(request)
    return f"?{urlencode(signature)}" if signature else ""


def _segment_url(request: web.Request) -> Callable[[SegmentRow], str]:
    suffix = _suffix(request)
    return lambda segment: f"media/{segment.id}{Path(segment.path).suffix}{suffix}"


def _init_url(request: web.Request, segments: Sequence[SegmentRow]) -> Callable[[str], str]:
    suffix = _suffix(request)
    first_user: dict[str, int] = {}
    for segment in segments:
        if segment.init_path is not None:
            first_user.setdefault(segment.init_path, segment.id)
    return lambda init_path: f"media/init-{first_user[init_path]}.mp4{suffix}"


async def _recorded_gaps(
    ctx: ApiContext, stream_id: str, name: str | None, segments: Sequence[SegmentRow]
) -> list[tuple[int, int, str]]:
    """Gaps recorded over the segments' span: of rendition `name`, or of the main ones."""
    start_ms, end_ms = segments[0].start_ms, segments[-1].end_ms
    if name is None:
        _, gaps = await ctx.store.index.timeline(stream_id, start_ms, end_ms, limit=10_000)
    else:
        gaps = await ctx.store.index.rendition_gaps_between(stream_id, name, start_ms, end_ms)
    return [(g.start_ms, g.end_ms, g.reason) for g in gaps]


async def _rendition_name(ctx: ApiContext, stream_id: str, wanted: str | None) -> str:
    """The named rendition, or the main rendition of the stream's newest session."""
    renditions = await _newest_renditions(ctx, stream_id)
    if wanted is None:
        main = next((r for r in renditions if r.main), None)
        if main is None:
            raise Invalid([f"nothing of stream {short(stream_id)} is recorded yet"], status=404)
        return main.name
    names = sorted({r.name for r in renditions})
    if wanted not in names:
        raise Invalid(
            [
                f"rendition {short(wanted)} is not one of stream {short(stream_id)}'s newest "
                f"session; recorded: {', '.join(names) or 'none yet'}"
            ],
            status=404,
        )
    return wanted


def _dvr_s(request: web.Request) -> int | None:
    return optional_query_int(request.query, "dvr_s", DVR_S, " seconds")


PLAYBACK_ROUTES = [
    ("POST", "/v1/streams/{id}/playback", create_playback),
    ("GET", "/v1/streams/{id}/live.m3u8", live_m3u8),
    ("GET", "/v1/streams/{id}/vod.m3u8", vod_m3u8),
    ("GET", "/v1/streams/{id}/master.m3u8", master_m3u8),
    ("GET", r"/v1/streams/{id}/media/{name:(?:init-)?\d+\.(?:ts|m4s|mp4|vtt)}", stream_media),
]
