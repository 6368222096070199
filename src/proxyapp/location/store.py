"""Location: the in-memory binding store the call path reads (OpenSIPS usrloc), wired to a backend.

Rules (RFC 3261 §10.3, §16.5 with usrloc's conventions):

* An AOR maps to its bindings kept sorted: q descending (an absent q counts as 1.0), then the most
  recently modified first (``last_modified``); equal keys keep the registrar's order.
* A binding is live while ``expires > now``. ``get`` never returns an expired binding; ``expire``
  drops them (a heap of each AOR's earliest expiry makes it O(expired · log n)); an AOR left with
  no binding is gone.
* ``put`` replaces an AOR's whole list as the registrar computed it (an empty list deletes the
  AOR); ``put`` and ``remove`` queue the new list for the backend, which persists and replicates
  it without ever blocking or raising here (backends/base.py). Expiry is not written: every node
  and every backend drops expired bindings by the (wall) clock.
* A change from another node replaces the AOR's list; a binding equal to the one held locally
  keeps its ``conn`` (the edge's connection exists only in this process). A change for an AOR
  whose own write has not reached the backend yet is ignored: that write lands later and wins.
* Every call but start/close is synchronous and cheap; the Binding objects belong to the store
  once put (do not modify them afterwards: the backend serialises them when it flushes).
"""

from __future__ import annotations

import asyncio
import heapq
import sys
import time
from typing import Any, Callable, Iterable

from loguru import logger

from .backends.base import Backend
from .backends.memory import MemoryBackend
from .binding import Binding


def _order(b: Binding) -> tuple[float, float]:
    return (-b.sort_q, -b.last_modified)


