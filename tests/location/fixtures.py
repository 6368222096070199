"""A real redis-server on loopback, started and stopped by the tests (PostgreSQL: tests/acc/fixtures.py).

Debian package redis-server (tests/run.sh installs it). Never skips: a missing binary fails with
a message saying which package to install. The server gets a private temp directory (its AOF
file, so a restart keeps the data, as production should) and a free 127.0.0.1 port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ..acc.fixtures import free_port


class RedisServer:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server not found: apt-get install redis-server (tests/run.sh installs it)", pytrace=False)
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="location-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("redis-server exited:\n" + self._log(), pytrace=False)
            if self.ping():
                return
            time.sleep(0.05)
        pytest.fail("redis-server did not answer PING:\n" + self._log(), pytrace=False)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log(self) -> str:
        p = self.dir / "redis.log"
        return p.read_text()[-4000:] if p.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
