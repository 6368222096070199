"""Accounting engine: turns proxy events into records and gets every record to its backends.

The proxy calls the synchronous, non-blocking methods of Accounting (see acc/__init__.py for
the contract).  They only build records and append them to one bounded in-memory queue per
backend; one background asyncio worker per backend drains its queue in batches:

  backend up, no backlog  -> write the batch (timeout acc.backend_timeout_ms)
  write failed/timed out  -> append the batch to the backend's durable spool (fsynced), and
                             from then on append new records behind it, so order is kept
  backlog in the spool    -> every acc.retry_interval_ms replay it in order; the cursor moves
                             only after the backend acknowledged the batch
  close() (SIGTERM)       -> last batches go to the backend, or to the spool if it is down

Exactly once per backend: each record has a record_id; the db backends ignore a record_id they
already have (schema.py), so a batch replayed after a crash in the window "written, cursor not yet
saved" is not duplicated.  CDR record_ids are derived from the dialog, so a CDR regenerated after
a restart has the same id.  Workers are independent: a dead RADIUS server never delays the DB.

Worst case after SIGKILL (nothing runs at exit): the records still in memory, i.e. accepted in
the last flush interval and not yet handed to the backend or fsynced to the spool -- at most one
batch (acc.batch_max records) per backend while the writer keeps up; plus the proxy events of the
last EVENT_BATCH_S (5 ms), queued for their batch; plus the dialog-journal lines of the last
journal flush (a dialog opened then has no CDR).  tests/acc/test_sigkill.py
measures it.  A record the writer has acknowledged (written or spooled) is never lost.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Concatenate, ParamSpec, TypeGuard

from loguru import logger

from .backends.base import Backend, BackendError
from .config import AccConfig
from .dialog import Dialog, DialogTracker
from .journal import DialogJournal, HelperError, JournalHelper
from .marks import AccMark
from .records import (
    KIND_ACC,
    KIND_CDR,
    KIND_MISSED,
    KIND_REQUEST,
    AccRecord,
    ExtraFields,
    ms,
    request_fields,
    split_comment,
    uuid5_hex,
)
from .spool import BACKENDS, Spool

# How long a proxy event may wait for the batch it is processed in (see transaction_completed).
EVENT_BATCH_S = 0.005

_P = ParamSpec("_P")


def _queued(fn: Callable[Concatenate["Accounting", _P], None]) -> Callable[Concatenate["Accounting", _P], None]:
    """A proxy event: queued for its batch (Accounting._defer) instead of processed at once."""

    @functools.wraps(fn)
    def queue(self: "Accounting", /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        self._defer(fn, (self, *args), kwargs)

    return queue

_CDR_NS = uuid.UUID("6f1c6a4e-2f57-4d0b-9a49-3c1f1b0c4acc").bytes
_ACC_NS = uuid.UUID("0b9d1a8e-6c2f-4a51-8d0e-1f5a3c7e9acc").bytes


def _cseq_number(request: Any) -> int | None:
    try:
        cseq = request.cseq
        return int(cseq.seq) if cseq is not None else None
    except Exception:  # unparsable CSeq: the record keeps its random id
        return None


def missed_on_branch(mark: AccMark | None, request: Any, status: int) -> TypeGuard[AccMark]:
    """Whether a failed branch writes a missed-call record (OpenSIPS: a failed INVITE whose mark
    still has `missed` armed; writing it clears the flag until the failure route re-arms it)."""
    return (
        mark is not None and mark.active and mark.missed and status >= 300
        and getattr(request, "method", None) == "INVITE"
    )


def cdr_record_id(d: Dialog) -> str:
    """Deterministic id of a dialog's CDR: regenerated after a restart it is deduplicated."""
    return uuid5_hex(_CDR_NS, "\x1f".join((d.callid, d.caller_tag, d.callee_tag)))


@dataclasses.dataclass
class Counters:
    """Per-backend metrics (records, not batches)."""

    written: int = 0  # written directly
    spooled: int = 0  # appended to the durable spool
    replayed: int = 0  # written from the spool after the backend came back
    failed: int = 0  # records whose write attempt failed (they were spooled, not lost)
    lost: int = 0  # records that could not even be spooled (disk error); should stay 0


