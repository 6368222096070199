"""RFC 3261 §16 forwarding rules on top of the §17 transactions: the sans-IO proxy core.

Design
------
``Proxy`` takes events -- ``receive(data, source)`` for a datagram or ``receive_message(msg,
source)`` for a TCP-framed message, ``timer_fired(tx, name)``, ``transport_error(tx)``,
``resolved(branch, addresses)`` -- and returns the actions for the asyncio edge (``Send``,
``StartTimer``, ``CancelTimer``, ``Terminated``, ``Resolve``). It never reads a clock or touches
a socket; the wall clock used only for accounting timestamps is injected.

Per request the core does, in order (the order OpenSIPS' receive_msg + tm follow):

1. parse (fastsip); a request whose Via can be read but is otherwise bad gets 400, the rest is
   dropped and counted;
2. match a server transaction with one dict lookup (RFC 3261 §17.2.3, RFC 2543 fallback):
   retransmissions are absorbed and the last response resent, the ACK of a non-2xx is absorbed;
3. run the routing script (proxyapp.script) whose verbs call back into this module:
   ``t_relay`` creates the server transaction (100 for an INVITE), applies §16.6 (Max-Forwards,
   Record-Route, Route / strict routing, our Via with a unique z9hG4bK branch) and starts one
   client transaction per branch.

Responses match the client transaction (§17.1.3), lose our Via and go upstream according to the
§16.7 rules: 100 absorbed, other 1xx and every 2xx forwarded at once, the best final chosen over
branches (503 -> 500, nothing -> 408), non-2xx finals ACKed hop by hop by the transaction.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import fastsip
from fastsip import ParseError
from loguru import logger

from .config import Config, Listen
from .transaction import (
    ACCEPTED,
    COMPLETED,
    PROCEEDING,
    TRYING,
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Terminated,
    Timeout,
    TransportFailure,
    TxTable,
)

MAGIC = "z9hG4bK"
# The headers §16.6 step 8's loop hash covers beyond the request line, From, To, Call-ID, CSeq.
_PROXY_HEADERS = re.compile(rb"\nProxy-(?:Require|Authorization)[ \t]*:", re.IGNORECASE)


@dataclass(slots=True)
class Target:
    """Where a message goes or came from. ``conn`` is the TCP connection to reuse (responses go back
    on the connection the request came in on); ``local`` is the Listen socket to send from."""

    transport: str  # "udp" | "tcp"
    host: str
    port: int
    conn: Any = None
    local: Any = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(slots=True, eq=True)
class Resolve:
    """Action: resolve ``name`` (RFC 3263: SRV when ``port`` is None, then A/AAAA) and call
    ``Proxy.resolved(token, [(transport, ip, port), ...] or None)``."""

    name: str
    port: int | None
    transport: str
    token: Any


class ScriptError(Exception):
    """Raised by a verb used wrongly from the routing script (answered 500 like any script error)."""


# -----------------------------------------------------------------------------------------------
# Small helpers


def _norm_host(host: str) -> str:
    host = host.lower()
    if host.startswith("["):
        host = host[1:-1]
    return host


@functools.lru_cache(maxsize=4096)
def _host_is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(_norm_host(host))
        return True
    except ValueError:
        return False


def _same_ip(a: str, b: str) -> bool:
    if a == b:
        return True
    if ":" in a and ":" in b:  # IPv6 text forms differ; compare the addresses
        try:
            return ipaddress.ip_address(a) == ipaddress.ip_address(b)
        except ValueError:
            return False
    return False


def _uri_target(uri: Any) -> tuple[str, int | None, str] | None:
    """(host, port or None, transport) of a SIP URI per RFC 3263 §4.1 (maddr wins), or None."""
    if getattr(uri, "host", None) is None:
        return None
    params = uri.params
    transport = (params.get("transport") or "").lower()
    if not transport:
        transport = "tcp" if uri.scheme == "sips" else "udp"
    host = params.get("maddr") or uri.host
    return _norm_host(host), uri.port, transport


def parse_destination(dest: str) -> tuple[str, int | None, str]:
    """A t_relay destination: ``udp:host:port``, ``tcp:host[:port]``, ``host[:port]`` or a SIP URI.

    Raises ScriptError when it cannot be understood."""
    text = dest.strip()
    if text.lower().startswith(("sip:", "sips:")):
        try:
            uri = fastsip.parse_uri(text)
        except ParseError as exc:
            raise ScriptError(f"bad destination URI {dest!r}: {exc}") from None
        t = _uri_target(uri)
        if t is None:
            raise ScriptError(f"bad destination {dest!r}")
        return t
    transport = "udp"
    low = text.lower()
    for proto in ("udp:", "tcp:"):
        if low.startswith(proto):
            transport, text = proto[:-1], text[4:]
            break
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_s = text.partition(":")
    if not host:
        raise ScriptError(f"bad destination {dest!r}")
    try:
        port = int(port_s) if port_s else None
    except ValueError:
        raise ScriptError(f"bad destination port in {dest!r}") from None
    return _norm_host(host), port, transport


# -----------------------------------------------------------------------------------------------
# Per-socket precomputed bytes


class LocalSocket:
    """A listening socket and the bytes we write for it: Via prefix and Record-Route line."""

    __slots__ = ("listen", "transport", "host", "port", "via_prefix", "rr_line", "rr_uri", "sent_by")

    def __init__(self, listen: Listen, advertised: str | None) -> None:
        self.listen = listen
        self.transport = listen.transport
        host, port = listen.host, listen.port
        if advertised:
            if advertised.startswith("["):
                end = advertised.find("]")
                host = advertised[1:end]
                if advertised[end + 1 : end + 2] == ":":
                    port = int(advertised[end + 2 :])
            elif advertised.count(":") == 1:
                h, p = advertised.split(":")
                host, port = h, int(p)
            else:
                host = advertised
        self.host = host
        self.port = port
        hp = f"[{host}]" if ":" in host else host
        self.sent_by = f"{hp}:{port}"
        self.via_prefix = f"Via: SIP/2.0/{self.transport.upper()} {self.sent_by};branch=".encode()
        # Record-Route as OpenSIPS' record_route() writes it: the port only when not 5060.
        rr = hp if port == 5060 else f"{hp}:{port}"
        if self.transport != "udp":
            rr += f";transport={self.transport}"
        self.rr_uri = f"sip:{rr};lr"
        self.rr_line = f"Record-Route: <{self.rr_uri}>\r\n".encode()


# -----------------------------------------------------------------------------------------------
# Transaction context ("cell" in OpenSIPS tm): the server transaction and its branches


class Branch:
    """One forwarding target of a proxied request: its client transaction and its outcome."""

    __slots__ = (
        "ctx", "index", "id", "dest", "sock", "tx", "cancel_tx", "ruri", "via_line", "routes",
        "provisional", "cancel_pending", "cancelled", "final_status", "final", "local_reason",
        "done", "target", "msg",
    )

    def __init__(self, ctx: "TxContext", index: int, branch_id: str) -> None:
        self.ctx = ctx
        self.index = index
        self.id = branch_id
        self.dest: Target | None = None
        self.sock: LocalSocket | None = None
        self.tx: Any = None
        self.cancel_tx: Any = None
        self.ruri = ""
        self.via_line = b""
        self.routes: list[str] = []
        self.provisional = False
        self.cancel_pending = False
        self.cancelled = False
        self.final_status = 0
        self.final: Any = None  # the received final Response (None for a local outcome)
        self.local_reason = ""
        self.done = False
        self.target: tuple[str, int | None, str] | None = None
        self.msg: Any = None


class TxContext:
    """A stateful request: its server transaction, its branches, the script's per-transaction state."""

    __slots__ = (
        "request", "source", "reply_dest", "server_tx", "branches", "acc_mark", "failure_route",
        "reply_route", "branch_route", "cancelled", "final_sent", "final_status", "to_tag",
        "record_route", "maxfwd_done", "n", "loop_hash", "in_failure", "method", "key",
        "completed_reported", "dst_uri", "reply_code",
    )

    def __init__(self, request: Any, source: Target, reply_dest: Target, n: int) -> None:
        self.request = request
        self.source = source
        self.reply_dest = reply_dest
        self.server_tx: Any = None
        self.branches: list[Branch] = []
        self.acc_mark: Any = None
        self.failure_route: Any = None
        self.reply_route: Any = None
        self.branch_route: Any = None
        self.cancelled = False
        self.final_sent = False
        self.final_status = 0
        self.to_tag: str | None = None
        self.record_route = False
        self.maxfwd_done = False
        self.n = n
        self.loop_hash: int | None = None
        self.in_failure = False
        self.method = request.method
        self.key: Any = None
        self.completed_reported = False
        self.dst_uri: str | None = None
        self.reply_code = 0


