"""The asyncio edge: the timer heap and RFC 3263 resolution (no network: a fake SRV answer)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from proxyapp.config import Config
from proxyapp.core.base import CountedTxTable
from proxyapp.limits import TxBudget
from proxyapp.transaction import CancelTimer, StartTimer, Terminated
from proxyapp.transport import Edge, resolve_sip


class FakeTx:
    def __init__(self, name):
        self.name = name
        self.timers = {}

    def __repr__(self):
        return self.name


class RecordingProxy:
    def __init__(self):
        self.fired = []

    def timer_fired(self, tx, name):
        self.fired.append((tx.name, name))
        return []


def running_edge():
    """(proxy that records fired timers, Edge on the running loop, the loop)."""
    proxy = RecordingProxy()
    edge = Edge(proxy, Config())
    loop = edge.loop = asyncio.get_running_loop()
    return proxy, edge, loop


@pytest.fixture
def short_wheel(monkeypatch):
    """Long timers from 0.1 s on, in 0.05 s slots: the wheel within a test's time."""
    monkeypatch.setattr(Edge, "LONG_TIMER_S", 0.1)
    monkeypatch.setattr(Edge, "WHEEL_SLOT_S", 0.05)


@pytest.mark.timeout(10)
def test_timer_heap_fires_in_order_and_honours_cancel_rearm_and_terminated():
    async def main():
        proxy, edge, _ = running_edge()
        a, b, c = FakeTx("a"), FakeTx("b"), FakeTx("c")
        edge.run([
            StartTimer(a, "A", 0.03), StartTimer(b, "E", 0.01), StartTimer(c, "B", 0.02),
            StartTimer(a, "B", 0.05),
        ])
        edge.run([CancelTimer(c, "B"), StartTimer(b, "E", 0.04)])  # re-arm replaces the 0.01 one
        edge.run([StartTimer(c, "K", 0.045), Terminated(c)])  # termination disarms everything
        for _ in range(100):
            if len(proxy.fired) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.03)
        assert proxy.fired == [("a", "A"), ("b", "E"), ("a", "B")]
        assert a.timers == {} and b.timers == {} and c.timers == {}
        assert edge.pending_timers == 0
        await edge.close()

    asyncio.run(main())


class _Srv:
    def __init__(self, priority, weight, port, target):
        self.priority, self.weight, self.port = priority, weight, port
        self.target = target


@pytest.mark.timeout(10)
def test_resolve_sip_uses_srv_without_port_and_a_records_with_one(monkeypatch):
    import dns.asyncresolver

    asked = []

    async def fake_resolve(self, qname, rdtype):
        asked.append((qname, rdtype))
        return [_Srv(20, 0, 5090, "localhost."), _Srv(10, 5, 5080, "localhost.")]

    monkeypatch.setattr(dns.asyncresolver.Resolver, "resolve", fake_resolve)
    got = asyncio.run(resolve_sip("example.test", None, "udp"))
    assert asked == [("_sip._udp.example.test", "SRV")]
    assert [(t, p) for t, ip, p in got if ip == "127.0.0.1"] == [("udp", 5080), ("udp", 5090)]
    asked.clear()
    got = asyncio.run(resolve_sip("localhost", 5070, "tcp"))
    assert asked == []  # an explicit port: no SRV (RFC 3263 §4.2)
    assert ("tcp", "127.0.0.1", 5070) in got


@pytest.mark.timeout(10)
def test_resolve_sip_falls_back_to_a_records_when_srv_fails(monkeypatch):
    import dns.asyncresolver
    import dns.resolver

    async def no_srv(self, qname, rdtype):
        raise dns.resolver.NXDOMAIN()

    monkeypatch.setattr(dns.asyncresolver.Resolver, "resolve", no_srv)
    assert ("udp", "127.0.0.1", 5060) in asyncio.run(resolve_sip("localhost", None, "udp"))
    assert asyncio.run(resolve_sip("nonexistent.invalid", None, "udp")) == []


