"""The default script's registrar and location service through the sans-IO core.

Phones register with proxyapp (save) and are called by their AOR (lookup, then parallel forking);
an unknown user gets 404 and a registered but unreachable one 480. RFC 3261 §10.3, §16.5.
"""

from __future__ import annotations

import fastsip
import pytest

from proxyapp.location import Location
from proxyapp.proxy import Target

from .harness import Harness, sends
from .seed import PROXY_IP

PHONE_A = ("10.0.0.31", 5060)
PHONE_B = ("10.0.0.32", 5062)
NAT = ("203.0.113.50", 40001)
CALLER = ("10.0.0.9", 5060)


def register(user, contact, call_id, cseq=1, expires=3600, extra="", domain=PROXY_IP):
    return (
        f"REGISTER sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {contact[0]}:{contact[1]};branch=z9hG4bKr{call_id}{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{domain}>;tag=r{call_id}\r\n"
        f"To: <sip:{user}@{domain}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{contact[0]}:{contact[1]}>;expires={expires}{extra}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def invite(user, branch="z9hG4bKcall1", call_id="call-1", domain=PROXY_IP):
    return (
        f"INVITE sip:{user}@{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:caller@example.com>;tag=c1\r\n"
        f"To: <sip:{user}@{domain}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_register_for_our_domain_is_saved_and_answered_with_the_binding():
    h = Harness()
    s = sends(h.rx(register("alice", PHONE_A, "reg1"), PHONE_A))
    assert len(s) == 1 and s[0].dest.addr == PHONE_A
    ok = fastsip.parse(s[0].data)
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.headers.getall("Contact") == [f"<sip:alice@{PHONE_A[0]}:{PHONE_A[1]}>;expires=3600"]
    assert ok.to.tag is not None
    location = h.proxy.script.services.location
    assert [b.contact for b in location.get(f"sip:alice@{PROXY_IP}", 0.0)] == [f"sip:alice@{PHONE_A[0]}:{PHONE_A[1]}"]


def test_a_call_to_a_registered_aor_goes_to_its_contact_without_the_outbound_hint():
    h = Harness()
    h.rx(register("alice", PHONE_A, "reg1"), PHONE_A)
    s = sends(h.rx(invite("alice"), CALLER))
    assert [x.dest.addr for x in s] == [("10.0.0.9", 5060), PHONE_A]
    fwd = fastsip.parse(s[1].data)
    assert fwd.raw_uri == f"sip:alice@{PHONE_A[0]}:{PHONE_A[1]}"
    assert fwd.headers.get("P-hint") is None
    assert fwd.headers.getall("Record-Route") == [f"<sip:{PROXY_IP};lr>"]


def test_an_unknown_user_gets_404_and_an_unregistered_one_too():
    h = Harness()
    s = sends(h.rx(invite("nobody"), CALLER))
    assert s[0].data.startswith(b"SIP/2.0 404 Not Found\r\n")
    h.rx(register("alice", PHONE_A, "reg1"), PHONE_A)
    h.rx(register("alice", PHONE_A, "reg1", cseq=2, expires=0), PHONE_A)  # unregistered
    s = sends(h.rx(invite("alice", branch="z9hG4bKcall2", call_id="call-2"), CALLER))
    assert s[0].data.startswith(b"SIP/2.0 404 Not Found\r\n")


def test_every_contact_of_the_aor_rings_in_parallel_higher_q_first():
    h = Harness()
    h.rx(register("bob", PHONE_A, "regA", extra=";q=0.5"), PHONE_A)
    h.rx(register("bob", PHONE_B, "regB", extra=";q=0.5"), PHONE_B)
    h.rx(register("bob", ("10.0.0.33", 5060), "regC", extra=";q=0.9"), ("10.0.0.33", 5060))
    s = sends(h.rx(invite("bob"), CALLER))
    assert [x.dest.addr for x in s] == [("10.0.0.9", 5060), ("10.0.0.33", 5060)]  # q 0.9 alone first
    busy = bytes(fastsip.make_response(fastsip.parse(s[1].data), 486, "Busy Here", to_tag="c"))
    s = sends(h.rx(busy, ("10.0.0.33", 5060)))
    assert sorted(x.dest.addr for x in s[1:]) == sorted([PHONE_A, PHONE_B])  # then both q 0.5 at once


def test_a_phone_behind_nat_is_called_at_the_address_its_register_came_from():
    h = Harness()
    h.rx(register("carol", ("192.168.1.20", 5060), "regN"), NAT)
    s = sends(h.rx(invite("carol"), CALLER))
    assert s[1].dest.addr == NAT
    assert fastsip.parse(s[1].data).raw_uri == "sip:carol@192.168.1.20:5060"


class _Conn:
    closed = False


def test_a_tcp_phone_is_called_over_its_connection_and_a_broken_outbound_flow_gives_480():
    h = Harness()
    conn = _Conn()
    tcp = h.cfg.listen[1]
    flow = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>";reg-id=1'
    reg = register("dave", ("10.0.0.40", 5070), "regT", extra=flow).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    reg = reg.replace(b"Via: SIP", b"Supported: outbound, path\r\nVia: SIP", 1)
    ok = sends(h.proxy.receive(reg, Target("tcp", "10.0.0.40", 50123, conn, tcp)))
    assert fastsip.parse(ok[0].data).status == 200
    s = sends(h.rx(invite("dave"), CALLER))
    assert s[1].dest == Target("tcp", "10.0.0.40", 50123, None, tcp)  # the registering connection's peer
    conn.closed = True
    s = sends(h.rx(invite("dave", branch="z9hG4bKcall3", call_id="call-3"), CALLER))
    assert s[0].data.startswith(b"SIP/2.0 480 Temporarily Unavailable\r\n")


def test_a_binding_saved_by_another_node_is_reached_through_that_node():
    # Two proxies serving one domain (DNS SRV in front) and sharing one store, as through Redis
    # or PostgreSQL.
    shared = Location()
    node1 = Harness(location=shared, aliases=["voip.example.com"])
    node2 = Harness(location=shared, aliases=["voip.example.com"], listen=["udp:198.51.100.20:5060"])
    node1.rx(register("erin", ("192.168.1.30", 5060), "regE", domain="voip.example.com"), NAT)
    s = sends(node2.rx(invite("erin", domain="voip.example.com"), CALLER))
    assert s[1].dest.addr == (PROXY_IP, 5060)  # to node 1 ...
    fwd = fastsip.parse(s[1].data)
    assert fwd.headers.getall("Route") == [f"<sip:{PROXY_IP}:5060;lr;received=udp:{NAT[0]}:{NAT[1]}>"]
    # ... which removes its own Route and sends it where the phone registered from.
    s = sends(node1.rx(s[1].data, ("198.51.100.20", 5060)))
    assert s[1].dest.addr == NAT
    assert fastsip.parse(s[1].data).raw_uri == "sip:erin@192.168.1.30:5060"


@pytest.mark.parametrize("contact_line, reason", [
    ("Contact: <sip:alice@10.0.0.31>;expires=abc", "expires"),
    ("Contact: <sip:alice@10.0.0.31;;>", "Contact"),
])
def test_a_register_with_a_malformed_contact_or_expires_gets_400_naming_it(contact_line, reason):
    h = Harness()
    bad = register("alice", PHONE_A, "regX").replace(
        f"Contact: <sip:alice@{PHONE_A[0]}:{PHONE_A[1]}>;expires=3600".encode(), contact_line.encode())
    resp = fastsip.parse(sends(h.rx(bad, PHONE_A))[0].data)
    assert resp.status == 400
    assert reason.lower() in resp.reason.lower()


def test_an_expired_binding_is_gone_from_lookup_and_from_the_store():
    h = Harness()
    clock = [1000.0]
    h.proxy.wallclock = lambda: clock[0]
    h.rx(register("alice", PHONE_A, "reg1", expires=60), PHONE_A)
    location = h.proxy.script.services.location
    clock[0] = 1059.0
    assert sends(h.rx(invite("alice"), CALLER))[1].dest.addr == PHONE_A
    clock[0] = 1060.0  # expires = 1000 + 60: no longer live
    s = sends(h.rx(invite("alice", branch="z9hG4bKcall9", call_id="call-9"), CALLER))
    assert s[0].data.startswith(b"SIP/2.0 404 Not Found\r\n")
    assert location.expire(1060.0) == 1 and location.count() == 0
