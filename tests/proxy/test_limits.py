"""[limits] (issue 17 items 3-4), sans-IO: proxyapp.limits with an injected clock, and the core's
transaction cap through the harness. The floods themselves are in test_floods.py."""

from __future__ import annotations

import pytest

from proxyapp.config import Config
from proxyapp.limits import Limits, LimitsConfig

from .harness import Harness, req, resp_for, sends


def test_defaults_and_validation():
    cfg = LimitsConfig.from_dict({})
    assert (cfg.sampling_time_unit, cfg.reqs_density_per_unit, cfg.ban_time) == (2.0, 200, 300.0)
    assert (cfg.max_transactions, cfg.max_transaction_bytes, cfg.retry_after) == (500_000, 256 << 20, 5)
    assert cfg.trusted == ("127.0.0.0/8", "::1")
    lim = Limits(cfg)  # loopback is trusted by default: local SIPp, a co-located PBX
    assert all(lim.admit("127.0.0.5") for _ in range(1000)) and all(lim.admit("::1") for _ in range(1000))
    assert all(lim.admit("192.0.2.1") for _ in range(200)) and not lim.admit("192.0.2.1")
    assert Config.from_dict({"limits": {"ban_time": 10}}).limits == {"ban_time": 10}
    for bad in (
        {"ban_tme": 1}, {"reqs_density_per_unit": -1}, {"reqs_density_per_unit": 2.5},
        {"sampling_time_unit": "2"}, {"trusted": ["10.0.0.300"]}, {"trusted": "10.0.0.1"},
        {"scanners": ["("]}, {"scanner_filter": 1}, {"max_transactions": 0}, {"retry_after": True},
    ):
        with pytest.raises(ValueError, match=r"\[limits\]"):
            LimitsConfig.from_dict(bad)
    with pytest.raises(ValueError, match="ban_tme"):
        Harness(limits={"ban_tme": 1})


def test_a_source_over_the_density_is_banned_for_ban_time_then_forgiven():
    lim = Limits.from_dict({"reqs_density_per_unit": 10, "sampling_time_unit": 2, "ban_time": 30})
    lim.tick(100.0)
    assert all(lim.admit("192.0.2.1") for _ in range(10))
    assert all(lim.admit("192.0.2.2") for _ in range(10))  # another source counts apart
    assert not lim.admit("192.0.2.1")  # the 11th datagram in the window: banned
    assert [lim.admit("192.0.2.1") for _ in range(5)] == [False] * 5
    assert lim.banned() == ["192.0.2.1"]
    lim.tick(102.0)  # a new window: the ban stays, the other source's count restarts
    assert not lim.admit("192.0.2.1")
    assert all(lim.admit("192.0.2.2") for _ in range(10))
    lim.tick(129.0)
    assert not lim.admit("192.0.2.1")
    lim.tick(131.0)  # 100 + 30 passed: forgiven
    assert lim.admit("192.0.2.1")
    s = lim.stats()
    assert (s["bans"], s["flood_dropped"], s["banned_sources"]) == (1, 8, 0)


def test_a_source_within_the_density_every_window_is_never_banned():
    lim = Limits.from_dict({"reqs_density_per_unit": 10})
    for w in range(50):
        lim.tick(w * 2.0)
        assert all(lim.admit("192.0.2.1") for _ in range(10))
    assert lim.stats()["bans"] == 0


def test_trusted_sources_and_networks_are_never_banned():
    lim = Limits.from_dict({"reqs_density_per_unit": 5, "trusted": ["192.0.2.7", "198.51.100.0/24", "2001:db8::/32"]})
    lim.tick(0.0)
    for host in ("192.0.2.7", "198.51.100.77", "2001:db8::5"):
        assert all(lim.admit(host) for _ in range(1000))
    assert all(lim.admit("192.0.2.8") for _ in range(5))
    assert not lim.admit("192.0.2.8")
    assert lim.banned() == ["192.0.2.8"]


def test_the_table_is_bounded_and_swept_by_tick_not_per_datagram():
    lim = Limits.from_dict({"reqs_density_per_unit": 3, "max_sources": 100, "ban_time": 10})
    lim.tick(0.0)
    for i in range(250):
        assert lim.admit(f"10.0.{i // 250}.{i % 250}")
    assert lim.stats()["tracked_sources"] == 100
    assert lim.stats()["untracked"] == 150
    for _ in range(4):
        lim.admit("10.0.0.1")  # tracked, now banned
    lim.tick(2.0)
    assert lim.stats()["tracked_sources"] == 1  # only the banned one outlives its window
    lim.tick(20.0)
    assert lim.stats()["tracked_sources"] == 0


def test_malloc_trim_after_a_big_drop_of_transactions_and_again_as_it_ends():
    lim = Limits.from_dict({})
    trims = []
    lim._trim = lambda pad: trims.append(lim.budget.live)  # (glibc's malloc_trim, observed)
    lim._collect = lambda: trims.append("gc")  # (the free lists emptied before the last trim)
    lim.on_settle.append(lambda: trims.append("compact"))  # (the edge's tables, before that)
    lives = (0, 3000, 10_000, 8000, 2000, 1500, 50, 60, 55, 40, 45, 40, 0, 0, 0, 0, 0, 0,
             6000, 1000, 0, 0, 30, 20, 10, 0, 0)
    for t, live in enumerate(lives):
        lim.budget.live = live
        lim.tick(float(t))
    # Below a quarter of the peak (2000); below 100 each time fewer are left than at the last
    # trim (50, 40), until none is (0), and once more three windows later (0: what cancelled
    # timers held until then); nothing more until the next drop (6000 -> 1000 -> 0), and no
    # settling trim when transactions are live again by then (30, 20, 10), however few.
    assert trims == [2000, 50, 40, 0, "compact", "gc", 0, 1000, 0] and lim.stats()["malloc_trims"] == 7
    assert lim.stats()["settled_drops"] == 1  # the second drop never settled
    assert Limits.from_dict({"malloc_trim": False})._trim is None


