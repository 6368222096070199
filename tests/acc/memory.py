"""In-memory backends for engine tests: record what was written; fail on demand."""

from __future__ import annotations

import asyncio

from proxyapp.acc.backends.base import Backend
from proxyapp.acc.records import AccRecord


class MemoryBackend(Backend):
    def __init__(self, name: str) -> None:
        self.name = name
        self.records: list[AccRecord] = []
        self.ids: set[str] = set()
        self.down = False
        self.delay = 0.0
        self.writes = 0

    async def write(self, records: list[AccRecord]) -> None:
        self.writes += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionError(f"{self.name} is down")
        for r in records:
            # like the SQL backends: a record_id already written is ignored
            if r.record_id not in self.ids:
                self.ids.add(r.record_id)
                self.records.append(r)


def memory_backends() -> dict[str, MemoryBackend]:
    return {n: MemoryBackend(n) for n in ("log", "db", "aaa", "evi")}


async def settle(acc, timeout: float = 5.0) -> None:
    """Wait (bounded) until every queue is empty and nothing is waiting in a spool."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        s = acc.stats()
        if all(s[n]["queued"] == 0 and s[n]["spool_pending"] == 0 for n in ("log", "db", "aaa", "evi")):
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"accounting did not settle: {acc.stats()}")


async def wait_until(pred, timeout: float = 10.0, what: str = "the condition", show=None) -> None:
    """Poll pred() every 10 ms until it is true; fail after `timeout` s, with show() in the message.
    For a state reached "soon" on a busy machine: wait for it, then assert the exact numbers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f": {show()}" if show else ""))
        await asyncio.sleep(0.01)


def journal_idle(acc) -> bool:
    """The engine's journal loop has nothing left to do: every entry written, no compaction due."""
    j = acc.journal
    return not j.dirty and not j.should_compact(len(acc.tracker))
