"""A real ``redis-server`` for the RedisStore tests, started and stopped here.

Each pytest process (each xdist worker) starts one server on a free loopback
port, in a temporary directory, the first time a test asks for it, and stops
it when the session ends. Without ``redis-server`` on the PATH those tests
are skipped, unless ``VEO_REQUIRE_REDIS=1`` (CI sets it): then they fail, so
a CI machine missing the server cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["RedisServer", "redis_server", "unique_namespace"]


class RedisServer:
    """One running redis-server: its URL and its process."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], directory: str) -> None:
        self.url = url
        self.process = process
        self.directory = directory


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(directory: str) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("VEO_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed, and VEO_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"redis-server did not start on port {port}")
        time.sleep(0.02)
    return RedisServer(f"redis://127.0.0.1:{port}/0", process, directory)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test process (started on first use)."""
    with tempfile.TemporaryDirectory(prefix="veo-redis-") as directory:
        server = _start(directory)
        try:
            yield server
        finally:
            server.process.terminate()
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def unique_namespace() -> str:
    """A namespace no other test uses (tests share one server)."""
    return f"test:{uuid.uuid4().hex}"
