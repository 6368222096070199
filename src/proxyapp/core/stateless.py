"""RFC 3261 §16.11 stateless forwarding: ACKs of 2xx, CANCELs without a transaction, and
responses that match no client transaction (§16.7 for a late 2xx whose top Via is ours).

Stateless forwarding keeps no state, so a request's branch must be the same on every
retransmission: it is derived from the loop hash and the incoming Via (§16.11).
"""

from __future__ import annotations

import zlib

from fastsip import Response, Via
from loguru import logger

from ..transaction import Send
from .addresses import Target, host_is_ip, norm_host
from .base import CoreBase
from .context import MAGIC, RequestState
from .sockets import LocalSocket


class StatelessForwarding(CoreBase):
    """forward() and stateless response relaying."""

    def forward_stateless(self, sctx: RequestState, dest: str | None = None) -> bool:
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
        if (msg.method == "ACK" or msg.method == "CANCEL") and not self._stray_request_allowed(sctx, transport):
            return True  # dropped and counted: it was handled, the script must not answer it
        if not host_is_ip(host):
            # Stateless forwarding does not wait for DNS in this proxy; name destinations need
            # the stateful path. The ACK/CANCEL of a dialog normally carries an IP Route.
            logger.info("stateless forward to a host name ({}) is not supported; dropped", host)
            return False
        via = msg.via[0]
        lh = sctx.loop_hash if sctx.loop_hash is not None else self.loop_hash(msg)
        det = zlib.crc32(f"{via.branch}|{via.sent_by}|{msg.method}".encode())
        bid = f"{MAGIC}{lh:08x}.s{det:08x}.0"
        sock = self._out_socket_for_source(sctx.source, transport, host)
        if sock.transport != transport and transport == "tls":
            logger.info("stateless forward over TLS without a tls listener; dropped")
            return False
        port = port or (5061 if transport == "tls" else 5060)  # RFC 3261 §19.1.2
        dest_t = Target(transport, host, port, None, sock.listen)
        raw = bytes(msg)
        i = raw.index(b"\n") + 1
        data = raw[:i] + sock.via_prefix + bid.encode() + b"\r\n" + raw[i:]
        self.stats.stateless += 1
        if self.debug:
            logger.debug("stateless forward {} {} to {}:{}:{}", msg.method, msg.raw_uri, transport, host, port)
        self._out.append(Send(dest_t, data))
        return True

    def _stray_request_allowed(self, sctx: RequestState, transport: str) -> bool:
        """May this ACK or CANCEL be forwarded statelessly?  A CANCEL here matches no INVITE
        transaction (§16.10 lets a proxy forward it statelessly); an ACK here is a 2xx's (§16.11),
        legitimate only for a dialog this proxy confirmed (its Call-ID has a relayed 2xx) or an
        INVITE transaction still held.  Otherwise it is a stranger's, and a reflection tool: it
        follows cfg.stateless_responses as a stray response does, and never opens a connection."""
        msg = sctx.msg
        # (sctx.key is an ACK's INVITE transaction key, computed when the request arrived.)
        if msg.method == "ACK" and (msg.call_id in self.dialogs or sctx.key in self.server_txs):
            return True
        mode = self._stray_mode(sctx.source)
        if mode == "relay" and transport == "udp":
            return True
        self.stats.stray_requests += 1  # (and in drop_requests: nothing was sent for it)
        if self.debug:
            logger.debug("dropped {} matching no transaction ({} to {})", msg.method, mode, transport)
        return False

    def _stray_mode(self, source: Target | None) -> str:
        """cfg.stateless_responses for a message matching no transaction: "relay" or "drop"
        ("auto" relays only what arrived on a loopback listener)."""
        mode = self.cfg.stateless_responses
        if mode == "auto":
            return "relay" if source is not None and source.local in self._loopback_listens else "drop"
        return mode

    def _out_socket_for_source(self, source: Target, transport: str, ip: str) -> LocalSocket:
        src = self._sock_by_listen.get(source.local)
        if src is not None and src.transport == transport:
            return src
        for s in self.sockets:
            if s.transport == transport:
                return s
        return src or self.sockets[0]

    def _forward_response_stateless(self, resp: Response, vias: list[Via], source: Target | None = None) -> None:
        """§16.7: no client transaction -> forward statelessly when the top Via is ours (a late
        2xx), as cfg.stateless_responses allows; a response with no Via below ours is dropped
        (§16.7 step 3), and so is one whose next hop is not UDP (TCP or TLS: no new connection
        for it; the stateful path answers over the request's own connection)."""
        top = vias[0]
        if len(vias) < 2 or not self.is_myself(top.host, top.port):
            self.stats.dropped += 1
            self.stats.drop_replies += 1
            if self.debug:
                logger.debug("dropped a response that matches no transaction and is not for us")
            return
        nxt = vias[1]
        transport = nxt.transport.lower()
        mode = self._stray_mode(source)
        if mode == "drop" or transport != "udp":
            self.stats.dropped += 1
            self.stats.drop_replies += 1
            self.stats.stray_replies += 1
            if self.debug:
                logger.debug("dropped a response that matches no transaction ({} to {})", mode, transport)
            return
        resp.pop_via()
        host = nxt.received or norm_host(nxt.host)
        rport = nxt.rport
        port = rport if isinstance(rport, int) and rport is not True else (nxt.port or 5060)
        sock = None
        for s in self.sockets:
            if s.transport == transport:
                sock = s
                break
        self.stats.stateless_replies += 1
        self._out.append(Send(Target(transport, host, port, None, sock.listen if sock else None), bytes(resp)))
        if self.acc is not None:
            self._acc_response(resp)
