"""RFC 3261 §17.2.3 server-transaction matching, pinned on the exact rule the core applies.

A mutation audit found that neither the unit nor the SIPp tests noticed when the z9hG4bK rule was
never taken (only the RFC 2543 fallback ran), nor when sent-by was compared case-sensitively.
Each test below fails on one of those mutants.
"""

from __future__ import annotations

import fastsip
from proxyapp.proxy import Proxy

from .harness import CALLER, Harness, req, sends


def _via(data: bytes) -> fastsip.Via:
    return fastsip.parse(data).via[0]


def test_an_rfc3261_branch_keys_on_branch_sent_by_and_method_only():
    msg = fastsip.parse(req(branch="z9hG4bKabc", via_host="Client.Example.COM:5062"))
    assert Proxy.server_key(msg, msg.via[0], "INVITE") == ("z9hG4bKabc", "client.example.com:5062", "INVITE")


def test_a_branch_without_the_magic_cookie_uses_the_rfc2543_fallback():
    # §17.2.3: Request-URI, From tag, Call-ID, CSeq number and the top Via (with its branch).
    msg = fastsip.parse(req(branch="old1", via_host="Client.Example.COM:5062"))
    assert Proxy.server_key(msg, msg.via[0], "INVITE") == (
        "2543", "sip:bob@10.0.0.2:5070", "a1", "call-1@test", 1, "client.example.com:5062", "old1", "INVITE",
    )


def test_same_magic_branch_and_sent_by_match_although_the_dialog_fields_differ():
    # Only branch, sent-by and method decide (§17.2.3): a request that shares them is the same
    # transaction even when Call-ID and Request-URI differ (the RFC 2543 key would differ).
    h = Harness()
    first = h.rx(req(branch="z9hG4bKsame"))
    assert len(sends(first)) == 2  # 100 upstream, INVITE downstream
    other = req(branch="z9hG4bKsame", ruri="sip:carol@10.0.0.2:5070").replace(b"call-1@test", b"call-2@test")
    acts = h.rx(other)
    assert h.proxy.stats.retransmissions == 1
    assert [s.dest.addr for s in sends(acts)] == [CALLER]  # the 100 resent, nothing forwarded
    assert len(h.proxy.server_txs) == 1


def test_a_different_magic_branch_is_a_new_transaction_even_with_the_same_dialog_fields():
    h = Harness()
    h.rx(req(branch="z9hG4bKone"))
    acts = h.rx(req(branch="z9hG4bKtwo"))
    assert h.proxy.stats.retransmissions == 0
    assert len(h.proxy.server_txs) == 2
    assert len(sends(acts)) == 2  # its own 100 and its own forwarded INVITE


def test_sent_by_matches_case_insensitively():
    # RFC 3261 §17.2.3 compares sent-by; host names compare case-insensitively (§19.1.4).
    h = Harness()
    h.rx(req(branch="z9hG4bKcase", via_host="client.example.com:5062"))
    acts = h.rx(req(branch="z9hG4bKcase", via_host="CLIENT.Example.Com:5062"))
    assert h.proxy.stats.retransmissions == 1
    assert len(h.proxy.server_txs) == 1
    assert len(sends(acts)) == 1


def test_a_different_sent_by_port_is_another_transaction():
    h = Harness()
    h.rx(req(branch="z9hG4bKport", via_host="client.example.com:5062"))
    h.rx(req(branch="z9hG4bKport", via_host="client.example.com:5064"))
    assert h.proxy.stats.retransmissions == 0
    assert len(h.proxy.server_txs) == 2
