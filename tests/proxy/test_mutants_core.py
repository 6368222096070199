"""RFC 3261 §16 rules of the proxy core that mutation testing found unpinned.

Sans-IO, like test_proxy.py: messages and timer firings in, the exact actions and bytes out.
The §16.7 tests fork one INVITE to two or three callees (the script's branch set, ``ctx.forks``)
so that the response context has several finals to choose from.
"""

from __future__ import annotations

import types

import fastsip
from proxyapp.core.context import Destination
from proxyapp.proxy import Target
from proxyapp.script import Script
from proxyapp.transaction import CancelTimer, Send, StartTimer

from .harness import CALLEE, CALLER, Harness, branch_of, req, resp_for, sends
from .seed import PROXY_IP

A = ("10.0.0.21", 5070)
B = ("10.0.0.22", 5070)
C = ("10.0.0.23", 5070)
UPSTREAM = Target("udp", CALLER[0], CALLER[1], None, None)  # .local is filled per harness


def _uri(addr):
    return f"sip:bob@{addr[0]}:{addr[1]}"


def _script(route, **more):
    return Script(types.SimpleNamespace(route=route, **more), None)


def forking(groups, failure=None, **cfg):
    """A proxy whose script forks every initial INVITE to ``groups`` of addresses."""

    def route(msg, ctx):
        if msg.method == "CANCEL":
            ctx.t_relay()
            return
        if failure is not None:
            ctx.t_on_failure(failure)
        ctx.forks = [[Destination(_uri(a)) for a in g] for g in groups]
        ctx.t_relay()

    return Harness(_script(route), **cfg)


def by_dest(actions):
    return {s.dest.addr: s for s in sends(actions)}


def first_lines(actions):
    return [(s.dest.addr, s.data.split(b"\r\n")[0].decode()) for s in sends(actions)]


def upstream_headers(actions, *names):
    (up,) = [s for s in sends(actions) if s.dest.addr == CALLER]
    head = up.data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    wanted = tuple(n.lower() + ":" for n in names)
    return head[0], [line for line in head[1:] if line.lower().startswith(wanted)]


def ring_all(h, out, *addrs):
    for a in addrs:
        h.rx(resp_for(out[a].data, 180, "Ringing", to_tag="t" + a[0]), a)


# ------------------------------------------------------------------ §16.7: 3xx and 6xx are finals, not 2xx


def test_a_300_is_acked_and_held_like_any_non_2xx_final():
    # §16.7 step 5 forwards only 2xx at once; a 300 is ACKed (§17.1.1.3) and waits for the other
    # branch (step 6), which is not CANCELled (step 10 is for 2xx and 6xx only).
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    ring_all(h, out, A, B)
    acts = h.rx(resp_for(out[A].data, 300, "Multiple Choices", to_tag="ta"), A)
    assert first_lines(acts) == [(A, f"ACK {_uri(A)} SIP/2.0")]
    acts = h.rx(resp_for(out[B].data, 486, "Busy Here", to_tag="tb"), B)
    assert first_lines(acts) == [(B, f"ACK {_uri(B)} SIP/2.0"), (CALLER, "SIP/2.0 300 Multiple Choices")]


def test_a_600_cancels_the_other_ringing_branch():
    # §16.7 step 10: a 6xx ends the search; the other branches are CANCELled (600 is a 6xx).
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    ring_all(h, out, A, B)
    acts = h.rx(resp_for(out[A].data, 600, "Busy Everywhere", to_tag="ta"), A)
    assert first_lines(acts) == [(A, f"ACK {_uri(A)} SIP/2.0"), (B, f"CANCEL {_uri(B)} SIP/2.0")]


def test_a_300_on_the_only_group_member_rings_the_next_group_and_a_600_does_not():
    # §16.5 / §16.7 step 6: a 3xx-5xx lets the next q group ring; a 6xx (600 included) ends it.
    h = forking([[A], [B]])
    out = by_dest(h.rx(req()))
    acts = h.rx(resp_for(out[A].data, 300, "Multiple Choices", to_tag="ta"), A)
    assert first_lines(acts) == [(A, f"ACK {_uri(A)} SIP/2.0"), (B, f"INVITE {_uri(B)} SIP/2.0")]
    h = forking([[A], [B]])
    out = by_dest(h.rx(req()))
    acts = h.rx(resp_for(out[A].data, 600, "Busy Everywhere", to_tag="ta"), A)
    assert first_lines(acts) == [(A, f"ACK {_uri(A)} SIP/2.0"), (CALLER, "SIP/2.0 600 Busy Everywhere")]


def test_a_300_after_timer_c_gave_the_branch_its_local_408_is_only_acked():
    # After a local outcome only a 2xx still goes upstream (RFC 3261 §16.7 step 5); a 300 is
    # ACKed and dropped.
    h = Harness(timers={"fr_inv_timeout": 5})
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    acts = h.fire(fwd.tx, "C")
    assert [line for _, line in first_lines(acts)] == [f"CANCEL sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0",
                                                       "SIP/2.0 408 Request Timeout"]
    acts = h.rx(resp_for(fwd.data, 300, "Multiple Choices"), CALLEE)
    assert first_lines(acts) == [(CALLEE, f"ACK sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0")]


# ------------------------------------------------------------------ §16.7 step 6: the best final


