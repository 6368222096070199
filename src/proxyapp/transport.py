"""The asyncio edge: UDP and TCP sockets, TCP framing, the clock, one timer heap, DNS; runs actions.

Everything that waits or touches the network lives here; the proxy core (proxyapp.proxy) only
returns actions. Timers:
- Short ones (retransmissions, Timers A/E/G/K/I with T1 = 500 ms) are one heap driven by a
  single ``loop.call_at`` handle: arming is a heappush, cancelling marks the entry dead (cheap
  at thousands of transactions/s); dead entries leave the heap when their deadline comes.
- Long ones (at least LONG_TIMER_S: Timer C's 3 minutes, the 32 s of B/D/F/H/J/L/M) go to a
  wheel of WHEEL_SLOT_S slots: a dict per slot, so cancelling one deletes it and nothing dead
  piles up. In the heap, Timer C alone left one dead entry per answered call for 3 minutes; the
  heap had to be rebuilt now and then, an O(n) pass over 100,000s of entries that stalled the
  loop for tens of ms (p99 setup 16-24 ms at 2250 calls/s). A long timer fires up to one slot
  late, which these timeouts allow.
- TCP connections (limits and timeouts of ``[tcp]``, proxyapp.tcp_limits) are looked over by one
  periodic sweep (``_sweep``, every TcpLimits.sweep_interval): each connection only records the
  times of its last activity, of its oldest unfinished message and of the moment its writes
  stalled; no timer per connection.
- TLS (``tls:`` listeners, ``[tls]``, proxyapp.tls; RFC 3261 §26.2, framed as TCP per §18.3) runs
  the same TcpConnection over asyncio's TLS transport. A tls: listener accepts itself
  (``_accept_tls``): the [tcp] limits admit or refuse the connection before any handshake (a
  handshake costs CPU), then ``connect_accepted_socket`` does the handshake within
  tls.handshake_timeout and a failure comes back here, to be counted and logged (rate-limited)
  instead of vanishing inside asyncio (which drops failed server handshakes silently). An
  outgoing connection is connected first, then wrapped, and verifies the peer's certificate
  against the name the request targets (RFC 5922 §7.2, carried on core.TlsTarget).
  Connections are keyed by (transport, host, port): a TCP and a TLS connection to one address
  are never mixed.
- A due slot is drained WHEEL_BATCH timers per loop iteration, not at once: at 2250 calls/s one
  1 s slot holds some 7000 expirations (Timers L, M and J of every call), and firing them in one
  callback held every datagram back for 20-30 ms once a second. In between, the loop reads its
  sockets; a timer in a drained slot still never fires early, and only later by the drain.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import heapq
import itertools
import math
import os
import re
import resource
import socket
import ssl
from collections.abc import Callable
from typing import Any

import fastsip
from loguru import logger

from . import icmp
from .config import Config, ConfigError, Listen
from .core import ProxyCore, Resolve, Target
from .limits import Limits
from .tcp_limits import TcpLimits
from .tls import TlsConfig, TlsStartError
from .transaction import CancelTimer, Send, StartTimer, Terminated
from .workers import Dispatch, is_initial_invite, owner_of, pack, reuseport_socket, unpack

DNS_TIMEOUT = 5.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (the faster loop), else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def resolve_sip(name: str, port: int | None, transport: str) -> list[tuple[str, str, int]]:
    """RFC 3263 §4.2 for a host name: SRV (_sip._udp / _sip._tcp, _sips._tcp for TLS) when no
    port is given, then A/AAAA (port 5060, 5061 for TLS).

    Returns [(transport, ip, port), ...] in preference order; [] when nothing resolves."""
    loop = asyncio.get_running_loop()
    targets: list[tuple[str, int]] = []
    srv = f"_sips._tcp.{name}" if transport == "tls" else f"_sip._{transport}.{name}"
    if port is None:
        try:
            import dns.asyncresolver
            import dns.exception

            resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = DNS_TIMEOUT / 2
            answer = await resolver.resolve(srv, "SRV")
            recs = sorted(answer, key=lambda r: (r.priority, -r.weight))
            targets = [(str(r.target).rstrip("."), r.port) for r in recs]
        except Exception:  # no SRV (NXDOMAIN, NoAnswer, no resolver, no dnspython): plain A/AAAA
            targets = []
    if not targets:
        targets = [(name, port or (5061 if transport == "tls" else 5060))]
    out: list[tuple[str, str, int]] = []
    proto = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    for host, p in targets:
        try:
            infos = await loop.getaddrinfo(host, p, type=proto)
        except OSError:
            continue
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = sockaddr[0]
            assert isinstance(ip, str)  # an AF_INET/AF_INET6 address is (host, port[, flow, scope])
            entry = (transport, ip, p)
            if entry not in out:
                out.append(entry)
    return out


UDP_RECEIVE_BUFFER = 4 << 20


def _big_receive_buffer(sock: Any) -> None:
    """Ask for a 4 MiB receive buffer (the kernel caps it at net.core.rmem_max): a burst of
    datagrams while the event loop is busy must queue, not be dropped
    (a dropped INVITE costs the caller a 500 ms retransmission)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except (OSError, AttributeError):
        pass


