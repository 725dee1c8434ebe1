"""livecut under systemd: the notify protocol, reload on SIGHUP, the unit and its sandbox.

The daemon runs as a subprocess (`python -m livecut serve`) with a fake service manager:
a datagram socket bound here and named by NOTIFY_SOCKET.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecut.origin import LiveOrigin
from livecut.store.index import INDEX_FILE, Index
from tests.engines import open_index
from tests.harness import decode_clip

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "livecut.service"
POLL_S = 0.2
SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it
POLL_LIMIT = 300  # 60 s at most
Fields = Mapping[str, str]


class ServiceManager:
    """The notify socket a service manager would hold: every datagram, with its arrival time.

    Arrival times are the kernel's (SO_TIMESTAMPNS), so a busy test loop reading late does
    not bunch them up.
    """

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET names it: a path, or "@name"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._socket.setblocking(False)
        self.received: list[tuple[float, dict[str, str]]] = []

    async def next(self, wanted: Callable[[Fields], bool], *, timeout_s: float) -> Fields:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                recent = [fields for _, fields in self.received[-5:]]
                raise AssertionError(f"no such notification within {timeout_s}s; last: {recent}")
            try:
                data, ancillary, _, _ = self._socket.recvmsg(65536, socket.CMSG_SPACE(16))
            except BlockingIOError:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._readable(), left)
                continue
            (level, kind, stamp), *_ = ancillary
            assert (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS)
            seconds, nanoseconds = struct.unpack("qq", stamp[:16])
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((seconds + nanoseconds / 1e9, fields))
            if wanted(fields):
                return fields

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(self._socket.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(self._socket.fileno())

    def close(self) -> None:
        self._socket.close()


def ready(fields: Fields) -> bool:
    return fields.get("READY") == "1"


def status_says(text: str) -> Callable[[Fields], bool]:
    return lambda fields: text in fields.get("STATUS", "")


def write_config(
    path: Path, data_dir: Path, streams: Mapping[str, str], *, extra: str = ""
) -> None:
    blocks = [f'[[streams]]\nid = "{sid}"\nurl = "{url}"\n{extra}' for sid, url in streams.items()]
    server = f'[server]\nlisten = "127.0.0.1:0"\ndata_dir = "{data_dir}"\n'
    path.write_text(server + "\n" + "\n".join(blocks))


async def serve(
    config: Path,
    manager: ServiceManager,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = ("-m", "livecut"),
) -> asyncio.subprocess.Process:
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "serve",
            "--config",
            str(config),
            env={**os.environ, **(env or {}), "NOTIFY_SOCKET": manager.address},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def stop(proc: asyncio.subprocess.Process, manager: ServiceManager) -> Fields:
    proc.send_signal(signal.SIGTERM)
    stopping = await manager.next(lambda f: f.get("STOPPING") == "1", timeout_s=30)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    return stopping


def api_of(fields: Fields) -> str:
    found = re.search(r"API on (http://\S+?)(;|$)", fields["STATUS"])
    assert found is not None, fields
    return found.group(1)


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, url
        return await response.json()


async def test_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    config = tmp_path / "livecut.toml"
    write_config(config, tmp_path / "data", {"cam": url})
    # The abstract namespace form, as systemd's own socket is named in containers.
    manager = ServiceManager(f"@livecut-test-{uuid.uuid4().hex}")
    period_s = 0.2
    env = {"WATCHDOG_USEC": str(int(period_s * 2 * 1_000_000))}
    proc = await serve(config, manager, tmp_path / "log", env=env)
    try:
        started = await manager.next(ready, timeout_s=60)
        # READY=1 means the API answers now, not soon.
        async with aiohttp.ClientSession() as http:
            health = await get_json(http, f"{api_of(started)}/healthz")
        assert health["status"] == "ok" and health["last_reload"] is None
        assert "recording 0 of 1 stream(s), 0 clip(s) queued" in started["STATUS"]
        await manager.next(status_says("recording 1 of 1 stream(s)"), timeout_s=30)
        for _ in range(8):
            await manager.next(lambda f: f.get("WATCHDOG") == "1", timeout_s=5)
        pings = [at for at, fields in manager.received if fields.get("WATCHDOG") == "1"]
        intervals = [b - a for a, b in itertools.pairwise(pings)]
        assert period_s * 0.95 <= statistics.median(intervals) <= period_s * 2, intervals
        stopping = await stop(proc, manager)
        assert stopping["STATUS"] == "stopping"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        manager.close()
        await origin.stop()
    # STATUS= goes out when it changes, not on every check.
    statuses = [f["STATUS"] for _, f in manager.received if set(f) == {"STATUS"}]
    assert statuses and all(a != b for a, b in itertools.pairwise(statuses))


async def test_sighup_reloads_streams_and_refuses_a_broken_config(tmp_path: Path) -> None:
    origin = LiveOrigin()
    url = await origin.start()
    master = url.replace("index.m3u8", "master.m3u8")
    data = tmp_path / "data"
    config = tmp_path / "livecut.toml"
    write_config(config, data, {"a": url, "b": url, "c": url})
    manager = ServiceManager(str(tmp_path / "notify"))
    log = tmp_path / "log"
    proc = await serve(config, manager, log)
    reloads: list[dict[str, Any]] = []
    try:
        api = api_of(await manager.next(ready, timeout_s=60))
        await manager.next(status_says("recording 3 of 3 stream(s)"), timeout_s=30)

        async def reload(http: aiohttp.ClientSession) -> Fields:
            proc.send_signal(signal.SIGHUP)
            reloading = await manager.next(lambda f: f.get("RELOADING") == "1", timeout_s=30)
            assert int(reloading["MONOTONIC_USEC"]) > 0
            done = await manager.next(ready, timeout_s=30)
            last = (await get_json(http, f"{api}/healthz"))["last_reload"]
            assert isinstance(last, dict)
            reloads.append(last)
            return done

        async with aiohttp.ClientSession() as http:
            # a unchanged, b changed (a master playlist now), c removed, d added.
            write_config(config, data, {"a": url, "b": master, "d": url})
            await reload(http)
            assert reloads[-1]["result"] == "applied" and reloads[-1]["errors"] == []
            assert reloads[-1]["streams"] == {
                "started": ["d"],
                "stopped": ["c"],
                "restarted": ["b"],
                "updated": [],
            }
            streams = await get_json(http, f"{api}/v1/streams")
            assert {s["id"] for s in streams["streams"]} == {"a", "b", "d"}
            await manager.next(status_says("recording 3 of 3 stream(s)"), timeout_s=30)

            # A broken file is refused whole: e is not added, a keeps its retention.
            write_config(config, data, {"a": url, "b": master, "d": url, "e": url})
            config.write_text(config.read_text().replace('id = "a"', 'id = "a"\nretention = "5x"'))
            refused = await reload(http)
            assert "last config reload refused" in refused["STATUS"]
            assert reloads[-1]["result"] == "refused"
            errors = reloads[-1]["errors"]
            assert isinstance(errors, list) and len(errors) == 1
            assert "streams[0].retention" in errors[0] and str(config) in errors[0]
            streams = await get_json(http, f"{api}/v1/streams")
            assert {s["id"] for s in streams["streams"]} == {"a", "b", "d"}

            # What cannot change while running is named and left alone.
            write_config(config, data, {"a": url, "b": master, "d": url})
            config.write_text(config.read_text().replace("127.0.0.1:0", "127.0.0.1:9"))
            partial = await reload(http)
            assert "restart to apply server.listen" in partial["STATUS"]
            assert reloads[-1]["result"] == "partial"
            assert reloads[-1]["needs_restart"] == ["server.listen"]
            last_reload_ms = int(reloads[-1]["at_ms"])
            async with http.get(f"{api}/metrics") as response:  # the old address still answers
                metrics = await response.text()
            for result in ("applied", "refused", "partial"):
                assert f'livecut_config_reloads_total{{result="{result}"}} 1.0' in metrics
            assert "livecut_config_last_reload_successful 1.0" in metrics

            # a records on past the last reload.
            for _ in range(POLL_LIMIT):
                stream = await get_json(http, f"{api}/v1/streams/a")
                edge = stream["live_edge_ms"]
                if isinstance(edge, int) and edge > last_reload_ms + origin.segment_ms:
                    break
                await asyncio.sleep(POLL_S)
            else:
                raise AssertionError("stream a stopped recording after the reloads")
        await stop(proc, manager)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        manager.close()
        await origin.stop()
    first_reload_ms = int(reloads[0]["at_ms"])
    index = await open_index(data / INDEX_FILE)
    try:
        # a: one session, every segment from before the first reload to after the last.
        sessions = await index.sessions("a")
        assert len(sessions) == 1
        segments = await index.stream_segments("a", 0, 2**62)
        seqs = [s.seq for s in segments]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert min(await indexed_ms(index, "a")) < first_reload_ms
        assert last_reload_ms < segments[-1].end_ms
        for rendition in await index.renditions(sessions[0].id):
            assert await index.rendition_gaps(rendition.id) == []
        # c stopped at the first reload; d only began then; b went on from its master.
        assert max(await indexed_ms(index, "c")) <= first_reload_ms
        assert min(await indexed_ms(index, "d")) >= first_reload_ms
        assert max(await indexed_ms(index, "b")) > first_reload_ms
    finally:
        await index.close()
    text = log.read_text()
    assert "config reload refused, the running config is kept" in text
    assert "streams[0].retention" in text
    assert "server.listen changed; it takes effect after a restart" in text


async def indexed_ms(index: Index, stream_id: str) -> list[int]:
    """When each of a stream's segments was indexed."""
    times = [
        at
        for session in await index.sessions(stream_id)
        for rendition in await index.renditions(session.id)
        for at in (await index.indexed_times(rendition.id)).values()
    ]
    assert times, f"{stream_id}: nothing recorded"
    return times


