"""ICMP errors about the UDP datagrams we send, read from raw sockets (RFC 3261 §18.4).

RFC 3261 §18.4: host, network, port or protocol unreachable, and parameter problem, "SHOULD
cause the transport layer to inform the transport user of a failure in sending". For a client
transaction that is a transport error (§17.1.1.2, §17.1.2.2): the branch fails at once with 503
instead of being retransmitted to a port nobody listens on until Timer B or F (32 s).

Linux reports ICMP errors on an unconnected UDP socket only with IP_RECVERR, and that option
is not usable here:

- under uvloop (0.23, libuv 1.52) libuv reads the socket's error queue itself and hands uvloop
  the negated errno as an unsigned length, which uvloop copies from: SIGSEGV;
- on any loop, the first sendto after an ICMP error fails with that error (ECONNREFUSED), and
  the datagram, meant for someone else, is lost.

So the listening sockets stay as they are, and the edge reads ICMP itself from one raw socket
per address family. The kernel filters it (a classic BPF program for ICMPv4, ICMP6_FILTER for
ICMPv6), so only the error types above reach Python. A raw socket needs CAP_NET_RAW (root has
it; the systemd unit in examples/ grants it); without it ``open_raw_sockets`` returns nothing,
the edge says so once, and dead peers cost Timer B as before.

Parsing is sans-IO: ``parse_icmp4`` / ``parse_icmp6`` turn a received packet into an
``IcmpError`` naming the UDP datagram that caused it (our source address and port, its
destination, and the start of its payload, which the ICMP message quotes).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass

from loguru import logger

IPPROTO_UDP = 17
# ICMPv4 (RFC 792): destination unreachable, codes 0-3 net / host / protocol / port; parameter problem.
ICMP4_UNREACH = 3
ICMP4_PARAMPROB = 12
# ICMPv6 (RFC 4443): destination unreachable (codes 0 no route, 3 address, 4 port); parameter problem.
ICMP6_UNREACH = 1
ICMP6_PARAMPROB = 4
ICMP6_UNREACH_CODES = (0, 3, 4)
ICMP6_FILTER = 1  # <linux/icmpv6.h> ICMPV6_FILTER, level IPPROTO_ICMPV6
SO_ATTACH_FILTER = 26


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error about one UDP datagram: ``source`` is where the datagram left from (one of
    our sockets), ``dest`` where it was going, ``payload`` the start of its UDP payload (RFC 792
    quotes at least 8 bytes of it; Linux quotes up to 576 bytes of IPv4 packet in all, RFC 4443
    up to 1280 for IPv6)."""

    type: int
    code: int
    source: tuple[str, int]
    dest: tuple[str, int]
    payload: bytes


def _is_reportable4(icmp_type: int, code: int) -> bool:
    return (icmp_type == ICMP4_UNREACH and code <= 3) or icmp_type == ICMP4_PARAMPROB


def _is_reportable6(icmp_type: int, code: int) -> bool:
    return (icmp_type == ICMP6_UNREACH and code in ICMP6_UNREACH_CODES) or icmp_type == ICMP6_PARAMPROB


