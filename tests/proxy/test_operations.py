"""The operator's view end to end (issue 16), on loopback with real peers: a real Prometheus
server scraping the proxy while SIPp calls, every ``proxyapp ctl`` command against a running
proxy, reloads (ctl and SIGHUP) under load without a failed call or a lost CDR, the graceful
stop (503 + Retry-After for new calls, calls in progress complete), and the shipped Grafana
dashboard only naming metrics the proxy exposes.

Every peer is started here and stopped by pid; every load is bounded in calls and in time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from .ops_support import (
    Prometheus, ctl, ctl_json, metrics_text, retrans, sipp_counts, sipp_final_stats, sipp_int, uac_background,
    wait_until,
)
from .support import ROOT, ProxyProcess, free_port

pytestmark = [pytest.mark.e2e]

FAST_TIMERS = """
[timers]
T1 = 100
fr_timeout = 2
fr_inv_timeout = 5
wt_timer = 1
"""


def _proxy_toml(tmp: Path, *, workers: int = 1, metrics_port: int | None = None, extra: str = "",
                tables: str = "", timers: str = FAST_TIMERS) -> str:
    """Top-level keys then tables (TOML: a key after a table header belongs to the table)."""
    text = f"workers = {workers}\n" + extra
    text += f'[control]\nsocket = "{tmp / "ctl.sock"}"\n'
    if metrics_port is not None:
        text += f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    return text + timers + tables


def _proxy_detail(proxy: ProxyProcess, sipp) -> str:
    return f"{sipp.logs()}\n==== proxy\n{proxy.log()[-6000:]}"


# ---------------------------------------------------------------------------- 1. Prometheus


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_prometheus_counters_match_sipp(tmp_path, sipp, workers):
    """200 calls at 50/s (SIPp uac_call.xml -> proxy -> SIPp uas_call.xml) while a real
    Prometheus scrapes the proxy every second; after SIPp finished and one more scrape, the
    counters Prometheus stored equal what SIPp counted, exactly."""
    calls = 200
    metrics_port = free_port()
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, workers=workers, metrics_port=metrics_port),
                         "INFO", transports=("udp",))
    prom = None
    try:
        prom = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
        # One scrape before the calls: the series exist with their zero values.
        prom.wait_for_scrape_after(time.time())
        assert prom.value("proxyapp_up") == 1
        assert prom.value("proxyapp_core_rcv_requests_total") == 0
        uas_port = free_port()
        uas = sipp.uas("uas_call.xml", uas_port, calls=calls, extra=["-trace_counts", "-fd", "1"])
        uac, uac_stat = uac_background(sipp, "uac_call.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=calls, rate=50,
                                       extra=["-trace_counts"])
        uac_rc = sipp.wait(uac, 60)
        uas_rc = sipp.wait(uas, 30)
        detail = _proxy_detail(proxy, sipp)
        assert uac_rc == 0 and uas_rc == 0, f"uac rc={uac_rc} uas rc={uas_rc}\n{detail}"
        st = sipp_final_stats(uac_stat)
        ok = sipp_int(st, "SuccessfulCall(C)")
        assert ok == calls and sipp_int(st, "FailedCall(C)") == 0, st
        # Retransmissions, message by message (SIPp -trace_counts): on a loaded machine the
        # caller may send an INVITE or BYE again (and an ACK again for each 200 that came again),
        # the callee a 180 or 200 again. Each one is a message the proxy received.
        uac_counts = sipp_counts(tmp_path, "uac_call.xml", uac.pid)
        uas_counts = sipp_counts(tmp_path, "uas_call.xml", uas.pid)
        (inv_r,), (ack_r,), (bye_r,) = retrans(uac_counts, "INVITE"), retrans(uac_counts, "ACK"), retrans(uac_counts, "BYE")
        (r180,), (r200, rbye200) = retrans(uas_counts, "180"), retrans(uas_counts, "200")
        # The transactions end (wt_timer 1 s, Timer L/M 64*T1 = 6.4 s), then one more scrape.
        sock = tmp_path / "ctl.sock"
        wait_until(lambda: ctl_json(sock, "stats", "tm")["tm"]["inuse_transactions"] == 0, 20, "no transaction in use")
        prom.wait_for_scrape_after(time.time())

        got = {
            name: prom.value(name) for name in (
                "proxyapp_up",
                "proxyapp_core_rcv_requests_total", "proxyapp_core_rcv_replies_total",
                "proxyapp_core_fwd_requests_total", "proxyapp_core_fwd_replies_total",
                "proxyapp_core_retransmissions_total",
                "proxyapp_core_drop_requests_total", "proxyapp_core_drop_replies_total",
                "proxyapp_core_err_requests_total", "proxyapp_core_bad_msg_hdr_total",
                "proxyapp_tm_uas_transactions_total", "proxyapp_tm_uac_transactions_total",
                "proxyapp_tm_2xx_transactions_total", "proxyapp_tm_3xx_transactions_total",
                "proxyapp_tm_4xx_transactions_total", "proxyapp_tm_5xx_transactions_total",
                "proxyapp_tm_6xx_transactions_total", "proxyapp_tm_inuse_transactions",
                "proxyapp_tm_local_replies_total", "proxyapp_tm_relayed_replies_total",
                "proxyapp_sl_sent_replies_total",
                "proxyapp_dialog_processed_dialogs_total", "proxyapp_dialog_active_dialogs",
            )
        }
        expected = {
            "proxyapp_up": 1,
            # Per call INVITE, ACK, BYE, and every copy the caller sent again.
            "proxyapp_core_rcv_requests_total": 3 * ok + inv_r + ack_r + bye_r,
            # Per call 180, 200 (INVITE), 200 (BYE), and every copy the callee sent again.
            "proxyapp_core_rcv_replies_total": 3 * ok + r180 + r200 + rbye200,
            # INVITE and BYE statefully (the proxy's own retransmissions are not new requests),
            # the 2xx ACK statelessly by its Route, every copy of it too.
            "proxyapp_core_fwd_requests_total": 3 * ok + ack_r,
            # An INVITE or BYE sent again is absorbed by its server transaction.
            "proxyapp_core_retransmissions_total": inv_r + bye_r,
            "proxyapp_core_drop_requests_total": 0, "proxyapp_core_drop_replies_total": 0,
            "proxyapp_core_err_requests_total": 0, "proxyapp_core_bad_msg_hdr_total": 0,
            "proxyapp_tm_uas_transactions_total": 2 * ok, "proxyapp_tm_uac_transactions_total": 2 * ok,
            "proxyapp_tm_2xx_transactions_total": 2 * ok,  # the INVITE's 200 and the BYE's 200
            "proxyapp_tm_3xx_transactions_total": 0, "proxyapp_tm_4xx_transactions_total": 0,
            "proxyapp_tm_5xx_transactions_total": 0, "proxyapp_tm_6xx_transactions_total": 0,
            "proxyapp_tm_inuse_transactions": 0,
            "proxyapp_tm_local_replies_total": 0,
            "proxyapp_sl_sent_replies_total": 0,
            "proxyapp_dialog_processed_dialogs_total": ok, "proxyapp_dialog_active_dialogs": 0,
        }
        got_relayed = got.pop("proxyapp_tm_relayed_replies_total")
        got_fwd_replies = got.pop("proxyapp_core_fwd_replies_total")
        assert got == expected, f"uac {uac_counts}\nuas {uas_counts}\n{proxy.log()[-3000:]}"
        # Relayed upstream: 180 and 200 per INVITE, 200 per BYE. A 200 of the INVITE that came
        # again is relayed again (RFC 3261 §16.7 step 5), a 180 that came again only while the
        # INVITE was still ringing, a BYE's 200 that came again never (its client transaction
        # absorbs it). Exact when nothing was sent twice.
        assert 3 * ok + r200 <= got_relayed <= 3 * ok + r180 + r200, (got_relayed, r180, r200)
        if r180 + r200 + rbye200 == 0:
            assert got_relayed == 3 * ok
        assert got_fwd_replies == got_relayed  # no stateless replies
        # Prometheus' view equals the proxy's own (ctl stats) at the same quiet moment.
        snap = ctl_json(sock, "stats")
        assert snap["dialog"]["processed_dialogs"] == ok
        assert snap["tm"]["2xx_transactions"] == 2 * ok
        assert snap["core"]["rcv_requests"] == 3 * ok + inv_r + ack_r + bye_r
        # The scrapes during the run saw calls in progress (what the dashboard's panels plot).
        assert prom.value("max_over_time(proxyapp_dialog_active_dialogs[2m])") >= 1
        assert "Traceback" not in proxy.log(), proxy.log()[-4000:]
    finally:
        if prom is not None:
            prom.stop()
        proxy.stop()


# ---------------------------------------------------------------------------- 2. ctl


def _no_proxy_message(path: Path) -> str:
    return (f"proxyapp ctl: no proxyapp listens on {path} (No such file or directory): "
            "is proxyapp running, with this control socket?\n")


ZERO_TM = """tm:UAS_transactions = 0
tm:UAC_transactions = 0
tm:inuse_transactions = 0
tm:2xx_transactions = 0
tm:3xx_transactions = 0
tm:4xx_transactions = 0
tm:5xx_transactions = 0
tm:6xx_transactions = 0
tm:local_replies = 0
tm:relayed_replies = 0
tm:icmp_failures = 0
"""
ZERO_SL = """sl:1xx_replies = 0
sl:2xx_replies = 0
sl:3xx_replies = 0
sl:4xx_replies = 0
sl:5xx_replies = 0
sl:6xx_replies = 0
sl:sent_replies = 0
"""
ZERO_CORE = """core:rcv_requests = 0
core:rcv_replies = 0
core:fwd_requests = 0
core:fwd_replies = 0
core:drop_requests = 0
core:drop_replies = 0
core:err_requests = 0
core:bad_msg_hdr = 0
core:retransmissions = 0
core:absorbed_acks = 0
core:keepalives = 0
core:draining_rejects = 0
core:stray_replies = 0
core:stray_requests = 0
"""
ACC_STATS = ("written", "spooled", "replayed", "failed", "lost", "queued", "spool_pending", "spool_oldest_age_s")


@pytest.mark.timeout(120)
def test_ctl_every_command(tmp_path, sipp):
    sock = tmp_path / "ctl.sock"
    cfg_path = tmp_path / "proxy.toml"
    # Nobody listens yet: exit 1 with the reason (the socket path, and what to check).
    res = ctl(sock, "ping")
    assert (res.returncode, res.stdout, res.stderr) == (1, "", _no_proxy_message(sock))

    db = tmp_path / "acc.db"
    acc = f'[acc]\ndb_url = "{db}"\nspool_dir = "{tmp_path / "spool"}"\n'
    # T1 = 500 ms: an answered INVITE's transactions stay Accepted for 64*T1 = 32 s (RFC 6026),
    # longer than the calls are held, however slowly ctl answers on a loaded machine.
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, extra="max_message_size = 65535\n", tables=acc,
                                                            timers=FAST_TIMERS.replace("T1 = 100", "T1 = 500")),
                         "INFO", transports=("udp",))
    try:
        # The socket: a UNIX socket only its owner may open.
        mode = os.lstat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)

        # ping: text is the JSON answer on one line; -c CONFIG finds the socket in the config.
        res = ctl(sock, "ping")
        assert (res.returncode, res.stdout, res.stderr) == (0, json.dumps({"pid": proxy.proc.pid, "worker": None}) + "\n", "")
        res = ctl(None, "-c", str(cfg_path), "--json", "ping")
        assert res.returncode == 0 and json.loads(res.stdout) == {"pid": proxy.proc.pid, "worker": None}, res

        # stats before any traffic: every counter 0, text pinned line by line.
        for group, text in (("tm", ZERO_TM), ("sl", ZERO_SL), ("core", ZERO_CORE),
                            ("dialog", "dialog:active_dialogs = 0\ndialog:processed_dialogs = 0\ndialog:draining = 0\n"
                                       "dialog:acc_pending_calls = 0\ndialog:acc_pending_evicted = 0\n"),
                            ("usrloc", "usrloc:registered_aors = 0\nusrloc:registered_contacts = 0\n"),
                            ("workers", "workers:handed_off = 0\nworkers:taken_over = 0\n")):
            res = ctl(sock, "stats", group)
            assert (res.returncode, res.stdout, res.stderr) == (0, text, ""), (group, res)
        res = ctl(sock, "stats")
        assert res.returncode == 0, res
        lines = res.stdout.splitlines()
        # All groups, in order, as group:name = value (acc: group:backend:name).
        assert [ln.split(":")[0] for ln in lines] == sorted(
            [ln.split(":")[0] for ln in lines],
            key=["core", "tm", "sl", "dialog", "acc", "usrloc", "auth", "tcp", "limits", "workers", "process"].index)
        # (auth is empty without [auth]; tcp lists the TCP listener's connections and refusals)
        assert set(ln.split(":")[0] for ln in lines) == {"core", "tm", "sl", "dialog", "acc", "usrloc", "tcp", "limits", "workers", "process"}
        assert "tcp:connections = 0" in lines and "tcp:refused_total = 0" in lines
        assert res.stdout.startswith(ZERO_CORE + ZERO_TM + ZERO_SL), res.stdout
        assert all(re.fullmatch(r"[a-z]+(:[A-Za-z0-9_]+)+ = -?[0-9.]+", ln) for ln in lines), res.stdout
        for backend in ("log", "db"):
            for s in ACC_STATS:
                assert f"acc:{backend}:{s} = 0" in lines or f"acc:{backend}:{s} = 0.0" in lines, (backend, s, res.stdout)
        snap = ctl_json(sock, "stats")
        assert list(snap) == ["core", "tm", "sl", "dialog", "acc", "usrloc", "auth", "tcp", "limits", "workers", "process"]
        assert set(snap["process"]) == {"rss_bytes", "open_fds", "uptime_s", "loop_lag_s", "loop_lag_max_s", "reloads"}
        assert snap["process"]["rss_bytes"] > 10_000_000 and snap["process"]["open_fds"] > 3
        assert snap["process"]["reloads"] == 0
        assert ctl_json(sock, "stats", "dialog") == {"dialog": {
            "active_dialogs": 0, "processed_dialogs": 0, "draining": 0, "acc_pending_calls": 0, "acc_pending_evicted": 0,
        }}
        res = ctl(sock, "stats", "nosuch")
        assert (res.returncode, res.stdout, res.stderr) == (1, "", "proxyapp ctl: stats: unknown statistics group 'nosuch' "
                                                            "(groups: core, tm, sl, dialog, acc, usrloc, auth, tcp, limits, workers, process)\n")

        # ul after a real REGISTER (SIPp): show, show AOR, rm of an unknown contact, rm.
        reg = sipp.uac("uac_register.xml", proxy.port, "unused", extra=["-s", "alice"])
        assert reg.returncode == 0, reg.stdout.decode(errors="replace") + sipp.logs() + proxy.log()
        aor = f"sip:alice@127.0.0.1:{proxy.port}"
        shown = ctl_json(sock, "ul", "show")
        assert list(shown) == [aor], shown
        (b,) = shown[aor]
        contact = b["contact"]
        src_port = re.fullmatch(r"sip:alice@127\.0\.0\.1:(\d+)", contact).group(1)
        assert 290 <= b.pop("expires_in_s") <= 300
        assert b == {"contact": contact, "q": None, "source": f"udp:127.0.0.1:{src_port}", "user_agent": "proxyapp-ops-test",
                     "instance": None, "reg_id": None, "node": f"sip:127.0.0.1:{proxy.port}", "path": []}
        one = ctl_json(sock, "ul", "show", aor)
        assert list(one) == [aor] and len(one[aor]) == 1 and 290 <= one[aor][0].pop("expires_in_s") <= 300
        assert one == shown, one
        res = ctl(sock, "ul", "show")
        assert res.returncode == 0 and re.fullmatch(
            rf"{re.escape(aor)}: 1 contact\(s\)\n  {re.escape(contact)} expires in (29\d|300) s from udp:127\.0\.0\.1:{src_port} "
            r"\(proxyapp-ops-test\)\n", res.stdout), res.stdout
        assert ctl_json(sock, "stats", "usrloc") == {"usrloc": {"registered_aors": 1, "registered_contacts": 1}}
        res = ctl(sock, "ul", "rm", aor, "sip:nobody@192.0.2.1")
        assert (res.returncode, res.stderr) == (1, f"proxyapp ctl: ul: nothing removed: no binding {aor} sip:nobody@192.0.2.1\n")
        res = ctl(sock, "ul", "rm", aor, contact)
        assert (res.returncode, res.stdout, res.stderr) == (0, "removed 1 binding(s)\n", "")
        res = ctl(sock, "ul", "show")
        assert (res.returncode, res.stdout) == (0, "no registrations\n")
        assert ctl_json(sock, "ul", "show") == {}
        res = ctl(sock, "ul", "show", aor)
        assert (res.returncode, res.stderr) == (1, f"proxyapp ctl: ul: AOR {aor} has no live binding\n")
        res = ctl(sock, "ul", "rm", aor)
        assert (res.returncode, res.stderr) == (1, f"proxyapp ctl: ul: nothing removed: no binding {aor}\n")
        res = ctl(sock, "ul", "frob")
        assert (res.returncode, res.stderr) == (1, "proxyapp ctl: ul: usage: ul show [AOR] | ul rm AOR [CONTACT]\n")

        # log-level: the running proxy's level changes (DEBUG lines appear for the next message).
        res = ctl(sock, "log-level", "debug")
        assert (res.returncode, res.stdout) == (0, "log level DEBUG (was INFO)\n"), res
        assert ctl_json(sock, "log-level", "DEBUG") == {"log_level": "DEBUG", "was": "DEBUG"}
        res = ctl(sock, "log-level", "bogus")
        assert (res.returncode, res.stderr) == (1, "proxyapp ctl: log-level: unknown level 'BOGUS' "
                                                "(levels: TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL)\n")

        # dialogs and transactions during calls held 8 s (3 calls).
        uas_port = free_port()
        uas = sipp.uas("uas_call.xml", uas_port, calls=3)
        uac, uac_stat = uac_background(sipp, "uac_call_hold.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=3, rate=10,
                                       extra=["-d", "8000"])
        dlg = wait_until(lambda: (d := ctl_json(sock, "dialogs"))["count"] == 3 and d, 10, "3 confirmed dialogs")
        assert len(dlg["dialogs"]) == 3
        for d in dlg["dialogs"]:
            assert re.fullmatch(r"\d+-\d+@127\.0\.0\.1", d["call_id"]), d
            assert 0 <= d["duration_s"] < 8 and abs(d["start"] + d["duration_s"] - time.time()) < 2, d
        res = ctl(sock, "dialogs")
        assert res.returncode == 0 and re.fullmatch(r"3 dialogs\n(  \d+-\d+@127\.0\.0\.1  \d\.\d s\n){3}", res.stdout), res.stdout
        tx = ctl_json(sock, "transactions")
        # Each answered INVITE keeps its server and its client transaction (Accepted, RFC 6026).
        assert tx["count"] == len(tx["transactions"]) == 6, tx
        assert sorted((t["kind"], t["method"], t["state"]) for t in tx["transactions"]) == \
            [("client", "INVITE", "Accepted")] * 3 + [("server", "INVITE", "Accepted")] * 3, tx
        for t in tx["transactions"]:
            assert t["branch"].startswith("z9hG4bK"), t
            assert t["peer"] == (f"udp:127.0.0.1:{uas_port}" if t["kind"] == "client" else t["peer"]), t
        res = ctl(sock, "transactions")
        assert res.returncode == 0 and re.fullmatch(
            r"6 transactions\n(  (server|client) INVITE    Accepted    udp:127\.0\.0\.1:\d+  z9hG4bK\S+\n){6}", res.stdout), res.stdout
        assert ctl_json(sock, "stats", "dialog")["dialog"] == {
            "active_dialogs": 3, "processed_dialogs": 3, "draining": 0, "acc_pending_calls": 0, "acc_pending_evicted": 0,
        }
        assert sipp.wait(uac, 30) == 0 and sipp.wait(uas, 30) == 0, _proxy_detail(proxy, sipp)
        assert "call-id=" in proxy.log()  # the DEBUG lines of the running proxy
        res = ctl(sock, "log-level", "INFO")
        assert (res.returncode, res.stdout) == (0, "log level INFO (was DEBUG)\n"), res
        assert ctl(sock, "dialogs").stdout == "0 dialogs\n"
        assert ctl_json(sock, "dialogs") == {"count": 0, "dialogs": []}

        # acc status: SQLite accounting wrote the 3 CDRs (log and db backends).
        def written() -> dict:
            st = ctl_json(sock, "acc", "status")
            return st if st["backends"]["db"]["written"] == 3 and st["backends"]["log"]["written"] == 3 else {}
        st = wait_until(written, 15, "3 CDRs written")
        assert st["enabled"] is True and st["engine"], st
        for backend in ("log", "db"):
            assert st["backends"][backend] == {"written": 3, "spooled": 0, "replayed": 0, "failed": 0, "lost": 0,
                                               "queued": 0, "spool_pending": 0, "spool_oldest_age_s": 0.0}, st
        res = ctl(sock, "acc", "status")
        assert res.returncode == 0
        for backend in ("log", "db"):
            assert (f"{backend}:written = 3\n{backend}:spooled = 0\n{backend}:replayed = 0\n{backend}:failed = 0\n"
                    f"{backend}:lost = 0\n{backend}:queued = 0\n{backend}:spool_pending = 0\n"
                    f"{backend}:spool_oldest_age_s = 0.0\n") in res.stdout, res.stdout
        res = ctl(sock, "acc")
        assert (res.returncode, res.stderr) == (1, "proxyapp ctl: acc: usage: acc status\n")
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT callid) FROM acc").fetchone() == (3, 3)

        # reload: text, JSON, and a changed restart-only key reported as not applied.
        res = ctl(sock, "reload")
        assert (res.returncode, res.stdout) == (0, "reloaded: script built-in default (reload #1)\n"), res
        assert ctl_json(sock, "reload") == {"script": "built-in default", "restart_needed": [], "reloads": 2}
        cfg_path.write_text(cfg_path.read_text().replace("max_message_size = 65535", "max_message_size = 60000"))
        res = ctl(sock, "reload")
        assert (res.returncode, res.stdout) == (0, "reloaded: script built-in default (reload #3)\n"
                                                   "  not applied, they need a restart: max_message_size\n"), res
        assert ctl_json(sock, "stats", "process")["process"]["reloads"] == 3

        # Usage errors exit 2 (argparse).
        res = ctl(sock, "frobnicate")
        assert res.returncode == 2 and "invalid choice: 'frobnicate'" in res.stderr
        assert "Traceback" not in proxy.log(), proxy.log()[-4000:]
    finally:
        proxy.stop()
    # Stopped: the socket file is gone and ctl says nobody is there.
    assert not sock.exists()
    res = ctl(sock, "stats")
    assert (res.returncode, res.stdout, res.stderr) == (1, "", _no_proxy_message(sock))
    res = ctl(None, "-c", str(cfg_path), "stats")
    assert (res.returncode, res.stderr) == (1, _no_proxy_message(sock))


# ---------------------------------------------------------------------------- 3. reload under load


def _script(version: str) -> str:
    """The built-in script, marking the initial INVITEs it relays with X-Script: VERSION."""
    src = (ROOT / "src" / "proxyapp" / "default_script.py").read_text()
    marker = "    ctx.t_on_failure(failure_route)\n"
    assert src.count(marker) == 1
    return src.replace(marker, f'    if ctx.is_method("INVITE"):\n        ctx.append_hf("X-Script: {version}\\r\\n")\n' + marker)


def _invites_by_version(messages_log: Path) -> list[str]:
    """The X-Script value of each INVITE SIPp (the callee) received, in arrival order."""
    out = []
    for block in messages_log.read_text(errors="replace").split("----------------------------------------------- ")[1:]:
        head, _, msg = block.partition("\n\n")
        if "message received" not in head or not msg.startswith("INVITE "):
            continue
        m = re.search(r"^X-Script: (\S+)\r?$", msg, re.M)
        out.append(m.group(1) if m else "none")
    return out


def _reloads(sock: Path) -> int:
    return ctl_json(sock, "stats", "process")["process"]["reloads"]


@pytest.mark.timeout(150)
def test_reloads_under_load_drop_no_call_and_lose_no_cdr(tmp_path, sipp):
    """600 calls at 30/s held 1 s, SQLite CDRs; meanwhile 10 reloads, 5 by ctl reload and 5 by
    SIGHUP: one after a syntax error was written into the script (refused, with the reason; the
    running script keeps routing), one after the script changed (X-Script: v1 -> v2, seen by the
    callee on the calls that started after it). No call fails; after a graceful stop the database
    holds exactly one CDR per call, for every Call-ID SIPp made."""
    calls, rate = 600, 30
    sock = tmp_path / "ctl.sock"
    script = tmp_path / "script.py"
    script.write_text(_script("v1"))
    db = tmp_path / "acc.db"
    tables = f'[acc]\ndb_url = "{db}"\nspool_dir = "{tmp_path / "spool"}"\n'
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, extra=f'script = "{script}"\n', tables=tables),
                         "INFO", transports=("udp",))
    try:
        uas_port = free_port()
        uas = sipp.uas("uas_call.xml", uas_port, calls=calls)
        uac, uac_stat = uac_background(sipp, "uac_call_hold.xml", proxy.port, f"127.0.0.1:{uas_port}",
                                       calls=calls, rate=rate, extra=["-d", "1000"], timeout=60)
        t0 = time.monotonic()
        done = 0  # successful reloads
        broken_reason = ""
        for i in range(10):
            # Spread over the ~20 s of calls.
            while time.monotonic() < t0 + 1.5 + i * 1.7:
                assert uac.poll() is None, f"SIPp ended early\n{_proxy_detail(proxy, sipp)}"
                time.sleep(0.05)
            if i == 4:
                script.write_text(_script("v1") + "\ndef broken(:\n    pass\n")
            elif i == 5:
                script.write_text(_script("v1"))
            elif i == 6:
                script.write_text(_script("v2"))
            if i % 2 == 0:
                res = ctl(sock, "reload")
                if i == 4:
                    assert res.returncode == 1 and res.stdout == "", res
                    broken_reason = res.stderr
                    continue
                assert res.returncode == 0, res
                done += 1
                assert res.stdout == f"reloaded: script {script} (reload #{done})\n", res
            else:
                os.kill(proxy.proc.pid, signal.SIGHUP)
                done += 1
                wait_until(lambda: _reloads(sock) == done, 10, f"SIGHUP reload #{done}")
        assert re.fullmatch(
            rf"proxyapp ctl: reload: reload failed, nothing changed: script {re.escape(str(script))}: "
            r"SyntaxError: .*\n", broken_reason), broken_reason
        assert re.search(r"ERROR +reload failed, keeping the running script and configuration: script .*SyntaxError",
                         proxy.log()), proxy.log()[-3000:]
        assert uac.poll() is None, "the reloads must happen while SIPp calls"
        uac_rc = sipp.wait(uac, 60)
        uas_rc = sipp.wait(uas, 30)
        st = sipp_final_stats(uac_stat)
        assert (uac_rc, uas_rc, sipp_int(st, "SuccessfulCall(C)"), sipp_int(st, "FailedCall(C)")) == (0, 0, calls, 0), \
            f"{st}\n{_proxy_detail(proxy, sipp)}"
        assert _reloads(sock) == 9
        # The callee saw v1 until the v2 reload, v2 after it: every INVITE marked, one switch.
        (messages,) = tmp_path.glob(f"uas_call_{uas.pid}_messages.log")
        versions = _invites_by_version(messages)
        assert len(versions) == calls, len(versions)
        switch = versions.index("v2")
        assert switch > 0 and versions == ["v1"] * switch + ["v2"] * (calls - switch), versions
        # A graceful stop flushes accounting.
        stopped_at = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(20) == 0, proxy.log()[-3000:]
        assert time.monotonic() - stopped_at < 15
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.log(), proxy.log()[-4000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT callid, count(*) FROM acc GROUP BY callid").fetchall()
        missed = conn.execute("SELECT count(*) FROM missed_calls").fetchone()[0]
    assert missed == 0
    assert all(n == 1 for _, n in rows), [r for r in rows if r[1] != 1]
    assert {cid for cid, _ in rows} == {f"{i}-{uac.pid}@127.0.0.1" for i in range(1, calls + 1)}


# ---------------------------------------------------------------------------- 4. graceful stop


def _invite(port: int, callee_port: int, call_id: str, i: int) -> bytes:
    return (
        f"INVITE sip:late@127.0.0.1:{callee_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKlate{port}x{i};rport\r\n"
        f"From: <sip:late@127.0.0.1:{port}>;tag=late{i}\r\n"
        f"To: <sip:late@127.0.0.1:{callee_port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:late@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _raw_invites(proxy_port: int, callee_port: int, n: int, workers: int = 1) -> list[str]:
    """``n`` INVITEs from one plain UDP socket, with Call-IDs chosen so that each worker owns
    as many of them (proxyapp.workers.owner_of); returns the first final response to each
    (bounded wait), "" for none."""
    from proxyapp.workers import owner_of

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        call_ids: list[str] = []
        per_owner = {w: 0 for w in range(workers)}
        for k in range(10_000):
            if len(call_ids) == n:
                break
            cid = f"late-{k}-{port}@127.0.0.1"
            w = owner_of(_invite(port, callee_port, cid, 0), workers) if workers > 1 else 0
            if per_owner[w] < -(-n // workers):
                per_owner[w] += 1
                call_ids.append(cid)
        for i, cid in enumerate(call_ids):
            s.sendto(_invite(port, callee_port, cid, i), ("127.0.0.1", proxy_port))
        finals: dict[str, str] = {}
        deadline = time.monotonic() + 3
        while len(finals) < n and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(65535).decode(errors="replace")
            except socket.timeout:
                break
            m = re.search(r"^Call-ID: (\S+)\r$", data, re.M)
            if m and int(data.split(" ", 2)[1]) >= 200:
                finals.setdefault(m.group(1), data)
    return [finals.get(cid, "") for cid in call_ids]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_graceful_stop_refuses_new_calls_and_finishes_calls_in_progress(tmp_path, sipp, workers):
    """4 calls ringing (the callee answers after 2 s) when SIGTERM arrives: INVITEs sent after
    it get 503 with Retry-After; the 4 calls still get their 200; the proxy exits 0 once they
    are answered, within stop_timeout (6 s) plus a margin. With 2 workers the supervisor passes
    the signal on and every worker drains."""
    stop_timeout = 6
    sock = tmp_path / "ctl.sock"
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, workers=workers, extra=f"stop_timeout = {stop_timeout}\n"),
                         "INFO", transports=("udp",))
    try:
        # No [acc] table: accounting is off, and ctl says so.
        res = ctl(sock, "acc", "status")
        assert (res.returncode, res.stdout) == (0, "accounting: off (no [acc] table)\n"), res
        assert ctl_json(sock, "acc", "status") == {"enabled": False}
        uas_port = free_port()
        uas = sipp.uas("uas_call_delayed.xml", uas_port, calls=4)
        uac, uac_stat = uac_background(sipp, "uac_call_answered.xml", proxy.port, f"127.0.0.1:{uas_port}",
                                       calls=4, rate=10, timeout=20)

        def ringing() -> bool:
            tx = ctl_json(sock, "transactions")["transactions"]
            return sum(1 for t in tx if t["kind"] == "server" and t["method"] == "INVITE" and t["state"] == "Proceeding") == 4
        wait_until(ringing, 5, "4 INVITEs ringing")
        signalled = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        # Every worker logs its drain: wait for all of them (one handles the signal a few ms later).
        wait_until(lambda: proxy.log().count("stopping: new calls get 503; waiting up to 6.0 s for ") == workers, 3,
                   "the drain to start")
        if workers == 1:
            assert "stopping: new calls get 503; waiting up to 6.0 s for 4 transactions" in proxy.log()
            assert ctl_json(sock, "stats", "dialog")["dialog"]["draining"] == 1
        late = 6
        replies = _raw_invites(proxy.port, uas_port, late, workers)
        for reply in replies:
            assert reply.startswith("SIP/2.0 503 Service Unavailable\r\n"), f"{replies}\n{proxy.log()[-3000:]}"
            assert re.search(r"^Retry-After: 5\r$", reply, re.M), reply
        if workers == 1:
            assert ctl_json(sock, "stats", "core")["core"]["draining_rejects"] == late
        assert time.monotonic() - signalled < 2, "the calls must still be in progress when the late INVITEs come"
        assert proxy.proc.poll() is None
        rc = proxy.proc.wait(stop_timeout + 5)
        took = time.monotonic() - signalled
        assert rc == 0, proxy.log()[-3000:]
        assert 1.0 < took < stop_timeout + 3, took  # waited for the 200s, not for stop_timeout
        uac_rc = sipp.wait(uac, 20)
        st = sipp_final_stats(uac_stat)
        assert (uac_rc, sipp_int(st, "SuccessfulCall(C)"), sipp_int(st, "FailedCall(C)")) == (0, 4, 0), \
            f"{st}\n{_proxy_detail(proxy, sipp)}"
        sipp.wait(uas, 10)
        log = proxy.log()
        assert "still waiting for a final response" not in log, log[-3000:]
        assert "Traceback" not in log, log[-4000:]
    finally:
        proxy.stop()
    assert not sock.exists()


@pytest.mark.timeout(60)
def test_graceful_stop_with_workers_refuses_the_calls_of_an_idle_worker(tmp_path, sipp):
    """workers = 2, one call ringing when SIGTERM arrives: the worker owning it drains, the other
    has nothing in flight. A new INVITE must get 503 + Retry-After whichever worker owns its
    Call-ID, while the proxy is still stopping (the caller is told to retry, not left to time
    out)."""
    stop_timeout = 6
    sock = tmp_path / "ctl.sock"
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, workers=2, extra=f"stop_timeout = {stop_timeout}\n"),
                         "INFO", transports=("udp",))
    try:
        uas_port = free_port()
        uas = sipp.uas("uas_call_delayed.xml", uas_port, calls=1)
        uac, uac_stat = uac_background(sipp, "uac_call_answered.xml", proxy.port, f"127.0.0.1:{uas_port}",
                                       calls=1, rate=10, timeout=20)
        wait_until(lambda: any(t["kind"] == "server" and t["state"] == "Proceeding"
                               for t in ctl_json(sock, "transactions")["transactions"]), 5, "the INVITE ringing")
        signalled = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        # Both workers log their drain (one handles the forwarded signal a few ms later): until
        # then a new INVITE may still be relayed by the other.
        wait_until(lambda: proxy.log().count("stopping: new calls get 503; waiting up to 6.0 s for ") == 2, 3,
                   "the drain to start")
        assert "stopping: new calls get 503; waiting up to 6.0 s for 1 transactions" in proxy.log()
        # Sent while the proxy is still stopping (the call rings until 2 s after it started).
        assert time.monotonic() - signalled < 1.5 and proxy.proc.poll() is None
        replies = _raw_invites(proxy.port, uas_port, 4, workers=2)  # 2 INVITEs owned by each worker
        answered = [r.split("\r\n", 1)[0] for r in replies]
        assert answered == ["SIP/2.0 503 Service Unavailable"] * 4, f"{answered}\n{proxy.log()[-3000:]}"
        assert all(re.search(r"^Retry-After: 5\r$", r, re.M) for r in replies), replies
        assert proxy.proc.wait(stop_timeout + 5) == 0
        assert sipp.wait(uac, 20) == 0, _proxy_detail(proxy, sipp)
        sipp.wait(uas, 10)
    finally:
        proxy.stop()


# ---------------------------------------------------------------------------- 5. Grafana dashboard

DASHBOARD = ROOT / "examples" / "grafana-dashboard.json"
METRIC = re.compile(r"\bproxyapp_[a-z0-9_]+")
VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*", "$backend": ".*"}


def _dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, rows' nested panels included."""
    out = []

    def walk(panels: list) -> None:
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
    walk(dash["panels"])
    return out


