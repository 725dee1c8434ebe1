"""A clip's decoded output held against the origin's truth: which frames, when, in sync."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.logging

from tests.encoders.truth import Origin, audio_span, decode_media

AAC_FRAME_S = 1024 / 48_000
SYNC_TOLERANCE_S = 0.001


@dataclass(frozen=True, kw_only=True, slots=True)
class WallFrame:
    number: int
    wall_ms: float
    key: bool
    run: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Decoded:
    frames: list[tuple[Fraction, int]]
    onsets: list[Fraction]
    errors: list[str]
    audio: tuple[Fraction, Fraction] | None


def decode_output(path: Path) -> Decoded:
    """Run in a worker process, so libav's log capture sees this decode alone."""
    frames, onsets, _, _ = decode_media(path)
    return Decoded(frames=frames, onsets=onsets, errors=shown_errors(path), audio=audio_span(path))


def shown_errors(path: Path) -> list[str]:
    """libav errors while decoding the packets the clip shows. Packets before the first
    frame (pre-roll the edit list hides: an open GOP's leading pictures, whose references
    lie before the clip) are decoded but never shown, and do not count."""
    errors: list[str] = []
    av.logging.set_level(av.logging.ERROR)
    with av.logging.Capture(local=False) as logs, av.open(str(path)) as container:
        for stream in (*container.streams.video[:1], *container.streams.audio[:1]):
            stream.codec_context.thread_count = 1
            container.seek(0)
            for packet in container.demux(stream):
                before = len(logs)
                packet.decode()
                if packet.pts is not None and packet.pts < 0:
                    continue
                errors += [
                    f"{name}: {message.strip()}"
                    for level, name, message in logs[before:]
                    if level <= av.logging.ERROR
                ]
    return errors


def wall_frames(origin: Origin, run_anchor_ms: dict[int, int] | None) -> list[WallFrame]:
    """Every frame at its wall time (see wall_of), in presentation order."""
    out = [
        WallFrame(
            number=f.number,
            wall_ms=wall_of(origin, run_anchor_ms, f.seq, f.run, f.pts_s),
            key=f.key,
            run=f.run,
        )
        for f in origin.frames
    ]
    out.sort(key=lambda f: f.wall_ms)
    return out


def wall_of(
    origin: Origin, run_anchor_ms: dict[int, int] | None, seq: int, run: int, pts_s: Fraction
) -> float:
    """Wall time of media time pts_s in segment seq: what the origin says it is.

    With PDT: that segment's PDT plus pts_s past the instant the PDT marks. Without
    (run_anchor_ms given): the wall time livecut gave the run's first segment, and media
    time continuous from there.
    """
    if run_anchor_ms is None:
        anchor = origin.anchors[seq]
        assert anchor.pdt_ms is not None, f"segment {seq} has no PDT"
        return anchor.pdt_ms + float(pts_s - anchor.anchor_pts_s) * 1000
    first = min((a for a in origin.anchors.values() if a.run == run), key=lambda a: a.seq)
    return run_anchor_ms[run] + float(pts_s - first.anchor_pts_s) * 1000


@dataclass(kw_only=True, slots=True)
class Verdict:
    start_error: int | None = None  # frames the output starts after (+) or before (-) truth
    end_error: int | None = None
    expected: tuple[int, int] | None = None  # first and last frame numbers the truth says
    got: tuple[int, int] | None = None
    decode_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.start_error == 0
            and self.end_error == 0
            and not self.decode_errors
            and not self.problems
        )


def covering(frames: list[WallFrame], walls: list[float], instant_ms: float) -> int:
    """Index of the frame on screen at instant_ms (the last one shown at or before it)."""
    index = bisect.bisect_right(walls, instant_ms) - 1
    if index < 0:
        raise ValueError(f"{instant_ms} is before the first frame")
    return index


