"""The accounting engine in its own process (acc/process.py): same records, and what it adds.

- The same calls through the proxy core give the same rows, column for column, whether the
  engine runs inline or in the child process.
- A proxy killed with SIGKILL loses none of the events it handed over: the child drains the
  pipe, flushes, and exits; the next child waits for it on the spool lock.
- A child that dies is replaced; its successor restores the open dialogs from the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import fastsip
import pytest

from proxyapp.acc import AccConfig, AccMark, Accounting, for_config
from proxyapp.acc.process import AccountingProcess
from proxyapp.config import Config
from proxyapp.script import Script
from proxyapp.transaction import Send
from tests.proxy.callflow import CALLEE, CALLER, Flow, invite, new_proxy

from .memory import wait_until

pytestmark = pytest.mark.timeout(120)


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (pytest sees the test's own fixture arguments)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@contextlib.asynccontextmanager
async def _started(tmp: Path) -> AsyncIterator[AccountingProcess]:
    acc = AccountingProcess(_cfg(tmp, "process"))
    await acc.start()
    try:
        yield acc
    finally:
        await acc.close()


def _script() -> Script:
    """CDR, failed and missed on initial INVITEs; BYEs accounted as transactions."""
    from proxyapp import default_script

    def route(msg, ctx):
        if ctx.is_method("INVITE") and not ctx.has_totag():
            ctx.do_accounting("db", "cdr|failed|missed")
        elif ctx.is_method("BYE"):
            ctx.do_accounting("db")
        default_script.route(msg, ctx)

    mod = types.ModuleType("acc_process_script")
    mod.route = route
    mod.failure_route = default_script.failure_route
    return Script(mod, "acc_process_script")


def _cfg(tmp: Path, engine: str) -> AccConfig:
    return AccConfig.from_dict({"db_url": str(tmp / "acc.db"), "spool_dir": str(tmp / "spool"), "engine": engine,
                                "flush_interval_ms": 5})


def _rows(db: Path) -> list[tuple[object, ...]]:
    """Every row; a missed call's record_id is random (records.new_record_id), so it is left out."""
    with sqlite3.connect(db) as conn:
        acc = conn.execute("SELECT * FROM acc ORDER BY record_id").fetchall()
        conn.row_factory = sqlite3.Row
        missed = [dict(r) for r in conn.execute("SELECT * FROM missed_calls ORDER BY id")]
    for r in missed:
        assert len(r.pop("record_id")) == 32
    return acc + [("missed",) + tuple(r.values()) for r in missed]


def _reject(flow: Flow, n: int) -> None:
    """INVITE answered 486 by the callee; the caller ACKs the 486."""
    out = flow.rx(invite(n), CALLER)
    fwd = [a.data for a in out if type(a) is Send and a.data.startswith(b"INVITE")][0]
    busy = bytes(fastsip.make_response(fastsip.parse(fwd), 486, "Busy Here", to_tag=f"busy{n}"))
    out = flow.rx(busy, CALLEE)
    up = [a.data for a in out if type(a) is Send and a.data.startswith(b"SIP/2.0 486")][0]
    ack = invite(n).replace(b"INVITE sip:", b"ACK sip:", 1).replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK")
    to = fastsip.parse(up).headers.get("To")
    ack = ack.replace(f"To: <sip:bench@{CALLEE[0]}:{CALLEE[1]}>".encode(), f"To: {to}".encode())
    flow.rx(ack.split(b"\r\n\r\n")[0] .replace(b"Content-Type: application/sdp\r\n", b"")
            .replace(b"Content-Length: 166", b"Content-Length: 0") + b"\r\n\r\n", CALLER)


async def _drive(acc, calls: int) -> None:
    """Answered calls with their BYE, and rejected ones, through the proxy core, on a clock that
    is the same for every run."""
    ticks = itertools.count()
    proxy = new_proxy(acc, _script())
    proxy.wallclock = lambda: 1_800_000_000.0 + next(ticks) * 0.0125
    flow = Flow(proxy)
    for n in range(calls):
        if n % 5 == 4:
            _reject(flow, n)
        else:
            flow.teardown(n, flow.setup(n))
        if n % 20 == 0:
            await asyncio.sleep(0.001)  # let the batches and writers run, as datagrams would


@in_loop
async def test_same_rows_inline_and_in_process(tmp_path):
    got = {}
    for engine in ("inline", "process"):
        d = tmp_path / engine
        cfg = _cfg(d, engine)
        acc = for_config(cfg)
        await acc.start()
        await _drive(acc, 200)
        await acc.close()
        got[engine] = _rows(d / "acc.db")
    # 160 answered calls: a CDR and the BYE's record each; 40 rejected: failed and missed
    kinds = sorted(r[0] == "missed" for r in got["inline"])
    assert len(got["inline"]) == 160 * 2 + 40 * 2 and kinds.count(True) == 40
    assert got["process"] == got["inline"]


