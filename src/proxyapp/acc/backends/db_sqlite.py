"""db backend, embedded default: SQLite file, created with its schema on first start.

The inserts and commits run in a child process (sqlite_writer.py explains why and its protocol);
this side builds each record's row, sends a batch as one marshal frame through the child's stdin from
the event loop (no thread, no GIL hand-over) and waits for the acknowledgement sent after COMMIT.
WAL + synchronous=FULL: a committed batch survives power loss.  The INSERT skips a record_id
the table already holds (schema.py), so a replayed batch is harmless (exactly-once).  A child
that fails, hangs past the backend timeout or dies is killed and started again for the next
batch; the engine spools the batch in between, as for any backend outage.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from ..child import ChildProcess, encode_frame, read_frame_async
from ..config import AccConfig
from ..records import KIND_MISSED, AccRecord
from ..schema import add_column_sql, columns, create_table_sql
from .base import Backend, BackendError

CHILD_START_S = 30.0  # a write that starts the writer process first (SqliteBackend.timeout)


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
    ordered = False

    def __init__(self, cfg: AccConfig) -> None:
        self.cfg = cfg
        self.path: Path = cfg.sqlite_path
        self._child = ChildProcess("proxyapp.acc.backends.sqlite_writer", [str(self.path), *cfg.extra_names], nice=cfg.nice)
        self._seq = 0

    @property
    def _proc(self) -> asyncio.subprocess.Process | None:
        return self._child.proc

    def timeout(self, default: float) -> float:
        """A write that has to start the writer first (the first one, or the one after a writer
        was killed) also waits for a Python interpreter to start and import: CHILD_START_S, not
        the backend timeout. On a saturated machine, with accounting's processes niced, that
        start took longer than the 2 s default: each write timed out, its writer was killed, the
        next one started again, and no batch got through while the load lasted (everything
        went to the spool; bench/README.md, Run AA)."""
        proc = self._child.proc
        return default if proc is not None and proc.returncode is None else max(default, CHILD_START_S)

    async def _start(self) -> asyncio.subprocess.Process:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return await self._child.start()

    async def _roundtrip(self, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        proc = await self._start()
        assert proc.stdin is not None and proc.stdout is not None
        self._seq += 1
        try:
            proc.stdin.write(encode_frame(("write", self._seq, batches)))
            await proc.stdin.drain()
            seq, error = await read_frame_async(proc.stdout)
        except BaseException:
            # Cancelled (backend timeout), broken pipe, child died mid-answer: the stream is no
            # longer in step, so this child goes and the next batch starts a fresh one.
            await self._kill()
            raise
        if seq != self._seq:
            await self._kill()
            raise BackendError(f"sqlite writer answered batch {seq}, expected {self._seq}")
        if error is not None:
            raise BackendError(f"sqlite writer: {error}")

    def _rows(self, records: list[AccRecord]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        extra = self.cfg.extra_names
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for r in records:
            by_table.setdefault(table_for(r, self.cfg), []).append(r.row(extra))
        return list(by_table.items())

    async def open(self) -> None:
        """Start the writer and create/migrate the default tables (an empty write does it)."""
        await self._roundtrip([(self.cfg.db_table_acc, []), (self.cfg.db_table_missed_calls, [])])

    async def write(self, records: list[AccRecord]) -> None:
        await self._roundtrip(self._rows(records))

    async def _kill(self) -> None:
        await self._child.kill()

    async def close(self) -> None:
        """Close the child's stdin (it exits after the batch in hand); kill it if it lingers."""
        await self._child.close()
