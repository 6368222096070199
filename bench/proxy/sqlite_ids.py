"""What keeping record ids unique costs the SQLite writer: schema v1 against schema v2.

v1 had a UNIQUE index on record_id; v2 (proxyapp.acc.schema explains it) checks the id through
the callid index every table has. Record ids are hashes or random, so each insert into a
record_id index lands on another page, and every commit writes those pages to the WAL.

Writes N accounting rows with random 32-hex-digit ids, 100 per transaction as the db backend
batches them, through the SQLite writer process's own Writer class (WAL, synchronous=FULL) into
fresh databases under a temporary directory: for each layout, once with Call-IDs in sequence
(as SIPp makes them) and once with random ones (as real phones do). Prints the writer's CPU per
row (user and system).

    python bench/proxy/sqlite_ids.py [N]
"""

from __future__ import annotations

import os
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from proxyapp.acc.backends.sqlite_writer import Writer  # noqa: E402
from proxyapp.acc.records import DEFAULT_EXTRA  # noqa: E402


def rows(n: int, random_callids: bool) -> list[tuple[object, ...]]:
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        callid = f"{uuid.uuid4().hex}@192.0.2.1" if random_callids else f"{i}-1@127.0.0.1"
        out.append((uuid.uuid4().hex, "BYE", f"1SIPpTag00{i}", f"1SIPpTag01{i}", callid, 200, "OK", now, None, None,
                    None, None, None, "127.0.0.1", "45080", "caller", "127.0.0.1", "bench", "127.0.0.1", "bench",
                    "127.0.0.1", "fastsip-bench-uac"))
    return out


def cpu_per_row(n: int, v1: bool, random_callids: bool, directory: str) -> tuple[float, float]:
    path = os.path.join(directory, f"acc-{'v1' if v1 else 'v2'}-{'random' if random_callids else 'seq'}.db")
    writer = Writer(path, tuple(DEFAULT_EXTRA))
    writer.write([("acc", [])])  # create the table outside the timing
    if v1:
        with sqlite3.connect(path) as conn:
            conn.execute('CREATE UNIQUE INDEX "acc_record_id_idx" ON "acc" ("record_id")')
    data = rows(n, random_callids)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(0, n, 100):
        writer.write([("acc", data[i : i + 100])])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    writer.conn.close()
    return (r1.ru_utime - r0.ru_utime) / n * 1e6, (r1.ru_stime - r0.ru_stime) / n * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory(prefix="sqlite-ids-") as d:
        for random_callids in (False, True):
            for v1 in (True, False):
                user, system = cpu_per_row(n, v1, random_callids, d)
                print(f"schema {'v1 (UNIQUE record_id)' if v1 else 'v2 (via callid index)'}, "
                      f"{'random' if random_callids else 'sequential'} Call-IDs: {user + system:5.1f} us CPU per row "
                      f"(user {user:.1f}, system {system:.1f}), {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
