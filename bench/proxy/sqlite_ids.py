"""What record ids cost the SQLite writer: random (uuid) ids against time-ordered ones.

Writes N accounting rows, 100 per transaction as the db backend batches them, through the SQLite
writer process's own Writer class (same schema, WAL, synchronous=FULL) into a fresh database
under a temporary directory, once with random 32-hex-digit ids and once with time-ordered ones,
and prints the writer's CPU per row (user and system) for each.

    python bench/proxy/sqlite_ids.py [N]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from proxyapp.acc.backends.sqlite_writer import Writer  # noqa: E402
from proxyapp.acc.records import DEFAULT_EXTRA  # noqa: E402


def rows(n: int, ordered: bool) -> list[tuple[object, ...]]:
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        rid = f"{now:012x}{i:020x}" if ordered else uuid.uuid4().hex
        out.append((rid, "BYE", f"1SIPpTag00{i}", f"1SIPpTag01{i}", f"{i}-1@127.0.0.1", 200, "OK", now, None, None,
                    None, None, None, "127.0.0.1", "45080", "caller", "127.0.0.1", "bench", "127.0.0.1", "bench",
                    "127.0.0.1", "fastsip-bench-uac"))
    return out


def cpu_per_row(n: int, ordered: bool, directory: str) -> tuple[float, float]:
    writer = Writer(os.path.join(directory, f"acc-{'ordered' if ordered else 'random'}.db"), tuple(DEFAULT_EXTRA))
    data = rows(n, ordered)
    writer.write([("acc", [])])  # create the table outside the timing
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(0, n, 100):
        writer.write([("acc", data[i : i + 100])])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    writer.conn.close()
    return (r1.ru_utime - r0.ru_utime) / n * 1e6, (r1.ru_stime - r0.ru_stime) / n * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory(prefix="sqlite-ids-") as d:
        for ordered in (False, True):
            user, system = cpu_per_row(n, ordered, d)
            print(f"{'time-ordered' if ordered else 'random':>12} ids: {user + system:5.1f} us CPU per row "
                  f"(user {user:.1f}, system {system:.1f}), {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
