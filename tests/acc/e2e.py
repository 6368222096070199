"""End-to-end helpers: the proxy (python -m proxyapp) and SIPp as real processes on loopback.

Every process is started with a free 127.0.0.1 port, waited for with bounded loops and stopped
by pid.  Nothing here skips: a missing sipp binary fails with the package to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"


# Every port handed out in this test process: a port is closed again as soon as it is found free,
# so the kernel may offer the same one to the next bind(0), and two SIPp peers then got the same
# port (errno 98 in CI). tests/proxy/support.py free_port() does the same.
_used_ports: set[int] = set()


def free_udp_port() -> int:
    """A 127.0.0.1 port free for both UDP and TCP (the proxy listens on both), never handed out
    twice in one test run."""
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


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


class ProxyProcess:
    """`python -m proxyapp --config <tmp>/proxy.toml` with an [acc] table."""

    def __init__(self, tmp: Path, acc: dict[str, Any], timers: dict[str, Any] | None = None,
                 top: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.port = free_udp_port()
        self.cfg = tmp / "proxy.toml"
        lines = [
            f'listen = ["udp:127.0.0.1:{self.port}"]',
            f"script = {toml_value(str(HERE / 'acc_script.py'))}",
            'log_level = "INFO"',
        ]
        lines += [f"{k} = {toml_value(v)}" for k, v in (top or {}).items()]
        if timers:
            lines.append("[timers]")
            lines += [f"{k} = {toml_value(v)}" for k, v in timers.items()]
        lines.append("[acc]")
        lines += [f"{k} = {toml_value(v)}" for k, v in acc.items()]
        self.cfg.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.tmp / f"proxy-{self.runs}.log"
        env = dict(os.environ)  # the installed proxyapp, as the test process itself uses
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxyapp", "--config", str(self.cfg)], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"proxy exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}", pytrace=False)
            if b"ready" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        pytest.fail(f"proxy not ready:\n{self.log_path.read_text()[-3000:]}", pytrace=False)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop by pid (SIGTERM: the graceful path that flushes accounting)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("proxy-*.log")))


def sipp_exe() -> str:
    exe = shutil.which("sipp")
    if exe is None:
        pytest.fail("sipp not found: apt-get install sip-tester", pytrace=False)
    return exe


class Sipp:
    """One SIPp process (UAS or UAC)."""

    def __init__(self, tmp: Path, name: str, scenario: Path, args: list[str]) -> None:
        self.tmp = tmp
        self.name = name
        self.port = free_udp_port()
        self.log_path = tmp / f"sipp-{name}.out"
        argv = [sipp_exe(), "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(self.port), "-nostdin", "-trace_err", "-error_file", str(tmp / f"sipp-{name}-errors.log")] + args
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp)
        self.pid = self.proc.pid

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"sipp {self.name} did not finish in {timeout}s:\n{self.errors()}", pytrace=False)
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if not self._log.closed:
            self._log.close()

    def errors(self) -> str:
        p = self.tmp / f"sipp-{self.name}-errors.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def uas(tmp: Path, scenario: str, calls: int, name: str = "uas") -> Sipp:
    return Sipp(tmp, name, SCENARIOS / scenario, ["-m", str(calls), "-timeout", "120s"])


def uac(tmp: Path, scenario: str, proxy_port: int, callee_port: int, calls: int, rate: float = 10, hold_ms: int = 1000, name: str = "uac", limit: int | None = None) -> Sipp:
    args = [f"127.0.0.1:{callee_port}", "-rsa", f"127.0.0.1:{proxy_port}", "-s", "2222222222", "-m", str(calls), "-r", str(rate), "-d", str(hold_ms), "-timeout", "120s"]
    if limit:
        args += ["-l", str(limit)]
    return Sipp(tmp, name, SCENARIOS / scenario, args)  # an absolute scenario path wins in the join


class DatagramSink:
    """A UDP receiver thread collecting datagrams (the evi destination, a dead callee)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.data: list[bytes] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.data.append(self.sock.recv(65535))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