def _exposed_names(text: str) -> set[str]:
    """Sample names of a Prometheus text exposition."""
    return {m.group(0) for ln in text.splitlines() if ln and not ln.startswith("#")
            for m in [re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", ln)] if m}


@pytest.mark.timeout(90)
def test_grafana_dashboard_names_only_exposed_metrics(tmp_path, sipp):
    """examples/grafana-dashboard.json: a Prometheus datasource variable, the panels an operator
    needs, and every expression names only metrics a running proxy (with SQLite accounting)
    exposes on /metrics; each one, evaluated by a real Prometheus scraping that proxy, returns
    data."""
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = set()
    for p in dash["panels"]:
        titles.add(p["title"])
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
    assert {"Call rate", "Active dialogs", "Transactions in use", "Transactions by final class", "Stateless replies by class",
            "Drops and errors", "Records written", "Queued", "Spooled", "Oldest spooled record", "Registrations (usrloc)",
            "Resident memory", "Open file descriptors", "Event loop lag"} <= titles, titles
    exprs = _dashboard_exprs(dash)
    queries = [(f"variable {v['name']}", v["definition"]) for v in variables.values() if v["type"] == "query"]
    used = {m for _, e in exprs + queries for m in METRIC.findall(e)}
    # The panels cover what the issue asks for.
    for name in ("proxyapp_tm_2xx_transactions_total", "proxyapp_dialog_processed_dialogs_total", "proxyapp_dialog_active_dialogs",
                 "proxyapp_tm_inuse_transactions", "proxyapp_core_drop_requests_total", "proxyapp_core_err_requests_total",
                 "proxyapp_acc_written_total", "proxyapp_acc_queued", "proxyapp_acc_spooled_total",
                 "proxyapp_acc_spool_oldest_age_s", "proxyapp_usrloc_registered_contacts", "proxyapp_process_rss_bytes",
                 "proxyapp_process_open_fds", "proxyapp_process_loop_lag_s"):
        assert name in used, name

    metrics_port = free_port()
    acc = f'[acc]\ndb_url = "{tmp_path / "acc.db"}"\nspool_dir = "{tmp_path / "spool"}"\n'
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, metrics_port=metrics_port, tables=acc), "INFO",
                         transports=("udp",))
    prom = None
    try:
        # The accounting engine's process reports its backends' counters shortly after start;
        # the per-backend families appear then (with the backend label the panels group by).
        def with_backends() -> str:
            t = metrics_text(metrics_port)
            return t if re.search(r'^proxyapp_acc_written_total\{backend="db"\} ', t, re.M) else ""
        text = wait_until(with_backends, 15, "the accounting backends' metrics", 0.2)
        exposed = _exposed_names(text)
        missing = sorted(used - exposed)
        assert not missing, f"the dashboard names metrics the proxy does not expose: {missing}\nexposed: {sorted(exposed)}"
        prom = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
        prom.wait_for_scrape_after(time.time())
        prom.wait_for_scrape_after(time.time() + 0.5)  # two samples: rate() has something to work on
        for title, expr in exprs:
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, (title, expr)
            assert prom.query(expr), f"{title}: {expr} returned nothing"
        for title, q in queries:
            inner = re.fullmatch(r"label_values\((.*), (\w+)\)", q)
            assert inner, q
            selector = inner.group(1)
            for var, value in VARIABLES.items():
                selector = selector.replace(var, value)
            assert prom.api("series", **{"match[]": selector}), (title, selector)
    finally:
        if prom is not None:
            prom.stop()
        proxy.stop()


