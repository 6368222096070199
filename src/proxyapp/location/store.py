"""Location: the in-memory binding store the call path reads (OpenSIPS usrloc), wired to a backend.

Rules (RFC 3261 §10.3, §16.5 with usrloc's conventions):

* An AOR maps to its bindings kept sorted: q descending (an absent q counts as 1.0), then the most
  recently modified first (``last_modified``); equal keys keep the registrar's order.
* A binding is live while ``expires > now``. ``get`` never returns an expired binding; ``expire``
  drops them; an AOR left with no binding is gone. A timing wheel of one-second buckets, each
  listing the AORs whose earliest expiry falls in that second, makes ``expire`` cost the AORs due
  plus one dict look-up per elapsed second, at 8 bytes per AOR (a heap of (time, aor) tuples cost
  ~100). An AOR whose earliest expiry moved leaves a stale entry behind, skipped when its second
  comes.
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
import math
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
        # An AOR's bindings: the Binding itself when it is the only one (most AORs; a container
        # would cost 64 bytes more), else a tuple. _held() gives the tuple view.
        self._aors: dict[str, Binding | tuple[Binding, ...]] = {}
        self._count = 0
        # The timing wheel: {int(earliest expiry): [aor, ...]}; no bucket below self._tick.
        self._wheel: dict[int, list[str]] = {}
        self._tick: float = math.inf
        self._timer: asyncio.Task[None] | None = None
        self.applied = 0  # changes from other nodes taken into memory

    # ----------------------------------------------------------------- the call path

    def get(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor`` (expires > now), q descending then most recent first;
        [] for an unknown AOR. The list is the caller's; the bindings are shared."""
        held = self._aors.get(aor)
        if held is None:
            return []
        if isinstance(held, Binding):
            return [held] if held.expires > now else []
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
        self.backend.write(aor, list(self._held(aor)))

    def remove(self, aor: str, contact: str | None = None) -> int:
        """Delete ``aor`` (contact None) or its bindings whose Contact URI is exactly ``contact``;
        queue the change for the backend. Returns the number of bindings removed."""
        held = self._held(aor)
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
        wheel, dropped = self._wheel, 0
        while wheel and self._tick <= now:
            k = int(self._tick)
            bucket = wheel.pop(k, None)
            if bucket is None:
                self._tick = k + 1
                continue
            later: dict[str, None] = {}
            for aor in bucket:
                held = self._held(aor)
                if not held:
                    continue  # deleted since
                first = min(b.expires for b in held)
                if int(first) != k:
                    continue  # rescheduled to another second since
                if first > now:
                    later[aor] = None  # due later in this very second
                    continue
                keep = [b for b in held if b.expires > now]
                dropped += len(held) - len(keep)
                self._set(aor, keep, schedule=False)
                if keep:
                    self._schedule(aor, min(b.expires for b in keep))
            if later:
                wheel.setdefault(k, []).extend(later)
            if k in wheel:
                break  # this second is not over: the rest of its bucket waits
            self._tick = k + 1
        if not wheel:
            self._tick = math.inf
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
        return {aor: [b.to_dict() for b in self._held(aor)] for aor in sorted(self._aors)}

    def stats(self) -> dict[str, Any]:
        """Counts for the management interface: aors, bindings, applied, and the backend's."""
        return {"aors": len(self._aors), "bindings": self._count, "applied": self.applied} | self.backend.stats()

    # ----------------------------------------------------------------- internals

    def _held(self, aor: str) -> tuple[Binding, ...]:
        held = self._aors.get(aor)
        if held is None:
            return ()
        return (held,) if isinstance(held, Binding) else held

    def _set(self, aor: str, bindings: list[Binding], schedule: bool = True) -> None:
        old = self._held(aor)
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
        self._aors[key] = bindings[0] if len(bindings) == 1 else tuple(bindings)
        self._count += len(bindings) - len(old)
        if schedule:
            first = min(b.expires for b in bindings)
            if not old or int(min(b.expires for b in old)) != int(first):
                self._schedule(key, first)  # else the entry of that second is still there

    def _schedule(self, aor: str, first: float) -> None:
        k = int(first)
        bucket = self._wheel.get(k)
        if bucket is None:
            self._wheel[k] = [aor]
        else:
            bucket.append(aor)
        if k < self._tick:
            self._tick = k

    def apply(self, aor: str, bindings: list[Binding]) -> None:
        """Take another node's list for ``aor`` (the backends call this): replace the held one;
        a binding equal to a held one keeps that one's ``conn``. Nothing is written back."""
        now = self._clock()
        live = [b for b in bindings if b.expires > now and b.aor == aor]
        held = self._held(aor)
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
