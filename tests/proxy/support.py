"""Helpers for the proxy tests: free loopback ports, a real proxyapp process, SIPp peers.

Every process started here is stopped by pid (conftest finalizers); every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import proxyapp

ROOT = Path(__file__).resolve().parents[2]
# Where this test process imported proxyapp and fastsip from (site-packages after `pip install .`,
# src/ in an editable install). Proxy subprocesses get it on PYTHONPATH so they run the very same
# build: a bare src/ would load the pure-Python parser in a clean clone.
SRC = Path(proxyapp.__file__).resolve().parents[1]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

_used_ports: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (never handed out twice in one run)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if port in _used_ports:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class ProxyProcess:
    """``python -m proxyapp --config FILE`` as a subprocess."""

    def __init__(self, tmp: Path, port: int, extra_toml: str, log_level: str,
                 transports: tuple[str, ...] = ("udp", "tcp"), host: str = "127.0.0.1", name: str = "proxy",
                 listen_list: list[str] | None = None) -> None:
        self.port = port
        self.host = host
        self.config = tmp / f"{name}.toml"
        self.log_path = tmp / f"{name}.log"
        # listen_list: the listen values as written (e.g. a tls: socket on another port).
        listen = ", ".join(f'"{x}"' for x in (listen_list or [f"{t}:{host}:{port}" for t in transports]))
        self.config.write_text(f'listen = [{listen}]\nlog_level = "{log_level}"\n' + extra_toml)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxyapp", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp),
        )
        deadline = time.monotonic() + 15
        ready = extra_toml.count("workers = ") and int(extra_toml.split("workers = ")[1].split()[0]) or 1
        while time.monotonic() < deadline:
            if self.log_path.read_bytes().count(b" ready ") >= ready:  # every worker is listening
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError(f"proxyapp did not start:\n{log}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


def sipp_path() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is required for the end-to-end tests: apt-get install sip-tester "
                    "(tests/run.sh installs it)")
    return path


class Sipp:
    """Start SIPp peers (UAS in the background, UAC in the foreground), stopped by pid at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.exe = sipp_path()

    def _cmd(self, scenario: str, port: int, transport: str, extra: list[str]) -> list[str]:
        return [
            self.exe, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
            "-t", "t1" if transport == "tcp" else "u1", "-nostdin", "-trace_err", "-trace_msg",
            "-timeout_error", *extra,
        ]

    def uas(self, scenario: str, port: int, *, transport: str = "udp", calls: int = 1, extra: list[str] = ()) -> subprocess.Popen:
        cmd = self._cmd(scenario, port, transport, ["-m", str(calls), "-timeout", "40", *extra])
        out = (self.tmp / f"uas-{port}.out").open("wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.tmp))
        self.procs.append(proc)
        time.sleep(0.3)  # SIPp binds its socket before reading the scenario's first recv
        return proc

    def uac(self, scenario: str, proxy_port: int, uas: str, *, port: int | None = None, transport: str = "udp",
            calls: int = 1, timeout: float = 30, extra: list[str] = ()) -> subprocess.CompletedProcess:
        port = port or free_port()
        cmd = self._cmd(scenario, port, transport, [
            f"127.0.0.1:{proxy_port}", "-key", "uas", uas, "-m", str(calls), "-timeout", str(int(timeout)), *extra,
        ])
        return subprocess.run(cmd, capture_output=True, timeout=timeout + 10, cwd=str(self.tmp))

    def wait(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return -999

    def logs(self) -> str:
        out = []
        for f in sorted(self.tmp.glob("*")):
            if f.suffix in (".log", ".out") and f.name != "proxy.log":
                out.append(f"==== {f.name}\n{f.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def stop_all(self) -> None:
        for p in self.procs:
            _stop(p, 2)


