"""db backend for production: PostgreSQL through psycopg 3 (async), `postgresql://` URL.

A batch is one transaction of INSERT ... ON CONFLICT (record_id) DO NOTHING, so a batch replayed
after a crash or a timeout whose commit did in fact happen is written exactly once.  Any error
drops the connection; the next write reconnects (the engine spools in between).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..config import AccConfig
from ..records import AccRecord
from ..schema import add_column_sql, columns, create_table_sql, insert_sql
from .base import Backend
from .db_sqlite import table_for


async def migrate_postgres(conn: "psycopg.AsyncConnection[Any]", table: str, extra: tuple[str, ...]) -> list[str]:
    """Create the table or add its missing columns/indexes; return the ALTER statements run."""
    done = []
    async with conn.transaction():
        stmts = create_table_sql(table, extra, "postgres")
        await conn.execute(stmts[0])
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        have = {row[0] for row in await cur.fetchall()}
        for name, _, _ in columns(extra):
            if name not in have:
                stmt = add_column_sql(table, name, "postgres", extra)
                await conn.execute(stmt)
                done.append(stmt)
        for stmt in stmts[1:]:
            await conn.execute(stmt)
    return done


class PostgresBackend(Backend):
    name = "db"
    ordered = False

    def __init__(self, cfg: AccConfig) -> None:
        self.cfg = cfg
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._tables: set[str] = set()

    async def _connect(self) -> "psycopg.AsyncConnection[Any]":
        if self._conn is None or self._conn.closed:
            timeout = max(1, self.cfg.backend_timeout_ms // 1000)
            self._conn = await psycopg.AsyncConnection.connect(self.cfg.db_url, connect_timeout=timeout, autocommit=True)
            self._tables = set()
            for t in (self.cfg.db_table_acc, self.cfg.db_table_missed_calls):
                await self._ensure(t)
        return self._conn

    async def _ensure(self, table: str) -> None:
        if table not in self._tables:
            assert self._conn is not None
            await migrate_postgres(self._conn, table, self.cfg.extra_names)
            self._tables.add(table)

    async def open(self) -> None:
        await self._connect()

    async def write(self, records: list[AccRecord]) -> None:
        try:
            conn = await self._connect()
            extra = self.cfg.extra_names
            by_table: dict[str, list[tuple[Any, ...]]] = {}
            for r in records:
                by_table.setdefault(table_for(r, self.cfg), []).append(r.row(extra))
            for table in by_table:
                await self._ensure(table)
            async with conn.transaction():
                async with conn.cursor() as cur:
                    for table, rows in by_table.items():
                        await cur.executemany(insert_sql(table, extra, "postgres"), rows)
        except BaseException:
            await self._drop()
            raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def close(self) -> None:
        await self._drop()