class Location:
    """Bindings by AOR in memory, with expiry; ``start()`` loads them from the backend and
    subscribes to other nodes' changes, ``close()`` flushes the queued writes."""

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        clock: Callable[[], float] = time.time,
        expire_interval: float = 1.0,
    ) -> None:
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self._clock = clock
        self._expire_interval = expire_interval
        # Tuples, not lists: most AORs have one binding, and a 1-tuple is the smallest container.
        self._aors: dict[str, tuple[Binding, ...]] = {}
        self._count = 0
        # (earliest expiry of the AOR when it was pushed, aor); stale entries are skipped on pop.
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.Task[None] | None = None
        self.applied = 0  # changes from other nodes taken into memory

    # ----------------------------------------------------------------- the call path

    def get(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor`` (expires > now), q descending then most recent first;
        [] for an unknown AOR. The list is the caller's; the bindings are shared."""
        held = self._aors.get(aor)
        if not held:
            return []
        return [b for b in held if b.expires > now]

    def put(self, aor: str, bindings: Iterable[Binding], now: float) -> None:
        """Replace the bindings of ``aor`` with the live ones of ``bindings`` (an empty result
        deletes the AOR) and queue the change for the backend.
        Raises ValueError when a binding's aor is not ``aor`` (a registrar bug)."""
        live = []
        for b in bindings:
            if b.aor != aor:
                raise ValueError(f"location.put({aor!r}): binding of another AOR {b.aor!r}")
            if b.expires > now:
                live.append(b)
        self._set(aor, live)
        self.backend.write(aor, list(self._aors.get(aor, ())))

    def remove(self, aor: str, contact: str | None = None) -> int:
        """Delete ``aor`` (contact None) or its bindings whose Contact URI is exactly ``contact``;
        queue the change for the backend. Returns the number of bindings removed."""
        held = self._aors.get(aor)
        if not held:
            return 0
        keep = [] if contact is None else [b for b in held if b.contact != contact]
        removed = len(held) - len(keep)
        if removed:
            self._set(aor, keep)
            self.backend.write(aor, keep)
        return removed

    def expire(self, now: float) -> int:
        """Drop every binding with expires <= now; returns how many were dropped."""
        heap, dropped = self._heap, 0
        while heap and heap[0][0] <= now:
            t, aor = heapq.heappop(heap)
            held = self._aors.get(aor)
            if not held or min(b.expires for b in held) != t:
                continue  # the AOR changed since this entry was pushed
            keep = [b for b in held if b.expires > now]
            dropped += len(held) - len(keep)
            self._set(aor, keep, schedule=True)
        return dropped

    def aors(self) -> list[str]:
        """The AORs held (live or not yet expired by expire()), in insertion order."""
        return list(self._aors)

    def count(self) -> int:
        """The number of bindings held."""
        return self._count

    def __len__(self) -> int:
        """The number of AORs held."""
        return len(self._aors)

    def __contains__(self, aor: object) -> bool:
        return aor in self._aors

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every AOR's bindings in their persisted form (``ul show``), AORs sorted."""
        return {aor: [b.to_dict() for b in self._aors[aor]] for aor in sorted(self._aors)}

    def stats(self) -> dict[str, Any]:
        """Counts for the management interface: aors, bindings, applied, and the backend's."""
        return {"aors": len(self._aors), "bindings": self._count, "applied": self.applied} | self.backend.stats()

    # ----------------------------------------------------------------- internals

    def _set(self, aor: str, bindings: list[Binding], schedule: bool = True) -> None:
        old = self._aors.get(aor, ())
        if not bindings:
            if old:
                del self._aors[aor]
                self._count -= len(old)
            return
        key = aor
        if old:
            key = next(iter(old)).aor  # share one string object for the AOR
        for b in bindings:
            # One copy of each repeated string: the AOR, the node, the socket, the User-Agent.
            b.aor = key
            b.node = sys.intern(b.node)
            b.socket = sys.intern(b.socket)
            b.source_transport = sys.intern(b.source_transport)
            b.user_agent = sys.intern(b.user_agent)
        bindings.sort(key=_order)
        self._aors[key] = tuple(bindings)
        self._count += len(bindings) - len(old)
        if schedule:
            heapq.heappush(self._heap, (min(b.expires for b in bindings), key))
            if len(self._heap) > 2 * len(self._aors) + 1024:
                self._compact()

    def _compact(self) -> None:
        self._heap = [(min(b.expires for b in held), aor) for aor, held in self._aors.items()]
        heapq.heapify(self._heap)

    def apply(self, aor: str, bindings: list[Binding]) -> None:
        """Take another node's list for ``aor`` (the backends call this): replace the held one;
        a binding equal to a held one keeps that one's ``conn``. Nothing is written back."""
        now = self._clock()
        live = [b for b in bindings if b.expires > now and b.aor == aor]
        held = self._aors.get(aor, ())
        if len(held) == len(live) and all(any(n == o for o in held) for n in live):
            return  # what we hold already (our own write coming back)
        for n in live:
            for o in held:
                if o.conn is not None and n == o:
                    n.conn = o.conn
                    break
        self._set(aor, live)
        self.applied += 1

    def _load(self, bindings: Iterable[Binding]) -> int:
        now = self._clock()
        by_aor: dict[str, list[Binding]] = {}
        for b in bindings:
            if b.expires > now and b.aor not in self._aors:  # a put before start() wins
                by_aor.setdefault(b.aor, []).append(b)
        for aor, bs in by_aor.items():
            self._set(aor, bs)
        return sum(map(len, by_aor.values()))

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> int:
        """Load the backend's live bindings, subscribe to other nodes' changes and start the
        expiry timer. Returns the number of bindings loaded. A backend that is down is logged,
        not raised: the store starts empty and fills in when the backend comes back."""
        loaded = self._load(await self.backend.start(self.apply, self.aors))
        logger.info("location: {} bindings of {} AORs loaded ({})", loaded, len(self._aors), self.backend.name)
        if self._expire_interval > 0:
            self._timer = asyncio.create_task(self._expire_loop(), name="location-expire")
        return loaded

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self._expire_interval)
            try:
                self.expire(self._clock())
            except Exception:  # never let the timer die
                logger.exception("location: expire")

    async def close(self) -> None:
        """Stop the timer and flush the queued writes to the backend (bounded by its timeouts)."""
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass
            self._timer = None
        await self.backend.close()
