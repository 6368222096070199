"""Fixtures for the phone tests: baresip processes (and proxyapp) started per test, always stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from ..proxy.support import free_port
from .baresip import Phone


class PhoneLab:
    """The phones of one test, plus the other logs (the proxy's) their failure messages carry."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.phones: list[Phone] = []
        self.logs: list[tuple[str, Callable[[], str]]] = []

    def phone(self, user: str, **kwargs) -> Phone:
        """A started phone for ``sip:USER@127.0.0.1`` (see Phone for the keyword arguments)."""
        p = Phone(self.tmp, user, free_port=free_port, context=self.report, **kwargs)
        self.phones.append(p)  # before start(): a phone that fails to start is stopped too
        return p.start()

    def attach(self, name: str, log: Callable[[], str]) -> None:
        """Add a log (e.g. the proxy's) to every failure message of this test."""
        self.logs.append((name, log))

    def report(self) -> str:
        parts = [p.report() for p in self.phones]
        for name, log in self.logs:
            try:
                text = log()
            except OSError as exc:
                text = f"(unreadable: {exc})"
            parts.append(f"==== {name}\n{text[-8000:]}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        for p in self.phones:
            p.stop()


@pytest.fixture
def phones(tmp_path):
    lab = PhoneLab(tmp_path)
    yield lab
    lab.stop_all()
