"""Analysis through the API, on recordings with known events: shots jobs (manifest,
previews, webhook, DELETE, a restart), highlights cut as one clip, clip thumbnails,
animated previews and storyboards, each output decoded."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from livecut.analysis import jobs as analysis_jobs
from livecut.analysis.previews import preview_frame_count
from livecut.analysis.thumbnails import FitMode, encode_image
from livecut.clips.jobs import ClipRequest, Window
from livecut.config import Config, WebhookEndpoint, WebhooksConfig
from livecut.daemon import Daemon
from livecut.media.scenes import REEL, write_reel_hls
from livecut.media.synth import read_frame_number
from livecut.store.analysis import AnalysisJobRow
from livecut.store.index import INDEX_FILE
from livecut.webhooks.signing import HEADER, verify
from tests.browser import serve
from tests.engines import open_index
from tests.harness import daemon_config, recorded_vod, running, session_ended, until

PDT0 = 1_767_225_600_000
FRAME_MS = 1000 / REEL.fps
SECRET = "analysis-webhook-secret-0123"
PUBLIC = "https://lc.example.com/pre"


@dataclass
class Hooks:
    received: list[tuple[dict[str, object], bool]]
    arrived: asyncio.Event

    async def wait_for(self, event: str, timeout_s: float = 30) -> dict[str, object]:
        async def found() -> dict[str, object]:
            while True:
                for body, _ in self.received:
                    if body["type"] == event:
                        return body
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(found(), timeout_s)


@asynccontextmanager
async def reel_origin(folder: Path) -> AsyncIterator[str]:
    write_reel_hls(folder)
    app = web.Application()
    app.router.add_static("/reel", folder)
    async with serve(app) as origin:
        yield f"{origin}/reel/index.m3u8"


@asynccontextmanager
async def hook_receiver() -> AsyncIterator[tuple[str, Hooks]]:
    hooks = Hooks(received=[], arrived=asyncio.Event())

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        hooks.received.append((json.loads(raw), verify(SECRET, raw, request.headers[HEADER])))
        hooks.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve(app) as receiver:
        yield f"{receiver}/hook", hooks


def reel_config(data_dir: Path, url: str, hook_url: str) -> Config:
    base = daemon_config(data_dir, url)
    endpoint = WebhookEndpoint(
        name="app",
        url=hook_url,
        secret=SECRET,
        events=("shots.ready", "highlights.ready", "clip.ready"),
    )
    return replace(
        base,
        server=replace(base.server, public_url=PUBLIC),
        webhooks=WebhooksConfig(endpoints=(endpoint,), allow_private=True),
    )


def local(daemon: Daemon, url: str) -> str:
    """A link the API handed out (under public_url), fetched from the daemon itself."""
    assert url.startswith(PUBLIC), url
    return _bound(daemon) + url.removeprefix(PUBLIC)


def _bound(daemon: Daemon) -> str:
    runner = daemon._runner
    assert runner is not None
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


def webp_frames(data: bytes) -> list[Image.Image]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    frames = []
    for n in range(getattr(image, "n_frames", 1)):
        image.seek(n)
        frames.append(image.convert("RGB"))
    return frames


async def test_session_shots_job_previews_webhook_delete_and_errors(
    data_dir: Path, tmp_path: Path
) -> None:
    async with (
        reel_origin(tmp_path / "reel") as url,
        hook_receiver() as (hook_url, hooks),
        running(reel_config(data_dir, url, hook_url)) as daemon,
        aiohttp.ClientSession() as http,
    ):
        await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
        session = (await daemon.store.index.sessions("cam"))[0]
        api = _bound(daemon)
        path = f"{api}/v1/sessions/{session.id}/shots"
        async with http.get(path) as r:
            assert r.status == 404 and "POST" in (await r.json())["errors"][0]
        async with http.post(path) as r:
            assert r.status == 202, await r.text()
            created = await r.json()
            assert r.headers["Location"] == f"{PUBLIC}/v1/sessions/{session.id}/shots"
        assert created["status"] in ("pending", "processing")
        assert created["shots_manifest_url"] is None
        job = await daemon.analysis.wait_finished(created["id"], 60)
        assert job is not None and job.state == "completed", job
        async with http.get(path) as r:
            done = await r.json()
        assert done["status"] == "completed" and done["progress"] == 1.0
        async with http.get(f"{api}/metrics") as r:
            scraped = await r.text()
        assert 'livecut_analysis_jobs_finished_total{kind="shots",outcome="completed"}' in scraped
        manifest_url = done["shots_manifest_url"]
        assert manifest_url == f"{PUBLIC}/v1/shots/{job.id}/manifest.json"
        async with http.get(local(daemon, manifest_url)) as r:
            assert r.status == 200
            manifest = await r.json()
        shots = manifest["shots"]
        starts = [s["start_time"] for s in shots]
        # The session starts with the reel's first frame: start_time is reel time.
        assert session.started_ms == PDT0
        assert starts[0] == 0 and shots[0]["kind"] == "start"
        for expected in REEL.hard_cuts_s:
            near = [s for s in shots if abs(s["start_time"] - expected) * 1000 <= FRAME_MS + 1]
            assert len(near) == 1 and near[0]["kind"] == "cut", (expected, starts)
        dissolves = [s for s in shots if s["kind"] == "dissolve"]
        assert (
            len(dissolves) == 1
            and REEL.dissolve_s[0] <= dissolves[0]["start_time"] <= (REEL.dissolve_s[1])
        )
        assert len(shots) == len(REEL.hard_cuts_s) + 2
        for shot in shots:
            assert shot["start_ms"] == PDT0 + round(shot["start_time"] * 1000)
            preview = shot["shot_preview_image_url"]
            assert preview.startswith(f"{PUBLIC}/v1/shots/{job.id}/")
            async with http.get(local(daemon, preview)) as r:
                assert r.status == 200 and r.content_type == "image/webp"
                frames = webp_frames(await r.read())
            duration_s = (shot["end_ms"] - shot["start_ms"]) / 1000
            assert len(frames) == preview_frame_count(duration_s), (shot, len(frames))
        # The webhook: signed, sent once the job completed, with the manifest's URL.
        event = await hooks.wait_for("shots.ready")
        assert all(valid for _, valid in hooks.received)
        data = event["data"]
        assert isinstance(data, dict)
        assert data["id"] == job.id and data["shots_manifest_url"] == manifest_url

        # Errors name the field and what is allowed.
        async with http.post(path, json={"from_ms": PDT0 - 60_000}) as r:
            assert r.status == 422 and "within the session" in (await r.json())["errors"][0]
        async with http.post(path, json={"colour": 1}) as r:
            assert r.status == 422 and "allowed: from_ms, to_ms" in (await r.json())["errors"][0]
        async with http.post(f"{api}/v1/sessions/ses_nope/shots") as r:
            assert r.status == 404
        async with http.get(f"{api}/v1/clips/clip_nope/shots") as r:
            assert r.status == 404 and "unknown clip" in (await r.json())["errors"][0]
        async with http.get(f"{api}/v1/shots/{job.id}/999.webp") as r:
            assert r.status == 404 and "0.webp to" in (await r.json())["errors"][0]

        # DELETE takes the shots and their images.
        folder = daemon.analysis.job_dir(job.id)
        assert any(folder.iterdir())
        async with http.delete(path) as r:
            assert r.status == 204
        assert not folder.exists()
        async with http.get(path) as r:
            assert r.status == 404
        async with http.get(local(daemon, manifest_url)) as r:
            assert r.status == 404
        async with http.delete(path) as r:
            assert r.status == 404


async def shots_of_the_middle(daemon: Daemon) -> AnalysisJobRow:
    """A shots job of a slice of the recorded reel: its middle, from 4 s to 10 s."""
    session = (await daemon.store.index.sessions("cam"))[0]
    return await daemon.analysis.submit_shots(
        stream_id="cam",
        session_id=session.id,
        clip_id=None,
        from_ms=PDT0 + 4000,
        to_ms=PDT0 + 10_000,
        zero_ms=session.started_ms,
    )


async def test_a_shots_job_interrupted_by_a_restart_is_run_again(
    data_dir: Path, tmp_path: Path
) -> None:
    async with reel_origin(tmp_path / "reel") as url, hook_receiver() as (hook_url, _):
        config = reel_config(data_dir, url, hook_url)
        async with running(config) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
            job = await shots_of_the_middle(daemon)
        # As a crash would leave it: processing, nothing delivered.
        index = await open_index(data_dir / INDEX_FILE)
        try:
            await index.analysis.update_job(
                job.id, state="processing", now_ms=PDT0, result={"shots": []}
            )
        finally:
            await index.close()
        async with running(config) as daemon:
            finished = await daemon.analysis.wait_finished(job.id, 60)
            assert finished is not None and finished.state == "completed", finished
            assert finished.result is not None
            shots = finished.result["shots"]
            # Cuts at 5 s and 9 s lie inside the slice; the first shot starts at its start.
            assert [s["kind"] for s in shots] == ["start", "cut", "cut"]
            assert shots[0]["start_ms"] == PDT0 + 4000
            assert abs(shots[1]["start_ms"] - (PDT0 + 5000)) <= FRAME_MS + 1
            assert abs(shots[2]["start_ms"] - (PDT0 + 9000)) <= FRAME_MS + 1


async def test_a_clips_shots_are_written_with_it_and_survive_a_crash_after_it_is_cut(
    data_dir: Path, tmp_path: Path
) -> None:
    async with reel_origin(tmp_path / "reel") as url, hook_receiver() as (hook_url, _):
        config = reel_config(data_dir, url, hook_url)
        body = {"stream": "cam", "start_ms": PDT0 + 4000, "end_ms": PDT0 + 10_000}
        async with running(config) as daemon, aiohttp.ClientSession() as http:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
            # As if the daemon died the moment the clip was marked ready, before anything
            # that follows from it ran.
            daemon.jobs.on_finished = None
            api = _bound(daemon)
            async with http.post(f"{api}/v1/clips", json={**body, "generate_shots": True}) as r:
                assert r.status == 202, await r.text()
                clip_id = (await r.json())["id"]
            # Written with the clip: there from the first answer, waiting for the cut.
            async with http.get(f"{api}/v1/clips/{clip_id}/shots") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["status"] == "pending"
            clip = await daemon.jobs.wait_finished(clip_id, 30)
            assert clip is not None and clip.state == "ready"
            delivered_from, delivered_to = clip.delivered_span()
            job = await daemon.store.index.analysis.job_of(f"clip:{clip_id}")
            assert job is not None and job.state == "pending"
            # A clip that is not cut takes its shots job down with it, saying why (asked
            # for past the API's check: an hour before anything was recorded).
            daemon.jobs.on_finished = daemon.analysis.clip_done
            doomed = await daemon.jobs.submit(
                ClipRequest(
                    stream_id="cam",
                    session_id=None,
                    windows=(Window(start_ms=PDT0 - 3_600_000, end_ms=PDT0 - 3_598_000),),
                    meta={"generate_shots": True},
                )
            )
            failed_clip = await daemon.jobs.wait_finished(doomed.id, 30)
            assert failed_clip is not None and failed_clip.state == "failed"
            failed = await daemon.store.index.analysis.job_of(f"clip:{doomed.id}")
            assert failed is not None and failed.state == "failed"
            assert failed.error == f"the clip {doomed.id} was not cut: {failed_clip.error}"
        async with running(config) as daemon:
            finished = await daemon.analysis.wait_finished(job.id, 60)
            assert finished is not None and finished.state == "completed", finished
            # Run on what the clip delivered, timed from its first frame.
            assert (finished.from_ms, finished.to_ms) == (delivered_from, delivered_to)
            assert finished.result is not None
            shots = finished.result["shots"]
            assert [s["kind"] for s in shots] == ["start", "cut", "cut"]
            assert shots[0]["start_ms"] == finished.zero_ms == delivered_from


async def test_a_node_that_lost_a_shots_job_mid_run_leaves_it_to_the_new_holder(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        reel_origin(tmp_path / "reel") as url,
        hook_receiver() as (hook_url, hooks),
        running(reel_config(data_dir, url, hook_url)) as daemon,
    ):
        await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
        analysis = daemon.analysis
        monkeypatch.setattr(analysis, "lease_ms", 60_000)  # as on many nodes
        shots = analysis._shots
        ran = asyncio.Event()

        async def stalled_then_run(job: AnalysisJobRow) -> None:
            # While this node stalls, another node claims the job (its lease ran out).
            await daemon.store.index._sql.execute(
                "UPDATE analysis_jobs SET node_id = 'node-b' WHERE id = ?", (job.id,)
            )
            try:
                await shots(job)
            finally:
                ran.set()

        monkeypatch.setattr(analysis, "_shots", stalled_then_run)
        job = await shots_of_the_middle(daemon)
        await asyncio.wait_for(ran.wait(), 60)
        await asyncio.wait_for(analysis._queue.join(), 10)
        # Neither completed nor failed by this node, and its previews are gone: the
        # job is node-b's to finish.
        row = await daemon.store.index.analysis.job(job.id)
        assert row is not None and row.state == "processing" and row.result is None
        assert not analysis.job_dir(job.id).exists()
        assert not [body for body, _ in hooks.received if body["type"] == "shots.ready"]


async def test_highlights_are_cut_as_one_clip_with_explained_scores(
    data_dir: Path, tmp_path: Path
) -> None:
    async with (
        reel_origin(tmp_path / "reel") as url,
        hook_receiver() as (hook_url, hooks),
        running(reel_config(data_dir, url, hook_url)) as daemon,
        aiohttp.ClientSession() as http,
    ):
        await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
        session = (await daemon.store.index.sessions("cam"))[0]
        api = _bound(daemon)
        body = {
            "session": session.id,
            "max_clips": 2,
            "min_duration_ms": 3000,
            "max_duration_ms": 6000,
            "formats": ["mp4"],
        }
        async with http.post(f"{api}/v1/highlights", json=body) as r:
            assert r.status == 202, await r.text()
            created = await r.json()
        job = await daemon.analysis.wait_finished(created["id"], 90)
        assert job is not None and job.state == "completed", job
        async with http.get(f"{api}/v1/highlights/{job.id}") as r:
            done = await r.json()
        top = done["highlights"][0]
        burst_start, burst_end = (PDT0 + round(s * 1000) for s in REEL.burst_s)
        assert top["start_ms"] <= burst_start and top["end_ms"] >= burst_end, top
        assert 0 <= top["score"] <= 1 and top["score"] >= done["highlights"][1]["score"]
        parts = top["parts"]
        assert set(parts) == {"loudness", "rise", "shots", "motion", "text"}
        assert all(set(p) == {"value", "weight"} for p in parts.values())
        weighted = sum(p["value"] * p["weight"] for p in parts.values())
        total = sum(p["weight"] for p in parts.values())
        assert abs(weighted / total - top["score"]) < 0.01
        assert top["label"] in ("loud moment", "crowd reaction", "action")
        # One clip job, its windows the highlights (in time order), labelled.
        clip = await daemon.store.index.clip(done["clip"])
        assert clip is not None and clip.state == "ready"
        assert done["clip_url"] == f"{PUBLIC}/v1/clips/{clip.id}"
        windows = (clip.result or {})["windows"]
        assert isinstance(windows, list) and len(windows) == 2
        by_start = sorted(done["highlights"], key=lambda h: h["start_ms"])
        assert [w["label"] for w in windows] == [h["label"] for h in by_start]
        for window in windows:
            mp4 = daemon.store.clip_dir(clip.id) / window["files"]["mp4"]["name"]
            with av.open(str(mp4)) as container:
                assert sum(1 for _ in container.decode(video=0)) > 3 * REEL.fps * 0.9
        ready = await hooks.wait_for("highlights.ready")
        cut = await hooks.wait_for("clip.ready")
        assert all(valid for _, valid in hooks.received)
        assert ready["data"]["id"] == job.id  # type: ignore[index]
        assert cut["data"]["id"] == clip.id  # type: ignore[index]
        assert sum(1 for b, _ in hooks.received if b["type"] == "clip.ready") == 1

        # Windows given: exactly those are cut, nothing is scored.
        given = [
            {"start_ms": PDT0 + 1000, "end_ms": PDT0 + 2500, "label": "intro"},
            {"start_ms": PDT0 + 19_000, "end_ms": PDT0 + 21_000, "label": "save"},
        ]
        square = {"aspect_ratio": "1:1", "preset": "ultrafast"}  # each window rendered
        async with http.post(
            f"{api}/v1/highlights", json={"stream": "cam", "windows": given, "render": square}
        ) as r:
            assert r.status == 202, await r.text()
            chosen = await daemon.analysis.wait_finished((await r.json())["id"], 60)
        assert chosen is not None and chosen.state == "completed"
        assert chosen.result is not None
        assert [
            (h["start_ms"], h["end_ms"], h["label"], h["score"])
            for h in chosen.result["highlights"]
        ] == [(w["start_ms"], w["end_ms"], w["label"], None) for w in given]
        assert chosen.clip_id is not None
        rendered = await daemon.store.index.clip(chosen.clip_id)
        assert rendered is not None and rendered.result is not None
        for window in rendered.result["windows"]:  # type: ignore[union-attr]
            mp4 = daemon.store.clip_dir(rendered.id) / window["files"]["mp4"]["name"]
            with av.open(str(mp4)) as container:
                video = container.streams.video[0]
                assert video.width == video.height == window["render"]["width"]

        for bad, fragment in (
            ({**body, "max_clips": 11}, "max_clips must be an integer from 1 to 10"),
            ({**body, "min_duration_ms": 100}, "min_duration_ms must be an integer from 500"),
            ({**body, "instruction": 5}, "instruction must be a string"),
            ({**body, "colour": "red"}, "allowed: stream, session"),
            ({"stream": "cam"}, "from_ms is required"),
            ({**body, "formats": ["gif"]}, "formats must be"),
        ):
            async with http.post(f"{api}/v1/highlights", json=bad) as r:
                assert r.status == 422, (bad, await r.text())
                assert fragment in " ".join((await r.json())["errors"]), bad
        async with http.get(f"{api}/v1/highlights/high_nope") as r:
            assert r.status == 404

        # The timeline's loudness envelope: the burst (11-12.5 s) is its loudest stretch.
        timeline = f"{api}/v1/streams/cam/timeline?from_ms={PDT0}&to_ms={PDT0 + 24_000}"
        async with http.get(f"{timeline}&loudness_ms=1000") as r:
            assert r.status == 200, await r.text()
            buckets = (await r.json())["loudness"]
        assert [b["start_ms"] for b in buckets] == [PDT0 + n * 1000 for n in range(24)]
        levels = [b["momentary_lufs"] for b in buckets]
        assert all(isinstance(v, float) for v in levels[1:]), levels
        loudest = max(range(24), key=lambda n: levels[n] or -100.0)
        assert loudest in (11, 12), levels
        assert (levels[11] or 0) - (levels[5] or 0) > 25, levels
        for query in ("loudness_ms=5", "loudness_ms=x"):
            async with http.get(f"{timeline}&{query}") as r:
                assert r.status == 400 and "loudness_ms" in (await r.json())["errors"][0]


async def test_clip_thumbnail_animated_preview_and_storyboard_show_exact_frames(
    data_dir: Path, tmp_path: Path
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon, aiohttp.ClientSession() as http:
        api = daemon.base_url
        body = {
            "stream": "cam",
            "start_ms": PDT0 + 1500,
            "end_ms": PDT0 + 6500,
            "generate_shots": True,
        }
        async with http.post(f"{api}/v1/clips", json=body) as r:
            assert r.status == 202, await r.text()
            clip_id = (await r.json())["id"]
        async with http.get(f"{api}/v1/clips/{clip_id}/thumbnail.jpg?time=1") as r:
            assert r.status in (409, 200)  # not cut yet (or already)
        clip = await daemon.jobs.wait_finished(clip_id, 30)
        assert clip is not None and clip.state == "ready"
        # 25 fps: the clip's first frame is frame 37 (1.48 s); 2.52 s later is frame 100.
        for time_s, frame in (("0", 37), ("2.52", 100), ("2.519", 99), ("4.99", 161)):
            async with http.get(
                f"{api}/v1/clips/{clip_id}/thumbnail.png", params={"time": time_s}
            ) as r:
                assert r.status == 200, await r.text()
                picture = Image.open(io.BytesIO(await r.read())).convert("RGB")
            assert read_frame_number(av.VideoFrame.from_image(picture)) == frame, time_s
        for query, fragment in (
            ("time=6", "less than 5.04"),
            ("time=-1", "time must"),
            ("t=1", ""),
        ):
            async with http.get(f"{api}/v1/clips/{clip_id}/thumbnail.jpg?{query}") as r:
                assert r.status == 400 and fragment in (await r.json())["errors"][0], query
        # generate_shots: the clip's own shots job, timed from its first frame.
        shots_job = None

        async def started() -> bool:
            nonlocal shots_job
            shots_job = await daemon.store.index.analysis.job_of(f"clip:{clip_id}")
            return shots_job is not None

        await until(daemon, "cam", started, timeout_s=10)
        assert shots_job is not None
        finished = await daemon.analysis.wait_finished(shots_job.id, 30)
        assert finished is not None and finished.state == "completed"
        async with http.get(f"{api}/v1/shots/{finished.id}/manifest.json") as r:
            manifest = await r.json()
        assert manifest["clip"] == clip_id and manifest["shots"][0]["start_time"] == 0
        assert manifest["shots"][0]["start_ms"] == PDT0 + 1480
        async with http.post(f"{api}/v1/clips/{clip_id}/shots", json={"x": 1}) as r:
            assert r.status == 422
            assert "allowed: callback_url, callback_id" in (await r.json())["errors"][0]

        # An animated preview: 4 fps over 2 s, each frame the one presented at its instant.
        params = {"from_ms": str(PDT0 + 2000), "to_ms": str(PDT0 + 4000), "fps": "4"}
        async with http.get(f"{api}/v1/streams/cam/animated.webp", params=params) as r:
            assert r.status == 200, await r.text()
            frames = webp_frames(await r.read())
        numbers = [read_frame_number(av.VideoFrame.from_image(f)) for f in frames]
        assert numbers == [50, 56, 62, 68, 75, 81, 87, 93], numbers  # floor(t * 25 / 1000)
        for bad, fragment in (
            ({**params, "fps": "60"}, "fps must be an integer from 1 to 10"),
            ({**params, "width": "5000"}, "width must be an integer from 16 to 640"),
            ({**params, "to_ms": str(PDT0 + 60_000)}, "at most 30000 ms"),
            ({"from_ms": params["from_ms"]}, "to_ms is required"),
        ):
            async with http.get(f"{api}/v1/streams/cam/animated.webp", params=bad) as r:
                assert r.status == 400 and fragment in (await r.json())["errors"][0], bad

        # A storyboard of the session: a tile a second on one sheet, cues naming each tile.
        session = (await daemon.store.index.sessions("cam"))[0]
        async with http.get(
            f"{api}/v1/sessions/{session.id}/storyboard.vtt", params={"width": "320"}
        ) as r:
            assert r.status == 200 and r.content_type == "text/vtt"
            vtt = await r.text()
        cues = [line for line in vtt.splitlines() if "#xywh=" in line]
        assert vtt.startswith("WEBVTT") and len(cues) == 10  # 10 s at one tile a second
        assert "00:00:03.000 --> 00:00:04.000" in vtt
        sheet_url, _, xywh = cues[3].partition("#xywh=")
        x, y, w, h = (int(v) for v in xywh.split(","))
        assert (x, y, w, h) == (3 * 320, 0, 320, 180)
        async with http.get(sheet_url) as r:
            assert r.status == 200 and r.content_type == "image/jpeg"
            sheet = Image.open(io.BytesIO(await r.read())).convert("RGB")
        assert sheet.size == (3200, 180)
        tile = sheet.crop((x, y, x + w, y + h))
        # Keyframes every second: tile 3 shows the keyframe at 3 s, frame 75.
        assert read_frame_number(av.VideoFrame.from_image(tile)) == 75
        async with http.get(
            f"{api}/v1/streams/cam/storyboard.vtt",
            params={"from_ms": str(PDT0), "to_ms": str(PDT0 + 10_000), "interval_ms": "50"},
        ) as r:
            assert (
                r.status == 400
                and "interval_ms must be an integer from 1000" in (await r.json())["errors"][0]
            )
        async with http.get(
            f"{api}/v1/streams/cam/storyboard.webp",
            params={"from_ms": str(PDT0), "to_ms": str(PDT0 + 10_000), "interval_ms": "5000"},
        ) as r:
            assert r.status == 200 and r.content_type == "image/webp"
            assert Image.open(io.BytesIO(await r.read())).size == (320, 90)
        for kind in ("jpg", "webp", "vtt"):
            async with http.get(f"{api}/v1/sessions/ses_nope/storyboard.{kind}") as r:
                assert r.status == 404 and "unknown session" in (await r.json())["errors"][0]

        # A clip's shots go with it.
        folder = daemon.analysis.job_dir(finished.id)
        assert folder.is_dir()
        async with http.delete(f"{api}/v1/clips/{clip_id}") as r:
            assert r.status == 204
        assert not folder.exists()
        assert await daemon.store.index.analysis.job(finished.id) is None
        async with http.get(f"{api}/v1/clips/{clip_id}/shots") as r:
            assert r.status == 404


@pytest.mark.parametrize(
    ("width", "height", "fit_mode", "size"),
    [
        (None, None, "preserve", (320, 180)),
        (160, None, "preserve", (160, 90)),
        (None, 90, "crop", (160, 90)),
        (100, 100, "preserve", (100, 56)),
        (100, 100, "stretch", (100, 100)),
        (100, 100, "crop", (100, 100)),
        (100, 100, "pad", (100, 100)),
    ],
)
def test_thumbnail_sizes_follow_the_fit_mode(
    width: int | None, height: int | None, fit_mode: FitMode, size: tuple[int, int]
) -> None:
    picture = np.zeros((180, 320, 3), np.uint8)
    picture[:, :, 1] = 200  # green everywhere: a pad shows as black bars, a crop does not
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    data = encode_image(frame, "png", width=width, height=height, fit_mode=fit_mode)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == size
    corner = image.getpixel((0, 0))
    assert isinstance(corner, tuple)
    if fit_mode == "pad":
        assert corner == (0, 0, 0)
    else:
        assert corner[1] > 150


async def test_an_instruction_picks_the_window_whose_subtitles_say_it(
    data_dir: Path, tmp_path: Path
) -> None:
    """The reel with its captions as a WebVTT subtitles rendition of a master playlist."""
    folder = tmp_path / "reel"
    write_reel_hls(folder)
    (folder / "subs.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:24\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n"
        "#EXTINF:24.000,\ncaptions.vtt\n#EXT-X-ENDLIST\n"
    )
    (folder / "master.m3u8").write_text(
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",'
        'DEFAULT=YES,AUTOSELECT=YES,URI="subs.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x180,SUBTITLES="subs"\n'
        "index.m3u8\n"
    )
    app = web.Application()
    app.router.add_static("/reel", folder)
    async with (
        serve(app) as origin,
        hook_receiver() as (hook_url, _),
        running(reel_config(data_dir, f"{origin}/reel/master.m3u8", hook_url)) as daemon,
        aiohttp.ClientSession() as http,
    ):
        await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
        session = (await daemon.store.index.sessions("cam"))[0]
        body = {
            "session": session.id,
            "max_clips": 1,
            "min_duration_ms": 3000,
            "max_duration_ms": 6000,
            "instruction": "show me the goalkeeper",
        }
        async with http.post(f"{_bound(daemon)}/v1/highlights", json=body) as r:
            assert r.status == 202, await r.text()
            job = await daemon.analysis.wait_finished((await r.json())["id"], 90)
        assert job is not None and job.state == "completed", job
        assert job.result is not None
        (top,) = job.result["highlights"]
        spoken = next(c for c in REEL.captions if "goalkeeper" in c.text)
        said_from, said_to = (PDT0 + round(s * 1000) for s in (spoken.start_s, spoken.end_s))
        assert top["start_ms"] < said_to and top["end_ms"] > said_from, top
        assert top["parts"]["text"]["value"] == 1.0
        assert "goalkeeper" in top["label"]
        clip = await daemon.store.index.clip(job.clip_id or "")
        assert clip is not None and clip.state == "ready"
        window = (clip.result or {})["windows"][0]
        assert "goalkeeper" in window["label"]


async def test_a_clips_own_shots_start_even_when_the_analysis_queue_is_full(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recorded_vod(data_dir, tmp_path / "vod") as daemon, aiohttp.ClientSession() as http:
        api = daemon.base_url
        body = {"stream": "cam", "start_ms": PDT0 + 1500, "end_ms": PDT0 + 3500}
        await daemon.analysis.stop()  # nothing takes jobs off the queue
        monkeypatch.setattr(analysis_jobs, "QUEUE_LIMIT", 0)  # and it counts as full
        session = (await daemon.store.index.sessions("cam"))[0]
        async with http.post(f"{api}/v1/sessions/{session.id}/shots", json={}) as r:
            assert r.status == 429, "a new request is refused while the queue is full"
        async with http.post(f"{api}/v1/clips", json={**body, "generate_shots": True}) as r:
            assert r.status == 202, await r.text()
            clip_id = (await r.json())["id"]
        clip = await daemon.jobs.wait_finished(clip_id, 30)
        assert clip is not None and clip.state == "ready"
        job = await daemon.store.index.analysis.job_of(f"clip:{clip_id}")
        assert job is not None and job.state == "pending", "accepted with its clip: queued"
