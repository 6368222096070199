"""Binding factories and a bounded wait for the location tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from proxyapp.location import Binding


def b(aor: str = "sip:alice@example.com", contact: str = "sip:alice@192.0.2.1:5060", expires: float | None = None, **kw: Any) -> Binding:
    """A binding; expires defaults to an hour from now (wall clock)."""
    return Binding(aor=aor, contact=contact, expires=time.time() + 3600 if expires is None else expires, **kw)


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll pred() every 20 ms until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


def contacts(bindings: list[Binding]) -> list[str]:
    return [x.contact for x in bindings]
