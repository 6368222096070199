"""ProxyCore: the sans-IO stateful proxy, the RFC 3261 §16 rule modules combined behind five events.

Events in: ``receive(data, source)`` for a datagram, ``receive_message(msg, source)`` for a
TCP-framed message, ``timer_fired(tx, name)``, ``transport_error(tx)`` and ``resolved(branch,
addresses)``. Each returns the actions for the asyncio edge (``Send``, ``StartTimer``,
``CancelTimer``, ``Terminated``, ``Resolve``). The core never reads a clock or touches a socket;
the wall clock used only for accounting timestamps is injected.

Per request, in the order OpenSIPS' receive_msg and tm follow:

1. parse (fastsip); a request whose Via can be read but is otherwise bad gets 400, the rest is
   dropped and counted (replies.py);
2. match a server transaction with one dict lookup (RFC 3261 §17.2.3, RFC 2543 fallback):
   retransmissions are absorbed and the last response resent, the ACK of a non-2xx is absorbed
   (requests.py);
3. run the routing script, whose verbs call back into the core: ``relay`` (t_relay) creates the
   server transaction (100 for an INVITE), applies §16.6 and starts one client transaction per
   branch (requests.py); CANCEL follows §16.10 (cancel.py); ACK of a 2xx and CANCEL without a
   transaction go statelessly (stateless.py).

Responses follow §16.7 (responses.py).
"""

from __future__ import annotations

import fastsip
from fastsip import ParseError, Request, Response
from loguru import logger

from .accounting import AccountingHooks
from .addresses import Target
from .base import Out
from .cancel import CancelProcessing
from .context import Branch, ClientTx, ServerTx
from .replies import LocalReplies
from .requests import RequestRouting
from .responses import ResponseContext
from .stateless import StatelessForwarding


class ProxyCore(RequestRouting, ResponseContext, CancelProcessing, StatelessForwarding, LocalReplies, AccountingHooks):
    """The sans-IO stateful proxy. Entry points return the actions to run."""

    def receive(self, data: bytes, source: Target) -> list[Out]:
        """A datagram (or one framed TCP message as bytes) arrived from ``source``."""
        self.stats.received += 1
        try:
            msg = fastsip.parse(data, max_size=self.cfg.max_message_size)
        except ParseError as exc:
            if not data.strip(b"\r\n"):
                # A keep-alive (RFC 5626 §4.4.1's CRLFCRLF, sent over UDP by many phones behind
                # NAT): it only refreshes the NAT binding; no answer, no log line.
                self.stats.keepalives += 1
                return []
            try:
                self._bad_message(data, source, exc)
            except Exception:
                logger.exception("internal error while answering a malformed message")
                self.stats.dropped += 1
            return self._flush()
        return self.receive_message(msg, source, counted=True)

    def receive_message(self, msg: Request | Response, source: Target, counted: bool = False) -> list[Out]:
        """A parsed message arrived (the TCP edge frames with fastsip.StreamParser)."""
        if not counted:
            self.stats.received += 1
        try:
            if isinstance(msg, Request):
                self.stats.requests += 1
                self._on_request(msg, source)
            else:
                self.stats.responses += 1
                self._on_response(msg, source)
        except ParseError as exc:
            self.stats.bad_msg_hdr += 1
            self._bad_parsed(msg, source, exc)
        except Exception:  # a bug must cost one message, never the proxy
            logger.exception("internal error while handling a message from {}:{}", source.host, source.port)
            self.stats.dropped += 1
            if not isinstance(msg, Request):
                self.stats.drop_replies += 1
        return self._flush()

    def timer_fired(self, tx: ServerTx | ClientTx, name: str) -> list[Out]:
        """The timer ``name`` armed by a StartTimer for ``tx`` fired."""
        try:
            self._tx_actions(tx.on_timer(name))
        except Exception:
            logger.exception("internal error in timer {} of {!r}", name, tx)
        return self._flush()

    def transport_error(self, tx: ServerTx | ClientTx | None) -> list[Out]:
        """The edge could not send for ``tx`` (connection refused, unreachable, ...)."""
        if tx is None:
            return []
        try:
            self._tx_actions(tx.on_transport_error())
        except Exception:
            logger.exception("internal error on transport error of {!r}", tx)
        return self._flush()

    def resolved(self, branch: Branch, addresses: list[tuple[str, str, int]] | None) -> list[Out]:
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
                if branch.done:
                    self._maybe_complete(ctx)  # no tls: socket for a TLS destination (480)
        except Exception:
            logger.exception("internal error after resolving a destination")
        return self._flush()
