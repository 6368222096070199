"""[limits] allocator (proxyapp.allocator): the proxy runs on malloc where floods come from.

The choice is pinned on the configuration; the start-up is checked on real processes: the
proxy is started once and replaces itself (same PID) with ``PYTHONMALLOC=malloc`` when it
should, and serves. The memory this gives back after a flood is in test_floods.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proxyapp import allocator
from proxyapp.config import Config, Listen
from proxyapp.limits import LimitsConfig

from .support import SRC, ProxyProcess, free_port


def _cfg(*listen: str) -> Config:
    cfg = Config.embedded()
    cfg.listen = [Listen.parse(x, "listen") for x in listen]
    return cfg


def test_auto_is_malloc_only_with_a_listener_off_loopback():
    assert allocator.wanted(_cfg("udp:127.0.0.1:5060", "tcp:[::1]:5060"), "auto") == "pymalloc"
    assert allocator.wanted(_cfg("udp:127.0.0.1:5060", "udp:0.0.0.0:5060"), "auto") == "malloc"
    assert allocator.wanted(_cfg("udp:192.0.2.1:5060"), "auto") == "malloc"
    assert allocator.wanted(_cfg("udp:192.0.2.1:5060"), "pymalloc") == "pymalloc"
    assert allocator.wanted(_cfg("udp:127.0.0.1:5060"), "malloc") == "malloc"


def test_exec_environment_keeps_what_the_operator_set():
    exposed = _cfg("udp:0.0.0.0:5060")
    env = allocator.exec_environment(exposed, "auto", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "PYTHONMALLOC": "malloc"}
    # Already on malloc, or PYTHONMALLOC chosen by whoever started it (pymalloc, debug...): no restart.
    assert allocator.exec_environment(exposed, "auto", {"PYTHONMALLOC": "malloc"}) is None
    assert allocator.exec_environment(exposed, "malloc", {"PYTHONMALLOC": "pymalloc_debug"}) is None
    assert allocator.exec_environment(_cfg("udp:127.0.0.1:5060"), "auto", {}) is None
    assert allocator.running({}) == "pymalloc" and allocator.running({"PYTHONMALLOC": "malloc"}) == "malloc"


def test_limits_refuse_an_unknown_allocator():
    assert LimitsConfig.from_dict({}).allocator == "auto"
    assert LimitsConfig.from_dict({"allocator": "malloc"}).allocator == "malloc"
    with pytest.raises(ValueError, match=r"\[limits\] allocator: expected \"auto\", \"malloc\" or \"pymalloc\", got 'jemalloc'"):
        LimitsConfig.from_dict({"allocator": "jemalloc"})


def test_check_names_the_bad_allocator(tmp_path: Path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('listen = ["udp:127.0.0.1:5999"]\n[limits]\nallocator = 3\n')
    env = dict(os.environ, PYTHONPATH=str(SRC))
    res = subprocess.run([sys.executable, "-m", "proxyapp", "--config", str(cfg), "--check"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and "[limits] allocator: expected" in res.stderr and "got 3" in res.stderr, res


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _options(port: int, host: str = "127.0.0.1") -> bytes:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(5)
    me = sock.getsockname()[1]
    sock.sendto((
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{me};branch=z9hG4bKalloc1;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:t@{host}>;tag=a\r\nTo: <sip:{host}>\r\nCall-ID: alloc-1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode(), (host, port))
    try:
        return sock.recv(4096)
    finally:
        sock.close()


@pytest.mark.parametrize("choice,expected", [("malloc", "malloc"), ("auto", "pymalloc"), ("pymalloc", "pymalloc")])
def test_the_proxy_restarts_itself_on_malloc_when_asked(tmp_path: Path, choice: str, expected: str):
    env_before = os.environ.pop("PYTHONMALLOC", None)
    try:
        port = free_port()
        proxy = ProxyProcess(tmp_path, port, f'[limits]\nallocator = "{choice}"\n', "INFO", transports=("udp",))
    finally:
        if env_before is not None:
            os.environ["PYTHONMALLOC"] = env_before
    try:
        # The process we started is the one that runs (execve keeps the PID) ...
        assert _environ(proxy.proc.pid).get("PYTHONMALLOC", "pymalloc") == expected
        assert f"memory allocator {expected})" in proxy.log()
        # ... and it serves.
        assert _options(port).startswith(b"SIP/2.0 ")
        assert proxy.proc.poll() is None
    finally:
        proxy.stop()


LIVE = textwrap.dedent("""\
    set -e
    ip link set lo up
    ip addr add 192.0.2.1/32 dev lo
    python3 -m proxyapp --config "$1" > "$2" 2>&1 &
    pid=$!
    for i in $(seq 100); do grep -q ' ready ' "$2" && break; sleep 0.1; done
    tr '\\0' '\\n' < /proc/$pid/environ | grep '^PYTHONMALLOC=' || echo 'PYTHONMALLOC unset'
    kill -TERM $pid
    wait $pid || true
""")


def test_auto_runs_on_malloc_with_a_listener_off_loopback(tmp_path: Path):
    """In a private network namespace: a listener on 192.0.2.1 (on its own lo), no relay for
    anyone (open_relay written out, as proxyapp requires off loopback)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (CI runs as root)")
    cfg = tmp_path / "exposed.toml"
    cfg.write_text('listen = ["udp:192.0.2.1:5060"]\nopen_relay = true\n')
    log = tmp_path / "exposed.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    env["PYTHONPATH"] = str(SRC)
    t0 = time.monotonic()
    res = subprocess.run(["unshare", "-n", "sh", "-c", LIVE, "sh", str(cfg), str(log)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    text = log.read_text(errors="replace")
    assert res.returncode == 0 and "PYTHONMALLOC=malloc" in res.stdout, (res, text)
    assert "memory allocator malloc)" in text and time.monotonic() - t0 < 60, text
