"""Real encoders run live on 127.0.0.1: ffmpeg's HLS muxer, GStreamer hlssink2, nginx-rtmp.

Every process is started through Processes, which kills whatever is left on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from livecut.api.context import Handler
from tests.encoders.cases import Case
from tests.encoders.source import AUDIO_RATE, Mezzanine

_STOP_GRACE_S = 5.0


class Processes:
    """Owns every encoder process of a run; close() ends the ones still running."""

    def __init__(self) -> None:
        self._running: list[asyncio.subprocess.Process] = []

    async def run(self, args: list[str], log: Path) -> int:
        """Run one process to its end; its output goes to `log`."""
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        self._running.append(process)
        try:
            return await process.wait()
        finally:
            if process.returncode is None:
                await _stop(process)
            self._running.remove(process)

    async def start(self, args: list[str], log: Path) -> asyncio.subprocess.Process:
        """Start a long-lived process (nginx); close() stops it."""
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        self._running.append(process)
        return process

    async def close(self) -> None:
        running, self._running = self._running, []
        await asyncio.gather(*(_stop(p) for p in running))


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def static_origin(root: Path) -> AsyncIterator[str]:
    """Serve `root` over HTTP with caching forbidden; yields the base URL."""

    @web.middleware
    async def no_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    app = web.Application(middlewares=[no_cache])
    app.router.add_static("/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _x264_params(case: Case) -> list[str]:
    params = [p for p in (case.x264_params,) if p]
    return ["-x264-params", ":".join(params)] if params else []


def video_args(case: Case) -> list[str]:
    """ffmpeg output options for the case's video: small, cheap, a fixed GOP."""
    gop = str(case.gop_frames)
    if case.codec == "hevc":
        x265 = (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={case.bframes}:open-gop=0"
            ":pools=1:frame-threads=1:log-level=error"
        )
        return [
            "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
            "-b:v", "250k", "-x265-params", x265, "-pix_fmt", "yuv420p",
        ]  # fmt: skip
    return [
        "-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-pix_fmt", "yuv420p",
        "-crf", "26", "-maxrate", "500k", "-bufsize", "1000k",
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-bf", str(case.bframes),
        *_x264_params(case),
    ]  # fmt: skip


AUDIO_ARGS = ["-c:a", "aac", "-b:a", "64k", "-ar", str(AUDIO_RATE), "-ac", "1"]


def _inputs(case: Case, mezzanine: Mezzanine, seconds: float) -> list[str]:
    if not case.audio_lead_s:
        return ["-re", "-t", f"{seconds}", "-i", str(mezzanine.path)]
    # Two readings of one file: the picture's timestamps start later than the sound's.
    # Passthrough, or ffmpeg fills the lead by repeating the first picture four times.
    return [
        "-re", "-t", f"{seconds}", "-itsoffset", f"{case.audio_lead_s}", "-i", str(mezzanine.path),
        "-re", "-t", f"{seconds}", "-i", str(mezzanine.path),
        "-map", "0:v", "-map", "1:a", "-fps_mode", "passthrough",
    ]  # fmt: skip


def ffmpeg_hls(
    case: Case, mezzanine: Mezzanine, folder: Path, *, seconds: float, appending: bool = False
) -> list[str]:
    flags = ["temp_file"]
    if case.pdt:
        flags.append("program_date_time")
    if case.split_by_time:
        flags.append("split_by_time")
    if case.restart and not appending:
        flags.append("omit_endlist")  # the broadcast goes on after the restart
    if appending:
        flags += ["append_list", "discont_start"]
    extension = "m4s" if case.container == "fmp4" else "ts"
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
        *_inputs(case, mezzanine, seconds),
        *video_args(case), *AUDIO_ARGS,
        "-f", "hls", "-hls_time", f"{case.segment_s}", "-hls_list_size", "0",
        "-hls_segment_type", "fmp4" if case.container == "fmp4" else "mpegts",
        "-hls_flags", "+".join(flags),
        "-hls_segment_filename", str(folder / f"seg%05d.{extension}"),
        str(folder / "index.m3u8"),
    ]  # fmt: skip


def ffmpeg_rtmp(case: Case, mezzanine: Mezzanine, url: str, *, seconds: float) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
        *_inputs(case, mezzanine, seconds), *video_args(case), *AUDIO_ARGS, "-f", "flv", url,
    ]  # fmt: skip


def gstreamer_hls(case: Case, mezzanine: Mezzanine, folder: Path) -> list[str]:
    """A synced pipeline over the whole mezzanine: clocksync paces it to the pipeline clock."""
    pipeline = (
        f"filesrc location={mezzanine.path} ! qtdemux name=demux "
        "demux.video_0 ! queue ! h264parse ! avdec_h264 ! clocksync ! videoconvert ! "
        f"x264enc speed-preset=veryfast threads=1 bitrate=300 bframes={case.bframes} "
        f"key-int-max={case.gop_frames} ! h264parse ! queue ! sink.video "
        "demux.audio_0 ! queue ! audioconvert ! clocksync ! avenc_aac bitrate=64000 ! "
        "aacparse ! queue ! sink.audio "
        f"hlssink2 name=sink target-duration={round(case.segment_s)} playlist-length=0 "
        f"max-files=0 location={folder}/seg%05d.ts playlist-location={folder}/index.m3u8"
    )
    return ["gst-launch-1.0", "-q", "-e", *pipeline.split()]


class Nginx:
    """nginx with the RTMP module: RTMP in, HLS out (hls_fragment 2s), served over HTTP."""

    def __init__(self, folder: Path, *, fragment_s: float) -> None:
        self.folder = folder
        self.rtmp_port = free_port()
        self.http_port = free_port()
        (folder / "hls").mkdir(parents=True, exist_ok=True)
        (folder / "tmp").mkdir(exist_ok=True)
        temp = folder / "tmp"
        self.config = folder / "nginx.conf"
        self.config.write_text(
            f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp_port};
    application live {{
      live on;
      hls on;
      hls_path {folder}/hls;
      hls_fragment {fragment_s}s;
      hls_playlist_length 600s;
      hls_cleanup off;
    }}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  server {{
    listen 127.0.0.1:{self.http_port};
    location /hls/ {{ root {folder}; add_header Cache-Control no-store; }}
  }}
}}
"""
        )

    def args(self) -> list[str]:
        return ["nginx", "-e", str(self.folder / "error.log"), "-p", str(self.folder),
                "-c", str(self.config)]  # fmt: skip

    def rtmp_url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{name}"

    def playlist_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{name}.m3u8"

    async def wait_listening(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for port in (self.rtmp_port, self.http_port):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    if loop.time() > deadline:
                        raise AssertionError(f"nginx is not listening on {port}") from None
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                break
