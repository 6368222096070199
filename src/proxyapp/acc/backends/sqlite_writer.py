"""The SQLite writer process: the db backend's inserts and commits, off the proxy's interpreter.

Why a process: a writer thread shares the GIL with the event loop.  Its Python work (rows, the
sqlite3 module's bookkeeping) is serialised with the proxy's, and every point where sqlite3
releases the GIL (each statement, each commit) costs it a switch interval when the loop is busy.
With CDRs on, that was 35-45 us of the proxy's CPU per call plus the waits.  The process takes
batches of ready-made rows and answers each with an acknowledgement after COMMIT, so the db
backend's contract is unchanged: a batch is acknowledged only once it is durable.

Protocol on the child's stdin/stdout, one frame per message (child.encode_frame: 4-byte
big-endian length, then the message in marshal format, which child.py explains).

  parent -> child   ("write", seq, [(table, rows), ...])    rows: tuples in schema column order
  child -> parent   (seq, None) after COMMIT, or (seq, "error text") after ROLLBACK

The child opens the database (WAL, synchronous=FULL, busy timeout 5 s), creates or migrates the
tables it is asked to write (the same migrate_sqlite as `proxyapp acc migrate`), and exits when
its stdin closes -- including when the proxy dies, even by SIGKILL. SIGTERM and SIGINT do not
stop it (child.outlive_stop_signals): the whole service gets them at once, and the batches its
parent still flushes need it.

    python -m proxyapp.acc.backends.sqlite_writer DB_PATH EXTRA_COLUMN...
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any, BinaryIO

from ..child import encode_frame, outlive_stop_signals, read_frame, tune_gc

ROWS_PER_INSERT = 100  # 100 rows x (13 fixed + extra) columns: far below SQLite's 32766 parameters


def _first_of_each_id(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows without those repeating an earlier row's record_id (the first column)."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


class Writer:
    """The child's side: one connection, tables migrated on first use."""

    def __init__(self, path: str, extra: tuple[str, ...]) -> None:
        from ..schema import insert_sql
        from .db_sqlite import migrate_sqlite

        self._migrate = migrate_sqlite
        self._insert_sql = insert_sql
        self.extra = extra
        self.conn = sqlite3.connect(path, timeout=5.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.tables: set[str] = set()

    def write(self, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        try:
            for table, rows in batches:
                if table not in self.tables:
                    self._migrate(self.conn, table, self.extra)
                    self.tables.add(table)
                rows = _first_of_each_id(rows)  # one INSERT's rows do not see each other (schema.py)
                for i in range(0, len(rows), ROWS_PER_INSERT):
                    chunk = rows[i : i + ROWS_PER_INSERT]
                    self.conn.execute(self._insert_sql(table, self.extra, "sqlite", len(chunk)), [v for row in chunk for v in row])
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise


def serve(path: str, extra: tuple[str, ...], inp: BinaryIO, out: BinaryIO) -> int:
    writer: Writer | None = None
    while True:
        try:
            msg = read_frame(inp)
        except EOFError:
            return 0
        seq = msg[1] if isinstance(msg, tuple) and len(msg) > 1 else None
        answer: tuple[Any, str | None]
        try:
            if not (isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "write"):
                raise ValueError(f"unknown request {msg!r:.80}")
            if writer is None:
                writer = Writer(path, extra)
            writer.write(msg[2])
            answer = (seq, None)
        except Exception as exc:  # reported to the parent, which spools the batch
            answer = (seq, f"{type(exc).__name__}: {exc}")
            if writer is not None and isinstance(exc, sqlite3.DatabaseError):
                try:
                    writer.conn.close()
                except Exception:
                    pass
                writer = None  # reopen on the next batch
        out.write(encode_frame(answer))
        out.flush()


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    outlive_stop_signals()  # SIGTERM/SIGINT to the whole service: the parent closes our stdin
    tune_gc()
    return serve(argv[0], tuple(argv[1:]), sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
