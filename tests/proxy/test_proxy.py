"""RFC 3261 §16 proxy core without sockets or sleeps: feed messages and timer firings, assert actions."""

from __future__ import annotations

import re
import types

import pytest

import fastsip
from proxyapp.proxy import Resolve, Target
from proxyapp.script import Script
from proxyapp.transaction import CancelTimer, Send, StartTimer

from .harness import CALLEE, CALLER, Harness, branch_of, req, resp_for, sends, timers
from .seed import FORWARDED_BRANCH_RE, FROM_IP, FROM_PORT, INVITE, OUT_IP, PROXY_IP, PVT_IP, TRYING, forwarded_invite


# ------------------------------------------------------------------ the seed


def test_seed_invite_gives_the_seed_100_and_forwarded_invite_exactly():
    h = Harness()
    acts = h.rx(INVITE, (FROM_IP, FROM_PORT))
    assert len(acts) == 5
    trying, fwd = acts[0], acts[1]
    assert trying == Send(Target("udp", FROM_IP, FROM_PORT, None, h.udp), TRYING, trying.tx)
    branch = branch_of(fwd.data)
    assert re.fullmatch(FORWARDED_BRANCH_RE, branch)
    assert fwd.data == forwarded_invite(branch)
    assert fwd.dest == Target("udp", OUT_IP, 5060, None, h.udp)
    tx = fwd.tx
    assert acts[2:] == [StartTimer(tx, "A", 0.5), StartTimer(tx, "B", 32.0), StartTimer(tx, "C", 180.0)]


def test_received_goes_after_sent_by_and_rport_is_filled_in_the_top_via_only():
    # Quoted ';' and ',' in a Via param must not confuse the edit (a string split would).
    via = 'SIP/2.0/UDP 192.168.1.20:58088;branch=z9hG4bK-x;x="a;b,c";rport, SIP/2.0/UDP 10.0.0.9;rport'
    h = Harness()
    acts = h.rx(INVITE.replace(
        b"Via: SIP/2.0/UDP " + PVT_IP.encode() + b":58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport",
        b"Via: " + via.encode()), (FROM_IP, FROM_PORT))
    fwd = fastsip.parse(acts[1].data)
    assert fwd.headers.getall("Via")[1] == (
        f'SIP/2.0/UDP 192.168.1.20:58088;received={FROM_IP};branch=z9hG4bK-x;x="a;b,c";rport={FROM_PORT}, '
        "SIP/2.0/UDP 10.0.0.9;rport"
    )


def test_no_received_when_sent_by_is_the_source_and_no_rport():
    h = Harness()
    acts = h.rx(req())
    fwd = sends(acts)[1].data
    assert f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bKc1\r\n".encode() in fwd


# ------------------------------------------------------------------ retransmissions


def test_retransmitted_invite_is_absorbed_and_the_100_resent():
    h = Harness()
    first = h.rx(req())
    again = h.rx(req())
    assert again == [Send(first[0].dest, first[0].data, first[0].tx)]
    assert h.proxy.stats.retransmissions == 1
    assert h.proxy.stats.forwarded == 1


def test_timer_a_retransmits_the_forwarded_invite_until_a_provisional():
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    tx = fwd.tx
    assert h.fire(tx, "A") == [Send(fwd.dest, fwd.data, tx), StartTimer(tx, "A", 1.0)]
    assert h.fire(tx, "A") == [Send(fwd.dest, fwd.data, tx), StartTimer(tx, "A", 2.0)]
    acts = h.rx(resp_for(fwd.data, 100, "Trying"), CALLEE)
    assert acts == [CancelTimer(tx, "A"), CancelTimer(tx, "B")]  # 100 is never forwarded


# ------------------------------------------------------------------ a whole call, every timer