def parse_icmp4(packet: bytes) -> IcmpError | None:
    """A packet read from an AF_INET raw ICMP socket (IPv4 header included), or None when it is
    not a reportable error about a UDP datagram or too short to name one."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 8 + 20:
        return None
    icmp_type, code = packet[ihl], packet[ihl + 1]
    if not _is_reportable4(icmp_type, code):
        return None
    inner = ihl + 8  # the quoted IPv4 header of our datagram
    inner_ihl = (packet[inner] & 0x0F) * 4
    if packet[inner] >> 4 != 4 or inner_ihl < 20 or packet[inner + 9] != IPPROTO_UDP:
        return None
    udp = inner + inner_ihl
    if len(packet) < udp + 8:
        return None
    sport, dport = struct.unpack_from("!HH", packet, udp)
    src = socket.inet_ntop(socket.AF_INET, packet[inner + 12:inner + 16])
    dst = socket.inet_ntop(socket.AF_INET, packet[inner + 16:inner + 20])
    return IcmpError(icmp_type, code, (src, sport), (dst, dport), bytes(packet[udp + 8:]))


def parse_icmp6(packet: bytes) -> IcmpError | None:
    """A packet read from an AF_INET6 raw ICMPv6 socket (it starts at the ICMPv6 header), or
    None as for ``parse_icmp4``. The quoted IPv6 header must be followed by UDP directly
    (a SIP proxy's datagrams carry no extension headers)."""
    if len(packet) < 8 + 40 + 8:
        return None
    icmp_type, code = packet[0], packet[1]
    if not _is_reportable6(icmp_type, code):
        return None
    inner = 8
    if packet[inner] >> 4 != 6 or packet[inner + 6] != IPPROTO_UDP:
        return None
    udp = inner + 40
    sport, dport = struct.unpack_from("!HH", packet, udp)
    src = socket.inet_ntop(socket.AF_INET6, packet[inner + 8:inner + 24])
    dst = socket.inet_ntop(socket.AF_INET6, packet[inner + 24:inner + 40])
    return IcmpError(icmp_type, code, (src, sport), (dst, dport), bytes(packet[udp + 8:]))


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


# Accept ICMPv4 type 3 with code <= 3, or type 12; drop everything else in the kernel.
_ICMP4_FILTER = b"".join((
    _bpf(0xB1, 0, 0, 0),        # 0: X = 4 * (IP[0] & 0xf)      (the IPv4 header's length)
    _bpf(0x50, 0, 0, 0),        # 1: A = packet[X]              (ICMP type)
    _bpf(0x15, 0, 2, ICMP4_UNREACH),    # 2: type == 3 ? 3 : 5
    _bpf(0x50, 0, 0, 1),        # 3: A = packet[X + 1]          (ICMP code)
    _bpf(0x25, 2, 1, 3),        # 4: code > 3 ? drop : accept
    _bpf(0x15, 0, 1, ICMP4_PARAMPROB),  # 5: type == 12 ? accept : drop
    _bpf(0x06, 0, 0, 0x40000),  # 6: accept (up to 256 KiB)
    _bpf(0x06, 0, 0, 0),        # 7: drop
))


def _attach_icmp4_filter(sock: socket.socket) -> None:
    program = ctypes.create_string_buffer(_ICMP4_FILTER, len(_ICMP4_FILTER))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}: the kernel copies the
    # program during the call, so the buffer only has to live until it returns.
    fprog = struct.pack("HL", len(_ICMP4_FILTER) // 8, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _set_icmp6_filter(sock: socket.socket) -> None:
    # struct icmp6_filter: a bit set for a type blocks it (Linux net/ipv6/raw.c icmpv6_filter).
    words = [0xFFFFFFFF] * 8
    words[0] &= ~((1 << ICMP6_UNREACH) | (1 << ICMP6_PARAMPROB)) & 0xFFFFFFFF
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))


def open_raw_sockets(families: set[socket.AddressFamily]) -> list[tuple[socket.socket, int]]:
    """One non-blocking raw ICMP socket per address family in ``families`` (socket.AF_INET,
    socket.AF_INET6), filtered in the kernel; [(sock, family), ...]. A family whose socket
    cannot be opened (no CAP_NET_RAW: PermissionError) is left out and logged once."""
    out: list[tuple[socket.socket, int]] = []
    for family in sorted(families):
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        try:
            sock = socket.socket(family, socket.SOCK_RAW, proto)
        except OSError as exc:
            logger.info(
                "ICMP errors for UDP are not read ({}; a raw socket needs CAP_NET_RAW): a UDP peer "
                "that is down fails its branch only at Timer B (64*T1)", exc,
            )
            continue
        try:
            if family == socket.AF_INET:
                _attach_icmp4_filter(sock)
            else:
                _set_icmp6_filter(sock)
            sock.setblocking(False)
        except OSError as exc:
            logger.warning("ICMP errors for UDP are not read: cannot filter the raw socket: {}", exc)
            sock.close()
            continue
        out.append((sock, family))
    return out
