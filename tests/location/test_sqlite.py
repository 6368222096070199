"""sqlite backend against a real file: a restart, the worker processes sharing it, a locked database."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from proxyapp.location import Location, LocationConfig, for_config
from proxyapp.location.backends.db_sqlite import SqliteBackend

from .helpers import b, contacts, until

pytestmark = pytest.mark.timeout(60)

A = "sip:alice@example.com"
B = "sip:bob@example.com"


def sqlite_location(path, **kw) -> Location:
    return for_config(LocationConfig.from_dict({"db_url": str(path), "sync_interval": 0.05, "retry_interval": 0.1} | kw))


def test_bindings_survive_a_restart_and_expired_ones_do_not_come_back(tmp_path):
    path = tmp_path / "sub" / "loc.db"  # the directory is created
    now = time.time()

    async def first():
        loc = sqlite_location(path)
        await loc.start()
        loc.put(A, [b(A, "sip:a1@h", now + 600, q=0.5, path=("<sip:edge;lr>",), conn=object()), b(A, "sip:a2@h", now + 600, instance="<urn:uuid:1>", reg_id=1)], now)
        loc.put(B, [b(B, "sip:b@h", now + 600)], now)
        loc.put(B, [b(B, "sip:b2@h", now + 600, user_agent="X")], now)  # the last list wins
        # live by the registrar's clock, dead by the wall clock: written, never loaded again
        loc.put("sip:gone@example.com", [b("sip:gone@example.com", "sip:g@h", now - 50)], now - 100)
        loc.put("sip:carol@example.com", [b("sip:carol@example.com", "sip:c@h", now + 600)], now)
        loc.remove("sip:carol@example.com")
        await loc.close()
        return loc.snapshot()

    async def second():
        loc = sqlite_location(path)
        n = await loc.start()
        await loc.close()
        return n, loc

    before = asyncio.run(first())
    n, loc = asyncio.run(second())
    assert n == 3 and sorted(loc.aors()) == [A, B]
    del before["sip:gone@example.com"]
    assert loc.snapshot() == before
    got = loc.get(A, time.time())
    assert contacts(got) == ["sip:a2@h", "sip:a1@h"] and got[1].path == ("<sip:edge;lr>",) and got[1].conn is None
    assert got[0].flow_key() == ("<urn:uuid:1>", 1)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT aor, idx, contact FROM location ORDER BY aor, idx").fetchall()
    assert (B, 0, "sip:b2@h") in rows and ("sip:carol@example.com",) not in [r[:1] for r in rows]


def test_expired_rows_are_purged(tmp_path):
    path = tmp_path / "loc.db"
    now = time.time()

    async def go():
        loc = sqlite_location(path, purge_interval=0.05)
        await loc.start()
        loc.put(A, [b(A, "sip:dead@h", now - 1), b(A, "sip:live@h", now + 600)], now - 10)
        await until(lambda: _rows(path) == [(A, "sip:live@h")], what="the purge")
        await loc.close()

    asyncio.run(go())


def _rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT aor, contact FROM location ORDER BY aor, idx").fetchall()


def test_two_processes_on_one_file_see_each_others_changes(tmp_path):
    """workers = N: each worker's Location polls the change log of the shared file."""
    path = tmp_path / "loc.db"
    now = time.time()

    async def go():
        w1, w2 = sqlite_location(path), sqlite_location(path)
        await w1.start()
        await w2.start()
        conn = object()
        w1.put(A, [b(A, "sip:a@h", now + 600, conn=conn)], now)
        await until(lambda: contacts(w2.get(A, now)) == ["sip:a@h"], what="w2 sees w1's put")
        w2.put(A, [w2.get(A, now)[0], b(A, "sip:a2@h", now + 600, q=0.1)], now)  # w2 adds a binding
        await until(lambda: contacts(w1.get(A, now)) == ["sip:a@h", "sip:a2@h"], what="w1 sees w2's put")
        assert w1.get(A, now)[0].conn is conn  # unchanged: the connection stays
        w1.remove(A, "sip:a@h")
        await until(lambda: contacts(w2.get(A, now)) == ["sip:a2@h"], what="w2 sees w1's remove")
        w2.remove(A)
        await until(lambda: A not in w1, what="w1 sees w2's delete")
        assert w1.backend.stats()["notified"] >= 2
        await w1.close()
        await w2.close()

    asyncio.run(go())


def test_a_locked_database_does_not_block_put_and_the_write_lands_later(tmp_path):
    path = tmp_path / "loc.db"
    now = time.time()

    async def go():
        loc = sqlite_location(path, write_timeout=0.3)
        await loc.start()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        t0 = time.perf_counter()
        for i in range(100):
            loc.put(f"sip:u{i}@h", [b(f"sip:u{i}@h", "sip:x@h", now + 600)], now)
        assert time.perf_counter() - t0 < 0.1  # the call path never waits for the disk
        await until(lambda: loc.backend.stats()["failures"] >= 1, what="a failed attempt")
        other.execute("ROLLBACK")
        other.close()
        # (a write that timed out may still have committed in the thread: it is simply written again)
        await until(lambda: loc.backend.stats()["pending"] == 0, what="the queued writes")
        assert len(_rows(path)) == 100
        await loc.close()

    asyncio.run(go())


def test_a_file_that_cannot_be_opened_is_not_fatal(tmp_path):
    (tmp_path / "f").write_text("not a directory")

    async def go():
        loc = Location(SqliteBackend(tmp_path / "f" / "loc.db", retry_interval=0.05), expire_interval=0)
        assert await loc.start() == 0  # logged, not raised
        loc.put(A, [b(A, "sip:a@h")], time.time())
        await until(lambda: loc.backend.stats()["failures"] >= 1)
        assert contacts(loc.get(A, time.time())) == ["sip:a@h"]  # memory still serves
        await loc.close()

    asyncio.run(go())



def test_a_gap_in_the_change_log_is_reported(tmp_path):
    """A process that missed log rows (purged before it polled, or a new file) must re-read all."""
    path = tmp_path / "loc.db"
    me, other = SqliteBackend(path), SqliteBackend(path)
    C = "sip:carol@example.com"

    async def go():
        seq = await me._call(me._last_seq)
        for aor in (A, B, C):
            await other._store({aor: [b(aor, "sip:x@h")]})
        await me._store({A: [b(A, "sip:mine@h")]})
        assert await me._call(me._poll, seq) == (False, 4, [A, B, C])  # its own row skipped
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM location_changes WHERE seq < 4")
        assert (await me._call(me._poll, seq))[0] is True  # rows 1-3 gone unseen: a gap
        assert await me._call(me._poll, 3) == (False, 4, [])
        assert (await me._call(me._poll, 99))[0] is True  # the log restarted (a new file)
        await me.close()
        await other.close()

    asyncio.run(go())
