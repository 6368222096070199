"""What strangers can make accounting keep or write (issue 17 items 4 and 8): pending-call state is
bounded and fed by first arrivals only, and challenged attempts are no records unless asked for.

The proxy core (tests/proxy/harness message builders) drives the in-process engine writing to a
real SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3

import fastsip

from proxyapp.acc import AccConfig, Accounting
from proxyapp.acc.dialog import DialogTracker
from proxyapp.config import Config
from proxyapp.proxy import Proxy, Target
from proxyapp.script import Script

from ..auth.test_script import credentials
from ..proxy.harness import CALLER, LISTEN, req, sends
from .memory import settle

AUTH_FIRST = '''
from proxyapp.auth import AUTHORIZED


def route(msg, ctx):
    # Marked before the checks, as many OpenSIPS scripts do (do_accounting at the top).
    ctx.do_accounting("db", "failed")
    if ctx.proxy_authorize() != AUTHORIZED:
        ctx.proxy_challenge()
        return
    ctx.t_reply(486, "Busy Here")
'''


def test_pending_invites_are_capped_oldest_first():
    t = DialogTracker(60.0, max_pending=3)
    for i in range(5):
        t.invite_arrived(f"c{i}", "f", 100.0 + i)
    t.invite_arrived("c4", "f", 200.0)  # a retransmission: no new entry
    assert (t.pending, t.pending_evicted) == (3, 2)
    assert list(t._pending) == [("c2", "f"), ("c3", "f"), ("c4", "f")]
    assert t._pending[("c4", "f")] == [104.0, None]


def _proxy(tmp_path, acc_table, script=None):
    cfg = Config.from_dict({"listen": [LISTEN], "auth": {"db_url": str(tmp_path / "subs.db")}})
    acc = Accounting(AccConfig.from_dict({
        "db_url": str(tmp_path / "acc.db"), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, **acc_table,
    }))
    return Proxy(cfg, script, acc, branch_salt="fs"), acc


def test_invites_reusing_a_live_branch_with_new_call_ids_are_not_pending_calls(tmp_path):
    async def go():
        proxy, acc = _proxy(tmp_path, {})
        await acc.start()
        src = Target("udp", *CALLER, None, proxy.cfg.listen[0])
        first = req(ruri="sip:bob@192.0.2.9")
        assert sends(proxy.receive(first, src))  # 100 Trying and the forwarded INVITE
        for i in range(200):
            again = first.replace(b"Call-ID: call-1@test", b"Call-ID: spoof-%d" % i)
            proxy.receive(again, src)
        stats = acc.stats()
        await acc.close()
        return proxy.statistics()["core"]["retransmissions"], stats

    retrans, stats = asyncio.run(go())
    assert retrans == 200
    assert (stats["pending_calls"], stats["pending_evicted"]) == (1, 0)


def _challenged_rows(tmp_path, acc_table):
    async def go():
        script_path = tmp_path / "auth_first.py"
        script_path.write_text(AUTH_FIRST)
        proxy, acc = _proxy(tmp_path, acc_table, Script.load(str(script_path)))
        await acc.start()
        src = Target("udp", *CALLER, None, proxy.cfg.listen[0])
        codes = []
        for i in range(3):
            out = sends(proxy.receive(req(ruri="sip:bob@192.0.2.9", branch=f"z9hG4bKch{i}").replace(
                b"call-1@test", b"ch-%d" % i), src))
            codes.append(fastsip.parse(out[-1].data).status)
        # A control: the same user with the right credentials passes the check and gets the
        # script's 486, which is accounted either way (so the table exists and is read).
        assert proxy.auth is not None
        proxy.auth.store.add("alice", CALLER[0], "wonderland")
        proxy.auth.store.load_sync()
        challenge = fastsip.parse(out[-1].data).headers.getall("Proxy-Authenticate")[-1]
        hdr = "Proxy-Authorization: " + credentials(challenge, "INVITE", "sip:bob@192.0.2.9") + "\r\n"
        out = sends(proxy.receive(req(ruri="sip:bob@192.0.2.9", branch="z9hG4bKok", extra=hdr).replace(
            b"call-1@test", b"ok-1"), src))
        codes.append(fastsip.parse(out[-1].data).status)
        await settle(acc)
        await acc.close()
        return codes

    codes = asyncio.run(go())
    with sqlite3.connect(tmp_path / "acc.db") as db:
        rows = db.execute("SELECT callid, sip_code FROM acc ORDER BY callid").fetchall()
    return codes, rows


def test_challenged_requests_are_not_accounted_by_default(tmp_path):
    codes, rows = _challenged_rows(tmp_path, {})
    assert codes == [407, 407, 407, 486]
    assert rows == [("ok-1", 486)]


def test_account_auth_failures_writes_the_challenged_attempts(tmp_path):
    codes, rows = _challenged_rows(tmp_path, {"account_auth_failures": True})
    assert codes == [407, 407, 407, 486]
    assert rows == [("ch-0", 407), ("ch-1", 407), ("ch-2", 407), ("ok-1", 486)]
