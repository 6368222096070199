"""Real local backends: SQLite file, loguru log lines (file and syslog over UDP), evi datagrams."""

import asyncio
import json
import socket
import sqlite3

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark
from proxyapp.acc.backends.evi import decode_datagram
from proxyapp.acc.backends.log import parse_line
from proxyapp.acc.schema import schema_script

from .memory import settle
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)
T0 = 1_700_000_000.0


def one_call(acc, types="db|log|evi", callid="c1"):
    mark = AccMark.parse(types, "cdr|missed", "my_acc")
    inv = request("INVITE", callid, "ft")
    acc.observe_request(inv, SRC, T0)
    acc.observe_response(response(inv, 200, "OK", "tt"), T0 + 1.5)
    acc.transaction_completed(mark, inv, 200, "OK", "tt", SRC, T0 + 1.5)
    bye = request("BYE", callid, "ft", "tt", cseq=2)
    acc.observe_request(bye, SRC, T0 + 4.25)
    acc.transaction_completed(None, bye, 200, "OK", "tt", SRC, T0 + 4.3)
    miss = request("INVITE", callid + "-m", "ft2")
    acc.observe_request(miss, SRC, T0)
    acc.transaction_completed(AccMark.parse(types, "missed"), miss, 486, "Busy Here", "tm", SRC, T0 + 2)
    acc.transaction_completed(AccMark.parse(types), request("OPTIONS", callid + "-o", "ft3"), 200, "OK", "to", SRC, T0 + 3)


def run_one_call(cfg, types):
    """one_call() through a started Accounting, settled and closed."""

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        one_call(acc, types)
        await settle(acc)
        await acc.close()

    asyncio.run(go())


def test_sqlite_created_with_schema_and_rows_field_by_field(tmp_path):
    db = tmp_path / "sub" / "acc.db"
    cfg = AccConfig.from_dict({"db_url": str(db), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1})

    run_one_call(cfg, "db")
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"acc", "missed_calls", "my_acc"} <= tables
    [cdr] = conn.execute("SELECT * FROM my_acc WHERE callid='c1'").fetchall()
    assert dict(cdr) | {"id": 0, "record_id": ""} == {
        "id": 0, "record_id": "", "method": "INVITE", "from_tag": "ft", "to_tag": "tt", "callid": "c1", "sip_code": 200,
        "sip_reason": "OK", "time": 1_700_000_001_500, "duration": 2, "ms_duration": 2750, "setuptime": 1500,
        "created": 1_700_000_000_000, "end_reason": "bye", "src_ip": "192.0.2.7", "src_port": "4539",
        "from_user": "8887779996", "from_host": "198.51.100.1", "to_user": "2222222222", "to_host": "203.0.113.9",
        "ruri_user": "2222222222", "ruri_host": "203.0.113.9", "user_agent": "Bria 3",
    }
    [m] = conn.execute("SELECT method, to_tag, sip_code, sip_reason, time, duration, ms_duration, setuptime, created, end_reason FROM missed_calls").fetchall()
    assert tuple(m) == ("INVITE", "tm", 486, "Busy Here", 1_700_000_002_000, None, None, None, None, None)
    [o] = conn.execute("SELECT method, sip_code, time, duration FROM acc").fetchall()  # no table given -> acc
    assert tuple(o) == ("OPTIONS", 200, 1_700_000_003_000, None)
    # every table has the same columns
    cols = {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in ("acc", "missed_calls", "my_acc")}
    assert cols["acc"] == cols["missed_calls"] == cols["my_acc"]


def test_sqlite_migration_adds_columns_to_an_opensips_table(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    # the OpenSIPS 2.2 acc table shape (CHAR(64) callid, DATETIME time)
    conn.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY AUTOINCREMENT, method CHAR(16), from_tag CHAR(64), to_tag CHAR(64), callid CHAR(64), sip_code CHAR(3), sip_reason CHAR(32), time DATETIME, duration INTEGER, ms_duration INTEGER, setuptime INTEGER, created DATETIME)")
    conn.commit()
    conn.close()
    from proxyapp.acc.cli import main

    assert main(["migrate", "--db", str(db)]) == 0
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute('PRAGMA table_info("acc")')]
    assert {"record_id", "end_reason", "src_ip", "user_agent"} <= set(cols)
    # schema v2: the callid index, through which the writer checks record_id (schema.py)
    assert {r[1] for r in conn.execute('PRAGMA index_list("acc")')} == {"acc_callid_idx"}
    assert main(["migrate", "--db", str(db)]) == 0  # idempotent


