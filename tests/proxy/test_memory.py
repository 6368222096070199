"""Memory of the proxy core: no cyclic garbage per call (main() runs with the cycle collector off)
and bytes per live transaction, measured with tracemalloc on the benchmark's call flow."""

from __future__ import annotations

import gc
import tracemalloc

from proxyapp.proxy import Branch, TxContext
from proxyapp.transaction import Transaction

from .callflow import Flow, new_proxy
from .harness import CALLEE, Harness, req, resp_for, sends


def _proxy_garbage(run) -> list[object]:
    """Objects of the proxy core that only the cycle collector could free after ``run()``."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        found = [o for o in gc.garbage if isinstance(o, (Transaction, TxContext, Branch))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return found


def test_finished_calls_leave_no_cyclic_garbage():
    # Answered call, busy call, CANCEL after 180, INVITE and OPTIONS timing out: once every timer
    # has fired, reference counting alone has freed the contexts, branches and transactions.
    def run():
        h = Harness()
        fwd = sends(h.rx(req()))[1]
        h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
        h.rx(resp_for(fwd.data, 200, "OK"), CALLEE)
        fwd = sends(h.rx(req(branch="z9hG4bKb2", cseq=2)))[1]
        h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
        h.rx(req("ACK", branch="z9hG4bKb2", cseq=2, to_tag="b1"))
        fwd = sends(h.rx(req(branch="z9hG4bKb3", cseq=3)))[1]
        h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
        cancel = sends(h.rx(req("CANCEL", branch="z9hG4bKb3", cseq=3)))[-1]
        h.rx(resp_for(cancel.data, 200, "OK"), CALLEE)
        h.rx(resp_for(fwd.data, 487, "Request Terminated"), CALLEE)
        h.rx(req("ACK", branch="z9hG4bKb3", cseq=3, to_tag="b1"))
        h.rx(req(branch="z9hG4bKb4", cseq=4))
        h.rx(req("OPTIONS", branch="z9hG4bKb5", cseq=5))
        h.drain()
        assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0

    assert _proxy_garbage(run) == []


def test_bytes_per_live_call_and_per_dialog():
    # The benchmark's call set up (INVITE, 100, 200, ACK): its INVITE server and client
    # transactions stay 32 s (RFC 6026 Timers L and M) and are what the proxy holds per call;
    # after them it keeps nothing per dialog (Record-Route and loose routing need no dialog
    # state; CDR accounting keeps its own, proxyapp.acc). 100,000 live calls must fit well under
    # a gigabyte: the bound is 6 KiB; the measured value is printed (pytest -s) for the report.
    flow = Flow(new_proxy())
    for n in range(100):
        flow.setup(n)
    calls = 3000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        routes = [flow.setup(n) for n in range(1000, 1000 + calls)]
        del routes
        gc.collect()
        per_call = (tracemalloc.get_traced_memory()[0] - before) / calls
    finally:
        tracemalloc.stop()
    assert len(flow.proxy.server_txs) == 100 + calls  # the ACKs went statelessly
    # The measured bytes include the driver's copies of the caller's and callee's datagrams the
    # parsed messages keep (about 1.3 KiB): the core's share is smaller.
    print(f"\nproxy core: {per_call:.0f} bytes per live call (INVITE server + client transaction)")
    assert 1000 < per_call < 6 * 1024


def test_completed_non_invite_keeps_only_its_last_response_after_timer_k():
    # BYE / OPTIONS: once the branch is over (Timer K, 5 s) the context, the parsed request and
    # the client transaction are freed; the server transaction alone absorbs retransmissions
    # until Timer J (32 s), resending its final response.
    h = Harness()
    options = req("OPTIONS")
    fwd = sends(h.rx(options))[0]
    ok = sends(h.rx(resp_for(fwd.data, 200, "OK"), CALLEE))[0].data
    (stx,) = h.proxy.server_txs.values()
    assert stx.owner is not None and fwd.tx.request == b""
    h.fire(fwd.tx, "K")
    assert len(h.proxy.client_txs) == 0 and stx.owner is None
    assert [s.data for s in sends(h.rx(options))] == [ok]
    h.fire(stx, "J")
    assert len(h.proxy.server_txs) == 0
