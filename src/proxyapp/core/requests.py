"""RFC 3261 §16.3-16.6 for requests: validation, server-transaction matching, and forwarding.

A request is parsed, matched against the server transactions (§17.2.3, one dict lookup;
retransmissions and the ACK of a non-2xx are absorbed there), stamped with received/rport
(§18.2.1, RFC 3581) and handed to the routing script. The script's t_relay comes back to
``relay``: §16.3 checks (Max-Forwards, loops), the next hop from the destination, Route set or
Request-URI (§16.5-16.6 steps 6-7, strict routers included), Record-Route (§16.6 step 4, doubled
when the request changes transport), our Via with a branch that carries the loop hash (§16.6 step
8), and one client transaction per branch.
"""

from __future__ import annotations

import re
import zlib

from fastsip import MissingHeaders, ParseError, Request, Via, split_values
from loguru import logger

from ..transaction import COMPLETED, ClientInviteTransaction, ClientNonInviteTransaction
from .addresses import (
    HopTarget, ScriptError, Target, TlsTarget, host_is_ip, norm_host, parse_destination, same_ip,
    uri_target,
)
from .base import CoreBase
from .context import MAGIC, Branch, Destination, RequestState, Resolve, TxContext, TxKey
from .sockets import LocalSocket

# The headers §16.6 step 8's loop hash covers beyond the request line, From, To, Call-ID, CSeq.
_PROXY_HEADERS = re.compile(rb"\nProxy-(?:Require|Authorization)[ \t]*:", re.IGNORECASE)


