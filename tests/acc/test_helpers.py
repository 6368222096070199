"""The test helpers themselves: what the end-to-end tests rely on to not trip over each other."""

import socket

from .e2e import free_udp_port
from .fixtures import free_port


def test_free_ports_are_never_handed_out_twice():
    # A CI run failed with errno 98: two SIPp peers got the same port, because a port found free
    # is released at once and the kernel may offer it again to the next bind(0).
    ports = [free_udp_port() for _ in range(150)] + [free_port() for _ in range(25)] + [free_port(socket.SOCK_DGRAM) for _ in range(25)]
    assert len(set(ports)) == len(ports)
    # and each is bindable for UDP and TCP at once, as the proxy listens on both
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind(("127.0.0.1", port))
            t.bind(("127.0.0.1", port))