@pytest.mark.timeout(10)
def test_long_timers_use_the_wheel_fire_in_order_and_leave_nothing_when_cancelled(short_wheel):
    """Timers at least LONG_TIMER_S long go to the wheel (slots of WHEEL_SLOT_S): they fire in
    deadline order, at most one slot late, never early; cancelling, re-arming or terminating
    removes them at once (no dead entry is left anywhere)."""

    async def main():
        proxy, edge, loop = running_edge()
        a, b, c, d = FakeTx("a"), FakeTx("b"), FakeTx("c"), FakeTx("d")
        t0 = loop.time()
        fired_at = {}

        def timer_fired(tx, name):
            fired_at[(tx.name, name)] = loop.time() - t0
            proxy.fired.append((tx.name, name))
            return []

        proxy.timer_fired = timer_fired
        edge.run([
            StartTimer(a, "C", 0.30), StartTimer(b, "F", 0.12), StartTimer(c, "L", 0.20),
            StartTimer(d, "B", 0.25), StartTimer(a, "A", 0.02),  # A is short: the heap
        ])
        assert len(edge._heap) == 1 and sum(len(x) for x in edge._slots.values()) == 4
        edge.run([CancelTimer(c, "L"), StartTimer(b, "F", 0.16), Terminated(d)])
        assert sum(len(x) for x in edge._slots.values()) == 2 and edge._dead == 0  # nothing dead
        assert edge.pending_timers == 3
        for _ in range(100):
            if len(proxy.fired) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert proxy.fired == [("a", "A"), ("b", "F"), ("a", "C")]
        assert 0.16 <= fired_at[("b", "F")] < 0.16 + 0.05 + 0.05  # never early, at most a slot late (+ slack)
        assert 0.30 <= fired_at[("a", "C")] < 0.30 + 0.05 + 0.05
        assert a.timers == b.timers == c.timers == d.timers == {}
        assert edge.pending_timers == 0 and edge._slots == {} and edge._slot_heap == []
        await edge.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_settled_drop_lets_go_of_empty_wheel_slots_and_compacts_the_transaction_tables(short_wheel):
    """The limits' settling step (Limits.on_settle) calls the edge's _compact: the wheel slots a
    flood's cancelled timers emptied go, and each transaction table is copied into dicts sized
    for what is left; a live timer and a live transaction are untouched."""

    async def main():
        proxy, edge, loop = running_edge()
        budget = TxBudget(10_000, 1 << 30, 5)
        proxy.server_txs, proxy.client_txs = CountedTxTable(budget, True), CountedTxTable(budget, False)
        flood = [FakeTx(f"f{i}") for i in range(40)]
        for i, tx in enumerate(flood):
            tx.request = b"x" * 10
            proxy.client_txs[("k", i)] = tx
        edge.run([StartTimer(tx, "C", 0.2 + 0.05 * (i % 4)) for i, tx in enumerate(flood)])
        keep = FakeTx("keep")
        edge.run([StartTimer(keep, "C", 0.4)])
        edge.run([Terminated(tx) for tx in flood[1:]])
        for i in range(1, 40):
            proxy.client_txs.discard(("k", i), flood[i])
        edge.run([Terminated(flood[0])])
        shard = proxy.client_txs._shards[hash(("k", 0)) & 63]
        grown = sys.getsizeof(proxy.client_txs.sizes)
        assert len(edge._slots) == 5 and sum(map(len, edge._slots.values())) == 1  # four emptied
        assert edge._compact in edge.limits.on_settle
        for compact in edge.limits.on_settle:
            compact()
        assert list(edge._slots.values()) == [{keep.timers["C"][1]: keep.timers["C"]}]
        assert proxy.client_txs.get(("k", 0)) is flood[0] and len(proxy.client_txs) == 1
        assert proxy.client_txs._shards[hash(("k", 0)) & 63] is not shard
        assert sys.getsizeof(proxy.client_txs.sizes) < grown and budget.live == 1
        # A timer armed in a slot whose bucket went fires (the slot is filed again).
        edge.run([StartTimer(flood[0], "C", 0.2)])
        for _ in range(100):
            if len(proxy.fired) == 2:
                break
            await asyncio.sleep(0.01)
        assert proxy.fired == [("f0", "C"), ("keep", "C")]
        assert edge.pending_timers == 0 and edge._slots == {}
        await edge.close()
        assert edge.limits.on_settle == []  # a closed edge is not kept alive by the core's Limits

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_due_wheel_slot_is_drained_a_batch_per_loop_iteration(short_wheel, monkeypatch):
    """Thousands of long timers share a 1 s slot; they fire WHEEL_BATCH per loop iteration, so
    other callbacks (datagrams) run between batches. All fire, in deadline order, none early; one
    cancelled while waiting in the drain does not fire; a timer armed during the drain still fires."""
    monkeypatch.setattr(Edge, "WHEEL_BATCH", 3)

    async def main():
        proxy, edge, loop = running_edge()
        txs = [FakeTx(f"t{i}") for i in range(10)]
        late = FakeTx("late")
        events = []

        def timer_fired(tx, name):
            events.append(tx.name)
            if tx.name == "t0":
                loop.call_soon(events.append, "datagram")  # arrives while the slot drains
                edge.run([CancelTimer(txs[5], "J")])  # taken out of its slot already
                edge.run([StartTimer(late, "J", 0.11)])
            return []

        proxy.timer_fired = timer_fired
        # Deadlines inside one slot, armed out of order.
        t0 = loop.time()
        edge.run([StartTimer(tx, "J", 0.12 + 0.001 * ((i * 7) % 10)) for i, tx in enumerate(txs)])
        order = sorted(range(10), key=lambda i: (i * 7) % 10)
        for _ in range(100):
            if "late" in events:
                break
            await asyncio.sleep(0.01)
        first_fire = loop.time() - t0
        expected = [f"t{i}" for i in order if i != 5]
        assert events.index("datagram") <= 4  # after the first batch of 3 (+ the one queued in t0's), not after all
        assert [e for e in events if e.startswith("t")] == expected
        assert events[-1] == "late"
        assert first_fire >= 0.12 + 0.009
        assert all(tx.timers == {} for tx in txs) and late.timers == {}
        assert edge.pending_timers == 0 and not edge._due and edge._slots == {}
        await edge.close()

    asyncio.run(main())
