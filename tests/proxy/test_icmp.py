"""proxyapp.icmp: ICMP errors about our UDP datagrams (RFC 3261 §18.4), parsed from raw packets.

The parsing is pinned on packets built here byte by byte; the kernel side (the BPF and
ICMP6_FILTER filters, what Linux really quotes) runs inside a private network namespace
(``unshare -n``), where a datagram to a closed port on loopback draws a real port unreachable.
The end-to-end effect on a call (503 at once instead of Timer B) is in test_floods.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

from proxyapp import icmp

SIP = b"INVITE sip:bob@127.0.0.9:5099 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    ) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _icmp4(icmp_type: int, code: int, quoted: bytes) -> bytes:
    """What an AF_INET raw socket reads: the outer IPv4 header, then ICMP."""
    return _ipv4("127.0.0.9", "127.0.0.1", 1, struct.pack("!BBHI", icmp_type, code, 0, 0) + quoted)


def _ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), next_header, 64,
        socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst),
    ) + payload


def _icmp6(icmp_type: int, code: int, quoted: bytes) -> bytes:
    """What an AF_INET6 raw ICMPv6 socket reads: the ICMPv6 message, no IPv6 header."""
    return struct.pack("!BBHI", icmp_type, code, 0, 0) + quoted


def test_parse_icmp4_port_unreachable_names_the_datagram():
    quoted = _ipv4("127.0.0.1", "127.0.0.9", 17, _udp(5060, 5099, SIP))
    err = icmp.parse_icmp4(_icmp4(3, 3, quoted))
    assert err == icmp.IcmpError(3, 3, ("127.0.0.1", 5060), ("127.0.0.9", 5099), SIP)


@pytest.mark.parametrize("icmp_type,code,reported", [
    (3, 0, True), (3, 1, True), (3, 2, True), (3, 3, True),  # net, host, protocol, port unreachable
    (12, 0, True),  # parameter problem
    (3, 4, False),  # fragmentation needed: not a failure to deliver (RFC 3261 §18.4 lists no such)
    (3, 13, False),  # administratively prohibited
    (11, 0, False),  # time exceeded
    (0, 0, False), (8, 0, False),  # echo reply / request
])
def test_parse_icmp4_reports_only_the_rfc3261_kinds(icmp_type, code, reported):
    quoted = _ipv4("127.0.0.1", "127.0.0.9", 17, _udp(5060, 5099, SIP))
    assert (icmp.parse_icmp4(_icmp4(icmp_type, code, quoted)) is not None) is reported


def test_parse_icmp4_refuses_what_names_no_udp_datagram():
    tcp = _ipv4("127.0.0.1", "127.0.0.9", 6, _udp(5060, 5099, SIP))  # the quoted packet is TCP
    assert icmp.parse_icmp4(_icmp4(3, 3, tcp)) is None
    whole = _icmp4(3, 3, _ipv4("127.0.0.1", "127.0.0.9", 17, _udp(5060, 5099, b"")))
    assert icmp.parse_icmp4(whole) == icmp.IcmpError(3, 3, ("127.0.0.1", 5060), ("127.0.0.9", 5099), b"")
    assert icmp.parse_icmp4(whole[:-1]) is None  # the UDP header cut short
    for n in range(0, len(whole) - 1, 7):
        assert icmp.parse_icmp4(whole[:n]) is None
    assert icmp.parse_icmp4(b"") is None


def test_parse_icmp6_port_unreachable_names_the_datagram():
    quoted = _ipv6("::1", "2001:db8::9", 17, _udp(5060, 5099, SIP))
    err = icmp.parse_icmp6(_icmp6(1, 4, quoted))
    assert err == icmp.IcmpError(1, 4, ("::1", 5060), ("2001:db8::9", 5099), SIP)


@pytest.mark.parametrize("icmp_type,code,reported", [
    (1, 0, True), (1, 3, True), (1, 4, True), (4, 1, True),
    (1, 1, False),  # administratively prohibited
    (2, 0, False),  # packet too big
    (3, 0, False), (128, 0, False), (129, 0, False),
])
def test_parse_icmp6_reports_only_the_rfc3261_kinds(icmp_type, code, reported):
    quoted = _ipv6("::1", "::1", 17, _udp(5060, 5099, SIP))
    assert (icmp.parse_icmp6(_icmp6(icmp_type, code, quoted)) is not None) is reported


def test_parse_icmp6_refuses_what_names_no_udp_datagram():
    assert icmp.parse_icmp6(_icmp6(1, 4, _ipv6("::1", "::1", 6, _udp(5060, 5099, SIP)))) is None
    assert icmp.parse_icmp6(_icmp6(1, 4, _ipv4("127.0.0.1", "127.0.0.9", 17, _udp(5060, 5099, SIP)))) is None
    whole = _icmp6(1, 4, _ipv6("::1", "::1", 17, _udp(5060, 5099, b"")))
    for n in range(len(whole)):
        assert icmp.parse_icmp6(whole[:n]) is None


# ------------------------------------------------------------------ the kernel, in a private netns


def _live() -> dict[str, object]:
    """Inside the namespace: a datagram to a closed port (IPv4 and IPv6 loopback) and a ping of
    each; what the filtered raw sockets deliver within a second."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    socks = icmp.open_raw_sockets({socket.AF_INET, socket.AF_INET6})
    out: dict[str, object] = {"families": sorted(f for _, f in socks)}
    u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u4.bind(("127.0.0.1", 0))
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.bind(("::1", 0))
    ping4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ping4.sendto(struct.pack("!BBHHH", 8, 0, 0xF7FF, 0, 0), ("127.0.0.1", 0))  # echo request
    ping6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ping6.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 0), ("::1", 0))  # (the kernel sums ICMPv6)
    u4.sendto(SIP, ("127.0.0.9", 5099))
    u6.sendto(SIP, ("::1", 5099))
    got: list[list[object]] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for sock, family in socks:
            try:
                packet = sock.recv(4096)
            except BlockingIOError:
                continue
            parse = icmp.parse_icmp4 if family == socket.AF_INET else icmp.parse_icmp6
            err = parse(packet)
            got.append([family, None] if err is None else [family, err.type, err.code, list(err.source), list(err.dest), err.payload.decode()])
        time.sleep(0.01)
    out["got"] = got
    out["u4"] = u4.getsockname()[1]
    out["u6"] = u6.getsockname()[1]
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="raw ICMP sockets and network namespaces are Linux's")
def test_raw_sockets_deliver_only_port_unreachable_in_a_private_netns():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (CI runs as root)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run(
        ["unshare", "-n", sys.executable, __file__, "live"], capture_output=True, text=True, timeout=60, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["families"] == [socket.AF_INET, socket.AF_INET6], r
    # Exactly one message per family: the port unreachable; the echo requests and replies never
    # reach Python (the kernel filters them).
    assert sorted(map(json.dumps, r["got"])) == sorted(map(json.dumps, [
        [socket.AF_INET, 3, 3, ["127.0.0.1", r["u4"]], ["127.0.0.9", 5099], SIP.decode()],
        [socket.AF_INET6, 1, 4, ["::1", r["u6"]], ["::1", 5099], SIP.decode()],
    ])), r


if __name__ == "__main__" and sys.argv[1:] == ["live"]:
    print(json.dumps(_live()))
