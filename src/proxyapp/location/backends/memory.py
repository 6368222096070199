"""memory backend: nothing persisted, nothing shared (one process; registrations end with it)."""

from __future__ import annotations

from .base import Backend


class MemoryBackend(Backend):
    """Location's own dict is the only copy: start() loads nothing and write() drops the list."""

    name = "memory"
