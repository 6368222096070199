"""The interface every accounting backend implements, and its partial-failure exception."""

from __future__ import annotations

from typing import Iterable

from ..records import AccRecord


class BackendError(Exception):
    """A batch could not be written.  `done` holds the record_ids that were written anyway
    (e.g. RADIUS packets acknowledged before another one timed out): only the others are spooled."""

    def __init__(self, message: str, done: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.done = set(done)


class Backend:
    """Base class: open once, write batches (raise on failure), close once."""

    name = "?"
    # Whether records must reach this backend in the order they were made (a RADIUS Start before
    # its Stop, evi events, log lines). A database row carries its own times, so fresh records may
    # overtake a backlog left by a queue overflow; see BackendWorker.step.
    ordered = True

    async def open(self) -> None:
        """Connect / create what is needed.  May raise: the engine then spools until it works."""

    async def write(self, records: list[AccRecord]) -> None:
        """Write the batch durably, in order; raise (BackendError or any Exception) on failure.
        Writing a record_id that was already written must be harmless (replay after a crash)."""
        raise NotImplementedError

    def timeout(self, default: float) -> float:
        """Seconds the engine gives the next open() or write(): the configured backend timeout,
        unless this backend needs longer first (a helper process to start)."""
        return default

    async def close(self) -> None:
        """Release connections; never raises."""