@in_loop
async def test_branch_failed_clears_missed_on_this_side(tmp_path):
    async with _started(tmp_path) as acc:
        req = fastsip.parse(invite(1))
        mark = AccMark.parse("db", "missed")
        acc.branch_failed(mark, req, 486, "Busy Here", "t1", CALLER, time.time())
        assert mark.missed is False  # the failure route sees it cleared, as with the engine
        acc.branch_failed(mark, req, 486, "Busy Here", "t1", CALLER, time.time())  # not re-armed: nothing
    with sqlite3.connect(tmp_path / "acc.db") as conn:
        assert conn.execute("SELECT sip_code, to_tag FROM missed_calls").fetchall() == [(486, "t1")]


@in_loop
async def test_subscribe_needs_the_inline_engine(tmp_path):
    acc = AccountingProcess(_cfg(tmp_path, "process"))
    with pytest.raises(RuntimeError, match="inline"):
        acc.subscribe("E_ACC_CDR", lambda name, params: None)


def test_engine_key(tmp_path):
    from proxyapp.__main__ import make_accounting

    assert AccConfig().engine == "process"
    with pytest.raises(ValueError, match="acc.engine"):
        AccConfig.from_dict({"engine": "threads"})
    for engine, cls in (("process", AccountingProcess), ("inline", Accounting)):
        cfg = Config.from_dict({"acc": {"engine": engine, "spool_dir": str(tmp_path)}})
        assert type(make_accounting(cfg)) is cls


