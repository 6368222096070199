"""SIPp calls through the real proxy (python -m proxyapp), then every accounting record checked.

The script is acc_script.py (the seed's example): INVITE -> do_accounting("db|log|evi",
"cdr|missed", "my_acc"), BYE -> do_accounting("aaa").  Records are read back from SQLite or a
real PostgreSQL, the log file, the event datagrams and FreeRADIUS' detail file.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time

import pytest

from proxyapp.acc.backends.log import parse_line

from .e2e import SCENARIOS, DatagramSink, ProxyProcess, uac, uas, wait_for
from .fixtures import FreeRadius

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CDR_COLS = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time", "duration", "ms_duration", "setuptime", "created", "end_reason", "src_ip", "src_port", "from_user", "to_user", "ruri_user", "user_agent", "record_id")


def _rows(db_url: str, sql: str) -> list[dict]:
    if db_url.startswith("postgresql://"):
        import psycopg
        from psycopg.rows import dict_row

        try:
            with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
                return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []
    conn = sqlite3.connect(db_url)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _cdrs(db_url: str) -> list[dict]:
    return _rows(db_url, "SELECT " + ", ".join(f'"{c}"' for c in CDR_COLS) + " FROM my_acc ORDER BY callid")


def assert_call_length(r: dict, hold: int, uac_done_ms: int | None = None) -> None:
    """ms_duration is the answer -> BYE time the UAC really held the call, checked by ordering
    rather than a +-50 ms window (which a loaded CI machine broke):
    - at least `hold`: the proxy stamps the 2xx before the UAC receives it, and the BYE after
      the UAC's pause of `hold` ms sent it (2 ms for the ms rounding of two stamps and SIPp's
      ms clock);
    - without a restart, less than hold + setuptime: counted from the answer, not from the
      INVITE (that would add the whole setup time, the callee's 200 ms pause included);
    - across a restart the BYE may reach the proxy only as a retransmission (the proxy was down
      or starting when it was first sent), so it is bounded by causality instead: the proxy saw
      it before the UAC got its answer and exited (`uac_done_ms`, taken after the UAC's exit).
    """
    assert hold - 2 <= r["ms_duration"], r
    if uac_done_ms is None:
        assert r["ms_duration"] < hold + r["setuptime"], r
    else:
        assert r["time"] + r["ms_duration"] <= uac_done_ms + 1, (r, uac_done_ms)
    assert r["duration"] == r["ms_duration"] // 1000, r


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "acc.db")
    server, url = request.getfixturevalue("pg")
    return url


def test_calls_accounted_in_every_backend(tmp_path, db_url, freeradius_server):
    fr = freeradius_server
    sink = DatagramSink()
    calls, hold = 10, 1000
    proxy = ProxyProcess(tmp_path, {
        "db_url": db_url, "spool_dir": str(tmp_path / "spool"), "log_file": str(tmp_path / "acc.log"),
        "evi_udp": [f"127.0.0.1:{sink.port}"], "evi_format": "json",
        "radius_server": f"127.0.0.1:{fr.port}", "radius_secret": FreeRadius.SECRET,
    })
    proxy.start()
    try:
        callee = uas(tmp_path, "uas_answer.xml", calls)
        caller = uac(tmp_path, "uac_call.xml", proxy.port, callee.port, calls, rate=10, hold_ms=hold)
        assert caller.wait(60) == 0, caller.errors()
        assert callee.wait(30) == 0, callee.errors()
        wait_for(lambda: len(_cdrs(db_url)) >= calls and len(fr.detail_records()) >= calls and len(sink.data) >= calls, 20, "records")
    finally:
        assert proxy.stop() == 0
        sink.close()

    rows = _cdrs(db_url)
    assert len(rows) == calls
    by_callid = {r["callid"]: r for r in rows}
    assert set(by_callid) == {f"{n}-{caller.pid}@127.0.0.1" for n in range(1, calls + 1)}
    for n in range(1, calls + 1):
        r = by_callid[f"{n}-{caller.pid}@127.0.0.1"]
        assert (r["method"], r["from_tag"], r["sip_code"], r["sip_reason"], r["end_reason"]) == ("INVITE", f"{caller.pid}SIPpTag00{n}", 200, "OK", "bye")
        assert re.fullmatch(rf"{callee.pid}SIPpTag01\d+", r["to_tag"])
        assert_call_length(r, hold)  # the call's real length
        assert 190 <= r["setuptime"] <= 400  # the callee answers 200 ms after the INVITE
        assert r["created"] + r["setuptime"] == r["time"]
        assert abs(r["time"] / 1000 - time.time()) < 120
        assert (r["src_ip"], r["src_port"], r["from_user"], r["to_user"], r["ruri_user"], r["user_agent"]) == ("127.0.0.1", str(caller.port), "8887779996", "2222222222", "2222222222", "acc-e2e-uac")
    assert _rows(db_url, "SELECT * FROM missed_calls") == []

    # log: one "call ended" line per call, same values as the database
    lines = [parse_line(l) for l in (tmp_path / "acc.log").read_text().splitlines() if "ACC: " in l]
    assert [p for p, _ in lines] == ["ACC: call ended: "] * calls
    for _, kv in lines:
        r = by_callid[kv["call_id"]]
        assert (kv["created"], kv["call_start_time"], kv["duration"], kv["ms_duration"], kv["setuptime"]) == tuple(str(r[k]) for k in ("created", "time", "duration", "ms_duration", "setuptime"))
        assert (kv["method"], kv["from_tag"], kv["to_tag"], kv["code"], kv["reason"], kv["record_id"]) == ("INVITE", r["from_tag"], r["to_tag"], "200", "OK", r["record_id"])

    # evi: one E_ACC_CDR datagram per call
    events = [json.loads(d) for d in sink.data]
    assert [e["method"] for e in events] == ["E_ACC_CDR"] * calls
    for e in events:
        p = e["params"]
        r = by_callid[p["callid"]]
        assert {k: p[k] for k in ("from_tag", "to_tag", "sip_code", "time", "duration", "ms_duration", "setuptime", "created", "record_id")} == {k: r[k] for k in ("from_tag", "to_tag", "sip_code", "time", "duration", "ms_duration", "setuptime", "created", "record_id")}

    # aaa: the BYE of each call (do_accounting("aaa") on BYE) as an Accounting-Request Stop
    det = fr.detail_records()
    assert len(det) == calls
    for d in det:
        r = by_callid[d["Acct-Session-Id"]]
        assert (d["Acct-Status-Type"], d["Sip-Method"], d["Sip-Response-Code"], d["Sip-From-Tag"], d["Sip-To-Tag"]) == ("Stop", "BYE", "200", r["from_tag"], r["to_tag"])


FAIL_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="acc uac {code}">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:8887779996@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:8887779996@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
User-Agent: acc-e2e-uac
Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{code}" timeout="30000"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:8887779996@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def test_missed_calls_486_487_408(tmp_path):
    db = str(tmp_path / "acc.db")
    dead = DatagramSink()  # a callee that never answers: the proxy's Timer B gives a local 408
    proxy = ProxyProcess(tmp_path, {"db_url": db, "spool_dir": str(tmp_path / "spool"), "log_file": str(tmp_path / "acc.log")}, timers={"T1": 50})
    proxy.start()
    try:
        (tmp_path / "uac486.xml").write_text(FAIL_UAC.format(code=486))
        (tmp_path / "uac408.xml").write_text(FAIL_UAC.format(code=408))
        busy = uas(tmp_path, "uas_busy.xml", 1, name="busy")
        c486 = uac(tmp_path, str(tmp_path / "uac486.xml"), proxy.port, busy.port, 1, name="c486")
        ring = uas(tmp_path, "uas_ring.xml", 1, name="ring")
        c487 = uac(tmp_path, "uac_cancel.xml", proxy.port, ring.port, 1, name="c487")
        c408 = uac(tmp_path, str(tmp_path / "uac408.xml"), proxy.port, dead.port, 1, name="c408")
        for p in (c486, busy, c487, ring, c408):
            assert p.wait(60) == 0, (p.name, p.errors())
        wait_for(lambda: len(_rows(db, "SELECT * FROM missed_calls")) >= 3, 10, "3 missed calls")
    finally:
        assert proxy.stop() == 0
        dead.close()
    rows = {r["callid"]: r for r in _rows(db, "SELECT * FROM missed_calls")}
    got = {cid.split("@")[0].split("-")[1]: (r["method"], r["sip_code"], r["sip_reason"], r["duration"], r["ms_duration"], r["created"], r["end_reason"]) for cid, r in rows.items()}
    assert got == {
        str(c486.pid): ("INVITE", 486, "Busy Here", None, None, None, None),
        str(c487.pid): ("INVITE", 487, "Request Terminated", None, None, None, None),
        str(c408.pid): ("INVITE", 408, got[str(c408.pid)][2], None, None, None, None),
    }
    assert "Timeout" in got[str(c408.pid)][2]
    for r in rows.values():
        assert r["from_tag"].endswith("SIPpTag001") and r["src_ip"] == "127.0.0.1"
        if r["sip_code"] == 408:
            # the branch timed out: no reply, no To tag (OpenSIPS' FAKED_REPLY has none either)
            assert r["to_tag"] is None
        else:
            assert re.fullmatch(rf"{busy.pid if r['sip_code'] == 486 else ring.pid}SIPpTag011", r["to_tag"])
    assert _rows(db, "SELECT * FROM my_acc") == []  # no CDR for unanswered calls
    missed_lines = [l for l in (tmp_path / "acc.log").read_text().splitlines() if "ACC: call missed: " in l]
    assert sorted(parse_line(l)[1]["code"] for l in missed_lines) == ["408", "486", "487"]


def test_postgres_stopped_mid_run_200_calls_each_cdr_once(tmp_path, pg):
    server, url = pg
    calls = 200
    proxy = ProxyProcess(tmp_path, {"db_url": url, "spool_dir": str(tmp_path / "spool"), "retry_interval_ms": 300, "backend_timeout_ms": 1500})
    proxy.start()
    try:
        callee = uas(tmp_path, "uas_answer.xml", calls)
        caller = uac(tmp_path, "uac_call.xml", proxy.port, callee.port, calls, rate=25, hold_ms=300)
        time.sleep(3)
        server.stop("fast")
        time.sleep(3)
        server.start()
        assert caller.wait(90) == 0, caller.errors()
        assert callee.wait(30) == 0, callee.errors()
        wait_for(lambda: len(_cdrs(url)) >= calls, 30, f"{calls} CDRs")
        time.sleep(0.5)
    finally:
        assert proxy.stop() == 0
    rows = _rows(url, "SELECT callid, count(*) AS n FROM my_acc GROUP BY callid")
    assert len(rows) == calls and all(r["n"] == 1 for r in rows)
    assert {r["callid"] for r in rows} == {f"{n}-{caller.pid}@127.0.0.1" for n in range(1, calls + 1)}
    assert "to spool" in proxy.logs() and "spool drained" in proxy.logs()  # the outage really happened


def test_proxy_restart_during_50_open_calls(tmp_path):
    db = str(tmp_path / "acc.db")
    calls, hold = 50, 5000
    # stop_timeout = 0: the stop does not wait for the calls up to end (the graceful default
    # would wait up to 10 s for their BYEs): they stay open across the restart.
    proxy = ProxyProcess(tmp_path, {"db_url": db, "spool_dir": str(tmp_path / "spool")}, top={"stop_timeout": 0})
    proxy.start()
    try:
        callee = uas(tmp_path, "uas_answer.xml", calls)
        caller = uac(tmp_path, "uac_call.xml", proxy.port, callee.port, calls, rate=50, hold_ms=hold)
        time.sleep(2.0)  # every call is answered and ACKed, none has hung up yet
        assert _cdrs(db) == []
        assert proxy.stop(signal.SIGTERM) == 0
        proxy.start()  # same port, same journal
        assert caller.wait(60) == 0, caller.errors()
        uac_done_ms = int(time.time() * 1000)
        assert callee.wait(30) == 0, callee.errors()
        wait_for(lambda: len(_cdrs(db)) >= calls, 15, f"{calls} CDRs")
    finally:
        assert proxy.stop() == 0
    rows = _cdrs(db)
    assert len(rows) == calls and len({r["callid"] for r in rows}) == calls
    for r in rows:
        assert_call_length(r, hold, uac_done_ms)  # answered in one process, ended in the next
        assert r["end_reason"] == "bye" and r["user_agent"] == "acc-e2e-uac"
    assert "restored 50 open CDR dialog(s)" in proxy.logs()


def test_dead_ua_dialog_ends_on_lifetime(tmp_path):
    """Both UAs die after the call is set up (no BYE ever): the CDR is still written when the
    dialog lifetime runs out, marked end_reason=lifetime."""
    db = str(tmp_path / "acc.db")
    proxy = ProxyProcess(tmp_path, {"db_url": db, "spool_dir": str(tmp_path / "spool"), "cdr_lifetime_s": 2})
    proxy.start()
    try:
        callee = uas(tmp_path, "uas_answer.xml", 2)
        caller = uac(tmp_path, "uac_call.xml", proxy.port, callee.port, 2, rate=10, hold_ms=60000)
        time.sleep(1.0)  # both calls answered and ACKed
        caller.kill()
        callee.kill()
        wait_for(lambda: len(_cdrs(db)) >= 2, 10, "2 lifetime CDRs")
    finally:
        assert proxy.stop() == 0
    rows = _cdrs(db)
    assert len(rows) == 2
    for r in rows:
        assert r["end_reason"] == "lifetime" and r["sip_code"] == 200
        # lifetime counts from the last in-dialog request (the ACK, right after the answer): at
        # least the 2 s lifetime, plus the ACK's delay after the answer. That delay was allowed
        # 100 ms, which a loaded machine exceeded; 500 ms (the expiry timer's period) still
        # catches a lifetime counted from a later event or one timer round too late.
        assert 2000 <= r["ms_duration"] < 2500, r


def test_proxy_sigkill_during_open_calls_keeps_journaled_dialogs(tmp_path):
    """SIGKILL (no cleanup at all) while 20 calls are up: every dialog was journaled more than
    one flush interval before the kill, so all 20 CDRs are written after the restart."""
    db = str(tmp_path / "acc.db")
    calls, hold = 20, 3000
    proxy = ProxyProcess(tmp_path, {"db_url": db, "spool_dir": str(tmp_path / "spool")})
    proxy.start()
    try:
        callee = uas(tmp_path, "uas_answer.xml", calls)
        caller = uac(tmp_path, "uac_call.xml", proxy.port, callee.port, calls, rate=40, hold_ms=hold)
        time.sleep(1.5)
        assert proxy.stop(signal.SIGKILL) == -signal.SIGKILL
        proxy.start()
        assert caller.wait(60) == 0, caller.errors()
        uac_done_ms = int(time.time() * 1000)
        assert callee.wait(30) == 0, callee.errors()
        wait_for(lambda: len(_cdrs(db)) >= calls, 15, f"{calls} CDRs")
    finally:
        proxy.stop()
    rows = _cdrs(db)
    assert len(rows) == calls and len({r["callid"] for r in rows}) == calls
    for r in rows:
        assert_call_length(r, hold, uac_done_ms)  # answered before the SIGKILL, ended after the restart
