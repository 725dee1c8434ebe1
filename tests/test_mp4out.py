"""The muxer's output is written, scanned and hashed as it passes, however the writes fall."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import av
import pytest
from av.bitstream import BitStreamFilterContext

from livecut.media.boxes import boxes
from livecut.media.mp4out import FREED, KEPT, MuxerOutput, _Scan
from livecut.media.remux import FRAGMENTED, RemuxRun, remux_mp4
from livecut.media.synth import write_hls_fixture
from livecut.media.verify import verify_by_decoding
from tests.engines import NO_INDEX

pytestmark = NO_INDEX


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hls")
    write_hls_fixture(folder, segments=4, container="ts")
    return folder


def muxed(folder: Path) -> bytes:
    """What libavformat's fragmented MP4 muxer writes for the fixture: short fragments."""
    out_buffer = io.BytesIO()
    paths = sorted(folder.glob("seg*.ts"))
    with (
        av.open("concat:" + "|".join(str(p) for p in paths), format="mpegts") as src,
        av.open(
            out_buffer, "w", format="mp4", options={**FRAGMENTED, "frag_duration": "300000"}
        ) as out,
    ):
        video, audio = src.streams.video[0], src.streams.audio[0]
        streams = {video.index: out.add_stream_from_template(video)}
        streams[audio.index] = out.add_stream_from_template(audio)
        adts = BitStreamFilterContext("aac_adtstoasc", audio)
        for packet in src.demux():
            if packet.pts is None:
                continue
            if packet.stream_index == audio.index:
                (packet,) = adts.filter(packet)
            time_base = packet.time_base
            packet.stream = streams[packet.stream_index]
            packet.time_base = time_base
            out.mux(packet)
    return out_buffer.getvalue()


def finished_bytes(data: bytes) -> tuple[bytes, list[int], list[tuple[bytes, int, bytes]]]:
    """The bytes with the freed boxes' types patched, those offsets, and the kept boxes."""
    patched = bytearray(data)
    patches, kept = [], []
    for kind, body, end in boxes(memoryview(data), 0, len(data)):
        at = body - 8
        if kind in FREED:
            patches.append(at + 4)
            patched[at + 4 : at + 8] = b"free"
        if kind in KEPT:
            kept.append((kind, at, data[at:end]))
    return bytes(patched), patches, kept


def test_the_scan_sees_every_box_and_hashes_the_finished_bytes_however_writes_split(
    fixture_dir: Path,
) -> None:
    data = muxed(fixture_dir)
    expected, patches, kept = finished_bytes(data)
    assert sum(1 for kind, _, _ in kept if kind == b"moof") >= 4  # several fragments
    rng = random.Random(7)
    for trial in range(40):
        seen: list[tuple[bytes, int, bytes]] = []
        scan = _Scan(lambda kind, at, box, seen=seen: seen.append((kind, at, box)))
        at = 0
        while at < len(data):
            # Tiny writes put box headers across write boundaries; big ones span boxes.
            size = rng.choice((1, 3, 7, 15, 17, 100, 4096, 70_000))
            scan.take(at, data[at : at + size])
            at += size
        scan.finish()
        assert scan.whole, trial
        assert list(scan.patches) == patches, trial
        assert seen == kept, trial
        assert scan.digest.hexdigest() == hashlib.sha256(expected).hexdigest(), trial


def test_a_write_that_is_not_at_the_end_gives_the_streamed_hash_up(
    fixture_dir: Path, tmp_path: Path
) -> None:
    data = muxed(fixture_dir)
    with open(tmp_path / "out.mp4", "w+b") as fh:
        sink = MuxerOutput(fh, on_box=lambda kind, at, box: None)
        with sink:
            sink.write(data[:1000])
            sink.seek(8)  # a muxer going back to fix a size
            sink.write(data[8:16])
            sink.seek(0, io.SEEK_END)
            sink.write(data[1000:])
        assert sink.scanned is None
    assert (tmp_path / "out.mp4").read_bytes() == data  # what was written is still written


def test_a_failing_disk_is_raised_to_the_muxer(tmp_path: Path) -> None:
    (tmp_path / "out.mp4").write_bytes(b"")
    with open(tmp_path / "out.mp4", "rb") as fh:  # not open for writing: pwrite fails
        sink = MuxerOutput(fh)
        sink.write(b"x" * 100)
        with pytest.raises(OSError):
            sink.close()
    assert (tmp_path / "out.mp4").read_bytes() == b""


@pytest.mark.parametrize("faststart", [False, True])
def test_a_clip_is_hashed_as_delivered_with_its_index_where_asked(
    fixture_dir: Path, tmp_path: Path, faststart: bool
) -> None:
    paths = tuple(sorted(fixture_dir.glob("seg*.ts")))
    with av.open(str(paths[0])) as first:
        stream = first.streams.video[0]
        assert stream.start_time is not None and stream.time_base is not None
        ref_s = float(stream.start_time * stream.time_base)
    run = RemuxRun(
        paths=paths,
        init_path=None,
        wraps=True,
        ref_s=ref_s,
        from_s=ref_s,
        to_s=ref_s + 5.0,
        wall_ms=lambda t: t * 1000,
    )
    output = tmp_path / "clip.mp4"
    presented = remux_mp4([run], first_s=ref_s + 0.3, output=output, faststart=faststart)
    data = output.read_bytes()
    assert presented.sha256 == hashlib.sha256(data).hexdigest()
    assert presented.size == len(data)
    top = [kind for kind, _, _ in boxes(memoryview(data), 0, len(data))]
    assert top.count(b"moov") == 1 and b"moof" not in top
    assert (top.index(b"moov") < top.index(b"mdat")) is faststart
    video = next(t for t in presented.tracks if t.kind == "video")
    verify_by_decoding(output, video_frames=video.frames)
    assert not list(tmp_path.glob("*.part"))
