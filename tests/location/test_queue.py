"""QueuedBackend's rules (backends/base.py) over a fake in-process server: coalescing, retry,
poison isolation, last write wins, resync after lost notifications. Bounded polling, no sleeps."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxyapp.location import Binding, Location
from proxyapp.location.backends.base import POISON_STRIKES, QueuedBackend

from .helpers import b, contacts, until

pytestmark = pytest.mark.timeout(60)

A = "sip:alice@example.com"
B = "sip:bob@example.com"


class Server:
    """A shared store with a change feed, like PostgreSQL or Redis seen from the backends."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict]] = {}
        self.feeds: list[asyncio.Queue[str | None]] = []
        self.down = False
        self.refuse: set[str] = set()  # AORs every write refuses
        self.stores: list[list[str]] = []  # the AORs of each batch stored


class Fake(QueuedBackend):
    name = "fake"

    def __init__(self, server: Server, **kw) -> None:
        super().__init__(**({"retry_interval": 0.01, "write_timeout": 1.0} | kw))
        self.server = server
        self.feed: asyncio.Queue[str | None] | None = None
        self.down = False  # this node cannot reach the server (the others can)
        self.writes_down = False  # this node's writes fail, its reads work

    def _check(self) -> None:
        if self.server.down or self.down:
            raise ConnectionError("server down")

    async def _load_all(self):
        self._check()
        return [Binding.from_dict(d) for ds in self.server.data.values() for d in ds]

    async def _load_many(self, aors):
        self._check()
        return {a: [Binding.from_dict(d) for d in self.server.data.get(a, [])] for a in aors}

    async def _store(self, batch):
        self._check()
        if self.writes_down:
            raise ConnectionError("writes fail")
        if self.server.refuse & set(batch):
            raise ValueError("refused")
        self.server.stores.append(list(batch))
        for aor, bs in batch.items():
            if bs:
                self.server.data[aor] = [x.to_dict() for x in bs]
            else:
                self.server.data.pop(aor, None)
        for feed in self.server.feeds:
            if feed is not self.feed:  # like PostgreSQL: a node does not hear itself
                for aor in batch:
                    feed.put_nowait(aor)

    async def _subscribe(self):
        self._check()
        self.feed = asyncio.Queue()
        self.server.feeds.append(self.feed)
        return True

    async def _notifications(self):
        assert self.feed is not None
        while True:
            aor = await self.feed.get()
            if aor is None:
                raise ConnectionError("subscription lost")
            yield aor

    async def _unsubscribe(self):
        if self.feed in self.server.feeds:
            self.server.feeds.remove(self.feed)
        self.feed = None

    def lose_subscription(self) -> None:
        assert self.feed is not None
        self.feed.put_nowait(None)

    def announce_resync(self) -> None:
        """What a backend yields ("") when it knows changes were missed (re-subscribed, a gap)."""
        assert self.feed is not None
        self.feed.put_nowait("")


def test_writes_coalesce_per_aor_and_the_newest_list_wins():
    server = Server()
    now = time.time()

    async def go():
        loc = Location(Fake(server), expire_interval=0)
        for i in range(50):
            loc.put(A, [b(A, f"sip:{i}@h", now + 60)], now)  # before start: queued
        loc.put(B, [b(B, "sip:b@h", now + 60)], now)
        await loc.start()
        await until(lambda: loc.backend.stats()["pending"] == 0)
        await loc.close()

    asyncio.run(go())
    assert [d["contact"] for d in server.data[A]] == ["sip:49@h"]
    assert sum(len(s) for s in server.stores) == 2  # one write per AOR, not 51


def test_an_outage_delays_writes_and_loses_none():
    server = Server()
    now = time.time()

    async def go():
        loc = Location(Fake(server), expire_interval=0)
        await loc.start()
        server.down = True
        for i in range(20):
            loc.put(f"sip:u{i}@h", [b(f"sip:u{i}@h", "sip:x@h", now + 60)], now)
        loc.put("sip:u0@h", [b("sip:u0@h", "sip:newer@h", now + 60)], now)
        await until(lambda: loc.backend.stats()["failures"] >= 3)
        assert server.data == {} and loc.backend.stats()["pending"] == 20
        server.down = False
        await until(lambda: loc.backend.stats()["pending"] == 0)
        await loc.close()
        return loc.backend.stats()

    stats = asyncio.run(go())
    assert len(server.data) == 20 and server.data["sip:u0@h"][0]["contact"] == "sip:newer@h"
    assert stats["dropped"] == 0


def test_an_aor_no_write_can_store_is_isolated_and_dropped():
    server = Server()
    server.refuse = {"sip:poison@h"}
    now = time.time()

    async def go():
        loc = Location(Fake(server, batch_max=64), expire_interval=0)
        await loc.start()
        loc.put("sip:poison@h", [b("sip:poison@h", "sip:p@h", now + 60)], now)
        for i in range(100):
            loc.put(f"sip:u{i}@h", [b(f"sip:u{i}@h", "sip:x@h", now + 60)], now)
        await until(lambda: len(server.data) == 100, what="every other AOR written")
        for i in range(POISON_STRIKES * 2):  # later writes come and go while the poison fails
            loc.put(f"sip:v{i}@h", [b(f"sip:v{i}@h", "sip:x@h", now + 60)], now)
            await until(lambda: f"sip:v{i}@h" in server.data)
        await until(lambda: loc.backend.stats()["dropped"] == 1 and loc.backend.stats()["pending"] == 0, what="the poison dropped")
        assert "sip:poison@h" in loc  # memory keeps it: this node still serves the AOR
        await loc.close()

    asyncio.run(go())


