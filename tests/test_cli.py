"""The command line as a newcomer meets it: demo, clip, check-config, serve."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import decode_clip

LINE_LIMIT = 200  # the demo's banner is a few dozen lines


def livecut(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livecut", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_demo_prints_a_clip_command_that_yields_a_playable_mp4(tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livecut",
        "demo",
        "--port",
        "0",
        "--data",
        str(tmp_path / "data"),
        "--duration",
        "120",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert demo.stdout is not None
        command = None
        for _ in range(LINE_LIMIT):
            line = (await asyncio.wait_for(demo.stdout.readline(), 60)).decode()
            if " clip --server " in line:
                command = line.strip()
                break
        assert command is not None, "the demo printed no clip command"
        server = re.search(r"--server (\S+)", command)
        assert server is not None
        output = tmp_path / "clip.mp4"
        clip = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecut",
            "clip",
            "--server",
            server.group(1),
            "--stream",
            "demo",
            "--last",
            "10s",
            "-o",
            str(output),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(clip.communicate(), 90)
        assert clip.returncode == 0, out.decode()
        assert "ready" in out.decode()
        decoded = decode_clip(output)
        # At least the 10 s asked for (it starts on the keyframe at or before the start).
        assert 10.0 <= decoded.video_end_s <= 11.2
        assert decoded.audio_end_s is not None and decoded.audio_end_s > 9.9
    finally:
        demo.send_signal(signal.SIGTERM)
        await asyncio.wait_for(demo.wait(), 30)
    assert demo.returncode == 0, "SIGTERM stops the demo cleanly"


def test_check_config_accepts_the_example() -> None:
    result = livecut("check-config", "config/livecut.example.toml")
    assert result.returncode == 0, result.stderr
    assert "ok: 2 stream(s)" in result.stdout


def test_check_config_names_every_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[server]\nlisten = "127.0.0.1:99999"\n\n'
        '[[streams]]\nid = "Bad Id"\nurl = "ftp://x/y.m3u8"\nretention = "5x"\n'
    )
    result = livecut("check-config", str(bad))
    assert result.returncode == 1
    for key in ("server.listen", "streams[0].id", "streams[0].url", "streams[0].retention"):
        assert key in result.stderr, result.stderr


def test_serve_refuses_a_bad_config_without_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = "0.0.0.0:8080"\n')
    result = livecut("serve", "--config", str(bad))
    assert result.returncode == 1
    assert "server.api_keys" in result.stderr


def test_clip_command_needs_a_range() -> None:
    result = livecut("clip", "--stream", "x")
    assert result.returncode == 2
    assert "--last" in result.stderr
