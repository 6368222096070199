"""The accounting events the core reports through the AccObserver contract (proxyapp.acc).

Accounting must never cost a call: every call is guarded, and a failing one is logged.
"""

from __future__ import annotations

from fastsip import Response
from loguru import logger

from .base import CoreBase
from .context import Branch, TxContext


class AccountingHooks(CoreBase):
    """Transaction outcomes and forwarded responses, reported to the accounting service."""

    def _acc_completed(self, tctx: TxContext, resp: Response | None, status: int, reason: str | None = None) -> None:
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

    def _acc_response(self, resp: Response) -> None:
        assert self.acc is not None  # callers check first: the common case has no accounting
        try:
            self.acc.observe_response(resp, self.wallclock())
        except Exception:
            logger.exception("accounting observe_response failed")
