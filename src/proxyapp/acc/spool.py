"""Durable per-backend spool: append-only JSON-lines segments plus a committed read cursor.

When a backend is down or slow its records are appended here (fsynced per batch) and replayed in
order when it returns.  The cursor advances only after the backend acknowledged a replayed batch,
so a crash between "written" and "cursor saved" replays that batch again: backends deduplicate by
record_id (an id a table holds is not inserted again), which makes replay exactly-once for the db backend.

Layout of <dir>/<backend>/:  seg-00000001.jsonl ...  and  cursor  ("<segment> <byte offset>").
A segment is deleted once the cursor has moved past it.  All methods are synchronous and
thread-safe (the engine calls them from a worker thread so fsync never blocks the event loop).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

from loguru import logger

from .records import AccRecord

Position = tuple[int, int]  # (segment number, byte offset)
# Spool.oldest_age's resolution: appends this close together share one spooling time.
SPOOL_AGE_RESOLUTION_S = 1.0


def _fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is (POSIX).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool of one backend."""

    def __init__(self, directory: str | os.PathLike[str], name: str, fsync: bool = True) -> None:
        self.dir = Path(directory) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.do_fsync = fsync
        self._lock = threading.RLock()
        self._fh: BinaryIO | None = None  # append handle of the last segment
        self._dirty = False
        self.corrupt = 0  # unparsable lines skipped (counted as failed by the engine)
        self.cursor = self._load_cursor()
        self._repair()
        self.pending = self._count_pending()
        # When the pending records were spooled, oldest first: [records, time.time()] per append,
        # appends within SPOOL_AGE_RESOLUTION_S of each other merged. Records found on disk at
        # start count as spooled at their first segment's last write (a lower bound of their age:
        # the file does not keep each record's spooling time).
        self._spooled_at: collections.deque[list[float]] = collections.deque()
        if self.pending:
            self._spooled_at.append([float(self.pending), self._first_pending_mtime()])

    # -- files --------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        out = []
        for p in self.dir.glob("seg-*.jsonl"):
            try:
                out.append(int(p.stem[4:]))
            except ValueError:
                continue
        return sorted(out)

    def _seg_path(self, n: int) -> Path:
        return self.dir / f"seg-{n:08d}.jsonl"

    def _load_cursor(self) -> Position:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            segs = self._segments()
            return (segs[0] if segs else 1, 0)

    def _save_cursor(self, pos: Position) -> None:
        tmp = self.dir / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pos[0]} {pos[1]}\n")
            f.flush()
            if self.do_fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / "cursor")
        if self.do_fsync:
            _fsync_dir(self.dir)
        self.cursor = pos

    def _repair(self) -> None:
        """Drop segments before the cursor and a torn last line (a write cut by SIGKILL/power
        loss: that record was never acknowledged as spooled, see engine docs)."""
        for n in self._segments():
            if n < self.cursor[0]:
                self._seg_path(n).unlink(missing_ok=True)
        segs = self._segments()
        if segs:
            last = self._seg_path(segs[-1])
            data = last.read_bytes()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                logger.warning("acc spool {}: dropping torn last line of {}", self.name, last.name)
                with open(last, "r+b") as f:
                    f.truncate(cut)

    def _count_pending(self) -> int:
        n = 0
        for seg in self._segments():
            if seg < self.cursor[0]:
                continue
            with open(self._seg_path(seg), "rb") as f:
                if seg == self.cursor[0]:
                    f.seek(self.cursor[1])
                n += sum(1 for _ in f)
        return n

    def _first_pending_mtime(self) -> float:
        for seg in self._segments():
            if seg >= self.cursor[0]:
                try:
                    return self._seg_path(seg).stat().st_mtime
                except FileNotFoundError:
                    continue
        return time.time()

    def _consumed(self, n: int) -> None:
        """n of the oldest pending records left the spool (replayed, or skipped as corrupt)."""
        q = self._spooled_at
        while n > 0 and q:
            if q[0][0] > n:
                q[0][0] -= n
                return
            n -= int(q.popleft()[0])
        if not self.pending:
            q.clear()

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest pending record was spooled (0.0 when the spool is empty)."""
        if not self.pending:
            return 0.0
        try:
            first = self._spooled_at[0][1]
        except IndexError:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - first)

    # -- API ----------------------------------------------------------------------------
    def append(self, records: list[AccRecord], sync: bool = True) -> None:
        """Append records in order; with sync, fsync before returning (the batch is durable)."""
        if not records:
            if sync:
                self.sync()
            return
        data = "".join(r.to_json() + "\n" for r in records).encode()
        with self._lock:
            if self._fh is None:
                segs = self._segments()
                seg = max(segs[-1] if segs else 0, self.cursor[0])
                self._fh = open(self._seg_path(seg), "ab")
                if self.do_fsync:
                    _fsync_dir(self.dir)
            self._fh.write(data)
            self._fh.flush()
            self._dirty = True
            self.pending += len(records)
            now = time.time()
            q = self._spooled_at
            if q and now - q[-1][1] < SPOOL_AGE_RESOLUTION_S:
                q[-1][0] += len(records)
            else:
                q.append([float(len(records)), now])
            if sync:
                self.sync()

    def sync(self) -> None:
        with self._lock:
            if self._fh is not None and self._dirty and self.do_fsync:
                os.fsync(self._fh.fileno())
            self._dirty = False

    def read_batch(self, max_n: int) -> tuple[list[AccRecord], Position]:
        """Up to max_n records from the cursor, in order, and the position just after them."""
        with self._lock:
            out: list[AccRecord] = []
            seg, off = self.cursor
            segs = [s for s in self._segments() if s >= seg]
            for s in segs:
                if s != seg:
                    seg, off = s, 0
                with open(self._seg_path(s), "rb") as f:
                    f.seek(off)
                    while len(out) < max_n:
                        line = f.readline()
                        if not line.endswith(b"\n"):
                            break  # end of segment (or a line still being written)
                        off += len(line)
                        try:
                            out.append(AccRecord.from_json(line))
                        except (ValueError, TypeError, KeyError):
                            self.corrupt += 1
                            logger.error("acc spool {}: skipping unparsable line at {}:{}", self.name, s, off)
                if len(out) >= max_n:
                    break
            return out, (seg, off)

    def commit(self, pos: Position, count: int) -> None:
        """The backend acknowledged everything before pos: persist the cursor, drop used segments."""
        with self._lock:
            segs = self._segments()
            last = segs[-1] if segs else pos[0]
            at_end = pos[0] == last and self._seg_path(last).exists() and pos[1] >= self._seg_path(last).stat().st_size
            if at_end:
                # Everything replayed: move the cursor to a fresh segment, then delete the old ones.
                if self._fh is not None:
                    self._fh.close()
                    self._fh = None
                self._save_cursor((last + 1, 0))
                for s in segs:
                    self._seg_path(s).unlink(missing_ok=True)
            else:
                self._save_cursor(pos)
                for s in segs:
                    if s < pos[0]:
                        self._seg_path(s).unlink(missing_ok=True)
            self.pending = max(0, self.pending - count - self.corrupt)
            self._consumed(count + self.corrupt)
            self.corrupt = 0

    def close(self) -> None:
        with self._lock:
            self.sync()
            if self._fh is not None:
                self._fh.close()
                self._fh = None


BACKENDS = ("log", "db", "aaa", "evi")  # each backend has a spool of its own (engine.py)


def pending_records(spool_dir: str | os.PathLike[str]) -> list[tuple[str, str, int]]:
    """(worker, backend, records waiting) for every spool under spool_dir: worker is "" for
    spool_dir itself, "worker-N" for the spools of worker N (with `workers = N`, __main__.py)."""
    top = Path(spool_dir)
    return [
        ("" if d == top else d.name, name, Spool(d, name).pending)
        for d in [top, *sorted(top.glob("worker-*"))]
        for name in BACKENDS
    ]
