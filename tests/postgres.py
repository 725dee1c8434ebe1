"""A throwaway PostgreSQL server for the tests: one per session from Debian's binaries,
with a fresh database for each test that asks for one."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "livecut"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
PORT_TRIES = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Server:
    proc: subprocess.Popen[bytes]
    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"


def _missing(what: str) -> NoReturn:
    pytest.fail(f"{what}: run .ci/run, which installs Debian's postgresql", pytrace=False)


@functools.cache
def bin_dir() -> Path:
    """The newest installed server's bin directory, /usr/lib/postgresql/<version>/bin."""

    def version(postgres: Path) -> tuple[int, ...]:
        name = postgres.parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    found = sorted(PG_ROOT.glob("*/bin/postgres"), key=version)
    if not found:
        _missing(f"PostgreSQL's server binaries are missing (no {PG_ROOT}/<version>/bin)")
    return found[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, they run as `postgres`."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(base: Path) -> str:
    log = base / "server.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def _ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Poll until the server accepts connections (True) or its process ends (False)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    isready = [str(bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if subprocess.run([*isready, "-U", SUPERUSER, "-t", "5"], check=False).returncode == 0:
            return True
        time.sleep(POLL_S)
    pytest.fail(f"PostgreSQL did not accept connections within {START_TIMEOUT_S} s")


def start() -> Server:
    base = Path(tempfile.mkdtemp(prefix="livecut-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            _missing("there is no postgres user to run the server as")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    initdb = [str(bin_dir() / "initdb"), "-D", str(base / "data"), "-A", "trust"]
    initdb += ["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"]
    done = subprocess.run(_as_postgres(initdb), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    # -F turns fsync off: a test server's data need not survive a power cut.
    options = ["-F", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    for _ in range(PORT_TRIES):
        # Another process may take the free port before the server binds it: try anew.
        port = _free_port()
        argv = [str(bin_dir() / "postgres"), "-D", str(base / "data"), "-k", str(base)]
        argv += ["-h", "127.0.0.1", "-p", str(port), *options]
        with (base / "server.log").open("ab") as log:
            proc = subprocess.Popen(
                _as_postgres(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if _ready(port, proc):
            return Server(proc=proc, base=base, port=port)
    tail = _log_tail(base)
    shutil.rmtree(base, ignore_errors=True)
    pytest.fail(f"PostgreSQL did not start:\n{tail}")


def stop(server: Server) -> None:
    """Fast shutdown (SIGINT to the postmaster: clients are disconnected, no waiting for
    them), then the directory goes."""
    pid_file = server.data / "postmaster.pid"
    # Under runuser the child is runuser itself: the postmaster is signalled by its pid.
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else server.proc.pid
    try:
        os.kill(pid, signal.SIGINT)
        server.proc.wait(STOP_TIMEOUT_S)
    except ProcessLookupError:
        server.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGQUIT)
        server.proc.wait(STOP_TIMEOUT_S)
    shutil.rmtree(server.base, ignore_errors=True)


def psql(dsn: str, *commands: str) -> None:
    """Run `commands`, each in a transaction of its own (CREATE and DROP DATABASE need it)."""
    argv = [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn]
    for command in commands:
        argv += ["-c", command]
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of the session's PostgreSQL server (superuser `livecut`, trust login)."""
    server = start()
    try:
        yield server.dsn
    finally:
        stop(server)


@contextlib.contextmanager
def database(server_dsn: str) -> Iterator[str]:
    """A database made on the server at `server_dsn`, dropped afterwards: its DSN."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    psql(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_dsn.rpartition('/')[0]}/{name}"
    finally:
        psql(
            server_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            # FORCE: a listener still reconnecting may have come back in between.
            f'DROP DATABASE "{name}" WITH (FORCE)',
        )


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a database made for this test alone, dropped after it."""
    with database(postgres_dsn) as dsn:
        yield dsn
