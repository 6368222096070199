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
    h = Harness()
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
    assert h.proxy.stats.stateless == 1
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
