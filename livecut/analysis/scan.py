"""Decoded pictures and audio of a wall-clock range of a recording, each placed on the wall
clock by its run's PDTs (the I/O shell of shots, previews, storyboards and highlights)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from livecut.analysis.frames import ANALYSIS_SIZE, decoded_frames, video_fps
from livecut.clips.planner import NothingRecorded, PlannedRun, plan_clip
from livecut.media.clock import unwrap_s
from livecut.media.concat import open_run
from livecut.store.records import SegmentRow, segment_files

Picture = npt.NDArray[np.uint8]
PathOf = Callable[[str], Path]
LOUDNESS_RATE = 48_000


def planned_runs(segments: Sequence[SegmentRow], from_ms: int, to_ms: int) -> list[PlannedRun]:
    """The runs holding [from_ms, to_ms), decoding from the keyframe at or before from_ms."""
    video = [s for s in segments if s.has_video]
    if not video:
        raise NothingRecorded(f"no video is recorded between {from_ms} and {to_ms}")
    return list(plan_clip(video, from_ms, to_ms).runs)


def run_paths(run: PlannedRun, path_of: PathOf) -> tuple[list[Path], Path | None]:
    first = run.segments[0]
    init = None if first.init_path is None else path_of(first.init_path)
    return [path_of(s.path) for s in run.segments], init


def run_files(runs: Sequence[PlannedRun]) -> list[str]:
    """The relpaths reading these runs opens, to fetch them first (Store.fetched)."""
    return segment_files(s for run in runs for s in run.segments)


def size_files(runs: Sequence[PlannedRun]) -> list[str]:
    """The relpaths video_size and range_fps open: the first segment, and its init."""
    return segment_files(runs[0].segments[:1])


def range_fps(runs: Sequence[PlannedRun], path_of: PathOf) -> float:
    paths, init = run_paths(runs[0], path_of)
    return video_fps(paths[:1], init)


def frames_in_range(
    runs: Sequence[PlannedRun],
    from_ms: int,
    to_ms: int,
    path_of: PathOf,
    *,
    size: tuple[int, int] = ANALYSIS_SIZE,
    pixel_format: str = "bgr24",
    keyframes_only: bool = False,
) -> Iterator[tuple[float, Picture]]:
    """(wall ms, picture) of every frame presented in [from_ms, to_ms), in order.

    MPEG-TS timestamps that wrap inside a run are unwrapped onto the run's first segment,
    so a recording that crosses the 26.5 h wrap stays in order.
    """
    for run in runs:
        paths, init = run_paths(run, path_of)
        previous = run.refs_s[0]
        for media_s, picture in decoded_frames(
            paths, init, size=size, pixel_format=pixel_format, keyframes_only=keyframes_only
        ):
            media_s = unwrap_s(media_s, previous, wraps=run.wraps)
            previous = media_s
            wall_ms = run.wall_ms(media_s)
            if wall_ms < from_ms - 0.5 and not keyframes_only:
                continue
            if wall_ms >= to_ms - 0.5:
                break
            yield wall_ms, picture


def audio_in_range(
    runs: Sequence[PlannedRun], from_ms: int, to_ms: int, path_of: PathOf
) -> tuple[npt.NDArray[np.float32], float]:
    """Mono samples at LOUDNESS_RATE over [from_ms, to_ms) and the wall ms of the first.

    Runs are laid end to end; a hole between them is filled with silence so that sample
    positions stay wall-clock positions.
    """
    chunks: list[npt.NDArray[np.float32]] = []
    first_ms: float | None = None
    placed = 0  # samples laid so far
    for run in runs:
        paths, init = run_paths(run, path_of)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=LOUDNESS_RATE)
        with open_run(paths, init, decode=True) as container:
            if not container.streams.audio:
                continue
            stream = container.streams.audio[0]
            previous = run.refs_s[0]
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                media_s = unwrap_s(float(frame.pts * frame.time_base), previous, wraps=run.wraps)
                previous = media_s
                wall_ms = run.wall_ms(media_s)
                if wall_ms + frame.samples * 1000 / frame.sample_rate <= from_ms:
                    continue
                if wall_ms >= to_ms:
                    break
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.float32)
                    if first_ms is None:
                        first_ms = wall_ms
                    expected = round((wall_ms - first_ms) * LOUDNESS_RATE / 1000)
                    if expected > placed + LOUDNESS_RATE // 10:
                        # A hole of more than 100 ms: silence keeps later samples in place.
                        chunks.append(np.zeros(expected - placed, np.float32))
                        placed = expected
                    chunks.append(samples)
                    placed += len(samples)
                    wall_ms += len(samples) * 1000 / LOUDNESS_RATE
    if first_ms is None:
        return np.zeros(0, np.float32), float(from_ms)
    return np.concatenate(chunks), first_ms


def pictures_at(
    frames: Iterator[tuple[float, Picture]], instants: Sequence[float]
) -> list[Picture]:
    """For each instant (in order), the picture presented then: the last frame at or before
    it (the first frame, for an instant before every frame). Reads frames only as far as
    the last instant needs."""
    chosen: list[Picture] = []
    shown: Picture | None = None
    pending = list(instants)
    for wall_ms, picture in frames:
        while pending and wall_ms > pending[0] + 0.5:
            chosen.append(picture if shown is None else shown)
            pending.pop(0)
        if not pending:
            break
        shown = picture
    if shown is not None:
        chosen += [shown] * len(pending)
    return chosen


def video_size(runs: Sequence[PlannedRun], path_of: PathOf) -> tuple[int, int]:
    """The coded picture size of the first run (width, height)."""
    paths, init = run_paths(runs[0], path_of)
    with open_run(paths[:1], init, decode=True) as container:
        if not container.streams.video:
            raise NothingRecorded("the recording has no video")
        context = container.streams.video[0].codec_context
        return int(context.width), int(context.height)


def scaled(size: tuple[int, int], width: int) -> tuple[int, int]:
    """`width` wide (even, as encoders like), the height following the aspect ratio."""
    src_w, src_h = size
    height = max(2, round(src_h * width / max(1, src_w) / 2) * 2)
    return max(2, width - width % 2), height