@pytest.mark.timeout(60)
def test_metric_types_levels_are_gauges(tmp_path):
    """Levels are gauges, counts are counters (Prometheus: rate() of a level is meaningless, and
    a level exposed as *_total looks like a count). The accounting engine's process reports
    events_buffered (events waiting in memory for the child) and bytes_in_pipe_buffer (bytes
    waiting in the pipe): both are levels that go down again."""
    metrics_port = free_port()
    acc = f'[acc]\ndb_url = "{tmp_path / "acc.db"}"\nspool_dir = "{tmp_path / "spool"}"\n'
    proxy = ProxyProcess(tmp_path, free_port(), _proxy_toml(tmp_path, metrics_port=metrics_port, tables=acc), "INFO",
                         transports=("udp",))
    try:
        text = metrics_text(metrics_port)
    finally:
        proxy.stop()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    levels = {"proxyapp_acc_events_buffered", "proxyapp_acc_bytes_in_pipe_buffer", "proxyapp_tm_inuse_transactions",
              "proxyapp_dialog_active_dialogs", "proxyapp_dialog_draining", "proxyapp_process_rss_bytes",
              "proxyapp_process_open_fds", "proxyapp_process_loop_lag_s", "proxyapp_usrloc_registered_contacts"}
    wrong = {name: types.get(name, "absent") for name in levels if types.get(name) != "gauge"}
    assert not wrong, f"levels not exposed as gauges: {wrong}\n{text}"
    # Every counter is named *_total (prometheus-client writes the suffix in # TYPE too); no gauge is.
    assert {name for name, kind in types.items() if kind == "counter"} == {name for name in types if name.endswith("_total")}
    assert set(types.values()) == {"counter", "gauge"}
