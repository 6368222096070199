"""The location backend protocol, and the queue, retry and replication machinery every backend shares.

A backend persists each AOR's binding list and, when several nodes share it, tells each node
about the others' changes. Location calls three things (store.py):

    loaded = await backend.start(apply, aors)  # everything live, then others' changes -> apply()
    backend.write(aor, bindings)               # queue; never blocks, never raises
    await backend.close()                      # flush what is queued (bounded), disconnect

QueuedBackend implements them over a handful of primitives (load, store, subscribe, notifications,
purge) and keeps these rules:

* Writes are coalesced per AOR (the newest list wins) and flushed by one task in batches of at
  most ``batch_max`` AORs, each attempt bounded by ``write_timeout``. A failed batch goes back to
  the queue unless a newer list for the same AOR arrived meanwhile, and is retried (after
  ``retry_interval`` from the second failure in a row); the first failure of an outage and the
  recovery are logged once. Batches shrink after a failure, so an AOR no write can store is
  isolated and, once it fails alone while other writes succeed, dropped (_flush_one).
* A change notification names an AOR; the backend re-reads that AOR and hands the result to
  ``apply``, unless this node has a write for the AOR queued or in flight: that write will land
  after the other node's, so it is the last one and must win (last write per AOR wins).
* Notifications lost while the subscription was down are made good by a resync: every AOR is
  re-read, and an AOR this node holds that the backend no longer has is applied as [].
* Expiry is never written or notified: every node drops expired bindings by the clock, and the
  backend deletes expired rows every ``purge_interval`` (or lets the server do it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, AsyncIterator, Callable, Iterable

from loguru import logger

from ..binding import Binding

POISON_STRIKES = 3

Apply = Callable[[str, list[Binding]], None]
Aors = Callable[[], Iterable[str]]


class Backend:
    """The protocol Location uses. The default implementation persists nothing (memory.py)."""

    name = "?"

    async def start(self, apply: Apply, aors: Aors | None = None) -> list[Binding]:
        """Load every binding the backend holds (expired ones may be included: Location drops
        them), then call ``apply(aor, bindings)`` for each change another node makes.
        ``aors()`` lists the AORs held in memory (for a resync). Never raises for a backend that
        is down: it returns [] and keeps trying."""
        return []

    def write(self, aor: str, bindings: list[Binding]) -> None:
        """Queue ``bindings`` as the whole list of ``aor`` ([] deletes it). Non-blocking; never raises."""

    async def close(self) -> None:
        """Flush queued writes (bounded by the backend's timeouts) and disconnect; never raises."""

    def stats(self) -> dict[str, Any]:
        """Counters for the management interface."""
        return {}


class QueuedBackend(Backend):
    """Queue, flush task, retry, subscription task and resync over the primitives below."""

    def __init__(
        self,
        *,
        write_timeout: float = 2.0,
        retry_interval: float = 1.0,
        purge_interval: float = 60.0,
        batch_max: int = 500,
    ) -> None:
        self.write_timeout = write_timeout
        self.retry_interval = retry_interval
        self.purge_interval = purge_interval
        self.batch_max = batch_max
        self._pending: dict[str, list[Binding]] = {}
        self._inflight: set[str] = set()
        self._to_read: set[str] = set()
        self._resync_needed = False
        self._apply: Apply = lambda aor, bindings: None
        self._aors: Aors = lambda: ()
        self._wake: asyncio.Event | None = None
        self._read_wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._failing = False
        self._closing = False
        # Set when close() cancels the tasks; their loops check it too, because asyncio.wait_for
        # in Python < 3.12 can swallow a cancellation that arrives as its inner call finishes.
        self._stopped = False
        self._last_purge = 0.0
        self.written = 0  # AOR lists written
        self.failures = 0  # failed write attempts
        self.notified = 0  # change notifications received
        self.resyncs = 0
        self.ignored = 0  # changes read but not applied: a write of ours for the AOR was queued
        self.dropped = 0  # AOR writes given up (POISON_STRIKES)
        self._size = batch_max  # the next batch's size: halved after a failure, doubled after a success
        self._strikes: dict[str, int] = {}

    # ----------------------------------------------------------------- primitives

    async def _connect(self) -> None:
        """Open what writing and reading need (idempotent); raise on failure."""

    async def _load_all(self) -> list[Binding]:
        """Every binding stored."""
        raise NotImplementedError

    async def _load_many(self, aors: list[str]) -> dict[str, list[Binding]]:
        """The stored lists of ``aors`` (an AOR with none may be missing from the result)."""
        raise NotImplementedError

    async def _store(self, batch: dict[str, list[Binding]]) -> None:
        """Write each AOR's list (replacing the stored one) and notify the other nodes."""
        raise NotImplementedError

    async def _purge(self, now: float) -> None:
        """Delete what expired before ``now`` (no notification: every node expires by the clock)."""

    async def _subscribe(self) -> bool:
        """Start receiving other nodes' changes; False when this backend has none to receive."""
        return False

    def _notifications(self) -> AsyncIterator[str]:
        """The AORs other nodes changed, as they come; ends or raises when the subscription is lost."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        """Close every connection; never raises."""

    # ----------------------------------------------------------------- the protocol

    async def start(self, apply: Apply, aors: Aors | None = None) -> list[Binding]:
        self._apply = apply
        self._aors = aors or (lambda: ())
        self._wake = asyncio.Event()
        self._read_wake = asyncio.Event()
        loaded: list[Binding] = []
        try:
            # Subscribe before loading, so that no change falls between the two.
            self._subscribed = await asyncio.wait_for(self._subscribe(), self.write_timeout)
            await asyncio.wait_for(self._connect(), self.write_timeout)
            loaded = await asyncio.wait_for(self._load_all(), max(self.write_timeout, 30.0))
        except Exception as exc:
            logger.warning("location {}: backend unavailable at start ({}); starting empty, retrying", self.name, _why(exc))
            self._failing = True
            self._resync_needed = True  # the subscriber task loads everything once it is back
            await self._disconnect()
            self._subscribed = False
        self._tasks = [
            asyncio.create_task(self._flusher(), name=f"location-{self.name}-flush"),
            asyncio.create_task(self._subscriber(), name=f"location-{self.name}-subscribe"),
            asyncio.create_task(self._reader(), name=f"location-{self.name}-read"),
        ]
        return loaded

    def write(self, aor: str, bindings: list[Binding]) -> None:
        self._pending.pop(aor, None)  # re-queued at the end: the batches go oldest first
        self._pending[aor] = bindings
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        self._closing = True
        flusher = self._tasks[0] if self._tasks else None
        for t in self._tasks[1:]:
            t.cancel()  # (they check _closing too)
        try:
            if flusher is not None:
                assert self._wake is not None
                self._wake.set()
                # Retried until a deadline, then given up: a backend that is down does not hold
                # up a shutdown (the bindings come back when the clients re-register).
                deadline = self.write_timeout * (2 + len(self._pending) // self.batch_max)
                try:
                    await asyncio.wait_for(asyncio.shield(flusher), deadline)
                except asyncio.TimeoutError:
                    pass
                except Exception:
                    logger.exception("location {}: flush at close", self.name)
        finally:
            self._stopped = True
            await _cancel(self._tasks)
            self._tasks = []
            if self._pending or self._inflight:
                logger.warning("location {}: {} AORs not written at close", self.name, len(self._pending) + len(self._inflight))
            await self._disconnect()

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "pending": len(self._pending) + len(self._inflight),
            "written": self.written,
            "failures": self.failures,
            "notified": self.notified,
            "resyncs": self.resyncs,
            "ignored": self.ignored,
            "dropped": self.dropped,
        }

    # ----------------------------------------------------------------- tasks

    async def _flusher(self) -> None:
        assert self._wake is not None
        last_ok = True
        while not self._stopped:
            if not self._pending:
                if self._closing:
                    return
                try:
                    await asyncio.wait_for(self._wake.wait(), self.purge_interval)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
            now = time.time()
            if self._pending:
                ok = await self._flush_one(last_ok)
                if not ok and not last_ok:
                    await asyncio.sleep(self.retry_interval)  # twice in a row: the backend is down
                last_ok = ok
                if not ok:
                    continue
            if now - self._last_purge >= self.purge_interval and not self._failing:
                self._last_purge = now
                try:
                    await asyncio.wait_for(self._purge(now), self.write_timeout)
                except Exception as exc:
                    logger.warning("location {}: purge of expired bindings failed: {}", self.name, _why(exc))

    async def _flush_one(self, after_success: bool) -> bool:
        """Write the oldest queued AORs, at most self._size of them. A failed batch goes back to
        the end of the queue and the next batch is half as large: an AOR the backend always
        refuses (one that no write can store) ends up alone, and after POISON_STRIKES failures
        each right after a successful write, that is, while the backend works, its write is
        dropped and logged instead of holding up every other AOR for ever."""
        batch = dict(itertools.islice(self._pending.items(), self._size))
        for aor in batch:
            del self._pending[aor]
        self._inflight = set(batch)
        try:
            await asyncio.wait_for(self._connect_and_store(batch), self.write_timeout)
        except asyncio.CancelledError:
            self._requeue(batch)  # close() gave up: counted as not written
            raise
        except Exception as exc:
            self.failures += 1
            if not self._failing:
                logger.warning("location {}: write failed ({}); retrying every {} s", self.name, _why(exc), self.retry_interval)
                self._failing = True
            await self._disconnect_writer()
            self._size = max(1, len(batch) // 2)
            if len(batch) == 1 and after_success:
                (aor,) = batch
                self._strikes[aor] = self._strikes.get(aor, 0) + 1
                if self._strikes[aor] >= POISON_STRIKES:
                    del self._strikes[aor]
                    self.dropped += 1
                    logger.error("location {}: the write of {!r} failed {} times while others succeeded ({}); dropped", self.name, aor, POISON_STRIKES, _why(exc))
                    batch = {}  # memory keeps the list: this node still serves the AOR
            self._requeue(batch)
            return False
        finally:
            self._inflight = set()
        self.written += len(batch)
        self._size = min(self.batch_max, self._size * 2)
        for aor in batch:
            self._strikes.pop(aor, None)
        if self._failing:
            logger.info("location {}: backend is back", self.name)
            self._failing = False
        return True

    def _requeue(self, batch: dict[str, list[Binding]]) -> None:
        for aor, bindings in batch.items():
            if aor not in self._pending:  # a newer list for the AOR replaces the failed one
                self._pending[aor] = bindings

    async def _connect_and_store(self, batch: dict[str, list[Binding]]) -> None:
        await self._connect()
        await self._store(batch)

    async def _disconnect_writer(self) -> None:
        """Drop the writing connection after a failure (the next write reconnects)."""

    async def _subscriber(self) -> None:
        while not self._closing:
            try:
                if not self._subscribed:
                    self._subscribed = await asyncio.wait_for(self._subscribe(), self.write_timeout)
                    self._resync_needed = True
                if self._resync_needed:
                    await self._resync()
                if not self._subscribed:
                    return  # nothing to receive (a backend no other node writes to)
                async for aor in self._notifications():
                    if self._closing:
                        return
                    if aor == "":
                        self._resync_needed = True  # the subscription was re-established
                        self._wake_reader()
                        continue
                    self.notified += 1
                    self._to_read.add(aor)
                    self._wake_reader()
                raise ConnectionError("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._subscribed:
                    logger.warning("location {}: lost the change subscription ({}); resubscribing", self.name, _why(exc))
                self._subscribed = False
                await self._unsubscribe()
                await asyncio.sleep(self.retry_interval)

    async def _unsubscribe(self) -> None:
        """Drop the subscription after a failure."""

    def _wake_reader(self) -> None:
        if self._read_wake is not None:
            self._read_wake.set()

    async def _reader(self) -> None:
        assert self._read_wake is not None
        while not self._closing:
            await self._read_wake.wait()
            self._read_wake.clear()
            try:
                if self._resync_needed:
                    await self._resync()
                while self._to_read:
                    aors = list(itertools.islice(self._to_read, self.batch_max))
                    self._to_read.difference_update(aors)
                    try:
                        found = await asyncio.wait_for(self._connect_and_load(aors), self.write_timeout)
                    except BaseException:
                        self._to_read.update(aors)
                        raise
                    for aor in aors:
                        self._deliver(aor, found.get(aor, []))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("location {}: reading changed AORs failed ({}); retrying", self.name, _why(exc))
                await self._disconnect_writer()
                await asyncio.sleep(self.retry_interval)
                self._read_wake.set()

    async def _connect_and_load(self, aors: list[str]) -> dict[str, list[Binding]]:
        await self._connect()
        return await self._load_many(aors)

    async def _resync(self) -> None:
        """Re-read everything: the notifications of an outage are lost."""
        await asyncio.wait_for(self._connect(), self.write_timeout)
        everything = await asyncio.wait_for(self._load_all(), max(self.write_timeout, 30.0))
        self._resync_needed = False
        self.resyncs += 1
        by_aor: dict[str, list[Binding]] = {}
        for b in everything:
            by_aor.setdefault(b.aor, []).append(b)
        gone = [aor for aor in self._aors() if aor not in by_aor]
        for i, (aor, bindings) in enumerate(itertools.chain(by_aor.items(), ((a, []) for a in gone))):
            self._deliver(aor, bindings)
            if i % 1000 == 999:
                await asyncio.sleep(0)  # a large resync must not stall the call path
        if self._failing:
            self._failing = False
            logger.info("location {}: backend is back ({} AORs re-read)", self.name, len(by_aor))

    def _deliver(self, aor: str, bindings: list[Binding]) -> None:
        if aor in self._pending or aor in self._inflight:
            self.ignored += 1
            return  # our own newer write lands after this one and wins
        try:
            self._apply(aor, bindings)
        except Exception:
            logger.exception("location {}: applying a change of {}", self.name, aor)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for them to end. Cancelled again if one survives: asyncio.wait_for
    in Python < 3.12 can swallow a cancellation that arrives as its inner call finishes."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(20):
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            logger.opt(exception=t.exception()).error("location: task {} failed", t.get_name())
    if pending:
        logger.error("location: {} background tasks did not stop", len(pending))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
