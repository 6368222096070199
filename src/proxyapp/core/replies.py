"""Replies the proxy makes itself: stateless (OpenSIPS sl), through a server transaction (tm's
t_reply, the 100 Trying of §16.2), and the 400 for a malformed request (§16.3 step 1, §8.2.6).

A locally generated final gets a To tag that is stable across retransmissions of the request
(derived from Call-ID, From tag and CSeq), so a retransmitted request gets the same response.
"""

from __future__ import annotations

import zlib

import fastsip
from fastsip import MessageTooLarge, ParseError, Request, Response, StartLineError, TooManyHeaders
from loguru import logger

from ..transaction import Send, ServerInviteTransaction, ServerNonInviteTransaction
from .addresses import Target
from .base import CoreBase
from .context import RequestState, TxContext


REFUSED_LOG_LINES = 10
# The header lines a response to a refused request copies (RFC 3261 §8.2.6.2), full and compact names.
_ANSWER_HEADERS = frozenset((b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq"))
REFUSED_LOG_WINDOW_S = 10.0


class LocalReplies(CoreBase):
    """sl_send_reply, t_newtran, t_reply and the answers to malformed input."""

    # ------------------------------------------------------------------ stateless replies

    def sl_reply(
        self, msg: Request, reply_dest: Target, status: int, reason: str | None,
        headers: tuple[tuple[str, str], ...] = (),
        source: Target | None = None, mark: object | None = None,
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
        self.stats.sl_replies[status // 100] += 1
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

    def _sl_tag(self, msg: Request) -> str:
        frm = msg.from_
        cseq = msg.cseq
        seed = f"{msg.call_id}|{frm.tag if frm else ''}|{cseq.seq if cseq else None}"
        return f"{zlib.crc32(seed.encode()):08x}.{self._salt}"

    # ------------------------------------------------------------------ stateful replies

    def new_server_tx(self, sctx: RequestState, send_trying: bool = True) -> TxContext:
        """t_newtran: the server transaction (and its context) for the script's request."""
        existing = sctx.tctx
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
        self.stats.uas += 1
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
        self._send_upstream(tctx, resp, status, local=True)

    # ------------------------------------------------------------------ malformed input

    def _bad_message(self, data: bytes, source: Target, exc: ParseError) -> None:
        """parse() refused the bytes. Answer 400 when it is a request whose Via we can still read."""
        self.stats.bad_msg_hdr += 1
        head = bytes(data[:16]).lstrip(b"\r\n")
        if head.startswith(b"SIP/") or not head:
            self._drop(source, f"unparsable response: {exc}", reply=True)
            return
        # Retry on the header block alone: a bad body or Content-Length must not hide the Via.
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = data.find(b"\n\n")
        block = data if end < 0 else data[:end]
        lines = [ln for ln in block.lstrip(b"\r\n").split(b"\n") if not ln.lower().startswith((b"content-length", b"l:"))]
        if isinstance(exc, (TooManyHeaders, MessageTooLarge)) and lines:
            # Over a limit (RFC 3261 §21.5.11: 513): the answer needs only what make_response
            # copies, so the other header lines are left out of the second parse.
            lines = lines[:1] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() in _ANSWER_HEADERS]
        status = None
        if isinstance(exc, StartLineError) and lines and not lines[0].startswith(b"ACK "):
            # RFC 4475 §3.1.2 (lwsruri, lwsstart, trws, badvers): the request line is what is
            # wrong, the Via is fine: answer on a stand-in request line. An unknown SIP version
            # is 505 (RFC 3261 §21.5.7), anything else 400.
            lines[0] = b"OPTIONS sip:invalid.invalid SIP/2.0\r"
            if "version" in exc.message:
                status = 505
        try:
            msg = fastsip.parse(b"\n".join(lines).rstrip(b"\r\n") + b"\r\nContent-Length: 0\r\n\r\n")
            if not msg.is_request:
                raise exc
        except ParseError:
            self._drop(source, f"unparsable request: {exc}")
            return
        self._bad_parsed(msg, source, exc, status)

    def _bad_parsed(self, msg: Request | Response, source: Target, exc: ParseError, status: int | None = None) -> None:
        """A header of a parsed message is malformed: 400 (or ``status``) with the reason when we can answer."""
        if not isinstance(msg, Request) or msg.method == "ACK":
            self._drop(source, f"malformed {'ACK' if msg.is_request else 'response'}: {exc}", reply=not msg.is_request)
            return
        try:
            # Whenever its top Via can be read, the sender gets its 400: make_response copies
            # what there is of To, From, Call-ID and CSeq (RFC 4475 §3.3.1 has none of the first three).
            vias = msg.via
            if not vias:
                raise ParseError("no Via")
            dest = self._reply_dest(msg, vias[0], source)
            if status is None:
                status = getattr(exc, "status_hint", 400)
            prefix = "Bad Request" if status == 400 else fastsip.REASON_PHRASES.get(status, "Error")
            reason = f"{prefix} - " + str(exc).split("\n")[0][:80]
            resp = fastsip.make_response(msg, status, reason.replace("\r", " "), headers=self._server_hdr)
        except (ParseError, ValueError):
            self._drop(source, f"malformed request: {exc}")
            return
        self.stats.bad_requests += 1
        self._log_refused("{} to {}:{}: {}", status, source.host, source.port, exc)
        self._out.append(Send(dest, bytes(resp)))

    def _drop(self, source: Target, why: str, reply: bool = False) -> None:
        self.stats.dropped += 1
        if reply:
            self.stats.drop_replies += 1
        self._log_refused("dropped a message from {}:{}: {}", source.host, source.port, why)

    def _log_refused(self, fmt: str, *args: object) -> None:
        """A line about refused input, at most REFUSED_LOG_LINES per REFUSED_LOG_WINDOW_S: a
        stranger sending garbage must not fill the log (the counters still count all of it)."""
        now = self.wallclock()
        if now - self._refused_window >= REFUSED_LOG_WINDOW_S:
            if self._refused_muted:
                logger.info("{} more lines about refused messages were not logged", self._refused_muted)
            self._refused_window = now
            self._refused_lines = 0
            self._refused_muted = 0
        if self._refused_lines >= REFUSED_LOG_LINES:
            self._refused_muted += 1
            return
        self._refused_lines += 1
        logger.info(fmt, *args)
