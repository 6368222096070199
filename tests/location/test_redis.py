"""redis backend against a real redis-server (Debian redis-server, started by the fixture on loopback).

Two Location instances on one server stand for two proxyapp nodes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from proxyapp.location import Binding, Location, LocationConfig, for_config

from .helpers import b, contacts, until

pytestmark = pytest.mark.timeout(120)

A = "sip:alice@example.com"
B = "sip:bob@example.com"


def node(url: str, **kw) -> Location:
    return for_config(LocationConfig.from_dict({"backend": "redis", "redis_url": url, "retry_interval": 0.1} | kw))


def command(server, *args: str) -> bytes:
    """One command in RESP, the raw reply (the test reads the server without the code under test)."""
    req = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(req)
        data = b""
        while not data.endswith(b"\r\n") or (data[:1] == b"$" and data.count(b"\r\n") < 2 and not data.startswith(b"$-1")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def stored(server, aor: str) -> list[str]:
    reply = command(server, "GET", f"proxyapp:location:{aor}")
    if reply.startswith(b"$-1"):
        return []
    body = reply.split(b"\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    return [d["contact"] for d in json.loads(body)]


def test_two_nodes_see_each_others_changes(redis_server):
    now = time.time()

    async def go():
        n1, n2 = node(redis_server.url), node(redis_server.url)
        await n1.start()
        await n2.start()
        conn = object()
        n1.put(A, [b(A, "sip:a@192.0.2.1", now + 600, conn=conn, node="sip:10.0.0.1:5060")], now)
        await until(lambda: contacts(n2.get(A, now)) == ["sip:a@192.0.2.1"], what="n2 sees n1's put")
        got = n2.get(A, now)[0]
        assert got.node == "sip:10.0.0.1:5060" and got.conn is None
        n2.put(A, [got, b(A, "sip:a@192.0.2.2", now + 600, q=0.5)], now)
        await until(lambda: contacts(n1.get(A, now)) == ["sip:a@192.0.2.1", "sip:a@192.0.2.2"], what="n1 sees n2's put")
        assert n1.get(A, now)[0].conn is conn  # unchanged binding: the connection stays
        assert stored(redis_server, A) == ["sip:a@192.0.2.1", "sip:a@192.0.2.2"]
        # the key lives as long as its last binding
        ttl_ms = int(command(redis_server, "PTTL", f"proxyapp:location:{A}")[1:-2])
        assert 590_000 < ttl_ms <= 600_000
        n1.put(B, [b(B, "sip:b@h", now + 600)], now)
        n1.remove(A, "sip:a@192.0.2.2")
        await until(lambda: contacts(n2.get(A, now)) == ["sip:a@192.0.2.1"] and B in n2, what="n2 sees the remove")
        n2.remove(A)
        await until(lambda: A not in n1, what="n1 sees the delete")
        assert stored(redis_server, A) == []
        await n1.close()
        await n2.close()
        n3 = node(redis_server.url)
        assert await n3.start() == 1
        await n3.close()
        return n3

    assert asyncio.run(go()).aors() == [B]


def test_stopped_at_write_time_put_does_not_block_and_the_write_lands_after_a_restart(redis_server):
    now = time.time()

    async def go():
        n1, n2 = node(redis_server.url, write_timeout=1), node(redis_server.url, write_timeout=1)
        await n1.start()
        await n2.start()
        n1.put(A, [b(A, "sip:before@h", now + 600)], now)
        n1.put(B, [b(B, "sip:b-before@h", now + 600)], now)
        await until(lambda: A in n2 and B in n2, what="n2 sees the first puts")
        await asyncio.to_thread(redis_server.stop)
        t0 = time.perf_counter()
        n1.put(A, [b(A, "sip:during@h", now + 600)], now)
        n1.remove(B)
        assert time.perf_counter() - t0 < 0.05
        await until(lambda: n1.backend.stats()["failures"] >= 1, what="a failed write")
        assert n1.backend.stats()["pending"] == 2
        await asyncio.to_thread(redis_server.start)  # same port, same AOF: the data is back
        await until(lambda: n1.backend.stats()["pending"] == 0, timeout=30, what="the queued writes")
        assert stored(redis_server, A) == ["sip:during@h"] and stored(redis_server, B) == []
        # n2's subscription broke: it re-subscribes and re-reads everything, B included
        await until(lambda: contacts(n2.get(A, now)) == ["sip:during@h"] and B not in n2, timeout=30, what="n2 catches up")
        assert n2.backend.stats()["resyncs"] >= 1
        await n1.close()
        await n2.close()

    asyncio.run(go())


def test_down_at_start_starts_empty_and_loads_when_back(redis_server):
    now = time.time()

    async def go():
        n0 = node(redis_server.url)
        await n0.start()
        n0.put(A, [b(A, "sip:a@h", now + 600)], now)
        await n0.close()
        await asyncio.to_thread(redis_server.stop)
        n1 = node(redis_server.url, write_timeout=1)
        assert await n1.start() == 0
        n1.put(B, [b(B, "sip:b@h", now + 600)], now)
        await asyncio.to_thread(redis_server.start)
        await until(lambda: A in n1 and n1.backend.stats()["pending"] == 0, timeout=30, what="the load after the outage")
        assert stored(redis_server, B) == ["sip:b@h"]
        await n1.close()

    asyncio.run(go())


def test_the_record_round_trips_and_expired_ones_are_not_loaded(redis_server):
    now = time.time()
    full = Binding(
        aor=A, contact="sip:a@192.0.2.1:5062;transport=tcp;ob", expires=now + 123.456789, q=0.7, call_id="c1@x",
        cseq=42, instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", reg_id=2, path=("<sip:p1;lr>",),
        source_transport="tcp", source_host="198.51.100.7", source_port=40000, socket="tcp:127.0.0.1:5060",
        node="sip:127.0.0.1:5060", user_agent="Linphone/5.2 (ünïcode)", last_modified=now - 0.25,
    )

    async def go():
        n1 = node(redis_server.url)
        await n1.start()
        n1.put(A, [full, b(A, "sip:dead@h", now - 1)], now - 10)  # the second is dead by the wall clock
        n1.put(B, [b(B, "sip:b-dead@h", now - 1)], now - 10)  # a key already past its PXAT: deleted
        await n1.close()
        n2 = node(redis_server.url)
        await n2.start()
        await n2.close()
        return n2

    n2 = asyncio.run(go())
    assert n2.get(A, now) == [full] and B not in n2


def test_a_missing_redis_server_fails_naming_the_package(monkeypatch):
    from . import fixtures

    monkeypatch.setattr(fixtures.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        fixtures.RedisServer()
