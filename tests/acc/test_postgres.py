"""db backend against a real PostgreSQL (Debian postgresql, started by the fixture on loopback)."""

import asyncio
import time

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark

from .memory import settle, wait_until
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)

pytestmark = pytest.mark.timeout(180)


def test_postgres_rows_field_by_field_and_migration(pg, tmp_path):
    server, url = pg
    cfg = AccConfig.from_dict({"db_url": url, "spool_dir": str(tmp_path), "flush_interval_ms": 1})
    t0 = 1_700_000_000.0

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        inv = request("INVITE", "Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA" * 3, "fd542335")  # a long Call-ID
        acc.observe_request(inv, SRC, t0)
        acc.observe_response(response(inv, 200, "OK", "tt"), t0 + 0.25)
        acc.transaction_completed(AccMark.parse("db|log", "cdr|missed", "my_acc"), inv, 200, "OK", "tt", SRC, t0 + 0.25)
        bye = request("BYE", inv.call_id, "tt", "fd542335", swap=True)
        acc.observe_request(bye, SRC, t0 + 3.0)
        acc.transaction_completed(None, bye, 200, "OK", "fd542335", SRC, t0 + 3.01)
        miss = request("INVITE", "m1", "a")
        acc.transaction_completed(AccMark.parse("db", "missed"), miss, 408, "Request Timeout", "z", SRC, t0 + 32)
        await settle(acc)
        await acc.close()

    asyncio.run(go())
    rows = _q(url, 'SELECT method, from_tag, to_tag, callid, sip_code, sip_reason, "time", duration, ms_duration, setuptime, created, end_reason, src_ip, user_agent FROM my_acc')
    assert rows == [("INVITE", "fd542335", "tt", "Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA" * 3, 200, "OK", 1_700_000_000_250, 2, 2750, 250, 1_700_000_000_000, "bye", "192.0.2.7", "Bria 3")]
    rows = _q(url, 'SELECT method, callid, sip_code, sip_reason, "time", duration, created FROM missed_calls')
    assert rows == [("INVITE", "m1", 408, "Request Timeout", 1_700_000_032_000, None, None)]
    # the same columns in every table; migrate is idempotent
    def colnames(t):
        return [r[0] for r in _q(url, "SELECT column_name FROM information_schema.columns WHERE table_name=%s ORDER BY ordinal_position", (t,))]
    assert colnames("acc") == colnames("missed_calls") == colnames("my_acc")
    from proxyapp.acc.cli import main

    assert main(["migrate", "--db", url, "--table", "my_acc"]) == 0


def _q(url, sql, params=()):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall()


def test_postgres_down_mid_run_every_cdr_exactly_once(pg, tmp_path):
    """200 calls; PostgreSQL stopped in the middle and started again: 200 CDRs, each once."""
    server, url = pg
    cfg = AccConfig.from_dict({"db_url": url, "spool_dir": str(tmp_path), "flush_interval_ms": 5, "retry_interval_ms": 200, "backend_timeout_ms": 1500, "batch_max": 20})

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        mark = AccMark.parse("db", "cdr")
        stopped_at = None
        for i in range(200):
            now = time.time()
            inv = request("INVITE", f"pgcall-{i:03d}", "a")
            acc.observe_request(inv, SRC, now)
            acc.transaction_completed(mark, inv, 200, "OK", "b", SRC, now + 0.001)
            bye = request("BYE", f"pgcall-{i:03d}", "a", "b")
            acc.observe_request(bye, SRC, now + 0.002)
            acc.transaction_completed(None, bye, 200, "OK", "b", SRC, now + 0.003)
            if i == 80:
                stopped_at = acc.stats()["db"]["written"]
                await asyncio.to_thread(server.stop, "fast")  # in the middle of the run
            if i == 150:
                # The records of the outage are in the spool (waited for: a write to the stopped
                # server can take until backend_timeout_ms to fail on a busy machine).
                await wait_until(lambda: acc.stats()["db"]["spool_pending"] > 0, what="records spooled while PostgreSQL is down",
                                 show=lambda: acc.stats()["db"])
                await asyncio.to_thread(server.start)
            await asyncio.sleep(0.005)
        await settle(acc, timeout=30)
        s = acc.stats()["db"]
        await acc.close()
        return s, stopped_at

    s, stopped_at = asyncio.run(go())
    rows = _q(url, "SELECT callid, count(*) FROM acc GROUP BY callid")
    assert len(rows) == 200 and all(n == 1 for _, n in rows)
    assert {c for c, _ in rows} == {f"pgcall-{i:03d}" for i in range(200)}
    assert s["spooled"] > 0 and s["replayed"] > 0 and s["lost"] == 0
    assert s["written"] + s["replayed"] >= 200


def test_postgres_down_at_start_then_up(pg, tmp_path):
    server, url = pg
    server.stop("fast")
    cfg = AccConfig.from_dict({"db_url": url, "spool_dir": str(tmp_path), "flush_interval_ms": 1, "retry_interval_ms": 100, "backend_timeout_ms": 1000})

    async def go():
        acc = Accounting(cfg)
        await acc.start()  # must not fail nor block on a dead database
        for i in range(10):
            acc.transaction_completed(AccMark.parse("db"), request("OPTIONS", f"s{i}", "a"), 200, "OK", "t", SRC, 5.0)
        db_stats = lambda: acc.stats()["db"]  # noqa: E731
        await wait_until(lambda: db_stats()["queued"] == 0 and db_stats()["written"] + db_stats()["spooled"] == 10,
                         what="10 records written or spooled", show=db_stats)
        s = db_stats()
        assert (s["spool_pending"], s["spooled"], s["written"]) == (10, 10, 0)
        await asyncio.to_thread(server.start)
        await settle(acc, timeout=20)
        await acc.close()

    asyncio.run(go())
    assert sorted(r[0] for r in _q(url, "SELECT callid FROM acc")) == [f"s{i}" for i in range(10)]
