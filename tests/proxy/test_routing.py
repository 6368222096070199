"""RFC 3261 §16.4 in the core: the Route values that name this proxy go before any routing.

A phone that uses proxyapp as its outbound proxy preloads ``Route: <sip:proxy;lr>`` (RFC 3261
§8.1.2). Before the core did §16.4 itself, such an initial INVITE was forwarded to that Route, i.e.
to proxyapp itself, and came back as 482 Loop Detected.
"""

from __future__ import annotations

import fastsip
import pytest

from proxyapp.proxy import Target

from .harness import CALLEE, CALLER, Harness, req, sends
from .seed import PROXY_IP


@pytest.mark.parametrize("route", [
    f"<sip:{PROXY_IP};lr>",
    f"<sip:{PROXY_IP}:5060;lr>",
    f"<sip:{PROXY_IP}:5060;transport=tcp;lr>",
    f"<sip:{PROXY_IP};lr;ftag=a1>",  # other parameters, as a Record-Route of OpenSIPS has
    f"<sip:{PROXY_IP}>",  # without ;lr: still us
])
def test_an_initial_invite_with_our_preloaded_route_goes_to_the_request_uri(route):
    h = Harness()
    s = sends(h.rx(req(extra=f"Route: {route}\r\n")))
    assert [x.data[:12] for x in s] == [b"SIP/2.0 100 ", b"INVITE sip:b"]
    fwd = fastsip.parse(s[1].data)
    assert s[1].dest.addr == CALLEE
    assert fwd.headers.getall("Route") == []
    assert fwd.raw_uri == f"sip:bob@{CALLEE[0]}:{CALLEE[1]}"


def test_an_alias_in_the_route_is_us_too():
    h = Harness(aliases=["proxy.example.com"])
    s = sends(h.rx(req(extra="Route: <sip:proxy.example.com;lr>\r\n")))
    assert s[1].dest.addr == CALLEE
    assert fastsip.parse(s[1].data).headers.getall("Route") == []


def test_only_our_leading_routes_go_and_the_next_hop_is_the_next_route():
    # Double Record-Route put two entries of ours in the route set; both go (§16.4 per value).
    h = Harness()
    routes = f"<sip:{PROXY_IP};transport=tcp;lr>, <sip:{PROXY_IP};lr>, <sip:10.9.9.9:5080;lr>"
    s = sends(h.rx(req("BYE", cseq=2, to_tag="b1", extra=f"Route: {routes}\r\n")))
    assert s[0].dest.addr == ("10.9.9.9", 5080)
    assert fastsip.parse(s[0].data).headers.getall("Route") == ["<sip:10.9.9.9:5080;lr>"]


def test_a_route_naming_another_proxy_first_is_left_alone():
    h = Harness()
    s = sends(h.rx(req(extra=f"Route: <sip:10.9.9.9:5080;lr>, <sip:{PROXY_IP};lr>\r\n")))
    assert s[1].dest.addr == ("10.9.9.9", 5080)
    assert fastsip.parse(s[1].data).headers.getall("Route") == [f"<sip:10.9.9.9:5080;lr>, <sip:{PROXY_IP};lr>"]


def test_a_register_to_our_domain_through_us_as_outbound_proxy_is_not_taken_for_strict_routing():
    # Its Request-URI is us without a user, but without ;lr: not a Record-Route URI of ours.
    h = Harness()
    reg = req("REGISTER", ruri=f"sip:{PROXY_IP}", extra=f"Route: <sip:{PROXY_IP};lr>\r\n")
    h.proxy.script.module = None  # the script is not under test: record what it sees
    seen = []
    h.proxy.script.route = lambda msg, ctx: seen.append((msg.raw_uri, msg.headers.getall("Route"), ctx.loose_route()))
    h.rx(reg)
    assert seen == [(f"sip:{PROXY_IP}", [], True)]


def test_a_received_parameter_on_our_route_sets_the_destination():
    # A binding registered through this node and called from another node comes with our Route
    # carrying where the phone really is (its NAT address / flow), as Kamailio's path use_received.
    h = Harness()
    s = sends(h.rx(req(extra=f"Route: <sip:{PROXY_IP};lr;received=tcp:10.7.7.7:40000>\r\n")))
    assert s[1].dest == Target("tcp", "10.7.7.7", 40000, None, h.cfg.listen[1])
    assert fastsip.parse(s[1].data).raw_uri == f"sip:bob@{CALLEE[0]}:{CALLEE[1]}"


def test_leaving_on_another_interface_of_the_same_transport_records_the_route_twice():
    other = "198.51.100.99"
    h = Harness(listen=[f"udp:{PROXY_IP}:5060", f"udp:{other}:5060"])
    # Arrives on the second socket; the callee is reached from the first one (the preferred
    # socket of the transport), so both sides need their own Record-Route.
    acts = h.proxy.receive(req(), Target("udp", CALLER[0], CALLER[1], None, h.cfg.listen[1]))
    fwd = sends(acts)[1]
    assert fwd.dest.local == h.cfg.listen[1]
    assert fastsip.parse(fwd.data).headers.getall("Record-Route") == [f"<sip:{other};lr>"]


def test_the_ack_of_a_stateless_final_is_absorbed_not_relayed_to_its_route():
    # A phone's INVITE through us as outbound proxy gets a stateless 404; its ACK carries the same
    # preloaded Route and our To tag, and must end here (OpenSIPS sl absorbs it). ("relay": the
    # 2xx ACK below belongs to no dialog of ours, which "auto" drops off loopback.)
    h = Harness(stateless_responses="relay")
    invite = req(ruri=f"sip:nobody@{PROXY_IP}", extra=f"Route: <sip:{PROXY_IP};lr>\r\n")
    not_found = fastsip.parse(sends(h.rx(invite))[0].data)
    assert not_found.status == 404
    ack = req("ACK", ruri=f"sip:nobody@{PROXY_IP}", to_tag=not_found.to.tag, extra=f"Route: <sip:{PROXY_IP};lr>\r\n")
    assert h.rx(ack) == []
    assert h.proxy.stats.absorbed_acks == 1
    # An ACK with another To tag (a 2xx's, end to end) is still routed.
    other = req("ACK", to_tag="callee-tag", extra=f"Route: <sip:{PROXY_IP};lr>, <sip:10.9.9.9:5080;lr>\r\n")
    assert [s.dest.addr for s in sends(h.rx(other))] == [("10.9.9.9", 5080)]
