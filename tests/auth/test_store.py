"""The subscriber store on SQLite and on a real PostgreSQL (tests/acc's throwaway cluster): only
hashes are stored, the proxy's memory copy is loaded at start and refreshed without blocking the
event loop, a database that is down keeps the last copy; the ``proxyapp user`` command."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from proxyapp.__main__ import main
from proxyapp.auth import AUTHORIZED, Auth, AuthConfig, SubscriberStore
from proxyapp.auth import digest


async def _until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        await asyncio.sleep(0.02)


def _exercise(store: SubscriberStore) -> None:
    store.add("alice", "Example.COM", "pw1")
    store.add("bob", "example.com", "pw2")
    store.add("alice", "example.com", "pw3")  # replaces
    rows = store.rows()
    assert [(u, d) for u, d, _, _ in rows] == [("alice", "example.com"), ("bob", "example.com")]
    u, d, ha1, ha1_256 = rows[0]
    assert ha1 == digest.ha1("MD5", "alice", "example.com", "pw3")
    assert ha1_256 == digest.ha1("SHA-256", "alice", "example.com", "pw3")
    assert store.get("alice", "example.com") is None  # not loaded yet
    assert store.load_sync() == 2
    assert store.get("alice", "EXAMPLE.com") == (ha1, ha1_256)
    assert store.remove("bob", "example.com") == 1
    assert store.remove("bob", "example.com") == 0


def test_sqlite_store_keeps_hashes_only(tmp_path):
    store = SubscriberStore(str(tmp_path / "sub" / "s.db"))
    _exercise(store)
    conn = sqlite3.connect(tmp_path / "sub" / "s.db")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(subscriber)")]
    values = [v for row in conn.execute("SELECT * FROM subscriber") for v in row]
    conn.close()
    assert cols == ["username", "domain", "ha1", "ha1_sha256"]
    assert "pw3" not in values


@pytest.mark.timeout(60)
def test_postgres_store(pg):
    server, url = pg
    store = SubscriberStore(url, "subs")
    _exercise(store)
    import psycopg

    with psycopg.connect(url) as conn:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'subs' ORDER BY ordinal_position")]
        values = [v for row in conn.execute("SELECT * FROM subs") for v in row]
    assert cols == ["username", "domain", "ha1", "ha1_sha256"]
    assert "pw3" not in values


@pytest.mark.timeout(60)
def test_postgres_refresh_and_outage(pg):
    """The proxy's copy follows the table; with PostgreSQL stopped the last copy keeps serving."""
    server, url = pg
    cfg = AuthConfig.from_dict({"db_url": url, "refresh_interval": 0.1})
    auth = Auth(cfg)
    SubscriberStore(url).add("alice", "example.com", "pw")

    async def run():
        await auth.start()
        try:
            assert auth.store.get("alice", "example.com") is not None
            SubscriberStore(url).add("bob", "example.com", "pw")
            await _until(lambda: auth.store.get("bob", "example.com") is not None, what="bob loaded")
            # A reload stuck behind a lock never holds up the event loop (it waits in a thread).
            import psycopg

            with psycopg.connect(url) as locker:
                locker.execute("LOCK TABLE subscriber IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(0.2)
                loads = auth.store.loads
                worst, last = 0.0, time.monotonic()
                for _ in range(50):  # 0.5 s of 10 ms sleeps
                    await asyncio.sleep(0.01)
                    now = time.monotonic()
                    worst, last = max(worst, now - last), now
                assert auth.store.loads == loads, "a reload got through the lock"
                assert worst < 0.1, f"the event loop stalled {worst:.3f} s"
                locker.rollback()
            await _until(lambda: auth.store.loads > loads, what="a reload after the lock")
            # PostgreSQL down: the reloads fail (logged) and the last copy keeps serving.
            server.stop()
            errors = auth.store.load_errors
            await _until(lambda: auth.store.load_errors > errors, what="a failed reload")
            assert len(auth.store) == 2
            ch = auth.challenge("example.com")[0]
            p = digest._params(ch.partition(" ")[2])
            resp = digest.response("SHA-256", digest.ha1("SHA-256", "bob", "example.com", "pw"), p["nonce"],
                                   "REGISTER", "sip:example.com", "auth", "00000001", "c")
            cred = (f'Digest username="bob", realm="example.com", nonce="{p["nonce"]}", uri="sip:example.com", '
                    f'response="{resp}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"')
            assert auth.authorize([cred], "example.com", "REGISTER", "ip", "k").code == AUTHORIZED
        finally:
            server.start()
            await auth.close()

    asyncio.run(run())


def test_sqlite_start_creates_the_table_and_refreshes(tmp_path):
    db = tmp_path / "subs.db"
    auth = Auth(AuthConfig.from_dict({"db_url": str(db), "refresh_interval": 0.05}))

    async def run():
        await auth.start()
        try:
            assert db.exists() and len(auth.store) == 0
            await asyncio.to_thread(SubscriberStore(str(db)).add, "carol", "example.com", "x")
            await _until(lambda: len(auth.store) == 1, what="carol loaded")
        finally:
            await auth.close()

    asyncio.run(run())


def test_user_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "p.toml"
    cfg.write_text('[auth]\nrealm = "example.com"\ndb_url = "cli.db"\n')
    assert main(["user", "--config", str(cfg), "add", "alice", "pw"]) == 0
    assert main(["user", "--config", str(cfg), "add", "bob@other.org", "pw"]) == 0
    assert main(["user", "--config", str(cfg), "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-2:] == ["alice@example.com", "bob@other.org"]
    assert main(["user", "--config", str(cfg), "rm", "alice"]) == 0
    assert main(["user", "--config", str(cfg), "rm", "alice"]) == 1
    # Without --config: ./proxyapp-subscribers.db, and a domain is required.
    assert main(["user", "add", "dave", "pw"]) == 2
    assert main(["user", "add", "dave@example.com", "pw"]) == 0
    assert (tmp_path / "proxyapp-subscribers.db").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[auth]\nnonce_expire = -1\n")
    assert main(["user", "--config", str(bad), "list"]) == 2
    assert "auth.nonce_expire" in capsys.readouterr().err
    assert main(["--config", str(bad), "--check"]) == 2
