"""Subscribers: (username, domain) -> ha1 (MD5) and ha1_sha256, never the password.

The table (OpenSIPS' subscriber, password column left out)::

    CREATE TABLE subscriber (username TEXT NOT NULL, domain TEXT NOT NULL,
                             ha1 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,
                             PRIMARY KEY (username, domain))

in SQLite (a file path, the default) or PostgreSQL (a postgresql:// URL, psycopg 3).

The script verbs are synchronous and must never wait for a database, so the proxy reads an
in-memory copy: start() creates the table if needed and loads every row; a background task
reloads the table every ``refresh_interval`` seconds in a worker thread (asyncio.to_thread), so
``proxyapp user add`` shows within that interval and the event loop never blocks. A failed
reload keeps the previous copy (logged). The copy costs about 300 bytes per subscriber.

The methods add(), remove() and rows() open their own connection and block: they are for the
command line (``proxyapp user``) and tests, never for the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loguru import logger

from . import digest
from .config import AuthConfig

Row = tuple[str, str, str, str]  # username, domain, ha1, ha1_sha256


class SubscriberStore:
    def __init__(self, db_url: str, table: str = "subscriber", refresh_interval: float = 5.0) -> None:
        self.db_url = db_url
        self.table = table
        self.refresh_interval = refresh_interval
        self.postgres = db_url.startswith(("postgresql://", "postgres://"))
        self._cache: dict[tuple[str, str], tuple[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self.loads = 0  # successful loads (tests wait on it)
        self.load_errors = 0

    @classmethod
    def for_config(cls, cfg: AuthConfig) -> "SubscriberStore":
        url = cfg.db_url if cfg.db_is_postgres else str(cfg.sqlite_path)
        return cls(url, cfg.db_table, cfg.refresh_interval)

    # ------------------------------------------------------------------ the copy the verbs read

    def get(self, username: str, domain: str) -> tuple[str, str] | None:
        """(ha1, ha1_sha256) of the subscriber, from memory; None when unknown."""
        return self._cache.get((username, domain.lower()))

    def __len__(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------------ blocking database access

    def _schema(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} (username TEXT NOT NULL, domain TEXT NOT NULL, "
            "ha1 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, PRIMARY KEY (username, domain))"
        )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """A connection with the table created; committed and closed on exit."""
        if self.postgres:
            import psycopg

            # Bounded: a reload stuck on a lock must not hold up the shutdown (which joins threads).
            with psycopg.connect(self.db_url, connect_timeout=5, options="-c statement_timeout=5000") as pconn:
                pconn.execute(self._schema())
                yield pconn
        else:
            path = Path(self.db_url)
            if path.parent != Path("."):
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=5)
            try:
                conn.execute(self._schema())
                yield conn
                conn.commit()
            finally:
                conn.close()

    def _ph(self) -> str:
        return "%s" if self.postgres else "?"

    def add(self, username: str, domain: str, password: str) -> None:
        """Store (or replace) a subscriber's hashes, computed with realm = ``domain``."""
        domain = domain.lower()
        ha1 = digest.ha1("MD5", username, domain, password)
        ha1_256 = digest.ha1("SHA-256", username, domain, password)
        p = self._ph()
        with self._connect() as conn:
            conn.execute(f"DELETE FROM {self.table} WHERE username = {p} AND domain = {p}", (username, domain))
            conn.execute(
                f"INSERT INTO {self.table} (username, domain, ha1, ha1_sha256) VALUES ({p}, {p}, {p}, {p})",
                (username, domain, ha1, ha1_256),
            )

    def remove(self, username: str, domain: str) -> int:
        p = self._ph()
        with self._connect() as conn:
            cur = conn.execute(f"DELETE FROM {self.table} WHERE username = {p} AND domain = {p}",
                               (username, domain.lower()))
            return int(cur.rowcount or 0)

    def rows(self) -> list[Row]:
        with self._connect() as conn:
            cur = conn.execute(f"SELECT username, domain, ha1, ha1_sha256 FROM {self.table} ORDER BY domain, username")
            return [(str(a), str(b), str(c), str(d)) for a, b, c, d in cur.fetchall()]

    def load_sync(self) -> int:
        """Replace the in-memory copy with the table (blocking); returns the number of subscribers."""
        cache = {(u, d.lower()): (h1, h2) for u, d, h1, h2 in self.rows()}
        self._cache = cache
        self.loads += 1
        return len(cache)

    # ------------------------------------------------------------------ the proxy's life cycle

    async def start(self) -> None:
        """Load the table (a database that is down is logged; the reload task retries) and start
        the reload task."""
        await self._reload()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _reload(self) -> None:
        try:
            before = -1 if self.loads == 0 else len(self._cache)
            n = await asyncio.to_thread(self.load_sync)
            if n != before:
                logger.debug("auth: {} subscribers loaded from {}", n, self.table)
        except Exception as exc:
            self.load_errors += 1
            logger.error("auth: cannot load the subscribers ({}): {}", type(exc).__name__, exc)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self._reload()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
