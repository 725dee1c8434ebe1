"""The live origin's optional behaviours, checked through HTTP: playlists, bytes and timing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from livecut.hls.playlist import MasterPlaylist, MediaPlaylist, parse_playlist
from livecut.media import synth
from livecut.media.synth import format_pdt, render_media_playlist
from livecut.origin import LiveOrigin
from tests.engines import NO_INDEX
from tests.test_synth import decode

pytestmark = NO_INDEX

T0 = 1_767_225_600.0
FRAMES = 50  # per 2 s segment at 25 fps
OFFSET = Fraction(synth.STREAM_OFFSET_S)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance_segments(self, count: int, segment_s: float = 2.0) -> None:
        self.now += segment_s * count


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[LiveOrigin]:
    origin = LiveOrigin(**options)
    await origin.start()
    try:
        yield origin
    finally:
        await origin.stop()


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with http.get(url, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


async def media(http: aiohttp.ClientSession, url: str) -> tuple[str, MediaPlaylist]:
    status, body, _ = await get(http, url)
    assert status == 200, body
    text = body.decode()
    playlist = parse_playlist(text, url)
    assert isinstance(playlist, MediaPlaylist)
    return text, playlist


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def tag_values(text: str, name: str) -> list[str]:
    return [line.split(":", 1)[1] for line in text.splitlines() if line.startswith(f"#{name}:")]


def decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def keys_by_segment(text: str) -> list[str]:
    """The EXT-X-KEY attributes in force for each listed segment, in order."""
    current = ""
    keys: list[str] = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-KEY:"):
            current = line.split(":", 1)[1]
        elif line and not line.startswith("#"):
            keys.append(current)
    return keys


def first_frame(data: bytes) -> tuple[Fraction, int]:
    return decode(data).frames[0]


# --- defaults stay what they were ---


@pytest.mark.parametrize("container", ["ts", "fmp4"])
async def test_default_playlists_are_unchanged(
    container: synth.Container, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, container=container, end_after=8) as origin:
        url = f"{origin.base_url}/index.m3u8"
        for _ in range(3):
            body = (await get(http, url))[1]
            listed = origin.window_range()
            assert body.decode() == render_media_playlist(
                first=listed.start,
                end=listed.stop,
                segment_ms=2000,
                container=container,
                epoch_ms=origin.epoch_ms,
                ended=listed.stop >= 8,
            )
            clock.advance_segments(1)
        body = (await get(http, f"{origin.base_url}/master.m3u8"))[1]
        assert body.decode() == (
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n"
            '#EXT-X-STREAM-INF:BANDWIDTH=448000,RESOLUTION=320x180,CODECS="avc1.64001e,mp4a.40.2"'
            ",FRAME-RATE=25.000\nindex.m3u8\n"
        )


async def test_middlewares_wrap_every_request(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    seen: list[str] = []

    @web.middleware
    async def fail_first_segment(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(request.path)
        if request.path.endswith("seg0.ts") and seen.count(request.path) == 1:
            raise web.HTTPServiceUnavailable()
        return await handler(request)

    async with serving(clock=clock, prefill=2, middlewares=[fail_first_segment]) as origin:
        assert (await get(http, f"{origin.base_url}/seg0.ts"))[0] == 503
        assert (await get(http, f"{origin.base_url}/seg0.ts"))[0] == 200
        assert seen == origin.requests == ["/live/seg0.ts", "/live/seg0.ts"]


async def test_start_returns_the_master_url_for_variants() -> None:
    origin = LiveOrigin(prefill=0, variants=[(320, 180)])
    url = await origin.start()
    try:
        assert url == f"{origin.base_url}/master.m3u8"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/live", origin.base_url)
    finally:
        await origin.stop()


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="need variants"):
        LiveOrigin(subtitles=["en"])
    with pytest.raises(ValueError, match="alternate_audio"):
        LiveOrigin(variants=[(320, 180)], alternate_audio=["en", "en"])
    with pytest.raises(ValueError, match="subtitles entries"):
        LiveOrigin(variants=[(320, 180)], subtitles=["../x"])
    with pytest.raises(ValueError, match="not width/height"):
        LiveOrigin(variants=[(320, 180)], width=320)
    with pytest.raises(ValueError, match="key_method"):
        LiveOrigin(encrypt=True, key_method="NONE")


# --- renditions ---


async def test_variants_with_alternate_audio_and_subtitles(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    sizes = [(640, 360), (480, 270), (320, 180)]
    async with serving(
        clock=clock,
        prefill=3,
        variants=sizes,
        alternate_audio=["en", "fr"],
        subtitles=["en"],
    ) as origin:
        base = origin.base_url
        status, body, _ = await get(http, f"{base}/master.m3u8")
        master = parse_playlist(body.decode(), f"{base}/master.m3u8")
        assert isinstance(master, MasterPlaylist)
        assert [v.resolution for v in master.variants] == sizes
        assert [v.uri for v in master.variants] == [f"{base}/v{i}/index.m3u8" for i in range(3)]
        bandwidths = [v.bandwidth for v in master.variants]
        assert bandwidths == sorted(bandwidths, reverse=True)
        assert {v.codecs for v in master.variants} == {"avc1.64001e,mp4a.40.2"}
        text = body.decode()
        assert all(
            'AUDIO="aud",SUBTITLES="subs"' in line for line in tag_values(text, "EXT-X-STREAM-INF")
        )
        assert tag_values(text, "EXT-X-MEDIA") == [
            'TYPE=AUDIO,GROUP-ID="aud",NAME="en",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,'
            'CHANNELS="2",URI="audio-en/index.m3u8"',
            'TYPE=AUDIO,GROUP-ID="aud",NAME="fr",LANGUAGE="fr",DEFAULT=NO,AUTOSELECT=YES,'
            'CHANNELS="2",URI="audio-fr/index.m3u8"',
            'TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=YES,'
            'URI="subs-en/index.m3u8"',
        ]

        # One timeline: the same sequence numbers and PDTs in every rendition.
        renditions = ["v0", "v1", "v2", "audio-en", "audio-fr", "subs-en"]
        playlists = [(await media(http, f"{base}/{name}/index.m3u8"))[1] for name in renditions]
        timelines = {tuple((s.seq, s.pdt_ms) for s in p.segments) for p in playlists}
        assert timelines == {tuple((i, origin.segment_pdt_ms(i)) for i in range(3))}

        audio_peak = 0
        for name in ("audio-en", "audio-fr"):
            status, data, _ = await get(http, f"{base}/{name}/seg1.ts")
            decoded = decode(data)
            assert decoded.stream_types == ["audio"] and not decoded.frames
            assert OFFSET + 2 <= decoded.audio_pts[0] < OFFSET + 2 + Fraction(1024, 48_000)
            audio_peak = max(audio_peak, len(data) * 8 // 2)
        for number in range(len(sizes)):
            status, data, _ = await get(http, f"{base}/v{number}/seg1.ts")
            decoded = decode(data)
            assert decoded.stream_types == ["video"]
            assert decoded.frames[0] == (OFFSET + 2, FRAMES)  # the same pictures in every size
            assert len(data) * 8 // 2 + audio_peak <= bandwidths[number]  # BANDWIDTH is a peak

        status, data, headers = await get(http, f"{base}/subs-en/seg1.vtt")
        assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/vtt")
        assert data.decode() == (
            "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:1080000,LOCAL:00:00:00.000\n\n"
            "00:00:00.000 --> 00:00:01.000\nen second 2\n\n"
            "00:00:01.000 --> 00:00:02.000\nen second 3\n"
        )
        assert (await get(http, f"{base}/subs-en/seg3.vtt"))[0] == 404  # not published yet
        assert (await get(http, f"{base}/index.m3u8"))[0] == 404  # no single-stream layout

        # Cues follow the encoder's timestamps, and their text keeps counting wall seconds.
        origin.restart_encoder()
        clock.advance_segments(1)
        data = (await get(http, f"{base}/subs-en/seg3.vtt"))[1]
        assert data.decode().splitlines()[1] == "X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000"
        assert "\nen second 6\n" in data.decode()
        _, playlist = await media(http, f"{base}/subs-en/index.m3u8")
        assert [s.discontinuity for s in playlist.segments] == [False, False, False, True]


async def test_variants_without_alternate_audio_carry_audio(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(
        clock=clock, prefill=1, variants=[(480, 270), (320, 180)], container="fmp4"
    ) as origin:
        base = origin.base_url
        text = (await get(http, f"{base}/master.m3u8"))[1].decode()
        assert "#EXT-X-MEDIA" not in text and "AUDIO=" not in text
        assert uris(text) == ["v0/index.m3u8", "v1/index.m3u8"]
        init = (await get(http, f"{base}/v0/init.mp4"))[1]
        decoded = decode(init + (await get(http, f"{base}/v0/seg0.m4s"))[1])
        assert decoded.stream_types == ["video", "audio"]
        assert decoded.frames[0] == (OFFSET, 0)


# --- byte ranges ---


async def test_byterange_ts(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with serving(clock=clock, prefill=3, window=3, byterange=True) as origin:
        url = f"{origin.base_url}/index.m3u8"
        text, playlist = await media(http, url)
        assert tag_values(text, "EXT-X-VERSION") == ["4"]
        ranges = tag_values(text, "EXT-X-BYTERANGE")
        assert ranges[0].endswith("@0") and all("@" not in r for r in ranges[1:])
        assert uris(text) == ["stream.ts"] * 3
        spans = [s.byterange for s in playlist.segments]
        assert spans[-1] is not None
        size = spans[-1].offset + spans[-1].length
        for index, span in enumerate(spans):
            assert span is not None
            wanted = f"bytes={span.offset}-{span.offset + span.length - 1}"
            status, data, headers = await get(
                http, f"{origin.base_url}/stream.ts", {"Range": wanted}
            )
            assert status == 206 and len(data) == span.length
            assert headers["Content-Range"] == f"{wanted.replace('=', ' ')}/{size}"
            assert first_frame(data) == (OFFSET + 2 * index, index * FRAMES)

        # The whole resource, its tail, and beyond its end.
        status, whole, headers = await get(http, f"{origin.base_url}/stream.ts")
        assert (status, headers["Accept-Ranges"]) == (200, "bytes")
        assert [n for _, n in decode(whole).frames] == list(range(3 * FRAMES))
        status, tail, _ = await get(http, f"{origin.base_url}/stream.ts", {"Range": "bytes=-100"})
        assert (status, tail) == (206, whole[-100:])
        status, _, headers = await get(
            http, f"{origin.base_url}/stream.ts", {"Range": f"bytes={len(whole)}-"}
        )
        assert (status, headers["Content-Range"]) == (416, f"bytes */{len(whole)}")

        # The resource grows; once the window slides, its first offset is explicit again.
        clock.advance_segments(2)
        text, playlist = await media(http, url)
        assert [s.seq for s in playlist.segments] == [2, 3, 4]
        first = playlist.segments[0].byterange
        assert first is not None and tag_values(text, "EXT-X-BYTERANGE")[0].endswith(
            f"@{first.offset}"
        )
        assert first == spans[2]


async def test_byterange_fmp4_puts_the_init_section_first(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=2, container="fmp4", byterange=True) as origin:
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        segment = playlist.segments[1]
        assert segment.init is not None and segment.init.byterange is not None
        assert segment.init.uri == f"{origin.base_url}/stream.mp4"
        init_range = segment.init.byterange
        assert init_range.offset == 0
        assert f'#EXT-X-MAP:URI="stream.mp4",BYTERANGE="{init_range.length}@0"' in text
        assert playlist.segments[0].byterange is not None
        assert playlist.segments[0].byterange.offset == init_range.length
        whole = (await get(http, f"{origin.base_url}/stream.mp4"))[1]
        assert whole[4:8] == b"ftyp"
        init = whole[: init_range.length]
        assert segment.byterange is not None
        start, end = segment.byterange.offset, segment.byterange.offset + segment.byterange.length
        assert first_frame(init + whole[start:end]) == (OFFSET + 2, FRAMES)


# --- encryption ---


async def test_aes128_with_explicit_and_sequence_ivs(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=4, encrypt=True) as origin:
        assert origin.key is not None and len(origin.key) == 16
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        assert playlist.encryption == "AES-128"
        status, key, _ = await get(http, f"{origin.base_url}/key.bin")
        assert (status, key) == (200, origin.key)
        keys = keys_by_segment(text)
        for index, attributes in enumerate(keys):
            assert attributes.startswith('METHOD=AES-128,URI="key.bin"')
            explicit = re.search(r"IV=0x([0-9a-f]{32})", attributes)
            assert (explicit is not None) == (index % 2 == 0)
            iv = bytes.fromhex(explicit[1]) if explicit else index.to_bytes(16, "big")
            data = (await get(http, f"{origin.base_url}/seg{index}.ts"))[1]
            clear = decrypt(data, key, iv)
            assert len(data) % 16 == 0 and len(data) > len(clear)  # whole blocks, padded
            assert data[:376] != clear[:376]  # ciphertext, not the TS packets themselves
            assert first_frame(clear) == (OFFSET + 2 * index, index * FRAMES)


async def test_encrypted_byteranges_and_sample_aes_announcement(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=2, encrypt=True, byterange=True) as origin:
        assert origin.key is not None
        _, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        span = playlist.segments[1].byterange
        assert span is not None
        wanted = {"Range": f"bytes={span.offset}-{span.offset + span.length - 1}"}
        data = (await get(http, f"{origin.base_url}/stream.ts", wanted))[1]
        assert first_frame(decrypt(data, origin.key, (1).to_bytes(16, "big")))[1] == FRAMES
    async with serving(clock=clock, prefill=2, encrypt=True, key_method="SAMPLE-AES") as origin:
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        assert playlist.encryption == "SAMPLE-AES"
        assert keys_by_segment(text)[1] == 'METHOD=SAMPLE-AES,URI="key.bin"'


# --- low latency: blocking playlist reload ---


async def test_blocking_reload_returns_when_the_segment_is_published(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=3, low_latency=True) as origin:
        url = f"{origin.base_url}/index.m3u8"
        text, _ = await media(http, url)
        assert tag_values(text, "EXT-X-SERVER-CONTROL") == [
            "CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=6.000"
        ]
        # Already listed: no wait.
        assert [s.seq for s in (await media(http, f"{url}?_HLS_msn=2"))[1].segments][-1] == 2
        assert (await get(http, f"{url}?_HLS_msn=5"))[0] == 400  # three past the last
        assert (await get(http, f"{url}?_HLS_msn=x"))[0] == 400

        held = asyncio.create_task(media(http, f"{url}?_HLS_msn=4"))
        while origin.held_reloads == 0:
            await asyncio.sleep(0.001)
        clock.advance_segments(1)  # publishes 3, not yet 4
        origin.tick()
        await asyncio.sleep(0.02)
        assert not held.done() and origin.held_reloads == 1
        clock.advance_segments(1)
        started = time.monotonic()
        origin.tick()
        _, playlist = await asyncio.wait_for(held, 1)
        assert time.monotonic() - started < 0.5
        assert playlist.segments[-1].seq == 4
        assert origin.held_reloads == 0


async def test_blocking_reload_on_the_real_clock(http: aiohttp.ClientSession) -> None:
    async with serving(segment_ms=1000, prefill=2, low_latency=True) as origin:
        url = f"{origin.base_url}/index.m3u8"
        last = origin.published() - 1
        publish_at = (origin.epoch_ms + (last + 2) * 1000) / 1000
        _, playlist = await media(http, f"{url}?_HLS_msn={last + 1}")
        assert playlist.segments[-1].seq == last + 1
        assert publish_at <= time.time() < publish_at + 1.0  # woken, not left to time out (3 s)


async def test_blocking_reload_gives_up_after_three_target_durations(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, segment_ms=1000, prefill=2, low_latency=True) as origin:
        started = time.monotonic()
        _, playlist = await media(http, f"{origin.base_url}/index.m3u8?_HLS_msn=2")
        assert 2.9 < time.monotonic() - started < 4  # the clock never moved
        assert playlist.segments[-1].seq == 1


# --- scripted events ---


async def test_restart_encoder_marks_a_discontinuity(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=3, window=3) as origin:
        url = f"{origin.base_url}/index.m3u8"
        assert origin.restart_encoder() == 3
        clock.advance_segments(2)
        text, playlist = await media(http, url)
        assert [(s.seq, s.discontinuity, s.epoch) for s in playlist.segments] == [
            (2, False, 0),
            (3, True, 1),
            (4, False, 1),
        ]
        assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in text
        before = decode((await get(http, f"{origin.base_url}/seg2.ts"))[1])
        after = decode((await get(http, f"{origin.base_url}/seg3.ts"))[1])
        assert before.frames[-1] == (OFFSET + 6 - Fraction(1, 25), 3 * FRAMES - 1)
        # Timestamps restart at the offset; the barcode keeps counting wall time.
        assert after.frames[0] == (OFFSET, 3 * FRAMES)
        assert first_frame((await get(http, f"{origin.base_url}/seg4.ts"))[1]) == (
            OFFSET + 2,
            4 * FRAMES,
        )

        clock.advance_segments(1)  # the tagged segment is now first
        text, playlist = await media(http, url)
        assert playlist.discontinuity_sequence == 0 and playlist.segments[0].discontinuity
        clock.advance_segments(1)  # ...and now gone
        text, playlist = await media(http, url)
        assert tag_values(text, "EXT-X-DISCONTINUITY-SEQUENCE") == ["1"]
        assert [(s.seq, s.epoch) for s in playlist.segments] == [(4, 1), (5, 1), (6, 1)]


async def test_restart_encoder_fmp4_gets_a_new_init_section(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=2, container="fmp4", encrypt=True) as origin:
        assert origin.key is not None
        origin.restart_encoder(discontinuity=False)
        clock.advance_segments(1)
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        assert not any(s.discontinuity for s in playlist.segments)
        assert [s.init.uri.rsplit("/", 1)[1] for s in playlist.segments if s.init] == [
            "init.mp4",
            "init.mp4",
            "init2.mp4",
        ]
        # The new map sits outside any key, so the init section is served in the clear.
        assert '#EXT-X-KEY:METHOD=NONE\n#EXT-X-MAP:URI="init2.mp4"\n#EXT-X-KEY' in text
        init = (await get(http, f"{origin.base_url}/init2.mp4"))[1]
        data = (await get(http, f"{origin.base_url}/seg2.m4s"))[1]
        iv = re.findall(r"IV=0x([0-9a-f]{32})", keys_by_segment(text)[2])
        assert first_frame(init + decrypt(data, origin.key, bytes.fromhex(iv[0]))) == (
            OFFSET,
            2 * FRAMES,
        )
        assert (await get(http, f"{origin.base_url}/init5.mp4"))[0] == 404


async def test_reset_sequence_restarts_the_media_sequence(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=4, window=3) as origin:
        url = f"{origin.base_url}/index.m3u8"
        assert origin.reset_sequence() == 4
        _, playlist = await media(http, url)
        assert [s.seq for s in playlist.segments] == [1, 2, 3]
        clock.advance_segments(2)
        text, playlist = await media(http, url)
        # Only the new encoder's segments, numbered from 0 again, under fresh URIs.
        assert tag_values(text, "EXT-X-MEDIA-SEQUENCE") == ["0"]
        assert "#EXT-X-DISCONTINUITY" not in text
        assert uris(text) == ["seg4.ts", "seg5.ts"]
        assert [s.pdt_ms for s in playlist.segments] == [
            origin.segment_pdt_ms(4),
            origin.segment_pdt_ms(5),
        ]
        assert first_frame((await get(http, f"{origin.base_url}/seg4.ts"))[1]) == (
            OFFSET,
            4 * FRAMES,
        )
        assert (await get(http, f"{origin.base_url}/seg3.ts"))[0] == 404
        clock.advance_segments(3)
        _, playlist = await media(http, url)
        assert [s.seq for s in playlist.segments] == [2, 3, 4]
        assert origin.media_sequence(8) == 4


async def test_shift_pdt_moves_the_clock_not_the_media(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=2) as origin:
        assert origin.shift_pdt(-30_000) == 2
        clock.advance_segments(2)
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        plain = [origin.epoch_ms + 2000 * i for i in range(4)]
        assert [s.pdt_ms for s in playlist.segments] == [
            plain[0],
            plain[1],
            plain[2] - 30_000,
            plain[3] - 30_000,
        ]
        assert tag_values(text, "EXT-X-PROGRAM-DATE-TIME")[2] == format_pdt(plain[2] - 30_000)
        assert not any(s.discontinuity for s in playlist.segments)
        assert first_frame((await get(http, f"{origin.base_url}/seg2.ts"))[1]) == (
            OFFSET + 4,
            2 * FRAMES,
        )


async def test_gap_next_lists_gaps_that_404(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with serving(clock=clock, prefill=2, byterange=False) as origin:
        assert origin.gap_next(2) == range(2, 4)
        clock.advance_segments(3)
        text, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        assert [(s.seq, s.gap) for s in playlist.segments] == [
            (0, False),
            (1, False),
            (2, True),
            (3, True),
            (4, False),
        ]
        assert "#EXTINF:2.000,\n#EXT-X-GAP\nseg2.ts" in text
        assert (await get(http, f"{origin.base_url}/seg2.ts"))[0] == 404
        assert (await get(http, f"{origin.base_url}/seg3.ts"))[0] == 404
        assert first_frame((await get(http, f"{origin.base_url}/seg4.ts"))[1]) == (
            OFFSET + 8,
            4 * FRAMES,
        )


async def test_gap_bytes_of_a_byterange_resource_404(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with serving(clock=clock, prefill=1, byterange=True) as origin:
        origin.gap_next(1)
        clock.advance_segments(2)
        _, playlist = await media(http, f"{origin.base_url}/index.m3u8")
        assert [s.gap for s in playlist.segments] == [False, True, False]
        for segment, status in zip(playlist.segments, (206, 404, 206), strict=True):
            span = segment.byterange
            assert span is not None
            wanted = {"Range": f"bytes={span.offset}-{span.offset + span.length - 1}"}
            assert (await get(http, f"{origin.base_url}/stream.ts", wanted))[0] == status
