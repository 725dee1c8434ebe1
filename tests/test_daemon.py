"""Daemon-wide behaviour: metrics, API keys, retention, the stream views."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livecut import daemon as daemon_module
from livecut import metrics
from livecut.clips.jobs import KEYFRAME_LOOKBACK_MS, SPILL_LOOKAHEAD_MS, ClipRequest, Window
from livecut.daemon import Daemon
from livecut.origin import LiveOrigin
from tests.harness import daemon_config, running, session_ended, until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_and_stream_views(data_dir: Path) -> None:
    # Counters live as long as the process: another test of m1 (this one on the other
    # engine, say) may have counted before.
    counted = {
        name: metrics.REGISTRY.get_sample_value(name, {"stream": "m1"}) or 0.0
        for name in ("livecut_segments_ingested_total", "livecut_ingest_lag_seconds_count")
    }
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url, stream_id="m1")) as daemon:
            await until(daemon, "m1", lambda: session_ended(daemon, "m1"), timeout_s=20)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{daemon.base_url}/metrics") as response:
                    assert response.status == 200
                    values = samples(await response.text())
                async with http.get(f"{daemon.base_url}/v1/streams/m1") as response:
                    stream = await response.json()
                async with http.get(f"{daemon.base_url}/v1/streams/m1/sessions") as response:
                    sessions = (await response.json())["sessions"]
                async with http.get(f"{daemon.base_url}/v1/sessions/{sessions[0]['id']}") as r:
                    session = await r.json()
                async with http.get(f"{daemon.base_url}/healthz") as response:
                    assert (await response.json())["status"] == "ok"
    finally:
        await origin.stop()
    stream_label = (("stream", "m1"),)
    ingested = "livecut_segments_ingested_total"
    assert values[(ingested, stream_label)] - counted[ingested] == 3
    assert values[("livecut_ingested_bytes_total", stream_label)] > 10_000
    lags = "livecut_ingest_lag_seconds_count"
    assert values[(lags, stream_label)] - counted[lags] == 3
    assert values[("livecut_live_edge_age_seconds", stream_label)] >= 0
    assert ("livecut_clip_jobs", (("state", "ready"),)) in values
    assert values[("livecut_index_bytes", ())] > 0
    assert stream["state"] == "ended" and stream["segments_recorded"] == 3
    assert stream["live_edge_ms"] == origin.segment_pdt_ms(3)
    assert len(sessions) == 1 and sessions[0]["end_reason"] == "endlist"
    assert sessions[0]["start_ms"] == origin.segment_pdt_ms(0)
    assert session["clock"] == "origin" and session["renditions"][0]["name"] == "main"


async def test_api_keys_guard_the_api_but_not_health(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=1, end_after=1)
    url = await origin.start()
    config = daemon_config(data_dir, url)
    key = "k" * 32
    config = replace(config, server=replace(config.server, api_keys=(key,)))
    try:
        async with running(config) as daemon, aiohttp.ClientSession() as http:
            async with http.get(f"{daemon.base_url}/v1/streams") as response:
                assert response.status == 401
                assert "API key" in (await response.json())["errors"][0]
            wrong = {"Authorization": "Bearer " + "x" * 32}
            async with http.get(f"{daemon.base_url}/v1/streams", headers=wrong) as response:
                assert response.status == 401
            right = {"Authorization": f"Bearer {key}"}
            async with http.get(f"{daemon.base_url}/v1/streams", headers=right) as response:
                assert response.status == 200
            async with http.get(f"{daemon.base_url}/healthz") as response:
                assert response.status == 200
    finally:
        await origin.stop()


async def test_retention_removes_old_segments_but_not_what_a_job_reads(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 s segments, 80 of them: a job's reach (the keyframe look-back before its start,
    # the audio look-ahead after its end) covers the oldest, not all. Small pages: the
    # first ones hold only what the job reads, and retention must page on past them.
    monkeypatch.setattr(daemon_module, "RETENTION_BATCH", 4)
    count = 80
    origin = LiveOrigin(segment_ms=1000, prefill=count, end_after=count, window=count)
    url = await origin.start()
    offset = [0.0]
    config = daemon_config(data_dir, url)
    config = replace(config, streams=(replace(config.streams[0], retention_s=600.0),))
    try:
        daemon = Daemon(config, clock=lambda: time.time() + offset[0])
        try:
            await daemon.start()
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=60)
            segments = await daemon.store.index.stream_segments("cam", 0, 2**62)
            assert len(segments) == count
            assert (await daemon.retain()).segments_removed == 0, "nothing is older than 600 s yet"
            # A queued job (no worker takes it) over one early segment protects every
            # segment it may open.
            await daemon.jobs.stop()
            target = segments[5]
            await daemon.jobs.submit(
                ClipRequest(
                    stream_id="cam",
                    session_id=None,
                    windows=(Window(start_ms=target.start_ms + 100, end_ms=target.end_ms - 100),),
                )
            )
            # So does a pending shots job (no analysis worker either) over a later one.
            await daemon.analysis.stop()
            later = segments[count - 3]
            session_id = (await daemon.store.index.sessions("cam"))[0].id
            await daemon.analysis.submit_shots(
                stream_id="cam",
                session_id=session_id,
                clip_id=None,
                from_ms=later.start_ms,
                to_ms=later.end_ms,
                zero_ms=segments[0].start_ms,
            )
            reaches = [
                (
                    target.start_ms + 100 - KEYFRAME_LOOKBACK_MS,
                    target.end_ms - 100 + SPILL_LOOKAHEAD_MS,
                ),
                (later.start_ms - KEYFRAME_LOOKBACK_MS, later.end_ms + SPILL_LOOKAHEAD_MS),
            ]
            # And a read outside any job (a thumbnail decoding) over a segment in between.
            shown = segments[count // 2]
            reading = daemon.store.reading("cam", shown.start_ms + 10, shown.start_ms + 11)
            reading.__enter__()
            reaches.append((shown.start_ms + 10, shown.start_ms + 11))
            kept = [
                s.seq
                for s in segments
                if any(s.start_ms < end and s.end_ms > start for start, end in reaches)
            ]
            assert 0 < len(kept) < count
            offset[0] = 3600.0
            report = await daemon.retain()
            assert report.segments_removed == count - len(kept)
            left = await daemon.store.index.stream_segments("cam", 0, 2**62)
            assert [s.seq for s in left] == kept
            for segment in segments:
                assert (data_dir / segment.path).exists() == (segment.seq in kept)
            reading.__exit__(None, None, None)
            assert daemon.store.reads("cam") == []
            assert (await daemon.retain()).segments_removed == 1, "the read is over: it may go"
        finally:
            await daemon.stop()
    finally:
        await origin.stop()


async def test_restart_resumes_unfinished_clips(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=3, end_after=3)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url)) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            await daemon.jobs.stop()  # no workers: the job stays queued
            clip = await daemon.jobs.submit(
                ClipRequest(
                    stream_id="cam",
                    session_id=None,
                    windows=(
                        Window(start_ms=origin.segment_pdt_ms(0), end_ms=origin.segment_pdt_ms(2)),
                    ),
                )
            )
            assert clip.state == "queued"
        async with running(daemon_config(data_dir, url)) as daemon:
            done = await daemon.jobs.wait_finished(clip.id, timeout_s=30)
            assert done is not None and done.state == "ready"
            assert done.result is not None and done.result["start_ms"] == origin.segment_pdt_ms(0)
    finally:
        await origin.stop()


async def test_stream_state_metric(data_dir: Path) -> None:
    origin = LiveOrigin(prefill=2, end_after=2)
    url = await origin.start()
    try:
        async with running(daemon_config(data_dir, url, stream_id="m2")) as daemon:
            await until(daemon, "m2", lambda: session_ended(daemon, "m2"), timeout_s=20)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{daemon.base_url}/metrics") as response,
            ):
                values = samples(await response.text())
    finally:
        await origin.stop()
    assert values[("livecut_stream_state", (("state", "ended"), ("stream", "m2")))] == 1
    # The shipped alert rules only use metrics that exist.
    rules = (Path(__file__).parent.parent / "config" / "prometheus-alerts.yml").read_text()
    exported = {name for name, _ in values}
    for family in metrics.REGISTRY.collect():  # labelled families with no samples yet
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    assert set(re.findall(r"livecut_[a-z_]+", rules)) <= exported
    assert values[("livecut_stream_state", (("state", "recording"), ("stream", "m2")))] == 0
