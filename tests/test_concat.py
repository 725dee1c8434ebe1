"""A run of stored segments opens as one input, whatever its paths are called."""

from __future__ import annotations

import shutil
from pathlib import Path

from livecut.media.concat import open_run
from livecut.media.synth import write_hls_fixture
from tests.engines import NO_INDEX

pytestmark = NO_INDEX


def packets(paths: list[Path], init: Path | None) -> list[tuple[int, int | None, bool]]:
    with open_run(paths, init) as source:
        return [(p.stream_index, p.pts, p.is_keyframe) for p in source.demux() if p.size]


def test_a_path_the_concat_protocol_cannot_name_is_read_through_python(tmp_path: Path) -> None:
    for container in ("ts", "fmp4"):
        plain = tmp_path / container
        write_hls_fixture(plain, segments=3, container=container)  # type: ignore[arg-type]
        odd = tmp_path / f"cam|{container}"  # '|' separates the concat protocol's parts
        shutil.copytree(plain, odd)
        extension = "ts" if container == "ts" else "m4s"
        init = "init.mp4" if container == "fmp4" else None
        names = [f"seg{i}.{extension}" for i in range(3)]
        expected = packets([plain / n for n in names], init and plain / init)
        assert len(expected) > 100
        assert packets([odd / n for n in names], init and odd / init) == expected