def test_basic_call_tables_empty_after_timers():
    h = Harness()
    acts = h.rx(req())
    fwd = sends(acts)[1]
    upstream = acts[0].dest
    acts = h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    s = sends(acts)
    assert len(s) == 1 and s[0].dest == upstream
    assert s[0].data.startswith(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKc1\r\n")
    assert b"Via: SIP/2.0/UDP 198.51.100.10" not in s[0].data  # our Via popped
    acts = h.rx(resp_for(fwd.data, 200, "OK"), CALLEE)
    assert [a.dest for a in sends(acts)] == [upstream]
    assert ("StartTimer", "L") in timers(acts) and ("StartTimer", "M") in timers(acts)
    # a retransmitted 200 from the callee is forwarded again (RFC 6026 Accepted)
    assert len(sends(h.rx(resp_for(fwd.data, 200, "OK"), CALLEE))) == 1
    assert len(h.proxy.server_txs) == 1 and len(h.proxy.client_txs) == 1
    h.drain()
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0


def test_non2xx_is_acked_hop_by_hop_and_the_callers_ack_absorbed():
    h = Harness()
    acts = h.rx(req())
    fwd = sends(acts)[1]
    upstream = acts[0].dest
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    acts = h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
    s = sends(acts)
    ack, busy = s[0], s[1]
    assert ack.dest == fwd.dest
    assert ack.data == (
        f"ACK sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch={branch_of(fwd.data)}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{CALLER[0]}>;tag=a1\r\n"
        f"To: <sip:bob@{CALLEE[0]}>;tag=b1\r\n"
        "Call-ID: call-1@test\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    assert busy.dest == upstream and busy.data.startswith(b"SIP/2.0 486 Busy Here\r\n")
    # retransmitted 486 from the callee: ACKed again, not forwarded
    again = sends(h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE))
    assert again == [Send(ack.dest, ack.data, ack.tx)]
    # Timer G retransmits the 486 upstream until the caller's ACK
    stx = busy.tx
    assert h.fire(stx, "G") == [Send(upstream, busy.data, stx), StartTimer(stx, "G", 1.0)]
    caller_ack = req("ACK", to_tag="b1").replace(b"CSeq: 1 ACK", b"CSeq: 1 ACK")
    acts = h.rx(caller_ack)
    assert acts == [CancelTimer(stx, "G"), CancelTimer(stx, "H"), StartTimer(stx, "I", 5.0)]
    assert h.proxy.stats.absorbed_acks == 1
    h.drain()
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0


def test_steady_load_leaves_no_transaction_behind():
    h = Harness()
    for i in range(50):
        acts = h.rx(req(branch=f"z9hG4bKload{i}").replace(b"call-1@test", f"call-{i}@t".encode()))
        fwd = sends(acts)[1]
        h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
        h.rx(resp_for(fwd.data, 200 if i % 2 else 486, "X"), CALLEE)
    assert len(h.proxy.server_txs) == 50
    h.drain()
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0 and h.armed == {}


# ------------------------------------------------------------------ Max-Forwards, loops


def test_max_forwards_zero_is_483_stateless_and_nothing_forwarded():
    h = Harness()
    acts = h.rx(req(max_forwards="0"))
    assert len(acts) == 1
    assert acts[0].data.startswith(b"SIP/2.0 483 Too Many Hops\r\n")
    assert b"To: <sip:bob@10.0.0.2>;tag=" in acts[0].data
    assert h.proxy.stats.forwarded == 0


def test_max_forwards_one_is_forwarded_as_zero_and_absent_added_as_70():
    h = Harness()
    fwd = sends(h.rx(req(max_forwards="1")))[1].data
    assert b"\r\nMax-Forwards: 0\r\n" in fwd
    h = Harness()
    fwd = sends(h.rx(req(max_forwards=None)))[1].data
    assert b"\r\nMax-Forwards: 70\r\n" in fwd


def test_loop_is_482():
    # An alias that is not us by our own checks routes the request back to us: the second pass
    # carries our Via with the same loop hash.
    def route(msg, ctx):
        ctx.t_relay(f"udp:{PROXY_IP}:5060")

    h = Harness(script=Script(types.SimpleNamespace(route=route), None))
    fwd = sends(h.rx(req()))
    forwarded = fwd[1].data
    assert fwd[1].dest.addr == (PROXY_IP, 5060)
    acts = h.rx(forwarded, (PROXY_IP, 5060))
    s = sends(acts)
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 482 Loop Detected\r\n")
    # a spiral (the Request-URI changed) is not a loop
    # a spiral: another proxy retargeted it (new Request-URI, its own Via on top) back to us
    spiral = forwarded.replace(
        f"INVITE sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n".encode(),
        b"INVITE sip:carol@10.0.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.5.5.5:5060;branch=z9hG4bKother\r\n", 1,
    )
    s = sends(h.rx(spiral, ("10.5.5.5", 5060)))
    assert s[0].data.startswith(b"SIP/2.0 100 ") and s[1].data.startswith(b"INVITE sip:carol@10.0.0.9 SIP/2.0\r\n")


def test_default_script_answers_options_to_itself_and_404_for_local_users():
    h = Harness()
    s = sends(h.rx(req("OPTIONS", ruri=f"sip:{PROXY_IP}")))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 200 OK\r\n")
    s = sends(h.rx(req("INVITE", ruri=f"sip:bob@{PROXY_IP}:5060", branch="z9hG4bKloc")))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 404 Not Found\r\n")


# ------------------------------------------------------------------ final response selection


def test_timer_b_gives_408_upstream():
    h = Harness()
    acts = h.rx(req())
    fwd = sends(acts)[1]
    acts = h.fire(fwd.tx, "B")
    s = sends(acts)
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 408 Request Timeout\r\n")
    assert s[0].dest == Target("udp", CALLER[0], CALLER[1], None, h.udp)


def test_non_invite_timeout_sends_no_408_rfc4320():
    h = Harness()
    fwd = sends(h.rx(req("OPTIONS")))[0]
    acts = h.fire(fwd.tx, "F")
    assert sends(acts) == []
    assert len(h.proxy.client_txs) == 0


def test_timed_out_non_invite_absorbs_late_retransmissions_until_timer_j():
    # RFC 4320 / RFC 3261 §17.2.2: after every branch timed out (no final upstream), the server
    # transaction stays for 64*T1 and absorbs the client's retransmissions: nothing is forwarded twice.
    h = Harness()
    options = req("OPTIONS")
    fwd = sends(h.rx(options))[0]
    acts = h.fire(fwd.tx, "F")
    assert sends(acts) == []
    (server_tx,) = h.proxy.server_txs.values()
    assert [(tx, name, when) for tx, name, when in h.armed.values()] == [(server_tx, "J", 64 * 0.5)]
    for _ in range(3):
        assert h.rx(options) == []  # absorbed: not forwarded, nothing resent
    assert h.proxy.stats.forwarded == 1 and h.proxy.stats.retransmissions == 3
    h.fire(server_tx, "J")
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0 and h.armed == {}
    # Only after Timer J is the same request new again (the client has long given up by then).
    assert len(sends(h.rx(options))) == 1


def test_timed_out_non_invite_over_tcp_is_freed_at_once():
    h = Harness()
    fwd = sends(h.rx(req("OPTIONS"), transport="tcp"))[0]
    h.fire(fwd.tx, "F")
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0


def test_503_received_becomes_500_upstream():
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    s = sends(h.rx(resp_for(fwd.data, 503, "Service Unavailable"), CALLEE))
    assert s[0].data.startswith(b"ACK ")
    assert s[1].data.startswith(b"SIP/2.0 500 Server Internal Error\r\n")


def test_transport_error_gives_503():
    h = Harness()
    fwd = sends(h.rx(req()))[1]
    s = sends(h._track(h.proxy.transport_error(fwd.tx)))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 503 Service Unavailable\r\n")


def test_2xx_after_local_408_is_still_forwarded():
    h = Harness(timers={"fr_inv_timeout": 5})
    acts = h.rx(req())
    upstream = acts[0].dest
    fwd = sends(acts)[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    acts = h.fire(fwd.tx, "C")
    s = sends(acts)
    assert s[0].data.startswith(b"CANCEL ") and s[0].dest == fwd.dest
    assert s[1].data.startswith(b"SIP/2.0 408 Request Timeout\r\n")
    s = sends(h.rx(resp_for(fwd.data, 200, "OK"), CALLEE))
    assert len(s) == 1 and s[0].dest == upstream and s[0].data.startswith(b"SIP/2.0 200 OK\r\n")


# ------------------------------------------------------------------ CANCEL


def test_cancel_waits_for_a_provisional_then_reuses_the_branch():
    h = Harness()
    acts = h.rx(req())
    upstream = acts[0].dest
    fwd = sends(acts)[1]
    cancel = req("CANCEL", extra="").replace(b"CSeq: 1 CANCEL", b"CSeq: 1 CANCEL")
    s = sends(h.rx(cancel))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 200 OK\r\n") and b"CSeq: 1 CANCEL" in s[0].data
    # §9.1: no provisional yet, no CANCEL downstream; the 100 makes it go
    s = sends(h.rx(resp_for(fwd.data, 100, "Trying"), CALLEE))
    assert len(s) == 1
    assert s[0].data == (
        f"CANCEL sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PROXY_IP}:5060;branch={branch_of(fwd.data)}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{CALLER[0]}>;tag=a1\r\n"
        f"To: <sip:bob@{CALLEE[0]}>\r\n"
        "Call-ID: call-1@test\r\n"
        "CSeq: 1 CANCEL\r\n"
        "User-Agent: OpenSIPS (2.2.7 (x86_64/linux))\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    assert s[0].dest == fwd.dest
    cancel_fwd = s[0].data
    assert sends(h.rx(resp_for(cancel_fwd, 200, "OK"), CALLEE)) == []  # hop by hop: absorbed
    s = sends(h.rx(resp_for(fwd.data, 487, "Request Terminated"), CALLEE))
    assert s[0].data.startswith(b"ACK ")
    assert s[1].data.startswith(b"SIP/2.0 487 Request Terminated\r\n") and s[1].dest == upstream
    h.drain()
    assert len(h.proxy.server_txs) == 0 and len(h.proxy.client_txs) == 0


def test_cancel_without_transaction_is_forwarded_statelessly():
    h = Harness(stateless_responses="relay")  # the RFC's behaviour; "auto" drops off loopback
    acts = h.rx(req("CANCEL", branch="z9hG4bKnone"))
    assert len(acts) == 1
    assert acts[0].dest.addr == CALLEE
    assert acts[0].data.startswith(f"CANCEL sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\nVia: SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bK".encode())
    assert len(h.proxy.server_txs) == 0


# ------------------------------------------------------------------ routing


def test_in_dialog_request_loose_routed_route_naming_us_removed():
    h = Harness()
    bye = req("BYE", cseq=2, to_tag="b1", extra=f"Route: <sip:{PROXY_IP};lr>, <sip:10.9.9.9:5080;lr>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == ("10.9.9.9", 5080)
    assert b"\r\nRoute: <sip:10.9.9.9:5080;lr>\r\n" in s[0].data
    assert f"sip:{PROXY_IP};lr".encode() not in s[0].data
    assert s[0].data.startswith(f"BYE sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\nVia: ".encode())  # no Record-Route


def test_next_hop_strict_router_gets_the_request_uri():
    h = Harness()
    bye = req("BYE", cseq=2, to_tag="b1", extra=f"Route: <sip:{PROXY_IP};lr>\r\nRoute: <sip:10.9.9.9:5080>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == ("10.9.9.9", 5080)
    assert s[0].data.startswith(b"BYE sip:10.9.9.9:5080 SIP/2.0\r\n")
    assert f"\r\nRoute: <sip:bob@{CALLEE[0]}:{CALLEE[1]}>\r\n".encode() in s[0].data


def test_request_uri_is_us_from_a_strict_router_restored_from_last_route():
    h = Harness()
    bye = req("BYE", ruri=f"sip:{PROXY_IP};lr", cseq=2, to_tag="b1", extra=f"Route: <sip:bob@{CALLEE[0]}:{CALLEE[1]}>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == CALLEE
    assert s[0].data.startswith(f"BYE sip:bob@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n".encode())
    assert b"\r\nRoute:" not in s[0].data


def test_in_dialog_without_route_gets_404_from_the_default_script():
    h = Harness()
    s = sends(h.rx(req("BYE", cseq=2, to_tag="b1")))
    assert s[0].data.startswith(b"SIP/2.0 404 Not here\r\n")


def test_ack_for_2xx_routed_statelessly_by_route():
    # No dialog of ours here: relayed under "relay" (test_hardening pins the other settings).
    h = Harness(stateless_responses="relay")
    ack = req("ACK", branch="z9hG4bKack1", to_tag="b1", extra=f"Route: <sip:{PROXY_IP};lr>\r\n")
    acts = h.rx(ack)
    assert len(acts) == 1 and acts[0].dest.addr == CALLEE and acts[0].data.startswith(b"ACK ")
    assert h.rx(ack)[0].data == acts[0].data  # deterministic branch: the same bytes again
    assert len(h.proxy.server_txs) == 0


def test_host_name_is_resolved_then_sent_or_478():
    h = Harness()
    acts = h.rx(req(ruri="sip:bob@example.test"))
    res = [a for a in acts if isinstance(a, Resolve)]
    assert len(res) == 1 and (res[0].name, res[0].port, res[0].transport) == ("example.test", None, "udp")
    acts = h._track(h.proxy.resolved(res[0].token, [("udp", "192.0.2.77", 5099)]))
    assert sends(acts)[0].dest.addr == ("192.0.2.77", 5099)
    h = Harness()
    acts = h.rx(req(ruri="sip:bob@nowhere.invalid:5070;transport=tcp"))
    res = [a for a in acts if isinstance(a, Resolve)][0]
    assert (res.port, res.transport) == (5070, "tcp")
    s = sends(h._track(h.proxy.resolved(res.token, [])))
    assert s[0].data.startswith(b"SIP/2.0 478 Unresolvable destination\r\n")


def test_is_myself_listen_and_aliases():
    h = Harness(aliases=["sip.example.com", "10.1.1.1:5090"])
    p = h.proxy
    assert p.is_myself(PROXY_IP) and p.is_myself(PROXY_IP, 5060)
    assert not p.is_myself(PROXY_IP, 5061)
    assert p.is_myself("SIP.example.com", 1234)
    assert p.is_myself("10.1.1.1", 5090) and not p.is_myself("10.1.1.1")
    assert not p.is_myself(OUT_IP)


# ------------------------------------------------------------------ failure route, script errors


def test_failure_route_tries_the_fallback_serially():
    h = Harness(script_params={"failover_destination": "udp:10.0.0.3:5080"})
    acts = h.rx(req())
    upstream = acts[0].dest
    fwd = sends(acts)[1]
    s = sends(h.rx(resp_for(fwd.data, 503, "Down"), CALLEE))
    assert [x.data.split(b" ")[0] for x in s] == [b"ACK", b"INVITE"]
    second = s[1]
    assert second.dest.addr == ("10.0.0.3", 5080)
    assert branch_of(second.data) != branch_of(fwd.data)
    assert branch_of(second.data).endswith(".1")
    assert second.data.count(b"Record-Route:") == 1 and b"Max-Forwards: 69" in second.data
    s = sends(h.rx(resp_for(second.data, 200, "OK"), ("10.0.0.3", 5080)))
    assert s[0].dest == upstream and s[0].data.startswith(b"SIP/2.0 200 OK\r\n")


def _script(route, **more):
    return Script(types.SimpleNamespace(route=route, **more), None)


def test_script_error_is_answered_500_and_the_proxy_keeps_serving():
    calls = []

    def route(msg, ctx):
        calls.append(msg.method)
        if msg.method == "INVITE":
            raise RuntimeError("boom")
        ctx.t_relay()

    h = Harness(script=_script(route))
    s = sends(h.rx(req()))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 500 Server Internal Error\r\n")
    assert h.proxy.stats.script_errors == 1
    s = sends(h.rx(req("OPTIONS", branch="z9hG4bKo1")))
    assert s[0].data.startswith(b"OPTIONS ")
    assert calls == ["INVITE", "OPTIONS"]


def test_script_verbs_t_reply_append_remove_hf_and_is_method():
    def route(msg, ctx):
        assert ctx.is_method("BYE|INVITE") and not ctx.is_method("OPTIONS")
        assert not ctx.has_totag()
        ctx.remove_hf("Subject")
        ctx.append_hf("X-Test", "1")
        if msg.headers.get("X-Reject"):
            ctx.t_reply(403, "Forbidden")
            return
        ctx.t_relay()

    h = Harness(script=_script(route))
    s = sends(h.rx(req(extra="Subject: hi\r\nX-Reject: yes\r\n")))
    assert [x.data.split(b"\r\n")[0] for x in s] == [b"SIP/2.0 403 Forbidden"]
    h = Harness(script=_script(route))
    fwd = sends(h.rx(req(extra="Subject: hi\r\n")))[1].data
    assert b"Subject:" not in fwd and fwd.split(b"\r\n\r\n")[0].endswith(b"X-Test: 1")


# ------------------------------------------------------------------ malformed input


def test_bad_request_with_readable_via_gets_400_with_reason():
    h = Harness()
    bad = req().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    s = sends(h.rx(bad))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 400 Bad Request - ")
    assert s[0].dest.addr == CALLER
    assert h.proxy.stats.bad_requests == 1


def test_bad_content_length_still_answered_400():
    h = Harness()
    bad = req().replace(b"Content-Length: 0", b"Content-Length: zz")
    s = sends(h.rx(bad))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 400 ")


@pytest.mark.parametrize("junk", [b"\x00\x01garbage", b"HELLO\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"INVITE sip:x SIP/2.0\r\n\r\n"])
def test_garbage_is_dropped_and_counted(junk):
    h = Harness()
    assert h.rx(junk) == []
    assert h.proxy.stats.dropped == 1
    # and the next good message is served
    assert len(sends(h.rx(req()))) == 2


def test_cseq_method_mismatch_is_400():
    h = Harness()
    s = sends(h.rx(req().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 400 Bad Request - CSeq method BYE does not match INVITE")


# ------------------------------------------------------------------ RFC 2543 clients (no z9hG4bK)


def _rfc2543(method, to_tag=None):
    data = req(method, to_tag=to_tag).replace(b";branch=z9hG4bKc1", b"")
    return data


def test_rfc2543_matching_retransmission_cancel_and_ack():
    h = Harness()
    acts = h.rx(_rfc2543("INVITE"))
    fwd = sends(acts)[1]
    assert h.rx(_rfc2543("INVITE")) == [acts[0]]  # absorbed: the 100 again
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    s = sends(h.rx(_rfc2543("CANCEL")))
    assert s[0].data.startswith(b"SIP/2.0 200 OK\r\n") and s[1].data.startswith(b"CANCEL ")
    s = sends(h.rx(resp_for(fwd.data, 487, "Request Terminated"), CALLEE))
    assert s[1].data.startswith(b"SIP/2.0 487 ")
    acts = h.rx(_rfc2543("ACK", to_tag="b1"))
    assert sends(acts) == [] and h.proxy.stats.absorbed_acks == 1


def test_forward_from_udp_to_tcp_adds_content_length_and_double_record_route():
    h = Harness()
    data = req(ruri=f"sip:bob@{CALLEE[0]}:{CALLEE[1]};transport=tcp").replace(b"Content-Length: 0\r\n", b"")
    fwd = sends(h.rx(data))[1]
    assert fwd.dest == Target("tcp", CALLEE[0], CALLEE[1], None, h.cfg.listen[1])
    assert fwd.data.startswith(
        f"INVITE sip:bob@{CALLEE[0]}:{CALLEE[1]};transport=tcp SIP/2.0\r\n"
        f"Record-Route: <sip:{PROXY_IP};transport=tcp;lr>\r\n"
        f"Record-Route: <sip:{PROXY_IP};lr>\r\n"
        f"Via: SIP/2.0/TCP {PROXY_IP}:5060;branch=".encode()
    )
    assert fwd.data.endswith(b"\r\nContent-Length: 0\r\n\r\n")


def test_unroutable_request_uri_gets_one_reply_and_no_100():
    h = Harness()
    s = sends(h.rx(req(ruri="tel:+15551234")))
    assert [x.data.split(b"\r\n")[0] for x in s] == [b"SIP/2.0 500 Server Internal Error"]
    assert len(h.proxy.server_txs) == 0


def test_ipv6_listen_via_record_route_and_received():
    h = Harness(listen=["udp:[2001:db8::10]:5060"])
    data = req(ruri="sip:bob@[2001:db8::2]:5070", via_host="[2001:db8::1]:5062;rport")
    acts = h._track(h.proxy.receive(data, Target("udp", "2001:db8::99", 5999, None, h.cfg.listen[0])))
    s = sends(acts)
    assert s[0].dest == Target("udp", "2001:db8::99", 5999, None, h.cfg.listen[0])
    assert b"Via: SIP/2.0/UDP [2001:db8::1]:5062;received=2001:db8::99;rport=5999;branch=z9hG4bKc1\r\n" in s[0].data
    fwd = s[1]
    assert fwd.dest.addr == ("2001:db8::2", 5070)
    assert fwd.data.startswith(
        b"INVITE sip:bob@[2001:db8::2]:5070 SIP/2.0\r\nRecord-Route: <sip:[2001:db8::10];lr>\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK"
    )
    assert h.proxy.is_myself("[2001:DB8::10]") and h.proxy.is_myself("2001:db8::10", 5060)


def test_advertised_address_in_via_and_record_route_and_is_us():
    h = Harness(advertised_address="sip.example.com:5080")
    fwd = sends(h.rx(req()))[1].data
    assert b"\r\nRecord-Route: <sip:sip.example.com:5080;lr>\r\nVia: SIP/2.0/UDP sip.example.com:5080;branch=z9hG4bK" in fwd
    assert h.proxy.is_myself("sip.example.com", 5080) and h.proxy.is_myself(PROXY_IP, 5060)
    # an in-dialog request routed by that Record-Route: the Route naming us is removed
    bye = req("BYE", cseq=2, to_tag="b1", branch="z9hG4bKbye", extra="Route: <sip:sip.example.com:5080;lr>\r\n")
    s = sends(h.rx(bye))
    assert s[0].dest.addr == CALLEE and b"\r\nRoute:" not in s[0].data


def test_loop_hash_covers_proxy_require_and_proxy_authorization_in_any_case():
    # §16.6 step 8: the branch's loop part changes with Proxy-Require / Proxy-Authorization.
    import fastsip

    from proxyapp.proxy import Proxy

    base = Proxy._loop_hash(fastsip.parse(req()))
    seen = {base}
    for extra in ("Proxy-Require: foo\r\n", "proxy-require: bar\r\n", "PROXY-AUTHORIZATION: Digest x\r\n"):
        seen.add(Proxy._loop_hash(fastsip.parse(req(extra=extra))))
    assert len(seen) == 4
    assert Proxy._loop_hash(fastsip.parse(req(extra="X-Proxy-Require-Not: foo\r\n"))) == base