class BackendWorker:
    """Queue + writer task + spool of one backend."""

    def __init__(self, name: str, backend: Backend, spool: Spool, cfg: AccConfig) -> None:
        self.name = name
        self.backend = backend
        self.spool = spool
        self.cfg = cfg
        self.queue: collections.deque[AccRecord] = collections.deque()
        self.counters = Counters()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.next_retry = 0.0
        self.overflowed = False  # the queue overflowed into the spool since it last drained
        self.opened = False
        self.down = False
        self._acked: set[str] = set()
        self._inflight: list[AccRecord] = []
        self._timeout = cfg.backend_timeout_ms / 1000

    # -- called synchronously from the proxy's code path ----------------------------------
    def put(self, r: AccRecord) -> None:
        if len(self.queue) >= self.cfg.queue_size:
            # Overflow (backend and spool both slower than the traffic): never drop, never
            # block on fsync -- a buffered append now, made durable by the writer's next sync.
            if not self.overflowed:
                # Once per episode: the records are safe, but no longer written in real time
                # (bench/README.md, Run AB showed it happening without a word in the log).
                self.overflowed = True
                logger.warning("acc {}: queue full ({} records): records go to the spool until the writer catches up",
                               self.name, self.cfg.queue_size)
            # The oldest queued record makes room, so the spool holds the older records and the
            # queue the newer ones: a backend that needs order gets the queue spooled behind
            # them (step), never a new record ahead of older ones.
            old = self.queue.popleft()
            try:
                self.spool.append([old], sync=False)
                self.counters.spooled += 1
            except OSError:
                self.counters.lost += 1
                logger.exception("acc {}: record {} lost: spool not writable", self.name, old.record_id)
        self.queue.append(r)
        self.wake.set()

    # -- the writer -----------------------------------------------------------------------
    async def run(self) -> None:
        while not self.closing:
            try:
                timeout = self.cfg.retry_interval_ms / 1000 if self.spool.pending else None
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                if self.closing:
                    break
                # Let a burst accumulate into one batch (the flush interval bounds the latency).
                await asyncio.sleep(self.cfg.flush_interval_ms / 1000)
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill accounting: log, back off, go on
                logger.exception("acc {} writer", self.name)
                await asyncio.sleep(self.cfg.retry_interval_ms / 1000)

    async def step(self, final: bool = False) -> None:
        """One round: write or spool what is queued, replay backlog when due.  The final round
        (close) does not replay: shutting down must not wait for a long backlog, which stays
        in the spool for the next start."""
        while self.queue:
            if self.spool.pending and (self.down or self.backend.ordered):
                # Behind a backlog, fresh records join it: always while the backend is down, and
                # always for a backend that needs its records in order. A database takes them
                # directly and the backlog is replayed after them: spooling a record costs more
                # than writing it (serialised, synced, read back), and at 2 workers' load that
                # extra cost kept an overflow backlog from ever draining while calls lasted
                # (bench/README.md, Runs AB and AL).
                await self._to_spool(self._take(len(self.queue)))
                break
            batch = self._take(self.cfg.batch_max)
            # Kept referenced until it is written or spooled: close() spools it if it has to
            # cancel this write (a record taken off the queue must never just vanish).
            self._inflight = batch
            ok, rest = await self._write(batch)
            self.counters.written += len(batch) - len(rest)
            if not ok:
                await self._to_spool(rest)
            self._inflight = []
            if not final and len(self.queue) < self.cfg.batch_max:
                # What arrived during the write waits for the next round's flush interval, so
                # it goes as one full batch, not as a trickle of small ones written back to back
                # (each is a commit: 578 batches instead of 317 for the same 40,000 rows at
                # 3,000 calls/s, and 4 us more of the writer's CPU per call).
                if self.queue:
                    self.wake.set()
                break
        if self.spool.pending and not final and time.monotonic() >= self.next_retry:
            await self._replay()
        elif self.spool.pending:
            await asyncio.to_thread(self.spool.sync)  # make overflow appends durable

    def _take(self, n: int) -> list[AccRecord]:
        n = min(n, len(self.queue))
        return [self.queue.popleft() for _ in range(n)]

    async def _write(self, batch: list[AccRecord]) -> tuple[bool, list[AccRecord]]:
        """Write a batch; return (ok, records not written)."""
        try:
            if not self.opened:
                await asyncio.wait_for(self.backend.open(), self.backend.timeout(self._timeout))
                self.opened = True
            await asyncio.wait_for(self.backend.write(batch), self.backend.timeout(self._timeout))
            if self.down:
                logger.info("acc {}: backend is back", self.name)
                self.down = False
            return True, []
        except (Exception, asyncio.TimeoutError) as exc:
            done = exc.done if isinstance(exc, BackendError) else set()
            rest = [r for r in batch if r.record_id not in done]
            self.counters.failed += len(rest)
            self.next_retry = time.monotonic() + self.cfg.retry_interval_ms / 1000
            # Say it once per outage (a retry every second must not flood the log).
            log = logger.debug if self.down else logger.warning
            log("acc {}: backend write failed ({}: {}); {} record(s) to spool", self.name, type(exc).__name__, exc, len(rest))
            self.down = True
            return False, rest

    async def _to_spool(self, records: list[AccRecord]) -> None:
        if not records:
            return
        try:
            await asyncio.to_thread(self.spool.append, records, self.cfg.fsync)
            self.counters.spooled += len(records)
        except OSError:
            self.counters.lost += len(records)
            logger.exception("acc {}: {} record(s) lost: spool not writable", self.name, len(records))

    async def _replay(self) -> None:
        """Replay the backlog in order until it is empty, a write fails, or new records wait."""
        rounds = 0
        while self.spool.pending:
            batch, pos = await asyncio.to_thread(self.spool.read_batch, self.cfg.batch_max)
            if not batch:
                await asyncio.to_thread(self.spool.commit, pos, 0)
                break
            # Records of this batch a previous attempt got acknowledged (a partial RADIUS
            # failure) are not sent again: the cursor can only move past the whole batch.
            todo = [r for r in batch if r.record_id not in self._acked]
            ok, rest = await self._write(todo) if todo else (True, [])
            if not ok:
                left = {r.record_id for r in rest}
                self._acked |= {r.record_id for r in todo if r.record_id not in left}
                return
            await asyncio.to_thread(self.spool.commit, pos, len(batch))
            self._acked.clear()
            self.counters.replayed += len(batch)
            rounds += 1
            if self.closing or (self.queue and rounds >= 4):
                break  # let fresh records in (they are spooled behind the backlog anyway)
        if not self.spool.pending:
            logger.info("acc {}: spool drained, backend back to direct writes", self.name)
            self.overflowed = False

    async def close(self) -> None:
        """Flush: queue -> backend (or spool when it is down or has a backlog); close it."""
        self.closing = True
        self.wake.set()
        if self.task is not None:
            # Let the current round finish (its write is bounded by the backend timeout); only a
            # writer stuck beyond that is cancelled, and its in-flight batch is spooled.
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 2 * self._timeout + 1)
            except asyncio.TimeoutError:
                self.task.cancel()
                try:
                    await self.task
                except (asyncio.CancelledError, Exception):
                    pass
            except Exception:
                pass
            if self._inflight:
                await self._to_spool(self._inflight)
                self._inflight = []
        try:
            await self.step(final=True)
        except Exception:
            logger.exception("acc {}: final flush", self.name)
            await self._to_spool(self._take(len(self.queue)))
        await asyncio.to_thread(self.spool.close)
        try:
            await asyncio.wait_for(self.backend.close(), self._timeout)
        except (Exception, asyncio.TimeoutError):
            pass


