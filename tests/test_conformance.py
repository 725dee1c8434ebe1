"""Clips of real encoders' live output, decoded frame by frame against what they wrote.

Every case in tests/encoders/cases.py runs at once, live; one daemon records them all.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import pytest

from tests.encoders import report
from tests.encoders.cases import CASES, Case
from tests.encoders.live import CaseRecord, ClipTry, record_all
from tests.encoders.report import ROWS, CaseRow
from tests.encoders.truth import Origin, analyse_origin, parse_playlist
from tests.encoders.verdict import (
    Decoded,
    Verdict,
    WallFrame,
    decode_output,
    judge,
    wall_frames,
    wall_of,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True, kw_only=True, slots=True)
class Judged:
    clip: ClipTry
    verdict: Verdict
    frames: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseResult:
    record: CaseRecord
    origin: Origin
    walls: list[WallFrame]
    judged: list[Judged]


def _origin(record: CaseRecord) -> Origin:
    origin = analyse_origin(record.folder, record.playlists[-1], record.beep_every)
    # A restarted ffmpeg rewrites the playlist; each segment keeps the PDT it was first listed with.
    first_pdt: dict[int, int | None] = {}
    for text in record.playlists:
        for seg in parse_playlist(text):
            first_pdt.setdefault(seg.seq, seg.pdt_ms)
    anchors = {
        seq: replace(a, pdt_ms=first_pdt.get(seq, a.pdt_ms)) for seq, a in origin.anchors.items()
    }
    return replace(origin, anchors=anchors)


def _run_anchors(record: CaseRecord, origin: Origin) -> dict[int, int] | None:
    if record.case.pdt:
        return None
    starts = {row.seq: row.start_ms for row in record.segments}
    out: dict[int, int] = {}
    for anchor in sorted(origin.anchors.values(), key=lambda a: a.seq):
        if anchor.run not in out and anchor.seq in starts:
            out[anchor.run] = starts[anchor.seq]
    return out


def _analyse(records: list[CaseRecord], engine: str) -> dict[str, CaseResult]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        origins = list(pool.map(_origin, records))
        outputs = [path for r in records for c in r.clips for path, _ in c.outputs]
        decoded: dict[Path, Decoded] = dict(
            zip(outputs, pool.map(decode_output, outputs), strict=True)
        )
    results = {}
    for record, origin in zip(records, origins, strict=True):
        anchors = _run_anchors(record, origin)
        walls = wall_frames(origin, anchors)
        audio_ends_ms = {
            run: wall_of(origin, anchors, seq, run, pts)
            for run, (seq, pts) in origin.audio_ends.items()
        }
        label = f"{record.case.name} [{engine}]"
        row = ROWS.setdefault(label, CaseRow(case=label))
        judged = []
        for clip in record.clips:
            verdict = _judge(record, origin, walls, clip, decoded, audio_ends_ms)
            judged.append(Judged(clip=clip, verdict=verdict, frames=0))
            row.clips += 1
            row.start_errors += verdict.start_error not in (0, None)
            row.end_errors += verdict.end_error not in (0, None)
            row.decode_errors += bool(verdict.decode_errors)
            row.other += bool(verdict.problems)
            if not verdict.ok:
                row.failures.append(_describe(clip, verdict))
        results[record.case.name] = CaseResult(
            record=record, origin=origin, walls=walls, judged=judged
        )
    return results


def _judge(
    record: CaseRecord,
    origin: Origin,
    walls: list[WallFrame],
    clip: ClipTry,
    decoded: dict[Path, Decoded],
    audio_ends_ms: dict[int, float],
) -> Verdict:
    if not clip.outputs:
        return Verdict(problems=[f"clip not delivered: {clip.error}"])
    return judge(
        frames=walls,
        beep_offsets=origin.beep_offsets,
        frame_s=1 / float(record.case.fps),
        start_ms=clip.start_ms,
        end_ms=clip.end_ms,
        accuracy=clip.accuracy,
        pieces=[(part, decoded[path]) for path, part in clip.outputs],
        audio_ends_ms=audio_ends_ms,
    )


def _describe(clip: ClipTry, verdict: Verdict) -> str:
    parts = [
        f"{clip.phase} {clip.accuracy} [{clip.start_ms}, {clip.end_ms}) "
        f"({clip.end_ms - clip.start_ms} ms):"
    ]
    if verdict.start_error or verdict.end_error:
        parts.append(
            f"frames {verdict.got} where the source says {verdict.expected} "
            f"(start {verdict.start_error:+d}, end {verdict.end_error:+d});"
        )
    if verdict.decode_errors:
        parts.append(f"decode errors {verdict.decode_errors[:3]}")
    parts += verdict.problems[:4]
    return " ".join(parts)


# The real encoders the suite drives, and the Debian packages .ci/run installs for them.
ENCODERS = {
    "ffmpeg": "ffmpeg",
    "gst-launch-1.0": "gstreamer1.0-tools gstreamer1.0-plugins-{good,bad,ugly} gstreamer1.0-libav",
    "nginx": "nginx libnginx-mod-rtmp",
}


@pytest.fixture(scope="module")
def conformance(
    tmp_path_factory: pytest.TempPathFactory, engine: str, module_index_url: str | None
) -> dict[str, CaseResult]:
    missing = [f"{tool} (apt-get install {pkgs})" for tool, pkgs in ENCODERS.items()
               if shutil.which(tool) is None]  # fmt: skip
    if missing:
        pytest.fail("the conformance suite needs real encoders; missing: " + "; ".join(missing))
    root = tmp_path_factory.mktemp("conformance")
    records = asyncio.run(record_all(CASES, root, index_url=module_index_url))
    return _analyse(records, engine)


def _ids(case: Case) -> str:
    return case.name


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_segment_is_recorded_at_its_anchor(
    conformance: dict[str, CaseResult], case: Case
) -> None:
    result = conformance[case.name]
    origin, rows = result.origin, result.record.segments
    assert result.record.encoder_exit and all(c == 0 for c in result.record.encoder_exit)
    assert not origin.errors, (
        f"the encoder's own output does not decode cleanly: {origin.errors[:3]}"
    )
    for run in {f.run for f in origin.frames}:
        numbers = [f.number for f in origin.frames if f.run == run]  # in pts order
        assert numbers == sorted(set(numbers)), "the source repeats or reorders frames"
    assert [r.seq for r in rows] == sorted(origin.anchors), "livecut recorded other segments"
    anchors = _run_anchors(result.record, origin)
    wrong = []
    for row in rows:
        anchor = origin.anchors[row.seq]
        if case.pdt and row.start_ms != anchor.pdt_ms:
            wrong.append(f"seq {row.seq}: start_ms {row.start_ms} != PDT {anchor.pdt_ms}")
        # Where livecut puts the segment's reference instant must be where the origin does.
        truth = wall_of(origin, anchors, row.seq, anchor.run, Fraction(row.ref_pts_s))
        if abs(truth - row.start_ms) > 1.0:
            wrong.append(
                f"seq {row.seq}: livecut puts pts {row.ref_pts_s:.4f} at {row.start_ms}, the "
                f"origin at {truth:.1f} ({row.start_ms - truth:+.1f} ms; PDT marks pts "
                f"{float(anchor.anchor_pts_s):.4f}, "
                f"first presented {float(anchor.earliest_pts_s):.4f})"
            )
    assert not wrong, f"{len(wrong)} of {len(rows)} segments: " + "; ".join(wrong[:6])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_clips_are_exact_and_whole(
    conformance: dict[str, CaseResult],
    case: Case,
    engine: str,
    record_property: Callable[[str, object], None],
) -> None:
    row = ROWS[f"{case.name} [{engine}]"]
    # The session's table is printed from the reports (with -n, they come from workers).
    record_property(report.PROPERTY, report.cells(row))
    result = conformance[case.name]
    phases = {j.clip.phase for j in result.judged}
    accuracies = {j.clip.accuracy for j in result.judged}
    assert {"live", "ended"} <= phases and {"frame", "keyframe"} <= accuracies
    assert len(result.judged) >= 12
    assert not row.failures, f"{len(row.failures)} of {row.clips} clips wrong:\n" + "\n".join(
        row.failures[:12]
    )


def test_an_nginx_rtmp_clip_across_ten_joins_decodes_every_frame(
    conformance: dict[str, CaseResult],
) -> None:
    result = conformance["nginx_rtmp"]
    long = [
        j
        for j in result.judged
        if j.clip.end_ms - j.clip.start_ms >= 20_000 and j.clip.accuracy == "frame"
    ]
    assert long, "no 20 s clip was cut"
    for judged in long:
        joins = sum(
            1
            for f in result.walls
            if f.key and judged.clip.start_ms < f.wall_ms < judged.clip.end_ms
        )
        assert joins >= 10, f"the clip crosses {joins} segment joins"
        verdict = judged.verdict
        assert not verdict.decode_errors, verdict.decode_errors[:3]
        assert verdict.ok, _describe(judged.clip, verdict)
