"""examples/production.toml and production_script.py: the shipped file passes the checks as is, and a
copy moved to loopback carries real calls: a trusted trunk is relayed without a challenge, a
stranger's call to another domain gets 403, our user gets 407 and then calls with credentials."""

from __future__ import annotations

import json
import sqlite3
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from proxyapp.__main__ import main
from proxyapp.auth import AuthConfig
from proxyapp.config import Config
from proxyapp.limits import LimitsConfig
from proxyapp.permissions import check_open_relay, exposed_listeners
from proxyapp.tcp_limits import TcpLimits

from ..proxy.support import free_port
from .test_e2e import add_users

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "production.toml"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def test_the_shipped_file_loads_and_passes_the_open_relay_check(capsys):
    cfg = Config.load(EXAMPLE)
    assert cfg.script == str(ROOT / "examples" / "production_script.py")
    assert exposed_listeners(cfg) == ["udp:192.0.2.1:5060", "tcp:192.0.2.1:5060"]  # a public address
    assert cfg.open_relay is False
    perms = check_open_relay(cfg)  # passes: [auth] and trusted trunks
    assert perms.group("trusted").match("203.0.113.5", 5060, "udp")
    assert not perms.group("trusted").match("203.0.113.5", 5060, "tcp")
    assert AuthConfig.from_dict(cfg.auth).algorithms == ["SHA-256", "MD5"]
    limits = LimitsConfig.from_dict(cfg.limits)
    # Every trunk is also exempt from flood bans.
    for entry in perms.group("trusted").entries:
        assert any(entry.network.subnet_of(n) for n in limits.networks if n.version == entry.network.version)
    TcpLimits.from_dict(cfg.tcp)
    assert cfg.stateless_responses == "drop" and cfg.server_header == "proxyapp"
    assert cfg.metrics_listen == ("127.0.0.1", 9060) and cfg.control_socket == "/run/proxyapp/ctl.sock"
    assert main(["--config", str(EXAMPLE), "--check"]) == 0
    assert capsys.readouterr().out == "configuration OK\n"


def _toml(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """A TOML document of ``data`` (strings, numbers, booleans, lists and tables)."""
    lines = [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{'.'.join(json.dumps(x) for x in (*prefix, k))}]")
            lines += _toml(v, (*prefix, k))
    return lines


def _loopback_copy(metrics_port: int) -> str:
    """The example, moved to loopback and the test's directory: ProxyProcess writes the listen
    line (127.0.0.1, a free port), 127.0.0.1 is the trusted trunk, state files are relative."""
    data = tomllib.loads(EXAMPLE.read_text())
    del data["listen"], data["log_level"]
    data["script"] = str(ROOT / "examples" / "production_script.py")
    data["stop_timeout"] = 1
    data["control"]["socket"] = "ctl.sock"
    data["metrics"]["listen"] = f"127.0.0.1:{metrics_port}"
    data["auth"]["db_url"] = "subs.db"
    data["auth"]["refresh_interval"] = 0.2
    data["acc"].update(db_url="acc.db", spool_dir="acc-spool")
    data["location"]["db_url"] = "location.db"
    data["permissions"]["trusted"] = ["127.0.0.1:*:udp"]  # the SIPp trunk; 127.0.0.2 is a stranger
    # SIPp 3.6 answers MD5 only, and only the first challenge: every client is challenged with MD5.
    data["script_params"]["md5_only"] = [""]
    data["timers"] = {"T1": 100, "fr_timeout": 2, "fr_inv_timeout": 3, "wt_timer": 1}
    return "\n".join(_toml(data)) + "\n"


def _check(result, proxy, sipp, what: str) -> None:
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    detail = f"{what}: rc={result.returncode}\n{out[-3000:]}\n{sipp.logs()}\n==== proxy\n{proxy.log()[-6000:]}"
    assert result.returncode == 0, detail
    assert "Traceback" not in proxy.log(), detail


def _cdrs(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT method, sip_code FROM acc ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # the table is created by the accounting process
            return []


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_calls_through_the_production_example(proxy_factory, sipp):
    metrics_port = free_port()
    proxy = proxy_factory(_loopback_copy(metrics_port))
    add_users(proxy, ("alice@sip.example.com", "alice-secret"))
    uas_port = free_port()
    far = f"127.0.0.1:{uas_port}"  # another domain: not our address and port, not sip.example.com

    # 1. The trunk (127.0.0.1, UDP, trusted): its call to another domain goes through, unchallenged.
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, far)
    _check(res, proxy, sipp, "trunk call")
    assert sipp.wait(uas) == 0, sipp.logs()
    assert "challenged" not in proxy.log()

    # 2. A stranger (127.0.0.2, From another domain, no credentials) to another domain: 403.
    res = sipp.uac(str(SCENARIOS / "uac_relay_forbidden.xml"), proxy.port, far, extra=["-i", "127.0.0.2"])
    _check(res, proxy, sipp, "stranger to another domain")
    assert "INVITE from 127.0.0.2 to sip:+15555550100@" in proxy.log()

    # 3. Our user from an untrusted address (127.0.0.2): 407, then the call with credentials.
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac(str(SCENARIOS / "uac_auth_call.xml"), proxy.port, far,
                   extra=["-i", "127.0.0.2", "-s", "alice", "-au", "alice", "-ap", "alice-secret"])
    _check(res, proxy, sipp, "our user's call")
    assert sipp.wait(uas) == 0, sipp.logs()
    assert "INVITE from 127.0.0.2: no credentials, challenged" in proxy.log()
    uas_msgs = "".join(p.read_text(errors="replace") for p in proxy.config.parent.glob("uas_call*messages.log"))
    assert uas_msgs.count("INVITE sip:callee@") == 1 and "Proxy-Authorization" not in uas_msgs

    # The two calls were accounted in the database (the stranger's 403 was not a call).
    db = proxy.config.parent / "acc.db"
    deadline = time.monotonic() + 10
    while len(_cdrs(db)) < 2:
        assert time.monotonic() < deadline, (_cdrs(db), proxy.log()[-4000:])
        time.sleep(0.1)
    assert _cdrs(db) == [("INVITE", 200), ("INVITE", 200)]
    # Metrics answer on loopback.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        assert reply.status == 200 and b"proxyapp_" in reply.read()