def test_a_change_for_an_aor_with_a_queued_write_is_ignored():
    """Last write wins: our queued write lands after the other node's, so theirs must not show."""
    server = Server()
    now = time.time()

    async def go():
        n1, n2 = Location(Fake(server), expire_interval=0), Location(Fake(server), expire_interval=0)
        await n1.start()
        await n2.start()
        n1.backend.writes_down = True  # n1's write waits in its queue (its reads work)
        n1.put(A, [b(A, "sip:n1@h", now + 60)], now)
        await until(lambda: n1.backend.stats()["failures"] >= 1)
        n2.put(A, [b(A, "sip:n2@h", now + 60)], now)  # lands first, and notifies n1
        await until(lambda: A in server.data and n1.backend.stats()["ignored"] == 1)  # read, not applied
        assert contacts(n1.get(A, now)) == ["sip:n1@h"]  # n1's own write is still to come
        n1.backend.writes_down = False
        await until(lambda: n1.backend.stats()["pending"] == 0 and contacts(n2.get(A, now)) == ["sip:n1@h"])
        assert contacts(n1.get(A, now)) == ["sip:n1@h"] and [d["contact"] for d in server.data[A]] == ["sip:n1@h"]
        await n1.close()
        await n2.close()

    asyncio.run(go())


@pytest.mark.parametrize("how", ["lose_subscription", "announce_resync"])
def test_a_lost_subscription_resyncs_everything_deletions_included(how):
    server = Server()
    now = time.time()

    async def go():
        n1, n2 = Location(Fake(server), expire_interval=0), Location(Fake(server), expire_interval=0)
        await n1.start()
        await n2.start()
        n1.put(A, [b(A, "sip:a@h", now + 60)], now)
        n1.put(B, [b(B, "sip:b@h", now + 60)], now)
        await until(lambda: A in n2 and B in n2)
        # changes n2 never hears of: written straight into the server
        server.data.pop(A)
        server.data["sip:carol@h"] = [b("sip:carol@h", "sip:c@h", now + 60).to_dict()]
        getattr(n2.backend, how)()
        await until(lambda: A not in n2 and "sip:carol@h" in n2, what="the resync")
        assert B in n2 and n2.backend.stats()["resyncs"] >= 1
        await n1.close()
        await n2.close()

    asyncio.run(go())


def test_close_flushes_what_is_queued_and_gives_up_on_a_dead_backend():
    server = Server()
    now = time.time()

    async def go():
        loc = Location(Fake(server), expire_interval=0)
        await loc.start()
        loc.put(A, [b(A, "sip:a@h", now + 60)], now)
        await loc.close()  # flushed, no wait needed
        assert A in server.data
        dead = Location(Fake(server, write_timeout=0.2), expire_interval=0)
        await dead.start()
        server.down = True
        dead.put(B, [b(B, "sip:b@h", now + 60)], now)
        t0 = time.monotonic()
        await dead.close()
        return time.monotonic() - t0

    assert asyncio.run(go()) < 2.0


# ---------------------------------------------------------------------- property test

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

AORS = ["sip:a@h", "sip:b@h", "sip:c@h"]
step = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 2), st.sampled_from(AORS), st.integers(0, 99)),
    st.tuples(st.just("remove"), st.integers(0, 2), st.sampled_from(AORS), st.just(0)),
    st.tuples(st.sampled_from(["down", "up"]), st.integers(0, 2), st.just(""), st.just(0)),
    st.tuples(st.just("run"), st.just(0), st.just(""), st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(step, max_size=25))
def test_three_nodes_always_converge_on_the_last_write(steps):
    """Whatever the interleaving of puts, removes and outages, once every node is back and idle
    the three memories and the server hold the same list for every AOR."""
    server = Server()
    now = time.time()

    async def go():
        nodes = [Location(Fake(server, retry_interval=0.005), expire_interval=0) for _ in range(3)]
        for n in nodes:
            await n.start()
        for kind, i, aor, x in steps:
            n = nodes[i]
            if kind == "put":
                n.put(aor, [b(aor, f"sip:{i}-{x}@h", now + 600)], now)
            elif kind == "remove":
                n.remove(aor)
            elif kind in ("down", "up"):
                n.backend.down = kind == "down"
            else:
                for _ in range(x):
                    await asyncio.sleep(0)
        for n in nodes:
            n.backend.down = False

        def converged():
            if any(n.backend.stats()["pending"] for n in nodes):
                return False
            truth = {aor: [d["contact"] for d in ds] for aor, ds in server.data.items()}
            return all({aor: contacts(n.get(aor, now)) for aor in n.aors()} == truth for n in nodes)

        await until(converged, timeout=20, what="convergence")
        for n in nodes:
            await n.close()

    asyncio.run(go())
