"""Open-dialog journal: CDR dialogs survive a proxy restart.

Append-only JSON lines: {"op":"open","d":{dialog}}, {"op":"bye","k":key,"ts":t},
{"op":"touch","k":key,"ts":t}, {"op":"close","k":key}.  Lines are buffered and written plus
fsynced in batches by the engine's journal task; on start the file is replayed into the open
dialogs and rewritten compacted (temp file + rename).  After SIGKILL the worst case is the last
unflushed batch (one flush interval) of journal lines; a dialog opened in that window has no CDR.
While running, the file is compacted again once it holds far more lines than open dialogs
(every call adds an open and a close line), so it stays proportional to the open calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loguru import logger

from .dialog import Dialog


class DialogJournal:
    """The journal file of open CDR dialogs."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.do_fsync = fsync
        self._buf: list[dict[str, Any]] = []
        self._fh: Any = None
        self.lines = 0  # lines in the file (for compaction)

    def load(self) -> list[Dialog]:
        """Replay the journal into the dialogs still open, then compact the file to just them."""
        open_: dict[str, Dialog] = {}
        if self.path.exists():
            with open(self.path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.endswith(b"\n"):
                        break  # torn last line after a crash
                    try:
                        e = json.loads(line)
                        op = e["op"]
                        if op == "open":
                            d = Dialog.from_dict(e["d"])
                            open_[self.key_str(d.key)] = d
                        elif op == "close":
                            open_.pop(e["k"], None)
                        elif op == "bye" and e["k"] in open_:
                            d = open_[e["k"]]
                            d.bye_ts = d.bye_ts if d.bye_ts is not None else e["ts"]
                        elif op == "touch" and e["k"] in open_:
                            d = open_[e["k"]]
                            d.last_activity = max(d.last_activity, e["ts"])
                    except (ValueError, KeyError, TypeError) as exc:
                        logger.error("acc journal {}: bad line {}: {}", self.path, n, exc)
        dialogs = list(open_.values())
        self.compact([d.to_dict() for d in dialogs])
        return dialogs

    def should_compact(self, open_dialogs: int) -> bool:
        return self.lines > 10000 and self.lines > 4 * open_dialogs

    def compact(self, snapshot: list[dict[str, Any]]) -> None:
        """Replace the file by one "open" line per dialog of the snapshot (temp file + rename,
        so a crash leaves either the old or the new file).  Lines buffered after the snapshot
        are written to the new file later; replaying them again is harmless (idempotent ops)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for d in snapshot:
                f.write(json.dumps({"op": "open", "d": d}, separators=(",", ":")) + "\n")
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
        if self._fh is not None:
            self._fh.close()
        self._fh = open(self.path, "a")
        self.lines = len(snapshot)

    @staticmethod
    def key_str(key: tuple[str, str, str]) -> str:
        return "\x1f".join(key)

    # The event path only queues plain dicts; JSON is encoded by write(), in the writer thread,
    # so journaling costs the proxy's event loop a dict and an append per event.
    def opened(self, d: Dialog) -> None:
        self._buf.append({"op": "open", "d": d.to_dict()})

    def bye(self, d: Dialog, ts: float) -> None:
        self._buf.append({"op": "bye", "k": self.key_str(d.key), "ts": ts})

    def touch(self, d: Dialog, ts: float) -> None:
        self._buf.append({"op": "touch", "k": self.key_str(d.key), "ts": ts})

    def closed(self, d: Dialog) -> None:
        self._buf.append({"op": "close", "k": self.key_str(d.key)})

    @property
    def dirty(self) -> bool:
        return bool(self._buf)

    def take(self) -> list[dict[str, Any]]:
        buf, self._buf = self._buf, []
        return buf

    def write(self, entries: list[dict[str, Any]]) -> None:
        """Encode, write and fsync a batch of entries (called in a worker thread)."""
        if not entries or self._fh is None:
            return
        self._fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
        self._fh.flush()
        self.lines += len(entries)
        if self.do_fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.write(self.take())
            self._fh.close()
            self._fh = None
