"""reencode_edges: the first partial GOP re-encoded, so the MP4 needs no pre-roll edit."""

from __future__ import annotations

import io
import itertools
import math
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from livecut.clips.jobs import remux_run
from livecut.clips.planner import plan_clip
from livecut.media.edges import parameter_sets, sps_id
from livecut.media.probe import probe_segment
from livecut.media.remux import Presented, remux_mp4
from livecut.media.synth import (
    STREAM_OFFSET_S,
    SyntheticStream,
    read_frame_number,
    write_hls_fixture,
)
from livecut.store.records import SegmentRow
from tests.harness import decode_clip
from tests.test_clips import (
    FRAME_MS,
    PDT0,
    check_frames,
    clip_of,
    file_of,
    frame_covering,
    recorded_vod,
)

GOP_FRAMES = 25  # the fixtures put an IDR on every whole second
SEGMENTS = 5

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")


@dataclass(frozen=True, kw_only=True, slots=True)
class Segment:
    path: Path
    init: Path | None
    start_ms: int  # wall time of the segment's first media (its PDT)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Segment]]:
    """The same five 2 s segments as TS and as fMP4, each segment's PDT as its wall time."""
    found: dict[str, list[Segment]] = {}
    for container, extension in (("ts", "ts"), ("fmp4", "m4s")):
        folder = tmp_path_factory.mktemp(container)
        write_hls_fixture(folder, segments=SEGMENTS, container=container)  # type: ignore[arg-type]
        init = folder / "init.mp4" if container == "fmp4" else None
        found[container] = [
            Segment(path=folder / f"seg{i}.{extension}", init=init, start_ms=PDT0 + 2000 * i)
            for i in range(SEGMENTS)
        ]
    return found


def cut(
    segments: list[Segment], start: int, end: int, output: Path, *, reencode: bool = True
) -> Presented:
    """Plan [PDT0+start, PDT0+end) over the segments as the clip jobs do, and remux it."""
    rows = []
    for n, segment in enumerate(segments):
        probe = probe_segment(
            segment.path.read_bytes(), None if segment.init is None else segment.init.read_bytes()
        )
        rows.append(
            SegmentRow(
                id=n,
                rendition_id=1,
                seq=n,
                epoch=0,
                start_ms=segment.start_ms,
                end_ms=segment.start_ms + round(probe.duration_s * 1000),
                path=str(segment.path),
                size=segment.path.stat().st_size,
                init_path=None if segment.init is None else str(segment.init),
                ref_pts_s=probe.ref_pts_s,
                keyframes_ms=tuple(segment.start_ms + round(k * 1000) for k in probe.keyframes_s),
                has_video=probe.has_video,
                has_audio=probe.has_audio,
            )
        )
    plan = plan_clip(rows, PDT0 + start, PDT0 + end)
    return remux_mp4(
        [remux_run(run, Path) for run in plan.runs],
        first_s=plan.runs[0].media_s(max(PDT0 + start, plan.start_ms)),
        output=output,
        reencode_edges=reencode,
    )


# --- reading the MP4 back -------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        body = at + 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            body += 8
        yield kind, body, at + size
        at += size


def _find(data: bytes, start: int, end: int, path: list[bytes]) -> tuple[int, int] | None:
    for kind, body, box_end in _boxes(data, start, end):
        if kind == path[0]:
            return (body, box_end) if len(path) == 1 else _find(data, body, box_end, path[1:])
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoTrack:
    media_time: int  # where the edit list starts presenting, in media timescale units
    first_ctts: int  # composition offset of the first sample (0 without a ctts box)
    avcc: bytes


def video_track(path: Path) -> VideoTrack:
    """The edit, first composition offset and avcC of the MP4's video track."""
    data = path.read_bytes()
    moov = _find(data, 0, len(data), [b"moov"])
    assert moov is not None
    for kind, body, end in _boxes(data, *moov):
        if kind != b"trak":
            continue
        stbl = _find(data, body, end, [b"mdia", b"minf", b"stbl"])
        assert stbl is not None
        stsd_body, stsd_end = _find(data, *stbl, [b"stsd"]) or (0, 0)
        avc1 = _find(data, stsd_body + 8, stsd_end, [b"avc1"])
        if avc1 is None:
            continue
        avcc = _find(data, avc1[0] + 78, avc1[1], [b"avcC"])
        elst = _find(data, body, end, [b"edts", b"elst"])
        assert avcc is not None and elst is not None
        version = data[elst[0]]
        entries = []
        for n in range(struct.unpack_from(">I", data, elst[0] + 4)[0]):
            fmt, size = (">Qq", 20) if version else (">Ii", 12)
            entries.append(struct.unpack_from(fmt, data, elst[0] + 8 + n * size))
        media = [t for _, t in entries if t != -1]
        assert len(media) == 1, entries
        ctts = _find(data, *stbl, [b"ctts"])
        first_ctts = 0 if ctts is None else struct.unpack_from(">i", data, ctts[0] + 12)[0]
        return VideoTrack(media_time=media[0], first_ctts=first_ctts, avcc=data[avcc[0] : avcc[1]])
    raise AssertionError("no avc1 track")