class RequestRouting(CoreBase):
    """Requests in: transaction matching, then §16.6 forwarding for the script's t_relay."""

    # ------------------------------------------------------------------ receiving (§16.3, §17.2.3)

    @staticmethod
    def server_key(msg: Request, via: Via, method: str) -> TxKey:
        """RFC 3261 §17.2.3 server transaction key (ACK and CANCEL pass their target method)."""
        branch = via.branch
        if branch and branch.startswith(MAGIC):
            return (branch, via.sent_by.lower(), method)
        # RFC 2543 fallback (§17.2.3): Request-URI, From tag, Call-ID, CSeq number, top Via.
        frm = msg.from_
        cseq = msg.cseq
        return (
            "2543", msg.raw_uri, frm.tag if frm else None, msg.call_id, cseq.seq if cseq else None,
            via.sent_by.lower(), branch, method,
        )

    def _on_request(self, msg: Request, source: Target) -> None:
        vias = msg.via
        if not vias:
            raise ParseError("no Via header")
        via = vias[0]
        method = msg.method
        cseq = msg.cseq
        if cseq is None or msg.call_id is None or msg.from_ is None or msg.to is None:
            # RFC 3261 §8.1.1 / RFC 4475 §3.3.1: answered 400 naming them (replies.py).
            missing = tuple(name for name, value in (
                ("To", msg.to), ("From", msg.from_), ("CSeq", cseq), ("Call-ID", msg.call_id),
            ) if value is None)
            raise MissingHeaders("missing " + ", ".join(missing), 0, missing)
        if cseq.method != method and method not in ("ACK", "CANCEL"):
            raise ParseError(f"CSeq method {cseq.method} does not match {method}")
        # Read before any routing, so a malformed Request-URI or Max-Forwards is a 400 here
        # (§16.3 steps 1 and 3) and not an exception in the script (the values are cached).
        msg.uri
        msg.max_forwards
        key = self.server_key(msg, via, "INVITE" if method == "ACK" else method)
        tx = self.server_txs.get(key)
        if self.debug:
            logger.debug(
                "request {} {} from {}:{}:{} call-id={} transaction {}",
                method, msg.raw_uri, source.transport, source.host, source.port, msg.call_id,
                "found" if tx is not None else "not found",
            )
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
        elif method == "ACK":
            to = msg.to
            tag = to.tag if to is not None else None
            # Our local tags end with the salt: most ACKs (a 2xx's, end to end) skip the hash.
            if tag is not None and tag.endswith(self._salt) and tag == self._sl_tag(msg):
                # The ACK of a final we sent statelessly (OpenSIPS sl_filter_ACK): hop by hop,
                # it ends here (RFC 3261 §17.2.1); relaying it would send it to ourselves.
                self.stats.absorbed_acks += 1
                return
        elif method == "BYE":
            self.dialogs.pop(msg.call_id, None)  # (the statistics' active dialogs)
        elif method == "INVITE" and self.draining and msg.to.tag is None:
            # Stopping (SIGTERM): no new call; the caller tries elsewhere or later (§21.5.4).
            self.stats.draining_rejects += 1
            self.sl_reply(msg, self._reply_dest(msg, via, source), 503, "Service Unavailable",
                          (("Retry-After", str(self.drain_retry_after)),), source)
            return
        acc = self.acc
        if acc is not None:
            # Not for a retransmission (the first arrival is what counts): INVITEs reusing a live
            # branch with new Call-IDs are retransmissions here and must not be pending calls there.
            try:
                acc.observe_request(msg, source.addr, self.wallclock())
            except Exception:
                logger.exception("accounting observe_request failed")
        b = self.tx_budget
        if (b.live >= b.max_live or b.bytes >= b.max_bytes) and method != "ACK" and method != "CANCEL":
            # [limits] max_transactions / max_transaction_bytes: no new transaction (memory stays
            # bounded); the client retries later (§21.5.4). CANCEL and ACK still end calls.
            b.rejected += 1
            self.sl_reply(msg, self._reply_dest(msg, via, source), 503, "Service Unavailable",
                          (("Retry-After", str(b.retry_after)),), source)
            return
        lh = self._loop_hash(msg)  # on the request as received, before the script edits it
        self._stamp_via(msg, via, source)
        routed, dst = self._remove_own_routes(msg)
        out = self._out
        queued = len(out)
        self.script.handle_request(msg, source, self._reply_dest(msg, via, source), key, lh, routed, dst)
        if len(out) == queued:
            self.stats.script_drops += 1  # neither relayed nor answered: the script dropped it

    def _remove_own_routes(self, msg: Request) -> tuple[bool, str | None]:
        """RFC 3261 §16.4: strip the Route values that name us, before the script routes.

        Returns whether the request arrived with a Route set (what the script's loose_route()
        reports) and the ``received`` destination a removed Route of ours carried (a binding
        registered through this node, reached from another node: RFC 3327 Path, as Kamailio's
        path module with use_received)."""
        routes = msg.route
        if not routes:
            return False, None
        try:
            uri = msg.uri
        except ParseError:
            uri = None
        if uri is not None and uri.user is None and "lr" in uri.params and self.is_myself_uri(uri):
            # §16.4: a strict router before us put our Record-Route URI (always with ;lr) into
            # the Request-URI: the real Request-URI is the last Route value.
            values = [e for v in msg.headers.getall("Route") for e in split_values(v) if e]
            last = values.pop()
            msg.remove_header("Route")
            if values:
                msg.append_header("Route", ", ".join(values))
            msg.set_uri(last.strip().lstrip("<").split(">")[0])
            routes = msg.route
        dst = None
        while routes:
            top = routes[0].uri
            if not self.is_myself_uri(top):
                break
            assert top is not None  # is_myself_uri(None) is False
            received = top.params.get("received")
            if received:
                dst = received
            msg.pop_route()
            routes = msg.route
        return True, dst

    def _stamp_via(self, msg: Request, via: Via, source: Target) -> None:
        """RFC 3261 §18.2.1 received / RFC 3581 rport on the client's Via, where OpenSIPS puts them."""
        received = None if same_ip(norm_host(via.host), source.host) and via.rport is None else source.host
        rport = source.port if via.rport is True else None
        if received is None and rport is None:
            return
        # fastsip puts a new param right after the sent-by and fills a bare rport in place,
        # which is where OpenSIPS writes them (the seed's 100 Trying).
        if received is not None:
            msg.set_via_param("received", received)
        if rport is not None:
            msg.set_via_param("rport", str(rport))

    def _reply_dest(self, msg: Request, via: Via, source: Target) -> Target:
        """RFC 3261 §18.2.2 / RFC 3581: where responses to this request go."""
        if source.transport != "udp":
            return Target(source.transport, source.host, source.port, source.conn, source.local)
        # We always stamp received when the sent-by differs, so the source address is right, unless
        # the client asked for its sent-by port (no rport).
        port = source.port if via.rport is not None else (via.port or 5060)
        return Target("udp", source.host, port, None, source.local)

    # ------------------------------------------------------------------ §16.3 checks

    def process_maxfwd(self, msg: Request, max_value: int = 70) -> bool:
        """§16.3 step 3 / §16.6 step 3: False when Max-Forwards is 0, else decrement (70 if absent)."""
        mf = msg.max_forwards
        if mf is None:
            msg.set_header("Max-Forwards", str(max_value))
            return True
        if mf <= 0:
            return False
        msg.set_header("Max-Forwards", str(mf - 1))
        return True

    def loop_hash(self, msg: Request) -> int:
        """§16.6 step 8: the part of our branch that detects loops (changes when the request spirals)."""
        return self._loop_hash(msg)

    @staticmethod
    def _loop_hash(msg: Request) -> int:
        frm, to, cseq = msg.from_, msg.to, msg.cseq
        require = authorization = ""
        if _PROXY_HEADERS.search(bytes(msg)) is not None:
            # Rare: only then build the header multi-map (about 5 µs for an INVITE).
            h = msg.headers
            require = h.get("Proxy-Require") or ""
            authorization = h.get("Proxy-Authorization") or ""
        seed = "|".join((
            msg.raw_uri, frm.tag or "" if frm else "", to.tag or "" if to else "", msg.call_id or "",
            str(cseq.seq if cseq else None), require, authorization,
        ))
        return zlib.crc32(seed.encode("utf-8", "surrogateescape"))

    def detect_loop(self, msg: Request, lh: int) -> bool:
        """§16.3 step 4: a Via of ours whose branch carries the same loop hash -> a loop."""
        prefix = f"{MAGIC}{lh:08x}."
        for v in msg.via:
            b = v.branch
            if b and b.startswith(prefix) and self.is_myself(v.host, v.port):
                return True
        return False

    # ------------------------------------------------------------------ t_relay (§16.6)

    def relay(self, sctx: RequestState, dest: str | None = None) -> bool:
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
        forks = sctx.forks
        if forks and not dest:
            return self._relay_forks(sctx, lh, forks)
        # The next hop first: a request we cannot route gets no transaction and no 100; t_relay
        # returns False and the script answers (OpenSIPS: sl_reply_error()).
        target = self._next_hop(msg, dest or sctx.dst_uri)
        if target is None:
            if msg.uri.scheme not in ("sip", "sips", "tel") and not msg.route:
                # §16.3 step 2: a Request-URI scheme this proxy does not understand (RFC 4475
                # §3.3.2). tel: is understood; only the script knows where it goes.
                self.sl_reply(msg, sctx.reply_dest, 416, "Unsupported URI Scheme", source=sctx.source,
                              mark=sctx.acc_mark)
                return True
            logger.info("t_relay: no route for {} {}", method, msg.raw_uri)
            return False
        tctx = self._start(sctx, lh)
        branch = Branch(tctx, len(tctx.branches), f"{MAGIC}{lh:08x}.{self._salt}{tctx.n:x}.{len(tctx.branches)}")
        branch.target = target
        branch.ruri = msg.raw_uri
        tctx.branches.append(branch)
        if tctx.branch_route is not None:
            self.script.run_branch(tctx, branch)
        self._dispatch_branch(branch, target)
        if branch.done:
            self._maybe_complete(tctx)  # failed at once (a SIPS request with no TLS hop: _no_tls_hop)
        return True

    def _dispatch_branch(self, branch: Branch, target: HopTarget) -> None:
        host, port, transport = target
        if transport != "tls" and branch.ruri.startswith(("sips:", "SIPS:")):
            self._no_tls_hop(branch, transport)
        elif host_is_ip(host):
            self._send_branch(branch, transport, host, port or (5061 if transport == "tls" else 5060))
        else:
            self._out.append(Resolve(host, port, transport, branch))

    def _no_tls_hop(self, branch: Branch, transport: str) -> None:
        """RFC 3261 §26.2.2 / RFC 5630 §3.1.3: a request for a SIPS Request-URI is sent over TLS
        on every hop, never in the clear. When the next hop is not TLS (a Route, a destination
        or a binding over UDP/TCP) or there is no tls: socket to send from, the branch fails
        with 480 (Temporarily Unavailable): the target exists, it cannot be reached securely
        from here now (416 would say we do not understand "sips:", which is not the case).
        Marked done without completing: the caller completes (relay, _fork_group, resolved)."""
        logger.info(
            "branch {} of call-id={}: {} cannot go over {} (RFC 3261 §26.2.2): 480",
            branch.id, branch.ctx.request.call_id, branch.ruri,
            "TLS (no tls listener)" if transport == "tls" else transport.upper(),
        )
        branch.done = True
        branch.final_status = 480
        branch.final = None
        branch.local_reason = "Temporarily Unavailable"

    def _start(self, sctx: RequestState, lh: int) -> TxContext:
        """The server transaction t_relay forwards in (100 for an INVITE), Max-Forwards
        decremented once (§16.6 step 3), and what the script armed before t_relay moved onto it."""
        tctx = self.new_server_tx(sctx)
        tctx.loop_hash = lh
        if not tctx.maxfwd_done:
            tctx.maxfwd_done = True
            if not sctx.maxfwd_done:
                self.process_maxfwd(sctx.msg)
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
        return tctx

    # ------------------------------------------------------------------ forking (§16.5, §16.6)

    def _relay_forks(self, sctx: RequestState, lh: int, groups: list[list[Destination]]) -> bool:
        """t_relay to a branch set: the first group's branches at once (parallel forking), the
        next groups when every branch of the one before failed (§16.5: the proxy may fork in
        parallel or in sequence; q decides the groups)."""
        sctx.forks = None
        tctx = self._start(sctx, lh)
        tctx.next_groups = list(groups[1:])
        self._fork_group(tctx, groups[0], only=len(groups) == 1 and len(groups[0]) == 1)
        return True

    def _fork_group(self, tctx: TxContext, group: list[Destination], only: bool = False) -> None:
        """One branch per destination (§16.6, once per target). Each branch gets its own copy of
        the request, unless it is the only branch there will ever be."""
        lh = tctx.loop_hash
        assert lh is not None  # set by relay before any branch
        for d in group:
            m = tctx.request
            if not only:
                copy = m.copy()
                assert isinstance(copy, Request)  # a Request's copy (the py backend types it Message)
                m = copy
            m.set_uri(d.ruri)
            for value in reversed(d.route):
                m.insert_header("Route", value)
            n = len(tctx.branches)
            branch = Branch(tctx, n, f"{MAGIC}{lh:08x}.{self._salt}{tctx.n:x}.{n}")
            branch.msg = m
            branch.ruri = d.ruri
            tctx.branches.append(branch)
            try:
                target = self._next_hop(m, d.dst_uri)
            except ScriptError:
                target = None
            if target is None:
                logger.info("fork: no route to {} for call-id={}", d.ruri, m.call_id)
                branch.done = True
                branch.final_status = 478
                branch.local_reason = "Unresolvable destination"
                continue
            branch.target = target
            if tctx.branch_route is not None:
                self.script.run_branch(tctx, branch)
            self._dispatch_branch(branch, target)
        if all(b.done for b in tctx.branches):
            self._maybe_complete(tctx)

    def _next_hop(self, msg: Request, dest: str | None) -> HopTarget | None:
        """§16.6 steps 6-7 (and §16.5): destination from an explicit one, the Route set or the R-URI."""
        if dest:
            return parse_destination(dest)
        routes = msg.route
        if routes:
            first = routes[0].uri
            if first is not None and first.host is not None and "lr" not in first.params:
                # §16.6 step 6: the next hop is a strict router: the R-URI goes to the end of the
                # Route set and the strict router's URI becomes the R-URI.
                ruri = msg.raw_uri
                msg.pop_route()
                self._append_route_last(msg, ruri)
                msg.set_uri(str(first))
                return uri_target(first)
            return uri_target(first) if first is not None else None
        try:
            return uri_target(msg.uri)
        except ParseError:
            return None

    @staticmethod
    def _append_route_last(msg: Request, uri: str) -> None:
        """Add ``<uri>`` as the last Route value, after the existing Route lines."""
        values = msg.headers.getall("Route")
        msg.remove_header("Route")
        values.append(f"<{uri}>")
        # One comma-joined Route line, at the end of the header block (its place does not matter).
        msg.append_header("Route", ", ".join(values))

    def _out_socket(self, tctx: TxContext, transport: str, ip: str) -> LocalSocket | None:
        """The socket a branch leaves from: the one the request came in on when it fits
        (transport and address family), else the first that does, else one of the transport,
        else any (a TCP branch needs no TCP listener). None for TLS without a tls: socket: our
        Via and Record-Route must say TLS (RFC 3261 §26.2.2) and the certificate is the
        listener's."""
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
        if transport == "tls":
            return None
        return src or self.sockets[0]

    def _send_branch(self, branch: Branch, transport: str, ip: str, port: int) -> None:
        tctx = branch.ctx
        msg = branch.msg or tctx.request
        sock = self._out_socket(tctx, transport, ip)
        if sock is None:
            self._no_tls_hop(branch, transport)
            return
        dest: Target
        if transport == "tls":
            # RFC 5922 §7.2: the certificate must name the host of the URI the next hop came
            # from (branch.target, before DNS), not the address it resolved to.
            target = branch.target
            name = target[0] if target is not None else ip
            dest = TlsTarget(transport, ip, port, None, sock.listen, name)
        else:
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
            if in_sock is not None and in_sock is not sock:
                # Double Record-Route (OpenSIPS enable_double_rr, Kamailio's rr): the request
                # leaves on another socket (transport or interface) than it came in on, so each
                # side of the dialog routes back to the socket it can reach. The callee's first.
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
        self.stats.uac += 1
        if self.debug:
            logger.debug(
                "forward {} {} call-id={} branch {} to {}:{}:{}", msg.method, msg.raw_uri, msg.call_id,
                branch.id, transport, ip, port,
            )
        self._tx_actions(tx.start())
        if tctx.cancelled and msg.method == "INVITE":
            branch.cancel_pending = True  # §9.1: CANCEL only once it has a provisional