def test_within_a_class_the_earliest_final_wins():
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 404, "Not Found", to_tag="ta"), A)
    acts = h.rx(resp_for(out[B].data, 400, "Bad Request", to_tag="tb"), B)
    assert first_lines(acts)[-1] == (CALLER, "SIP/2.0 404 Not Found")


def test_a_received_503_still_wins_its_class_and_goes_up_as_our_500():
    # Earliest in the 5xx class is the 503; step 6 turns it into a 500 of our own (not the
    # callee's 500 with its reason phrase).
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 503, "Service Unavailable", to_tag="ta"), A)
    acts = h.rx(resp_for(out[B].data, 500, "Oops", to_tag="tb"), B)
    assert first_lines(acts)[-1] == (CALLER, "SIP/2.0 500 Server Internal Error")


def test_a_received_final_beats_a_local_408_of_its_class():
    # Branch A timed out (Timer B: our 408); B's received 400 is the same class and wins.
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    assert sends(h.fire(out[A].tx, "B")) == []
    acts = h.rx(resp_for(out[B].data, 400, "Bad Request", to_tag="tb"), B)
    assert first_lines(acts) == [(B, f"ACK {_uri(B)} SIP/2.0"), (CALLER, "SIP/2.0 400 Bad Request")]


def test_a_received_500_beats_a_local_503_after_a_transport_error():
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    assert sends(h._track(h.proxy.transport_error(out[A].tx))) == []
    acts = h.rx(resp_for(out[B].data, 500, "Oops", to_tag="tb"), B)
    assert first_lines(acts) == [(B, f"ACK {_uri(B)} SIP/2.0"), (CALLER, "SIP/2.0 500 Oops")]


# ------------------------------------------------------------------ §16.7 step 7: challenges


def test_a_401_upstream_merges_new_challenges_once_each():
    w1, w2, p1 = 'Digest realm="a", nonce="1"', 'Digest realm="b", nonce="2"', 'Digest realm="p", nonce="3"'
    h = forking([[A, B, C]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 401, "Unauthorized", to_tag="ta", extra=f"WWW-Authenticate: {w1}\r\n"), A)
    h.rx(resp_for(out[B].data, 401, "Unauthorized", to_tag="tb",
                  extra=f"WWW-Authenticate: {w1}\r\nWWW-Authenticate: {w2}\r\n"), B)
    acts = h.rx(resp_for(out[C].data, 407, "Proxy Authentication Required", to_tag="tc",
                         extra=f"Proxy-Authenticate: {p1}\r\n"), C)
    assert upstream_headers(acts, "WWW-Authenticate", "Proxy-Authenticate") == (
        "SIP/2.0 401 Unauthorized",
        [f"WWW-Authenticate: {w1}", f"WWW-Authenticate: {w2}", f"Proxy-Authenticate: {p1}"],
    )


def test_a_407_upstream_merges_the_401_challenges_of_the_other_branches_once_each():
    w1, p1 = 'Digest realm="a", nonce="1"', 'Digest realm="p", nonce="3"'
    h = forking([[A, B, C]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 407, "Proxy Authentication Required", to_tag="ta",
                  extra=f"Proxy-Authenticate: {p1}\r\n"), A)
    h.rx(resp_for(out[B].data, 401, "Unauthorized", to_tag="tb", extra=f"WWW-Authenticate: {w1}\r\n"), B)
    acts = h.rx(resp_for(out[C].data, 401, "Unauthorized", to_tag="tc",
                         extra=f"WWW-Authenticate: {w1}\r\nProxy-Authenticate: {p1}\r\n"), C)
    assert upstream_headers(acts, "WWW-Authenticate", "Proxy-Authenticate") == (
        "SIP/2.0 407 Proxy Authentication Required",
        [f"Proxy-Authenticate: {p1}", f"WWW-Authenticate: {w1}"],
    )


def test_only_a_401_or_407_upstream_gets_challenges_and_only_from_401_407_branches():
    w1, w9 = 'Digest realm="a", nonce="1"', 'Digest realm="z", nonce="9"'
    # The chosen final is a 404 (earliest of class 4): no challenge is added to it.
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 404, "Not Found", to_tag="ta"), A)
    acts = h.rx(resp_for(out[B].data, 401, "Unauthorized", to_tag="tb", extra=f"WWW-Authenticate: {w1}\r\n"), B)
    assert upstream_headers(acts, "WWW-Authenticate", "Proxy-Authenticate") == ("SIP/2.0 404 Not Found", [])
    # A 403 that happens to carry a WWW-Authenticate is no challenge to merge.
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 401, "Unauthorized", to_tag="ta", extra=f"WWW-Authenticate: {w1}\r\n"), A)
    acts = h.rx(resp_for(out[B].data, 403, "Forbidden", to_tag="tb", extra=f"WWW-Authenticate: {w9}\r\n"), B)
    assert upstream_headers(acts, "WWW-Authenticate") == ("SIP/2.0 401 Unauthorized", [f"WWW-Authenticate: {w1}"])


# ------------------------------------------------------------------ §16.10 / §9.1: CANCEL