_FEEDER = r"""
import asyncio, sys
sys.path.insert(0, {root!r})
from proxyapp.acc import AccConfig
from proxyapp.acc.process import AccountingProcess
from tests.proxy.callflow import Flow, new_proxy
from tests.acc.test_process import _script

async def main():
    acc = AccountingProcess(AccConfig.from_dict({{"db_url": {db!r}, "spool_dir": {spool!r}}}))
    await acc.start()
    flow = Flow(new_proxy(acc, _script()))
    for n in range({calls}):
        flow.teardown(n, flow.setup(n))
    acc.process_events()
    await acc._child.proc.stdin.drain()
    print(acc._child.proc.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _wait_unlocked(spool: Path, timeout: float = 60.0) -> None:
    """Until no accounting process holds the spool directory."""
    fd = os.open(spool / "acc.lock", os.O_RDWR)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the accounting process did not finish"
                time.sleep(0.05)
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_proxy_sigkill_loses_no_event(tmp_path):
    db, spool = tmp_path / "acc.db", tmp_path / "spool"
    root = str(Path(__file__).resolve().parents[2])
    code = _FEEDER.format(root=root, db=str(db), spool=str(spool), calls=300)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert proc.stdout is not None
        child_pid = int(proc.stdout.readline())  # every event is in the pipe
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _wait_unlocked(spool)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The accounting process finished on its own: it releases the lock as its last step, then
    # the interpreter shuts down (a moment longer when it runs niced on a busy machine).
    deadline = time.monotonic() + 15
    while _running(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child_pid)
    with sqlite3.connect(db) as conn:
        # 300 CDRs and 300 BYE records: nothing the proxy handed over was lost
        assert conn.execute("SELECT count(*), count(DISTINCT callid) FROM acc WHERE end_reason = 'bye'").fetchone() == (300, 300)
        assert conn.execute("SELECT count(*) FROM acc WHERE method = 'BYE'").fetchone() == (300,)


def _journaled_dialogs(spool: Path) -> set[str]:
    """Call-IDs the dialog journal file holds as opened (read only, as a restarted child would)."""
    from proxyapp.acc.journal import read_entries

    out = set()
    for e in read_entries(spool / "dialogs.journal"):
        if e[0] == "o":  # appended by the running engine
            out.add(e[1])
        elif e[0] == "open":  # written by a compaction
            out.add(e[1]["callid"])
    return out


@in_loop
async def test_a_dead_child_is_replaced_and_open_dialogs_survive(tmp_path):
    acc = AccountingProcess(_cfg(tmp_path, "process"))
    await acc.start()
    flow = Flow(new_proxy(acc, _script()))
    routes = [flow.setup(n) for n in range(50)]  # 50 answered calls, still open
    # The events reach the child and its journal holds all 50 dialogs (waited for: a fixed 0.3 s
    # was not always enough on a loaded machine); a SIGKILL then loses none of them.
    await wait_until(lambda: len(_journaled_dialogs(tmp_path / "spool")) == 50, what="50 dialogs journaled by the child",
                     show=lambda: len(_journaled_dialogs(tmp_path / "spool")))
    first = acc._child.proc
    os.kill(first.pid, signal.SIGKILL)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if acc.restarts == 1 and acc._ready:
            break
    assert acc.restarts == 1 and acc._child.proc is not first
    for n, route in enumerate(routes):
        flow.teardown(n, route)  # their BYEs reach the new child
    await acc.close()
    with sqlite3.connect(tmp_path / "acc.db") as conn:
        assert conn.execute("SELECT count(DISTINCT callid) FROM acc WHERE end_reason = 'bye'").fetchone() == (50,)
    assert acc.stats()["process"]["restarts"] == 1


@in_loop
async def test_a_second_engine_waits_for_the_spool_lock(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    fd = os.open(spool / "acc.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a previous accounting process still flushing would
    acc = AccountingProcess(_cfg(tmp_path, "process"))
    start = asyncio.create_task(acc.start())
    await asyncio.sleep(1.5)
    assert not start.done()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    await asyncio.wait_for(start, 30)
    await acc.close()


@in_loop
async def test_a_child_that_never_gets_ready_is_killed(tmp_path, monkeypatch):
    import proxyapp.acc.process as process

    monkeypatch.setattr(process, "START_TIMEOUT_S", 1.0)
    spool = tmp_path / "spool"
    spool.mkdir()
    fd = os.open(spool / "acc.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the previous process never lets go
    try:
        acc = AccountingProcess(_cfg(tmp_path, "process"))
        with pytest.raises(RuntimeError, match="no answer in 1 s"):
            await acc.start()
        assert acc._child.proc is None  # killed and reaped, not left waiting on the lock
    finally:
        os.close(fd)


@in_loop
async def test_stats_come_from_the_child_every_second_even_when_idle(tmp_path):
    async with _started(tmp_path) as acc:
        assert acc.stats()["process"] == {"restarts": 0, "events_buffered": 0, "bytes_in_pipe_buffer": 0}
        # From the start, before the first report a second later: "ready" carries the first one.
        assert acc.stats()["db"]["written"] == 0 and acc.stats()["db"]["spool_pending"] == 0
        flow = Flow(new_proxy(acc, _script()))
        for n in range(3):
            flow.teardown(n, flow.setup(n))
        for _ in range(60):  # no more events: the reports must come on their own
            await asyncio.sleep(0.1)
            if acc.stats().get("db", {}).get("written") == 6:
                break
        st = acc.stats()
        assert st["db"]["written"] == 6 and st["dialogs"] == 0  # 3 CDRs and 3 BYE records


def _niceness_of_children(pid: int) -> dict[str, int]:
    """{module: niceness} of the processes whose parent is pid (from /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid and b"-m" in cmdline:  # fields[1] is the ppid, fields[16] nice
            out[cmdline[cmdline.index(b"-m") + 1].decode()] = int(fields[16])
    return out


@pytest.mark.parametrize("engine", ["process", "inline"])
@in_loop
async def test_accounting_processes_run_at_the_configured_niceness(tmp_path, engine):
    """acc.nice: the accounting process, the SQLite writer and the journal helper run below the
    proxy's priority; the accounting process's own children too (not niced twice)."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    cfg = AccConfig.from_dict({"db_url": str(tmp_path / "acc.db"), "spool_dir": str(tmp_path / "spool"),
                               "engine": engine, "flush_interval_ms": 5, "nice": 7})
    acc = for_config(cfg)
    await acc.start()
    try:
        await _drive(acc, 20)  # the writer and the journal helper start on their first work
        want = {"proxyapp.acc.backends.sqlite_writer", "proxyapp.acc.journal_helper"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if engine == "process":
                mine = _niceness_of_children(os.getpid())
                engine_pid = acc._child.proc.pid
                theirs = _niceness_of_children(engine_pid)
                seen = {**mine, **theirs}
            else:
                seen = _niceness_of_children(os.getpid())
            if want <= set(seen):
                break
            await asyncio.sleep(0.05)
        expected = max(base, 7)
        if engine == "process":
            assert mine == {"proxyapp.acc.process": expected}
        assert {m: seen[m] for m in want} == {m: expected for m in want}
    finally:
        await acc.close()


def test_nice_key():
    assert AccConfig().nice == 10
    assert AccConfig.from_dict({"nice": 0}).nice == 0
    for bad in (-1, 20, "5", "auto", "high", True):
        with pytest.raises(ValueError, match="acc.nice"):
            AccConfig.from_dict({"nice": bad})


def test_make_accounting_keeps_the_niceness_whatever_the_number_of_workers(tmp_path):
    """Accounting runs niced with one process and with workers filling every core alike (with the
    spool no longer spiralling, 10 beat 0 at 2 workers too: bench/README.md, Run AN)."""
    from proxyapp.__main__ import make_accounting

    got = {}
    for workers in (1, 2):
        for acc in ({}, {"nice": 3}):
            cfg = Config.from_dict({"workers": workers, "listen": ["udp:127.0.0.1:5060"],
                                    "acc": {"db_url": str(tmp_path / "acc.db"), "spool_dir": str(tmp_path / "spool"), **acc}})
            got[workers, acc.get("nice")] = make_accounting(cfg, 0 if workers > 1 else None).cfg.nice
    assert got == {(1, None): 10, (1, 3): 3, (2, None): 10, (2, 3): 3}
