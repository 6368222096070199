"""RFC 3261 §16.10 CANCEL, and the hop-by-hop requests a proxy builds itself (CANCEL §9.1, the ACK
of a non-2xx final §17.1.1.3).

A CANCEL that matches an INVITE's server transaction is answered 200 at once by its own
transaction, and every pending branch of the INVITE is cancelled. A branch is cancelled only
after it received a provisional response (§9.1); until then the CANCEL waits (cancel_pending).
"""

from __future__ import annotations

from loguru import logger

from ..transaction import PROCEEDING, ClientNonInviteTransaction
from .base import CoreBase
from .context import Branch, RequestState, TxContext


class CancelProcessing(CoreBase):
    """CANCEL in (§16.10), CANCEL and ACK out on a branch."""

    def _relay_cancel(self, sctx: RequestState, inv_ctx: TxContext | None) -> bool:
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
        self.stats.uac += 1
        if self.debug:
            logger.debug("CANCEL branch {} to {}:{}", branch.id, dest.host, dest.port)
        self._tx_actions(ctx_tx.start())

    @staticmethod
    def _route_lines(branch: Branch) -> list[str]:
        """The Route header lines the branch's request carried (read back from its bytes)."""
        assert branch.tx is not None  # only a sent branch is cancelled or ACKed
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
        cseq = req.cseq
        assert cseq is not None  # checked when the request came in
        lines = [f"{method} {branch.ruri} SIP/2.0\r\n".encode(), branch.via_line]
        out = [
            *self._route_lines(branch),
            "Max-Forwards: 70",
            f"From: {h.get('From')}",
            f"To: {to_value}",
            f"Call-ID: {h.get('Call-ID')}",
            f"CSeq: {cseq.seq} {method}",
        ]
        if self.server_header and method == "CANCEL":
            out.append(f"User-Agent: {self.server_header}")
        out.append("Content-Length: 0")
        lines.append(("\r\n".join(out) + "\r\n\r\n").encode())
        return b"".join(lines)