def test_a_branch_cancelled_by_another_branchs_2xx_is_cancelled_at_its_first_provisional():
    # §16.7 step 10 CANCELs the other branches after a 2xx; §9.1: not before they sent a
    # provisional. B's 180 (not forwarded: a final went up) releases its CANCEL.
    h = forking([[A, B]])
    out = by_dest(h.rx(req()))
    h.rx(resp_for(out[A].data, 180, "Ringing", to_tag="ta"), A)
    acts = h.rx(resp_for(out[A].data, 200, "OK", to_tag="ta"), A)
    assert first_lines(acts) == [(CALLER, "SIP/2.0 200 OK")]  # B has not answered yet: no CANCEL
    acts = h.rx(resp_for(out[B].data, 180, "Ringing", to_tag="tb"), B)
    assert first_lines(acts) == [(B, f"CANCEL {_uri(B)} SIP/2.0")]


def test_a_cancelled_call_whose_callee_never_answers_gets_487_at_timer_c():
    # §16.8 / §16.10: the CANCEL went down, no 487 came; at Timer C the local outcome is
    # reported as 487 Request Terminated, the answer the caller's CANCEL asked for.
    h = Harness()
    acts = h.rx(req())
    fwd = sends(acts)[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    assert [line for _, line in first_lines(h.rx(req("CANCEL")))] == [
        "SIP/2.0 200 OK", f"CANCEL sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0"]
    acts = h.fire(fwd.tx, "C")
    s = sends(acts)
    assert len(s) == 1 and s[0].dest.addr == CALLER
    assert s[0].data.startswith(
        b"SIP/2.0 487 Request Terminated\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKc1\r\n"
    )
    assert fastsip.parse(s[0].data).to.tag  # a local final carries our To tag


def test_the_cancel_transaction_takes_a_provisional_and_its_200():
    # The CANCEL's own non-INVITE client transaction (§9.1): a 100 moves it to Proceeding, the
    # 200 completes it (Timer K); neither goes upstream, and no ACK is built for them.
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    cancel = sends(h.rx(req("CANCEL")))[1]
    ctx = cancel.tx
    assert h.rx(resp_for(cancel.data, 100, "Trying"), CALLEE) == []
    assert h.rx(resp_for(cancel.data, 200, "OK"), CALLEE) == [
        CancelTimer(ctx, "E"), CancelTimer(ctx, "F"), StartTimer(ctx, "K", 5.0)]


def test_a_cancel_refused_with_481_completes_its_transaction():
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    cancel = sends(h.rx(req("CANCEL")))[1]
    ctx = cancel.tx
    assert h.rx(resp_for(cancel.data, 481, "Call/Transaction Does Not Exist"), CALLEE) == [
        CancelTimer(ctx, "E"), CancelTimer(ctx, "F"), StartTimer(ctx, "K", 5.0)]


# ------------------------------------------------------------------ §16.7 without a transaction


def test_a_response_that_matches_no_transaction_is_forwarded_statelessly_by_its_second_via():
    # §16.7 (via §16.11): our Via on top, no client transaction (a late 2xx): pop our Via and
    # send to the next Via's received/rport.
    h = Harness(stateless_responses="relay")  # (the RFC's behaviour; "auto" drops off loopback)
    resp = (
        f"SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKgone.1\r\n"
        f"Via: SIP/2.0/UDP 192.168.1.20:5062;received=203.0.113.7;rport=4539;branch=z9hG4bKc1\r\n"
        f"From: <sip:alice@{CALLER[0]}>;tag=a1\r\n"
        f"To: <sip:bob@{CALLEE[0]}>;tag=b1\r\n"
        f"Call-ID: late@test\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
    acts = h.rx(resp, CALLEE)
    assert acts == [Send(Target("udp", "203.0.113.7", 4539, None, h.udp), resp.replace(
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKgone.1\r\n".encode(), b""))]
    assert h.proxy.stats.stateless_replies == 1
    # Not ours on top, or nothing below ours: dropped.
    assert h.rx(resp.replace(f"Via: SIP/2.0/UDP {PROXY_IP}:5060".encode(), b"Via: SIP/2.0/UDP 10.9.9.9:5060"), CALLEE) == []
    only_ours = b"\r\n".join(line for line in resp.split(b"\r\n") if not line.startswith(b"Via: SIP/2.0/UDP 192.168"))
    assert h.rx(only_ours, CALLEE) == []
    assert h.proxy.stats.dropped == 2


# ------------------------------------------------------------------ failure route


def test_the_failure_route_runs_once_on_a_300_and_the_best_final_goes_up():
    seen = []

    def failure(msg, ctx):
        seen.append(ctx.reply_code)

    h = forking([[A]], failure=failure)
    out = by_dest(h.rx(req()))
    acts = h.rx(resp_for(out[A].data, 300, "Multiple Choices", to_tag="ta"), A)
    assert seen == [300]
    assert first_lines(acts) == [(A, f"ACK {_uri(A)} SIP/2.0"), (CALLER, "SIP/2.0 300 Multiple Choices")]
    assert h.proxy.stats.script_errors == 0


def test_the_failure_route_is_one_shot_the_fallback_failure_goes_up():
    seen = []

    def failure(msg, ctx):
        seen.append(ctx.reply_code)
        if len(seen) == 1:
            ctx.t_relay(f"udp:{B[0]}:{B[1]}")

    h = forking([[A]], failure=failure)
    out = by_dest(h.rx(req()))
    acts = h.rx(resp_for(out[A].data, 486, "Busy Here", to_tag="ta"), A)
    second = [s for s in sends(acts) if s.dest.addr == B][0]
    acts = h.rx(resp_for(second.data, 480, "Temporarily Unavailable", to_tag="tb"), B)
    assert seen == [486]
    # §16.7 step 6 chooses over every branch of the context: A's 486 came first in class 4.
    assert first_lines(acts) == [(B, f"ACK {_uri(A)} SIP/2.0"), (CALLER, "SIP/2.0 486 Busy Here")]
    assert h.proxy.stats.script_errors == 0 and h.proxy.stats.dropped == 0


# ------------------------------------------------------------------ reply route (OpenSIPS onreply_route)


def test_a_reply_route_returning_false_drops_a_provisional_but_never_a_final():
    seen = []

    def onreply_route(resp, ctx):
        seen.append(resp.status)
        return False

    def route(msg, ctx):
        ctx.t_relay()

    h = Harness(_script(route, onreply_route=onreply_route))
    fwd = sends(h.rx(req()))[1]
    assert sends(h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)) == []
    acts = h.rx(resp_for(fwd.data, 200, "OK"), CALLEE)
    assert first_lines(acts) == [(CALLER, "SIP/2.0 200 OK")]
    assert seen == [180, 200]


# ------------------------------------------------------------------ §16.7 step 5 for a non-INVITE


def test_a_forked_non_invite_sends_only_its_first_final_upstream():
    # Only an INVITE's 2xx may follow a final upstream (§16.7 step 5); a second 200 to a forked
    # MESSAGE is dropped, not forwarded statelessly.
    def route(msg, ctx):
        ctx.forks = [[Destination(_uri(A)), Destination(_uri(B))]]
        ctx.t_relay()

    h = Harness(_script(route))
    out = by_dest(h.rx(req("MESSAGE")))
    acts = h.rx(resp_for(out[A].data, 200, "OK", to_tag="ta"), A)
    assert first_lines(acts) == [(CALLER, "SIP/2.0 200 OK")]
    acts = h.rx(resp_for(out[B].data, 202, "Accepted", to_tag="tb"), B)
    assert sends(acts) == []


# ------------------------------------------------------------------ accounting events of §16.7 outcomes


class Recorder:
    """An AccObserver that records the calls the core makes."""

    def __init__(self):
        self.calls = []

    def observe_request(self, request, source_addr, ts):
        pass

    def observe_response(self, response, ts):
        pass

    def transaction_completed(self, mark, request, status, reason, to_tag, source_addr, ts):
        self.calls.append(("completed", mark, request.method, status, reason, source_addr, ts))

    def branch_failed(self, mark, request, status, reason, to_tag, source_addr, ts):
        self.calls.append(("branch_failed", mark, request.method, status, reason, to_tag, source_addr, ts))


def _acc_harness():
    def route(msg, ctx):
        if msg.headers.get("X-Acc"):
            ctx.acc_mark = "mark"
        ctx.t_relay()

    h = Harness(_script(route))
    rec = Recorder()
    h.proxy.acc = rec
    return h, rec


def test_a_marked_invite_whose_branch_times_out_reports_the_local_408_reason():
    h, rec = _acc_harness()
    fwd = sends(h.rx(req(extra="X-Acc: 1\r\n")))[1]
    h.fire(fwd.tx, "B")
    assert rec.calls[0] == ("branch_failed", "mark", "INVITE", 408, "Request Timeout", None, CALLER, 1000.0)
    assert rec.calls[1][:5] == ("completed", "mark", "INVITE", 408, "Request Timeout")


def test_a_marked_invite_whose_branch_fails_on_transport_reports_the_local_503_reason():
    h, rec = _acc_harness()
    fwd = sends(h.rx(req(extra="X-Acc: 1\r\n")))[1]
    h._track(h.proxy.transport_error(fwd.tx))
    assert rec.calls[0] == ("branch_failed", "mark", "INVITE", 503, "Service Unavailable", None, CALLER, 1000.0)


def test_branch_failed_is_reported_only_for_a_marked_invite():
    h, rec = _acc_harness()
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
    assert [c[0] for c in rec.calls] == ["completed"]
    h, rec = _acc_harness()
    fwd = sends(h.rx(req("MESSAGE", extra="X-Acc: 1\r\n")))[0]
    h.rx(resp_for(fwd.data, 404, "Not Found"), CALLEE)
    assert [c[0] for c in rec.calls] == ["completed"]


# ------------------------------------------------------------------ §16.3 / §16.6 in t_relay itself


def _relay_only(rewrite=None):
    """A script that only calls t_relay (no mf_process_maxfwd_header of its own)."""

    def route(msg, ctx):
        if rewrite is not None:
            ctx.ruri = rewrite
        ctx.t_relay()

    return Harness(_script(route))


def test_t_relay_answers_483_itself_to_max_forwards_0_through_a_transaction():
    # §16.3 step 3: Max-Forwards 0 -> 483; t_relay makes a server transaction for it (no 100),
    # so a retransmission gets the same 483 again and nothing is forwarded.
    h = _relay_only()
    acts = h.rx(req(max_forwards="0"))
    s = sends(acts)
    assert len(s) == 1 and s[0].dest.addr == CALLER
    assert s[0].data.startswith(b"SIP/2.0 483 Too Many Hops\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKc1\r\n")
    assert fastsip.parse(s[0].data).to.tag
    assert sends(h.rx(req(max_forwards="0"))) == [Send(s[0].dest, s[0].data, s[0].tx)]
    assert h.proxy.stats.forwarded == 0 and len(h.proxy.server_txs) == 1


def test_t_relay_decrements_max_forwards_1_to_0_and_adds_70_when_absent():
    # §16.6 step 3.
    h = _relay_only()
    fwd = sends(h.rx(req(max_forwards="1")))[1]
    assert b"\r\nMax-Forwards: 0\r\n" in fwd.data
    fwd = sends(h.rx(req(max_forwards=None, branch="z9hG4bKc2")))[1]
    assert b"\r\nMax-Forwards: 70\r\n" in fwd.data
    fwd = sends(h.rx(req(branch="z9hG4bKc3")))[1]
    assert b"\r\nMax-Forwards: 69\r\n" in fwd.data
    assert h.proxy.stats.forwarded == 3


def test_the_branch_carries_the_loop_hash_of_the_request_as_received():
    # §16.6 step 8: the loop-detection part of our branch is computed before the script edits
    # the request (here: a new Request-URI), so a spiral and a loop stay distinguishable.
    from proxyapp.proxy import Proxy

    received = req()
    lh = Proxy._loop_hash(fastsip.parse(received))
    h = _relay_only(rewrite="sip:carol@10.0.0.9:5070")
    fwd = sends(h.rx(received))[1]
    assert fwd.data.startswith(b"INVITE sip:carol@10.0.0.9:5070 SIP/2.0\r\n")
    assert branch_of(fwd.data) == f"z9hG4bK{lh:08x}.abc1.0"


def test_the_loop_hash_covers_from_tag_to_tag_call_id_cseq_and_request_uri():
    # §16.6 step 8 / §16.3 step 4: requests that differ in any of these are not the same request.
    from proxyapp.proxy import Proxy

    def lh(data):
        return Proxy._loop_hash(fastsip.parse(data))

    base = req()
    variants = [
        base.replace(b";tag=a1", b";tag=a2"),
        req(to_tag="b9"),
        base.replace(b"call-1@test", b"call-2@test"),
        req(cseq=2),
        req(ruri="sip:carol@10.0.0.9"),
    ]
    hashes = [lh(base)] + [lh(v) for v in variants]
    assert len(set(hashes)) == len(hashes)
    assert lh(req()) == hashes[0]


def test_a_request_with_non_utf8_bytes_still_gets_a_loop_hash_and_is_forwarded():
    h = _relay_only()
    data = req().replace(b"call-1@test", b"call-\xff@test")
    s = sends(h.rx(data))
    assert [x.data[:12] for x in s] == [b"SIP/2.0 100 ", b"INVITE sip:b"]


# ------------------------------------------------------------------ §17.2.1: ACK absorption


def test_every_retransmitted_ack_of_the_non_2xx_is_absorbed():
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
    ack = req("ACK", to_tag="b1")
    assert sends(h.rx(ack)) == []
    assert h.rx(ack) == []  # Confirmed: absorbed again, nothing forwarded
    assert h.proxy.stats.absorbed_acks == 2 and h.proxy.stats.stateless == 0


# ------------------------------------------------------------------ §16.3 step 1: malformed requests


def test_a_request_without_to_or_from_is_answered_400_naming_what_is_missing():
    h = Harness()
    for drop, name in ((b"To: ", b"To"), (b"From: ", b"From")):
        data = b"\r\n".join(line for line in req().split(b"\r\n") if not line.startswith(drop))
        s = sends(h.rx(data))
        assert len(s) == 1
        assert s[0].data.split(b"\r\n")[0] == b"SIP/2.0 400 Bad Request - missing " + name + b" (at byte 0)"


# ------------------------------------------------------------------ §18.2.1 / RFC 3581 / §18.2.2


def test_rport_from_the_sent_by_address_still_gets_received_and_rport_filled():
    # RFC 3581 §4: with rport the proxy MUST add received, even when it equals the sent-by.
    h = Harness()
    fwd = sends(h.rx(req(via_host=f"{CALLER[0]}:{CALLER[1]};rport")))[1]
    assert (f"\r\nVia: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};received={CALLER[0]};rport={CALLER[1]};"
            "branch=z9hG4bKc1\r\n").encode() in fwd.data


def test_received_alone_is_added_when_the_sent_by_differs_and_there_is_no_rport():
    h = Harness()
    fwd = sends(h.rx(req(via_host="192.168.1.20:5062")))[1]
    assert f"\r\nVia: SIP/2.0/UDP 192.168.1.20:5062;received={CALLER[0]};branch=z9hG4bKc1\r\n".encode() in fwd.data


def test_udp_replies_without_rport_go_to_the_sent_by_port_or_5060():
    # §18.2.2: no rport -> the port in the sent-by (5060 when absent), at the source address.
    h = Harness()
    s = sends(h.rx(req(via_host=CALLER[0]), src=(CALLER[0], 5999)))
    assert s[0].dest == Target("udp", CALLER[0], 5060, None, h.udp)


def test_replies_to_a_tcp_request_go_back_on_its_connection():
    # §18.2.2: reliable transport -> the response goes over the connection the request came on.
    h = Harness()
    conn = object()
    src = Target("tcp", CALLER[0], 40000, conn, h.cfg.listen[1])
    acts = h._track(h.proxy.receive(req(via_host=f"{CALLER[0]}:5062").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"), src))
    assert sends(acts)[0].dest == Target("tcp", CALLER[0], 40000, conn, h.cfg.listen[1])


# ------------------------------------------------------------------ §17.1: reliability of the next hop


def test_branches_over_tcp_arm_no_retransmission_timers():
    # Timers A and E run on unreliable transports only (§17.1.1.2, §17.1.2.2).
    h = Harness()
    acts = h.rx(req(ruri=f"sip:bob@{CALLEE[0]}:{CALLEE[1]};transport=tcp"))
    fwd = sends(acts)[1]
    assert [a for a in acts if isinstance(a, StartTimer)] == [StartTimer(fwd.tx, "B", 32.0), StartTimer(fwd.tx, "C", 180.0)]
    acts = h.rx(req("OPTIONS", ruri=f"sip:bob@{CALLEE[0]}:{CALLEE[1]};transport=tcp", branch="z9hG4bKo1"))
    fwd = sends(acts)[0]
    assert [a for a in acts if isinstance(a, StartTimer)] == [StartTimer(fwd.tx, "F", 32.0)]


def test_a_udp_request_without_content_length_is_forwarded_over_udp_without_one():
    # §18.3 / §16.6 step 9: only a stream needs Content-Length added.
    h = Harness()
    fwd = sends(h.rx(req().replace(b"Content-Length: 0\r\n", b"")))[1]
    assert b"Content-Length" not in fwd.data


# ------------------------------------------------------------------ §16.4 / §16.6 steps 6-7: Route sets


def test_strict_router_restoration_keeps_the_other_route_values_in_one_line():
    # §16.4: the Request-URI is ours (a strict router put our Record-Route there): the last Route
    # value becomes the Request-URI, the others stay, comma-joined, and routing continues.
    h = Harness()
    bye = req("BYE", ruri=f"sip:{PROXY_IP};lr", cseq=2, to_tag="b1",
              extra=f"Route: <sip:10.9.9.9:5080;lr>\r\nRoute: <sip:bob@{CALLEE[0]}:{CALLEE[1]}>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == ("10.9.9.9", 5080)
    assert s[0].data.startswith(f"BYE sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n".encode())
    head = s[0].data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert [line for line in head if line.lower().startswith(b"route:")] == [b"Route: <sip:10.9.9.9:5080;lr>"]


def test_a_strict_next_hop_gets_the_request_uri_appended_after_the_remaining_routes():
    # §16.6 step 6: the R-URI goes to the end of the Route set, the strict router's URI replaces it.
    h = Harness()
    bye = req("BYE", cseq=2, to_tag="b1", extra="Route: <sip:10.9.9.9:5080>, <sip:10.8.8.8;lr>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == ("10.9.9.9", 5080)
    assert s[0].data.startswith(b"BYE sip:10.9.9.9:5080 SIP/2.0\r\n")
    head = s[0].data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert [line for line in head if line.lower().startswith(b"route:")] == [
        f"Route: <sip:10.8.8.8;lr>, <sip:bob@{CALLEE[0]}:{CALLEE[1]}>".encode()]


# ------------------------------------------------------------------ forking: per-branch copies


def test_each_branch_of_a_later_group_gets_only_its_own_route():
    # Every branch is its own copy of the request (§16.6: "make a copy of the received
    # request" per target): a Path Route of one destination never leaks into another.
    p1, p2 = "<sip:10.0.0.91:5090;lr>", "<sip:10.0.0.92:5090;lr>"
    relayed = []

    def route(msg, ctx):
        ctx.forks = [[Destination(_uri(A), route=(p1,))],
                     [Destination(_uri(B), route=(p2,)), Destination(_uri(C))]]
        relayed.append(ctx.t_relay())

    h = Harness(_script(route))
    acts = h.rx(req())
    assert relayed == [True]
    first = sends(acts)[1]
    assert first.dest.addr == ("10.0.0.91", 5090)
    acts = h.rx(resp_for(first.data, 486, "Busy Here", to_tag="ta"), ("10.0.0.91", 5090))
    out = {s.dest.addr: s.data for s in sends(acts)}
    assert set(out) == {("10.0.0.91", 5090), ("10.0.0.92", 5090), C}

    def routes(data):
        head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
        return [line for line in head if line.lower().startswith(b"route:")]

    assert routes(out[("10.0.0.92", 5090)]) == [f"Route: {p2}".encode()]
    assert routes(out[C]) == []
    assert out[C].startswith(f"INVITE {_uri(C)} SIP/2.0\r\n".encode())


def test_a_fork_to_a_single_destination_then_a_failure_route_relay_decrements_max_forwards_once():
    def failure(msg, ctx):
        ctx.t_relay(f"udp:{B[0]}:{B[1]}")

    def route(msg, ctx):
        ctx.t_on_failure(failure)
        ctx.forks = [[Destination(_uri(A))]]
        ctx.t_relay()

    h = Harness(_script(route))
    first = sends(h.rx(req()))[1]
    assert b"\r\nMax-Forwards: 69\r\n" in first.data
    acts = h.rx(resp_for(first.data, 486, "Busy Here", to_tag="ta"), A)
    second = [s for s in sends(acts) if s.dest.addr == B][0]
    assert b"\r\nMax-Forwards: 69\r\n" in second.data
    # The loop-hash part of the branch is the context's: only the branch index differs.
    assert branch_of(second.data) == branch_of(first.data)[:-1] + "1"


def test_a_destination_with_a_bad_dst_uri_is_a_local_478():
    def route(msg, ctx):
        ctx.forks = [[Destination(_uri(A), dst_uri="bogus:x:y:z"), Destination(_uri(B))]]
        ctx.t_relay()

    h = Harness(_script(route))
    out = by_dest(h.rx(req()))
    assert set(out) == {CALLER, B}
    acts = h.rx(resp_for(out[B].data, 486, "Busy Here", to_tag="tb"), B)
    assert first_lines(acts)[-1] == (CALLER, "SIP/2.0 486 Busy Here")


def test_the_branch_route_runs_once_per_forked_branch():
    seen = []

    def on_branch(msg, ctx):
        seen.append(ctx.branch.id[-2:])

    def route(msg, ctx):
        ctx.t_on_branch(on_branch)
        ctx.forks = [[Destination(_uri(A)), Destination(_uri(B))]]
        ctx.t_relay()

    h = Harness(_script(route))
    assert set(by_dest(h.rx(req()))) == {CALLER, A, B}
    assert seen == [".0", ".1"]


# ------------------------------------------------------------------ §16.10 / §9.1: the CANCEL we build


def test_the_cancel_carries_the_route_set_the_invite_was_sent_with():
    # §9.1: a CANCEL has the same Request-URI, Call-ID, To, CSeq number and Route header fields
    # as the request it cancels; the hop-by-hop ACK of a non-2xx likewise (§17.1.1.3).
    h = Harness()
    invite = req(extra=f"Route: <sip:{PROXY_IP};lr>, <sip:10.9.9.9:5080;lr>\r\n")
    fwd = sends(h.rx(invite))[1]
    assert fwd.dest.addr == ("10.9.9.9", 5080)
    h.rx(resp_for(fwd.data, 180, "Ringing"), ("10.9.9.9", 5080))
    cancel = sends(h.rx(req("CANCEL", extra=f"Route: <sip:{PROXY_IP};lr>, <sip:10.9.9.9:5080;lr>\r\n")))[1]
    assert cancel.data == (
        f"CANCEL sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch={branch_of(fwd.data)}\r\n"
        "Route: <sip:10.9.9.9:5080;lr>\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{CALLER[0]}>;tag=a1\r\n"
        f"To: <sip:bob@{CALLEE[0]}>\r\n"
        "Call-ID: call-1@test\r\n"
        "CSeq: 1 CANCEL\r\n"
        "User-Agent: OpenSIPS (2.2.7 (x86_64/linux))\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    acts = h.rx(resp_for(fwd.data, 487, "Request Terminated"), ("10.9.9.9", 5080))
    ack = sends(acts)[0]
    assert ack.data.startswith(
        f"ACK sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch={branch_of(fwd.data)}\r\n"
        "Route: <sip:10.9.9.9:5080;lr>\r\nMax-Forwards: 70\r\n".encode())
    assert h.proxy.stats.dropped == 0


# ------------------------------------------------------------------ §16.11 stateless forwarding


def _forwarding(dest=None, rewrite=None, dst_uri=None):
    def route(msg, ctx):
        if rewrite is not None:
            ctx.ruri = rewrite
        if dst_uri is not None:
            ctx.set_dst_uri(dst_uri)
        ctx.forward(dest)

    return Harness(_script(route))


def test_stateless_forward_answers_483_to_max_forwards_0_and_drops_such_an_ack():
    # §16.3 step 3 applies to stateless forwarding too; an ACK is never answered.
    h = _forwarding()
    s = sends(h.rx(req("OPTIONS", max_forwards="0")))
    assert len(s) == 1 and s[0].dest.addr == CALLER
    assert s[0].data.startswith(b"SIP/2.0 483 Too Many Hops\r\n")
    assert h.rx(req("ACK", max_forwards="0", to_tag="b1")) == []
    s = sends(h.rx(req("OPTIONS", max_forwards="1", branch="z9hG4bKo2")))
    assert s[0].dest.addr == CALLEE and b"\r\nMax-Forwards: 0\r\n" in s[0].data
    assert h.proxy.stats.stateless == 1


def test_stateless_branch_is_the_loop_hash_as_received_and_a_per_request_id():
    # §16.11: the branch must be the same for every retransmission and differ between requests;
    # its loop part (§16.6 step 8) is the hash of the request as received.
    import re

    from proxyapp.proxy import Proxy

    received = req("OPTIONS")
    lh = Proxy._loop_hash(fastsip.parse(received))
    h = _forwarding(rewrite="sip:carol@10.0.0.9:5070")
    first = sends(h.rx(received))[0]
    assert first.dest.addr == ("10.0.0.9", 5070)
    assert re.fullmatch(rf"z9hG4bK{lh:08x}\.s[0-9a-f]{{8}}\.0", branch_of(first.data))
    assert sends(h.rx(received))[0].data == first.data
    other = sends(h.rx(received.replace(b"branch=z9hG4bKc1", b"branch=z9hG4bKc2")))[0]
    assert branch_of(other.data) != branch_of(first.data)
    assert branch_of(other.data).startswith(f"z9hG4bK{lh:08x}.s")


def test_stateless_forward_to_an_explicit_or_dst_uri_destination_over_tcp():
    h = _forwarding(dest="tcp:10.9.9.9:5080")
    s = sends(h.rx(req("OPTIONS")))
    assert s[0].dest == Target("tcp", "10.9.9.9", 5080, None, h.cfg.listen[1])
    assert s[0].data.startswith(f"OPTIONS sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\nVia: SIP/2.0/TCP {PROXY_IP}:5060;branch=".encode())
    h = _forwarding(dst_uri="sip:10.9.9.8:5090")
    s = sends(h.rx(req("OPTIONS")))
    assert s[0].dest == Target("udp", "10.9.9.8", 5090, None, h.udp)


# ------------------------------------------------------------------ local replies


def _replying(code, reason, stateful=False):
    def route(msg, ctx):
        if stateful:
            ctx.t_reply(code, reason)
        else:
            ctx.sl_send_reply(code, reason)

    return Harness(_script(route))


def test_local_replies_tag_the_to_of_anything_but_a_100():
    # §8.2.6.2: a UAS response other than 100 gets a To tag (kept when the request had one).
    for stateful in (False, True):
        h = _replying(100, "Trying", stateful)
        assert fastsip.parse(sends(h.rx(req("OPTIONS")))[0].data).to.tag is None
        h = _replying(101, "Dialog Establishment", stateful)
        tag = fastsip.parse(sends(h.rx(req("OPTIONS")))[0].data).to.tag
        assert tag and tag.endswith(".abc")
        h = _replying(404, "Nope", stateful)
        assert fastsip.parse(sends(h.rx(req("OPTIONS", to_tag="given")))[0].data).to.tag == "given"


def test_the_local_to_tag_is_stable_per_request_and_differs_between_requests():
    # A retransmitted request gets the same tag; another From tag or CSeq gets another one.
    def tag(data):
        return fastsip.parse(sends(_replying(404, "Nope").rx(data))[0].data).to.tag

    base = req("OPTIONS")
    assert tag(base) == tag(base)
    assert len({tag(base), tag(base.replace(b";tag=a1", b";tag=a2")), tag(req("OPTIONS", cseq=7)),
                tag(base.replace(b"call-1@test", b"call-9@test"))}) == 4


def test_t_newtran_then_t_relay_is_one_transaction_with_one_100():
    def route(msg, ctx):
        ctx.t_newtran()
        ctx.t_relay()

    h = Harness(_script(route))
    s = sends(h.rx(req()))
    assert [x.data[:12] for x in s] == [b"SIP/2.0 100 ", b"INVITE sip:b"]
    assert len(h.proxy.server_txs) == 1


def test_an_invite_over_tcp_answered_non_2xx_arms_no_timer_g():
    # §17.2.1: Timer G only on unreliable transports; Timer H always.
    h = Harness()
    src = Target("tcp", CALLER[0], 40000, None, h.cfg.listen[1])
    acts = h._track(h.proxy.receive(req().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"), src))
    fwd = sends(acts)[1]
    acts = h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
    up = [s for s in sends(acts) if s.dest.transport == "tcp"][0]
    assert [a for a in acts if isinstance(a, StartTimer) and a.tx is up.tx] == [StartTimer(up.tx, "H", 32.0)]


# ------------------------------------------------------------------ §16.3 step 1 / §8.2.6: malformed input


def test_malformed_requests_get_400_or_513_with_the_reason_and_our_server_header():
    h = Harness(max_message_size=1024)
    lf_only = req().replace(b"\r\n", b"\n").replace(b"Content-Length: 0", b"Content-Length: zz")
    compact = req().replace(b"Content-Length: 0", b"l: zz")
    big = req(body="x" * 1400)
    lines = [sends(h.rx(d))[0].data.split(b"\r\n") for d in (lf_only, compact, big)]
    assert [x[0] for x in lines] == [
        b"SIP/2.0 400 Bad Request - Content-Length is not a number (at byte 211)",
        b"SIP/2.0 400 Bad Request - Content-Length is not a number (at byte 205)",
        b"SIP/2.0 513 Message Too Large - message of 1626 bytes is larger than the limit of 1024 (at byte 1024)",
    ]
    assert all(b"Server: OpenSIPS (2.2.7 (x86_64/linux))" in x for x in lines)
    assert h.proxy.stats.bad_requests == 3
    assert h.rx(b"\x00junk") == [] and h.rx(b"SIP/2.0 200 OK\r\n\r\n") == []
    assert h.proxy.stats.dropped == 2


def test_a_stateless_response_without_received_or_rport_value_goes_to_the_sent_by():
    # §18.2.2 for the next Via: no received -> its host; a bare rport (never filled) or none ->
    # its port, 5060 when it has none.
    h = Harness(stateless_responses="relay")  # (the RFC's behaviour; "auto" drops off loopback)

    def late(second_via):
        return (
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKgone.1\r\n"
            f"Via: {second_via}\r\nFrom: <sip:alice@{CALLER[0]}>;tag=a1\r\nTo: <sip:bob@{CALLEE[0]}>;tag=b1\r\n"
            "Call-ID: late@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    acts = h.rx(late("SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bKc1"), CALLEE)
    assert [(a.dest.host, a.dest.port) for a in acts] == [("10.0.0.1", 5062)]
    acts = h.rx(late("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc1"), CALLEE)
    assert [(a.dest.host, a.dest.port) for a in acts] == [("10.0.0.1", 5060)]
    assert h.proxy.stats.stateless_replies == 2
