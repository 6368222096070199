"""The journal helper process: the dialog journal's blocking file work, off the proxy's threads.

Why a process and not asyncio.to_thread: a thread that comes back from a 10-300 ms fsync needs the
GIL, and while it waits for it every GIL release of the busy event loop (each recvfrom, each
sendto) wakes it on the other core, only for it to find the GIL taken again. Measured with the
benchmark's accounting at 2500 calls/s: 3600 such wake-ups a second, 14 us of the fsync thread's
CPU per call and a forced GIL hand-over every flush. A process fsyncs without touching the
proxy's GIL.

The proxy appends the journal's frames itself (a write() to the page cache, on the event loop)
and asks the helper (journal.JournalHelper), one line per request on its stdin, for what blocks:

  sync      fsync the journal file            -> "ok"
  compact   rewrite it as just its open dialogs (DialogJournal.load: replay, temp file, fsync,
            rename, fsync the directory)       -> "ok N" (N dialogs still open)

Any failure answers "error TEXT". The proxy appends nothing while a request is in flight, so
the helper sees the whole file, and replaying it is the same state a restart would restore.
Both requests are idempotent: a helper that dies is replaced and the request asked again. It
exits when its stdin closes, the proxy's death included; SIGTERM and SIGINT, which a stop sends
to the whole service at once, do not stop it (child.outlive_stop_signals).

    python -m proxyapp.acc.journal_helper JOURNAL_PATH
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file through a fresh descriptor (Linux flushes the file's dirty pages whichever
    descriptor asks)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def serve(path: str, inp: BinaryIO, out: BinaryIO) -> int:
    from .journal import DialogJournal

    for line in inp:
        cmd = line.strip()
        try:
            if cmd == b"sync":
                fsync_path(path)
                answer = "ok"
            elif cmd == b"compact":
                journal = DialogJournal(path, fsync=True)
                n = len(journal.load())
                journal.close_file()
                answer = f"ok {n}"
            else:
                answer = f"error unknown request {cmd[:40]!r}"
        except Exception as exc:
            answer = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
        out.write(answer.encode() + b"\n")
        out.flush()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from .child import outlive_stop_signals

    outlive_stop_signals()  # SIGTERM/SIGINT to the whole service: the engine closes our stdin
    return serve(argv[0], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
