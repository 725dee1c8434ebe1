"""moto's S3 server in a process of its own on 127.0.0.1, and a fresh bucket for each test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from livecut.config import S3Config, S3Credentials

# moto accepts any key pair unless told to check IAM; these only have to be consistent.
CREDENTIALS = S3Credentials(
    access_key_id="LIVECUTTESTKEY000001",
    secret_access_key="livecut-test-secret-0000000000000000000",
    source="tests/s3server.py",
)
# S3 refuses parts under 5 MiB but the last; the server is told to accept parts from
# 256 KiB, so multipart tests stay a few megabytes.
MIN_PART_SIZE = 256 * 1024
_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class S3Server:
    """A running moto server and a plain boto3 client to set up and inspect buckets."""

    endpoint: str
    admin: Any  # a boto3 S3 client
    process: subprocess.Popen[bytes] | None = None

    def config(self, bucket: str, *, prefix: str = "") -> S3Config:
        return S3Config(bucket=bucket, endpoint=self.endpoint, prefix=prefix)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _start(log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    executable = Path(sys.executable).with_name("moto_server")
    env = {
        **os.environ,
        "S3_UPLOAD_PART_MIN_SIZE": str(MIN_PART_SIZE),
        # Requests from the tests' clients go straight to loopback.
        "NO_PROXY": "127.0.0.1,localhost",
    }
    # Its request log goes to a file: an unread pipe would fill and stall the server.
    with log_path.open("ab") as log:
        for _attempt in range(3):  # another process may take the probed port first
            port = free_port()
            process = subprocess.Popen(
                [str(executable), "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
            deadline = time.monotonic() + _START_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(port):
                    return process, port
                time.sleep(0.05)
            process.kill()
            process.wait()
    raise RuntimeError(f"moto_server did not start; see {log_path}:\n{log_path.read_text()}")


def start_s3_server(log_path: Path) -> S3Server:
    """moto's S3 server on a free port of 127.0.0.1 (also for bench/cluster.py)."""
    process, port = _start(log_path)
    endpoint = f"http://127.0.0.1:{port}"
    admin = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS.access_key_id,
        aws_secret_access_key=CREDENTIALS.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    return S3Server(endpoint=endpoint, admin=admin, process=process)


def stop_s3_server(server: S3Server) -> None:
    server.admin.close()
    process = server.process
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("moto") / "moto_server.log")
    try:
        yield server
    finally:
        stop_s3_server(server)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the shared server."""
    name = f"livecut-{uuid.uuid4().hex[:16]}"
    s3_server.admin.create_bucket(Bucket=name)
    return name
