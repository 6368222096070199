"""Child process of test_sigkill.py: accounts records at a steady rate until it is SIGKILLed.

argv: spool_dir db_url batch_max.  Prints the index of each record right after handing it to
the engine (flushed), so the parent knows what was accepted when it sent SIGKILL.
"""

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxyapp.acc import AccConfig, Accounting, AccMark  # noqa: E402
from sipfakes import request  # noqa: E402


async def main() -> None:
    spool, db, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    acc = Accounting(AccConfig.from_dict({"spool_dir": spool, "db_url": db, "batch_max": batch, "flush_interval_ms": 10, "retry_interval_ms": 100000, "backend_timeout_ms": 500}))
    await acc.start()
    mark = AccMark.parse("db")
    for i in range(100000):
        acc.transaction_completed(mark, request("OPTIONS", f"k{i:06d}", "a"), 200, "OK", "t", ("127.0.0.1", 5060), time.time())
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
        await asyncio.sleep(0.0005)


asyncio.run(main())
