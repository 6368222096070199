"""AccMark: what the script's do_accounting(types, flags, table) stores on a transaction.

OpenSIPS acc do_accounting(): types `log|db|aaa|evi` (any combination), flags `cdr|missed|failed`,
table replaces the default table.  The mark is mutable on purpose: OpenSIPS clears the `missed`
flag after the first missed-call record, and the failure route may re-arm it (do_accounting again)
to account each serial-forking destination that did not answer.
"""

from __future__ import annotations

import dataclasses

from .records import check_identifier

TYPES = ("log", "db", "aaa", "evi")
FLAGS = ("cdr", "missed", "failed")


def _split(value: str | None, allowed: tuple[str, ...], what: str) -> set[str]:
    out: set[str] = set()
    for part in (value or "").replace(",", "|").split("|"):
        part = part.strip().lower()
        if not part:
            continue
        if part not in allowed:
            raise ValueError(f"do_accounting: unknown {what} {part!r} (expected {'|'.join(allowed)})")
        out.add(part)
    return out


@dataclasses.dataclass
class AccMark:
    """Accounting request attached to one transaction (or re-armed in a failure/branch route)."""

    types: set[str] = dataclasses.field(default_factory=set)
    cdr: bool = False
    missed: bool = False
    failed: bool = False
    table: str | None = None

    @classmethod
    def parse(cls, types: str, flags: str = "", table: str | None = None) -> "AccMark":
        """Parse do_accounting's arguments; raise ValueError for an unknown type, flag or bad table."""
        t = _split(types, TYPES, "type")
        if not t:
            raise ValueError("do_accounting: at least one type (log|db|aaa|evi) is required")
        f = _split(flags, FLAGS, "flag")
        if table is not None and table != "":
            check_identifier(table, "do_accounting table")
        else:
            table = None
        return cls(types=t, cdr="cdr" in f, missed="missed" in f, failed="failed" in f, table=table)

    def update(self, types: str, flags: str = "", table: str | None = None) -> None:
        """Calling do_accounting again (e.g. in the failure route) merges into the existing mark,
        as OpenSIPS ORs the flags in its acc context; this is how `missed` is re-armed."""
        other = AccMark.parse(types, flags, table)
        self.types |= other.types
        self.cdr = self.cdr or other.cdr
        self.missed = self.missed or other.missed
        self.failed = self.failed or other.failed
        if other.table is not None:
            self.table = other.table

    def drop(self, types: str | None = None, flags: str | None = None) -> None:
        """drop_accounting([types[, flags]]): with no argument undo everything, else remove the
        given types and, when flags are given, only those flags."""
        if types is None and flags is None:
            self.types.clear()
            self.cdr = self.missed = self.failed = False
            return
        if types:
            self.types -= _split(types, TYPES, "type")
        if flags:
            f = _split(flags, FLAGS, "flag")
            self.cdr = self.cdr and "cdr" not in f
            self.missed = self.missed and "missed" not in f
            self.failed = self.failed and "failed" not in f

    @property
    def active(self) -> bool:
        return bool(self.types)

    def types_tuple(self) -> tuple[str, ...]:
        """Types in a stable order (records carry this tuple)."""
        types = self.types
        if len(types) == 1:  # the usual case: one backend
            return tuple(types)
        return tuple(t for t in TYPES if t in types)
