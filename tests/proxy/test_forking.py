"""Parallel and sequential forking and the full RFC 3261 §16.7 response context, without sockets.

A script hands the core a branch set (``ctx.forks``: groups of Destinations, what the location
lookup builds): the first group rings at once, the next group when every branch of the one
before failed. Responses are fed per branch in the orders a real network could deliver them.
"""

from __future__ import annotations

import types

import fastsip
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyapp.core.context import Destination
from proxyapp.script import Script

from .harness import CALLER, Harness, req, resp_for, sends

A = ("10.0.0.21", 5070)
B = ("10.0.0.22", 5070)
C = ("10.0.0.23", 5070)


def _uri(addr, user="bob"):
    return f"sip:{user}@{addr[0]}:{addr[1]}"


def forking_harness(groups):
    """A proxy whose script forks every initial INVITE to ``groups`` (lists of Destinations)."""

    def route(msg, ctx):
        if msg.method == "CANCEL":
            ctx.t_relay()
            return
        ctx.record_route()
        ctx.forks = [list(g) for g in groups]
        ctx.t_relay()

    module = types.ModuleType("forking_script")
    module.route = route
    return Harness(Script(module, None))


def _by_dest(actions):
    return {s.dest.addr: s for s in sends(actions)}


def test_one_group_rings_every_destination_at_once_each_with_its_own_request_uri_and_branch():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B, "bob2"))]])
    acts = h.rx(req())
    s = sends(acts)
    assert s[0].dest.addr == CALLER and s[0].data.startswith(b"SIP/2.0 100 ")
    out = _by_dest(acts)
    assert set(out) == {CALLER, A, B}
    a, b = fastsip.parse(out[A].data), fastsip.parse(out[B].data)
    assert (a.raw_uri, b.raw_uri) == (_uri(A), _uri(B, "bob2"))
    assert a.via[0].branch != b.via[0].branch
    assert a.via[0].branch.endswith(".0") and b.via[0].branch.endswith(".1")
    assert a.max_forwards == b.max_forwards == 69
    assert a.headers.getall("Record-Route") == b.headers.getall("Record-Route")


def test_a_2xx_is_forwarded_at_once_and_the_other_ringing_branch_is_cancelled():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))]])
    out = _by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 180, "Ringing", to_tag="ta"), A)
    h.rx(resp_for(out[B].data, 180, "Ringing", to_tag="tb"), B)
    acts = h.rx(resp_for(out[B].data, 200, "OK", to_tag="tb"), B)
    s = sends(acts)
    assert [x.dest.addr for x in s] == [CALLER, A]
    assert s[0].data.startswith(b"SIP/2.0 200 OK\r\n")
    cancel = fastsip.parse(s[1].data)
    assert cancel.method == "CANCEL" and cancel.via[0].branch == fastsip.parse(out[A].data).via[0].branch
    # A's 487 is ACKed hop by hop and never reaches the caller (a final was sent).
    s = sends(h.rx(resp_for(out[A].data, 487, "Request Terminated", to_tag="ta"), A))
    assert [x.dest.addr for x in s] == [A] and s[0].data.startswith(b"ACK ")


def test_every_2xx_is_forwarded_even_after_the_first():
    # §16.7 step 5: two branches answered; both 2xx go upstream (the caller ACKs and BYEs one).
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))]])
    out = _by_dest(h.rx(req()))
    first = sends(h.rx(resp_for(out[A].data, 200, "OK", to_tag="ta"), A))
    second = sends(h.rx(resp_for(out[B].data, 200, "OK", to_tag="tb"), B))
    assert [x.dest.addr for x in first if x.data.startswith(b"SIP/2.0 200")] == [CALLER]
    assert [x.dest.addr for x in second if x.data.startswith(b"SIP/2.0 200")] == [CALLER]
    assert b"tag=tb" in [x for x in second if x.data.startswith(b"SIP/2.0 200")][0].data


def test_the_next_group_rings_only_when_every_branch_of_the_first_failed():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))], [Destination(_uri(C))]])
    out = _by_dest(h.rx(req()))
    assert C not in out
    s = sends(h.rx(resp_for(out[A].data, 486, "Busy Here", to_tag="ta"), A))
    assert [x.dest.addr for x in s] == [A]  # the ACK; B still rings, C waits
    s = sends(h.rx(resp_for(out[B].data, 480, "Temporarily Unavailable", to_tag="tb"), B))
    assert [x.dest.addr for x in s] == [B, C]  # B's ACK, then the next group
    c = fastsip.parse(s[1].data)
    assert c.raw_uri == _uri(C) and c.via[0].branch.endswith(".2")
    s = sends(h.rx(resp_for(s[1].data, 200, "OK", to_tag="tc"), C))
    assert [x.dest.addr for x in s] == [CALLER] and s[0].data.startswith(b"SIP/2.0 200 OK\r\n")


def test_a_6xx_ends_the_search_cancels_the_others_and_skips_later_groups():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))], [Destination(_uri(C))]])
    out = _by_dest(h.rx(req()))
    h.rx(resp_for(out[B].data, 180, "Ringing", to_tag="tb"), B)
    s = sends(h.rx(resp_for(out[A].data, 603, "Decline", to_tag="ta"), A))
    assert [x.dest.addr for x in s] == [A, B]  # ACK to A, CANCEL to B
    assert s[1].data.startswith(b"CANCEL ")
    s = sends(h.rx(resp_for(out[B].data, 487, "Request Terminated", to_tag="tb"), B))
    assert [x.dest.addr for x in s] == [B, CALLER]
    assert s[1].data.startswith(b"SIP/2.0 603 Decline\r\n")


