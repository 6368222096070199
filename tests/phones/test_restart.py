"""Registrations survive a restart: the location store persisted in SQLite (the embedded default)."""

from __future__ import annotations

import pytest

from ..proxy.support import ProxyProcess, free_port
from .baresip import establish, hang_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_a_phone_registered_before_a_restart_is_still_reached_after_it(tmp_path, phones):
    port = free_port()
    toml = 'aliases = ["127.0.0.1:5060"]\n\n[location]\nbackend = "sqlite"\ndb_url = "location.db"\n'
    first = ProxyProcess(tmp_path, port, toml, "DEBUG", name="before")
    phones.attach("proxyapp before the restart", first.log)
    bob = phones.phone("bob", proxy=f"127.0.0.1:{port}", regint=3600)
    bob.register()
    first.stop()  # SIGTERM: the queued binding writes are flushed
    second = ProxyProcess(tmp_path, port, toml, "DEBUG", name="after")
    phones.attach("proxyapp after the restart", second.log)
    try:
        assert "location: 1 bindings of 1 AORs loaded (sqlite)" in second.log(), phones.report()
        alice = phones.phone("alice", proxy=f"127.0.0.1:{port}")  # bob does not register again
        establish(alice, bob, "sip:bob@127.0.0.1")
        hang_up(bob, alice)
    finally:
        phones.stop_all()
        second.stop()
