"""End to end on loopback: a real proxyapp process between real SIPp callers and callees."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from .seed import BODY, INVITE, OUT_IP, PVT_IP
from .support import ROOT, SRC, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FAST_TIMERS = """
[timers]
T1 = 100
fr_timeout = 2
fr_inv_timeout = 3
wt_timer = 1
"""


def _assert_ok(result, uas_rc, proxy, sipp, what):
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    detail = f"{what}\nUAC rc={result.returncode} UAS rc={uas_rc}\n{out[-3000:]}\n{sipp.logs()}\n==== proxy\n{proxy.log()[-6000:]}"
    assert result.returncode == 0, detail
    assert uas_rc == 0, detail
    assert "internal error" not in proxy.log(), detail
    assert "Traceback" not in proxy.log(), detail


def test_basic_call_udp(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "basic call")
    log = proxy.log()
    # One INVITE, one BYE forwarded statefully; the 2xx ACK statelessly, by its Route.
    assert len(re.findall(r"forward INVITE sip:service@127\.0\.0\.1", log)) == 1
    assert len(re.findall(r"forward BYE ", log)) == 1
    assert len(re.findall(r"stateless forward ACK ", log)) == 1


def test_busy_486(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_486.xml", uas_port)
    res = sipp.uac("uac_486.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "486")
    # The caller's ACK for the 486 is absorbed by the server transaction, never forwarded.
    log = proxy.log()
    assert re.search(r"request ACK .* transaction found", log), log
    assert "forward ACK" not in log


def test_cancel_after_180(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_cancelled.xml", uas_port)
    res = sipp.uac("uac_cancel.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "cancel after 180")
    assert "CANCEL branch" in proxy.log()


def test_no_answer_408_after_timer_c(proxy_factory, sipp):
    # The callee rings and never answers: Timer C (fr_inv_timeout) fires, the proxy CANCELs the
    # branch and answers 408 upstream; the callee's 487 is ACKed hop by hop.
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_cancelled.xml", uas_port)
    t0 = time.monotonic()
    res = sipp.uac("uac_408.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "no answer -> 408")
    assert time.monotonic() - t0 >= 3.0  # not before fr_inv_timeout
    assert "(timer C)" in proxy.log()


def test_callee_silent_udp_408(proxy_factory, sipp):
    # The callee's socket is there but never answers (no response, no ICMP error either):
    # Timer B (fr_timeout) -> 408.
    proxy = proxy_factory(FAST_TIMERS)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        res = sipp.uac("uac_408.xml", proxy.port, f"127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    _assert_ok(res, 0, proxy, sipp, "callee silent (udp) -> 408")
    log = proxy.log()
    assert "(timer B)" in log
    # Timer A retransmitted the INVITE (T1 = 100 ms, doubling) before Timer B fired at 2 s.
    assert len(re.findall(r"forward INVITE", log)) == 1


def test_callee_down_udp_503_at_once(proxy_factory, sipp):
    # Nothing listens on the callee's UDP port: the kernel answers ICMP port unreachable, which
    # the proxy reads from its raw socket (root here, CAP_NET_RAW elsewhere) and turns into a
    # transport error (RFC 3261 §18.4): 503 at once, long before Timer B's 2 s.
    if os.geteuid() != 0:
        pytest.fail("needs root (CAP_NET_RAW) for the raw ICMP socket; CI runs as root")
    proxy = proxy_factory(FAST_TIMERS)
    t0 = time.monotonic()
    res = sipp.uac("uac_503.xml", proxy.port, f"127.0.0.1:{free_port()}")
    _assert_ok(res, 0, proxy, sipp, "callee down (udp) -> 503")
    assert time.monotonic() - t0 < 1.5
    log = proxy.log()
    assert "transport error on branch" in log and "(timer B)" not in log


def test_callee_down_tcp_503(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    res = sipp.uac("uac_503.xml", proxy.port, f"127.0.0.1:{free_port()};transport=tcp")
    _assert_ok(res, 0, proxy, sipp, "callee down (tcp) -> 503")
    assert "transport error on branch" in proxy.log()


def test_call_to_a_host_name(proxy_factory, sipp):
    # The Request-URI names "localhost": resolved asynchronously (getaddrinfo, RFC 3263 A/AAAA).
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, f"localhost:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "call to localhost")
    assert re.search(r"forward INVITE sip:service@localhost:%d .* to udp:127\.0\.0\.1:%d" % (uas_port, uas_port), proxy.log())


def test_unresolvable_host_478(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    res = sipp.uac("uac_478.xml", proxy.port, "nonexistent.invalid:5060")
    _assert_ok(res, 0, proxy, sipp, "unresolvable -> 478")
    assert "cannot resolve nonexistent.invalid" in proxy.log()


def test_failure_route_serial_forking_to_a_fallback(proxy_factory, sipp):
    # The first destination refuses the TCP connection (local 503); the default script's failure
    # route tries failover_destination, where the call is answered.
    uas_port = free_port()
    proxy = proxy_factory(
        FAST_TIMERS + f'[script_params]\nfailover_destination = "udp:127.0.0.1:{uas_port}"\n'
    )
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{free_port()};transport=tcp")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "failover")
    log = proxy.log()
    assert "transport error on branch" in log
    assert re.search(r"forward INVITE .*\.1 to udp:127\.0\.0\.1:%d" % uas_port, log)


def test_max_forwards_zero_483(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    res = sipp.uac("uac_483.xml", proxy.port, f"127.0.0.1:{free_port()}")
    _assert_ok(res, 0, proxy, sipp, "Max-Forwards 0 -> 483")
    assert "forward INVITE" not in proxy.log()


def test_options_and_message(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_options_message.xml", uas_port)
    res = sipp.uac("uac_options_message.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "OPTIONS and MESSAGE")
    log = proxy.log()
    assert "forward OPTIONS" in log and "forward MESSAGE" in log


def test_call_over_tcp(proxy_factory, sipp):
    proxy = proxy_factory(FAST_TIMERS)
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port, transport="tcp")
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{uas_port};transport=tcp", transport="tcp")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "call over TCP")
    log = proxy.log()
    assert re.search(r"request INVITE .* from tcp:127\.0\.0\.1", log)
    assert re.search(r"forward INVITE .* to tcp:127\.0\.0\.1:%d" % uas_port, log)


@pytest.mark.timeout(120)
def test_retransmissions_with_loss(proxy_factory, sipp):
    # The callee drops 30 % of the INVITEs and BYEs it gets, the caller 30 % of the 100s and of the
    # BYE's 200s: the proxy's Timer A / Timer E retransmissions and its absorption of the caller's
    # retransmissions (resending the last response) carry every call, and nothing is forwarded twice.
    # wt_timer (Timer J) must outlast the callers' own retransmission window (64 * their T1 = 32 s).
    # SIPp's losses come in streaks now and then (seen: 7 copies of one BYE in a row), so the
    # proxy gets room for many copies: Timer E capped at T2 = 400 ms (about 20 BYE copies before
    # Timer F at 8 s) and Timer C at 8 s (the INVITE's copies run until Timer B, 64*T1).
    proxy = proxy_factory(FAST_TIMERS.replace("T1 = 100", "T1 = 100\nT2 = 400").replace("fr_timeout = 2", "fr_timeout = 8")
                          .replace("fr_inv_timeout = 3", "fr_inv_timeout = 8").replace("wt_timer = 1", "wt_timer = 32"))
    uas_port = free_port()
    calls = 10
    uas = sipp.uas("uas_call_lossy.xml", uas_port, calls=calls)
    res = sipp.uac("uac_call_lossy.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=calls, timeout=60,
                   extra=["-r", "5", "-l", "5"])
    _assert_ok(res, sipp.wait(uas, 60), proxy, sipp, "calls with loss")
    log = proxy.log()
    assert len(re.findall(r"forward INVITE ", log)) == calls
    assert len(re.findall(r"forward BYE ", log)) == calls
    out = res.stdout.decode(errors="replace")
    # Every retransmission SIPp sent reached the proxy (SIPp drops only what it receives) and was
    # absorbed by its server transaction: the counts match SIPp's "Retrans" column exactly.
    for method in ("INVITE", "BYE"):
        screen = re.findall(rf"{method} ---------->\s+(\d+)\s+(\d+)", out)
        assert screen, out
        retrans = int(screen[-1][1])
        absorbed = len(re.findall(rf"request {method} .* transaction found", log))
        assert absorbed == retrans, (method, absorbed, retrans, out)


# ------------------------------------------------------------------------------------------------
# The seed flow over real UDP sockets, compared header by header.


def _headers(data: bytes) -> tuple[str, list[str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return lines[0], lines[1:], body


def test_seed_flow_header_by_header(proxy_factory):
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        callee.bind(("127.0.0.1", 0))
        caller.bind(("127.0.0.1", 0))
        callee.settimeout(5)
        caller.settimeout(5)
        cport = callee.getsockname()[1]
        sport = caller.getsockname()[1]
        proxy = proxy_factory('server_header = "OpenSIPS (2.2.7 (x86_64/linux))"\n')
        invite = INVITE.replace(f"@{OUT_IP}".encode(), f"@127.0.0.1:{cport}".encode())
        caller.sendto(invite, ("127.0.0.1", proxy.port))
        trying, _ = caller.recvfrom(65535)
        fwd, addr = callee.recvfrom(65535)
    finally:
        callee.close()
        caller.close()
    stamped = (f"Via: SIP/2.0/UDP {PVT_IP}:58088;received=127.0.0.1;"
               f"branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport={sport}")
    start, hdrs, body = _headers(trying)
    assert start == "SIP/2.0 100 Giving a try"
    assert hdrs == [
        stamped,
        f"To: <sip:2222222222@127.0.0.1:{cport}>",
        f"From: <sip:8887779996@198.51.100.11>;tag=fd542335",
        "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA",
        "CSeq: 1 INVITE",
        "Server: OpenSIPS (2.2.7 (x86_64/linux))",
        "Content-Length: 0",
    ]
    assert body == b""
    start, hdrs, body = _headers(fwd)
    assert start == f"INVITE sip:2222222222@127.0.0.1:{cport};transport=udp SIP/2.0"
    assert hdrs[0] == f"Record-Route: <sip:127.0.0.1:{proxy.port};lr>"
    m = re.fullmatch(rf"Via: SIP/2\.0/UDP 127\.0\.0\.1:{proxy.port};branch=(z9hG4bK[0-9a-f]+\.[0-9a-f]+\.0)", hdrs[1])
    assert m, hdrs[1]
    assert hdrs[2:] == [
        stamped,
        "Max-Forwards: 69",
        f"Contact: <sip:8887779996@{PVT_IP}:58088;transport=udp>",
        f"To: <sip:2222222222@127.0.0.1:{cport}>",
        "From: <sip:8887779996@198.51.100.11>;tag=fd542335",
        "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA",
        "CSeq: 1 INVITE",
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO",
        "Content-Type: application/sdp",
        "Supported: replaces",
        "User-Agent: Bria 3 release 3.5.5 stamp 71243",
        f"Content-Length: {len(BODY)}",
        "P-hint: outbound",
    ]
    assert body == BODY.encode()
    assert addr == ("127.0.0.1", proxy.port)  # sent from the socket the INVITE came in on


def test_tcp_keepalive_ping_and_malformed_input_do_not_stop_the_proxy(proxy_factory):
    proxy = proxy_factory()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
        conn.sendall(b"\r\n\r\n")  # RFC 5626 §3.5.1 ping
        assert conn.recv(16) == b"\r\n"  # pong
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        port = udp.getsockname()[1]
        udp.sendto(b"\x00\xffnot sip at all", ("127.0.0.1", proxy.port))  # dropped, counted
        bad = (
            f"OPTIONS sip:x@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad\r\n"
            "From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: bad-1\r\nCSeq: x OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        udp.sendto(bad, ("127.0.0.1", proxy.port))
        data, _ = udp.recvfrom(65535)
        assert data.startswith(b"SIP/2.0 400 Bad Request - ")
        ping = bad.replace(b"CSeq: x OPTIONS", b"CSeq: 1 OPTIONS").replace(b"sip:x@127.0.0.1:9", f"sip:127.0.0.1:{proxy.port}".encode())
        udp.sendto(ping.replace(b"z9hG4bKbad", b"z9hG4bKok"), ("127.0.0.1", proxy.port))
        data, _ = udp.recvfrom(65535)
        assert data.startswith(b"SIP/2.0 200 OK\r\n")  # still serving
    finally:
        udp.close()
    assert "dropped a message" in proxy.log() and "Traceback" not in proxy.log()


# ------------------------------------------------------------------------------------------------
# The command line


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "proxyapp", *args], capture_output=True, text=True, timeout=30, env=env, cwd=cwd)


def test_cli_version():
    res = _cli("-V")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("version: proxyapp 0.1.0")
    assert re.match(r"parser: fastsip \S+, (compiled \(Cython\)|pure Python) backend", lines[1])
    assert lines[2].startswith("event loop: ")
    assert any(ln.startswith("python: ") for ln in lines)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('listen = ["sctp:127.0.0.1:5060"]\n', "listen[0]"),
        ('listen = ["udp:localhost:5060"]\n', "listen[0]"),
        ("[timers]\nT1 = -5\n", "timers.T1"),
        ("[timers]\nfoo = 1\n", "timers.foo"),
        ('log_level = "LOUD"\n', "log_level"),
        ("frobnicate = 1\n", "frobnicate"),
        ('script = "does-not-exist.py"\n', "script"),
        ("[acc]\nbogus = 1\n", "acc"),
    ],
)
def test_cli_invalid_config_exit_2(tmp_path, toml, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    res = _cli("--config", str(cfg))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"config: {key}:" in res.stderr


# ------------------------------------------------------------------------------------------------
# Accounting wired end to end (proxyapp.acc, SQLite backend)


def test_accounting_records_busy_and_answered_calls(proxy_factory, sipp, tmp_path):
    import sqlite3

    db = tmp_path / "acc.db"
    proxy = proxy_factory(
        f'script = "{ROOT / "tests" / "proxy" / "scripts" / "acc_script.py"}"\n'
        f'[acc]\ndb_url = "{db}"\nspool_dir = "{tmp_path / "spool"}"\n' + FAST_TIMERS
    )
    uas_port = free_port()
    uas = sipp.uas("uas_486.xml", uas_port)
    res = sipp.uac("uac_486.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "486 with accounting")
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{uas_port}")
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "call with accounting")
    proxy.stop()  # SIGTERM: acc.close() flushes
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT method, sip_code, sip_reason, to_tag IS NOT NULL FROM acc ORDER BY time").fetchall()
    assert rows == [("INVITE", 486, "Busy Here", 1), ("INVITE", 200, "OK", 1)]


def test_embedded_defaults_write_sqlite_accounting_in_the_working_directory(sipp, tmp_path):
    # `proxyapp` with no --config (the README's first command): only the port is changed, with
    # --listen, so the test does not need 5060. Records land in ./proxyapp-acc.db of its cwd.
    import os
    import sqlite3

    from .support import _stop

    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    log_path = tmp_path / "proxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxyapp", "--listen", f"udp:127.0.0.1:{port}", "--listen", f"tcp:127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(workdir),
        )
    try:
        deadline = time.monotonic() + 15
        while b"ready" not in log_path.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        uas_port = free_port()
        uas = sipp.uas("uas_486.xml", uas_port)
        res = sipp.uac("uac_486.xml", port, f"127.0.0.1:{uas_port}")
        assert res.returncode == 0 and sipp.wait(uas) == 0, sipp.logs()
        uas = sipp.uas("uas_call.xml", uas_port)
        res = sipp.uac("uac_call.xml", port, f"127.0.0.1:{uas_port}")
        assert res.returncode == 0 and sipp.wait(uas) == 0, sipp.logs()
    finally:
        _stop(proc)  # SIGTERM: accounting flushes
    log = log_path.read_text()
    assert proc.returncode == 0 and "Traceback" not in log, log
    db = workdir / "proxyapp-acc.db"
    assert db.exists(), (sorted(p.name for p in workdir.iterdir()), log)
    with sqlite3.connect(db) as conn:
        acc = conn.execute("SELECT method, sip_code, duration IS NOT NULL FROM acc ORDER BY time").fetchall()
        missed = conn.execute("SELECT method, sip_code FROM missed_calls").fetchall()
    # The 486 as a failed transaction and as a missed call; the answered call as one CDR.
    assert acc == [("INVITE", 486, 0), ("INVITE", 200, 1)], (acc, log)
    assert missed == [("INVITE", 486)]
    assert "ACC: " in log  # the log backend too