# The branch of the top Via of a request we sent (ours, inserted first: RFC 3261 §16.6 step 8).
_TOP_BRANCH = re.compile(rb"\r\nVia: SIP/2\.0/UDP [^;\r\n]*;branch=([^;,\s]+)")
class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, edge: "Edge", listen: Listen) -> None:
        self.edge = edge
        self.listen = listen
        self.transport: asyncio.DatagramTransport | None = None
        self.index = edge.cfg.listen.index(listen)
        dispatch = edge.dispatch
        if dispatch is not None:
            self._me = dispatch.index
            self._workers = dispatch.workers
            self.datagram_received = self._dispatching  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.edge._limits_handle is None:
            self.edge._limits_tick()  # the first UDP socket starts the flood limits' windows

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        edge = self.edge
        limits = edge.limits
        if not limits.admit(addr[0]) or limits.is_scanner(data):
            return  # [limits]: a banned source or a scanner, dropped unparsed and unanswered
        edge.run(edge.proxy.receive(data, Target("udp", addr[0], addr[1], None, self.listen)))

    def _dispatching(self, data: bytes, addr: tuple[str, int]) -> None:
        """Several workers (proxyapp.workers): handle our calls, hand the others to their owner."""
        limits = self.edge.limits
        if not limits.admit(addr[0]) or limits.is_scanner(data):
            return  # [limits] (each worker counts the sources the kernel gives it)
        owner = owner_of(data, self._workers)
        if owner < 0 or owner == self._me or (self.edge.proxy.draining and is_initial_invite(data)):
            # (While stopping, a new call is refused here: its owner may have exited already.)
            edge = self.edge
            edge.run(edge.proxy.receive(data, Target("udp", addr[0], addr[1], None, self.listen)))
            return
        self.edge.hand_off(owner, pack(data, addr[0], addr[1], self.index))

    def error_received(self, exc: Exception) -> None:
        # (No IP_RECVERR on this socket: ICMP errors are read from raw sockets, proxyapp.icmp.)
        logger.debug("udp socket {}: {}", self.listen, exc)


class _PeerProtocol(asyncio.DatagramProtocol):
    """This worker's private socket: messages other workers received for calls we own."""

    def __init__(self, edge: "Edge") -> None:
        self.edge = edge
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, packet: bytes, addr: tuple[str, int]) -> None:
        edge = self.edge
        try:
            data, host, port, index = unpack(packet)
            listen = edge.cfg.listen[index]
        except (ValueError, IndexError):
            logger.warning("dropped a malformed hand-off datagram from {}:{}", addr[0], addr[1])
            return
        edge.dispatch.taken_over += 1  # type: ignore[union-attr]
        edge.run(edge.proxy.receive(data, Target("udp", host, port, None, listen)))


class TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound; framed by fastsip.StreamParser.

    It records what the edge's sweep needs (``Edge._sweep``): ``last_active`` (a complete
    message or a keep-alive ping received, or a message sent), ``partial_since`` (the start of a
    message not yet complete) and ``stalled_since`` (writes paused above the high-water mark).

    TLS (``proto`` "tls"): ``connection_made`` comes after the handshake, with the TLS
    transport. An inbound one was admitted and counted at accept (``Edge._accept_tls``), so it
    is counted during its handshake; ``transport`` is None until then."""

    def __init__(self, edge: "Edge", listen: Listen | None, inbound: bool = False, proto: str = "tcp") -> None:
        self.edge = edge
        self.listen = listen
        self.inbound = inbound
        self.proto = proto  # "tcp" | "tls": Target.transport of what it receives
        self.parser = fastsip.StreamParser(max_size=edge.cfg.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.closed = False
        self.counted = False  # in edge.tcp (refused connections never are)
        self._pings = 0
        now = edge.now()
        self.last_active = now
        self.partial_since: float | None = None
        self.stalled_since: float | None = None
        self._unframed = 0  # bytes received since the last message or ping

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        edge = self.edge
        if not self.counted:  # (an inbound TLS connection was admitted and counted at accept)
            if self.inbound and not edge.admit(self, transport):
                self.closed = True
                transport.abort()  # type: ignore[attr-defined]
                return
            edge.tcp_opened(self)
        edge.conns[(self.proto, self.peer[0], self.peer[1])] = self
        limits = edge.tcp_limits
        # Writes pause (pause_writing) above this; the sweep drops a peer paused for write_timeout.
        self.transport.set_write_buffer_limits(high=min(64 * 1024, limits.max_write_buffer // 2))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        parser = self.parser
        msgs = self._feed(data)
        if msgs is None:
            return
        pings = parser.pings - self._pings
        if msgs or pings:
            now = self.edge.now()
            self.last_active = now
            self._unframed = parser.buffered
            self.partial_since = now if parser.buffered else None
        else:
            self._unframed += len(data)
            # A message under way, or line breaks that are no ping (at most 3 bytes of one
            # CRLFCRLF can wait for the rest): the clock of message_timeout runs.
            if self.partial_since is None and (parser.buffered or self._unframed > 3):
                self.partial_since = self.edge.now()
            if self._unframed > parser.buffered + self.edge.cfg.max_message_size:
                # Line breaks without end: no message will come of them (fastsip keeps them).
                logger.info("tcp {}:{}: {} bytes without a message; closing", self.peer[0], self.peer[1], self._unframed)
                self.edge.proxy.stats.dropped += 1
                self.close()
                return
        if pings:
            # RFC 5626 §3.5.1: answer each CRLFCRLF ping with a CRLF pong.
            self._pings = parser.pings
            self.send(b"\r\n" * pings)
        edge = self.edge
        limits = edge.limits
        ip = self.peer[0]
        for msg in msgs:
            # [limits] as for a datagram: each message counts in the source's density; once the
            # source is banned its connection goes (what it sent after is dropped unread), and a
            # scanner's request is dropped unanswered.
            if not limits.admit(ip):
                self.abort()
                return
            source = Target(self.proto, ip, self.peer[1], self, self.listen)
            if isinstance(msg, bytes):  # refused by the parser: answered 400 / 513 if it can be
                edge.run(edge.proxy.receive(msg, source))
            elif not (msg.is_request and limits.is_scanner_agent(msg.header("User-Agent"))):
                edge.run(edge.proxy.receive_message(msg, source))
        if len(data) >= READ_YIELD_BYTES and not self.closed and self.stalled_since is None:
            # A big read (a peer pipelining requests as fast as it can): let the other sockets
            # have their turn before the next. libuv otherwise reads up to 32 times in a row,
            # megabytes of requests, and everyone else waits a second.
            self.transport.pause_reading()  # type: ignore[union-attr]
            edge.loop.call_soon(self._read_again)  # type: ignore[union-attr]

    def _feed(self, data: bytes) -> list[Any] | None:
        """What ``data`` completes, in order: each framed message as fastsip.parse() returns it,
        or as its bytes when the parser refused it (a bad header, too many header lines: the
        stream is in sync, so it is answered 400 / 513 like a datagram and the rest goes on).
        None when the byte stream cannot be framed any more (RFC 3261 §18.3): closed."""
        out: list[Any] = []
        chunk = data
        while True:  # bounded: each refused message has left the parser's buffer
            try:
                out.extend(self.parser.feed(chunk))
                return out
            except fastsip.ParseError as exc:
                if exc.framed is None:
                    logger.info("tcp {}:{}: {}; closing", self.peer[0], self.peer[1], exc)
                    self.edge.proxy.stats.dropped += 1
                    self.close()
                    return None
                out.extend(exc.messages)
                out.append(exc.framed)
                chunk = b""

    def _read_again(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed and self.stalled_since is None and not transport.is_closing():
            transport.resume_reading()

    def pause_writing(self) -> None:
        # The peer does not read what we send: read no more of its requests either (each would
        # add a response to the queue) until it catches up, or the sweep drops it after
        # write_timeout. A flood from a client that never reads costs one read's worth of work.
        self.stalled_since = self.edge.now()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        self.stalled_since = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counted:
            self.edge.tcp_closed(self)
        key = (self.proto, self.peer[0], self.peer[1])
        if self.edge.conns.get(key) is self:
            del self.edge.conns[key]

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        transport.write(data)
        self.last_active = self.edge.now()
        if transport.get_write_buffer_size() > self.edge.tcp_limits.max_write_buffer:
            self.edge.slow_reader(self, "its unsent data passed max_write_buffer")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is not sent yet."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


class _RateLimitedWarning:
    """At most one WARNING per ``interval`` seconds; the next one says how many were held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.last = -math.inf
        self.held = 0

    def __call__(self, now: float, message: str, *args: Any) -> None:
        if now - self.last < self.interval:
            self.held += 1
            return
        if self.held:
            message += f" ({self.held} more like it in the last {self.interval:g} s not logged)"
        self.held = 0
        self.last = now
        logger.warning(message, *args)


TLS_ACCEPT_BATCH = 64  # connections a tls: listener accepts per readiness callback
ICMP_READ_BATCH = 256  # ICMP errors read per readiness callback
READ_YIELD_BYTES = 32 * 1024  # a read this big hands the loop to the other sockets before the next
FD_RESERVE = 32  # descriptors kept for outbound connections, DNS, databases and log files