# --- the unit file ---------------------------------------------------------------------


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: install the Debian package systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def installed_elsewhere(tmp_path: Path) -> Path:
    """The unit as shipped, with the README's drop-in pointing it at this checkout's venv."""
    unit = tmp_path / "livecut.service"
    shutil.copy(UNIT, unit)
    drop_in = tmp_path / "livecut.service.d"
    drop_in.mkdir()
    livecut = Path(sys.executable).parent / "livecut"
    assert livecut.is_file(), livecut
    (drop_in / "path.conf").write_text(
        "[Service]\nExecStartPre=\n"
        f"ExecStartPre={livecut} check-config /etc/livecut/livecut.toml\n"
        f"ExecStart=\nExecStart={livecut} serve --config /etc/livecut/livecut.toml\n"
    )
    return unit


def test_unit_verifies_with_a_drop_in_for_the_install_path(tmp_path: Path) -> None:
    shipped = systemd_analyze("verify", str(UNIT))
    # The shipped path exists only after the README's install; the drop-in is what fixes it.
    assert "/opt/livecut/.venv/bin/livecut" in shipped.stderr
    result = systemd_analyze("verify", str(installed_elsewhere(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_unit_exposure_is_2_or_lower(tmp_path: Path) -> None:
    result = systemd_analyze("security", "--offline=yes", str(installed_elsewhere(tmp_path)))
    score = re.search(r"Overall exposure level for livecut\.service: ([0-9.]+)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0, result.stdout


def test_unit_speaks_notify_with_watchdog_and_reload() -> None:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key] = value
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"] == "30s"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["User"] == "livecut" and settings["StateDirectory"] == "livecut"
    assert "/usr/local" not in UNIT.read_text()


def test_sysusers_and_tmpfiles_create_the_user_and_config_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        assert shutil.which(tool), f"{tool} is missing: install the Debian package systemd"
    result = subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(ROOT / "systemd" / "livecut.sysusers")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("livecut:"))
    assert user[5:] == ["/var/lib/livecut", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000, "a system user"
    result = subprocess.run(
        [
            "systemd-tmpfiles",
            f"--root={root}",
            "--create",
            str(ROOT / "systemd" / "livecut.tmpfiles"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    etc = (root / "etc" / "livecut").stat()
    assert etc.st_mode & 0o777 == 0o750 and etc.st_uid == 0 and etc.st_gid == int(user[3])


async def test_daemon_records_and_cuts_clips_under_the_units_syscall_filter(
    tmp_path: Path,
) -> None:
    """systemd is not needed: tests/sandbox.py installs the unit's seccomp rules itself."""
    systemd_analyze("--version")  # fails naming the package if it is missing
    # A wide window: a sandboxed start on a busy machine may take seconds, and the range
    # below must still be listed when the daemon first reads the playlist.
    origin = LiveOrigin(segment_ms=1000, prefill=6, window=60)
    url = await origin.start()
    config = tmp_path / "livecut.toml"
    write_config(config, tmp_path / "data", {"cam": url}, extra="shots = true\n")
    manager = ServiceManager(str(tmp_path / "notify"))
    log = tmp_path / "log"
    command = (str(ROOT / "tests" / "sandbox.py"), str(UNIT))
    proc = await serve(config, manager, log, command=command)
    try:
        api = api_of(await manager.next(ready, timeout_s=60))
        await manager.next(status_says("recording 1 of 1 stream(s)"), timeout_s=30)
        start_ms = origin.segment_pdt_ms(1) + 300
        body = {"stream": "cam", "start_ms": start_ms, "end_ms": start_ms + 2500}
        async with aiohttp.ClientSession() as http:
            clips = []
            for extra in ({}, {"reencode_edges": True}):  # copy; and decode + encode (x264)
                async with http.post(f"{api}/v1/clips", json={**body, **extra}) as response:
                    assert response.status == 202, await response.text()
                    clips.append((await response.json())["id"])
            for clip_id in clips:
                for _ in range(POLL_LIMIT):
                    clip = await get_json(http, f"{api}/v1/clips/{clip_id}")
                    if clip["state"] in ("ready", "failed"):
                        break
                    await asyncio.sleep(POLL_S)
                assert clip["state"] == "ready", json.dumps(clip)
                output = tmp_path / f"{clip_id}.mp4"
                async with http.get(f"{api}/v1/clips/{clip_id}/clip.mp4") as response:
                    output.write_bytes(await response.read())
                assert len(decode_clip(output).frames) >= 60
        await stop(proc, manager)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        manager.close()
        await origin.stop()
    text = log.read_text()
    assert "sandbox: refused setuid, AF_NETLINK, W+X mmap" in text
    assert " ERROR " not in text and "Traceback" not in text, text[-3000:]


@pytest.fixture(autouse=True)
def _no_manager_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test run under systemd must not pass the real manager's socket to the daemon.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
