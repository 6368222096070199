"""The core's per-request state: a request before it has a transaction, the transaction context
("cell" in OpenSIPS tm) and its branches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastsip import Request, Response

from ..transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
)
from .addresses import HopTarget, Target

# RFC 3261 §8.1.1.7: a branch starting with the magic cookie was made by an RFC 3261 element.
MAGIC = "z9hG4bK"

ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
ClientTx = ClientInviteTransaction | ClientNonInviteTransaction
# The server transaction key (RFC 3261 §17.2.3, or the RFC 2543 fallback tuple).
TxKey = tuple[object, ...]
# A failure, reply or branch route of the script: called with (message, script context).
Route = Callable[..., object]


@dataclass(slots=True, eq=True)
class Resolve:
    """Action: resolve ``name`` (RFC 3263: SRV when ``port`` is None, then A/AAAA) and call
    ``Proxy.resolved(token, [(transport, ip, port), ...] or None)``. ``token`` is the
    branch waiting for the addresses, opaque to the edge."""

    name: str
    port: int | None
    transport: str
    token: Branch


@dataclass(slots=True)
class Destination:
    """One target of a forked request (OpenSIPS' branch set): the Request-URI of its branch and
    how to reach it. ``dst_uri`` overrides the next hop ($du: a binding's received address or
    flow); ``route`` are Route values put in front of the request (a binding's Path, RFC 3327)."""

    ruri: str
    dst_uri: str | None = None
    route: tuple[str, ...] = ()


class RequestState:
    """A request the script is routing, before and after it gets a transaction: what the
    stateful and stateless forwarding rules read. The script's context extends it with verbs."""

    __slots__ = (
        "msg", "source", "reply_dest", "key", "tctx", "acc_mark", "record_route_flag", "maxfwd_done",
        "failure_route", "reply_route", "branch_route", "dst_uri", "loop_hash", "forks",
    )

    def __init__(self, msg: Request, source: Target, reply_dest: Target, key: TxKey) -> None:
        self.msg = msg
        self.source = source
        self.reply_dest = reply_dest
        self.key = key
        self.tctx: TxContext | None = None
        self.acc_mark: object | None = None  # the accounting service's mark; the core passes it on
        self.record_route_flag = False
        self.maxfwd_done = False
        self.failure_route: Route | None = None
        self.reply_route: Route | None = None
        self.branch_route: Route | None = None
        self.dst_uri: str | None = None
        self.loop_hash: int | None = None  # §16.6 step 8 hash of the request as received
        # Parallel forking: groups of destinations, tried one group after the other (q order);
        # the branches of a group ring at once. None: one branch to the Request-URI / dst_uri.
        self.forks: list[list[Destination]] | None = None


class Branch:
    """One forwarding target of a proxied request: its client transaction and its outcome."""

    __slots__ = (
        "ctx", "index", "id", "dest", "tx", "cancel_tx", "ruri", "via_line",
        "provisional", "cancel_pending", "cancelled", "final_status", "final", "local_reason",
        "done", "target", "msg",
    )

    def __init__(self, ctx: TxContext, index: int, branch_id: str) -> None:
        self.ctx = ctx
        self.index = index
        self.id = branch_id
        self.dest: Target | None = None
        self.tx: ClientTx | None = None
        self.cancel_tx: ClientNonInviteTransaction | None = None
        self.ruri = ""
        self.via_line = b""
        self.provisional = False
        self.cancel_pending = False
        self.cancelled = False
        self.final_status = 0
        self.final: Response | None = None  # the received final response (None for a local outcome)
        self.local_reason = ""
        self.done = False
        self.target: HopTarget | None = None
        self.msg: Request | None = None  # a per-branch copy of the request, when one was made


class TxContext:
    """A stateful request: its server transaction, its branches, the script's per-transaction state."""

    __slots__ = (
        "request", "source", "reply_dest", "server_tx", "branches", "acc_mark", "failure_route",
        "reply_route", "branch_route", "cancelled", "final_sent", "final_status", "to_tag",
        "record_route", "maxfwd_done", "n", "loop_hash", "in_failure", "method", "key",
        "completed_reported", "next_groups",
    )

    def __init__(self, request: Request, source: Target, reply_dest: Target, n: int) -> None:
        self.request = request
        self.source = source
        self.reply_dest = reply_dest
        self.server_tx: ServerTx | None = None
        self.branches: list[Branch] = []
        self.acc_mark: object | None = None
        self.failure_route: Route | None = None
        self.reply_route: Route | None = None
        self.branch_route: Route | None = None
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
        self.key: TxKey | None = None
        self.completed_reported = False
        self.next_groups: list[list[Destination]] = []  # fork groups not tried yet (serial, §16.7)