# -----------------------------------------------------------------------------------------------


class Stats:
    """Counters an operator looks at (and tests assert on)."""

    __slots__ = (
        "received", "requests", "responses", "retransmissions", "absorbed_acks", "dropped",
        "bad_requests", "forwarded", "stateless", "script_errors", "sent",
    )

    # Declared for the type checker only (annotations, no class attributes: the slots hold them).
    received: int
    requests: int
    responses: int
    retransmissions: int
    absorbed_acks: int
    dropped: int
    bad_requests: int
    forwarded: int
    stateless: int
    script_errors: int
    sent: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Proxy:
    """The sans-IO stateful proxy. Entry points return the actions to run."""

    def __init__(
        self,
        cfg: Config,
        script: Any = None,
        acc: Any = None,
        *,
        wallclock: Callable[[], float] = time.time,
        branch_salt: str | None = None,
    ) -> None:
        from .script import Script  # script imports proxy helpers; avoid the cycle at import time

        self.cfg = cfg
        self.timers = cfg.timers
        from .script import ScriptContext

        self._script_context = ScriptContext
        self.script = script if script is not None else Script.load(cfg.script)
        self.script.proxy = self
        self.acc = acc
        self.wallclock = wallclock
        self.server_txs = TxTable()
        self.client_txs = TxTable()
        self.stats = Stats()
        self.sockets = [LocalSocket(listen, cfg.advertised_address) for listen in cfg.listen]
        self._sock_by_listen = {s.listen: s for s in self.sockets}
        self._salt = branch_salt if branch_salt is not None else os.urandom(3).hex()
        self._counter = itertools.count(1)
        self._out: list[Any] = []
        self.server_header = cfg.server_header
        self._server_hdr = (("Server", cfg.server_header),) if cfg.server_header else ()
        self.debug = cfg.log_level in ("TRACE", "DEBUG")
        # "is this me" (OpenSIPS check_self): (host, port) of every socket, advertised address and
        # alias; an alias without a port matches any port.
        me: set[tuple[str, int]] = set()
        for s in self.sockets:
            me.add((_norm_host(s.listen.host), s.listen.port))
            me.add((_norm_host(s.host), s.port))
        self._me_any_port: set[str] = set()
        for alias in cfg.aliases:
            if alias.startswith("["):
                end = alias.find("]")
                host, port_s = alias[1:end], alias[end + 2 :]
            elif alias.count(":") == 1:
                host, port_s = alias.split(":")
            else:
                host, port_s = alias, ""
            if port_s:
                me.add((_norm_host(host), int(port_s)))
            else:
                self._me_any_port.add(_norm_host(host))
        self._me = me
        self._me_hosts = {h for h, _ in me} | self._me_any_port

    # ------------------------------------------------------------------ public events

    def receive(self, data: bytes, source: Target) -> list[Any]:
        """A datagram (or one framed TCP message as bytes) arrived from ``source``."""
        self.stats.received += 1
        try:
            msg = fastsip.parse(data, max_size=self.cfg.max_message_size)
        except ParseError as exc:
            try:
                self._bad_message(data, source, exc)
            except Exception:
                logger.exception("internal error while answering a malformed message")
                self.stats.dropped += 1
            return self._flush()
        return self.receive_message(msg, source, counted=True)

    def receive_message(self, msg: Any, source: Target, counted: bool = False) -> list[Any]:
        """A parsed message arrived (the TCP edge frames with fastsip.StreamParser)."""
        if not counted:
            self.stats.received += 1
        try:
            if msg.is_request:
                self.stats.requests += 1
                self._on_request(msg, source)
            else:
                self.stats.responses += 1
                self._on_response(msg, source)
        except ParseError as exc:
            self._bad_parsed(msg, source, exc)
        except Exception:  # a bug must cost one message, never the proxy
            logger.exception("internal error while handling a message from {}:{}", source.host, source.port)
            self.stats.dropped += 1
        return self._flush()

    def timer_fired(self, tx: Any, name: str) -> list[Any]:
        """The timer ``name`` armed by a StartTimer for ``tx`` fired."""
        try:
            self._tx_actions(tx.on_timer(name))
        except Exception:
            logger.exception("internal error in timer {} of {!r}", name, tx)
        return self._flush()

    def transport_error(self, tx: Any) -> list[Any]:
        """The edge could not send for ``tx`` (connection refused, unreachable, ...)."""
        if tx is None:
            return []
        try:
            self._tx_actions(tx.on_transport_error())
        except Exception:
            logger.exception("internal error on transport error of {!r}", tx)
        return self._flush()

    def resolved(self, branch: Branch, addresses: list[tuple[str, str, int]] | None) -> list[Any]:
        """The result of a Resolve action: the branch is sent, or fails with 478."""
        try:
            ctx = branch.ctx
            if branch.done or ctx.final_sent or ctx.server_tx is None or ctx.server_tx.state == "Terminated":
                branch.done = True
                return self._flush()
            if not addresses:
                logger.info("cannot resolve {} for {}", branch.target[0] if branch.target else "?", ctx.request.call_id)
                self._branch_local_final(branch, 478, "Unresolvable destination")
            else:
                # Prefer an address we have a socket for (an IPv4-only proxy skips ::1).
                pick = addresses[0]
                for t, ip, port in addresses:
                    v6 = ":" in ip
                    if any(s.transport == t and (":" in s.listen.host) == v6 for s in self.sockets):
                        pick = (t, ip, port)
                        break
                self._send_branch(branch, *pick)
        except Exception:
            logger.exception("internal error after resolving a destination")
        return self._flush()

    # ------------------------------------------------------------------ plumbing

    def _flush(self) -> list[Any]:
        out = self._out
        self._out = []
        return out

    def _tx_actions(self, acts: list[Action]) -> None:
        """Queue transaction actions for the edge, consuming the TU notifications here."""
        out = self._out
        for a in acts:
            cls = type(a)
            if cls is Terminated:
                self._forget(a.tx)
                out.append(a)
            elif cls is Timeout:
                assert isinstance(a, Timeout)  # for the type checker: cls is Timeout
                self._on_client_timeout(a.tx, a.timer)
            elif cls is TransportFailure:
                self._on_client_transport_failure(a.tx)
            else:
                out.append(a)

    def _forget(self, tx: Any) -> None:
        key = tx.key
        cls = type(tx)
        owner = tx.owner
        if cls is ServerInviteTransaction or cls is ServerNonInviteTransaction:
            self.server_txs.discard(key, tx)
            tctx = owner
        else:
            self.client_txs.discard(key, tx)
            tctx = owner.ctx if owner is not None else None
        if tctx is not None:
            self._release_if_done(tctx)

    @staticmethod
    def _release_if_done(tctx: TxContext) -> None:
        """Break the context's reference cycles once its server transaction and every branch's
        client transaction have terminated.

        A context, its branches and their transactions point at each other (tx.owner, branch.ctx,
        ctx.branches). Freed by reference counting the moment the last transaction ends, they never
        reach the cycle collector, which proxyapp's main() disables: a collection over 100,000 live
        transactions stalls the event loop for half a second (tests/proxy/test_memory.py holds
        the core to "no cyclic garbage per call")."""
        stx = tctx.server_tx
        if stx is None:
            return
        if stx.state != "Terminated" and not (stx.state == COMPLETED and type(stx) is ServerNonInviteTransaction):
            # A Completed non-INVITE server transaction only resends its last response (Timer J,
            # 32 s): it needs no context, so that is released once the branches are over (Timer
            # K, 5 s) instead of living as long as Timer J.
            return
        branches = tctx.branches
        for b in branches:
            t = b.tx
            if t is None:
                if not b.done:
                    return  # still resolving its destination
            elif t.state != "Terminated":
                return
        for b in branches:
            if b.tx is not None:
                b.tx.owner = None
        tctx.branches = []
        stx.owner = None

    def is_myself(self, host: str, port: int | None = None) -> bool:
        """OpenSIPS check_self: is host[:port] one of our sockets, the advertised address or an alias?"""
        h = _norm_host(host)
        if h in self._me_any_port:
            return True
        return (h, port or 5060) in self._me

    def is_myself_uri(self, uri: Any) -> bool:
        host = getattr(uri, "host", None)
        if host is None:
            return False
        return self.is_myself(host, uri.port)

    # ------------------------------------------------------------------ malformed input

    def _bad_message(self, data: bytes, source: Target, exc: ParseError) -> None:
        """parse() refused the bytes. Answer 400 when it is a request whose Via we can still read."""
        head = bytes(data[:16]).lstrip(b"\r\n")
        if head.startswith(b"SIP/") or not head:
            self._drop(source, f"unparsable response: {exc}")
            return
        # Retry on the header block alone: a bad body or Content-Length must not hide the Via.
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = data.find(b"\n\n")
        block = data if end < 0 else data[:end]
        lines = [ln for ln in block.split(b"\n") if not ln.lower().startswith((b"content-length", b"l:"))]
        try:
            msg = fastsip.parse(b"\n".join(lines).rstrip(b"\r\n") + b"\r\nContent-Length: 0\r\n\r\n")
            if not msg.is_request:
                raise exc
        except ParseError:
            self._drop(source, f"unparsable request: {exc}")
            return
        self._bad_parsed(msg, source, exc)

    def _bad_parsed(self, msg: Any, source: Target, exc: ParseError) -> None:
        """A header of a parsed message is malformed: 400 with the reason when we can answer."""
        if not msg.is_request or msg.method == "ACK":
            self._drop(source, f"malformed {'ACK' if msg.is_request else 'response'}: {exc}")
            return
        try:
            vias = msg.via
            if not vias or msg.headers.get("Call-ID") is None or msg.headers.get("CSeq") is None:
                raise ParseError("no Via, Call-ID or CSeq")
            dest = self._reply_dest(msg, vias[0], source)
            status = getattr(exc, "status_hint", 400)
            prefix = "Bad Request" if status == 400 else fastsip.REASON_PHRASES.get(status, "Error")
            reason = f"{prefix} - " + str(exc).split("\n")[0][:80]
            resp = fastsip.make_response(msg, status, reason.replace("\r", " "), headers=self._server_hdr)
        except (ParseError, ValueError):
            self._drop(source, f"malformed request: {exc}")
            return
        self.stats.bad_requests += 1
        logger.info("400 to {}:{}: {}", source.host, source.port, exc)
        self._out.append(Send(dest, bytes(resp)))

    def _drop(self, source: Target, why: str) -> None:
        self.stats.dropped += 1
        logger.info("dropped a message from {}:{}: {}", source.host, source.port, why)

    # ------------------------------------------------------------------ requests

    def _reply_dest(self, msg: Any, via: Any, source: Target) -> Target:
        """RFC 3261 §18.2.2 / RFC 3581: where responses to this request go."""
        if source.transport != "udp":
            return Target(source.transport, source.host, source.port, source.conn, source.local)
        # We always stamp received when the sent-by differs, so the source address is right, unless
        # the client asked for its sent-by port (no rport).
        port = source.port if via.rport is not None else (via.port or 5060)
        return Target("udp", source.host, port, None, source.local)

    @staticmethod
    def server_key(msg: Any, via: Any, method: str) -> tuple[Any, ...]:
        """RFC 3261 §17.2.3 server transaction key (ACK and CANCEL pass their target method)."""
        branch = via.branch
        if branch and branch.startswith(MAGIC):
            return (branch, via.sent_by.lower(), method)
        # RFC 2543 fallback (§17.2.3): Request-URI, From tag, Call-ID, CSeq number, top Via.
        frm = msg.from_
        return (
            "2543", msg.raw_uri, frm.tag if frm else None, msg.call_id, msg.cseq.seq,
            via.sent_by.lower(), branch, method,
        )

    def _on_request(self, msg: Any, source: Target) -> None:
        vias = msg.via
        if not vias:
            raise ParseError("no Via header")
        via = vias[0]
        method = msg.method
        cseq = msg.cseq
        if cseq is None or msg.call_id is None or msg.from_ is None or msg.to is None:
            raise ParseError("missing From, To, Call-ID or CSeq")
        if cseq.method != method and method not in ("ACK", "CANCEL"):
            raise ParseError(f"CSeq method {cseq.method} does not match {method}")
        key = self.server_key(msg, via, "INVITE" if method == "ACK" else method)
        tx = self.server_txs.get(key)
        if self.debug:
            logger.debug(
                "request {} {} from {}:{}:{} call-id={} transaction {}",
                method, msg.raw_uri, source.transport, source.host, source.port, msg.call_id,
                "found" if tx is not None else "not found",
            )
        acc = self.acc
        if acc is not None:
            try:
                acc.observe_request(msg, source.addr, self.wallclock())
            except Exception:
                logger.exception("accounting observe_request failed")
        if tx is not None:
            if method == "ACK":
                if tx.state in (COMPLETED, "Confirmed"):
                    # §17.2.1: the ACK for our non-2xx final is absorbed by the transaction.
                    self.stats.absorbed_acks += 1
                    self._tx_actions(tx.on_ack())
                    return
                # An ACK for a 2xx that reuses the INVITE branch (RFC 2543 UAs): end to end.
            else:
                self.stats.retransmissions += 1
                self._tx_actions(tx.on_request())
                return
        lh = self._loop_hash(msg)  # on the request as received, before the script edits it
        self._stamp_via(msg, via, source)
        reply_dest = self._reply_dest(msg, via, source)
        ctx = self._script_context(self, msg, source, reply_dest, key)
        ctx.loop_hash = lh
        self.script.run_request(ctx)

    def _stamp_via(self, msg: Any, via: Any, source: Target) -> None:
        """RFC 3261 §18.2.1 received / RFC 3581 rport on the client's Via, where OpenSIPS puts them."""
        received = None if _same_ip(_norm_host(via.host), source.host) and via.rport is None else source.host
        rport = source.port if via.rport is True else None
        if received is None and rport is None:
            return
        # fastsip puts a new param right after the sent-by and fills a bare rport in place,
        # which is where OpenSIPS writes them (the seed's 100 Trying).
        if received is not None:
            msg.set_via_param("received", received)
        if rport is not None:
            msg.set_via_param("rport", str(rport))

    # ------------------------------------------------------------------ stateless replies

    def sl_reply(
        self, msg: Any, reply_dest: Target, status: int, reason: str | None,
        headers: tuple[tuple[str, str], ...] = (),
        source: Target | None = None, mark: Any = None,
    ) -> bytes:
        """Stateless reply (OpenSIPS sl_send_reply); the To tag is stable across retransmissions.

        Accounting sees a final one like a completed transaction (the local 483/404/500 of a
        script), with the script's mark if it set one. Returns the bytes sent."""
        to_tag = None
        if status > 100:
            to = msg.to
            if to is not None and to.tag is None:
                to_tag = self._sl_tag(msg)
        resp = fastsip.make_response(msg, status, reason, to_tag=to_tag, headers=(*headers, *self._server_hdr))
        data = bytes(resp)
        self._out.append(Send(reply_dest, data))
        if self.debug:
            logger.debug("stateless reply {} {} to {}:{}", status, resp.reason, reply_dest.host, reply_dest.port)
        if self.acc is not None:
            self._acc_response(resp)
            if status >= 200 and source is not None and msg.method != "ACK":
                try:
                    self.acc.transaction_completed(
                        mark, msg, status, resp.reason, to_tag or (msg.to.tag if msg.to else None),
                        source.addr, self.wallclock(),
                    )
                except Exception:
                    logger.exception("accounting transaction_completed failed")
        return data

    def _sl_tag(self, msg: Any) -> str:
        frm = msg.from_
        seed = f"{msg.call_id}|{frm.tag if frm else ''}|{msg.cseq.seq}"
        return f"{zlib.crc32(seed.encode()):08x}.{self._salt}"

    # ------------------------------------------------------------------ stateful: transactions

    def new_server_tx(self, sctx: Any, send_trying: bool = True) -> TxContext:
        """t_newtran: the server transaction (and its context) for the script's request."""
        existing: TxContext | None = sctx.tctx
        if existing is not None:
            return existing
        msg = sctx.msg
        tctx = TxContext(msg, sctx.source, sctx.reply_dest, next(self._counter))
        tctx.key = sctx.key
        tctx.acc_mark = sctx.acc_mark
        reliable = sctx.reply_dest.reliable
        tx: ServerInviteTransaction | ServerNonInviteTransaction
        if msg.method == "INVITE":
            tx = ServerInviteTransaction(sctx.key, sctx.reply_dest, reliable, self.timers)
        else:
            tx = ServerNonInviteTransaction(sctx.key, sctx.reply_dest, reliable, self.timers)
        tx.owner = tctx
        tctx.server_tx = tx
        self.server_txs[sctx.key] = tx
        sctx.tctx = tctx
        if msg.method == "INVITE" and send_trying:
            # Answered at once (OpenSIPS tm): the caller stops retransmitting (§17.2.1, §16.2).
            resp = fastsip.make_response(msg, 100, self.cfg.trying_reason, headers=self._server_hdr)
            self._tx_actions(tx.send_response(100, bytes(resp)))
            if self.debug:
                logger.debug("reply 100 {} to {}:{}:{} call-id={}", self.cfg.trying_reason,
                             tx.dest.transport, tx.dest.host, tx.dest.port, msg.call_id)
        return tctx

    def t_reply(
        self, tctx: TxContext, status: int, reason: str | None, headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """A locally generated response sent through the server transaction."""
        msg = tctx.request
        to_tag = None
        if status > 100 and msg.to is not None and msg.to.tag is None:
            if tctx.to_tag is None:
                tctx.to_tag = self._sl_tag(msg)
            to_tag = tctx.to_tag
        resp = fastsip.make_response(msg, status, reason, to_tag=to_tag, headers=(*headers, *self._server_hdr))
        self._send_upstream(tctx, resp, status)

    def _send_upstream(self, tctx: TxContext, resp: Any, status: int) -> None:
        """Pass a response (already without our Via) to the server transaction."""
        data = bytes(resp)
        tx = tctx.server_tx
        if status >= 200:
            first_final = not tctx.final_sent
            if first_final:
                tctx.final_sent = True
                tctx.final_status = status
            elif not (200 <= status < 300 and tctx.method == "INVITE"):
                return  # only 2xx may follow a final (RFC 3261 §16.7 step 5)
            if tx.state in (PROCEEDING, TRYING, ACCEPTED):
                self._tx_actions(tx.send_response(status, data))
            else:
                # A 2xx after a local 408/487: the transaction is already Completed; forward it
                # statelessly so the dialog still gets established end to end (RFC 3261 §16.7).
                self._out.append(Send(tctx.reply_dest, data))
            if first_final:
                self._acc_completed(tctx, resp, status)
        else:
            if tctx.final_sent:
                return
            self._tx_actions(tx.send_response(status, data))
        if self.acc is not None:
            self._acc_response(resp)
        if self.debug:
            logger.debug(
                "reply {} {} to {}:{}:{} call-id={}", status, resp.reason, tctx.reply_dest.transport,
                tctx.reply_dest.host, tctx.reply_dest.port, tctx.request.call_id,
            )

    def _acc_completed(self, tctx: TxContext, resp: Any, status: int, reason: str | None = None) -> None:
        """Report the transaction's final outcome once; ``resp`` None means a final never sent."""
        acc = self.acc
        if acc is None or tctx.completed_reported:
            return
        tctx.completed_reported = True
        try:
            to = resp.to if resp is not None else None
            acc.transaction_completed(
                tctx.acc_mark, tctx.request, status, resp.reason if resp is not None else reason,
                to.tag if to else None, tctx.source.addr, self.wallclock(),
            )
        except Exception:
            logger.exception("accounting transaction_completed failed")

    def _acc_branch_failed(self, tctx: TxContext, best: Branch) -> None:
        """Per-destination missed-call accounting, before the failure route may try another one."""
        fn = getattr(self.acc, "branch_failed", None)
        if fn is None:
            return
        try:
            resp = best.final
            to = resp.to if resp is not None else None
            reason = resp.reason if resp is not None else best.local_reason
            fn(tctx.acc_mark, tctx.request, best.final_status, reason, to.tag if to else None,
               tctx.source.addr, self.wallclock())
        except Exception:
            logger.exception("accounting branch_failed failed")

    def _acc_response(self, resp: Any) -> None:
        try:
            self.acc.observe_response(resp, self.wallclock())
        except Exception:
            logger.exception("accounting observe_response failed")

    # ------------------------------------------------------------------ forwarding (§16.6)

    def process_maxfwd(self, msg: Any, max_value: int = 70) -> bool:
        """§16.3 step 3 / §16.6 step 3: False when Max-Forwards is 0, else decrement (70 if absent)."""
        mf = msg.max_forwards
        if mf is None:
            msg.set_header("Max-Forwards", str(max_value))
            return True
        if mf <= 0:
            return False
        msg.set_header("Max-Forwards", str(mf - 1))
        return True

    def loop_hash(self, msg: Any) -> int:
        """§16.6 step 8: the part of our branch that detects loops (changes when the request spirals)."""
        return self._loop_hash(msg)

    @staticmethod
    def _loop_hash(msg: Any) -> int:
        frm, to = msg.from_, msg.to
        require = authorization = ""
        if _PROXY_HEADERS.search(bytes(msg)) is not None:
            # Rare: only then build the header multi-map (about 5 µs for an INVITE).
            h = msg.headers
            require = h.get("Proxy-Require") or ""
            authorization = h.get("Proxy-Authorization") or ""
        seed = "|".join((
            msg.raw_uri, frm.tag or "" if frm else "", to.tag or "" if to else "", msg.call_id or "",
            str(msg.cseq.seq), require, authorization,
        ))
        return zlib.crc32(seed.encode("utf-8", "surrogateescape"))

    def detect_loop(self, msg: Any, lh: int) -> bool:
        """§16.3 step 4: a Via of ours whose branch carries the same loop hash -> a loop."""
        prefix = f"{MAGIC}{lh:08x}."
        for v in msg.via:
            b = v.branch
            if b and b.startswith(prefix) and self.is_myself(v.host, v.port):
                return True
        return False

    def relay(self, sctx: Any, dest: str | None = None) -> bool:
        """t_relay: statefully forward the script's request (a new branch in a failure route)."""
        msg = sctx.msg
        method = msg.method
        if method == "ACK":
            return self.forward_stateless(sctx, dest)
        if method == "CANCEL":
            inv = self.server_txs.get(self.server_key(msg, msg.via[0], "INVITE"))
            if inv is None:
                # §16.10: no response context -> forward the CANCEL statelessly.
                return self.forward_stateless(sctx, dest)
            return self._relay_cancel(sctx, inv.owner)
        tctx = sctx.tctx
        if tctx is not None and tctx.final_sent:
            return False
        if tctx is None or not tctx.maxfwd_done:
            # §16.3 step 3: Max-Forwards 0 -> 483 (unless the script already processed it).
            if not sctx.maxfwd_done:
                mf = msg.max_forwards
                if mf is not None and mf <= 0:
                    tctx = self.new_server_tx(sctx, send_trying=False)
                    self.t_reply(tctx, 483, "Too Many Hops")
                    return True
        if tctx is None or tctx.loop_hash is None:
            lh = sctx.loop_hash if sctx.loop_hash is not None else self.loop_hash(msg)
            if self.detect_loop(msg, lh):
                # §16.3 step 4: our Via with the same loop hash: this request was here before.
                tctx = self.new_server_tx(sctx, send_trying=False)
                self.t_reply(tctx, 482, "Loop Detected")
                return True
        else:
            lh = tctx.loop_hash
        # The next hop first: a request we cannot route gets no transaction and no 100; t_relay
        # returns False and the script answers (OpenSIPS: sl_reply_error()).
        target = self._next_hop(msg, dest or sctx.dst_uri)
        if target is None:
            logger.info("t_relay: no route for {} {}", method, msg.raw_uri)
            return False
        tctx = self.new_server_tx(sctx)
        tctx.loop_hash = lh
        if not tctx.maxfwd_done:
            tctx.maxfwd_done = True
            if not sctx.maxfwd_done:
                self.process_maxfwd(msg)
        if sctx.record_route_flag:
            tctx.record_route = True
        if sctx.failure_route is not None:
            tctx.failure_route = sctx.failure_route
        if sctx.reply_route is not None:
            tctx.reply_route = sctx.reply_route
        if sctx.branch_route is not None:
            tctx.branch_route = sctx.branch_route
        if sctx.acc_mark is not None:
            tctx.acc_mark = sctx.acc_mark
        branch = Branch(tctx, len(tctx.branches), f"{MAGIC}{lh:08x}.{self._salt}{tctx.n:x}.{len(tctx.branches)}")
        branch.target = target
        branch.ruri = msg.raw_uri
        tctx.branches.append(branch)
        if tctx.branch_route is not None:
            self.script.run_branch(sctx, tctx, branch)
        host, port, transport = target
        if _host_is_ip(host):
            self._send_branch(branch, transport, host, port or 5060)
        else:
            self._out.append(Resolve(host, port, transport, branch))
        return True

    def _next_hop(self, msg: Any, dest: str | None) -> tuple[str, int | None, str] | None:
        """§16.6 steps 6-7 (and §16.5): destination from an explicit one, the Route set or the R-URI."""
        if dest:
            return parse_destination(dest)
        routes = msg.route
        if routes:
            first = routes[0].uri
            if getattr(first, "host", None) is not None and "lr" not in first.params:
                # §16.6 step 6: the next hop is a strict router: the R-URI goes to the end of the
                # Route set and the strict router's URI becomes the R-URI.
                ruri = msg.raw_uri
                msg.pop_route()
                self._append_route_last(msg, ruri)
                msg.set_uri(str(first))
                return _uri_target(first)
            return _uri_target(first)
        try:
            return _uri_target(msg.uri)
        except ParseError:
            return None

    @staticmethod
    def _append_route_last(msg: Any, uri: str) -> None:
        """Add ``<uri>`` as the last Route value, after the existing Route lines."""
        values = msg.headers.getall("Route")
        msg.remove_header("Route")
        values.append(f"<{uri}>")
        # One comma-joined Route line, at the end of the header block (its place does not matter).
        msg.append_header("Route", ", ".join(values))

    def _out_socket(self, tctx: TxContext, transport: str, ip: str) -> LocalSocket:
        src = self._sock_by_listen.get(tctx.source.local)
        v6 = ":" in ip
        if src is not None and src.transport == transport and (":" in src.listen.host) == v6:
            return src
        for s in self.sockets:
            if s.transport == transport and (":" in s.listen.host) == v6:
                return s
        for s in self.sockets:
            if s.transport == transport:
                return s
        return src or self.sockets[0]

    def _send_branch(self, branch: Branch, transport: str, ip: str, port: int) -> None:
        tctx = branch.ctx
        msg = branch.msg or tctx.request
        sock = self._out_socket(tctx, transport, ip)
        branch.sock = sock
        dest = Target(transport, ip, port, None, sock.listen)
        branch.dest = dest
        if transport != "udp" and msg.content_length is None:
            # §16.6 step 9 / §18.3: a stream needs Content-Length (a datagram could omit it).
            msg.set_header("Content-Length", str(len(msg.body)))
        raw = bytes(msg)
        i = raw.index(b"\n") + 1
        via_line = sock.via_prefix + branch.id.encode() + b"\r\n"
        branch.via_line = via_line
        parts = [raw[:i]]
        if tctx.record_route:
            in_sock = self._sock_by_listen.get(tctx.source.local)
            if in_sock is not None and in_sock is not sock and in_sock.transport != sock.transport:
                # Double Record-Route (OpenSIPS enable_double_rr): the callee's side first.
                parts.append(sock.rr_line)
                parts.append(in_sock.rr_line)
            else:
                parts.append(sock.rr_line)
        parts.append(via_line)
        parts.append(raw[i:])
        data = b"".join(parts)
        branch.ruri = msg.raw_uri
        key = (branch.id, msg.method)
        tx: ClientInviteTransaction | ClientNonInviteTransaction
        if msg.method == "INVITE":
            tx = ClientInviteTransaction(key, dest, dest.reliable, self.timers, data)
        else:
            tx = ClientNonInviteTransaction(key, dest, dest.reliable, self.timers, data)
        tx.owner = branch
        branch.tx = tx
        self.client_txs[key] = tx
        self.stats.forwarded += 1
        if self.debug:
            logger.debug(
                "forward {} {} call-id={} branch {} to {}:{}:{}", msg.method, msg.raw_uri, msg.call_id,
                branch.id, transport, ip, port,
            )
        self._tx_actions(tx.start())
        if tctx.cancelled and msg.method == "INVITE":
            branch.cancel_pending = True  # §9.1: CANCEL only once it has a provisional

    def forward_stateless(self, sctx: Any, dest: str | None = None) -> bool:
        """OpenSIPS forward(): §16.11 stateless forwarding (ACK for 2xx, CANCEL without a transaction)."""
        msg = sctx.msg
        if not sctx.maxfwd_done:
            if not self.process_maxfwd(msg):
                if msg.method != "ACK":
                    self.sl_reply(msg, sctx.reply_dest, 483, "Too Many Hops", source=sctx.source, mark=sctx.acc_mark)
                return True
            sctx.maxfwd_done = True
        target = self._next_hop(msg, dest or sctx.dst_uri)
        if target is None:
            return False
        host, port, transport = target
        if not _host_is_ip(host):
            # Stateless forwarding does not wait for DNS in this proxy; name destinations need
            # the stateful path. The ACK/CANCEL of a dialog normally carries an IP Route.
            logger.info("stateless forward to a host name ({}) is not supported; dropped", host)
            return False
        via = msg.via[0]
        lh = sctx.loop_hash if sctx.loop_hash is not None else self.loop_hash(msg)
        det = zlib.crc32(f"{via.branch}|{via.sent_by}|{msg.method}".encode())
        bid = f"{MAGIC}{lh:08x}.s{det:08x}.0"
        sock = self._out_socket_for_source(sctx.source, transport, host)
        dest_t = Target(transport, host, port or 5060, None, sock.listen)
        raw = bytes(msg)
        i = raw.index(b"\n") + 1
        data = raw[:i] + sock.via_prefix + bid.encode() + b"\r\n" + raw[i:]
        self.stats.stateless += 1
        if self.debug:
            logger.debug("stateless forward {} {} to {}:{}:{}", msg.method, msg.raw_uri, transport, host, port or 5060)
        self._out.append(Send(dest_t, data))
        return True

    def _out_socket_for_source(self, source: Target, transport: str, ip: str) -> LocalSocket:
        src = self._sock_by_listen.get(source.local)
        if src is not None and src.transport == transport:
            return src
        for s in self.sockets:
            if s.transport == transport:
                return s
        return src or self.sockets[0]

    # ------------------------------------------------------------------ CANCEL (§16.10, §9.1)

    def _relay_cancel(self, sctx: Any, inv_ctx: TxContext | None) -> bool:
        # The CANCEL is its own server transaction, answered 200 hop by hop at once.
        tctx = self.new_server_tx(sctx, send_trying=False)
        if not tctx.final_sent:
            self.t_reply(tctx, 200, "OK")
        if inv_ctx is None or inv_ctx.final_sent:
            return True
        inv_ctx.cancelled = True
        for branch in inv_ctx.branches:
            self._cancel_branch(branch)
        return True

    def _cancel_branch(self, branch: Branch) -> None:
        if branch.done or branch.cancelled or branch.tx is None:
            if branch.tx is None and not branch.done:
                branch.cancel_pending = True  # still resolving: cancel once it has a provisional
            return
        tx = branch.tx
        if tx.state not in (PROCEEDING, "Calling"):
            return
        if not branch.provisional:
            branch.cancel_pending = True  # §9.1: not before a provisional response
            return
        branch.cancelled = True
        branch.cancel_pending = False
        data = self._build_hop_request(branch, "CANCEL", to_value=branch.ctx.request.headers.get("To"))
        key = (branch.id, "CANCEL")
        dest = branch.dest
        assert dest is not None  # _send_branch sets it before the branch gets its tx
        ctx_tx = ClientNonInviteTransaction(key, dest, dest.reliable, self.timers, data)
        ctx_tx.owner = None  # its 200 is absorbed
        branch.cancel_tx = ctx_tx
        self.client_txs[key] = ctx_tx
        if self.debug:
            logger.debug("CANCEL branch {} to {}:{}", branch.id, dest.host, dest.port)
        self._tx_actions(ctx_tx.start())

    @staticmethod
    def _route_lines(branch: Branch) -> list[str]:
        """The Route header lines the branch's request carried (read back from its bytes)."""
        data = branch.tx.request
        head = data[: data.find(b"\r\n\r\n")]
        return [
            "Route: " + line[6:].strip().decode("utf-8", "surrogateescape")
            for line in head.split(b"\r\n")
            if line[:6].lower() == b"route:"
        ]

    def _build_hop_request(self, branch: Branch, method: str, to_value: str | None) -> bytes:
        """CANCEL (§9.1) or the ACK of a non-2xx (§17.1.1.3): same R-URI, branch, Route set, From,
        Call-ID and CSeq number as the INVITE this branch sent."""
        req = branch.ctx.request
        h = req.headers
        lines = [f"{method} {branch.ruri} SIP/2.0\r\n".encode(), branch.via_line]
        out = [
            *self._route_lines(branch),
            f"Max-Forwards: 70",
            f"From: {h.get('From')}",
            f"To: {to_value}",
            f"Call-ID: {h.get('Call-ID')}",
            f"CSeq: {req.cseq.seq} {method}",
        ]
        if self.server_header and method == "CANCEL":
            out.append(f"User-Agent: {self.server_header}")
        out.append("Content-Length: 0")
        lines.append(("\r\n".join(out) + "\r\n\r\n").encode())
        return b"".join(lines)

    # ------------------------------------------------------------------ responses (§16.7)

    def _on_response(self, resp: Any, source: Target) -> None:
        vias = resp.via
        if not vias:
            raise ParseError("response without Via")
        cseq = resp.cseq
        if cseq is None:
            raise ParseError("response without CSeq")
        status = resp.status
        top = vias[0]
        tx = self.client_txs.get((top.branch, cseq.method))
        if self.debug:
            logger.debug(
                "response {} {} for {} from {}:{}:{} call-id={} transaction {}",
                status, resp.reason, cseq.method, source.transport, source.host, source.port, resp.call_id,
                "found" if tx is not None else "not found",
            )
        if tx is None:
            self._forward_response_stateless(resp, vias)
            return
        ack = None
        if status >= 300 and cseq.method == "INVITE" and tx.state in (PROCEEDING, "Calling"):
            ack = self._build_hop_request(tx.owner, "ACK", to_value=resp.headers.get("To"))
        branch = tx.owner  # read first: a terminating transaction may release its context
        pass_up, acts = tx.on_response(status, ack)
        self._tx_actions(acts)
        if not pass_up:
            return
        if branch is None:
            return  # the 200 (or other final) for our CANCEL: hop by hop, absorbed
        tctx = branch.ctx
        if tctx.reply_route is not None or self.script.onreply_route is not None:
            if self.script.run_reply(tctx, resp, branch) is False and status < 200:
                return
        resp.pop_via()
        self._branch_response(branch, resp, status)

    def _forward_response_stateless(self, resp: Any, vias: list[Any]) -> None:
        """§16.7: no client transaction -> forward statelessly when the top Via is ours (late 2xx)."""
        top = vias[0]
        if len(vias) < 2 or not self.is_myself(top.host, top.port):
            self.stats.dropped += 1
            if self.debug:
                logger.debug("dropped a response that matches no transaction and is not for us")
            return
        resp.pop_via()
        nxt = vias[1]
        transport = nxt.transport.lower()
        host = nxt.received or _norm_host(nxt.host)
        rport = nxt.rport
        port = rport if isinstance(rport, int) and rport is not True else (nxt.port or 5060)
        sock = None
        for s in self.sockets:
            if s.transport == transport:
                sock = s
                break
        self.stats.stateless += 1
        self._out.append(Send(Target(transport, host, port, None, sock.listen if sock else None), bytes(resp)))
        if self.acc is not None:
            self._acc_response(resp)

    def _branch_response(self, branch: Branch, resp: Any, status: int) -> None:
        tctx = branch.ctx
        if status < 200:
            if not branch.provisional:
                branch.provisional = True
                if branch.cancel_pending or (tctx.cancelled and not branch.cancelled):
                    self._cancel_branch(branch)
            if status == 100:
                return  # §16.7 step 5: never forward a 100
            if not tctx.final_sent:
                self._send_upstream(tctx, resp, status)
            return
        if branch.done:
            # After a local outcome (Timer C): only a 2xx still matters.
            if 200 <= status < 300:
                self._send_upstream(tctx, resp, status)
            return
        branch.done = True
        branch.final_status = status
        if status < 300:
            # Kept only for choosing the best non-2xx final: a 2xx is sent at once, and the
            # parsed response would stay alive as long as the transaction (32 s, Timer M).
            # §16.7 step 5: a 2xx is forwarded at once; §16.7 step 10 cancels the other branches.
            self._send_upstream(tctx, resp, status)
            self._cancel_others(tctx, branch)
            return
        branch.final = resp
        if status >= 600:
            self._cancel_others(tctx, branch)
        self._maybe_complete(tctx)

    def _cancel_others(self, tctx: TxContext, winner: Branch) -> None:
        if tctx.method != "INVITE":
            return
        for b in tctx.branches:
            if b is not winner and not b.done:
                self._cancel_branch(b)

    def _branch_local_final(self, branch: Branch, status: int, reason: str) -> None:
        if branch.done:
            return
        branch.done = True
        branch.final_status = status
        branch.final = None
        branch.local_reason = reason
        self._maybe_complete(branch.ctx)

    def _on_client_timeout(self, tx: Any, timer: str) -> None:
        branch = tx.owner
        if branch is None:
            return  # our CANCEL timed out: the INVITE's own timers will finish the branch
        if timer == "C" and branch.provisional and not branch.cancelled:
            # §16.8: Timer C with a provisional: CANCEL the branch, answer as if 408.
            self._cancel_branch(branch)
        logger.info("no final response on branch {} (timer {}) call-id={}", branch.id, timer, branch.ctx.request.call_id)
        self._branch_local_final(branch, 408, "Request Timeout")

    def _on_client_transport_failure(self, tx: Any) -> None:
        branch = tx.owner
        if branch is None:
            return
        logger.info("transport error on branch {} to {}:{}", branch.id, branch.dest.host, branch.dest.port)
        self._branch_local_final(branch, 503, "Service Unavailable")

    def _maybe_complete(self, tctx: TxContext) -> None:
        """§16.7 step 6: when every branch has its final, pick the best one (after the failure route)."""
        if tctx.final_sent or any(not b.done for b in tctx.branches):
            return
        best = self._best_branch(tctx)
        if best is not None and tctx.acc_mark is not None and tctx.method == "INVITE" and self.acc is not None:
            self._acc_branch_failed(tctx, best)
        if tctx.failure_route is not None and best is not None and best.final_status >= 300:
            route = tctx.failure_route
            tctx.failure_route = None  # OpenSIPS: one shot; the failure route may arm it again
            tctx.reply_code = best.final_status
            n_before = len(tctx.branches)
            self.script.run_failure(tctx, route, best)
            if tctx.final_sent:
                return
            if len(tctx.branches) > n_before and any(not b.done for b in tctx.branches):
                return  # serial forking: wait for the new branch
            best = self._best_branch(tctx)
        if best is None:
            return
        status = best.final_status
        if tctx.method != "INVITE" and best.final is None and status == 408:
            # RFC 4320 §4.2: never 408 to a non-INVITE; the client times out by itself. The server
            # transaction stays to absorb its retransmissions until then (never forwarded twice).
            tctx.final_sent = True
            self._tx_actions(tctx.server_tx.abandon())
            # Accounting still sees the local 408 it would have been: a marked request with
            # `failed` is recorded (OpenSIPS tm accounts its internal 408), and a BYE that timed
            # out ends its dialog, so the CDR is written (RFC 3261 §15.1.1). Without this a call
            # whose callee never answered the BYE had neither BYE record nor CDR.
            self._acc_completed(tctx, None, 408, "Request Timeout")
            return
        if best.final is None:
            if status == 408 and tctx.cancelled:
                self.t_reply(tctx, 487, "Request Terminated")
            else:
                self.t_reply(tctx, status, best.local_reason or None)
            return
        if status == 503:
            # §16.7 step 6: a 503 received must not make the upstream client think *we* are down.
            self.t_reply(tctx, 500, "Server Internal Error")
            return
        self._send_upstream(tctx, best.final, status)

    @staticmethod
    def _best_branch(tctx: TxContext) -> Branch | None:
        best: Branch | None = None
        for b in tctx.branches:
            if not b.done:
                continue
            if best is None:
                best = b
                continue
            s, bs = b.final_status, best.final_status
            if bs >= 600:
                continue
            if s >= 600 or s // 100 < bs // 100:
                best = b
            elif s // 100 == bs // 100 and best.final is None and b.final is not None:
                best = b  # a real response beats our own 408 of the same class
        return best
