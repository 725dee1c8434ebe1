"""The check every MP4 passes before delivery: good files pass, broken ones name the fault."""

from __future__ import annotations

import mmap
import random
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import pytest

from livecut import metrics
from livecut.media.concat import open_run
from livecut.media.synth import write_hls_fixture
from livecut.media.verify import VerifyError, _Reader, verify_by_decoding, verify_mp4
from tests.harness import recorded_vod
from tests.test_clips import PDT0, clip_of


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ts")
    write_hls_fixture(folder, segments=2)
    return sorted(folder.glob("seg*.ts"))


def copy(
    segments: list[Path],
    output: Path,
    *,
    drop: set[int] = frozenset(),  # type: ignore[assignment]
    skip_first: int = 0,
    audio: bool = True,
) -> int:
    """Copy the segments' packets to an MP4, leaving out video packets by decode index;
    the number of video frames written."""
    written = 0
    with open_run(segments, None) as source, av.open(str(output), "w", format="mp4") as out:
        video_in = source.streams.video[0]
        video = out.add_stream_from_template(video_in)
        audio_out = out.add_stream_from_template(source.streams.audio[0]) if audio else None
        index = 0
        first_pts: dict[str, int] = {}
        for packet in source.demux():
            if packet.pts is None or packet.dts is None:
                continue
            kind = packet.stream.type
            if kind == "video":
                index += 1
                if index <= skip_first or index in drop:
                    continue
                packet.stream = video
                written += 1
            elif audio_out is not None:
                packet.stream = audio_out
            else:
                continue
            base = first_pts.setdefault(kind, packet.dts)
            packet.pts -= base
            packet.dts -= base
            out.mux(packet)
    return written


def test_a_clean_copy_passes(segments: list[Path], tmp_path: Path) -> None:
    output = tmp_path / "ok.mp4"
    frames = copy(segments, output)
    verify_mp4(output, video_frames=frames, length_s=frames * 0.04)
    verify_by_decoding(output, video_frames=frames)


def test_a_missing_reference_frame_is_found(segments: list[Path], tmp_path: Path) -> None:
    # The fixture's GOPs decode as I P B B P B B ...: packet 5 is a P-frame that the
    # B-frames after it reference.
    output = tmp_path / "hole.mp4"
    frames = copy(segments, output, drop={5})
    with pytest.raises(VerifyError) as caught:
        verify_mp4(output, video_frames=frames, length_s=frames * 0.04)
    assert caught.value.check == "references"
    assert "frame_num" in str(caught.value)


def test_a_file_that_starts_between_keyframes_is_refused(
    segments: list[Path], tmp_path: Path
) -> None:
    output = tmp_path / "mid.mp4"
    frames = copy(segments, output, skip_first=3)
    with pytest.raises(VerifyError) as caught:
        verify_mp4(output, video_frames=frames, length_s=frames * 0.04)
    assert caught.value.check == "sync_start"


def test_a_frame_count_that_disagrees_is_refused(segments: list[Path], tmp_path: Path) -> None:
    output = tmp_path / "count.mp4"
    frames = copy(segments, output)
    with pytest.raises(VerifyError) as caught:
        verify_mp4(output, video_frames=frames + 1, length_s=frames * 0.04)
    assert caught.value.check == "frame_count"
    with pytest.raises(VerifyError) as decoded:
        verify_by_decoding(output, video_frames=frames + 1)
    assert decoded.value.check == "decode"


def test_the_check_moves_its_window_along_a_file_many_windows_long(
    segments: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Reader, "WINDOW", mmap.ALLOCATIONGRANULARITY)
    output = tmp_path / "ok.mp4"
    frames = copy(segments, output)
    assert output.stat().st_size > 4 * mmap.ALLOCATIONGRANULARITY
    verify_mp4(output, video_frames=frames, length_s=frames * 0.04)
    hole = tmp_path / "hole.mp4"
    frames = copy(segments, hole, drop={5})
    with pytest.raises(VerifyError) as caught:
        verify_mp4(hole, video_frames=frames, length_s=frames * 0.04)
    assert caught.value.check == "references"