class Edge:
    """Sockets, timers and DNS around one proxy core; ``run(actions)`` executes what the core decided."""

    def __init__(self, proxy: ProxyCore, cfg: Config, dispatch: Dispatch | None = None) -> None:
        self.proxy = proxy
        self.cfg = cfg
        self.dispatch = dispatch  # several workers: who owns which call (proxyapp.workers)
        # [limits]: flood bans and the scanner filter (proxyapp.limits; the core's, which holds the
        # transaction budget too; a stand-in proxy without one gets its own).
        self.limits: Limits = getattr(proxy, "limits", None) or Limits.from_dict(cfg.limits)
        self._icmp: list[tuple[socket.socket, int]] = []  # raw ICMP sockets (proxyapp.icmp)
        self._limits_handle: asyncio.TimerHandle | None = None
        self.limits.on_settle.append(self._compact)
        self._peer: _PeerProtocol | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.udp: dict[Listen, _UdpProtocol] = {}
        self.tcp_servers: list[asyncio.AbstractServer] = []
        self.tcp_listen: list[Listen] = []
        # Open connections by (transport "tcp" | "tls", peer IP, peer port).
        self.conns: dict[tuple[str, str, int], TcpConnection] = {}
        self.tcp_limits = TcpLimits.from_dict(cfg.tcp)  # raises ConfigError ("tcp.idle_timeout")
        # [tls], validated against the listeners; anything wrong is a TlsStartError (an OSError:
        # "cannot start: config: tls.certificate: ...", no traceback), unusable files included.
        try:
            self.tls = TlsConfig.from_dict(cfg.tls, cfg.listen)
        except ConfigError as exc:
            raise TlsStartError(str(exc)) from None
        has_tls = any(x.transport == "tls" for x in cfg.listen)
        self._tls_server: ssl.SSLContext | None = self.tls.server_context() if has_tls else None
        self._tls_client: ssl.SSLContext | None = self.tls.client_context() if has_tls or cfg.tls else None
        self._tls_counts = {"tls_handshakes": 0, "tls_handshake_failures": 0}
        self._warn_tls = _RateLimitedWarning()
        self._tls_listeners: list[socket.socket] = []
        self.tcp: dict[TcpConnection, None] = {}  # every open connection, in opening order
        self._per_ip: dict[str, int] = {}  # inbound connections per source address
        self._tcp_counts = dict.fromkeys((
            "refused_total", "refused_max_connections", "refused_per_ip", "refused_fd_limit",
            "idle_closed", "message_timeouts", "slow_readers_closed", "fd_exhausted", "refused_banned",
        ), 0)
        self.fd_limit = 0  # RLIMIT_NOFILE's soft limit once started
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._warn_refused = _RateLimitedWarning()
        self._warn_fds = _RateLimitedWarning()
        self._connecting: dict[tuple[str, str, int], list[tuple[bytes, Any]]] = {}
        # Timer entries: [when, seq, tx (None once cancelled), name, wheel slot or None].
        self._heap: list[list[Any]] = []
        self._dead = 0  # cancelled entries still in the heap
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._next = math.inf
        self._slots: dict[int, dict[int, list[Any]]] = {}  # wheel slot -> {seq: entry}
        self._slot_heap: list[int] = []  # the slots that exist, soonest first
        self._wheel_handle: asyncio.Handle | None = None
        self._wheel_next = math.inf
        self._due: collections.deque[list[Any]] = collections.deque()  # taken from due slots, not yet fired
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind every listen socket; raises OSError when one cannot be bound."""
        self.loop = loop = asyncio.get_running_loop()
        self._raise_fd_limit()
        self._watch_accept_errors(loop)
        for listen in self.cfg.listen:
            if listen.transport == "udp":
                if self.dispatch is not None:
                    _, proto = await loop.create_datagram_endpoint(
                        functools.partial(_UdpProtocol, self, listen), sock=reuseport_socket(listen.host, listen.port),
                    )
                else:
                    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
                    _, proto = await loop.create_datagram_endpoint(
                        functools.partial(_UdpProtocol, self, listen), local_addr=(listen.host, listen.port),
                        family=family,
                    )
                self.udp[listen] = proto
                udp_transport = proto.transport
                assert udp_transport is not None  # connection_made ran before the endpoint was returned
                _big_receive_buffer(udp_transport.get_extra_info("socket"))
            elif listen.transport == "tls":
                await self._listen_tls(listen)
                self.tcp_listen.append(listen)
            else:
                server = await loop.create_server(
                    functools.partial(TcpConnection, self, listen, True), listen.host, listen.port, reuse_address=True,
                )
                self.tcp_servers.append(server)
                self.tcp_listen.append(listen)
            logger.info("listening on {}", listen)
        self._watch_icmp(loop)
        if self.dispatch is not None:
            sock = self.dispatch.sock
            sock.setblocking(False)
            _big_receive_buffer(sock)
            _, peer = await loop.create_datagram_endpoint(lambda: _PeerProtocol(self), sock=sock)
            self._peer = peer
        if self.tcp_listen:
            self._sweep_handle = loop.call_later(self.tcp_limits.sweep_interval, self._sweep)

    def hand_off(self, owner: int, packet: bytes) -> None:
        """Pass a datagram to the worker that owns its call (proxyapp.workers)."""
        peer = self._peer
        if peer is None or peer.transport is None:
            return
        self.dispatch.handed_off += 1  # type: ignore[union-attr]
        try:
            peer.transport.sendto(packet, self.dispatch.addrs[owner])  # type: ignore[union-attr]
        except OSError as exc:
            logger.warning("hand-off to worker {} failed: {}", owner, exc)

    def _watch_icmp(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ICMP errors about our UDP datagrams (proxyapp.icmp): one raw socket per family
        of the udp: listeners."""
        families = {socket.AF_INET6 if ":" in x.host else socket.AF_INET for x in self.udp}
        if any(x.host == "::" for x in self.udp):
            families.add(socket.AF_INET)  # a dual-stack socket sends to IPv4 peers too
        self._icmp = icmp.open_raw_sockets(families)
        # Our datagrams' sources: (address, port) of each udp: socket; a wildcard's by port alone.
        ours = ({(x.host, x.port) for x in self.udp}, {x.port for x in self.udp if x.host in ("0.0.0.0", "::")})
        for sock, family in self._icmp:
            parse = icmp.parse_icmp4 if family == socket.AF_INET else icmp.parse_icmp6
            loop.add_reader(sock.fileno(), self._icmp_readable, sock, parse, ours)

    def _icmp_readable(
        self, sock: socket.socket, parse: Callable[[bytes], icmp.IcmpError | None],
        ours: tuple[set[tuple[str, int]], set[int]],
    ) -> None:
        """ICMP errors (filtered by the kernel to the RFC 3261 §18.4 kinds). One about a request
        of a live client transaction, sent from one of our udp: sockets to the address the
        transaction sends to, fails its branch at once: a transport error, 503."""
        ports, any_ports = ours
        client_txs = self.proxy.client_txs
        for _ in range(ICMP_READ_BATCH):
            try:
                packet = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("raw ICMP socket: {}", exc)
                return
            err = parse(packet)
            if err is None or (err.source not in ports and err.source[1] not in any_ports):
                continue  # not about a datagram of ours (another process's, or no UDP)
            data = err.payload
            m = _TOP_BRANCH.search(data)
            if m is None or data.startswith(b"SIP/"):
                continue  # a response (its transaction is the caller's business), or too little quoted
            key = (m.group(1).decode("ascii", "replace"), data[:data.find(b" ")].decode("ascii", "replace"))
            tx = client_txs.get(key)
            if tx is not None and tx.dest.transport == "udp" and (tx.dest.host, tx.dest.port) == err.dest:
                self.proxy.stats.icmp_failures += 1
                self.run(self.proxy.transport_error(tx))

    async def close(self) -> None:
        if self._compact in self.limits.on_settle:  # (the core's Limits may outlive this edge)
            self.limits.on_settle.remove(self._compact)
        for sock, _ in self._icmp:
            if self.loop is not None:
                self.loop.remove_reader(sock.fileno())
            sock.close()
        self._icmp = []
        if self._peer is not None and self._peer.transport is not None:
            self._peer.transport.close()
        for proto in self.udp.values():
            if proto.transport is not None:
                proto.transport.close()
        for server in self.tcp_servers:
            server.close()
        for sock in self._tls_listeners:
            if self.loop is not None and sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
            sock.close()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for conn in list(self.tcp):
            conn.close()
        for conn in list(self.conns.values()):
            conn.close()
        for server in self.tcp_servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        if self._handle is not None:
            self._handle.cancel()
        if self._limits_handle is not None:
            self._limits_handle.cancel()
        if self._wheel_handle is not None:
            self._wheel_handle.cancel()
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ TCP limits

    def now(self) -> float:
        loop = self.loop
        return loop.time() if loop is not None else 0.0

    def tcp_stats(self) -> dict[str, int]:
        """TCP connection counters: ``connections`` (open now; ``connections_in`` of them
        accepted), ``refused_total`` (inbound connections closed at once: ``refused_per_ip``,
        ``refused_max_connections``, ``refused_fd_limit``), ``idle_closed``, ``message_timeouts``,
        ``slow_readers_closed`` (peers that did not read what we sent) and ``fd_exhausted`` (times
        the process was short of file descriptors). TLS connections count in all of these too;
        ``tls_connections`` are the TLS ones open now (handshake done), ``tls_handshakes`` the
        handshakes completed and ``tls_handshake_failures`` those that failed (both ways:
        certificate refused, not TLS, timed out)."""
        out = {"connections": len(self.tcp), "connections_in": sum(self._per_ip.values())}
        out.update(self._tcp_counts)
        out["tls_connections"] = sum(1 for c in self.tcp if c.proto == "tls" and c.transport is not None)
        out.update(self._tls_counts)
        return out

    # ------------------------------------------------------------------ TLS

    async def _listen_tls(self, listen: Listen) -> None:
        """A tls: listener: a listening socket this edge accepts on itself (``_accept_tls``)."""
        loop = self.loop
        assert loop is not None
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((listen.host, listen.port))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._tls_listeners.append(sock)
        loop.add_reader(sock.fileno(), self._accept_tls, sock, listen)

    def _accept_tls(self, lsock: socket.socket, listen: Listen) -> None:
        """Accept what is pending (at most TLS_ACCEPT_BATCH per call); each connection is admitted
        by the [tcp] limits and counted before its handshake (``_serve_tls``)."""
        loop = self.loop
        assert loop is not None
        for _ in range(TLS_ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # As asyncio does: stop accepting for a second (the socket stays readable).
                    self._fd_exhausted(self.now(), exc)
                    loop.remove_reader(lsock.fileno())
                    loop.call_later(1.0, self._resume_accept, lsock, listen)
                else:
                    logger.info("tls accept on {}: {}", listen, exc)
                return
            conn = TcpConnection(self, listen, True, "tls")
            conn.peer = (addr[0], addr[1])
            if not self._admit(conn.peer[0], sock.fileno()):
                sock.close()
                continue
            self.tcp_opened(conn)
            sock.setblocking(False)
            self._spawn(self._serve_tls(conn, sock))

    def _resume_accept(self, lsock: socket.socket, listen: Listen) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed() and lsock.fileno() >= 0:
            loop.add_reader(lsock.fileno(), self._accept_tls, lsock, listen)

    async def _serve_tls(self, conn: TcpConnection, sock: socket.socket) -> None:
        """The server side of the handshake (RFC 3261 §26.3.1), within tls.handshake_timeout;
        then ``conn`` runs like a TCP connection."""
        loop = self.loop
        assert loop is not None and self._tls_server is not None
        try:
            await loop.connect_accepted_socket(
                lambda: conn, sock, ssl=self._tls_server, ssl_handshake_timeout=self.tls.handshake_timeout,
            )
        except asyncio.CancelledError:
            sock.close()
            raise
        except Exception as exc:
            sock.close()  # (a no-op when the TLS transport closed it)
            conn.closed = True
            if conn.counted:
                self.tcp_closed(conn)
            self._handshake_failed(conn.peer, None, exc)
            return
        self._tls_counts["tls_handshakes"] += 1

    async def _open_tls(self, dest: Target, listen: Listen | None) -> TcpConnection | None:
        """A TLS connection to ``dest``: TCP first (10 s), then the handshake as the client,
        verifying the certificate against the name the request targets (RFC 5922 §7.2:
        TlsTarget.name, else the address). None (logged) when either fails."""
        loop, ctx = self.loop, self._tls_client
        assert loop is not None
        if ctx is None:
            logger.info("tls connect to {}:{}: no [tls] configuration", dest.host, dest.port)
            return None
        sock = socket.socket(socket.AF_INET6 if ":" in dest.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (dest.host, dest.port)), 10.0)
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            logger.info("tls connect to {}:{} failed: {}", dest.host, dest.port, exc or "timed out")
            return None
        name = getattr(dest, "name", None) or dest.host
        try:
            _, conn = await loop.create_connection(
                lambda: TcpConnection(self, listen, False, "tls"), sock=sock, ssl=ctx, server_hostname=name,
                ssl_handshake_timeout=self.tls.handshake_timeout,
            )
        except asyncio.CancelledError:
            sock.close()
            raise
        except Exception as exc:
            sock.close()
            self._handshake_failed((dest.host, dest.port), name, exc)
            return None
        self._tls_counts["tls_handshakes"] += 1
        return conn

    def _handshake_failed(self, peer: tuple[str, int], server_name: str | None, exc: BaseException) -> None:
        """Count a failed handshake and say why (a WARNING at most every 10 s; no traceback)."""
        self._tls_counts["tls_handshake_failures"] += 1
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"certificate refused: {exc.verify_message}"
        elif isinstance(exc, ssl.SSLError):
            why = exc.reason or str(exc)
        else:
            why = str(exc) or type(exc).__name__
        self._warn_tls(
            self.now(), "tls: handshake {} {}:{} failed: {} ({} failed so far)",
            "from" if server_name is None else f"with {server_name} at", peer[0], peer[1], why,
            self._tls_counts["tls_handshake_failures"],
        )

    def admit(self, conn: TcpConnection, transport: asyncio.BaseTransport) -> bool:
        """Whether an accepted connection may stay (max_connections, max_connections_per_ip, and
        file descriptors to spare); a refusal is counted and logged (rate-limited)."""
        sock = transport.get_extra_info("socket")
        return self._admit(conn.peer[0], sock.fileno() if sock is not None else -1)

    def _admit(self, ip: str, fd: int) -> bool:
        limits, counts = self.tcp_limits, self._tcp_counts
        reason = None
        if self.limits.is_banned(ip):
            # [limits]: a banned source gets no connection (counted, not logged: it is a flood).
            counts["refused_banned"] += 1
            counts["refused_total"] += 1
            return False
        if len(self.tcp) >= limits.max_connections:
            reason, why = "refused_max_connections", f"max_connections ({limits.max_connections}) reached"
        elif limits.max_connections_per_ip and self._per_ip.get(ip, 0) >= limits.max_connections_per_ip:
            reason, why = "refused_per_ip", f"max_connections_per_ip ({limits.max_connections_per_ip}) reached for {ip}"
        else:
            # Descriptors are handed out lowest first: this one's number is how many are in use.
            if self.fd_limit and fd >= self.fd_limit - FD_RESERVE:
                reason = "refused_fd_limit"
                why = f"file descriptors nearly exhausted (fd {fd}, open files limit {self.fd_limit})"
                counts["fd_exhausted"] += 1
        if reason is None:
            return True
        counts[reason] += 1
        counts["refused_total"] += 1
        warn = self._warn_fds if reason == "refused_fd_limit" else self._warn_refused
        warn(self.now(), "tcp: refusing connections: {} ({} refused so far)", why, counts["refused_total"])
        return False

    def tcp_opened(self, conn: TcpConnection) -> None:
        conn.counted = True
        self.tcp[conn] = None
        if conn.inbound:
            ip = conn.peer[0]
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1

    def tcp_closed(self, conn: TcpConnection) -> None:
        conn.counted = False
        self.tcp.pop(conn, None)
        if conn.inbound:
            ip = conn.peer[0]
            n = self._per_ip.get(ip, 0) - 1
            if n > 0:
                self._per_ip[ip] = n
            else:
                self._per_ip.pop(ip, None)

    def slow_reader(self, conn: TcpConnection, why: str) -> None:
        """Drop a peer that does not read what we send, with what is queued for it."""
        if conn.closed:
            return
        self._tcp_counts["slow_readers_closed"] += 1
        transport = conn.transport
        queued = transport.get_write_buffer_size() if transport is not None else 0
        logger.info("tcp {}:{}: {} ({} bytes unsent); dropping the connection", conn.peer[0], conn.peer[1], why, queued)
        conn.abort()

    def _sweep(self) -> None:
        """Every sweep_interval: close idle connections, unfinished messages past
        message_timeout and peers whose writes stalled for write_timeout."""
        limits, counts = self.tcp_limits, self._tcp_counts
        now = self.now()
        idle_before = now - limits.idle_timeout if limits.idle_timeout else -math.inf
        partial_before = now - limits.message_timeout if limits.message_timeout else -math.inf
        stalled_before = now - limits.write_timeout
        for conn in list(self.tcp):
            if conn.closed or conn.transport is None:
                continue  # (None: a TLS handshake under way; tls.handshake_timeout bounds it)
            if conn.stalled_since is not None and conn.stalled_since <= stalled_before:
                self.slow_reader(conn, f"its writes stalled for {limits.write_timeout:g} s")
            elif conn.partial_since is not None and conn.partial_since <= partial_before:
                counts["message_timeouts"] += 1
                logger.debug(
                    "tcp {}:{}: message incomplete after {:g} s ({} bytes); closing",
                    conn.peer[0], conn.peer[1], limits.message_timeout, conn.parser.buffered,
                )
                conn.close()
            elif conn.last_active <= idle_before:
                counts["idle_closed"] += 1
                logger.debug("tcp {}:{}: idle for {:g} s; closing", conn.peer[0], conn.peer[1], limits.idle_timeout)
                conn.close()
        self._probe_fds(now)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            self._sweep_handle = loop.call_later(limits.sweep_interval, self._sweep)

    def _probe_fds(self, now: float) -> None:
        """Whether a descriptor can still be opened: uvloop (libuv) accepts and drops connections
        silently when it cannot, so the sweep looks itself."""
        try:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._fd_exhausted(now, exc)
            return
        os.close(fd)

    def _fd_exhausted(self, now: float, exc: BaseException | None) -> None:
        self._tcp_counts["fd_exhausted"] += 1
        # The limit as it is now (prlimit may have changed it since the start; the guard in
        # admit() keeps the one it started with).
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._warn_fds(
            now, "out of file descriptors ({}): new TCP connections are refused by the kernel "
            "(open files limit {}, {} TCP connections open)", exc, limit, len(self.tcp),
        )

    def _raise_fd_limit(self) -> None:
        """RLIMIT_NOFILE's soft limit up to the hard limit, where allowed; logs the value."""
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            target = hard if hard != resource.RLIM_INFINITY else 1 << 20
            if soft != resource.RLIM_INFINITY and soft < target:
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                    logger.info("open files limit raised from {} to {}", soft, target)
                    soft = target
                except (OSError, ValueError) as exc:
                    logger.info("open files limit {} (raising it to {} failed: {})", soft, target, exc)
            else:
                logger.info("open files limit {}", soft)
        except (OSError, ValueError) as exc:  # pragma: no cover - no RLIMIT_NOFILE here
            logger.info("open files limit unknown: {}", exc)
            return
        self.fd_limit = soft if soft != resource.RLIM_INFINITY else 0
        wanted = self.tcp_limits.max_connections + FD_RESERVE
        if any(x.transport != "udp" for x in self.cfg.listen) and self.fd_limit and self.fd_limit < wanted:
            logger.warning(
                "open files limit {} is below tcp.max_connections + {} = {}: TCP connections will be "
                "refused from about {} on (raise LimitNOFILE / ulimit -n)",
                self.fd_limit, FD_RESERVE, wanted, self.fd_limit - FD_RESERVE,
            )

    def _watch_accept_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncio's loop reports an accept() that failed for want of descriptors to its exception
        handler (and retries a second later): say so as proxyapp, rate-limited."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                self._fd_exhausted(loop.time(), exc)
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    # ------------------------------------------------------------------ actions

    def run(self, actions: list[Any]) -> None:  # list[Out]; dispatched on type(a), which mypy cannot narrow
        for a in actions:
            t = type(a)
            if t is Send:
                self._send(a)
            elif t is StartTimer:
                self._start_timer(a.tx, a.name, a.delay)
            elif t is CancelTimer:
                entry = a.tx.timers.pop(a.name, None)
                if entry is not None:
                    self._disarm(entry)
            elif t is Terminated:
                timers = a.tx.timers
                if timers:
                    for entry in timers.values():
                        self._disarm(entry)
                    timers.clear()
            elif t is Resolve:
                self._spawn(self._resolve(a))
            else:
                logger.error("unknown action {!r}", a)

    def _limits_tick(self) -> None:
        """Close the flood limits' window, every sampling_time_unit seconds."""
        loop = self.loop
        assert loop is not None
        self.limits.tick(loop.time())
        self._limits_handle = loop.call_later(self.limits.cfg.sampling_time_unit, self._limits_tick)

    def _compact(self) -> None:
        """A flood's transactions are all gone: let go of the tables they grew."""
        self._slots = {slot: bucket for slot, bucket in self._slots.items() if bucket}
        self.proxy.server_txs.compact()
        self.proxy.client_txs.compact()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, a: Send) -> None:
        dest: Target = a.dest
        if dest.transport == "udp":
            proto = self.udp.get(dest.local) if dest.local is not None else None
            if proto is None:
                proto = next(iter(self.udp.values()), None)
            if proto is None or proto.transport is None:
                logger.warning("no UDP socket to send to {}:{}", dest.host, dest.port)
                self.run(self.proxy.transport_error(a.tx))
                return
            try:
                proto.transport.sendto(a.data, (dest.host, dest.port))
            except OSError as exc:
                logger.info("udp send to {}:{} failed: {}", dest.host, dest.port, exc)
                self.run(self.proxy.transport_error(a.tx))
            return
        conn = dest.conn
        key = (dest.transport, dest.host, dest.port)
        if conn is None or conn.closed:
            conn = self.conns.get(key)
        if conn is not None and not conn.closed:
            conn.send(a.data)
            return
        # RFC 3261 §18.2.2: the connection is gone (or there never was one): open a new one.
        pending = self._connecting.get(key)
        if pending is not None:
            pending.append((a.data, a.tx))
            return
        self._connecting[key] = [(a.data, a.tx)]
        self._spawn(self._connect(key, dest))

    async def _connect(self, key: tuple[str, str, int], dest: Target) -> None:
        loop = self.loop
        assert loop is not None
        proto = dest.transport
        listen = dest.local
        if listen is None:
            listen = next((x for x in self.tcp_listen if x.transport == proto), None)
        conn: TcpConnection | None
        if proto == "tls":
            conn = await self._open_tls(dest, listen)
        else:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: TcpConnection(self, listen), dest.host, dest.port), 10.0,
                )
            except (OSError, asyncio.TimeoutError) as exc:
                logger.info("tcp connect to {}:{} failed: {}", dest.host, dest.port, exc)
                conn = None
        if conn is None:
            for _, tx in self._connecting.pop(key, []):
                self.run(self.proxy.transport_error(tx))
            return
        if self._sweep_handle is None:
            self._sweep_handle = loop.call_later(self.tcp_limits.sweep_interval, self._sweep)
        for data, _ in self._connecting.pop(key, []):
            conn.send(data)

    async def _resolve(self, r: Resolve) -> None:
        try:
            addrs = await asyncio.wait_for(resolve_sip(r.name, r.port, r.transport), DNS_TIMEOUT)
        except Exception as exc:
            logger.info("resolving {} failed: {}", r.name, exc)
            addrs = []
        self.run(self.proxy.resolved(r.token, addrs))

    # ------------------------------------------------------------------ timers

    LONG_TIMER_S = 16.0  # timers at least this long go to the wheel
    WHEEL_SLOT_S = 1.0  # the wheel's resolution: a long timer fires up to this much late
    WHEEL_BATCH = 200  # wheel expirations per loop iteration (about 1 ms of work)

    def _disarm(self, entry: list[Any]) -> None:
        entry[2] = None
        slot = entry[4]
        if slot is None:
            self._dead += 1
            return
        bucket = self._slots.get(slot)
        if bucket is not None:
            bucket.pop(entry[1], None)

    def _start_timer(self, tx: Any, name: str, delay: float) -> None:
        old = tx.timers.get(name)
        if old is not None:
            self._disarm(old)
        when = self.loop.time() + delay  # type: ignore[union-attr]
        seq = next(self._seq)
        if delay >= self.LONG_TIMER_S:
            slot = math.ceil(when / self.WHEEL_SLOT_S)
            entry = [when, seq, tx, name, slot]
            tx.timers[name] = entry
            bucket = self._slots.get(slot)
            if bucket is None:
                bucket = self._slots[slot] = {}
                heapq.heappush(self._slot_heap, slot)
                if slot * self.WHEEL_SLOT_S < self._wheel_next:
                    self._schedule_wheel(slot * self.WHEEL_SLOT_S)
            bucket[seq] = entry
            return
        entry = [when, seq, tx, name, None]
        tx.timers[name] = entry
        heapq.heappush(self._heap, entry)
        if when < self._next:
            self._schedule(when)

    def _schedule_wheel(self, when: float) -> None:
        if self._wheel_handle is not None:
            self._wheel_handle.cancel()
        self._wheel_next = when
        self._wheel_handle = self.loop.call_at(when, self._fire_wheel)  # type: ignore[union-attr]

    def _fire_wheel(self) -> None:
        self._wheel_handle = None
        now = self.loop.time()  # type: ignore[union-attr]
        slots, due = self._slot_heap, self._due
        while slots and slots[0] * self.WHEEL_SLOT_S <= now:
            bucket = self._slots.pop(heapq.heappop(slots), None)
            if bucket:
                due.extend(sorted(bucket.values()))  # in deadline order within the slot
        # A cancelled entry already taken out of its slot has tx None: _expire skips it.
        for _ in range(min(self.WHEEL_BATCH, len(due))):
            self._expire(due.popleft())
        if due:
            # The rest after the loop's next look at the sockets. _wheel_next stays below any
            # slot, so arming a timer meanwhile does not move this drain to a later call_at.
            self._wheel_next = -math.inf
            self._wheel_handle = self.loop.call_soon(self._fire_wheel)  # type: ignore[union-attr]
        else:
            self._wheel_next = math.inf
            if slots:
                self._schedule_wheel(slots[0] * self.WHEEL_SLOT_S)

    def _expire(self, entry: list[Any]) -> None:
        """A timer's deadline came: fire it unless it was cancelled or re-armed since."""
        tx, name = entry[2], entry[3]
        if tx is not None and tx.timers.get(name) is entry:
            del tx.timers[name]
            self.run(self.proxy.timer_fired(tx, name))

    def _schedule(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next = when
        self._handle = self.loop.call_at(when, self._fire)  # type: ignore[union-attr]

    def _fire(self) -> None:
        self._handle = None
        self._next = math.inf
        heap = self._heap
        now = self.loop.time()  # type: ignore[union-attr]
        if self._dead > 10_000 and self._dead > len(heap) // 2:
            # Cancelled timers stay in the heap until their deadline (at most LONG_TIMER_S: the
            # long ones are on the wheel). When they are the majority, rebuild the heap from the
            # live ones: O(n) now and then instead of memory for dead entries.
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._dead = 0
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[2] is None:
                self._dead -= 1
            else:
                self._expire(entry)
        # Drop dead entries at the top so the next wake-up is for a live timer.
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._dead -= 1
        if heap and heap[0][0] < self._next:
            self._schedule(heap[0][0])

    @property
    def pending_timers(self) -> int:
        return (
            sum(1 for e in self._heap if e[2] is not None) + sum(len(b) for b in self._slots.values())
            + sum(1 for e in self._due if e[2] is not None)
        )
