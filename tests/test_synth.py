"""Synthetic media and the live test origin, checked by decoding what they produce."""

from __future__ import annotations

import io
import math
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import aiohttp
import av
import pytest

from livecut.media import synth
from livecut.media.synth import (
    SyntheticStream,
    SynthSegment,
    format_pdt,
    frame_wall_ms,
    read_frame_number,
    write_hls_fixture,
)
from livecut.origin import LiveOrigin
from tests.engines import NO_INDEX

pytestmark = NO_INDEX

SEGMENTS = 3
FRAMES = 50  # per 2 s segment at 25 fps
OFFSET = Fraction(synth.STREAM_OFFSET_S)
AUDIO_FRAME = Fraction(synth.AUDIO_FRAME_SAMPLES, synth.AUDIO_RATE)
T0 = 1_767_225_600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Decoded:
    video_pts: list[Fraction]  # seconds, in packet (decode) order
    video_keyframes: list[bool]
    audio_pts: list[Fraction]  # seconds
    frames: list[tuple[Fraction, int]]  # (pts seconds, barcode) in presentation order
    audio_samples: list[tuple[Fraction, array[float]]]  # (pts seconds, left channel)
    stream_types: list[str]


def seconds_of(frame: av.VideoFrame | av.AudioFrame) -> Fraction:
    assert frame.pts is not None and frame.time_base is not None
    return frame.pts * frame.time_base


def decode(data: bytes) -> Decoded:
    video_pts: list[Fraction] = []
    keyframes: list[bool] = []
    audio_pts: list[Fraction] = []
    frames: list[tuple[Fraction, int]] = []
    samples: list[tuple[Fraction, array[float]]] = []
    with av.open(io.BytesIO(data), "r") as container:
        types: list[str] = [stream.type for stream in container.streams]
        # The demuxer ends each stream with an empty packet; decoding it flushes the decoder.
        for packet in container.demux():
            if packet.pts is not None:
                seconds = packet.pts * packet.time_base
                if packet.stream.type == "video":
                    video_pts.append(seconds)
                    keyframes.append(packet.is_keyframe)
                else:
                    audio_pts.append(seconds)
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames.append((seconds_of(frame), read_frame_number(frame)))
                elif isinstance(frame, av.AudioFrame):
                    left = array("f", bytes(frame.planes[0])[: frame.samples * 4])
                    samples.append((seconds_of(frame), left))
    frames.sort()
    return Decoded(
        video_pts=video_pts,
        video_keyframes=keyframes,
        audio_pts=audio_pts,
        frames=frames,
        audio_samples=samples,
        stream_types=types,
    )


def generate(container: synth.Container) -> tuple[bytes, list[SynthSegment]]:
    stream = SyntheticStream(container=container)
    try:
        return stream.init_section or b"", [stream.next_segment() for _ in range(SEGMENTS)]
    finally:
        stream.close()


@pytest.fixture(scope="module")
def ts_segments() -> list[SynthSegment]:
    return generate("ts")[1]


@pytest.fixture(scope="module")
def fmp4() -> tuple[bytes, list[SynthSegment]]:
    return generate("fmp4")


def segment_start(index: int) -> Fraction:
    return OFFSET + 2 * index


def test_ts_segment_frames_are_numbered_in_presentation_order(
    ts_segments: list[SynthSegment],
) -> None:
    for segment in ts_segments:
        k = segment.index
        assert (segment.duration_ms, segment.first_frame) == (2000, k * FRAMES)
        decoded = decode(segment.data)
        assert decoded.video_keyframes[0]
        expected = list(range(k * FRAMES, (k + 1) * FRAMES))
        assert [number for _, number in decoded.frames] == expected
        assert [pts for pts, _ in decoded.frames] == [OFFSET + Fraction(n, 25) for n in expected]


def test_ts_audio_covers_segment_within_one_frame(ts_segments: list[SynthSegment]) -> None:
    for segment in ts_segments:
        start, end = segment_start(segment.index), segment_start(segment.index + 1)
        audio = decode(segment.data).audio_pts
        assert start <= audio[0] < start + AUDIO_FRAME
        assert end - AUDIO_FRAME <= audio[-1] + AUDIO_FRAME <= end + AUDIO_FRAME
        assert all(b - a == AUDIO_FRAME for a, b in pairwise(audio))


def test_ts_pts_continue_exactly_across_segments(ts_segments: list[SynthSegment]) -> None:
    decoded = [decode(segment.data) for segment in ts_segments]
    for before, after in pairwise(decoded):
        assert max(before.video_pts) + Fraction(1, 25) == min(after.video_pts)
        assert before.audio_pts[-1] + AUDIO_FRAME == after.audio_pts[0]