def test_challenges_of_every_branch_are_merged_into_the_401_sent_upstream():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))]])
    out = _by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 401, "Unauthorized", to_tag="ta",
                  extra='WWW-Authenticate: Digest realm="a.example", nonce="n1"\r\n'), A)
    s = sends(h.rx(resp_for(out[B].data, 407, "Proxy Authentication Required", to_tag="tb",
                           extra='Proxy-Authenticate: Digest realm="b.example", nonce="n2"\r\n'), B))
    up = fastsip.parse([x for x in s if x.dest.addr == CALLER][0].data)
    assert up.status == 401
    assert up.headers.getall("WWW-Authenticate") == ['Digest realm="a.example", nonce="n1"']
    assert up.headers.getall("Proxy-Authenticate") == ['Digest realm="b.example", nonce="n2"']


def test_a_destination_route_and_dst_uri_are_used_for_its_branch_only():
    path = "<sip:10.0.0.99:5090;lr>"
    h = forking_harness([[Destination(_uri(A), route=(path,)), Destination(_uri(B), dst_uri="udp:10.0.0.77:4444")]])
    out = _by_dest(h.rx(req()))
    assert set(out) == {CALLER, ("10.0.0.99", 5090), ("10.0.0.77", 4444)}
    via_path = fastsip.parse(out[("10.0.0.99", 5090)].data)
    assert via_path.raw_uri == _uri(A) and via_path.headers.getall("Route") == [path]
    direct = fastsip.parse(out[("10.0.0.77", 4444)].data)
    assert direct.raw_uri == _uri(B) and direct.headers.getall("Route") == []


def test_a_destination_that_cannot_be_routed_is_a_local_478_and_the_rest_still_ring():
    h = forking_harness([[Destination("tel:+1555"), Destination(_uri(A))]])
    out = _by_dest(h.rx(req()))
    assert set(out) == {CALLER, A}
    s = sends(h.rx(resp_for(out[A].data, 404, "Not Found", to_tag="ta"), A))
    assert s[-1].dest.addr == CALLER and s[-1].data.startswith(b"SIP/2.0 404 Not Found\r\n")


def test_no_routable_destination_at_all_answers_478_at_once():
    h = forking_harness([[Destination("tel:+1555")]])
    s = sends(h.rx(req()))
    assert [x.dest.addr for x in s] == [CALLER, CALLER]
    assert s[1].data.startswith(b"SIP/2.0 478 Unresolvable destination\r\n")


# ------------------------------------------------------------------ §16.7 over any arrival order


def _expected(finals):
    """The final §16.7 sends upstream first, for the branches' finals in arrival order."""
    for status in finals:
        if 200 <= status < 300:
            return status  # step 5: a 2xx is forwarded the moment it arrives, whatever came before
    for status in finals:
        if status >= 600:
            return status  # step 6: a 6xx is held until the others end, then wins
    # Step 6: the lowest class wins, the earliest within it; a received 503 is sent as 500.
    best = min(finals, key=lambda s: s // 100)
    return 500 if best == 503 else best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([200, 302, 404, 480, 486, 503, 600, 603]), min_size=2, max_size=4))
def test_the_upstream_final_follows_section_16_7_for_any_order_of_branch_finals(finals):
    dests = [("10.0.1.%d" % (i + 1), 5070) for i in range(len(finals))]
    h = forking_harness([[Destination(_uri(d)) for d in dests]])
    out = _by_dest(h.rx(req()))
    for d in dests:  # every branch rings, so a CANCEL can go at once when one is due
        h.rx(resp_for(out[d].data, 180, "Ringing", to_tag="t" + d[0]), d)
    upstream = []
    for d, status in zip(dests, finals):
        for s in sends(h.rx(resp_for(out[d].data, status, "X", to_tag="t" + d[0]), d)):
            if s.dest.addr == CALLER and not s.data.startswith(b"SIP/2.0 1"):
                upstream.append(fastsip.parse(s.data).status)
    assert upstream, "no final went upstream"
    assert upstream[0] == _expected(finals)
    # After the first final only 2xx may follow (§16.7 step 5 / §16.7 step 10 2xx rule).
    assert all(200 <= x < 300 for x in upstream[1:])


def test_a_cancel_from_the_caller_cancels_every_ringing_branch_and_no_later_group_rings():
    h = forking_harness([[Destination(_uri(A)), Destination(_uri(B))], [Destination(_uri(C))]])
    out = _by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 180, "Ringing", to_tag="ta"), A)
    h.rx(resp_for(out[B].data, 180, "Ringing", to_tag="tb"), B)
    s = sends(h.rx(req("CANCEL")))
    assert sorted(x.dest.addr for x in s) == sorted([CALLER, A, B])
    assert [x for x in s if x.dest.addr == CALLER][0].data.startswith(b"SIP/2.0 200 OK\r\n")
    h.rx(resp_for(out[A].data, 487, "Request Terminated", to_tag="ta"), A)
    s = sends(h.rx(resp_for(out[B].data, 487, "Request Terminated", to_tag="tb"), B))
    assert [x.dest.addr for x in s] == [B, CALLER]  # ACK, then the 487 upstream; C never rang
    assert s[1].data.startswith(b"SIP/2.0 487 ")
