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


def test_sockets_stay_on_loopback(phones):
    # Everything configurable binds 127.0.0.1: SIP (UDP, TCP, and TLS on port + 1), ctrl_tcp. Two
    # kinds of wildcard sockets are hard-coded in baresip 1.0 / libre 1.1 and cannot be configured
    # away: libre's DNS client (0.0.0.0 and ::, created at start; dns_server is 127.0.0.1:53 and no
    # URI names a host, so nothing is sent from them) and the RTP/RTCP pair of a call (stream.c
    # "we listen on all interfaces"; the SDP offers 127.0.0.1, so media stays on loopback).
    a = phones.phone("alice")
    b = phones.phone("bob")
    idle = a.sockets()
    assert sorted((p, port) for p, addr, port in idle if addr == "127.0.0.1" and p == "tcp") == sorted(
        [("tcp", a.sip_port), ("tcp", a.sip_port + 1), ("tcp", a.ctrl_port), ("tcp", a.ctrl_port)]
    ), idle  # the ctrl port twice: the listener and the harness's connection
    assert [(p, port) for p, addr, port in idle if addr == "127.0.0.1" and p == "udp"] == [("udp", a.sip_port)], idle
    dns = [s for s in idle if s[1] != "127.0.0.1"]
    assert sorted((p, addr) for p, addr, _ in dns) == [("udp", "0.0.0.0"), ("udp", "::")], idle

    establish(a, b, b.uri)
    in_call = a.sockets()
    new = [s for s in in_call if s not in idle]
    rtp = sorted(port for _, _, port in new)
    assert {(p, addr) for p, addr, _ in new} == {("udp", "0.0.0.0")} and len(rtp) == 2, in_call
    assert rtp[1] == rtp[0] + 1 and f"m=audio {rtp[0]} RTP/AVP" in a.log(), in_call  # RTP, RTCP
    hang_up(a, b)
