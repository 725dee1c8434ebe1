"""A range across an encoder restart with a new resolution: one MP4 per set of parameters."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import av
from aiohttp import web

from livecut.media.synth import SyntheticStream, format_pdt
from tests.browser import serve
from tests.harness import daemon_config, running, session_ended, until
from tests.test_clips import PDT0, check_frames, clip_of, file_of, frame_covering

SEGMENTS = 3  # per encoder run, 2 s each, 25 fps: 50 frames a segment


def write_restart(folder: Path) -> Path:
    """320x180 for 6 s, then the encoder restarts at 640x360 (frames numbered on)."""
    folder.mkdir(parents=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    index = 0
    for part, (width, height) in enumerate([(320, 180), (640, 360)]):
        stream = SyntheticStream(width=width, height=height, first_frame=part * SEGMENTS * 50)
        try:
            if part:
                lines.append("#EXT-X-DISCONTINUITY")
            for _ in range(SEGMENTS):
                segment = stream.next_segment()
                name = f"p{part}-{segment.index}.ts"
                (folder / name).write_bytes(segment.data)
                lines += [
                    f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(PDT0 + index * 2000)}",
                    "#EXTINF:2.000,",
                    name,
                ]
                index += 1
        finally:
            stream.close()
    lines.append("#EXT-X-ENDLIST")
    playlist = folder / "index.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist


async def test_a_clip_across_a_resolution_change_comes_in_pieces(
    data_dir: Path, tmp_path: Path
) -> None:
    playlist = write_restart(tmp_path / "restart")
    app = web.Application()
    app.router.add_static("/vod", playlist.parent)
    async with serve(app) as base:
        config = daemon_config(data_dir, f"{base}/vod/{playlist.name}")
        async with running(config) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=20)
            start, end = PDT0 + 2530, PDT0 + 9370
            clip = await clip_of(
                daemon, {"start_ms": start, "end_ms": end, "formats": ["mp4", "hls"]}
            )
            result = clip.result
            assert result is not None
            pieces = result["pieces"]
            assert isinstance(pieces, list) and len(pieces) == 2
            assert any("2 MP4 files" in note for note in result["notes"])  # type: ignore[union-attr]
            first, second = file_of(daemon, clip), file_of(daemon, clip, "clip-2.mp4")
            # Each piece keeps its own parameters; together they hold every frame once.
            check_frames(first, frame_covering(start), 149)
            check_frames(second, 150, frame_covering(end - 1))
            for path, size in ((first, (320, 180)), (second, (640, 360))):
                with av.open(str(path)) as container:
                    video = container.streams.video[0].codec_context
                    assert (video.width, video.height) == size
            assert pieces[0]["end_ms"] == PDT0 + 6000
            assert pieces[1]["start_ms"] == PDT0 + 6000
            assert pieces[1]["file"]["name"] == "clip-2.mp4"
            assert result["files"]["mp4"]["name"] == "clip.mp4"  # type: ignore[index]
            text = (daemon.store.clip_dir(clip.id) / "index.m3u8").read_text()
            assert text.count("#EXT-X-DISCONTINUITY") == 1
            # Both pieces are linked and served.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{daemon.base_url}/v1/clips/{clip.id}") as response,
            ):
                links = (await response.json())["links"]
                assert "clip-2.mp4" in links
                async with http.get(links["clip-2.mp4"]) as download:
                    assert download.status == 200
                    assert await download.read() == second.read_bytes()
