"""Publish -> indexed against Debian's ffmpeg publishing live (-re), polled, TS and fMP4."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from livecut.metrics import REGISTRY
from tests.encoders.lag import measure, percentile, table

pytestmark = pytest.mark.slow

SECONDS = 80


def test_live_edge_lag_against_a_polled_ffmpeg_origin(tmp_path: Path) -> None:
    runs = asyncio.run(measure(("ts", "fmp4"), SECONDS, tmp_path))
    print(table(runs))
    for run in runs:
        assert run.encoder_exit == 0, run.container
        lags = run.lags_s()
        assert len(lags) >= SECONDS // 2 - 10, run.container
        assert run.missing() == [], run.container
        assert percentile(lags, 50) <= 0.5, (run.container, lags)
        assert percentile(lags, 99) <= 1.2, (run.container, lags)
        # ffmpeg's PDT is its own wall clock: the daemon trusts it and times publish by it.
        observed = REGISTRY.get_sample_value(
            "livecut_publish_to_indexed_seconds_count",
            {"stream": run.container, "clock": "origin"},
        )
        assert observed is not None and observed >= len(lags)
