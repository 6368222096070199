"""postgres backend: PostgreSQL through psycopg 3 (async), shared by several proxyapp nodes.

Schema (created on first connection; TABLE is ``[location] db_table``, default "location"):

    CREATE TABLE TABLE (
        aor text NOT NULL, idx integer NOT NULL,          -- the AOR and the position in its list
        contact text NOT NULL, expires double precision NOT NULL, node text NOT NULL,
        binding jsonb NOT NULL,                           -- Binding.to_dict(), what is read back
        PRIMARY KEY (aor, idx));

A batch is one transaction: a transaction-level advisory lock per AOR (taken in hash order, so two
nodes' batches cannot deadlock), the AORs' rows deleted and inserted, and ``pg_notify(TABLE, aor)``
for each: the other nodes LISTEN on the channel named like the table, and re-read the AOR named
(a notification is delivered at commit, so the re-read sees the write). A node skips notifications
sent by its own writing connection (Notify.pid). Any error drops the connection; the next write
reconnects.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import psycopg
from psycopg.types.json import Jsonb

from ..binding import Binding
from .base import QueuedBackend


class PostgresBackend(QueuedBackend):
    name = "postgres"

    def __init__(self, url: str, table: str = "location", **kw: Any) -> None:
        super().__init__(**kw)
        self.url = url
        self.table = table
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._listen: psycopg.AsyncConnection[Any] | None = None
        self._pid = 0  # the writing connection's server process: its notifications are ours
        # The flusher and the reader share the connection: one transaction or query at a time
        # (a query must not land inside the other task's transaction).
        self._lock: asyncio.Lock | None = None

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _open(self) -> "psycopg.AsyncConnection[Any]":
        return await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.write_timeout)),
            # A server that vanishes without closing the socket is noticed within ~25 s.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )

    async def _connect(self) -> None:
        async with self._locked():
            if self._conn is None or self._conn.closed:
                await self._connect_locked()

    async def _connect_locked(self) -> None:
        conn = await self._open()
        try:
            t = self.table
            async with conn.transaction():
                # Nodes starting together must not race on CREATE TABLE IF NOT EXISTS.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('proxyapp location schema'))")
                await conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{t}" (aor text NOT NULL, idx integer NOT NULL, contact text NOT NULL, '
                    "expires double precision NOT NULL, node text NOT NULL, binding jsonb NOT NULL, PRIMARY KEY (aor, idx))"
                )
                await conn.execute(f'CREATE INDEX IF NOT EXISTS "{t}_expires" ON "{t}" (expires)')
        except BaseException:
            await conn.close()
            raise
        self._conn, self._pid = conn, conn.info.backend_pid

    def _writer(self) -> "psycopg.AsyncConnection[Any]":
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("not connected")
        return self._conn

    async def _load_all(self) -> list[Binding]:
        async with self._locked():
            cur = await self._writer().execute(f'SELECT binding FROM "{self.table}" WHERE expires > %s ORDER BY aor, idx', (time.time(),))
            return [Binding.from_dict(row[0]) for row in await cur.fetchall()]

    async def _load_many(self, aors: list[str]) -> dict[str, list[Binding]]:
        async with self._locked():
            cur = await self._writer().execute(f'SELECT aor, binding FROM "{self.table}" WHERE aor = ANY(%s) ORDER BY aor, idx', (aors,))
            found = await cur.fetchall()
        out: dict[str, list[Binding]] = {}
        for aor, data in found:
            out.setdefault(aor, []).append(Binding.from_dict(data))
        return out

    async def _store(self, batch: dict[str, list[Binding]]) -> None:
        t = self.table
        aors = list(batch)
        rows = [(aor, i, b.contact, b.expires, b.node, Jsonb(b.to_dict())) for aor, bs in batch.items() for i, b in enumerate(bs)]
        async with self._locked(), self._writer().transaction() as tx:
            conn = tx.connection
            await conn.execute(
                "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(a, 0) AS h FROM unnest(%s::text[]) AS a ORDER BY h) AS s",
                (aors,),
            )
            await conn.execute(f'DELETE FROM "{t}" WHERE aor = ANY(%s)', (aors,))
            if rows:
                async with conn.cursor() as cur:
                    await cur.executemany(f'INSERT INTO "{t}" (aor, idx, contact, expires, node, binding) VALUES (%s, %s, %s, %s, %s, %s)', rows)
            await conn.execute("SELECT pg_notify(%s, a) FROM unnest(%s::text[]) AS a", (t, aors))

    async def _purge(self, now: float) -> None:
        await self._connect()
        async with self._locked():
            await self._writer().execute(f'DELETE FROM "{self.table}" WHERE expires <= %s', (now,))

    async def _subscribe(self) -> bool:
        conn = await self._open()
        try:
            await conn.execute(f'LISTEN "{self.table}"')
        except BaseException:
            await conn.close()
            raise
        self._listen = conn
        return True

    async def _notifications(self) -> AsyncIterator[str]:
        if self._listen is None:
            raise psycopg.OperationalError("not listening")
        async for n in self._listen.notifies():
            if n.pid != self._pid:
                yield n.payload

    async def _disconnect_writer(self) -> None:
        conn, self._conn = self._conn, None
        await _close(conn)

    async def _unsubscribe(self) -> None:
        conn, self._listen = self._listen, None
        await _close(conn)

    async def _disconnect(self) -> None:
        await self._disconnect_writer()
        await self._unsubscribe()


async def _close(conn: "psycopg.AsyncConnection[Any] | None") -> None:
    if conn is not None:
        try:
            await conn.close()
        except Exception:
            pass
