"""A helper process of the accounting: `python -m MODULE ARGS...`, talking over its stdin/stdout.

The SQLite writer, the journal helper and the accounting process run this way, so that their work (inserts,
commits, fsyncs) never needs this process's GIL. A child started here finds the same proxyapp
package as this process, exits when its stdin closes (this process's death included), and is
killed when it does not.
"""

from __future__ import annotations

import asyncio
import gc
import marshal
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import proxyapp

# Where the child finds the proxyapp package this process runs (an unusual sys.path included).
_PKG_ROOT = str(Path(proxyapp.__file__).resolve().parent.parent)

# The frames of the SQLite writer and the accounting process: a 4-byte big-endian length, then
# the message in marshal format (tuples, lists, dicts, str, bytes, numbers, None). marshal is
# about three times faster than pickle and never calls into classes while loading; the stream
# only ever comes from our own parent or child, which runs the same interpreter (marshal's format
# is tied to the Python version).
FRAME_LEN = struct.Struct(">I")


def encode_frame(obj: Any) -> bytes:
    payload = marshal.dumps(obj)
    return FRAME_LEN.pack(len(payload)) + payload


def decode_frame(payload: bytes) -> Any:
    return marshal.loads(payload)


def read_frame(f: BinaryIO) -> Any:
    """The next frame's object from a blocking stream; EOFError when it ends (cleanly or mid-frame)."""
    head = f.read(FRAME_LEN.size)
    if len(head) < FRAME_LEN.size:
        raise EOFError("stream closed")
    (size,) = FRAME_LEN.unpack(head)
    payload = f.read(size)
    if len(payload) < size:
        raise EOFError("stream closed mid-frame")
    return decode_frame(payload)


async def read_frame_async(stream: asyncio.StreamReader) -> Any:
    """The next frame's object from an asyncio stream; IncompleteReadError when it ends."""
    (size,) = FRAME_LEN.unpack(await stream.readexactly(FRAME_LEN.size))
    return decode_frame(await stream.readexactly(size))


# The cycle collector in a child: a generation-0 pass every GC_THRESHOLD0 allocations instead of
# CPython's 700. Every record, row and event tuple is an allocation; with the default the
# accounting process spent 9 of its 61 us per call in the collector (the events of 20,000
# benchmark calls replayed), and with this threshold no measurable time. The collector stays on:
# these processes hold no latency budget, and a reference cycle is still freed.
GC_THRESHOLD0 = 20_000


def tune_gc() -> None:
    """What a child calls once its imports are done: start-up objects frozen out of later
    passes, and generation-0 passes GC_THRESHOLD0 allocations apart."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])


# The signals that stop a service: systemd's KillMode=control-group sends SIGTERM to every process
# of the unit at once, and Ctrl-C sends SIGINT to the whole foreground process group. A child must
# not die of them while its parent is alive: its parent is stopping too, and closes the child's
# stdin once it has handed over its last work (which the child then finishes). A helper that got
# one exits anyway HELPER_STOP_WAIT_S later, in case its parent hangs: that is longer than the
# accounting process waits for the proxy (process.STOP_WAIT_S) plus its engine's close.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HELPER_STOP_WAIT_S = 120


def unblock_stop_signals() -> None:
    """Deliver the stop signals, should this process have inherited them blocked (a signal mask
    survives fork and exec): a child that could not be stopped would outlive its service."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def outlive_stop_signals(bound_s: int = HELPER_STOP_WAIT_S) -> None:
    """For the synchronous helpers (the SQLite writer, the journal helper): SIGTERM and SIGINT no
    longer kill this process; the first one arms SIGALRM (whose default action ends the process)
    bound_s seconds later. Until then the helper serves its parent, which closes its stdin when it
    is done. Their work is transactional (a COMMIT, a rename), so ending at any point is safe: the
    parent spools an unanswered batch, or does the journal work itself."""

    def on_stop(signum: int, frame: Any) -> None:
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0.0:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, float(bound_s))

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    unblock_stop_signals()


class ChildProcess:
    """One child at a time: started on demand, replaced after kill()."""

    def __init__(self, module: str, args: list[str], nice: int = 0) -> None:
        """nice: the child's niceness (AccConfig.nice), or this process's if that is higher."""
        self.module = module
        self.args = args
        self.nice = nice
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> asyncio.subprocess.Process:
        """The running child, started if there is none."""
        if self.proc is not None and self.proc.returncode is None:
            return self.proc
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH")) if p)
        # Not done: blocking SIGTERM/SIGINT here around the spawn, so that the child inherits
        # them blocked until it has its handlers. The mask is per thread and the spawn is awaited:
        # two spawns interleaving on the loop (or one whose coroutine is never resumed) left the
        # thread's mask blocked for good, and every process started afterwards inherited it
        # (proxyapp under pytest no longer stopped on SIGTERM). A stop signal that arrives while
        # a child's interpreter starts, before its handlers, still ends that child: the SQLite
        # writer's batch is then spooled, the journal helper's work done in a thread.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        if self.nice:
            # Set from here, before the child has started any of its own (they inherit it).
            try:
                target = max(os.getpriority(os.PRIO_PROCESS, 0), self.nice)
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, min(target, 19))
            except OSError:
                pass  # it exited already: whoever talks to it next finds out
        return self.proc

    async def kill(self) -> None:
        """SIGKILL the child and reap it (its stream is out of step, or it hangs)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except (asyncio.TimeoutError, Exception):
            pass

    async def close(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits after the work in hand); kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), timeout)
        except (asyncio.TimeoutError, Exception):
            self.proc = proc
            await self.kill()
