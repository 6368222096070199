"""db backend, embedded default: SQLite file, created with its schema on first start.

sqlite3 blocks, so every call runs on one dedicated thread (the event loop never waits on disk).
WAL + synchronous=FULL: a committed batch survives power loss.  INSERT OR IGNORE on the UNIQUE
record_id makes a replayed batch harmless (exactly-once).

Rows go in as multi-row INSERTs of up to ROWS_PER_INSERT rows, not executemany: the sqlite3 module
releases the GIL around every sqlite3_step, and while the proxy's event loop is busy a thread that
released the GIL waits a whole switch interval (5 ms) to get it back.  With one step per row a
200-record batch took about a second under load and the queue overflowed into the spool; with one
step per 100 rows the writer keeps up (tests.proxy.callflow --acc shows it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..config import AccConfig
from ..records import KIND_MISSED, AccRecord
from ..schema import add_column_sql, columns, create_table_sql, insert_sql
from .base import Backend

# 100 rows x (13 fixed + extra) columns stays far below SQLite's 32766 host parameters.
ROWS_PER_INSERT = 100


def table_for(r: AccRecord, cfg: AccConfig) -> str:
    """OpenSIPS: missed calls go to the missed_calls table, everything else to the acc table
    (or the table given to do_accounting / acc_db_request)."""
    if r.kind == KIND_MISSED:
        return cfg.db_table_missed_calls
    return r.table or cfg.db_table_acc


def migrate_sqlite(conn: sqlite3.Connection, table: str, extra: tuple[str, ...]) -> list[str]:
    """Create the table or add its missing columns/indexes; return the statements run."""
    done = []
    for stmt in create_table_sql(table, extra, "sqlite")[:1]:
        conn.execute(stmt)
    have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
    for name, _, _ in columns(extra):
        if name not in have:
            stmt = add_column_sql(table, name, "sqlite", extra)
            conn.execute(stmt)
            done.append(stmt)
    for stmt in create_table_sql(table, extra, "sqlite")[1:]:
        conn.execute(stmt)
    conn.commit()
    return done


class SqliteBackend(Backend):
    name = "db"

    def __init__(self, cfg: AccConfig) -> None:
        self.cfg = cfg
        self.path: Path = cfg.sqlite_path
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acc-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._tables: set[str] = set()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    def _open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        self._conn = conn
        for t in (self.cfg.db_table_acc, self.cfg.db_table_missed_calls):
            self._ensure(t)

    def _ensure(self, table: str) -> None:
        if table not in self._tables:
            assert self._conn is not None
            migrate_sqlite(self._conn, table, self.cfg.extra_names)
            self._tables.add(table)

    def _write(self, records: list[AccRecord]) -> None:
        self._open()
        assert self._conn is not None
        extra = self.cfg.extra_names
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for r in records:
            by_table.setdefault(table_for(r, self.cfg), []).append(tuple(r.columns(extra).values()))
        try:
            for table, rows in by_table.items():
                self._ensure(table)
                for i in range(0, len(rows), ROWS_PER_INSERT):
                    chunk = rows[i : i + ROWS_PER_INSERT]
                    params = [v for row in chunk for v in row]
                    self._conn.execute(insert_sql(table, extra, "sqlite", len(chunk)), params)
            self._conn.commit()
        except Exception:
            self._conn.rollback()
            raise

    async def open(self) -> None:
        await self._run(self._open)

    async def write(self, records: list[AccRecord]) -> None:
        await self._run(self._write, records)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._exec.shutdown(wait=False)
