"""The check every MP4 passes before delivery: good files pass, broken ones name the fault."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from livecut.media.concat import open_run
from livecut.media.synth import write_hls_fixture
from livecut.media.verify import VerifyError, verify_by_decoding, verify_mp4


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
