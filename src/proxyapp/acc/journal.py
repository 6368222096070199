"""Open-dialog journal: CDR dialogs survive a proxy restart.

The file is a sequence of frames, one per flush: a 4-byte big-endian length, the CRC-32 of the
payload (4 bytes), and the payload, a pickled list of entries (plain tuples, dicts, strings and
numbers only; the loader refuses any class):

  ("o", callid, caller_tag, callee_tag, created, answered, sip_code, sip_reason, types, table,
        extra, last_activity, bye_ts)          a dialog opened (what the event path writes)
  ("open", dialog dict)                        the same, as compaction writes it
  ("bye", key, ts)   ("touch", key, ts)   ("close", key)

where key is the dialog's (callid, tag, tag) tuple.  The event path only appends tuples to a list;
the engine's journal task writes the pending entries as one frame every flush interval with one
write() on the event loop; the fsync and the compaction run in a helper process
(proxyapp.acc.journal_helper says why not in a thread).  On start the file is replayed into
the open dialogs and rewritten compacted (temp file + rename).  After SIGKILL the worst case is
the last unflushed batch (one flush interval); a dialog opened in that window has no CDR, and a
torn last frame is ignored.  While running, the file is compacted again once it holds far more
entries than open dialogs (every call adds an open and a close), so it stays proportional to the
open calls.

Earlier versions wrote JSON lines ({"op": "open", "d": {...}}, ...); such a file is still read,
so open dialogs survive an upgrade, and the first compaction rewrites it in frames.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

from loguru import logger

from .child import ChildProcess
from .dialog import Dialog

_HEAD = struct.Struct(">II")  # payload length, CRC-32 of the payload

Entry = tuple[Any, ...]


class _PlainUnpickler(pickle.Unpickler):
    """Only built-in containers and scalars: a journal frame never names a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"journal frames hold no objects ({module}.{name})")


def encode_frame(entries: list[Entry]) -> bytes:
    payload = pickle.dumps(entries, protocol=4)
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def read_entries(path: str | os.PathLike[str]) -> list[Entry]:
    """Every entry of a journal file, in order; stops at a torn or corrupt frame (logged)."""
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    if data[:1] == b"{":
        return _read_json_lines(p, data)
    out: list[Entry] = []
    pos = 0
    while pos + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, pos)
        payload = data[pos + _HEAD.size : pos + _HEAD.size + size]
        if len(payload) < size:
            break  # torn last frame after a crash
        try:
            if zlib.crc32(payload) != crc:
                raise ValueError("CRC mismatch")
            out.extend(_PlainUnpickler(io.BytesIO(payload)).load())
        except Exception as exc:
            logger.error("acc journal {}: bad frame at byte {}: {}", p, pos, exc)
            break
        pos += _HEAD.size + size
    return out