def make_backends(cfg: AccConfig, subscribers: dict[str, list[Callable[..., Any]]]) -> dict[str, Backend]:
    """The four backends for this configuration (the db one picked by the URL scheme)."""
    from .backends.evi import EviBackend
    from .backends.log import LogBackend

    try:
        from .backends.radius import RadiusBackend

        aaa: Backend = RadiusBackend(cfg)
    except ImportError as exc:  # pyrad is an optional dependency (the [proxy] extra)
        aaa = _Unavailable("aaa", f"RADIUS accounting needs pyrad ({exc})")

    if cfg.db_is_postgres:
        from .backends.db_postgres import PostgresBackend

        db: Backend = PostgresBackend(cfg)
    else:
        from .backends.db_sqlite import SqliteBackend

        db = SqliteBackend(cfg)
    return {"log": LogBackend(cfg), "db": db, "aaa": aaa, "evi": EviBackend(cfg, subscribers)}


class _Unavailable(Backend):
    """A backend whose library is not installed: its records wait in the spool (never lost)
    until the proxy runs with the dependency."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    async def write(self, records: list[AccRecord]) -> None:
        raise BackendError(self.why)


class Accounting:
    """The accounting service the proxy talks to.  See the package docstring for the contract."""

    def __init__(
        self,
        config: AccConfig | None = None,
        *,
        backends: dict[str, Backend] | None = None,
        clock: Callable[[], float] = time.time,
        compact_from_memory: bool = False,
        batch_events: bool = True,
    ) -> None:
        """backends and clock are for tests (in-memory backends, a frozen clock for the
        lifetime timer); the proxy passes only the config. The accounting process sets the
        other two: compact_from_memory (see _compact_journal), and batch_events=False, since
        the frames it reads are batches already (see _defer)."""
        self.cfg = config or AccConfig()
        self._compact_from_memory = compact_from_memory
        self._batch_events = batch_events
        self._clock = clock
        self._extras = ExtraFields(self.cfg.extra)
        self._subscribers: dict[str, list[Callable[..., Any]]] = {}
        self._backends = backends
        self.tracker = DialogTracker(self.cfg.cdr_lifetime_s, max_pending=self.cfg.max_pending_calls)
        self.workers: dict[str, BackendWorker] = {}
        self.journal: DialogJournal | None = None
        self.journal_helper: JournalHelper | None = None
        # Proxy events waiting for their batch (see transaction_completed).
        self._events: list[tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]] = []
        self._drain_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self.dropped_before_start = 0

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open backends (a failing one just spools), replay spools, restore open dialogs."""
        if self._started:
            return
        spool_dir = Path(self.cfg.spool_dir)
        spool_dir.mkdir(parents=True, exist_ok=True)
        backends = self._backends if self._backends is not None else make_backends(self.cfg, self._subscribers)
        for name in BACKENDS:
            backend = backends[name]
            spool = await asyncio.to_thread(Spool, spool_dir, name, self.cfg.fsync)
            w = BackendWorker(name, backend, spool, self.cfg)
            self.workers[name] = w
        for name, w in self.workers.items():
            if w.spool.pending:
                logger.info("acc {}: {} spooled record(s) to replay", name, w.spool.pending)
            w.task = asyncio.create_task(w.run(), name=f"acc-{name}")
            w.wake.set()  # open the backend / replay the spool right away
        self.journal = DialogJournal(spool_dir / "dialogs.journal", self.cfg.fsync)
        self.journal_helper = JournalHelper(self.journal.path, nice=self.cfg.nice)
        dialogs = await asyncio.to_thread(self.journal.load)
        self.tracker.restore(dialogs)
        if dialogs:
            logger.info("acc: restored {} open CDR dialog(s) from the journal", len(dialogs))
        self._tasks.append(asyncio.create_task(self._journal_loop(), name="acc-journal"))
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="acc-timer"))
        self._loop = asyncio.get_running_loop()
        self._started = True

    async def close(self) -> None:
        """SIGTERM path: flush every queue to its backend or spool, write the journal, stop."""
        if not self._started or self._closed:
            return
        self.process_events()
        # Calls whose BYE is still unanswered have ended: their CDRs go out with this flush
        # instead of waiting in the journal for a restart.
        for d in self.tracker.end_byes(self._clock()):
            self._emit_cdr(d)
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await asyncio.gather(*(w.close() for w in self.workers.values()))
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)

    async def _journal_loop(self) -> None:
        assert self.journal is not None and self.journal_helper is not None
        journal, helper = self.journal, self.journal_helper
        try:
            # Not `while True`: close() cancels this task, and on Python 3.11 a wait_for whose
            # inner future finishes as the cancellation arrives swallows it (CPython gh-86296,
            # fixed in 3.12), here in the helper's readline. The loop then slept on forever and
            # close() waited for it: the flag ends it at the next round whatever happened.
            while not self._closed:
                await asyncio.sleep(self.cfg.flush_interval_ms / 1000)
                try:
                    if journal.dirty:
                        # Encoding and write() here (one frame, no GIL hand-over); the fsync in
                        # the helper process, which waits on the disk without our GIL.
                        journal.append(journal.take())
                        if journal.do_fsync and await self._ask_helper(helper, "sync") is None:
                            await asyncio.to_thread(journal.sync)
                    if journal.should_compact(len(self.tracker)):
                        await self._compact_journal(journal, helper)
                except OSError:
                    logger.exception("acc: dialog journal write failed")
        finally:
            await helper.close()

    async def _compact_journal(self, journal: DialogJournal, helper: JournalHelper) -> None:
        """Rewrite the journal as just the open dialogs. Two ways:
        - the helper replays the file (cost: every entry since the last compaction, about 3 us
          per call at the benchmark's three entries a call) and the event loop does nothing;
        - with compact_from_memory, a snapshot of the tracker's open dialogs (cost: the open
          dialogs, 300 of them at 3000 calls/s) written by a thread. The event loop stalls while
          the snapshot is taken, 0.6 us per open dialog: the accounting process, whose loop
          carries no call's latency, takes this way; the inline engine, on the proxy's loop,
          the other. A helper that cannot answer falls back to the snapshot too."""
        lines = journal.lines
        try:
            open_now = None if self._compact_from_memory else await self._ask_helper(helper, "compact")
            if open_now is None:  # from the tracker: a snapshot, written by a thread
                snapshot = [d.to_dict() for d in self.tracker.dialogs.values()]
                work = asyncio.ensure_future(asyncio.to_thread(journal.compact, snapshot))
                try:
                    await asyncio.shield(work)
                finally:
                    # A thread cannot be stopped. When close() cancels this task mid-compaction,
                    # the file is reopened below, and close() writes its last entries, only
                    # after the thread's rename: else they went to the replaced file (lost), and
                    # the thread's own reopen raced this one for the descriptor.
                    if not work.done():
                        await asyncio.wait([work])
                    lines = journal.lines
            else:
                lines = int(open_now)
        finally:
            # Whatever happened (done, failed, cancelled by close()), append to the file now at
            # the path: the compacted one if the rename took place, else the same one.
            journal.reopen(lines)

    async def _ask_helper(self, helper: JournalHelper, cmd: str) -> str | None:
        """The helper's answer, or None (logged) when it cannot give one: the caller then does
        the work in a thread."""
        try:
            return await helper.request(cmd)
        except HelperError as exc:
            logger.warning("acc: journal helper failed {!r} ({}); doing it in a thread", cmd, exc)
            return None

    async def _timer_loop(self) -> None:
        while not self._closed:  # as _journal_loop: a swallowed cancellation must not keep it alive
            await asyncio.sleep(min(1.0, self.cfg.cdr_lifetime_s / 4))
            self.expire(self._clock())

    def expire(self, now: float) -> int:
        """End dialogs whose lifetime ran out (the timer calls this every second)."""
        self.process_events()
        ended = self.tracker.expire(now)
        for d in ended:
            self._emit_cdr(d)
        return len(ended)

    # -- events from the proxy: queued, then processed in a batch ----------------------------
    # A call's accounting work, done a batch at a time, runs with its code and data warm in the
    # CPU caches instead of interleaved with the proxy's: 232 -> 205 us per call through the
    # sans-IO core with records dropped (batches of 64 calls), 216 us with batches of 12. Each
    # event carries its own timestamp, so times are what they were; order is kept; whatever
    # reads the state (stats, expire, branch_failed, the acc_*_request verbs, close) processes the
    # queue first. Before start() and after close() events are processed at once.
    def _defer(self, fn: Callable[..., None], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self._batch_events or self._loop is None or self._closed:
            fn(*args, **kwargs)
            return
        self._events.append((fn, args, kwargs))
        if self._drain_handle is None:
            self._drain_handle = self._loop.call_later(EVENT_BATCH_S, self.process_events)

    def process_events(self) -> None:
        """Process the queued events now, in order (the timer does it EVENT_BATCH_S after the
        first one; anything that reads the accounting state calls it first)."""
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        events, self._events = self._events, []
        for fn, args, kwargs in events:
            try:
                fn(*args, **kwargs)
            except Exception:  # one bad event must not cost the others their records
                logger.exception("accounting event {} failed", fn.__name__)

    @_queued
    def transaction_completed(
        self,
        mark: AccMark | None,
        request: Any,
        status: int,
        reason: str,
        to_tag: str | None,
        source_addr: tuple[str, int] | None,
        ts: float,
    ) -> None:
        """A server transaction sent its final response upstream (OpenSIPS acc_onreply)."""
        if status < 200:
            return
        fields = request_fields(request)
        method, from_tag, req_to_tag, callid = fields
        initial_invite = method == "INVITE" and not req_to_tag
        if method == "BYE" and callid and from_tag and req_to_tag:
            d = self.tracker.bye_completed(callid, from_tag, req_to_tag, ts)
            if d is not None:
                self._emit_cdr(d)
        if mark is None or not mark.active:
            if initial_invite and callid and from_tag:
                self.tracker.invite_completed(callid, from_tag, to_tag, status, reason, ts, False, (), None, {})
            return
        types = mark.types_tuple()
        extra = self._extras(request, source_addr)
        if status < 300:
            if initial_invite and mark.cdr and callid and from_tag and to_tag:
                d = self.tracker.invite_completed(callid, from_tag, to_tag, status, reason, ts, True, types, mark.table, extra)
                if d is not None and self.journal is not None:
                    self.journal.opened(d)
                # OpenSIPS `cdr`: the answered INVITE is accounted once, as the CDR at dialog end.
                # RADIUS is the exception: RFC 2866 accounts a session as a Start and a Stop with
                # the same Acct-Session-Id, so aaa gets the Start now and the CDR as the Stop.
                if d is not None and "aaa" in types:
                    self._emit(self._record(KIND_ACC, ("aaa",), mark.table, request, status, reason, to_tag, ts, extra, fields))
                return
            self._emit(self._record(KIND_ACC, types, mark.table, request, status, reason, to_tag, ts, extra, fields))
            return
        if initial_invite and callid and from_tag:
            self.tracker.invite_completed(callid, from_tag, to_tag, status, reason, ts, False, (), None, {})
        if method == "INVITE" and mark.missed:
            self._missed(mark, types, request, status, reason, to_tag, ts, extra, fields)
        if mark.failed:
            self._emit(self._record(KIND_ACC, types, mark.table, request, status, reason, to_tag, ts, extra, fields))

    def branch_failed(
        self,
        mark: AccMark | None,
        request: Any,
        status: int,
        reason: str,
        to_tag: str | None,
        source_addr: tuple[str, int] | None,
        ts: float,
    ) -> None:
        """Optional: a branch of a forwarded INVITE failed and the failure route is about to run.
        Writes the missed-call record for that destination now and clears the flag (the failure
        route may re-arm it with do_accounting for the next destination), as OpenSIPS does.
        Processed at once (after the queued events): the failure route changes the R-URI and
        the mark right after it."""
        self.process_events()
        if not missed_on_branch(mark, request, status):
            return
        self._missed(mark, mark.types_tuple(), request, status, reason, to_tag, ts, self._extras(request, source_addr))

    @_queued
    def observe_request(self, request: Any, source_addr: tuple[str, int] | None, ts: float) -> None:
        """Every request the proxy receives (INVITE arrival time, ACK/BYE/re-INVITE matching)."""
        method, from_tag, to_tag, callid = request_fields(request)
        if not (callid and from_tag):
            return
        if method == "INVITE" and not to_tag:
            self.tracker.invite_arrived(callid, from_tag, ts)
        elif to_tag and method is not None:
            d = self.tracker.in_dialog_request(method, callid, from_tag, to_tag, ts)
            if d is not None and self.journal is not None:
                if method == "BYE":
                    self.journal.bye(d, ts)
                else:
                    self.journal.touch(d, ts)

    @_queued
    def observe_response(self, response: Any, ts: float) -> None:
        """Every response forwarded upstream: the first 2xx to an initial INVITE is the answer."""
        status = getattr(response, "status", 0)
        if not (200 <= status < 300):
            return
        try:
            cseq = response.cseq
            if cseq is None or cseq.method != "INVITE":
                return
            callid = response.call_id
            from_tag = response.from_.tag if response.from_ is not None else None
        except ValueError:
            return
        if callid and from_tag:
            self.tracker.invite_answered(callid, from_tag, ts)

    def log_request(self, request: Any, comment: str, ts: float) -> None:
        """acc_log_request(comment): one record to the log backend now."""
        self.process_events()  # after the records of earlier events
        code, reason = split_comment(comment)
        self._emit(self._record(KIND_REQUEST, ("log",), None, request, code, reason, None, ts, self._extras(request, None)))

    def db_request(self, request: Any, comment: str, table: str | None, ts: float) -> None:
        """acc_db_request(comment, table): one record to the db backend now."""
        if table:
            from .records import check_identifier

            check_identifier(table, "acc_db_request table")
        self.process_events()  # after the records of earlier events
        code, reason = split_comment(comment)
        self._emit(self._record(KIND_REQUEST, ("db",), table or None, request, code, reason, None, ts, self._extras(request, None)))

    def subscribe(self, event_name: str, callback: Callable[[str, dict[str, Any]], Any]) -> None:
        """In-process evi subscriber: callback(event_name, params) for E_ACC_EVENT,
        E_ACC_MISSED_EVENT or E_ACC_CDR (records marked with the evi type)."""
        from .backends.evi import EVENTS

        if event_name not in EVENTS:
            raise ValueError(f"unknown acc event {event_name!r} (known: {', '.join(EVENTS)})")
        self._subscribers.setdefault(event_name, []).append(callback)

    def stats(self) -> dict[str, Any]:
        """{backend: {written, spooled, replayed, failed, lost, queued, spool_pending,
        spool_oldest_age_s}, 'dialogs': n} (the keys are listed in acc/__init__.py). queued counts
        the records in memory: waiting in the queue or in the batch being written."""
        self.process_events()
        out: dict[str, Any] = {}
        now = time.time()
        for name, w in self.workers.items():
            c: dict[str, Any] = dataclasses.asdict(w.counters)
            c["queued"] = len(w.queue) + len(w._inflight)
            c["spool_pending"] = w.spool.pending
            c["spool_oldest_age_s"] = round(w.spool.oldest_age(now), 3)
            out[name] = c
        out["dialogs"] = len(self.tracker)
        out["pending_calls"] = self.tracker.pending
        out["pending_evicted"] = self.tracker.pending_evicted
        return out

    # -- internals ------------------------------------------------------------------------
    def _record(
        self,
        kind: str,
        types: tuple[str, ...],
        table: str | None,
        request: Any,
        code: int | None,
        reason: str | None,
        to_tag: str | None,
        ts: float,
        extra: dict[str, Any],
        fields: tuple[str | None, str | None, str | None, str | None] | None = None,
    ) -> AccRecord:
        """One record of a request; ``fields`` is its request_fields() when the caller has them."""
        method, from_tag, req_to_tag, callid = fields if fields is not None else request_fields(request)
        record_id = ""
        if kind == KIND_ACC:
            # One transaction, one record: the id is derived from the transaction (Call-ID,
            # From tag, CSeq, method, status), so a transaction reported twice -- a retransmission
            # mishandled upstream, a replay -- is deduplicated by the backends like a replay.
            seq = _cseq_number(request)
            if callid and seq is not None:
                record_id = uuid5_hex(_ACC_NS, "\x1f".join((callid, from_tag or "", str(seq), method or "", str(code))))
        return AccRecord(
            kind=kind,
            types=types,
            table=table,
            method=method,
            from_tag=from_tag,
            to_tag=to_tag if to_tag else req_to_tag,
            callid=callid,
            sip_code=code,
            sip_reason=reason,
            time=ms(ts) or 0,
            extra=extra,
            record_id=record_id,
        )

    def _missed(self, mark: AccMark, types: tuple[str, ...], request: Any, status: int, reason: str, to_tag: str | None, ts: float, extra: dict[str, Any], fields: Any = None) -> None:
        self._emit(self._record(KIND_MISSED, types, mark.table, request, status, reason, to_tag, ts, extra, fields))
        mark.missed = False  # OpenSIPS: cleared after the first missed call; re-arm in failure_route

    def _emit_cdr(self, d: Dialog) -> None:
        assert d.ended is not None
        answered = ms(d.answered) or 0
        ms_duration = max(0, (ms(d.ended) or 0) - answered)
        created = ms(d.created) or 0
        r = AccRecord(
            kind=KIND_CDR,
            types=d.types,
            table=d.table,
            method="INVITE",
            from_tag=d.caller_tag,
            to_tag=d.callee_tag,
            callid=d.callid,
            sip_code=d.sip_code,
            sip_reason=d.sip_reason,
            time=answered,
            duration=ms_duration // 1000,
            ms_duration=ms_duration,
            setuptime=max(0, answered - created),
            created=created,
            end_reason=d.end_reason,
            extra=d.extra,  # the dialog is over: its extras are not touched again
            record_id=cdr_record_id(d),
        )
        if self.journal is not None:
            self.journal.closed(d)
        self._emit(r)

    def _emit(self, r: AccRecord) -> None:
        if not self._started or self._closed:
            # Before start()/after close() there is no writer: count it, say it loudly.
            self.dropped_before_start += 1
            logger.error("acc: record {} {} for {} while accounting is not running", r.kind, r.method, r.callid)
            return
        for t in r.types:
            self.workers[t].put(r)
