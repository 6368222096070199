"""The harness itself, without proxyapp: two real baresip phones call each other's address directly."""

from __future__ import annotations

import pytest

from .baresip import establish, hang_up, ring

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TRANSPORTS = ["udp", "tcp"]


def _assert_transport(transport, *phones):
    # The SIP trace (-s) names the transport of every message sent and received.
    for p in phones:
        assert f"{transport.upper()} 127.0.0.1:" in p.log(), p.context()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("who", ["caller", "callee"])
def test_call_answer_hang_up(phones, transport, who):
    a = phones.phone("alice", transport=transport)
    b = phones.phone("bob", transport=transport)
    call_id = establish(a, b, b.uri)
    by, other = (a, b) if who == "caller" else (b, a)
    closed_by, closed_other = hang_up(by, other)
    assert closed_by.call_id == closed_other.call_id == call_id
    assert "reset by peer" in closed_other.param, closed_other  # the BYE of the other side
    _assert_transport(transport, a, b)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_callee_rejects(phones, transport):
    a = phones.phone("alice", transport=transport)
    b = phones.phone("bob", transport=transport)
    ring(a, b, b.uri)
    b.hangup()  # an incoming call that is not answered is refused with 486
    closed = a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "486" in closed.param, closed
    b.wait_event("CALL_CLOSED")
    _assert_transport(transport, a, b)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_caller_cancels_while_ringing(phones, transport):
    a = phones.phone("alice", transport=transport)
    b = phones.phone("bob", transport=transport)
    ring(a, b, b.uri)
    a.hangup()  # CANCEL
    a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    closed = b.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "CANCEL" in a.log() and "487 Request Terminated" in b.log(), closed
    _assert_transport(transport, a, b)
