"""Stopping with signals loses nothing, whichever process gets the signal first (issue 16).

systemd's KillMode=control-group sends SIGTERM to every process of the unit at once, and Ctrl-C
sends SIGINT to the terminal's whole foreground process group: the accounting process (and its
helpers, the SQLite writer and the journal helper) get the signal together with the proxy. They
must keep serving the proxy until it closes the pipe, then flush.

- A real accounting process and its helpers signalled while the proxy side keeps feeding
  events: every record is written, nothing is left open in the journal, the child exits 0.
- A proxy that never closes the pipe: the child closes its engine on its own after stop_wait_s.
- A call's end is its FIRST BYE, also when the dialog was open across a restart and only a
  retransmission of the BYE reaches the new engine (the first one is in the journal).
- stats(): written, failed, queued, spooled, spool_pending, spool_oldest_age_s per backend.
- End to end: proxyapp with PostgreSQL CDRs under SIPp load, stopped by SIGTERM to the main
  process, SIGTERM to the process group and SIGINT to the process group: every call SIPp saw
  answered has exactly one CDR, no dialog is left open in the journal, and the exit status is 0.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Awaitable, Callable

import fastsip
import pytest

import proxyapp
from proxyapp.acc import AccConfig, AccMark, Accounting
from proxyapp.acc.journal import read_entries
from proxyapp.acc.process import AccountingProcess
from proxyapp.script import Script
from proxyapp.transaction import Send
from tests.proxy.callflow import CALLEE, CALLER, Flow, in_dialog, new_proxy, ok_for

from .memory import memory_backends, wait_until

pytestmark = pytest.mark.timeout(240)

# Where this test process imported proxyapp from: the proxyapp subprocess runs the same tree.
SRC = Path(proxyapp.__file__).resolve().parents[1]


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (pytest sees the test's own fixture arguments)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _script() -> Script:
    """CDR on initial INVITEs; BYEs accounted as transactions (two rows per answered call)."""
    from proxyapp import default_script

    def route(msg, ctx):
        if ctx.is_method("INVITE") and not ctx.has_totag():
            ctx.do_accounting("db", "cdr|failed|missed")
        elif ctx.is_method("BYE"):
            ctx.do_accounting("db")
        default_script.route(msg, ctx)

    mod = types.ModuleType("acc_signals_script")
    mod.route = route
    mod.failure_route = default_script.failure_route
    return Script(mod, "acc_signals_script")


def _cfg(tmp: Path, **extra: Any) -> AccConfig:
    return AccConfig.from_dict({"db_url": str(tmp / "acc.db"), "spool_dir": str(tmp / "spool"), "flush_interval_ms": 5,
                                **extra})


def _open_in_journal(spool: Path) -> set[str]:
    """Call-IDs of the dialogs the journal file holds open (as a restarted engine would load)."""
    open_: dict[tuple[str, ...], str] = {}
    for e in read_entries(spool / "dialogs.journal"):
        if e[0] == "o":
            key = tuple(sorted((e[2], e[3])))
            open_[(e[1], *key)] = e[1]
        elif e[0] == "open":
            d = e[1]
            open_[(d["callid"], *sorted((d["caller_tag"], d["callee_tag"])))] = d["callid"]
        elif e[0] == "close":
            open_.pop(tuple(e[1]), None)
    return set(open_.values())


def _children(pid: int) -> list[int]:
    """The pids whose parent is pid (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _catches_stop_signals(pid: int) -> bool:
    """Whether the process has handlers for SIGTERM and SIGINT (SigCgt in /proc/PID/status): a
    helper has them from its main() on; before, while its interpreter starts, a signal ends it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return all(caught >> (sig - 1) & 1 for sig in (signal.SIGTERM, signal.SIGINT))


def _sqlite_counts(db: Path) -> tuple[int, int, int]:
    """(CDRs, distinct CDR Call-IDs, BYE transaction records)."""
    with sqlite3.connect(db) as conn:
        cdrs, distinct = conn.execute("SELECT count(*), count(DISTINCT callid) FROM acc WHERE end_reason = 'bye'").fetchone()
        byes = conn.execute("SELECT count(*) FROM acc WHERE method = 'BYE'").fetchone()[0]
    return cdrs, distinct, byes


# ------------------------------------------------------------------------ the real child process
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@in_loop
async def test_child_and_helpers_outlive_the_signal_while_the_proxy_feeds(tmp_path, sig):
    acc = AccountingProcess(_cfg(tmp_path))
    await acc.start()
    child = acc._child.proc
    assert child is not None
    flow = Flow(new_proxy(acc, _script()))
    n = 0
    for n in range(100):
        flow.teardown(n, flow.setup(n))
        if n % 10 == 0:
            await asyncio.sleep(0.001)
    routes = {k: flow.setup(k) for k in range(100, 120)}  # 20 calls up across the signal
    # The child's helpers run by now: the SQLite writer (rows written) and the journal helper
    # (fsyncs); the signal goes to all three, as systemd's control-group kill would send it.
    def helpers_ready() -> bool:
        names = {m for p in _children(child.pid) for m in ("sqlite_writer", "journal_helper")
                 if m in _cmdline(p) and _catches_stop_signals(p)}
        return names == {"sqlite_writer", "journal_helper"} and _catches_stop_signals(child.pid)

    await wait_until(helpers_ready, what="the child's helpers, with their signal handlers",
                     show=lambda: [(_cmdline(p), _catches_stop_signals(p)) for p in _children(child.pid)])
    family = [child.pid, *_children(child.pid)]
    for pid in family:
        os.kill(pid, sig)
    # The proxy side goes on for 1.5 s (as it would while it drains), bounded in calls too.
    n = 120
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and n < 3000:
        flow.teardown(n, flow.setup(n))
        n += 1
        if n % 5 == 0:
            await asyncio.sleep(0.002)
    for k, route in routes.items():
        flow.teardown(k, route)  # their BYEs come after the signal
    assert child.returncode is None, "the accounting process died of the signal"
    assert all(Path(f"/proc/{pid}").exists() for pid in family), "a helper died of the signal"
    await acc.close()
    assert child.returncode == 0
    assert acc.restarts == 0 and acc.closed_report is not None
    assert acc.closed_report["db"]["queued"] == 0 and acc.closed_report["db"]["spool_pending"] == 0
    assert _sqlite_counts(tmp_path / "acc.db") == (n, n, n)  # a CDR and a BYE record per call
    assert _open_in_journal(tmp_path / "spool") == set()
    # Starting children leaves this process's signal mask alone (a leaked blocked SIGTERM is
    # inherited by every process started afterwards, which then cannot be stopped).
    assert not set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & {signal.SIGTERM, signal.SIGINT}


@in_loop
async def test_child_closes_its_engine_when_the_proxy_never_closes_the_pipe(tmp_path):
    acc = AccountingProcess(_cfg(tmp_path), stop_wait_s=1.0)
    await acc.start()
    first = acc._child.proc
    assert first is not None
    flow = Flow(new_proxy(acc, _script()))
    for n in range(50):
        flow.teardown(n, flow.setup(n))
    routes = {k: flow.setup(k) for k in range(50, 60)}
    await asyncio.sleep(0.2)
    os.kill(first.pid, signal.SIGTERM)
    # No close(): after 1 s the child writes what it has, keeps the open calls in its journal,
    # reports "closed" and exits 0; this side, still running, starts another child.
    await wait_until(lambda: acc.restarts == 1 and acc._ready, timeout=30, what="a new accounting process")
    assert first.returncode == 0
    assert _sqlite_counts(tmp_path / "acc.db") == (50, 50, 50)
    assert _open_in_journal(tmp_path / "spool") == {f"{k}-1@127.0.0.1" for k in routes}
    for k, route in routes.items():
        flow.teardown(k, route)  # the new child restored them: their CDRs are written
    await acc.close()
    assert _sqlite_counts(tmp_path / "acc.db") == (60, 60, 60)
    assert _open_in_journal(tmp_path / "spool") == set()


# ------------------------------------------------------------------- the first BYE ends the call
@in_loop
async def test_first_bye_is_the_end_after_a_restart(tmp_path):
    """The first BYE is journaled when it is seen; the child dies (SIGKILL: nothing runs at
    exit); its successor restores the dialog with that BYE's time, and the BYE's retransmission
    1.5 s later, answered now, does not move the end: ms_duration is 1000, not 2500."""
    acc = AccountingProcess(_cfg(tmp_path))
    await acc.start()
    proxy = new_proxy(acc, _script())
    now = [1_800_000_000.0]
    proxy.wallclock = lambda: now[0]
    flow = Flow(proxy)
    route = flow.setup(7)  # answered at t0
    now[0] += 1.0
    bye = in_dialog("BYE", 7, 2, route)
    out = flow.rx(bye, CALLER)  # the first BYE, forwarded; its 200 does not come (yet)
    fwd = [a.data for a in out if type(a) is Send][0]
    await wait_until(lambda: any(e[0] == "bye" for e in read_entries(tmp_path / "spool" / "dialogs.journal")),
                     what="the BYE in the journal")
    first = acc._child.proc
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    await wait_until(lambda: acc.restarts == 1 and acc._ready, timeout=30, what="a new accounting process")
    now[0] += 1.5
    flow.rx(bye, CALLER)  # the retransmission, seen by the new child
    flow.rx(ok_for(fwd), CALLEE)  # answered: the BYE transaction completes
    await acc.close()
    with sqlite3.connect(tmp_path / "acc.db") as conn:
        rows = conn.execute("SELECT callid, ms_duration, duration, end_reason FROM acc WHERE end_reason IS NOT NULL").fetchall()
    assert rows == [("7-1@127.0.0.1", 1000, 1, "bye")]


def test_first_bye_in_the_journal_inline_engine(tmp_path):
    """The same with the inline engine: a first engine sees the BYE and stops without closing
    (as after SIGKILL: only what its journal task wrote survives); the next one gets the
    retransmission and the answer."""
    from tests.acc.sipfakes import request

    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path), "flush_interval_ms": 1})
    t0 = 1_700_000_000.0
    src = ("192.0.2.7", 5060)

    async def first() -> None:
        acc = Accounting(cfg, backends=memory_backends(), clock=lambda: t0)
        await acc.start()
        inv = request("INVITE", "c1", "a")
        acc.observe_request(inv, src, t0)
        acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 200, "OK", "b", src, t0)
        acc.observe_request(request("BYE", "c1", "a", "b", cseq=2), src, t0 + 1)
        await wait_until(lambda: any(e[0] == "bye" for e in read_entries(tmp_path / "dialogs.journal")),
                         what="the BYE in the journal")
        for t in acc._tasks:  # a crash: no close(), nothing flushed
            t.cancel()

    asyncio.run(first())
    b2 = memory_backends()

    async def second() -> None:
        acc = Accounting(cfg, backends=b2, clock=lambda: t0 + 3)
        await acc.start()
        assert acc.tracker.dialogs and next(iter(acc.tracker.dialogs.values())).bye_ts == t0 + 1
        bye = request("BYE", "c1", "a", "b", cseq=2)
        acc.observe_request(bye, src, t0 + 2.5)  # retransmission
        acc.transaction_completed(None, bye, 200, "OK", "b", src, t0 + 2.5)
        await acc.close()

    asyncio.run(second())
    assert [(r.callid, r.ms_duration, r.end_reason) for r in b2["db"].records] == [("c1", 1000, "bye")]


# --------------------------------------------------------------------------------------- stats
STAT_KEYS = {"written", "failed", "queued", "spooled", "spool_pending", "spool_oldest_age_s", "replayed", "lost"}


def test_stats_spool_age_inline(tmp_path):
    from tests.acc.sipfakes import request

    b = memory_backends()
    b["db"].down = True
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path), "flush_interval_ms": 1, "retry_interval_ms": 100,
                               "backend_timeout_ms": 200})

    async def go() -> None:
        acc = Accounting(cfg, backends=b)
        await acc.start()
        for name, st in acc.stats().items():
            if name not in ("dialogs", "pending_calls", "pending_evicted"):  # numbers, not backends
                assert STAT_KEYS <= set(st) and all(isinstance(v, (int, float)) for v in st.values()), (name, st)
                assert st["spool_oldest_age_s"] == 0
        mark = AccMark.parse("db")
        for i in range(5):
            acc.transaction_completed(mark, request("OPTIONS", f"s{i}", "a"), 200, "OK", "t", None, time.time())
        await wait_until(lambda: acc.stats()["db"]["spool_pending"] == 5, what="5 spooled records", show=acc.stats)
        await asyncio.sleep(1.2)
        st = acc.stats()["db"]
        assert (st["spooled"], st["queued"], st["written"]) == (5, 0, 0) and st["failed"] >= 5
        assert 1.1 <= st["spool_oldest_age_s"] < 5, st
        assert acc.stats()["log"]["spool_oldest_age_s"] == 0
        b["db"].down = False  # back: the spool is replayed and the age is 0 again
        await wait_until(lambda: acc.stats()["db"]["spool_pending"] == 0, what="the replay", show=acc.stats)
        st = acc.stats()["db"]
        assert st["replayed"] == 5 and st["spool_oldest_age_s"] == 0
        await acc.close()

    asyncio.run(go())


@in_loop
async def test_stats_spool_age_process(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.mkdir()  # the child's SQLite writer cannot open a directory: every batch is spooled
    acc = AccountingProcess(AccConfig.from_dict({"db_url": str(bad), "spool_dir": str(tmp_path / "spool"),
                                                 "flush_interval_ms": 5, "retry_interval_ms": 100000}))
    await acc.start()
    try:
        req = fastsip.parse(in_dialog("OPTIONS", 1, 1, "<sip:127.0.0.1:45060;lr>"))
        for i in range(3):
            acc.db_request(req, f"200 OK {i}", None, time.time())
        await wait_until(lambda: acc.stats().get("db", {}).get("spool_pending") == 3, what="3 spooled records",
                         show=acc.stats)
        st = acc.stats()
        for name in ("log", "db", "aaa", "evi"):
            assert STAT_KEYS <= set(st[name]), (name, st[name])
        assert st["db"]["spooled"] == 3 and st["db"]["queued"] == 0 and st["db"]["failed"] >= 3
        await asyncio.sleep(1.5)
        age = acc.stats()["db"]["spool_oldest_age_s"]
        assert 1.0 <= age < 10, acc.stats()
        await asyncio.sleep(0.3)  # aged between the child's reports too
        assert acc.stats()["db"]["spool_oldest_age_s"] >= age + 0.1, (age, acc.stats())
    finally:
        await acc.close()


# ---------------------------------------------------------------------------------- end to end
E2E_CALLS, E2E_RATE, E2E_HOLD_MS = 160, 40, 1000


class _Proxyapp:
    """`python -m proxyapp --config FILE` from this tree (PYTHONPATH), in a session of its own so
    that the whole process group can be signalled as systemd or a terminal would."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        from .e2e import HERE, free_udp_port, toml_value

        self.tmp = tmp
        self.port = free_udp_port()
        self.spool = tmp / "spool"
        self.cfg = tmp / "proxy.toml"
        self.cfg.write_text("\n".join([
            f'listen = ["udp:127.0.0.1:{self.port}"]',
            f"script = {toml_value(str(HERE / 'acc_script.py'))}",
            'log_level = "INFO"',
            "stop_timeout = 5",
            "[acc]",
            f"db_url = {toml_value(db_url)}",
            f"spool_dir = {toml_value(str(self.spool))}",
        ]) + "\n")
        self.log_path = tmp / "proxy.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxyapp", "--config", str(self.cfg)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
        deadline = time.monotonic() + 30
        while b" ready" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"proxyapp did not start:\n{self.logs()[-3000:]}", pytrace=False)
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"proxyapp did not stop in {timeout} s:\n{self.logs()[-3000:]}", pytrace=False)

    def kill(self) -> None:
        """SIGKILL to its whole process group (the test failed: leave nothing running)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def _callids_with_200(messages: Path, method: str) -> set[str]:
    """Call-IDs whose `method` request SIPp got a 200 for (its -trace_msg file)."""
    out = set()
    for block in re.split(r"\n-{20,}[^\n]*\n", messages.read_text(errors="replace")):
        if not re.search(r"^SIP/2\.0 200 ", block, re.M):
            continue
        if re.search(rf"^CSeq:\s*\d+\s+{method}\s*$", block, re.M | re.I):
            cid = re.search(r"^(?:Call-ID|i):\s*(\S+)\s*$", block, re.M | re.I)
            if cid:
                out.add(cid.group(1))
    return out


STOPS = {
    "SIGTERM-main": lambda pid: os.kill(pid, signal.SIGTERM),
    "SIGTERM-group": lambda pid: os.killpg(pid, signal.SIGTERM),
    "SIGINT-group": lambda pid: os.killpg(pid, signal.SIGINT),
}


@pytest.mark.e2e
@pytest.mark.parametrize("how", list(STOPS))
def test_stopped_under_load_every_answered_call_has_one_cdr(tmp_path, pg, how):
    from .e2e import Sipp, SCENARIOS, uas

    server, url = pg
    proxy = _Proxyapp(tmp_path, url)
    callee = caller = None
    try:
        callee = uas(tmp_path, "uas_answer.xml", E2E_CALLS)
        messages = tmp_path / "uac-messages.log"
        caller = Sipp(tmp_path, "uac", SCENARIOS / "uac_call.xml", [
            f"127.0.0.1:{callee.port}", "-rsa", f"127.0.0.1:{proxy.port}", "-s", "2222222222",
            "-m", str(E2E_CALLS), "-r", str(E2E_RATE), "-d", str(E2E_HOLD_MS), "-timeout", "60s",
            "-recv_timeout", "8000", "-trace_msg", "-message_file", str(messages),
        ])
        time.sleep(2.5)  # about 100 calls started, 40 of them up when the signal comes
        STOPS[how](proxy.proc.pid)
        rc = proxy.wait(60)
        caller.wait(90)  # its calls after the stop fail (recv_timeout): bounded
        callee.kill()
    finally:
        proxy.kill()
        for p in (caller, callee):
            if p is not None:
                p.kill()
    logs = proxy.logs()
    answered = _callids_with_200(messages, "INVITE")
    ended = _callids_with_200(messages, "BYE")  # hung up through the proxy: it saw the whole call
    assert len(answered) >= 40, f"only {len(answered)} calls answered before the stop"
    rows = dict(_pg_rows(url, "SELECT callid, count(*) FROM my_acc GROUP BY callid"))
    still_open = _open_in_journal(proxy.spool)
    print(f"{how}: exit {rc}, {len(answered)} calls answered, {len(ended)} ended through the proxy, {len(rows)} CDRs, "
          f"{len(still_open)} left open in the journal")
    # Accounting's own guarantee: every call the proxy relayed from INVITE to BYE has exactly one
    # CDR, and no call more than one.
    assert sorted(ended - set(rows)) == [], f"calls ended through the proxy without a CDR\n{logs[-4000:]}"
    assert sorted(c for c, n in rows.items() if n != 1) == []
    assert sorted(set(rows) - answered) == [], "CDRs of calls SIPp did not see answered"
    # The accounting process served until the proxy closed the pipe, and said so.
    assert "the accounting process exited" not in logs and "event(s) lost" not in logs, logs[-4000:]
    assert "while the accounting process is not running" not in logs, logs[-4000:]
    assert "the accounting process closed its engine" not in logs, logs[-4000:]
    assert rc == 0, logs[-3000:]
    # The whole stop: the calls up at the signal end during the proxy's drain (their BYEs are
    # relayed and accounted), so every answered call has its CDR and no dialog stays open.
    assert (sorted(answered - set(rows)), sorted(still_open)) == ([], []), (
        f"{len(answered - ended)} answered call(s) whose BYE the proxy did not relay before it stopped (the main "
        f"process's drain); without a CDR: {sorted(answered - set(rows))}; open in the journal: {sorted(still_open)}")


def _pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())
    except psycopg.errors.UndefinedTable:
        return []
