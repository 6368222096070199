"""sqlite backend, the embedded default: one file, shared by the processes of one machine.

Every statement runs in one dedicated thread (its own connection), so the event loop never waits
for the disk. Registrations are rare next to calls, so the GIL hand-over a thread costs (the
reason acc's SQLite writer is a process) does not matter here.

Schema (created on first use; TABLE is ``[location] db_table``, default "location"):

    CREATE TABLE TABLE (
        aor     TEXT NOT NULL,     -- Binding.aor
        idx     INTEGER NOT NULL,  -- position in the AOR's list
        contact TEXT NOT NULL,     -- Binding.contact  } copies of the record's fields, for
        expires REAL NOT NULL,     -- Binding.expires  } queries, the purge and the eye of an
        node    TEXT NOT NULL,     -- Binding.node     } operator (sqlite3 proxyapp-location.db)
        binding TEXT NOT NULL,     -- the whole record: JSON of Binding.to_dict(), what is read back
        PRIMARY KEY (aor, idx));
    CREATE TABLE TABLE_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, aor TEXT, writer TEXT, at REAL);

A write replaces the AOR's rows and appends a TABLE_changes row, in one transaction (BEGIN
IMMEDIATE: the processes sharing the file take turns). That log is how the worker processes of one
proxy (``workers = N``) see each other's registrations: each polls it every ``sync_interval``
seconds for rows after the last it saw, skips its own (writer) and re-reads the AORs named. Rows
older than 5 minutes are purged; a poller that finds a gap re-reads everything. WAL journal,
synchronous=NORMAL: a crash loses nothing, a power cut at most the last commits (the clients
register again).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

from ..binding import Binding
from .base import QueuedBackend

T = TypeVar("T")

CHANGES_KEPT_S = 300.0
IN_CHUNK = 500  # AORs per "aor IN (...)"


def dumps(b: Binding) -> str:
    return json.dumps(b.to_dict(), separators=(",", ":"))


def loads(text: str | bytes | dict[str, Any]) -> Binding:
    return Binding.from_dict(text if isinstance(text, dict) else json.loads(text))


class SqliteBackend(QueuedBackend):
    name = "sqlite"

    def __init__(self, path: str | Path, table: str = "location", *, sync_interval: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = Path(path)
        self.table = table
        self.sync_interval = sync_interval
        self.writer_id = uuid.uuid4().hex[:16]
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="location-sqlite")
        self._db: sqlite3.Connection | None = None  # used in the thread only
        self._seq = 0  # the last TABLE_changes row seen

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._ex, fn, *args)

    # ---------------------------------------------------------------- in the thread

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.write_timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                t = self.table
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    f'CREATE TABLE IF NOT EXISTS "{t}" (aor TEXT NOT NULL, idx INTEGER NOT NULL, contact TEXT NOT NULL, '
                    "expires REAL NOT NULL, node TEXT NOT NULL, binding TEXT NOT NULL, PRIMARY KEY (aor, idx))"
                )
                db.execute(f'CREATE INDEX IF NOT EXISTS "{t}_expires" ON "{t}" (expires)')
                db.execute(
                    f'CREATE TABLE IF NOT EXISTS "{t}_changes" (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
                    "aor TEXT NOT NULL, writer TEXT NOT NULL, at REAL NOT NULL)"
                )
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception:
                pass

    def _rows_all(self, now: float) -> list[Binding]:
        db = self._open()
        return [loads(r[0]) for r in db.execute(f'SELECT binding FROM "{self.table}" WHERE expires > ? ORDER BY aor, idx', (now,))]

    def _rows_of(self, aors: list[str]) -> dict[str, list[Binding]]:
        db = self._open()
        out: dict[str, list[Binding]] = {}
        for i in range(0, len(aors), IN_CHUNK):
            chunk = aors[i : i + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for aor, text in db.execute(f'SELECT aor, binding FROM "{self.table}" WHERE aor IN ({marks}) ORDER BY aor, idx', chunk):
                out.setdefault(aor, []).append(loads(text))
        return out

    def _write(self, rows: list[tuple[str, list[tuple[Any, ...]]]], now: float) -> None:
        db = self._open()
        t = self.table
        db.execute("BEGIN IMMEDIATE")
        try:
            for aor, values in rows:
                db.execute(f'DELETE FROM "{t}" WHERE aor = ?', (aor,))
                db.executemany(f'INSERT INTO "{t}" (aor, idx, contact, expires, node, binding) VALUES (?, ?, ?, ?, ?, ?)', values)
            db.executemany(f'INSERT INTO "{t}_changes" (aor, writer, at) VALUES (?, ?, ?)', [(aor, self.writer_id, now) for aor, _ in rows])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _delete_expired(self, now: float) -> None:
        db = self._open()
        t = self.table
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f'DELETE FROM "{t}" WHERE expires <= ?', (now,))
            db.execute(f'DELETE FROM "{t}_changes" WHERE at < ? AND seq < (SELECT max(seq) FROM "{t}_changes")', (now - CHANGES_KEPT_S,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _last_seq(self) -> int:
        row = self._open().execute(f'SELECT coalesce(max(seq), 0) FROM "{self.table}_changes"').fetchone()
        return int(row[0])

    def _poll(self, after: int) -> tuple[bool, int, list[str]]:
        """(gap, last seq, AORs others changed): gap when rows after ``after`` were purged unseen
        or the log restarted (a new file)."""
        db = self._open()
        lo, hi = db.execute(f'SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM "{self.table}_changes"').fetchone()
        if hi < after or (lo and lo > after + 1):
            return True, hi, []
        rows = db.execute(f'SELECT seq, aor, writer FROM "{self.table}_changes" WHERE seq > ? ORDER BY seq', (after,)).fetchall()
        last = rows[-1][0] if rows else after
        return False, last, [aor for _, aor, writer in rows if writer != self.writer_id]

    # ---------------------------------------------------------------- the primitives

    async def _connect(self) -> None:
        await self._call(self._open)

    async def _load_all(self) -> list[Binding]:
        return await self._call(self._rows_all, time.time())

    async def _load_many(self, aors: list[str]) -> dict[str, list[Binding]]:
        return await self._call(self._rows_of, aors)

    async def _store(self, batch: dict[str, list[Binding]]) -> None:
        rows = [(aor, [(aor, i, b.contact, b.expires, b.node, dumps(b)) for i, b in enumerate(bs)]) for aor, bs in batch.items()]
        await self._call(self._write, rows, time.time())

    async def _purge(self, now: float) -> None:
        await self._call(self._delete_expired, now)

    async def _subscribe(self) -> bool:
        self._seq = await self._call(self._last_seq)
        return True

    async def _notifications(self) -> AsyncIterator[str]:
        while True:
            await asyncio.sleep(self.sync_interval)
            gap, self._seq, aors = await asyncio.wait_for(self._call(self._poll, self._seq), self.write_timeout)
            if gap:
                yield ""  # a resync
            for aor in aors:
                yield aor

    async def _disconnect_writer(self) -> None:
        await self._disconnect()

    async def _disconnect(self) -> None:
        try:
            await self._call(self._close_db)
        except Exception:
            pass

    async def close(self) -> None:
        await super().close()
        self._ex.shutdown(wait=False)
