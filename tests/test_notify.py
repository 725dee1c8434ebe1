"""The notify protocol: messages, environment rules, datagrams to path and abstract sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from livecut.config import default_config
from livecut.daemon import Daemon
from livecut.notify import Notifier, message, socket_address, watchdog_period_s


def test_message_is_key_value_lines() -> None:
    assert message({"READY": "1", "STATUS": "recording 2 of 3"}) == (
        b"READY=1\nSTATUS=recording 2 of 3"
    )
    with pytest.raises(ValueError, match="STATUS"):
        message({"STATUS": "two\nlines"})


def test_socket_address_forms() -> None:
    assert socket_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert socket_address({"NOTIFY_SOCKET": "@sd-notify/1"}) == "\0sd-notify/1"
    assert socket_address({}) is None
    assert socket_address({"NOTIFY_SOCKET": ""}) is None
    assert socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_watchdog_period_is_half_the_timeout_and_only_for_its_process() -> None:
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_period_s({"WATCHDOG_PID": "42"}, 42) is None


def _receiver(address: str) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(5)
    return receiver


@pytest.mark.parametrize("form", ["path", "abstract"])
def test_notifier_sends_to_path_and_abstract_sockets(tmp_path: Path, form: str) -> None:
    if form == "path":
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
        receiver = _receiver(str(tmp_path / "notify"))
    else:
        name = f"livecut-test-{os.getpid()}-{id(tmp_path)}"
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"}
        receiver = _receiver("\0" + name)
    notifier = Notifier.from_environment(env)
    try:
        assert notifier.enabled and notifier.watchdog_s == 1.0
        notifier.ready("recording 1 of 1 stream(s)")
        notifier.watchdog()
        notifier.reloading()
        notifier.stopping()
        received = [receiver.recv(4096) for _ in range(4)]
    finally:
        notifier.close()
        receiver.close()
    assert received[0] == b"READY=1\nSTATUS=recording 1 of 1 stream(s)"
    assert received[1] == b"WATCHDOG=1"
    reloading = dict(line.split(b"=", 1) for line in received[2].split(b"\n"))
    assert reloading[b"RELOADING"] == b"1" and int(reloading[b"MONOTONIC_USEC"]) > 0
    assert received[3].startswith(b"STOPPING=1")


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled and notifier.watchdog_s is None
    notifier.ready("x")  # no socket, no error


def test_a_vanished_manager_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    notifier.watchdog()
    notifier.watchdog()
    notifier.close()
    warnings = [r for r in caplog.records if "cannot notify" in r.getMessage()]
    assert len(warnings) == 1


async def test_watchdog_pings_stop_while_the_event_loop_is_stalled(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    receiver = _receiver(address)
    receiver.settimeout(0.2)
    loop = asyncio.get_running_loop()
    pings: list[float] = []
    pinged = asyncio.Event()
    done = threading.Event()

    def listen() -> None:  # a thread: it hears the pings even while the loop is stuck
        while not done.is_set():
            try:
                data = receiver.recv(4096)
            except TimeoutError:
                continue
            if data == b"WATCHDOG=1":
                pings.append(time.monotonic())
                loop.call_soon_threadsafe(pinged.set)

    async def next_ping() -> None:
        pinged.clear()
        await asyncio.wait_for(pinged.wait(), 10)

    listener = threading.Thread(target=listen)
    listener.start()
    base = default_config(tmp_path / "data")
    config = replace(base, server=replace(base.server, listen_port=0))
    daemon = Daemon(config, notifier=Notifier(address, watchdog_s=0.05))
    try:
        await daemon.start()
        for _ in range(3):
            await next_ping()
        stalled_at = time.monotonic()
        time.sleep(0.6)  # the stall under test: the event loop blocked
        resumed_at = time.monotonic()
        await next_ping()
    finally:
        await daemon.stop()
        done.set()
        listener.join()
        receiver.close()
    assert not [t for t in pings if stalled_at + 0.1 < t < resumed_at], "pinged while stalled"
    assert any(t >= resumed_at for t in pings)