def judge(
    *,
    frames: list[WallFrame],
    beep_offsets: dict[int, float],
    frame_s: float,
    start_ms: int,
    end_ms: int,
    accuracy: str,
    pieces: list[tuple[dict[str, object], Decoded]],
    audio_ends_ms: dict[int, float] | None = None,
) -> Verdict:
    """One clip (its MP4 pieces in order) against the truth. `audio_ends_ms`: per run,
    the wall time where the source's own audio ends."""
    verdict = Verdict(decode_errors=[e for _, d in pieces for e in d.errors])
    problems = verdict.problems
    walls = [f.wall_ms for f in frames]
    where = {f.number: i for i, f in enumerate(frames)}
    first = covering(frames, walls, start_ms)
    if accuracy == "keyframe":
        first = max((i for i in range(first + 1) if frames[i].key), default=0)
    last = covering(frames, walls, end_ms - 1)
    verdict.expected = (frames[first].number, frames[last].number)
    numbers = [n for _, d in pieces for _, n in d.frames]
    if not numbers:
        problems.append("no video frame decoded")
        return verdict
    verdict.got = (numbers[0], numbers[-1])
    unknown = [n for n in numbers if n not in where]
    if unknown:
        problems.append(f"frames not in the source (smeared or misread): {unknown[:5]}")
    indices = [where[n] for n in numbers if n in where]
    if indices:
        verdict.start_error = indices[0] - first
        verdict.end_error = indices[-1] - last
        expected = list(range(indices[0], indices[-1] + 1))
        if indices != expected:
            missing = sorted(set(expected) - set(indices))
            dupes = len(indices) - len(set(indices))
            problems.append(
                f"not one run of consecutive frames: {len(missing)} missing "
                f"(first {[frames[i].number for i in missing[:5]]}), {dupes} repeated"
            )
        if accuracy == "keyframe" and frames[indices[0]].wall_ms > start_ms:
            problems.append(
                f"keyframe clip starts after start_ms: frame {frames[indices[0]].number} "
                f"at {frames[indices[0]].wall_ms:.1f} > {start_ms}"
            )
    for n, (part, decoded) in enumerate(pieces):
        label = f"piece {n + 1}: " if len(pieces) > 1 else ""
        got = decoded.frames
        if not got:
            problems.append(f"{label}no video frame decoded")
            continue
        reported = _video_frames(part)
        if reported != len(got):
            problems.append(f"{label}reported {reported} video frames, decoded {len(got)}")
        first_known = next((frames[where[n]] for _, n in got if n in where), None)
        if first_known is not None and isinstance(part.get("start_ms"), int):
            off = part["start_ms"] - first_known.wall_ms  # type: ignore[operator]
            if abs(off) > 1.0:
                problems.append(
                    f"{label}reported start_ms is {off:+.1f} ms from the first frame's wall time"
                )
        before = len(problems)
        _check_spacing(frames, where, got, problems)
        _check_audio(
            decoded,
            got,
            frame_s,
            beep_offsets,
            problems,
            _audio_limit(frames, where, got, audio_ends_ms or {}),
        )
        problems[before:] = [label + p for p in problems[before:]]
    return verdict


def _video_frames(result: dict[str, object]) -> int | None:
    tracks = result.get("tracks")
    if not isinstance(tracks, list):
        return None
    for track in tracks:
        if isinstance(track, dict) and track.get("kind") == "video":
            frames = track.get("frames")
            return frames if isinstance(frames, int) else None
    return None


def _check_spacing(
    frames: list[WallFrame],
    where: dict[int, int],
    got: list[tuple[Fraction, int]],
    problems: list[str],
) -> None:
    """Within one run, each frame sits at its own wall offset from the clip's first frame."""
    known = [(t, frames[where[n]]) for t, n in got if n in where]
    if not known:
        return
    t0, f0 = known[0]
    for t, frame in known:
        if frame.run != f0.run:
            continue
        drift = float(t - t0) * 1000 - (frame.wall_ms - f0.wall_ms)
        if abs(drift) > 1.5:
            problems.append(f"frame {frame.number} shown {drift:+.1f} ms off its wall offset")
            return


def _audio_limit(
    frames: list[WallFrame],
    where: dict[int, int],
    got: list[tuple[Fraction, int]],
    audio_ends_ms: dict[int, float],
) -> Fraction | None:
    """Where, in the piece's time, the source's audio ends (if that is before its last
    frame is over): the end of a run whose encoder stopped its audio first."""
    last_t, last_number = max(got)
    if last_number not in where:
        return None
    frame = frames[where[last_number]]
    end_ms = audio_ends_ms.get(frame.run)
    if end_ms is None:
        return None
    return last_t + Fraction(round((end_ms - frame.wall_ms) * 1000), 1_000_000)


def _check_audio(
    decoded: Decoded,
    got: list[tuple[Fraction, int]],
    frame_s: float,
    beep_offsets: dict[int, float],
    problems: list[str],
    audio_limit: Fraction | None = None,
) -> None:
    if decoded.audio is None:
        problems.append("no audio in the clip")
        return
    audio_start, audio_end = decoded.audio
    video_start, video_end = got[0][0], got[-1][0] + Fraction(frame_s)
    if audio_limit is not None and audio_limit < video_end:
        video_end = audio_limit  # the source has no audio past here: none is owed
    for label, a, v in (("start", audio_start, video_start), ("end", audio_end, video_end)):
        if abs(float(a - v)) > AAC_FRAME_S + SYNC_TOLERANCE_S:
            problems.append(f"audio {label} {float(a - v) * 1000:+.1f} ms from video {label}")
    margin = Fraction(3 * 1024, 48_000)
    for t, number in got:
        offset = beep_offsets.get(number)
        if offset is None:
            continue
        onset_expected = t + Fraction(offset)
        if onset_expected < audio_start + margin or onset_expected + Fraction(1, 5) > audio_end:
            continue
        near = [o for o in decoded.onsets if abs(float(o - onset_expected)) < 0.1]
        if not near:
            problems.append(f"beep of frame {number} not found near {float(onset_expected):.3f}s")
            continue
        got_offset = float(near[0] - t)
        if abs(got_offset - offset) > SYNC_TOLERANCE_S:
            problems.append(
                f"A/V offset at frame {number}: {got_offset * 1000:+.1f} ms in the clip, "
                f"{offset * 1000:+.1f} ms in the source"
            )
