"""Keep-alives from phones behind NAT (RFC 5626 §4.4.1, §3.5.1): CRLF pongs on TCP, silence on UDP."""

from __future__ import annotations

import socket
import time

import pytest

from .harness import Harness
from .support import ProxyProcess, free_port

pytestmark = pytest.mark.timeout(60)


def test_a_udp_crlf_keepalive_is_counted_and_neither_answered_nor_logged_as_a_drop():
    h = Harness()
    assert h.rx(b"\r\n\r\n") == []
    assert h.rx(b"\r\n") == []
    assert h.proxy.stats.keepalives == 2
    assert h.proxy.stats.dropped == 0


def test_a_tcp_double_crlf_ping_gets_a_crlf_pong_and_the_connection_stays_usable(tmp_path):
    port = free_port()
    proxy = ProxyProcess(tmp_path, port, "", "INFO")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for _ in range(2):
                s.sendall(b"\r\n\r\n")
                assert s.recv(16) == b"\r\n"
            s.sendall(
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n".encode() + b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKka1\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:ka@127.0.0.1>;tag=k\r\nTo: <sip:127.0.0.1>\r\n"
                b"Call-ID: ka-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            deadline = time.monotonic() + 5
            data = b""
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                data += s.recv(4096)
            assert data.startswith(b"SIP/2.0 200 OK\r\n")
        assert "Traceback" not in proxy.log()
    finally:
        proxy.stop()