def test_the_reader_gives_the_file_s_bytes_across_windows_and_past_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = mmap.ALLOCATIONGRANULARITY
    monkeypatch.setattr(_Reader, "WINDOW", unit)
    data = random.Random(7).randbytes(5 * unit + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    end = len(data)
    reads = [
        (0, 0),  # empty, before anything is mapped
        (0, 5),
        (unit - 2, 5),  # across the end of the first window
        (unit, 48),
        (3 * unit + 7, 256),
        (1, 3),  # back to the start
        (2 * unit - 1, 3 * unit),  # longer than a window
        (end - 3, 10),  # cut short by the end of the file
        (end, 4),
        (end + 100, 4),
        (0, 0),  # empty, after the map was let go at the end
        (4 * unit, 1),
    ]
    with open(path, "rb") as fh:
        reader = _Reader(fh.fileno())
        try:
            for at, count in reads:
                assert reader.read(at, count) == data[at : at + count], (at, count)
        finally:
            reader.close()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with open(empty, "rb") as fh:
        reader = _Reader(fh.fileno())
        assert reader.read(0, 5) == b""
        reader.close()


def test_reading_a_long_file_keeps_resident_memory_flat(tmp_path: Path) -> None:
    """The check touches every sample of the file: the pages it maps must not pile up
    (a map of the whole file raised an export's peak RSS by the file's size)."""
    size = 64 << 20
    path = tmp_path / "long.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
    with open(path, "rb") as fh:
        reader = _Reader(fh.fileno())
        try:
            before = _resident_kb()
            for at in range(0, size, 4096):  # every page, as a check of 1080p nearly does
                assert reader.read(at, 16) == block[:16]
            grown_kb = _resident_kb() - before
        finally:
            reader.close()
    assert grown_kb < 24 << 10, f"reading a 64 MiB file left {grown_kb >> 10} MiB resident"


def _resident_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_audio_that_stops_short_is_refused(segments: list[Path], tmp_path: Path) -> None:
    output = tmp_path / "short.mp4"
    frames = copy(segments, output)
    with pytest.raises(VerifyError) as caught:
        verify_mp4(output, video_frames=frames, length_s=frames * 0.04 + 0.5)
    assert caught.value.check == "audio"


def hevc_file(output: Path, *, drop: int | None) -> int:
    """A 2 s HEVC clip with B-frames, encoded here; optionally without one packet."""
    written = 0
    with av.open(str(output), "w", format="mp4") as out:
        stream = out.add_stream(
            "libx265", rate=25, options={"x265-params": "log-level=none:bframes=3"}
        )
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.time_base = Fraction(1, 25)
        packets = []
        for n in range(50):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([n * 5 % 256]) * plane.buffer_size)
            frame.pts = n
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for index, packet in enumerate(packets):
            if index == drop:
                continue
            out.mux(packet)
            written += 1
    return written


def test_hevc_missing_frames_are_found_by_their_decode_steps(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
    hevc_file(good, drop=None)
    verify_mp4(good, video_frames=None, length_s=2.0)
    hevc_file(bad, drop=10)
    with pytest.raises(VerifyError) as caught:
        verify_mp4(bad, video_frames=None, length_s=2.0)
    assert caught.value.check == "references"


async def test_a_clip_whose_media_does_not_decode_fails_when_asked_to_decode(
    data_dir: Path, tmp_path: Path
) -> None:
    """verify: "decode" end to end: damaged slice data in a stored segment (the structure
    intact) fails the clip by name, counts it, and leaves no file; a clean clip passes."""
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon:
        clean = await clip_of(
            daemon, {"start_ms": PDT0 + 500, "end_ms": PDT0 + 3500, "verify": "decode"}
        )
        assert clean.state == "ready"
        segment = (await daemon.store.index.stream_segments("cam", PDT0 + 2100, PDT0 + 2200))[0]
        path = daemon.store.path(segment.path)
        data = bytearray(path.read_bytes())
        # Overwrite the tail of TS packets that continue a frame (no payload start), in
        # the middle of the segment: headers, PES and slice headers stay whole, so the
        # structure is sound and every frame is found, but the picture data is not.
        for packet_at in range(len(data) // 3 // 188 * 188, 2 * len(data) // 3, 188):
            if not data[packet_at + 1] & 0x40:
                data[packet_at + 88 : packet_at + 188] = bytes(range(100))
        path.write_bytes(bytes(data))
        before = metrics.REGISTRY.get_sample_value(
            "livecut_clip_checks_failed_total", {"check": "decode"}
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{daemon.base_url}/v1/clips",
                json={
                    "stream": "cam",
                    "start_ms": PDT0 + 2500,
                    "end_ms": PDT0 + 3900,
                    "verify": "decode",
                },
            ) as response,
        ):
            created = await response.json()
        broken = await daemon.jobs.wait_finished(created["id"], timeout_s=60)
        assert broken is not None and broken.state == "failed"
        assert broken.error is not None and "(decode)" in broken.error
        after = metrics.REGISTRY.get_sample_value(
            "livecut_clip_checks_failed_total", {"check": "decode"}
        )
        assert (after or 0) == (before or 0) + 1
        assert not (daemon.store.clip_dir(broken.id) / "clip.mp4").exists()
