"""Fixtures for the phone tests: baresip processes (and proxyapp) started per test, always stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from ..proxy.support import ProxyProcess, free_port
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


# proxyapp as the phones' registrar and outbound proxy. The phones' domain is "127.0.0.1": the
# alias makes sip:127.0.0.1 (port 5060 implied, where nothing listens) the proxy itself, while a
# phone's own address (127.0.0.1 and its port) stays foreign. The embedded default script accounts
# every call (do_accounting "log|db", "cdr|missed|failed"); [acc] sends it to SQLite in the temp dir.
PROXY_TOML = """aliases = ["127.0.0.1:5060"]

[acc]
db_url = "acc.db"
spool_dir = "acc-spool"
fsync = false
"""


@pytest.fixture
def proxy(tmp_path, phones):
    """A proxyapp process on a free loopback port (UDP and TCP); stopped after the test's phones."""
    p = ProxyProcess(tmp_path, free_port(), PROXY_TOML, "DEBUG")
    p.acc_db = tmp_path / "acc.db"
    phones.attach(f"proxyapp ({p.log_path})", p.log)
    yield p
    phones.stop_all()  # first, so their last requests are not retransmitted to a closed port
    p.stop()


@pytest.fixture
def phones(tmp_path):
    lab = PhoneLab(tmp_path)
    yield lab
    lab.stop_all()


from ..acc.fixtures import pg, postgres_server  # noqa: E402,F401  (real PostgreSQL for the two-node tests)
from ..location.fixtures import redis_server  # noqa: E402,F401  (real Redis for the two-node tests)