def _row(record_id, callid, time=1):
    from proxyapp.acc.records import AccRecord

    return AccRecord(kind="acc", types=("db",), table=None, method="BYE", from_tag="a", to_tag="b", callid=callid,
                     sip_code=200, sip_reason="OK", time=time, record_id=record_id).row(())


def _stored(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT record_id, callid, time FROM acc ORDER BY id").fetchall()


def test_sqlite_writer_stores_a_record_id_once(tmp_path):
    """Exactly-once without a record_id index: a repeated id in one batch, in a later batch (a
    replay), with a NULL Call-ID, and across the 100-row INSERTs of one batch is skipped; a new
    id is stored."""
    from proxyapp.acc.backends.sqlite_writer import Writer

    db = str(tmp_path / "acc.db")
    w = Writer(db, ())
    w.write([("acc", [_row("r1", "c1"), _row("r2", None), _row("r1", "c1", time=2), _row("r2", None, time=2)])])
    w.write([("acc", [_row("r2", None, time=3), _row("r1", "c1", time=3), _row("r3", "c1")])])
    w.write([("acc", [_row(f"x{i}", "c2") for i in range(150)] * 2)])  # past one INSERT's 100 rows
    assert _stored(db)[:3] == [("r1", "c1", 1), ("r2", None, 1), ("r3", "c1", 1)]
    assert [r[0] for r in _stored(db)[3:]] == [f"x{i}" for i in range(150)]


def test_sqlite_writer_on_a_schema_v1_table(tmp_path):
    """A table created by schema v1 keeps its UNIQUE record_id index; writing to it still works
    and still stores an id once."""
    from proxyapp.acc.backends.sqlite_writer import Writer

    db = str(tmp_path / "acc.db")
    with sqlite3.connect(db) as conn:
        conn.executescript(schema_script(["acc", "missed_calls"], (), "sqlite"))
        conn.execute('CREATE UNIQUE INDEX "acc_record_id_idx" ON "acc" ("record_id")')
    w = Writer(db, ())
    w.write([("acc", [_row("r1", "c1"), _row("r1", "c1", time=2)])])
    w.write([("acc", [_row("r1", "c1", time=3), _row("r2", "c1")])])
    assert _stored(db) == [("r1", "c1", 1), ("r2", "c1", 1)]


def test_shipped_sql_files_match_generated_schema():
    from importlib.resources import files

    from proxyapp.acc.config import AccConfig as C

    cfg = C()
    for dialect in ("sqlite", "postgres"):
        shipped = files("proxyapp.acc").joinpath(f"acc-{dialect}.sql").read_text()
        assert shipped == schema_script([cfg.db_table_acc, cfg.db_table_missed_calls], cfg.extra_names, dialect)


def test_log_lines_file_and_syslog(tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    logf = tmp_path / "acc.log"
    cfg = AccConfig.from_dict({"db_url": str(tmp_path / "a.db"), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "log_file": str(logf), "log_syslog": True, "log_syslog_address": f"127.0.0.1:{rx.getsockname()[1]}", "log_syslog_facility": "local3"})

    run_one_call(cfg, "log")
    lines = [l for l in logf.read_text().splitlines() if "ACC: " in l]
    assert len(lines) == 3
    prefixes = [parse_line(l)[0] for l in lines]
    assert prefixes == ["ACC: call ended: ", "ACC: call missed: ", "ACC: transaction answered: "]
    cdr_line = lines[0][lines[0].index("ACC: "):]
    assert cdr_line.startswith(
        "ACC: call ended: created=1700000000000;call_start_time=1700000001500;duration=2;ms_duration=2750;setuptime=1500;"
        "method=INVITE;from_tag=ft;to_tag=tt;call_id=c1;code=200;reason=OK;src_ip=192.0.2.7;src_port=4539;"
    )
    _, kv = parse_line(lines[1])
    assert (kv["timestamp"], kv["method"], kv["from_tag"], kv["to_tag"], kv["call_id"], kv["code"], kv["reason"]) == ("1700000002000", "INVITE", "ft2", "tm", "c1-m", "486", "Busy Here")
    got = []
    for _ in range(3):
        got.append(rx.recv(65535).decode())
    rx.close()
    # RFC 3164 priority: local3 (19) * 8 + info (6) = 158
    assert all(g.startswith("<158>proxyapp: ACC: ") for g in got)
    assert [g.split("ACC: ", 1)[1].split(":")[0] for g in got] == ["call ended", "call missed", "transaction answered"]


def test_log_file_only_is_written_directly_with_a_timestamp(tmp_path):
    """With only acc.log_file set, the lines go to the file (local time to the ms in front of each,
    as the loguru sink wrote them before) and not through loguru's sinks."""
    import re

    from loguru import logger

    seen = []
    sink = logger.add(lambda m: seen.append(str(m)), level="DEBUG")
    logf = tmp_path / "logs" / "acc.log"
    cfg = AccConfig.from_dict({"db_url": str(tmp_path / "a.db"), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "log_file": str(logf)})

    try:
        run_one_call(cfg, "log")
    finally:
        logger.remove(sink)
    lines = logf.read_text().splitlines()
    assert len(lines) == 3
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ACC: ", line) for line in lines), lines
    assert [parse_line(line)[0] for line in lines] == ["ACC: call ended: ", "ACC: call missed: ", "ACC: transaction answered: "]
    assert not [m for m in seen if "ACC: " in m]


@pytest.mark.parametrize("fmt", ["json", "datagram"])
def test_evi_datagrams_and_subscribers(tmp_path, fmt):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    cfg = AccConfig.from_dict({"db_url": str(tmp_path / "a.db"), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "evi_udp": [f"127.0.0.1:{rx.getsockname()[1]}"], "evi_format": fmt})
    seen = []

    async def go():
        acc = Accounting(cfg)
        acc.subscribe("E_ACC_CDR", lambda name, p: seen.append((name, p)))
        acc.subscribe("E_ACC_MISSED_EVENT", lambda name, p: seen.append((name, p)))
        with pytest.raises(ValueError):
            acc.subscribe("E_NOPE", print)
        await acc.start()
        one_call(acc, "evi")
        await settle(acc)
        await acc.close()

    asyncio.run(go())
    events = []
    for _ in range(3):
        data = rx.recv(65535)
        if fmt == "json":
            j = json.loads(data)
            assert j["jsonrpc"] == "2.0"
            events.append((j["method"], {k: (None if v is None else str(v)) for k, v in j["params"].items()}))
        else:
            events.append(decode_datagram(data))
    rx.close()
    assert [e[0] for e in events] == ["E_ACC_CDR", "E_ACC_MISSED_EVENT", "E_ACC_EVENT"]
    cdr = events[0][1]
    assert {k: cdr[k] for k in ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time", "duration", "ms_duration", "setuptime", "created", "src_ip", "user_agent")} == {
        "method": "INVITE", "from_tag": "ft", "to_tag": "tt", "callid": "c1", "sip_code": "200", "sip_reason": "OK",
        "time": "1700000001500", "duration": "2", "ms_duration": "2750", "setuptime": "1500", "created": "1700000000000",
        "src_ip": "192.0.2.7", "user_agent": "Bria 3",
    }
    assert events[1][1]["sip_code"] == "486" and events[2][1]["method"] == "OPTIONS"
    assert [s[0] for s in seen] == ["E_ACC_CDR", "E_ACC_MISSED_EVENT"]
    assert seen[0][1]["ms_duration"] == 2750 and seen[1][1]["sip_reason"] == "Busy Here"


def _acc_rows(db):
    return [r[0] for r in sqlite3.connect(db).execute("SELECT callid FROM acc ORDER BY id")]


def test_sqlite_writer_process_killed_mid_run_loses_nothing(tmp_path):
    """The SQLite writer is a child process; SIGKILL it between batches and in the middle of one:
    the failed batches are spooled, a new writer is started, and every record lands exactly once,
    in order."""
    import os
    import signal

    db = tmp_path / "acc.db"
    cfg = AccConfig.from_dict({"db_url": str(db), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "retry_interval_ms": 50})
    pids = []

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        backend = acc.workers["db"].backend
        n = 0
        for round_ in range(4):
            for _ in range(300):
                acc.transaction_completed(AccMark.parse("db"), request("OPTIONS", f"k{n:05d}", "ft"), 200, "OK", "tt", SRC, T0)
                n += 1
                if n % 50 == 0:
                    await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + 15
            while (backend._proc is None or backend._proc.pid in pids) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # the replay after the previous kill starts a new writer
            proc = backend._proc
            assert proc is not None and proc.returncode is None and proc.pid not in pids
            pids.append(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)  # whatever it was doing
        await settle(acc, timeout=30)
        s = acc.stats()["db"]
        await acc.close()
        return n, s

    n, s = asyncio.run(go())
    assert len(set(pids)) == 4  # a new writer after each kill
    assert _acc_rows(db) == [f"k{i:05d}" for i in range(n)]
    assert s["lost"] == 0 and s["written"] + s["replayed"] >= n


def test_sqlite_writer_reports_a_database_it_cannot_write(tmp_path):
    """A database path the writer cannot open is a backend failure like a database server that is
    down: records go to the spool and are written once the path works."""
    blocker = tmp_path / "notadir"
    blocker.write_text("a file where the database directory should be")
    db = blocker / "acc.db"
    cfg = AccConfig.from_dict({"db_url": str(db), "spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "retry_interval_ms": 50})

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        for i in range(20):
            acc.transaction_completed(AccMark.parse("db"), request("OPTIONS", f"u{i:02d}", "ft"), 200, "OK", "tt", SRC, T0)
        deadline = asyncio.get_running_loop().time() + 15
        while acc.stats()["db"]["spool_pending"] < 20 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        down = acc.stats()["db"]
        blocker.unlink()
        blocker.mkdir()
        await settle(acc, timeout=30)
        up = acc.stats()["db"]
        await acc.close()
        return down, up

    down, up = asyncio.run(go())
    assert down["spool_pending"] == 20 and down["written"] == 0 and down["failed"] >= 20
    assert up["replayed"] == 20 and up["lost"] == 0
    assert _acc_rows(db) == [f"u{i:02d}" for i in range(20)]


_SQLITE_WRITER_PARENT = (
    "from proxyapp.acc import AccConfig\n"
    "from proxyapp.acc.backends.db_sqlite import SqliteBackend\n"
    "async def start(tmp):\n"
    "    b = SqliteBackend(AccConfig.from_dict({'db_url': tmp + '/acc.db'}))\n"
    "    await b.open()\n"
    "    return b._proc.pid\n"
)
_JOURNAL_HELPER_PARENT = (
    "from proxyapp.acc.journal import JournalHelper\n"
    "async def start(tmp):\n"
    "    open(tmp + '/dialogs.journal', 'ab').close()\n"
    "    h = JournalHelper(tmp + '/dialogs.journal')\n"
    "    await h.request('sync')\n"
    "    return h.child.proc.pid\n"
)


@pytest.mark.parametrize("child", [_SQLITE_WRITER_PARENT, _JOURNAL_HELPER_PARENT], ids=["sqlite_writer", "journal_helper"])
def test_helper_process_exits_when_its_parent_is_killed(tmp_path, child):
    """No orphan: the SQLite writer and the journal helper read their stdin until EOF, so a
    SIGKILLed proxy takes them along."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import asyncio\n" + child +
        "async def main():\n"
        f"    print(await start({str(tmp_path)!r}), flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        writer_pid = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{writer_pid}")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{writer_pid}/stat") as f:
                    if f.read().split(") ")[1].startswith("Z"):
                        break  # exited; a zombie until init reaps it
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"helper {writer_pid} outlived its killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_sqlite_writer_that_starts_slowly_is_not_timed_out(tmp_path, monkeypatch):
    """A write that has to start the writer process first gets CHILD_START_S, not the backend
    timeout: on a saturated machine a starting interpreter took longer than the timeout, and
    every batch went to the spool while the load lasted."""
    from proxyapp.acc.child import ChildProcess

    real_start = ChildProcess.start

    async def slow_start(self):
        if self.proc is None or self.proc.returncode is not None:
            await asyncio.sleep(0.6)  # an interpreter starting on a busy machine
        return await real_start(self)

    monkeypatch.setattr(ChildProcess, "start", slow_start)
    cfg = AccConfig.from_dict({"db_url": str(tmp_path / "acc.db"), "spool_dir": str(tmp_path / "spool"),
                               "flush_interval_ms": 1, "backend_timeout_ms": 300})

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        await settle(acc)
        await acc.workers["db"].backend._kill()  # the next write starts a new writer, slowly
        acc.transaction_completed(AccMark.parse("db"), request("OPTIONS", "slow", "a"), 200, "OK", "t", SRC, T0)
        await settle(acc)
        stats = acc.stats()["db"]
        await acc.close()
        return stats

    stats = asyncio.run(go())
    assert (stats["written"], stats["spooled"], stats["failed"]) == (1, 0, 0)
    with sqlite3.connect(tmp_path / "acc.db") as conn:
        assert conn.execute("SELECT callid FROM acc").fetchall() == [("slow",)]
