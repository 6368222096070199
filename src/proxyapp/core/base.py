"""The state every part of the core shares, the transaction tables' bookkeeping, and the
interface the rule modules (requests, responses, cancel, stateless, replies) offer each other.

Each rule module is a mixin over CoreBase; proxyapp.core.proxy.ProxyCore combines them. A module
calls another only through the methods declared in CoreBase's TYPE_CHECKING block, so the
dependencies between RFC sections stay visible in one place.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Config, Listen
from ..limits import Limits, TxBudget
from ..transaction import (
    COMPLETED,
    Action,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Terminated,
    Timeout,
    TransportFailure,
    TxTable,
)
from .addresses import URI, is_loopback, norm_host
from .context import ClientTx, Resolve, ServerTx, TxContext
from .hooks import AccObserver, Router
from .sockets import LocalSocket, identity
from .stats import Stats

if TYPE_CHECKING:
    from fastsip import Request, Response, Via

    from .addresses import Target
    from .context import Branch, Destination, RequestState

# What the core hands the asyncio edge: transaction actions, plus DNS look-ups.
Out = Action | Resolve


class CountedTxTable(TxTable):
    """A TxTable that keeps the transaction budget (proxyapp.limits.TxBudget): how many
    transactions live and the request bytes they keep, taken when one enters and given back when
    it leaves. A client transaction counts its request as sent twice: its own copy, and the
    parsed request its server transaction keeps (about the same size; serializing that one per
    call cost 0.6 us). A server transaction counts no bytes itself. The sizes wait in a dict by
    id(tx); a transaction is alive while it is in the table, so the id is not reused meanwhile."""

    __slots__ = ("budget", "server", "sizes", "n")

    def __init__(self, budget: TxBudget, server: bool) -> None:
        super().__init__()
        self.budget = budget
        self.server = server
        self.sizes: dict[int, int] = {}
        self.n = 0  # transactions in the table

    def __setitem__(self, key: Any, tx: Any) -> None:
        shard = self._shards[hash(key) & 63]
        old = shard.get(key)
        if old is not None:
            self._release(old)
        shard[key] = tx
        self.n += 1
        b = self.budget
        b.live += 1
        if not self.server:
            size = 2 * len(tx.request)
            self.sizes[id(tx)] = size
            b.bytes += size

    def compact(self) -> None:
        super().compact()
        self.sizes = dict(self.sizes)

    def _release(self, tx: Any) -> None:
        self.n -= 1
        b = self.budget
        b.live -= 1
        b.bytes -= self.sizes.pop(id(tx), 0)

    def __delitem__(self, key: Any) -> None:
        shard = self._shards[hash(key) & 63]
        self._release(shard.pop(key))

    def discard(self, key: Any, tx: Any) -> None:
        shard = self._shards[hash(key) & 63]
        if shard.get(key) is tx:
            del shard[key]
            self._release(tx)

    def __len__(self) -> int:
        return self.n


class CoreBase:
    """Configuration, tables, sockets and the action queue of the sans-IO proxy."""

    def __init__(
        self,
        cfg: Config,
        script: Router,
        acc: AccObserver | None = None,
        *,
        wallclock: Callable[[], float] = time.time,
        branch_salt: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.timers = cfg.timers
        self.script = script
        self.acc = acc
        self.wallclock = wallclock
        # [limits]: the edge's flood limits and scanner filter, and the transaction budget the
        # tables count into (ValueError for a bad table).
        self.limits = Limits.from_dict(cfg.limits)
        self.tx_budget = self.limits.budget
        self.server_txs: TxTable = CountedTxTable(self.tx_budget, server=True)
        self.client_txs: TxTable = CountedTxTable(self.tx_budget, server=False)
        self.stats = Stats()
        # Dialogs confirmed by a 2xx we relayed, until their BYE: Call-ID -> start (wall clock).
        # For the statistics and `proxyapp ctl dialogs`; expire_dialogs() bounds it.
        self.dialogs: dict[str, float] = {}
        # Set by the edge on SIGTERM: new INVITEs get 503 with this Retry-After (seconds).
        self.draining = False
        self.drain_retry_after = 5
        # The rate limit of log lines about refused input (replies.LocalReplies._log_refused).
        self._refused_window = -1e18
        self._refused_lines = 0
        self._refused_muted = 0
        self.sockets = [LocalSocket(listen, cfg.advertised_address) for listen in cfg.listen]
        self._sock_by_listen: dict[Listen | None, LocalSocket] = {s.listen: s for s in self.sockets}
        # The loopback listeners: stateless_responses = "auto" relays stray responses only there
        # (computed once: a flood of forged responses must not cost an address parse each).
        self._loopback_listens = frozenset(s.listen for s in self.sockets if is_loopback(s.listen.host))
        self._salt = branch_salt if branch_salt is not None else os.urandom(3).hex()
        self._counter = itertools.count(1)
        self._out: list[Out] = []
        self.server_header = cfg.server_header
        self._server_hdr: tuple[tuple[str, str], ...] = (
            (("Server", cfg.server_header),) if cfg.server_header else ()
        )
        self.debug = cfg.log_level in ("TRACE", "DEBUG")
        self._me, self._me_any_port = identity(self.sockets, cfg.aliases)

    # ------------------------------------------------------------------ identity

    def is_myself(self, host: str, port: int | None = None) -> bool:
        """OpenSIPS check_self: is host[:port] one of our sockets, the advertised address or an alias?"""
        h = norm_host(host)
        if h in self._me_any_port:
            return True
        return (h, port or 5060) in self._me

    def is_myself_uri(self, uri: URI | None) -> bool:
        if uri is None:
            return False
        host = uri.host
        if host is None:
            return False
        return self.is_myself(host, uri.port)

    def statistics(self) -> dict[str, dict[str, int]]:
        """The core, tm, sl and dialog statistics (OpenSIPS names; core.stats.Stats.groups)."""
        return self.stats.groups(len(self.server_txs) + len(self.client_txs), len(self.dialogs))

    def pending_transactions(self) -> int:
        """Server transactions still waiting for their final response (a graceful stop waits
        for them); the completed ones only absorb retransmissions and need no wait."""
        n = 0
        for tx in self.server_txs.values():
            owner = tx.owner
            if owner is not None and not owner.final_sent and tx.state != "Terminated":
                n += 1
        return n

    def expire_dialogs(self, now: float, lifetime: float) -> int:
        """Forget dialogs confirmed more than ``lifetime`` seconds ago whose BYE never came
        (the edge calls it every minute). Returns how many were forgotten."""
        dialogs = self.dialogs
        old = []
        for call_id, entry in dialogs.items():  # insertion order: the oldest first
            if now - entry < lifetime:
                break
            old.append(call_id)
        for call_id in old:
            del dialogs[call_id]
        return len(old)

    # ------------------------------------------------------------------ action plumbing

    def _flush(self) -> list[Out]:
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

    def _forget(self, tx: ServerTx | ClientTx) -> None:
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

    if TYPE_CHECKING:
        # The interface between the rule modules (implemented by the module named beside each).

        # requests.py (§16.3-16.6)
        def _reply_dest(self, msg: Request, via: Via, source: Target) -> Target: ...
        def process_maxfwd(self, msg: Request, max_value: int = 70) -> bool: ...
        def loop_hash(self, msg: Request) -> int: ...
        def _next_hop(self, msg: Request, dest: str | None) -> tuple[str, int | None, str] | None: ...
        def _send_branch(self, branch: Branch, transport: str, ip: str, port: int) -> None: ...
        def _fork_group(self, tctx: TxContext, group: list[Destination], only: bool = False) -> None: ...

        # responses.py (§16.7)
        def _send_upstream(self, tctx: TxContext, resp: Response, status: int, local: bool = False) -> None: ...
        def _branch_local_final(self, branch: Branch, status: int, reason: str) -> None: ...
        def _maybe_complete(self, tctx: TxContext) -> None: ...
        def _on_client_timeout(self, tx: ClientTx, timer: str) -> None: ...
        def _on_client_transport_failure(self, tx: ClientTx) -> None: ...

        # cancel.py (§16.10, §9.1, §17.1.1.3)
        def _relay_cancel(self, sctx: RequestState, inv_ctx: TxContext | None) -> bool: ...
        def _cancel_branch(self, branch: Branch) -> None: ...
        def _build_hop_request(self, branch: Branch, method: str, to_value: str | None) -> bytes: ...

        # stateless.py (§16.11)
        def forward_stateless(self, sctx: RequestState, dest: str | None = None) -> bool: ...
        def _forward_response_stateless(self, resp: Response, vias: list[Via], source: Target | None = None) -> None: ...

        # replies.py (local replies, malformed input)
        def sl_reply(
            self, msg: Request, reply_dest: Target, status: int, reason: str | None,
            headers: tuple[tuple[str, str], ...] = (),
            source: Target | None = None, mark: object | None = None,
        ) -> bytes: ...
        def new_server_tx(self, sctx: RequestState, send_trying: bool = True) -> TxContext: ...
        def _sl_tag(self, msg: Request) -> str: ...
        def t_reply(
            self, tctx: TxContext, status: int, reason: str | None, headers: tuple[tuple[str, str], ...] = (),
        ) -> None: ...

        # accounting.py (the AccObserver calls)
        def _acc_completed(
            self, tctx: TxContext, resp: Response | None, status: int, reason: str | None = None,
        ) -> None: ...
        def _acc_branch_failed(self, tctx: TxContext, best: Branch) -> None: ...
        def _acc_response(self, resp: Response) -> None: ...