def test_density_zero_disables_the_flood_limit():
    lim = Limits.from_dict({"reqs_density_per_unit": 0})
    assert all(lim.admit("192.0.2.1") for _ in range(100_000))


SCANNERS = [
    b"friendly-scanner", b"sipvicious", b"SIPVicious PBX Scanner", b"sipcli/v1.8", b"VaxSIPUserAgent/3.1",
    b"sundayddr", b"pplsip", b"iWar", b"SIPScan", b"smap 0.6.0",
]


def _options(ua: bytes | None, body: bytes = b"", header: bytes = b"User-Agent") -> bytes:
    ua_line = header + b": " + ua + b"\r\n" if ua is not None else b""
    return (
        b"OPTIONS sip:100@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        b"From: <sip:100@192.0.2.1>;tag=1\r\nTo: <sip:100@192.0.2.10>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n"
        + ua_line + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def test_scanners_are_recognised_by_their_user_agent_and_counted():
    lim = Limits.from_dict({})
    for ua in SCANNERS:
        assert lim.is_scanner(_options(ua)), ua
    assert lim.is_scanner(_options(b"friendly-scanner", header=b"user-agent"))
    assert lim.stats()["scanner_dropped"] == len(SCANNERS) + 1
    for ua in (None, b"Ozeki VoIP SIP SDK", b"Linphone/5.0", b"Asterisk PBX 20", b"smapper-ok", b"Bria iOS"):
        assert not lim.is_scanner(_options(ua)), ua
    # Only the header block counts, and only the User-Agent header.
    assert not lim.is_scanner(_options(b"Linphone", body=b"v=0\r\nUser-Agent: friendly-scanner\r\n"))
    assert not lim.is_scanner(_options(b"friendly-scanner", header=b"User-Agent-X"))
    assert not Limits.from_dict({"scanners": []}).is_scanner(_options(b"friendly-scanner"))
    assert not Limits.from_dict({"scanner_filter": False}).is_scanner(_options(b"friendly-scanner"))
    assert Limits.from_dict({"scanners": ["^evil"]}).is_scanner(_options(b"evil/1"))


# ------------------------------------------------------------------ the core's transaction cap


def _invite(i: int) -> bytes:
    return req(branch=f"z9hG4bKcap{i}").replace(b"call-1@test", f"cap-{i}@test".encode())


def test_past_max_transactions_new_requests_get_503_with_retry_after_and_the_count_comes_back():
    h = Harness(limits={"max_transactions": 4, "retry_after": 7})
    budget = h.proxy.tx_budget
    fwd = []
    for i in range(2):  # an INVITE is a server and a client transaction
        out = sends(h.rx(_invite(i)))
        assert out[0].data.startswith(b"SIP/2.0 100"), out[0].data[:40]
        fwd.append(out[1].data)
    assert budget.live == 4 and budget.bytes > 2 * len(_invite(0))
    out = sends(h.rx(_invite(2)))
    assert len(out) == 1 and out[0].data.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 7\r\n" in out[0].data
    assert h.proxy.limits.stats()["transaction_cap_rejects"] == 1
    assert len(h.proxy.server_txs) == 2 and len(h.proxy.client_txs) == 2
    # A CANCEL still gets through to end a call, past the cap.
    cancel = req("CANCEL", branch="z9hG4bKcap0").replace(b"call-1@test", b"cap-0@test")
    assert any(s.data.startswith(b"SIP/2.0 200") for s in sends(h.rx(cancel)))
    for data in fwd:
        h.rx(resp_for(data, 486, "Busy Here"), src=("10.0.0.2", 5070))
    h.drain()
    assert (budget.live, budget.bytes) == (0, 0)
    out = sends(h.rx(_invite(3)))
    assert out[0].data.startswith(b"SIP/2.0 100")


def test_past_max_transaction_bytes_new_requests_get_503():
    big = "x" * 3000
    h = Harness(limits={"max_transaction_bytes": 5000})
    out = sends(h.rx(req(branch="z9hG4bKb1", body=big)))
    assert out[0].data.startswith(b"SIP/2.0 100")
    out = sends(h.rx(req(branch="z9hG4bKb2", body=big).replace(b"call-1@test", b"call-2@test")))
    assert out[0].data.startswith(b"SIP/2.0 503")
    assert h.proxy.tx_budget.rejected == 1


def test_the_budget_follows_every_call_of_the_callflow_back_to_zero():
    h = Harness()
    budget = h.proxy.tx_budget
    for i in range(20):
        out = sends(h.rx(_invite(i)))
        h.rx(resp_for(out[1].data, 200, "OK", to_tag=f"t{i}"), src=("10.0.0.2", 5070))
    assert budget.live == len(h.proxy.server_txs) + len(h.proxy.client_txs) > 0
    h.drain()
    assert (budget.live, budget.bytes) == (0, 0)
