"""Playback of the recording: the live (DVR) playlist, VOD ranges, the master playlist, their
media, signed URLs, the clip event stream and the console's routes, against a real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest

from livecut.api.console import INSTALL_HLSJS, find_hlsjs
from livecut.api.feed import ClipFeed
from livecut.api.signed import SECRET_FILE, Signer, load_secret, stream_scope
from livecut.config import ConfigError, default_config, parse_config
from livecut.daemon import Daemon
from livecut.hls.playlist import MasterPlaylist, MediaPlaylist, parse_playlist
from livecut.origin import LiveOrigin
from tests.engines import open_index
from tests.harness import daemon_config, index_segment, running, until

KEY = "playback-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def live(data_dir: Path) -> AsyncIterator[tuple[Daemon, LiveOrigin]]:
    origin = LiveOrigin(segment_ms=1000, window=12, prefill=8)
    url = await origin.start()
    base = daemon_config(data_dir, url)
    config = replace(base, server=replace(base.server, api_keys=(KEY,)))
    try:
        async with running(config) as daemon:

            async def edge_past_seven() -> bool:
                return await edge(daemon) >= origin.segment_pdt_ms(7)

            await until(daemon, "cam", edge_past_seven, timeout_s=30)
            yield daemon, origin
    finally:
        await origin.stop()


async def edge(daemon: Daemon) -> int:
    live = await daemon.store.index.live_session("cam")
    return 0 if live is None else live.live_edge_ms or 0


async def signed(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, Any]:
    async with http.post(f"{daemon.base_url}/v1/streams/cam/playback", headers=AUTH) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def media_playlist(http: aiohttp.ClientSession, url: str) -> tuple[MediaPlaylist, str]:
    async with http.get(url) as response:
        text = await response.text()
        assert response.status == 200, text
        assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    parsed = parse_playlist(text, url)
    assert isinstance(parsed, MediaPlaylist), text
    return parsed, text


async def test_live_playlist_is_numbered_alike_on_every_reload_and_across_sessions(
    live: tuple[Daemon, LiveOrigin],
) -> None:
    daemon, origin = live
    async with aiohttp.ClientSession() as http:
        urls = await signed(http, daemon)
        first, text = await media_playlist(http, urls["live_url"])
        assert first.playlist_type == "EVENT" and not first.ended
        assert first.server_control is not None and first.server_control.can_block_reload
        assert all(s.pdt_tagged for s in first.segments)
        assert text.count("#EXT-X-PROGRAM-DATE-TIME") == len(first.segments)
        assert first.media_sequence == 1
        # A new encoder whose numbering starts again: a new session, the same series.
        reset_at = origin.reset_sequence()

        async def edge_past_reset() -> bool:
            return await edge(daemon) >= origin.segment_pdt_ms(reset_at + 1)

        await until(daemon, "cam", edge_past_reset, timeout_s=30)
        assert len(await daemon.store.index.sessions("cam")) == 2
        second, _ = await media_playlist(http, urls["live_url"])
        numbers = {s.uri: s.seq for s in second.segments}
        for segment in first.segments:
            assert numbers[segment.uri] == segment.seq  # the same segment, the same number
        pdts = [s.pdt_ms for s in second.segments]
        assert pdts == sorted(pdts)
        crossing = [s for s in second.segments if s.discontinuity]
        assert crossing, "the new session starts after EXT-X-DISCONTINUITY"
        # A sliding window counts the discontinuities it no longer lists.
        # The origin keeps publishing, so the edge may move between reloads: the window reaches
        # at least the edge listed before it, and a full reload after it numbers it alike.
        start_ms = first.segments[0].pdt_ms

        async def longer_than_window() -> bool:
            return await edge(daemon) >= start_ms + 13_000

        await until(daemon, "cam", longer_than_window, timeout_s=30)
        window, _ = await media_playlist(http, urls["live_url"] + "&dvr_s=10")
        assert window.playlist_type is None
        assert window.segments[-1].seq >= second.segments[-1].seq
        assert window.segments[0].pdt_ms > second.segments[0].pdt_ms  # it slid
        assert window.discontinuity_sequence == window.segments[0].epoch
        third, _ = await media_playlist(http, urls["live_url"])
        renumbered = {s.uri: s.seq for s in third.segments}
        assert [s.seq for s in window.segments] == [renumbered[s.uri] for s in window.segments]


async def test_blocking_reload_answers_once_the_segment_is_listed(
    live: tuple[Daemon, LiveOrigin],
) -> None:
    daemon, _ = live
    async with aiohttp.ClientSession() as http:
        urls = await signed(http, daemon)
        playlist, _ = await media_playlist(http, urls["live_url"])
        last = playlist.segments[-1].seq
        began = time.monotonic()
        held, _ = await media_playlist(http, f"{urls['live_url']}&_HLS_msn={last + 1}")
        assert held.segments[-1].seq >= last + 1
        assert time.monotonic() - began < 3 * 1 + 2  # well within three target durations
        async with http.get(f"{urls['live_url']}&_HLS_msn={last + 5}") as response:
            assert response.status == 400
            assert "_HLS_msn" in (await response.json())["errors"][0]


async def test_vod_master_and_media(live: tuple[Daemon, LiveOrigin]) -> None:
    daemon, origin = live
    async with aiohttp.ClientSession() as http:
        urls = await signed(http, daemon)
        start, end = origin.segment_pdt_ms(2), origin.segment_pdt_ms(6)
        vod, _ = await media_playlist(http, f"{urls['vod_url']}&from_ms={start}&to_ms={end}")
        assert vod.ended and vod.playlist_type == "VOD"
        assert [s.pdt_ms for s in vod.segments] == [origin.segment_pdt_ms(i) for i in range(2, 6)]
        async with http.get(vod.segments[0].uri) as response:  # signed: no key needed
            assert response.status == 200
            assert response.headers["Content-Type"] == "video/mp2t"
            assert "immutable" in response.headers["Cache-Control"]
            assert len(await response.read()) > 1000
        async with http.get(f"{urls['master_url']}") as response:
            master = parse_playlist(await response.text(), urls["master_url"])
        assert isinstance(master, MasterPlaylist) and len(master.variants) == 1
        variant, _ = await media_playlist(http, master.variants[0].uri)
        assert variant.segments
        for query, fragment in [
            ("", "from_ms, to_ms required"),
            (f"&from_ms={end}&to_ms={start}", "must be before"),
            (f"&from_ms={start}&to_ms={start + 90_000_000}", "at most 86400000"),
        ]:
            async with http.get(urls["vod_url"] + query) as response:
                assert response.status == 400
                assert fragment in (await response.json())["errors"][0]
        # A segment removed since the playlist was read: a clean 404 that says why.
        gone = (await daemon.store.index.stream_segments("cam", start, start + 1))[0]
        await daemon.store.index.delete_segments([gone.id])
        async with http.get(vod.segments[0].uri) as response:
            assert response.status == 404
            assert "retention" in (await response.json())["errors"][0]


async def test_signed_urls_open_only_what_they_sign(live: tuple[Daemon, LiveOrigin]) -> None:
    daemon, _ = live
    base = daemon.base_url
    async with aiohttp.ClientSession() as http:
        urls = await signed(http, daemon)
        assert KEY not in json.dumps(urls)
        query = urls["query"]
        async with http.get(f"{base}/v1/streams/cam/live.m3u8") as response:
            assert response.status == 401  # no key, no signature
        tampered = query[:-1] + ("0" if query[-1] != "0" else "1")
        expired = daemon.signer.sign(stream_scope("cam"), int(time.time()) - 1).query()
        other = daemon.signer.sign(stream_scope("other"), int(time.time()) + 60).query()
        for bad in (tampered, expired, other):
            async with http.get(f"{base}/v1/streams/cam/live.m3u8?{bad}") as response:
                assert response.status == 401, bad
        # The signature opens playback, not the rest of the API.
        async with http.get(f"{base}/v1/streams/cam/timeline?{query}") as response:
            assert response.status == 401
        async with http.post(f"{base}/v1/streams/cam/playback?{query}") as response:
            assert response.status == 401
        for body, status in (({"expires_in_s": 59}, 422), ({"expiry": 1}, 422), ([], 400)):
            async with http.post(
                f"{base}/v1/streams/cam/playback", headers=AUTH, json=body
            ) as response:
                assert response.status == status, await response.text()
        # A clip of the stream: its files open with the stream's signature, and its HLS
        # playlist hands the signature on to the media it lists.
        clip = await ready_clip(http, daemon, formats=["mp4", "hls"])
        mp4 = clip["links"]["mp4"]
        async with http.get(f"{mp4}?{query}") as response:
            assert response.status == 200
        async with http.get(mp4) as response:
            assert response.status == 401
        hls = f"{clip['links']['hls']}?{query}"
        async with http.get(hls) as response:
            text = await response.text()
        media = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert media and all(query in line for line in media), text
        async with http.get(urljoin(hls, media[0])) as response:
            assert response.status == 200


async def ready_clip(
    http: aiohttp.ClientSession, daemon: Daemon, *, formats: list[str]
) -> dict[str, Any]:
    now = await edge(daemon)
    body = {"stream": "cam", "start_ms": now - 3000, "end_ms": now - 1000, "formats": formats}
    async with http.post(f"{daemon.base_url}/v1/clips", json=body, headers=AUTH) as response:
        assert response.status == 202, await response.text()
        clip_id = (await response.json())["id"]
    finished = await daemon.jobs.wait_finished(clip_id, 30)
    assert finished is not None and finished.state == "ready", finished
    async with http.get(f"{daemon.base_url}/v1/clips/{clip_id}", headers=AUTH) as response:
        result: dict[str, Any] = await response.json()
        return result


async def test_event_stream_tells_each_clip_state(live: tuple[Daemon, LiveOrigin]) -> None:
    daemon, _ = live
    base = daemon.base_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/events/token", headers=AUTH) as response:
            token = await response.json()
        assert KEY not in json.dumps(token)
        async with http.get(token["url"]) as response:
            assert response.status == 406  # without Accept: text/event-stream
        async with http.get(f"{base}/v1/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.status == 401
        events: list[tuple[str, dict[str, Any]]] = []
        async with http.get(
            token["url"] + "&stream=cam", headers={"Accept": "text/event-stream"}
        ) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert (await next_event(stream))[0] == "resync"
            clip = await ready_clip(http, daemon, formats=["mp4"])
            async with http.delete(f"{base}/v1/clips/{clip['id']}", headers=AUTH) as response:
                assert response.status == 204
            async with asyncio.timeout(10):
                while not events or events[-1][0] != "clip.deleted":
                    events.append(await next_event(stream))
        names = [name for name, _ in events]
        assert names[-2:] == ["clip.ready", "clip.deleted"], names
        assert "clip.processing" in names, names
        assert events[-2][1]["id"] == clip["id"] and events[-2][1]["state"] == "ready"
        assert events[-1][1] == {"id": clip["id"]}


async def next_event(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    event, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and event:
            return event, json.loads(data)
    raise AssertionError("the event stream ended")


def test_a_subscriber_that_falls_behind_is_told_to_resync() -> None:
    feed = ClipFeed(queue_size=3)
    with feed.subscribe() as subscription:
        assert len(feed) == 1
        for n in range(3):
            feed.publish("clip.queued", f"clip_{n}")
        assert subscription.take() == (
            [("clip.queued", "clip_0"), ("clip.queued", "clip_1"), ("clip.queued", "clip_2")],
            False,
        )
        for n in range(10):
            feed.publish("clip.ready", f"clip_{n}")
        assert subscription.take() == ([], True)  # dropped, not grown: read the list afresh
        feed.publish("clip.ready", "clip_x")
        assert subscription.take() == ([("clip.ready", "clip_x")], False)
    assert len(feed) == 0


def test_signer_and_its_secret(tmp_path: Path) -> None:
    secret = load_secret(None, tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(None, tmp_path) == secret  # kept across restarts
    assert load_secret("c" * 32, tmp_path) == b"c" * 32
    path.write_text("short")  # a file cut short is replaced, not trusted
    assert load_secret(None, tmp_path) != b"short"
    signer = Signer(secret)
    good = signer.sign("/v1/streams/a/", 2_000_000_000)
    check = {"exp": str(good.exp), "sig": good.sig}
    assert signer.verify("/v1/streams/a/", check, now_s=1_999_999_999)
    assert not signer.verify("/v1/streams/a/", check, now_s=2_000_000_001)
    assert not signer.verify("/v1/streams/b/", check, now_s=0)
    assert not signer.verify("/v1/streams/a/", {**check, "exp": "2000000001"}, now_s=0)
    assert not signer.verify("/v1/streams/a/", {"exp": "1", "sig": "zz"}, now_s=0)
    assert not Signer(b"x" * 32).verify("/v1/streams/a/", check, now_s=0)


def test_config_keys_for_playback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = parse_config(
        {"server": {"playback_secret": "s" * 32, "hlsjs_path": str(tmp_path / "hls.min.js")}}
    ).server
    assert server.playback_secret == "s" * 32 and server.hlsjs_path == tmp_path / "hls.min.js"
    assert "s" * 32 not in repr(server)
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"playback_secret": "short"}})
    assert caught.value.errors[0].startswith("server.playback_secret: use a random string")
    assert find_hlsjs(server) == tmp_path / "hls.min.js"
    plain = default_config(tmp_path).server
    monkeypatch.setenv("LIVECUT_HLSJS", str(tmp_path / "env.js"))
    assert find_hlsjs(plain) == tmp_path / "env.js"
    monkeypatch.delenv("LIVECUT_HLSJS")
    npm = tmp_path / ".cache" / "npm" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
    npm.parent.mkdir(parents=True)
    npm.write_text("//")
    assert find_hlsjs(plain, cwd=tmp_path) == npm


async def test_console_page_and_its_files(live: tuple[Daemon, LiveOrigin]) -> None:
    daemon, _ = live
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.base_url}/") as response:  # open: the key is typed in it
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert "console/console.js" in await response.text()
        for name in ("console.js", "player.js", "console.css", "icon.svg"):
            async with http.get(f"{daemon.base_url}/console/{name}") as response:
                assert response.status == 200, name
        async with http.get(f"{daemon.base_url}/console/nothing.js") as response:
            assert response.status == 404
        async with http.get(f"{daemon.base_url}/console/hls.min.js") as response:
            if os.environ.get("LIVECUT_HLSJS") and Path(os.environ["LIVECUT_HLSJS"]).is_file():
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/javascript")


async def test_console_names_the_npm_step_without_hlsjs(data_dir: Path) -> None:
    config = default_config(data_dir)
    config = replace(
        config,
        server=replace(
            config.server,
            listen_host="127.0.0.1",
            listen_port=0,
            hlsjs_path=data_dir / "missing" / "hls.min.js",
        ),
    )
    async with (
        running(config) as daemon,
        aiohttp.ClientSession() as http,
        http.get(f"{daemon.base_url}/console/hls.min.js") as response,
    ):
        assert response.status == 404
        assert INSTALL_HLSJS in (await response.json())["errors"][0]


async def test_the_index_numbers_each_series_and_counts_its_discontinuities(
    tmp_path: Path,
) -> None:
    from livecut.store.records import GapRow

    index = await open_index(tmp_path / "index.sqlite3")
    try:
        await index.ensure_stream("cam", "http://127.0.0.1/a.m3u8", 0)

        async def add(rendition_id: int, seq: int, start_ms: int, *, epoch: int = 0) -> None:
            path = f"{rendition_id}-{seq}.ts"
            await index_segment(index, rendition_id, seq, start_ms, path=path, epoch=epoch)

        first = await index.open_session("cam", clock="origin", started_ms=0)
        main = (await index.add_rendition(first.id, name="main", uri="u")).id
        audio = await index.add_rendition(
            first.id, name="audio-en", uri="a", kind="audio", main=False
        )
        for seq in range(3):
            await add(main, seq, seq * 1000)
            await add(audio.id, seq, seq * 1000)
        await add(main, 3, 3000, epoch=1)  # the origin's discontinuity
        await index.add_gap(
            GapRow(
                rendition_id=main,
                start_ms=4000,
                end_ms=4050,
                first_seq=4,
                last_seq=4,
                reason="download_failed",
            )
        )
        await add(main, 5, 4050)  # a recorded gap across the join, however short
        second = await index.open_session("cam", clock="origin", started_ms=10_000)
        later = (await index.add_rendition(second.id, name="main", uri="u")).id
        await add(later, 0, 10_000)  # a new session: the series runs on, a discontinuity again
        await add(later, 1, 11_000)

        window = await index.playback_window("cam", "main", 0)
        assert [s.playback_seq for s in window] == [1, 2, 3, 4, 5, 6, 7]
        assert [s.playback_disc for s in window] == [0, 0, 0, 1, 2, 3, 3]
        audio_window = await index.playback_window("cam", "audio-en", 0)
        assert [s.playback_seq for s in audio_window] == [1, 2, 3]
        later_window = await index.playback_window("cam", "main", 10_500)
        assert [s.playback_seq for s in later_window] == [6, 7]
        # A segment removed from the middle (a clip kept the older one): the window is
        # what runs on by one up to the live edge.
        await index.delete_segments([window[3].id])
        after_removal = await index.playback_window("cam", "main", 0)
        assert [s.playback_seq for s in after_removal] == [5, 6, 7]
    finally:
        await index.close()


async def test_an_open_event_stream_does_not_hold_up_a_stop(data_dir: Path) -> None:
    config = daemon_config(data_dir, "http://127.0.0.1:9/nothing.m3u8")
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{daemon.base_url}/v1/events/token") as response:
                url = (await response.json())["url"]
            async with http.get(url, headers={"Accept": "text/event-stream"}) as stream:
                assert (await next_event(stream))[0] == "resync"
                began = time.monotonic()
                await asyncio.wait_for(daemon.stop(), 10)
                assert time.monotonic() - began < 5
    finally:
        await daemon.stop()


async def test_master_playlist_of_renditions_alternate_audio_and_subtitles(
    data_dir: Path,
) -> None:
    origin = LiveOrigin(
        segment_ms=1000,
        window=8,
        prefill=6,
        variants=[(320, 180), (288, 162)],
        alternate_audio=["en"],
        subtitles=["en"],
    )
    url = await origin.start()
    config = daemon_config(data_dir, url)
    config = replace(config, streams=(replace(config.streams[0], renditions="all"),))
    try:
        async with running(config) as daemon, aiohttp.ClientSession() as http:

            async def recorded() -> bool:
                sessions = await daemon.store.index.sessions("cam")
                if not sessions:
                    return False
                counts = await daemon.store.index.rendition_segment_counts(sessions[0].id)
                return len(counts) == 4 and min(counts.values()) >= 3

            await until(daemon, "cam", recorded, timeout_s=30)
            urls = await signed(http, daemon)
            async with http.get(urls["master_url"]) as response:
                text = await response.text()
            master = parse_playlist(text, urls["master_url"])
            assert isinstance(master, MasterPlaylist), text
            assert len(master.variants) == 2
            assert all(
                v.audio_group == "audio" and v.subtitles_group == "subs" for v in master.variants
            )
            assert {(m.type, m.language) for m in master.media} == {
                ("AUDIO", "en"),
                ("SUBTITLES", "en"),
            }
            uris = [v.uri for v in master.variants] + [m.uri for m in master.media if m.uri]
            for uri in uris:  # each rendition's own live playlist, its media signed too
                playlist, _ = await media_playlist(http, uri)
                async with http.get(playlist.segments[-1].uri) as response:
                    assert response.status == 200, uri
                    if playlist.segments[-1].uri.split("?")[0].endswith(".vtt"):
                        assert response.headers["Content-Type"] == "text/vtt"
            start = (await daemon.store.index.stream_segments("cam", 0, 2**62))[0].start_ms
            async with http.get(
                f"{urls['master_url']}&from_ms={start}&to_ms={start + 3000}"
            ) as response:
                vod_master = parse_playlist(await response.text(), urls["master_url"])
            assert isinstance(vod_master, MasterPlaylist)
            vod, _ = await media_playlist(http, vod_master.variants[0].uri)
            assert vod.ended and len(vod.segments) == 3
    finally:
        await origin.stop()