def test_fmp4_segments_keep_the_ts_timeline(
    ts_segments: list[SynthSegment], fmp4: tuple[bytes, list[SynthSegment]]
) -> None:
    init, segments = fmp4
    assert init[4:8] == b"ftyp"
    for ts_segment, mp4_segment in zip(ts_segments, segments, strict=True):
        assert mp4_segment.data[4:8] == b"moof"
        ts, mp4 = decode(ts_segment.data), decode(init + mp4_segment.data)
        assert mp4.video_keyframes[0]
        assert sorted(mp4.video_pts) == sorted(ts.video_pts)
        assert mp4.audio_pts == ts.audio_pts
        assert mp4.frames == ts.frames
    whole = decode(init + b"".join(segment.data for segment in segments))
    assert [n for _, n in whole.frames] == list(range(SEGMENTS * FRAMES))


def rms(samples: array[float]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def test_beep_in_first_100ms_of_every_second(ts_segments: list[SynthSegment]) -> None:
    # Decode the segments back to back so the AAC decoder has its overlap from frame to frame.
    audio = decode(b"".join(segment.data for segment in ts_segments)).audio_samples

    def level_at(stream_s: Fraction) -> float:
        at = OFFSET + stream_s
        return next(rms(s) for pts, s in audio if pts <= at < pts + AUDIO_FRAME)

    for second in range(2 * SEGMENTS):
        assert level_at(Fraction(second) + Fraction(5, 100)) > 0.2
        assert level_at(Fraction(second) + Fraction(1, 2)) < 0.01


def test_read_frame_number_reads_all_24_bits() -> None:
    picture = synth._Picture(320, 180, noisy=False)
    for number in (0, 1, 0x800000, 0x5A5A5A, 0xFFFFFF):
        assert read_frame_number(picture.frame(number)) == number


def test_video_only_stream_has_no_audio_track() -> None:
    stream = SyntheticStream(audio=False)
    try:
        decoded = decode(stream.next_segment().data)
    finally:
        stream.close()
    assert decoded.stream_types == ["video"]
    assert [n for _, n in decoded.frames] == list(range(FRAMES))
    assert stream.codecs == "avc1.64001e"


def test_audio_only_stream_keeps_the_segment_timeline() -> None:
    stream = SyntheticStream(video=False, container="fmp4")
    try:
        init = stream.init_section or b""
        segments = [stream.next_segment() for _ in range(2)]
    finally:
        stream.close()
    assert stream.codecs == "mp4a.40.2" and stream.bandwidth == 160_000
    assert [s.first_frame for s in segments] == [0, FRAMES]
    decoded = decode(init + segments[1].data)
    assert decoded.stream_types == ["audio"] and not decoded.frames
    assert segment_start(1) <= decoded.audio_pts[0] < segment_start(1) + AUDIO_FRAME
    with pytest.raises(ValueError, match="at least one"):
        SyntheticStream(video=False, audio=False)


def test_first_frame_numbers_pictures_but_not_timestamps() -> None:
    stream = SyntheticStream(first_frame=3 * FRAMES).restarted(5 * FRAMES)
    try:
        segment = stream.next_segment()
    finally:
        stream.close()
    assert (segment.index, segment.first_frame) == (0, 5 * FRAMES)
    decoded = decode(segment.data)
    assert decoded.frames[0] == (OFFSET, 5 * FRAMES)
    assert [n for _, n in decoded.frames] == list(range(5 * FRAMES, 6 * FRAMES))


def test_rejects_segment_length_that_is_not_whole_gops() -> None:
    with pytest.raises(ValueError, match="segment_ms"):
        SyntheticStream(segment_ms=1500)


def test_frame_wall_ms_is_exact() -> None:
    assert frame_wall_ms(1_000, 0) == 1_000
    assert frame_wall_ms(1_000, 51) == 3_040
    assert format_pdt(1_767_225_602_040) == "2026-01-01T00:00:02.040Z"


def test_write_hls_fixture_writes_a_vod_playlist(tmp_path: Path) -> None:
    playlist = write_hls_fixture(tmp_path / "fmp4", segments=2, container="fmp4")
    text = playlist.read_text()
    assert sorted(p.name for p in playlist.parent.iterdir()) == [
        "index.m3u8",
        "init.mp4",
        "seg0.m4s",
        "seg1.m4s",
    ]
    assert '#EXT-X-MAP:URI="init.mp4"' in text
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:02.000Z\n#EXTINF:2.000,\nseg1.m4s" in text
    assert text.endswith("#EXT-X-ENDLIST\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance_segments(self, count: int) -> None:
        self.now += 2.0 * count


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def origin(clock: FakeClock) -> AsyncIterator[tuple[LiveOrigin, str]]:
    live = LiveOrigin(clock=clock)
    url = await live.start()
    try:
        yield live, url
    finally:
        await live.stop()


def tags(text: str, name: str) -> list[str]:
    return [line.split(":", 1)[1] for line in text.splitlines() if line.startswith(f"#{name}:")]


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.get(url) as response:
        return response.status, response.content_type, await response.read()


async def test_origin_playlist_slides_its_window(
    origin: tuple[LiveOrigin, str], clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    live, url = origin
    assert url.startswith("http://127.0.0.1:") and url.endswith("/live/index.m3u8")
    assert live.epoch_ms == round(T0 * 1000) - 6 * 2000
    async with http.get(url) as response:
        assert response.content_type == "application/vnd.apple.mpegurl"
        assert response.headers["Cache-Control"] == "no-cache"
        text = await response.text()
    assert tags(text, "EXT-X-MEDIA-SEQUENCE") == ["0"]
    assert tags(text, "EXT-X-TARGETDURATION") == ["2"]
    assert uris(text) == [f"seg{i}.ts" for i in range(6)]
    assert tags(text, "EXT-X-PROGRAM-DATE-TIME") == [
        format_pdt(live.segment_pdt_ms(i)) for i in range(6)
    ]
    assert "#EXT-X-ENDLIST" not in text

    clock.advance_segments(3)
    clock.now -= 0.001  # a millisecond short of publishing segment 8
    text = (await fetch(http, url))[2].decode()
    assert tags(text, "EXT-X-MEDIA-SEQUENCE") == ["2"]
    assert uris(text) == [f"seg{i}.ts" for i in range(2, 8)]
    clock.now += 0.001
    text = (await fetch(http, url))[2].decode()
    assert tags(text, "EXT-X-MEDIA-SEQUENCE") == ["3"]
    assert tags(text, "EXT-X-PROGRAM-DATE-TIME")[0] == format_pdt(live.epoch_ms + 6000)
    assert live.published() == 9


async def test_origin_serves_segments_in_the_window_only(
    origin: tuple[LiveOrigin, str], clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    live, url = origin
    base = url.rsplit("/", 1)[0]
    clock.advance_segments(3)  # window is now 3..8
    status, content_type, body = await fetch(http, f"{base}/seg8.ts")
    assert (status, content_type) == (200, "video/mp2t")
    frames = decode(body).frames
    assert frames[0][1] == 8 * FRAMES
    assert frame_wall_ms(live.epoch_ms, frames[0][1]) == live.segment_pdt_ms(8)
    assert (await fetch(http, f"{base}/seg3.ts"))[0] == 200
    assert (await fetch(http, f"{base}/seg2.ts"))[0] == 404  # slid out of the window
    assert (await fetch(http, f"{base}/seg9.ts"))[0] == 404  # not published yet
    assert (await fetch(http, f"{base}/init.mp4"))[0] == 404  # TS has no init section
    assert live.requests == [
        "/live/seg8.ts",
        "/live/seg3.ts",
        "/live/seg2.ts",
        "/live/seg9.ts",
        "/live/init.mp4",
    ]


async def test_origin_master_playlist(
    origin: tuple[LiveOrigin, str], http: aiohttp.ClientSession
) -> None:
    _, url = origin
    status, content_type, body = await fetch(http, url.replace("index.m3u8", "master.m3u8"))
    assert (status, content_type) == (200, "application/vnd.apple.mpegurl")
    text = body.decode()
    assert 'RESOLUTION=320x180,CODECS="avc1.64001e,mp4a.40.2"' in text
    assert uris(text) == ["index.m3u8"]


async def test_origin_ends_with_endlist(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    live = LiveOrigin(clock=clock, prefill=2, window=3, end_after=4, with_pdt=False)
    url = await live.start()
    try:
        text = (await fetch(http, url))[2].decode()
        assert uris(text) == ["seg0.ts", "seg1.ts"]
        assert "#EXT-X-ENDLIST" not in text
        assert "#EXT-X-PROGRAM-DATE-TIME" not in text
        clock.advance_segments(10)
        text = (await fetch(http, url))[2].decode()
        assert uris(text) == ["seg1.ts", "seg2.ts", "seg3.ts"]
        assert text.endswith("#EXT-X-ENDLIST\n")
        assert live.published() == 4
    finally:
        await live.stop()


async def test_origin_fmp4(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    live = LiveOrigin(clock=clock, prefill=2, container="fmp4")
    url = await live.start()
    base = url.rsplit("/", 1)[0]
    try:
        text = (await fetch(http, url))[2].decode()
        assert tags(text, "EXT-X-VERSION") == ["7"]
        assert '#EXT-X-MAP:URI="init.mp4"' in text
        assert uris(text) == ["seg0.m4s", "seg1.m4s"]
        status, content_type, init = await fetch(http, f"{base}/init.mp4")
        assert (status, content_type) == (200, "video/mp4")
        status, content_type, body = await fetch(http, f"{base}/seg1.m4s")
        assert (status, content_type) == (200, "video/mp4")
        assert decode(init + body).frames[0] == (segment_start(1), FRAMES)
        assert (await fetch(http, f"{base}/seg1.ts"))[0] == 404
    finally:
        await live.stop()
