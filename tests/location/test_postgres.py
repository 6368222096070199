"""postgres backend against a real PostgreSQL (Debian postgresql, started by the fixture on loopback).

Two Location instances on one database stand for two proxyapp nodes.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from proxyapp.location import Binding, Location, LocationConfig, for_config

from .helpers import b, contacts, until

pytestmark = pytest.mark.timeout(120)

A = "sip:alice@example.com"
B = "sip:bob@example.com"


def node(url: str, **kw) -> Location:
    return for_config(LocationConfig.from_dict({"backend": "postgres", "db_url": url, "retry_interval": 0.1} | kw))


def rows(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT aor, idx, contact, node FROM location ORDER BY aor, idx").fetchall()


def test_two_nodes_see_each_others_changes(pg):
    _, url = pg
    now = time.time()

    async def go():
        n1, n2 = node(url), node(url)
        await n1.start()
        await n2.start()
        conn = object()
        n1.put(A, [b(A, "sip:a@192.0.2.1", now + 600, conn=conn, node="sip:10.0.0.1:5060", path=("<sip:e;lr>",))], now)
        await until(lambda: contacts(n2.get(A, now)) == ["sip:a@192.0.2.1"], what="n2 sees n1's put")
        got = n2.get(A, now)[0]
        assert got.node == "sip:10.0.0.1:5060" and got.path == ("<sip:e;lr>",) and got.conn is None
        # n2 keeps n1's binding and adds its own: n1's binding is unchanged and keeps its conn
        n2.put(A, [got, b(A, "sip:a@192.0.2.2", now + 600, q=0.5, node="sip:10.0.0.2:5060")], now)
        await until(lambda: contacts(n1.get(A, now)) == ["sip:a@192.0.2.1", "sip:a@192.0.2.2"], what="n1 sees n2's put")
        assert n1.get(A, now)[0].conn is conn
        assert rows(url) == [(A, 0, "sip:a@192.0.2.1", "sip:10.0.0.1:5060"), (A, 1, "sip:a@192.0.2.2", "sip:10.0.0.2:5060")]
        n1.put(B, [b(B, "sip:b@h", now + 600)], now)
        n1.remove(A, "sip:a@192.0.2.2")
        await until(lambda: contacts(n2.get(A, now)) == ["sip:a@192.0.2.1"] and B in n2, what="n2 sees the remove")
        n2.remove(A)
        await until(lambda: A not in n1, what="n1 sees the delete")
        assert n1.backend.stats()["notified"] >= 2 and n2.backend.stats()["notified"] >= 2
        await n1.close()
        await n2.close()
        # a third node started later loads what the others left
        n3 = node(url)
        assert await n3.start() == 1
        await n3.close()
        return n3

    n3 = asyncio.run(go())
    assert n3.aors() == [B]


def test_concurrent_writes_of_one_aor_end_equal_everywhere(pg):
    """Last write per AOR wins: whatever the interleaving, both nodes end with the database's list."""
    _, url = pg
    now = time.time()

    async def go():
        n1, n2 = node(url), node(url)
        await n1.start()
        await n2.start()
        for i in range(30):
            n1.put(A, [b(A, f"sip:n1-{i}@h", now + 600)], now)
            n2.put(A, [b(A, f"sip:n2-{i}@h", now + 600)], now)
            await asyncio.sleep(0)
        def settled():
            stored = [r[2] for r in rows(url)]
            return len(stored) == 1 and contacts(n1.get(A, now)) == contacts(n2.get(A, now)) == stored
        await until(settled, what="one list everywhere")
        await n1.close()
        await n2.close()

    asyncio.run(go())


def test_down_at_write_time_put_does_not_block_and_the_write_lands(pg):
    server, url = pg
    now = time.time()

    async def go():
        n1, n2 = node(url, write_timeout=1), node(url, write_timeout=1)
        await n1.start()
        await n2.start()
        n1.put(A, [b(A, "sip:before@h", now + 600)], now)
        await until(lambda: A in n2, what="n2 sees the first put")
        await asyncio.to_thread(server.stop, "fast")
        t0 = time.perf_counter()
        n1.put(A, [b(A, "sip:during@h", now + 600)], now)
        n1.put(B, [b(B, "sip:b@h", now + 600)], now)
        assert time.perf_counter() - t0 < 0.05
        await until(lambda: n1.backend.stats()["failures"] >= 1, what="a failed write")
        assert n1.backend.stats()["pending"] == 2
        await asyncio.to_thread(server.start)
        await until(lambda: n1.backend.stats()["pending"] == 0, timeout=30, what="the queued writes")
        assert [r[2] for r in rows(url)] == ["sip:during@h", "sip:b@h"]
        # n2 lost its LISTEN connection too: it resubscribes and re-reads everything
        await until(lambda: contacts(n2.get(A, now)) == ["sip:during@h"] and B in n2, timeout=30, what="n2 catches up")
        assert n2.backend.stats()["resyncs"] >= 1
        await n1.close()
        await n2.close()

    asyncio.run(go())


def test_down_at_start_starts_empty_and_loads_when_back(pg):
    server, url = pg
    now = time.time()

    async def go():
        n0 = node(url)
        await n0.start()
        n0.put(A, [b(A, "sip:a@h", now + 600)], now)
        await n0.close()
        await asyncio.to_thread(server.stop, "fast")
        n1 = node(url, write_timeout=1)
        t0 = time.perf_counter()
        assert await n1.start() == 0
        assert time.perf_counter() - t0 < 5
        n1.put(B, [b(B, "sip:b@h", now + 600)], now)
        await asyncio.to_thread(server.start)
        await until(lambda: A in n1 and n1.backend.stats()["pending"] == 0, timeout=30, what="the load after the outage")
        assert sorted(r[0] for r in rows(url)) == [A, B]
        await n1.close()

    asyncio.run(go())


def test_expired_rows_are_purged_and_never_loaded(pg):
    _, url = pg
    now = time.time()

    async def go():
        n1 = node(url, purge_interval=0.05)
        await n1.start()
        n1.put(A, [b(A, "sip:dead@h", now - 1), b(A, "sip:live@h", now + 600)], now - 10)
        await until(lambda: [r[2] for r in rows(url)] == ["sip:live@h"], what="the purge")
        await n1.close()

    asyncio.run(go())


def test_the_record_round_trips_field_by_field(pg):
    _, url = pg
    now = time.time()
    full = Binding(
        aor=A, contact="sip:a@192.0.2.1:5062;transport=tcp;ob", expires=now + 123.456789, q=0.7, call_id="c1@x",
        cseq=42, instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", reg_id=2, path=("<sip:p1;lr>", "<sip:p2;lr>"),
        source_transport="tcp", source_host="198.51.100.7", source_port=40000, socket="tcp:127.0.0.1:5060",
        node="sip:127.0.0.1:5060", user_agent="Linphone/5.2 (ünïcode)", last_modified=now - 0.25,
    )

    async def go():
        n1 = node(url)
        await n1.start()
        n1.put(A, [full], now)
        await n1.close()
        n2 = node(url)
        await n2.start()
        await n2.close()
        return n2.get(A, now)

    assert asyncio.run(go()) == [full]
