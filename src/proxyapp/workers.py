"""Several worker processes on one SIP port: the supervisor, and the Call-ID hand-off between workers.

Design
------
``workers = N`` (N > 1) forks N single-threaded workers, each a complete proxy (its own event
loop, transaction table, timers and accounting). Every worker binds the shared UDP listen
addresses with SO_REUSEPORT, so the kernel spreads datagrams over them by the 4-tuple hash. That
hash alone cannot keep a transaction on one worker: a caller's requests and the callee's responses
come from different addresses, and a CANCEL or BYE need not follow its INVITE's path.

So each call has one owner: ``crc32(Call-ID) % N``. A worker that receives a datagram it does not
own hands it, with its source address, to the owner over a private loopback UDP socket (one
``sendto``; the datagram is not parsed, the Call-ID is found with a byte search). The owner
processes it as if it had arrived directly and sends from its own socket bound to the shared
address, so peers only ever see the shared address. Hence:

* retransmissions, CANCEL and the ACK of a non-2xx reach the worker holding the INVITE's server
  transaction; responses reach the worker holding the client transaction (same Call-ID);
* every request and response of a dialog is handled by one worker, so dialog-level accounting
  (CDRs) sees the INVITE, its 2xx and the BYE together;
* Via sent-by and Record-Route stay the shared address (no per-worker port leaks into the
  dialog), and at most one extra loopback hop is paid per message.

The supervisor (the parent) creates the private sockets before forking, so every worker knows
every peer's address and a restarted worker gets its predecessor's socket back. It restarts a
worker that died, forwards SIGTERM / SIGINT (each worker stops gracefully) and SIGHUP (each
worker reloads), and exits when all workers are gone. TCP is not
shared between workers (a connection lives in one process), so N > 1 needs UDP-only listeners;
``workers = 1`` is the single-process mode with no hand-off at all.
"""

from __future__ import annotations

import mmap
import os
import re
import signal
import socket
import sys
import time
import zlib
from typing import Any, Callable

from loguru import logger

# The Call-ID header line; the fast path looks for the canonical spelling first.
_CALL_ID_RE = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def call_id_of(data: bytes) -> bytes | None:
    """The Call-ID value of a raw SIP message (bytes, stripped), or None when it has none."""
    i = data.find(b"\nCall-ID:")
    if i >= 0:
        i += 9
        j = data.find(b"\n", i)
        return data[i:j if j >= 0 else len(data)].strip()
    m = _CALL_ID_RE.search(data)
    return m.group(1).strip() if m is not None else None


def owner_of(data: bytes, workers: int) -> int:
    """The index of the worker that owns this message's call (-1: no Call-ID, handle it here)."""
    cid = call_id_of(data)
    if cid is None:
        return -1
    return zlib.crc32(cid) % workers


def pack(data: bytes, host: str, port: int, listen_index: int) -> bytes:
    """A datagram handed to another worker: "HOST PORT LISTEN\\n" then the message unchanged."""
    return b"%s %d %d\n" % (host.encode(), port, listen_index) + data


def unpack(packet: bytes) -> tuple[bytes, str, int, int]:
    """Inverse of pack(): (message, source host, source port, listen index). Raises ValueError."""
    nl = packet.index(b"\n")
    host, port, index = packet[:nl].split(b" ")
    return packet[nl + 1 :], host.decode(), int(port), int(index)


RUNNING = -1  # a worker's slot on the stop board while it is not stopping


def is_initial_invite(data: bytes) -> bool:
    """An INVITE without a To tag (it starts a dialog); parsed, so only for the rare paths."""
    if not data.startswith(b"INVITE "):
        return False
    import fastsip

    try:
        to = fastsip.parse(data).to
    except fastsip.ParseError:
        return False
    return to is not None and to.tag is None


class Dispatch:
    """What one worker knows about the others: its index, every worker's private address, and
    the stop board: a shared page where each worker writes how many transactions it still
    waits for while stopping (RUNNING otherwise). A stopping worker stays until every stopping
    worker reached 0: it owns calls whose messages the others still hand it."""

    def __init__(self, index: int, addrs: list[tuple[str, int]], sock: socket.socket, board: mmap.mmap | None = None) -> None:
        self.index = index
        self.workers = len(addrs)
        self.addrs = addrs
        self.sock = sock  # this worker's private socket (the transport takes it over)
        self.handed_off = 0  # messages passed to their owner
        self.taken_over = 0  # messages received from another worker
        self.board = board

    def post_pending(self, n: int) -> None:
        """This worker is stopping with ``n`` transactions still waiting for a final response."""
        if self.board is not None:
            self.board[8 * self.index : 8 * self.index + 8] = n.to_bytes(8, "little", signed=True)

    def others_pending(self) -> int:
        """The transactions the other stopping workers still wait for (running ones count 0)."""
        if self.board is None:
            return 0
        total = 0
        for i in range(self.workers):
            if i != self.index:
                v = int.from_bytes(self.board[8 * i : 8 * i + 8], "little", signed=True)
                total += max(v, 0)
        return total


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to the shared address with SO_REUSEPORT (one per worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def supervise(workers: int, run_worker: Callable[[Dispatch], int]) -> int:
    """Fork ``workers`` processes running ``run_worker(dispatch)``; restart the ones that die.

    Returns the exit status for the parent: 0 after SIGTERM / SIGINT, 1 when a worker keeps
    dying at start (a configuration or bind error: restarting it would only spin)."""
    private = []
    for _ in range(workers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        private.append(s)
    addrs = [s.getsockname() for s in private]
    board = mmap.mmap(-1, 8 * workers)  # shared with the workers across fork (MAP_SHARED)
    for i in range(workers):
        board[8 * i : 8 * i + 8] = RUNNING.to_bytes(8, "little", signed=True)
    children: dict[int, tuple[int, float]] = {}  # pid -> (index, start time)
    stopping = False
    status = 0

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                for i, s in enumerate(private):
                    if i != index:
                        s.close()
                board[8 * index : 8 * index + 8] = RUNNING.to_bytes(8, "little", signed=True)
                code = run_worker(Dispatch(index, addrs, private[index], board))
            except BaseException:
                logger.exception("worker {} failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def hangup(signum: int, frame: Any) -> None:
        # A reload (SIGHUP, systemd's ExecReload): every worker reloads its script and config.
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hangup)
    for i in range(workers):
        spawn(i)
    logger.info("supervisor {}: {} workers started", os.getpid(), workers)
    while children:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        entry = children.pop(pid, None)
        if entry is None:
            continue
        index, started = entry
        if stopping:
            continue
        code = os.waitstatus_to_exitcode(wstatus)
        if time.monotonic() - started < 2.0:
            logger.error("worker {} exited with {} right after start; stopping", index, code)
            status = 1
            stop(signal.SIGTERM, None)
            continue
        logger.warning("worker {} (pid {}) exited with {}; restarting it", index, pid, code)
        spawn(index)
    for s in private:
        s.close()
    return status
