"""The service manager's notification protocol (sd_notify): readiness, status, watchdog, stop.

The message format and the environment rules are pure functions; `Notifier` is the thin
shell that sends datagrams to `$NOTIFY_SOCKET`. Without that variable every call is a no-op,
so the daemon behaves the same with or without systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

__all__ = ["Notifier", "message", "socket_address", "watchdog_period_s"]


def message(fields: Mapping[str, str]) -> bytes:
    """One notification: "KEY=value" lines; a value may not span lines."""
    lines = []
    for key, value in fields.items():
        if "\n" in value:
            raise ValueError(f"{key}: a notification value is one line")
        lines.append(f"{key}={value}")
    return "\n".join(lines).encode("utf-8")


def socket_address(environ: Mapping[str, str]) -> str | None:
    """Where notifications go: a path, or "@name" for the abstract namespace ("\\0name")."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None  # unset, or a form we do not speak (vsock): stay silent


def watchdog_period_s(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send WATCHDOG=1: half the manager's timeout, if the watchdog is ours."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    # The variables are inherited by children; only the process they name feeds the dog.
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 carries it (MONOTONIC_USEC)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends notifications to the service manager; silent when there is none."""

    def __init__(self, address: str | None, *, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(socket_address(env), watchdog_s=watchdog_period_s(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self.send({"READY": "1", "STATUS": status})

    def status(self, status: str) -> None:
        self.send({"STATUS": status})

    def reloading(self) -> None:
        self.send({"RELOADING": "1", "MONOTONIC_USEC": str(monotonic_usec())})

    def stopping(self) -> None:
        self.send({"STOPPING": "1", "STATUS": "stopping"})

    def watchdog(self) -> None:
        self.send({"WATCHDOG": "1"})

    def send(self, fields: Mapping[str, str]) -> None:
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A full queue drops one notification rather than stalling the event loop.
                self._socket.setblocking(False)
            self._socket.sendto(message(fields), self.address)
        except OSError as exc:
            # Warn once: a manager that went away must not fill the log every tick.
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager at %r: %s", self.address, exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
