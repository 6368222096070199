"""What the core calls out to, as contracts: the routing script (Router) and accounting (AccObserver).

The core depends on these protocols only. proxyapp.script implements Router and proxyapp.acc
implements AccObserver; neither is imported here, so the core stays below both.
"""

from __future__ import annotations

from typing import Protocol

from fastsip import Request, Response

from .addresses import Target
from .context import Branch, Route, TxContext, TxKey


class Router(Protocol):
    """The routing script as the core runs it (OpenSIPS' route, failure_route, onreply_route,
    branch_route)."""

    # The script-wide reply route, run for every response of every stateful transaction.
    onreply_route: Route | None

    def handle_request(
        self, msg: Request, source: Target, reply_dest: Target, key: TxKey, loop_hash: int, routed: bool,
        dst_uri: str | None,
    ) -> None:
        """Run the request route for a request that is not a retransmission. ``routed``: it
        arrived with a Route set (our own entries already removed, §16.4); ``dst_uri``: where a
        removed Route of ours said to send it (its ``received`` parameter), or None."""

    def run_failure(self, tctx: TxContext, route: Route, best: Branch) -> None:
        """Run a failure route armed with t_on_failure; ``best`` holds the winning final."""

    def run_reply(self, tctx: TxContext, resp: Response, branch: Branch) -> object:
        """Run the reply routes; False drops a provisional response."""

    def run_branch(self, tctx: TxContext, branch: Branch) -> None:
        """Run the branch route armed with t_on_branch, before the branch is sent."""


class AccObserver(Protocol):
    """The accounting events the core reports (the contract of proxyapp.acc). ``mark`` is the
    script's do_accounting mark, passed through untouched; ``ts`` is wall-clock seconds."""

    def observe_request(self, request: Request, source_addr: tuple[str, int] | None, ts: float) -> None: ...

    def observe_response(self, response: Response, ts: float) -> None: ...

    def transaction_completed(
        self, mark: object | None, request: Request, status: int, reason: str | None, to_tag: str | None,
        source_addr: tuple[str, int] | None, ts: float,
    ) -> None: ...

    # The script verbs acc_log_request and acc_db_request, passed through by the script layer.
    def log_request(self, request: Request, comment: str, ts: float) -> None: ...

    def db_request(self, request: Request, comment: str, table: str | None, ts: float) -> None: ...
