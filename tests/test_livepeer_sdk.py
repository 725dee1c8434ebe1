"""The official `livepeer` Python SDK (PyPI), pointed at livecut's /api, works end to end."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from livepeer import Livepeer
from livepeer.models import components

from livecut.origin import LiveOrigin
from tests.harness import daemon_config, decode_clip, running, until

KEY = "sdk-test-key-0123456789"


async def test_livepeer_sdk_clips_a_live_stream(data_dir: Path, tmp_path: Path) -> None:
    origin = LiveOrigin(segment_ms=1000, window=10, prefill=6)
    url = await origin.start()
    base = daemon_config(data_dir, url)
    config = replace(
        base,
        server=replace(base.server, api_keys=(KEY,)),
        streams=(replace(base.streams[0], playback_id="cam-playback"),),
    )
    try:
        async with running(config) as daemon:

            async def recorded() -> bool:
                live = await daemon.store.index.live_session("cam")
                return live is not None and (live.live_edge_ms or 0) - live.started_ms >= 5000

            await until(daemon, "cam", recorded, timeout_s=30)
            live = await daemon.store.index.live_session("cam")
            assert live is not None and live.live_edge_ms is not None
            edge = live.live_edge_ms
            sdk = Livepeer(api_key=KEY, server_url=f"{daemon.base_url}/api")

            def create() -> components.Asset:
                # The SDK sends float times, as a browser app's Date.now() would.
                created = sdk.stream.create_clip(
                    request={
                        "playback_id": "cam-playback",
                        "start_time": float(edge - 4000),
                        "end_time": float(edge - 1000),
                        "name": "sdk clip",
                    }
                )
                assert created.data is not None, created
                assert created.data.task.id is not None
                return created.data.asset

            asset = await asyncio.to_thread(create)
            assert asset.source.type == "clip"  # type: ignore[union-attr]
            assert asset.status is not None and asset.status.phase in (
                components.AssetPhase.WAITING,
                components.AssetPhase.PROCESSING,
                components.AssetPhase.READY,
            )

            def until_ready() -> components.Asset:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    got = sdk.asset.get(asset_id=asset.id)
                    assert got.asset is not None
                    assert got.asset.status is not None
                    if got.asset.status.phase == components.AssetPhase.READY:
                        return got.asset
                    assert got.asset.status.phase != components.AssetPhase.FAILED, got.asset
                    time.sleep(0.2)
                raise AssertionError("the asset never became ready")

            ready = await asyncio.to_thread(until_ready)
            assert ready.download_url is not None and ready.download_url.startswith("http://")
            assert ready.video_spec is not None and ready.video_spec.duration is not None
            assert 2.9 <= ready.video_spec.duration <= 3.1
            assert ready.size is not None and ready.size > 0
            async with (
                aiohttp.ClientSession() as http,
                http.get(ready.download_url, headers={"Authorization": f"Bearer {KEY}"}) as r,
            ):
                assert r.status == 200
                target = tmp_path / "sdk.mp4"
                target.write_bytes(await r.read())
            decoded = decode_clip(target)
            assert 70 <= len(decoded.frames) <= 80  # 3 s of 25 fps
            assert decoded.audio_start_s is not None

            def the_rest() -> None:
                # An endTime left out means "up to now": the clip waits for the live edge.
                open_ended = sdk.stream.create_clip(
                    request={"playback_id": "cam", "start_time": time.time() * 1000 - 3000}
                )
                assert open_ended.data is not None
                task_id = open_ended.data.task.id
                assert task_id is not None

                task = sdk.task.get(task_id=task_id)
                assert task.task is not None and task.task.status is not None
                assert task.task.type == components.TaskType.CLIP
                assert task.task.output_asset_id == open_ended.data.asset.id

                session_clips = sdk.session.get_clips(id=live.id)
                assert session_clips.data is not None
                assert asset.id in {a.id for a in session_clips.data}

                stream_clips = sdk.stream.get_clips(id="cam-playback")
                assert stream_clips.data is not None
                assert {asset.id, open_ended.data.asset.id} <= {a.id for a in stream_clips.data}

                info = sdk.playback.get(id=asset.id)
                assert info.playback_info is not None
                assert info.playback_info.type == components.PlaybackInfoType.VOD
                sources = {s.hrn: s for s in info.playback_info.meta.source}
                assert sources[components.Hrn.MP4].url == ready.download_url

                live_info = sdk.playback.get(id="cam-playback")
                assert live_info.playback_info is not None
                assert live_info.playback_info.type == components.PlaybackInfoType.LIVE

                stream = sdk.stream.get(id="cam")
                assert stream.stream is not None and stream.stream.is_active is True
                session = sdk.session.get(id=live.id)
                assert session.session is not None and session.session.parent_id == "cam"

                deadline = time.monotonic() + 60
                while True:
                    done = sdk.task.get(task_id=task_id).task
                    assert done is not None and done.status is not None
                    if done.status.phase == components.TaskPhase.COMPLETED:
                        break
                    assert done.status.phase != components.TaskPhase.FAILED, done
                    assert time.monotonic() < deadline, "the open-ended clip never completed"
                    time.sleep(0.2)

            await asyncio.to_thread(the_rest)
    finally:
        await origin.stop()
