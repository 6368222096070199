"""Two proxyapp nodes share their location store (Redis, PostgreSQL): real phones on each call each other.

Node 1 listens on 127.0.0.1 and node 2 on 127.0.0.2; both serve the domain 127.0.0.10 (an alias of
each, as a DNS SRV name would be), Record-Route themselves and keep their bindings in one shared
store. alice registers through node 1, bob through node 2. A call that enters at node 1 for bob is
sent through node 2 (the node that saved bob's binding, with the address bob registered from), so
bob's NAT binding or TCP flow is the one used (README, "Several nodes").
"""

from __future__ import annotations

import pytest

from ..proxy.support import ProxyProcess, free_port
from .baresip import establish, hang_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DOMAIN = "127.0.0.10"


def _node(tmp_path, phones, host: str, name: str, location_toml: str) -> ProxyProcess:
    toml = f'aliases = ["{DOMAIN}"]\n\n[location]\n{location_toml}\n'
    p = ProxyProcess(tmp_path, free_port(), toml, "DEBUG", host=host, name=name)
    phones.attach(f"{name} ({p.log_path})", p.log)
    return p


def _forwarded(node: ProxyProcess, request: str, to: str) -> bool:
    return any(f"forward {request}" in line and f" to {to}" in line for line in node.log().splitlines())


def _two_nodes_call(tmp_path, phones, location_toml: str, transport_b: str) -> None:
    node1 = _node(tmp_path, phones, "127.0.0.1", "node1", location_toml)
    node2 = _node(tmp_path, phones, "127.0.0.2", "node2", location_toml)
    try:
        alice = phones.phone("alice", domain=DOMAIN, proxy=f"127.0.0.1:{node1.port}")
        bob = phones.phone("bob", domain=DOMAIN, proxy=f"127.0.0.2:{node2.port}", transport=transport_b)
        alice.register()
        bob.register()
        # alice -> node 1 -> (bob's binding, saved by node 2) -> node 2 -> bob, and back.
        establish(alice, bob, f"sip:bob@{DOMAIN}")
        hang_up(alice, bob)
        # node 1 sent alice's INVITE to node 2, which sent it on to bob.
        assert _forwarded(node1, "INVITE sip:bob", f"udp:{node2.host}:{node2.port}"), phones.report()
        assert _forwarded(node2, "INVITE sip:bob", f"{transport_b}:127.0.0.1:"), phones.report()
        establish(bob, alice, f"sip:alice@{DOMAIN}")
        hang_up(alice, bob)
        for node in (node1, node2):
            assert "Traceback" not in node.log(), phones.report()
    finally:
        phones.stop_all()
        node1.stop()
        node2.stop()


@pytest.mark.parametrize("transport_b", ["udp", "tcp"])
def test_phones_on_two_nodes_sharing_redis_call_each_other(tmp_path, phones, redis_server, transport_b):
    _two_nodes_call(tmp_path, phones, f'backend = "redis"\nredis_url = "{redis_server.url}"', transport_b)


@pytest.mark.parametrize("transport_b", ["udp", "tcp"])
def test_phones_on_two_nodes_sharing_postgresql_call_each_other(tmp_path, phones, pg, transport_b):
    _server, url = pg
    _two_nodes_call(tmp_path, phones, f'backend = "postgres"\ndb_url = "{url}"', transport_b)
