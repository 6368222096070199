"""RFC 3261 §16.7, the response context: responses matched to branches, the best final chosen.

Responses match the client transaction (§17.1.3), lose our Via (§16.7 step 3) and go upstream:
100 absorbed, other 1xx and every 2xx forwarded at once (step 5), the best final chosen over the
branches once every branch has one (step 6: 6xx wins, then the lowest class; a received 503
becomes 500; no response at all becomes 408), a 2xx or 6xx cancels the other branches (step 10).
Non-2xx finals are ACKed hop by hop by the transaction (§17.1.1.3). Timer C (§16.8) and
transport errors give a branch a local outcome (408, 503) that competes like a response.
"""

from __future__ import annotations

from fastsip import ParseError, Response
from loguru import logger

from ..transaction import ACCEPTED, PROCEEDING, TRYING, Send, ServerNonInviteTransaction
from .addresses import Target
from .base import CoreBase
from .context import Branch, ClientTx, TxContext


class ResponseContext(CoreBase):
    """Responses in, the upstream response out (§16.7)."""

    def _on_response(self, resp: Response, source: Target) -> None:
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
            self._forward_response_stateless(resp, vias, source)
            return
        ack = None
        if status >= 300 and cseq.method == "INVITE" and tx.state in (PROCEEDING, "Calling"):
            ack = self._build_hop_request(tx.owner, "ACK", to_value=resp.headers.get("To"))
        branch: Branch | None = tx.owner  # read first: a terminating transaction may release its context
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

    def _branch_response(self, branch: Branch, resp: Response, status: int) -> None:
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

    def _on_client_timeout(self, tx: ClientTx, timer: str) -> None:
        branch: Branch | None = tx.owner
        if branch is None:
            return  # our CANCEL timed out: the INVITE's own timers will finish the branch
        if timer == "C" and branch.provisional and not branch.cancelled:
            # §16.8: Timer C with a provisional: CANCEL the branch, answer as if 408.
            self._cancel_branch(branch)
        logger.info("no final response on branch {} (timer {}) call-id={}", branch.id, timer, branch.ctx.request.call_id)
        self._branch_local_final(branch, 408, "Request Timeout")

    def _on_client_transport_failure(self, tx: ClientTx) -> None:
        branch: Branch | None = tx.owner
        if branch is None:
            return
        dest = branch.dest
        logger.info("transport error on branch {} to {}:{}", branch.id, dest.host if dest else "?",
                    dest.port if dest else "?")
        self._branch_local_final(branch, 503, "Service Unavailable")

    def _maybe_complete(self, tctx: TxContext) -> None:
        """§16.7 step 6: when every branch has its final, pick the best one (after the failure route)."""
        if tctx.final_sent or any(not b.done for b in tctx.branches):
            return
        best = self._best_branch(tctx)
        if best is not None and tctx.acc_mark is not None and tctx.method == "INVITE" and self.acc is not None:
            self._acc_branch_failed(tctx, best)
        if tctx.next_groups and best is not None and 300 <= best.final_status < 600 and not tctx.cancelled:
            # Sequential forking over q groups (§16.5 / §16.7 step 4): the next group rings; a 6xx
            # (step 6) or a CANCEL ends the search.
            self._fork_group(tctx, tctx.next_groups.pop(0))
            return
        if tctx.failure_route is not None and best is not None and best.final_status >= 300:
            route = tctx.failure_route
            tctx.failure_route = None  # OpenSIPS: one shot; the failure route may arm it again
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
            stx = tctx.server_tx
            assert isinstance(stx, ServerNonInviteTransaction)  # tctx.method is not INVITE
            self._tx_actions(stx.abandon())
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
        if status == 401 or status == 407:
            self._merge_challenges(tctx, best.final)
        self._send_upstream(tctx, best.final, status)

    @staticmethod
    def _merge_challenges(tctx: TxContext, chosen: Response) -> None:
        """§16.7 step 7: a 401/407 sent upstream carries the WWW-Authenticate and
        Proxy-Authenticate values of every 401/407 the branches received, so the caller can
        answer all the challenges at once."""
        have = {(n, v) for n in ("WWW-Authenticate", "Proxy-Authenticate") for v in chosen.headers.getall(n)}
        for b in tctx.branches:
            final = b.final
            if final is None or final is chosen or b.final_status not in (401, 407):
                continue
            for name in ("WWW-Authenticate", "Proxy-Authenticate"):
                for value in final.headers.getall(name):
                    if (name, value) not in have:
                        have.add((name, value))
                        chosen.append_header(name, value)

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

    def _send_upstream(self, tctx: TxContext, resp: Response, status: int, local: bool = False) -> None:
        """Pass a response (already without our Via) to the server transaction (§16.7 step 9);
        ``local``: one the proxy made (t_reply), not one it relays."""
        data = bytes(resp)
        tx = tctx.server_tx
        assert tx is not None  # a context gets its server transaction when it is created
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
                self.stats.tx_final[status // 100] += 1
                if status < 300 and tctx.method == "INVITE":
                    self._dialog_confirmed(tctx)
                self._acc_completed(tctx, resp, status)
        else:
            if tctx.final_sent:
                return
            self._tx_actions(tx.send_response(status, data))
        if local:
            self.stats.local_replies += 1
        else:
            self.stats.relayed_replies += 1
        if self.acc is not None:
            self._acc_response(resp)
        if self.debug:
            logger.debug(
                "reply {} {} to {}:{}:{} call-id={}", status, resp.reason, tctx.reply_dest.transport,
                tctx.reply_dest.host, tctx.reply_dest.port, tctx.request.call_id,
            )

    def _dialog_confirmed(self, tctx: TxContext) -> None:
        """A 2xx to an INVITE went upstream: a new dialog unless its Call-ID has one (a
        re-INVITE). Only the start is kept: reading the request's To or From here would parse
        them again (the core's edits reset the message's caches) and keep them with the live
        call, about 0.5 kB each (tests/proxy/test_memory.py)."""
        call_id = tctx.request.call_id
        if call_id is not None and call_id not in self.dialogs:
            self.stats.processed_dialogs += 1
            self.dialogs[call_id] = self.wallclock()