def frames_ignoring_edits(path: Path) -> list[int]:
    """Barcodes in the order a player that ignores edit lists shows them."""
    with av.open(str(path), options={"ignore_editlist": "1"}) as container:
        frames = [
            (float(f.pts * f.time_base), read_frame_number(f))
            for f in container.decode(container.streams.video[0])
            if f.pts is not None and f.time_base is not None
        ]
    return [n for _, n in sorted(frames)]


def video_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(container.streams.video[0]) if p.size]


def ffmpeg_errors(path: Path, *extra: str) -> str:
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *extra, "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return f"rc={result.returncode} {result.stderr}" if result.returncode else result.stderr


def luma_psnr(a: av.VideoFrame, b: av.VideoFrame) -> float:
    planes = [f.reformat(format="gray").planes[0] for f in (a, b)]
    width, height = a.width, a.height
    error = 0
    for row in range(height):
        x = bytes(planes[0])[row * planes[0].line_size :][:width]
        y = bytes(planes[1])[row * planes[1].line_size :][:width]
        error += sum((p - q) ** 2 for p, q in zip(x, y, strict=True))
    mse = error / (width * height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def frames_by_number(path: Path) -> dict[int, av.VideoFrame]:
    with av.open(str(path)) as container:
        return {read_frame_number(f): f for f in container.decode(container.streams.video[0])}


def next_idr(frame: int) -> int:
    return (frame // GOP_FRAMES + 1) * GOP_FRAMES


def check_reencoded(path: Path, presented: Presented, first: int, last: int) -> None:
    """Every check of a re-encoded clip that does not depend on how it was cut."""
    # Exactly first..last, each at its own offset from t=0, audio covering them.
    check_frames(path, first, last)
    copied_from = next_idr(first)
    assert presented.reencoded_frames == min(copied_from, last + 1) - first
    # No pre-roll: the edit starts at the first sample's composition time, so a player
    # that ignores edit lists starts on the first presented frame too.
    track = video_track(path)
    assert track.media_time == track.first_ctts
    shown = frames_ignoring_edits(path)
    assert shown[0] == first and shown[: last - first + 1] == list(range(first, last + 1))
    # One H.264 stream: rising decode times, an IDR first, the copied run from its IDR.
    packets = video_packets(path)
    assert len(packets) >= last - first + 1
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in itertools.pairwise(dts)), dts
    assert packets[0].is_keyframe
    keyframes = [n for n, p in enumerate(packets) if p.is_keyframe]
    expected = [0] + [k - first for k in range(copied_from, last + 1, GOP_FRAMES)]
    assert keyframes == expected
    # Two parameter-set pairs with distinct ids, both in the decoder configuration.
    sets = parameter_sets(track.avcc)
    assert len(sets.sps) == len(sets.pps) == 2
    assert len({sps_id(unit) for unit in sets.sps}) == 2


RANGES = [
    pytest.param(2530, 3970, id="mid-gop"),  # 12 frames re-encoded, then 25 copied
    pytest.param(1290, 7610, id="across-joins"),  # start in a B-frame run, 3 joins
    pytest.param(2970, 3500, id="one-frame-before-idr"),  # a run shorter than the B delay
    pytest.param(4130, 4530, id="inside-one-gop"),  # the clip ends before the next IDR
]


@pytest.mark.parametrize("container", ["ts", "fmp4"])
@pytest.mark.parametrize(("start", "end"), RANGES)
def test_reencoded_edge_needs_no_edit(
    recordings: dict[str, list[Segment]], tmp_path: Path, container: str, start: int, end: int
) -> None:
    out = tmp_path / "clip.mp4"
    presented = cut(recordings[container], start, end, out)
    first, last = frame_covering(PDT0 + start), frame_covering(PDT0 + end - 1)
    check_reencoded(out, presented, first, last)
    assert presented.start_ms == PDT0 + first * FRAME_MS
    assert presented.end_ms == PDT0 + (last + 1) * FRAME_MS
    video = next(t for t in presented.tracks if t.kind == "video")
    assert video.frames == last - first + 1


@needs_ffmpeg
@pytest.mark.parametrize("container", ["ts", "fmp4"])
def test_ffmpeg_decodes_without_errors(
    recordings: dict[str, list[Segment]], tmp_path: Path, container: str
) -> None:
    out = tmp_path / "clip.mp4"
    cut(recordings[container], 1290, 7610, out)
    assert ffmpeg_errors(out) == ""
    assert ffmpeg_errors(out, "-ignore_editlist", "1") == ""


@pytest.mark.parametrize("container", ["ts", "fmp4"])
def test_reencoded_frames_keep_their_quality(
    recordings: dict[str, list[Segment]], tmp_path: Path, container: str
) -> None:
    """Against the same frames copied (plain clip): barcodes read, luma PSNR >= 40 dB."""
    plain, edged = tmp_path / "plain.mp4", tmp_path / "edged.mp4"
    cut(recordings[container], 2530, 3970, plain, reencode=False)
    presented = cut(recordings[container], 2530, 3970, edged)
    copied, reencoded = frames_by_number(plain), frames_by_number(edged)
    first = frame_covering(PDT0 + 2530)
    assert presented.reencoded_frames == next_idr(first) - first
    for number in range(first, next_idr(first)):
        assert luma_psnr(copied[number], reencoded[number]) >= 40.0, number


@pytest.mark.parametrize("container", ["ts", "fmp4"])
def test_start_on_a_keyframe_reencodes_nothing(
    recordings: dict[str, list[Segment]], tmp_path: Path, container: str
) -> None:
    plain, edged = tmp_path / "plain.mp4", tmp_path / "edged.mp4"
    cut(recordings[container], 3000, 5000, plain, reencode=False)
    presented = cut(recordings[container], 3000, 5000, edged)
    assert presented.reencoded_frames == 0
    assert edged.read_bytes() == plain.read_bytes()
    check_frames(edged, 75, 124)


def test_without_video_the_flag_changes_nothing(tmp_path: Path) -> None:
    stream = SyntheticStream(video=False)
    segments = []
    try:
        for n in range(2):
            path = tmp_path / f"seg{n}.ts"
            path.write_bytes(stream.next_segment().data)
            segments.append(Segment(path=path, init=None, start_ms=PDT0 + 2000 * n))
    finally:
        stream.close()
    plain, edged = tmp_path / "plain.mp4", tmp_path / "edged.mp4"
    cut(segments, 530, 3170, plain, reencode=False)
    presented = cut(segments, 530, 3170, edged)
    assert presented.reencoded_frames == 0
    assert edged.read_bytes() == plain.read_bytes()


def split_ts(segment: Segment, at_frame: int, folder: Path) -> list[Segment]:
    """Cut a TS segment in two mid-GOP, timestamps untouched.

    Video is cut in decode order after `at_frame` packets; audio where the second
    half's video starts presenting. The halves then overlap in presentation time by
    the B-frame reorder delay only (80 ms), which the planner takes as a join.
    """
    with av.open(str(segment.path)) as source:
        packets = [p for p in source.demux() if p.dts is not None and p.pts is not None]
        video = source.streams.video[0].index
        in_second: dict[int, bool] = {}
        ordered = sorted((p for p in packets if p.stream_index == video), key=lambda p: p.dts)
        for n, packet in enumerate(ordered):
            in_second[id(packet)] = n >= at_frame
        audio_cut = min(float(p.pts * p.time_base) for p in ordered[at_frame:])
        for packet in packets:
            if packet.stream_index != video:
                in_second[id(packet)] = float(packet.pts * packet.time_base) >= audio_cut
        halves: list[Segment] = []
        for half in (False, True):
            kept = [p for p in packets if in_second[id(p)] == half]
            buffer = io.BytesIO()
            with av.open(buffer, "w", format="mpegts") as out:
                streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
                for packet in kept:
                    packet.stream = streams[packet.stream_index]
                    out.mux(packet)
            path = folder / f"{segment.path.stem}{'ab'[half]}.ts"
            path.write_bytes(buffer.getvalue())
            first_s = min(float(p.pts * p.time_base) for p in kept)
            start_ms = PDT0 + round((first_s - STREAM_OFFSET_S) * 1000)
            halves.append(Segment(path=path, init=None, start_ms=start_ms))
    return halves


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(2200, 3600, id="start-before-the-cut-idr-after-it"),
        pytest.param(2700, 4400, id="start-after-the-cut-keyframe-before-it"),
    ],
)
def test_gop_split_across_segments(
    recordings: dict[str, list[Segment]], tmp_path: Path, start: int, end: int
) -> None:
    """Segment 1 cut after its 15th frame: GOP 50..74 spans two files."""
    ts = recordings["ts"]
    segments = [ts[0], *split_ts(ts[1], 15, tmp_path), *ts[2:]]
    out = tmp_path / "clip.mp4"
    presented = cut(segments, start, end, out)
    first, last = frame_covering(PDT0 + start), frame_covering(PDT0 + end - 1)
    check_reencoded(out, presented, first, last)


async def test_post_with_reencode_edges(data_dir: Path, tmp_path: Path) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod", container="fmp4") as daemon:
        clip = await clip_of(
            daemon, {"start_ms": PDT0 + 1290, "end_ms": PDT0 + 4610, "reencode_edges": True}
        )
        path = file_of(daemon, clip)
        first, last = frame_covering(PDT0 + 1290), frame_covering(PDT0 + 4609)
        check_frames(path, first, last)
        track = video_track(path)
        assert track.media_time == track.first_ctts
        assert frames_ignoring_edits(path)[0] == first
        assert decode_clip(path).frames[0] == (0.0, first)
