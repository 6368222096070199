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
- A due slot is drained WHEEL_BATCH timers per loop iteration, not at once: at 2250 calls/s one
  1 s slot holds some 7000 expirations (Timers L, M and J of every call), and firing them in one
  callback held every datagram back for 20-30 ms once a second. In between, the loop reads its
  sockets; a timer in a drained slot still never fires early, and only later by the drain.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import itertools
import math
import socket
from typing import Any, cast

import fastsip
from loguru import logger

from .config import Config, Listen
from .core import ProxyCore, Resolve, Target
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
    """RFC 3263 §4.2 for a host name: SRV (_sip._udp / _sip._tcp) when no port is given, then A/AAAA.

    Returns [(transport, ip, port), ...] in preference order; [] when nothing resolves."""
    loop = asyncio.get_running_loop()
    targets: list[tuple[str, int]] = []
    if port is None:
        try:
            import dns.asyncresolver
            import dns.exception

            resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = DNS_TIMEOUT / 2
            answer = await resolver.resolve(f"_sip._{transport}.{name}", "SRV")
            recs = sorted(answer, key=lambda r: (r.priority, -r.weight))
            targets = [(str(r.target).rstrip("."), r.port) for r in recs]
        except Exception:  # no SRV (NXDOMAIN, NoAnswer, no resolver, no dnspython): plain A/AAAA
            targets = []
    if not targets:
        targets = [(name, port or 5060)]
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

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        edge = self.edge
        edge.run(edge.proxy.receive(data, Target("udp", addr[0], addr[1], None, self.listen)))

    def _dispatching(self, data: bytes, addr: tuple[str, int]) -> None:
        """Several workers (proxyapp.workers): handle our calls, hand the others to their owner."""
        owner = owner_of(data, self._workers)
        if owner < 0 or owner == self._me or (self.edge.proxy.draining and is_initial_invite(data)):
            # (While stopping, a new call is refused here: its owner may have exited already.)
            edge = self.edge
            edge.run(edge.proxy.receive(data, Target("udp", addr[0], addr[1], None, self.listen)))
            return
        self.edge.hand_off(owner, pack(data, addr[0], addr[1], self.index))

    def error_received(self, exc: Exception) -> None:
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
    """One TCP connection, inbound or outbound; framed by fastsip.StreamParser."""

    def __init__(self, edge: "Edge", listen: Listen | None) -> None:
        self.edge = edge
        self.listen = listen
        self.parser = fastsip.StreamParser(max_size=edge.cfg.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.closed = False
        self._pings = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.edge.conns[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            # feed() returns what fastsip.parse() returns for each framed message.
            msgs = cast("list[fastsip.Request | fastsip.Response]", self.parser.feed(data))
        except fastsip.ParseError as exc:
            # The byte stream cannot be framed any more (RFC 3261 §18.3): close the connection.
            logger.info("tcp {}:{}: {}; closing", self.peer[0], self.peer[1], exc)
            self.edge.proxy.stats.dropped += 1
            self.close()
            return
        if self.parser.pings != self._pings:
            # RFC 5626 §3.5.1: answer each CRLFCRLF ping with a CRLF pong.
            self.transport.write(b"\r\n" * (self.parser.pings - self._pings))  # type: ignore[union-attr]
            self._pings = self.parser.pings
        edge = self.edge
        for msg in msgs:
            edge.run(edge.proxy.receive_message(msg, Target("tcp", self.peer[0], self.peer[1], self, self.listen)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.edge.conns.get(self.peer) is self:
            del self.edge.conns[self.peer]

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class Edge:
    """Sockets, timers and DNS around one proxy core; ``run(actions)`` executes what the core decided."""

    def __init__(self, proxy: ProxyCore, cfg: Config, dispatch: Dispatch | None = None) -> None:
        self.proxy = proxy
        self.cfg = cfg
        self.dispatch = dispatch  # several workers: who owns which call (proxyapp.workers)
        self._peer: _PeerProtocol | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.udp: dict[Listen, _UdpProtocol] = {}
        self.tcp_servers: list[asyncio.AbstractServer] = []
        self.tcp_listen: list[Listen] = []
        self.conns: dict[tuple[str, int], TcpConnection] = {}
        self._connecting: dict[tuple[str, int], list[tuple[bytes, Any]]] = {}
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
            else:
                server = await loop.create_server(
                    functools.partial(TcpConnection, self, listen), listen.host, listen.port, reuse_address=True,
                )
                self.tcp_servers.append(server)
                self.tcp_listen.append(listen)
            logger.info("listening on {}", listen)
        if self.dispatch is not None:
            sock = self.dispatch.sock
            sock.setblocking(False)
            _big_receive_buffer(sock)
            _, peer = await loop.create_datagram_endpoint(lambda: _PeerProtocol(self), sock=sock)
            self._peer = peer

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

    async def close(self) -> None:
        if self._peer is not None and self._peer.transport is not None:
            self._peer.transport.close()
        for proto in self.udp.values():
            if proto.transport is not None:
                proto.transport.close()
        for server in self.tcp_servers:
            server.close()
        for conn in list(self.conns.values()):
            conn.close()
        for server in self.tcp_servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        if self._handle is not None:
            self._handle.cancel()
        if self._wheel_handle is not None:
            self._wheel_handle.cancel()
        for task in list(self._tasks):
            task.cancel()

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
        if conn is None or conn.closed:
            conn = self.conns.get((dest.host, dest.port))
        if conn is not None and not conn.closed:
            conn.send(a.data)
            return
        # RFC 3261 §18.2.2: the connection is gone (or there never was one): open a new one.
        key = (dest.host, dest.port)
        pending = self._connecting.get(key)
        if pending is not None:
            pending.append((a.data, a.tx))
            return
        self._connecting[key] = [(a.data, a.tx)]
        self._spawn(self._connect(key, dest))

    async def _connect(self, key: tuple[str, int], dest: Target) -> None:
        loop = self.loop
        assert loop is not None
        listen = dest.local if dest.local is not None else (self.tcp_listen[0] if self.tcp_listen else None)
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: TcpConnection(self, listen), dest.host, dest.port), 10.0,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            logger.info("tcp connect to {}:{} failed: {}", dest.host, dest.port, exc)
            for _, tx in self._connecting.pop(key, []):
                self.run(self.proxy.transport_error(tx))
            return
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