def _read_json_lines(p: Path, data: bytes) -> list[Entry]:
    """The JSON-lines journal of earlier versions, as entries."""
    out: list[Entry] = []
    for n, line in enumerate(data.splitlines(keepends=True), 1):
        if not line.endswith(b"\n"):
            break  # torn last line after a crash
        try:
            e = json.loads(line)
            op = e["op"]
            if op == "open":
                out.append(("open", e["d"]))
            elif op == "close":
                out.append(("close", tuple(e["k"].split("\x1f"))))
            elif op in ("bye", "touch"):
                out.append((op, tuple(e["k"].split("\x1f")), e["ts"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("acc journal {}: bad line {}: {}", p, n, exc)
    return out


class DialogJournal:
    """The journal file of open CDR dialogs."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.do_fsync = fsync
        self._buf: list[Entry] = []
        self._fd: int | None = None
        self.lines = 0  # entries in the file (for compaction)

    def load(self) -> list[Dialog]:
        """Replay the journal into the dialogs still open, then compact the file to just them."""
        open_: dict[tuple[str, ...], Dialog] = {}
        for e in read_entries(self.path):
            try:
                op = e[0]
                if op == "o":
                    # The 11 positional fields, then bye_ts (the tuple opened() writes).
                    d = Dialog(e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11], bye_ts=e[12])
                    d.types = tuple(d.types)
                    open_[d.key] = d
                elif op == "open":
                    d = Dialog.from_dict(e[1])
                    open_[d.key] = d
                elif op == "close":
                    open_.pop(tuple(e[1]), None)
                elif op == "bye" and tuple(e[1]) in open_:
                    d = open_[tuple(e[1])]
                    d.bye_ts = d.bye_ts if d.bye_ts is not None else e[2]
                elif op == "touch" and tuple(e[1]) in open_:
                    d = open_[tuple(e[1])]
                    d.last_activity = max(d.last_activity, e[2])
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                logger.error("acc journal {}: bad entry {!r}: {}", self.path, e, exc)
        dialogs = list(open_.values())
        self.compact([d.to_dict() for d in dialogs])
        return dialogs

    def should_compact(self, open_dialogs: int) -> bool:
        return self.lines > 10000 and self.lines > 4 * open_dialogs

    def compact(self, snapshot: list[dict[str, Any]]) -> None:
        """Replace the file by one "open" entry per dialog of the snapshot (temp file + rename,
        so a crash leaves either the old or the new file).  Entries buffered after the snapshot
        are written to the new file later; replaying them again is harmless (idempotent ops)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            if snapshot:
                f.write(encode_frame([("open", d) for d in snapshot]))
            f.flush()
            if self.do_fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self.do_fsync:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.reopen(len(snapshot))

    # The event path appends a tuple per event; nothing is encoded there.
    def opened(self, d: Dialog) -> None:
        # A flat tuple, not to_dict(): half the pickling work, and the extras dict is shared
        # (a dialog's extras are never changed after it opens).
        self._buf.append(("o", d.callid, d.caller_tag, d.callee_tag, d.created, d.answered, d.sip_code,
                          d.sip_reason, d.types, d.table, d.extra, d.last_activity, d.bye_ts))

    def bye(self, d: Dialog, ts: float) -> None:
        self._buf.append(("bye", d.key, ts))

    def touch(self, d: Dialog, ts: float) -> None:
        self._buf.append(("touch", d.key, ts))

    def closed(self, d: Dialog) -> None:
        self._buf.append(("close", d.key))

    @property
    def dirty(self) -> bool:
        return bool(self._buf)

    def take(self) -> list[Entry]:
        buf, self._buf = self._buf, []
        return buf

    def append(self, entries: list[Entry]) -> None:
        """Write a batch as one frame (one write(); the page cache, no wait on the disk)."""
        if not entries or self._fd is None:
            return
        data = encode_frame(entries)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.lines += len(entries)

    def sync(self) -> None:
        """fsync what append() wrote (blocking: the engine asks the helper process, and calls
        this in a thread only when the helper fails)."""
        if self.do_fsync and self._fd is not None:
            os.fsync(self._fd)

    def write(self, entries: list[Entry]) -> None:
        """append() then sync()."""
        self.append(entries)
        self.sync()

    def reopen(self, lines: int) -> None:
        """Append to the file now at the path, which holds ``lines`` entries (after a compaction,
        here or in proxyapp.acc.journal_helper)."""
        self.close_file()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines = lines

    def close_file(self) -> None:
        """Close the file without writing what is buffered."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            self.write(self.take())
            self.close_file()


class HelperError(Exception):
    """The helper failed a request or could not be reached (the caller falls back)."""


class JournalHelper:
    """The proxy's side: one helper process, started on first use, replaced when it fails."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0, nice: int = 0) -> None:
        self.child = ChildProcess("proxyapp.acc.journal_helper", [str(path)], nice=nice)  # its protocol is there
        self.timeout = timeout
        self.requests = 0  # answered requests (tests and stats)

    async def request(self, cmd: str) -> str:
        """Ask once; on a dead or failing helper, a fresh one is asked once more. Returns what
        follows "ok" in the answer; raises HelperError."""
        last = ""
        for _ in range(2):
            try:
                proc = await self.child.start()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(cmd.encode() + b"\n")
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except (OSError, asyncio.TimeoutError, AssertionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                await self.child.kill()
                continue
            except asyncio.CancelledError:
                await self.child.kill()  # the stream is out of step with the requests now
                raise
            answer = line.decode(errors="replace").strip()
            if not answer:  # EOF: the helper died
                last = "helper exited"
                await self.child.kill()
                continue
            if answer == "ok" or answer.startswith("ok "):
                self.requests += 1
                return answer[3:]
            raise HelperError(answer)
        raise HelperError(last)

    async def close(self) -> None:
        await self.child.close()
