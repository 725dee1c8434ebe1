"""A real player (headless Chromium + hls.js) plays our fixtures and our clip playlists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from aiohttp import web

from livecut.clips.hls import vod_playlist
from livecut.media.synth import Container, write_hls_fixture
from livecut.store.records import SegmentRow
from tests.browser import (
    BrowserResult,
    add_player_routes,
    playback_advances,
    require_browser,
    serve,
)
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

T0 = 1_767_225_600_000  # write_hls_fixture's default first PDT
SEGMENT_MS = 2000
SEGMENTS = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Fixtures:
    folders: dict[Container, Path]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    require_browser()  # before spending time on encoding
    root = tmp_path_factory.mktemp("browser")
    folders: dict[Container, Path] = {}
    for container in ("ts", "fmp4"):
        folders[container] = root / container
        write_hls_fixture(folders[container], segments=SEGMENTS, container=container)
    return Fixtures(folders=folders)


def fixture_rows(container: Container, indexes: range | list[int]) -> list[SegmentRow]:
    """Index rows, as the store would hold them, for write_hls_fixture's files."""
    extension = "ts" if container == "ts" else "m4s"
    return [
        SegmentRow(
            id=index + 1,
            rendition_id=1,
            seq=index,
            epoch=0,
            start_ms=T0 + index * SEGMENT_MS,
            end_ms=T0 + (index + 1) * SEGMENT_MS,
            path=f"seg{index}.{extension}",
            size=0,
            init_path="init.mp4" if container == "fmp4" else None,
            ref_pts_s=10.0 + index * SEGMENT_MS / 1000,
        )
        for index in indexes
    ]


def clip_playlist(container: Container, rows: list[SegmentRow]) -> str:
    def media_url(path: str) -> str:
        return f"/media/{container}/{path}"

    def segment_url(row: SegmentRow) -> str:
        return media_url(row.path)

    holes = [(a.end_ms, b.start_ms) for a, b in pairwise(rows) if a.end_ms < b.start_ms]
    return vod_playlist(rows, segment_url=segment_url, init_url=media_url, holes=holes)


@pytest.fixture
async def origin(fixtures: Fixtures) -> AsyncIterator[str]:
    playlists = {
        "ts": clip_playlist("ts", fixture_rows("ts", range(SEGMENTS))),
        "fmp4": clip_playlist("fmp4", fixture_rows("fmp4", range(SEGMENTS))),
        # Segment 1 never recorded: the clip jumps from 2 s to 4 s of wall time.
        "ts-hole": clip_playlist("ts", fixture_rows("ts", [0, 2])),
        "fmp4-hole": clip_playlist("fmp4", fixture_rows("fmp4", [0, 2])),
    }

    async def clip(request: web.Request) -> web.Response:
        text = playlists.get(request.match_info["name"])
        if text is None:
            raise web.HTTPNotFound()
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    add_player_routes(app)
    for container, folder in fixtures.folders.items():
        app.router.add_static(f"/media/{container}/", folder)
    app.router.add_get("/clips/{name}.m3u8", clip)
    async with serve(app) as url:
        yield url


def assert_played(result: BrowserResult) -> None:
    assert result.advanced, result.describe()
    assert result.advanced_s >= 3.0, result.describe()
    assert not result.fatal_errors, result.describe()
    assert result.media_error is None, result.describe()
    assert (result.video_width, result.video_height) == (320, 180), result.describe()


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_fixture_vod_plays(origin: str, container: Container) -> None:
    result = await playback_advances(origin, f"{origin}/media/{container}/index.m3u8")
    assert_played(result)


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_clip_playlist_plays(origin: str, container: Container) -> None:
    result = await playback_advances(origin, f"{origin}/clips/{container}.m3u8")
    assert_played(result)


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_clip_playlist_plays_across_a_hole(origin: str, container: Container) -> None:
    result = await playback_advances(origin, f"{origin}/clips/{container}-hole.m3u8")
    # 3 s of media from two 2 s segments: the player crossed the discontinuity.
    assert_played(result)
