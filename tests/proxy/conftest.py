"""Fixtures for the proxy tests: a real proxyapp process and SIPp peers, stopped by pid at the end."""

from __future__ import annotations

import pytest

from .support import ProxyProcess, Sipp, free_port


@pytest.fixture
def proxy_factory(tmp_path):
    started: list[ProxyProcess] = []

    def start(extra_toml: str = "", log_level: str = "DEBUG", transports: tuple[str, ...] = ("udp", "tcp")) -> ProxyProcess:
        p = ProxyProcess(tmp_path, free_port(), extra_toml, log_level, transports)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def sipp(tmp_path):
    s = Sipp(tmp_path)
    yield s
    s.stop_all()
