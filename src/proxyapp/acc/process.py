"""The accounting engine in its own process (``[acc] engine = "process"``).

Why: with SQLite CDRs the engine's Python work (dialog tracking, records, journal, rows) ran on
the proxy's event loop, 75-80 us per call next to 160 us of proxying, so accounting cost a
third of the call rate. Here the proxy only keeps what the events need (the request's bytes,
which the parser already holds, and a few numbers) and ships them every EVENT_BATCH_S (5 ms)
as one frame; the child runs the unchanged engine (engine.Accounting, its backends, spools and
dialog journal) on the other core. The engine's records, ids and files are the same as with
``engine = "inline"``; tests/acc/test_process.py checks the rows are identical.

Protocol, one frame per message (child.encode_frame: 4-byte length, marshal payload):

  proxy -> child   [event, ...]   a batch, in order; each event a tuple:
        ("q", request_bytes, source_addr, ts)               observe_request
        ("s", response_bytes, ts)                           observe_response (2xx to INVITE only)
        ("c", mark, request_bytes, status, reason, to_tag, source_addr, ts)   transaction_completed
        ("b", mark, request_bytes, status, reason, to_tag, source_addr, ts)   branch_failed
        ("l", request_bytes, comment, ts)                   log_request
        ("d", request_bytes, comment, table, ts)            db_request
     mark: None or (types, cdr, missed, failed, table)
  child -> proxy   ("ready", {...}) once the engine started (spools replayed, journal restored),
                   with its first statistics, so they are there from the proxy's start;
                   ("stats", {...}) every second and ("closed", {...}) after its close().

Durability: events reach the child within 5 ms. When the proxy dies, even by SIGKILL, the child
reads the rest of the pipe, gets EOF, and runs the engine's close(): every record the proxy had
handed over is written or spooled, more than the inline engine promises (there the last 5 ms of
events die with the process). A new child waits on an exclusive lock of the spool directory
(acc.lock), so it loads the journal and spools only after the previous one finished with them.
If the child itself dies, the events of the batches it had not processed yet are lost (logged);
the proxy starts another, which replays the spools and the journal like any restart.

Stopping: SIGTERM and SIGINT often reach the proxy and this child at once (systemd's
KillMode=control-group signals every process of the unit; Ctrl-C signals the terminal's whole
foreground process group). The child does not die of them while the proxy is alive: it keeps
reading the pipe until the proxy closes it (AccountingProcess.close: the last batch, then EOF),
then runs the engine's close() and answers "closed". If the proxy has not closed the pipe
STOP_WAIT_S (30 s) after the first signal, the child stops reading and closes its engine
itself, so whatever it was handed is written or spooled before a SIGKILL can come. Its own
helpers (the SQLite writer, the journal helper) outlive the signals the same way
(child.outlive_stop_signals) and exit when this child closes their stdin.

In-process evi subscribers (Accounting.subscribe) need the inline engine; evi UDP works in both.

    python -m proxyapp.acc.process CONFIG_JSON [LOG_LEVEL [LOG_FORMAT [STOP_WAIT_S]]]
        (started by AccountingProcess.start)
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from loguru import logger

from .child import STOP_SIGNALS, ChildProcess, encode_frame, read_frame_async, tune_gc, unblock_stop_signals
from .config import AccConfig
from .engine import EVENT_BATCH_S, missed_on_branch
from .marks import AccMark
from .records import check_identifier

STATS_INTERVAL_S = 1.0
START_TIMEOUT_S = 120.0  # the child replays spools and the journal before it answers "ready"
# After SIGTERM/SIGINT, how long the child waits for the proxy to close the pipe before it closes
# its engine on its own (the proxy drains for its stop_timeout, 10 s by default, then closes).
STOP_WAIT_S = 30.0

_Mark = tuple[tuple[str, ...], bool, bool, bool, "str | None"] | None


def _mark_tuple(mark: AccMark | None) -> _Mark:
    if mark is None:
        return None
    return (tuple(mark.types), mark.cdr, mark.missed, mark.failed, mark.table)


def _mark(t: _Mark) -> AccMark | None:
    return None if t is None else AccMark(set(t[0]), t[1], t[2], t[3], t[4])


# ----------------------------------------------------------------------------- proxy side
class AccountingProcess:
    """What the proxy calls (the contract of acc/__init__.py), with the engine in a child."""

    def __init__(self, config: AccConfig, log_level: str = "INFO", log_format: str = "text",
                 stop_wait_s: float = STOP_WAIT_S) -> None:
        """log_level, log_format: the proxy's, for what the child logs (on the stderr they share).
        stop_wait_s: how long the child waits for close() after a SIGTERM/SIGINT (STOP_WAIT_S)."""
        self.cfg = config
        self._child = ChildProcess(
            "proxyapp.acc.process",
            [json.dumps(dataclasses.asdict(config)), log_level.upper(), log_format, repr(float(stop_wait_s))],
            nice=config.nice,
        )
        self.stop_wait_s = stop_wait_s
        self._events: list[tuple[Any, ...]] = []
        self._drain_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = False
        self._closing = False
        self._pipe_closed = False  # close() closed the child's stdin: no event can go any more
        self._stats: dict[str, Any] = {}
        self._stats_at = 0.0  # time.monotonic() of the child's last report
        self.closed_report: dict[str, Any] | None = None  # the child's ("closed", stats)
        self.restarts = 0  # children that died and were replaced
        self.dropped_before_start = 0

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        proc = await self._child.start()
        assert proc.stdout is not None
        try:
            msg = await asyncio.wait_for(self._read(proc.stdout), START_TIMEOUT_S)
        except asyncio.TimeoutError:  # still waiting for the spool lock, or stuck starting its engine
            msg = f"no answer in {START_TIMEOUT_S:.0f} s"
        if msg is None or msg[0] != "ready":
            await self._child.kill()
            raise RuntimeError(f"accounting process did not start ({msg or 'it exited'!r})")
        self._ready = True
        self._stats, self._stats_at = msg[1], time.monotonic()
        self._reader = asyncio.create_task(self._read_loop(proc), name="acc-process-reader")
        self.process_events()  # what was buffered while it started

    @staticmethod
    async def _read(stream: asyncio.StreamReader) -> Any:
        try:
            return await read_frame_async(stream)
        except asyncio.IncompleteReadError:
            return None

    async def _read_loop(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            msg = await self._read(proc.stdout)
            if msg is None:
                break
            if msg[0] in ("stats", "closed"):
                self._stats = msg[1]
                self._stats_at = time.monotonic()
                if msg[0] == "closed":
                    self.closed_report = msg[1]
        if self._closing and self._pipe_closed:
            return
        # The child exited under us (it died, or it closed its engine on its own STOP_WAIT_S
        # after a SIGTERM while this process went on): the batches it had not processed are
        # gone; a new one replays spools and journal like a restart. Also when close() has begun
        # meanwhile: close() waits for it, since the events buffered since need a child.
        self._ready = False
        self.restarts += 1
        if self.closed_report is not None:
            logger.warning("acc: the accounting process closed its engine while the proxy runs; starting another")
            self.closed_report = None
        else:
            logger.error("acc: the accounting process exited ({}); starting another", proc.returncode)
        await self._child.kill()
        while True:
            try:
                await self._spawn()
                return
            except Exception:
                if self._closing:
                    logger.exception("acc: the accounting process did not start while stopping")
                    return
                logger.exception("acc: the accounting process did not start; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Hand over the last events, let the child flush (its engine's close), and wait for its
        "closed" report and its exit. Events keep being accepted until the pipe is closed."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        reader = self._reader
        if not self._ready and reader is not None and not reader.done():
            # A replacement child is starting: the buffered events (a BYE among them, maybe)
            # need it, so it is waited for (bounded by its own start timeout).
            await asyncio.wait({reader}, timeout=START_TIMEOUT_S + 10)
        proc = self._child.proc
        if proc is not None and proc.stdin is not None and self._ready:
            self.process_events()
            try:
                await proc.stdin.drain()
            except (ConnectionError, OSError):
                pass
            # What arrived during the drain, in the same step as closing the pipe below: nothing
            # can slip in between.
            self.process_events()
        if self._events:  # no child (it could not start, or died during the drain)
            logger.error("acc: {} event(s) lost: no accounting process to hand them to", len(self._events))
            self._events.clear()
        self._pipe_closed = True
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        # Closes the pipe now, then waits for the exit. The child's engine close is bounded by its
        # backend timeouts (writers, then the final flush to the backend or the spool).
        await self._child.close(3 * self.cfg.backend_timeout_ms / 1000 + 30)
        reader = self._reader
        if reader is not None:
            # The child's last frames ("closed") are read before its stdout's EOF.
            done, _ = await asyncio.wait({reader}, timeout=5)
            if not done:
                reader.cancel()
                try:
                    await reader
                except (asyncio.CancelledError, Exception):
                    pass
        if proc is not None and self.closed_report is None:
            logger.error("acc: the accounting process exited without its \"closed\" report: the records it had in "
                         "memory may be lost (the spools and the dialog journal hold the rest)")

    # -- events: buffered, shipped as one frame per batch -------------------------------------
    def _add(self, event: tuple[Any, ...]) -> None:
        if self._loop is None or self._pipe_closed:
            self.dropped_before_start += 1
            logger.error("acc: {} event while the accounting process is not running", event[0])
            return
        self._events.append(event)
        if self._drain_handle is None:
            self._drain_handle = self._loop.call_later(EVENT_BATCH_S, self.process_events)

    def process_events(self) -> None:
        """Send the buffered events now (the timer does it EVENT_BATCH_S after the first)."""
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        proc = self._child.proc
        if not self._events or not self._ready or proc is None or proc.stdin is None:
            return  # kept until the child is ready
        events, self._events = self._events, []
        proc.stdin.write(encode_frame(events))

    def observe_request(self, request: Any, source_addr: tuple[str, int] | None, ts: float) -> None:
        self._add(("q", request.to_bytes(), source_addr, ts))

    def observe_response(self, response: Any, ts: float) -> None:
        # Only a 2xx to an INVITE matters to the engine (it answers a dialog).
        status = getattr(response, "status", 0)
        if 200 <= status < 300:
            try:
                cseq = response.cseq
            except ValueError:
                return
            if cseq is not None and cseq.method == "INVITE":
                self._add(("s", response.to_bytes(), ts))

    def transaction_completed(self, mark: AccMark | None, request: Any, status: int, reason: str, to_tag: str | None,
                              source_addr: tuple[str, int] | None, ts: float) -> None:
        if status >= 200:
            self._add(("c", _mark_tuple(mark), request.to_bytes(), status, reason, to_tag, source_addr, ts))

    def branch_failed(self, mark: AccMark | None, request: Any, status: int, reason: str, to_tag: str | None,
                      source_addr: tuple[str, int] | None, ts: float) -> None:
        if missed_on_branch(mark, request, status):
            self._add(("b", _mark_tuple(mark), request.to_bytes(), status, reason, to_tag, source_addr, ts))
            mark.missed = False  # as the engine does: the failure route may re-arm it

    def log_request(self, request: Any, comment: str, ts: float) -> None:
        self._add(("l", request.to_bytes(), comment, ts))

    def db_request(self, request: Any, comment: str, table: str | None, ts: float) -> None:
        if table:
            check_identifier(table, "acc_db_request table")  # the script's error, raised here
        self._add(("d", request.to_bytes(), comment, table or None, ts))

    def subscribe(self, event_name: str, callback: Any) -> None:
        raise RuntimeError('in-process evi subscribers need [acc] engine = "inline" (evi_udp works with both)')

    def stats(self) -> dict[str, Any]:
        """The child's last report (at most a second old), plus this side's counters. A backend's
        spool_oldest_age_s is aged by the time since that report."""
        out = dict(self._stats)
        since = time.monotonic() - self._stats_at
        for name, value in out.items():
            if isinstance(value, dict) and value.get("spool_oldest_age_s"):
                out[name] = dict(value, spool_oldest_age_s=round(value["spool_oldest_age_s"] + since, 3))
        proc = self._child.proc
        pending = 0
        if proc is not None and proc.stdin is not None and proc.stdin.transport is not None:
            pending = proc.stdin.transport.get_write_buffer_size()
        out["process"] = {"restarts": self.restarts, "events_buffered": len(self._events), "bytes_in_pipe_buffer": pending}
        return out


# ----------------------------------------------------------------------------- child side
def _lock_spool(spool_dir: str) -> int:
    """Wait for the previous engine on this spool directory to finish, then hold it."""
    Path(spool_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(os.path.join(spool_dir, "acc.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _dispatch(acc: Any, ev: tuple[Any, ...], parse: Any) -> None:
    """One event of a frame to the engine (an Accounting with batch_events=False: the frame is
    the batch, in order)."""
    kind = ev[0]
    if kind == "q":
        acc.observe_request(parse(ev[1]), ev[2], ev[3])
    elif kind == "s":
        acc.observe_response(parse(ev[1]), ev[2])
    elif kind == "c":
        acc.transaction_completed(_mark(ev[1]), parse(ev[2]), ev[3], ev[4], ev[5], ev[6], ev[7])
    elif kind == "b":
        acc.branch_failed(_mark(ev[1]), parse(ev[2]), ev[3], ev[4], ev[5], ev[6], ev[7])
    elif kind == "l":
        acc.log_request(parse(ev[1]), ev[2], ev[3])
    elif kind == "d":
        acc.db_request(parse(ev[1]), ev[2], ev[3], ev[4])
    else:
        raise ValueError(f"unknown accounting event {kind!r}")


# The first SIGTERM/SIGINT the child got before its event loop ran (while it waited for the spool
# lock or started its engine): (signal, time.monotonic()).
_early_signal: tuple[int, float] | None = None


def _note_early_signal(signum: int, frame: Any) -> None:
    global _early_signal
    if _early_signal is None:
        _early_signal = (signum, time.monotonic())


async def _consume(acc: Any, reader: asyncio.StreamReader) -> None:
    """Every frame of the pipe to the engine, until EOF."""
    import fastsip

    while True:
        try:
            events = await read_frame_async(reader)
        except asyncio.IncompleteReadError:
            return  # the proxy closed the pipe or died: flush and go
        for ev in events:
            try:
                _dispatch(acc, ev, fastsip.parse)
            except Exception:  # one bad event must not cost the others their records
                logger.exception("acc process: event {!r:.60} failed", ev[:1])


async def serve(cfg: AccConfig, inp: BinaryIO, out: BinaryIO, stop_wait_s: float = STOP_WAIT_S) -> int:
    from .engine import Accounting

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), inp)

    def send(msg: Any) -> None:
        out.write(encode_frame(msg))
        out.flush()

    # SIGTERM/SIGINT: keep serving the proxy, which closes the pipe when it has handed over its
    # last events; only if it does not within stop_wait_s, stop reading and close the engine.
    bound: asyncio.TimerHandle | None = None
    consumer: asyncio.Task[None] | None = None
    gave_up = False

    def on_stop_signal(signum: int, at: float | None = None) -> None:
        nonlocal bound
        if bound is not None:
            return
        wait = max(0.0, stop_wait_s - (time.monotonic() - at if at is not None else 0.0))
        logger.info("acc process: {} received: serving the proxy until it closes the pipe (at most {:.0f} s more)",
                    signal.Signals(signum).name, wait)

        def give_up() -> None:
            nonlocal gave_up
            if consumer is None or not consumer.done():
                logger.warning("acc process: the proxy did not close the pipe {:.0f} s after {}: closing the engine",
                               stop_wait_s, signal.Signals(signum).name)
                gave_up = True
                if consumer is not None:
                    consumer.cancel()

        bound = loop.call_later(wait, give_up)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop_signal, sig)

    # This loop carries no call's latency (compaction from memory), and a frame is a batch.
    acc = Accounting(cfg, compact_from_memory=True, batch_events=False)
    await acc.start()
    send(("ready", acc.stats()))
    if _early_signal is not None:
        on_stop_signal(*_early_signal)

    async def report() -> None:  # every second, busy or idle
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            try:
                send(("stats", acc.stats()))
            except (BrokenPipeError, OSError):
                return  # the proxy is gone; the loop below sees EOF

    reporter = asyncio.create_task(report())
    try:
        if not gave_up:  # (the bound ran out while the engine started)
            consumer = asyncio.create_task(_consume(acc, reader))
            # Waited for, not awaited: its cancellation by give_up() must not cancel this coroutine.
            await asyncio.wait({consumer})
    finally:
        if bound is not None:
            bound.cancel()
        reporter.cancel()
        await acc.close()
        try:
            send(("closed", acc.stats()))
        except (BrokenPipeError, OSError):
            pass
    return 0


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 4:
        print(__doc__, file=sys.stderr)
        return 2
    # First: a SIGTERM/SIGINT from now on is noted, not fatal (serve() then acts on it).
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note_early_signal)
    unblock_stop_signals()
    cfg = AccConfig(**json.loads(argv[0]))
    level = argv[1] if len(argv) > 1 else "INFO"
    fmt = argv[2] if len(argv) > 2 else "text"
    stop_wait_s = float(argv[3]) if len(argv) > 3 else STOP_WAIT_S
    # The proxy's log level and format, on the stderr we share with it (ACC lines included when
    # the log backend has no file of its own).
    from ..logs import setup_logging

    setup_logging(level, fmt)
    tune_gc()
    lock = _lock_spool(cfg.spool_dir)
    try:
        return asyncio.run(serve(cfg, sys.stdin.buffer, sys.stdout.buffer, stop_wait_s))
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
