"""Issue 17 pieces in the core: what a stranger's traffic costs (log lines) and shows (Server)."""

from __future__ import annotations

from loguru import logger

from proxyapp.config import Config
from proxyapp.core.replies import REFUSED_LOG_LINES
from proxyapp.proxy import Proxy, Target

from .harness import CALLEE, CALLER, Harness, req, resp_for, sends


def test_the_default_server_header_shows_no_version():
    cfg = Config.embedded()
    assert cfg.server_header == "proxyapp"
    proxy = Proxy(cfg, branch_salt="abc")
    (trying, *_) = [a for a in proxy.receive(req(ruri="sip:bob@192.0.2.9"), Target("udp", *CALLER, None, cfg.listen[0]))
                    if hasattr(a, "data")]
    assert b"\r\nServer: proxyapp\r\n" in trying.data


def test_refused_input_logs_at_most_ten_lines_per_ten_seconds_and_counts_all():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        h = Harness()
        clock = [1000.0]
        h.proxy.wallclock = lambda: clock[0]
        for i in range(25):
            h.rx(b"garbage %d\r\n\r\n" % i)
            assert sends(h.rx(req("OPTIONS", branch=f"z9hG4bKm{i}", max_forwards="abc"))), "the 400 is always sent"
        refused = [ln for ln in lines if ln.startswith(("dropped a message", "400 to"))]
        assert len(refused) == REFUSED_LOG_LINES == 10
        clock[0] += 10.0
        h.rx(b"more garbage\r\n\r\n")
        assert "40 more lines about refused messages were not logged" in lines
        assert lines[-1].startswith("dropped a message from")
        s = h.proxy.statistics()["core"]
        assert (s["drop_requests"], s["err_requests"], s["bad_msg_hdr"]) == (26, 25, 51)
    finally:
        logger.remove(sink)


def _late_200(second_via: str) -> bytes:
    from .seed import PROXY_IP

    return (
        f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {PROXY_IP}:5060;branch=z9hG4bKgone.1\r\nVia: {second_via}\r\n"
        "From: <sip:alice@192.0.2.1>;tag=a1\r\nTo: <sip:bob@192.0.2.2>;tag=b1\r\n"
        "Call-ID: late@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_stray_responses_are_dropped_off_loopback_by_default_and_never_sent_over_tcp():
    from .harness import CALLEE

    udp = _late_200("SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKc1")
    tcp = _late_200("SIP/2.0/TCP 203.0.113.7:5060;branch=z9hG4bKc1")
    h = Harness()  # listens on 198.51.100.10: not loopback, "auto" drops
    assert h.rx(udp, CALLEE) == [] and h.proxy.statistics()["core"]["stray_replies"] == 1
    h = Harness(stateless_responses="relay")
    assert [(a.dest.host, a.dest.port) for a in sends(h.rx(udp, CALLEE))] == [("203.0.113.7", 5060)]
    assert h.rx(tcp, CALLEE) == [] and h.proxy.statistics()["core"]["stray_replies"] == 1
    # On a loopback listener "auto" keeps the RFC's relay (the seed's SIPp set-up).
    cfg = Config.from_dict({"listen": ["udp:127.0.0.1:5060"]})
    proxy = Proxy(cfg, branch_salt="abc")
    late = udp.replace(b"198.51.100.10", b"127.0.0.1")
    acts = proxy.receive(late, Target("udp", "127.0.0.1", 5070, None, cfg.listen[0]))
    assert [(a.dest.host, a.dest.port) for a in acts] == [("203.0.113.7", 5060)]
    assert Harness(stateless_responses="drop").rx(udp, CALLEE) == []


def test_stray_ack_and_cancel_follow_the_stateless_responses_setting():
    """ACKs and CANCELs that match no transaction (and, for an ACK, no dialog we confirmed) are a
    stranger's reflection tool: dropped and counted off loopback ("auto"), relayed with "relay",
    never sent over a new TCP connection; the ACK of a call we relayed always goes on."""
    route = "Route: <sip:198.51.100.10;lr>\r\n"
    ack = req("ACK", branch="z9hG4bKx1", to_tag="t9", extra=route)
    cancel = req("CANCEL", branch="z9hG4bKnone")
    tcp_cancel = req("CANCEL", branch="z9hG4bKnone", ruri=f"sip:bob@{CALLEE[0]}:{CALLEE[1]};transport=tcp")
    h = Harness()  # 198.51.100.10: not loopback
    assert h.rx(ack) == [] and h.rx(cancel) == []
    core = h.proxy.statistics()["core"]
    assert (core["stray_requests"], core["drop_requests"], core["fwd_requests"]) == (2, 2, 0)
    h = Harness(stateless_responses="relay")
    assert [a.dest.addr for a in sends(h.rx(ack))] == [CALLEE]
    assert [a.dest.addr for a in sends(h.rx(cancel))] == [CALLEE]
    assert h.rx(tcp_cancel) == [] and h.proxy.statistics()["core"]["stray_requests"] == 1
    h = Harness(stateless_responses="drop")
    assert h.rx(ack) == [] and h.proxy.statistics()["core"]["stray_requests"] == 1


def test_the_ack_of_a_relayed_2xx_goes_on_whatever_the_setting():
    h = Harness(stateless_responses="drop")
    fwd = [a for a in sends(h.rx(req("INVITE"))) if a.dest.addr == CALLEE][0]
    ok = sends(h.rx(resp_for(fwd.data, 200, "OK", to_tag="b1"), CALLEE))
    assert ok[0].data.startswith(b"SIP/2.0 200 OK")
    ack = req("ACK", branch="z9hG4bKack2", to_tag="b1", extra="Route: <sip:198.51.100.10;lr>\r\n")
    assert [a.dest.addr for a in sends(h.rx(ack))] == [CALLEE]
    assert h.proxy.statistics()["core"]["stray_requests"] == 0


def test_a_request_over_the_header_line_limit_gets_513_from_its_via():
    """More than 256 header lines: refused by the parser, answered 513 (RFC 3261 §21.5.11) from
    the Via, From, To, Call-ID and CSeq it carries, so the sender stops retransmitting."""
    h = Harness()
    many = "".join(f"X-H{i}: v\r\n" for i in range(300))
    (resp,) = sends(h.rx(req("INVITE", extra=many)))
    assert resp.dest.addr == CALLER
    assert resp.data.startswith(b"SIP/2.0 513 Message Too Large - more than 256 header lines (at byte ")
    lines = resp.data.split(b"\r\n")
    assert lines[1] == f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bKc1".encode()
    assert b"\r\nCall-ID: call-1@test\r\n" in resp.data and b"\r\nCSeq: 1 INVITE\r\n" in resp.data
    assert b"X-H" not in resp.data
    core = h.proxy.statistics()["core"]
    assert (core["err_requests"], core["bad_msg_hdr"], core["rcv_requests"]) == (1, 1, 0)
