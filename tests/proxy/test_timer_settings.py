"""Which setting each transaction timer takes: T1, T2, T4, fr_timeout, fr_inv_timeout or wt_timer.

The defaults make 64*T1, fr_timeout and wt_timer all 32 s, so a timer that took the wrong one of
them passed every other test (issue 14: Timer H taking wt_timer went unnoticed). Here every
setting has its own value and no value is a default, so each assertion fails if a timer took any
other setting (or ignored the configured one):

    T1 = 0.3   T2 = 2.5   T4 = 4.1   fr_timeout = 11   fr_inv_timeout = 190   wt_timer = 13
    64*T1 = 19.2   (and the doublings of T1: 0.6, 1.2, 2.4, 4.8, 9.6)

Timer table: RFC 3261 Appendix A (Table 4) and §17; L and M from RFC 6026 §8; C from §16.6/§16.8.
Where proxyapp follows OpenSIPS tm rather than the RFC value, the test names the knob:
B and F = fr_timeout (RFC: 64*T1), D and J = wt_timer (RFC: D >= 32 s, J = 64*T1 on UDP).
"""

from __future__ import annotations

import pytest

from proxyapp.config import Config, TimerConfig
from proxyapp.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    StartTimer,
)

from .harness import CALLEE, Harness, req, resp_for, sends

# The same settings twice: as TOML gives them (T1/T2/T4 in ms, the rest in s) and in seconds.
TOML_TIMERS = {"T1": 300, "T2": 2500, "T4": 4100, "fr_timeout": 11, "fr_inv_timeout": 190, "wt_timer": 13}
T1, T2, T4, FR, FR_INV, WT = 0.3, 2.5, 4.1, 11.0, 190.0, 13.0
T64 = 19.2  # 64*T1: exact in binary too (64 * 0.3 == 19.2), so == is safe
DEFAULTS = (0.5, 4.0, 5.0, 32.0, 180.0)  # TimerConfig's defaults; 64*0.5 = 32.0 is among them

CFG = TimerConfig(t1=T1, t2=T2, t4=T4, fr_timeout=FR, fr_inv_timeout=FR_INV, wt_timer=WT)
DEST = ("udp", "192.0.2.1", 5060)
REQ = b"INVITE sip:x SIP/2.0\r\n\r\n"
ACK = b"ACK sip:x SIP/2.0\r\n\r\n"


def started(actions):
    """The StartTimer actions as (name, delay), in order; everything else left out."""
    return [(a.name, a.delay) for a in actions if isinstance(a, StartTimer)]


def test_the_values_tell_every_setting_apart():
    # The premise of every other assertion here: no two settings (or T1 doublings) coincide,
    # and none equals a default a mutant could fall back to.
    values = [T1, T2, T4, FR, FR_INV, WT, T64]
    assert len(set(values)) == len(values)
    assert not set(values) & set(DEFAULTS)
    doublings = [T1 * 2**k for k in range(1, 6)]  # 0.6 .. 9.6: Timers A, E, G after firing
    assert not set(doublings) & set(values)
    assert 64 * T1 == T64


# ------------------------------------------------------------------ the configuration


def test_toml_settings_land_in_their_own_fields_with_their_units():
    t = Config.from_dict({"timers": TOML_TIMERS}).timers
    # T1/T2/T4 are milliseconds in TOML (OpenSIPS T1_timer), the others seconds.
    assert (t.t1, t.t2, t.t4) == (T1, T2, T4)
    assert (t.fr_timeout, t.fr_inv_timeout, t.wt_timer) == (FR, FR_INV, WT)
    assert t == CFG


@pytest.mark.parametrize("cfg", [CFG, Config.from_dict({"timers": TOML_TIMERS}).timers], ids=["TimerConfig", "toml"])
def test_derived_timer_values(cfg):
    # RFC 3261 §17.1.1.2 Timer B and §17.1.2.2 Timer F: 64*T1 in the RFC; here fr_timeout
    # (OpenSIPS tm fr_timeout), so an operator can shorten the wait for a final response.
    assert cfg.b == FR
    assert cfg.f == FR
    # RFC 3261 §17.2.1 Timer H (wait for the ACK): 64*T1, not fr_timeout, not wt_timer.
    assert cfg.h == T64
    # RFC 6026 §8.7 Timer L (INVITE server Accepted) and §8.4 Timer M (INVITE client Accepted): 64*T1.
    assert cfg.l == T64
    assert cfg.m == T64


def test_omitted_settings_derive_from_t1():
    # Only T1 given: fr_timeout and wt_timer follow 64*T1 (RFC 3261 Table 4: B, F, J = 64*T1),
    # T2 stays 4 s (Table 4), T4 5 s, fr_inv_timeout 180 s (§16.6 step 11: Timer C > 3 min).
    t = Config.from_dict({"timers": {"T1": 300}}).timers
    assert (t.t1, t.t2, t.t4, t.fr_timeout, t.fr_inv_timeout, t.wt_timer) == (T1, 4.0, 5.0, T64, 180.0, T64)
    # T2 defaults to max(4 s, T1): a T1 above 4 s does not make T2 < T1.
    t = Config.from_dict({"timers": {"T1": 5000}}).timers
    assert (t.t1, t.t2, t.fr_timeout, t.wt_timer) == (5.0, 5.0, 320.0, 320.0)
    # Each explicit setting overrides only itself.
    t = Config.from_dict({"timers": {"T1": 300, "wt_timer": 13}}).timers
    assert (t.fr_timeout, t.wt_timer, t.h) == (T64, WT, T64)
    t = Config.from_dict({"timers": {"T1": 300, "fr_timeout": 11}}).timers
    assert (t.fr_timeout, t.wt_timer, t.h) == (FR, T64, T64)


# ------------------------------------------------------------------ INVITE server (§17.2.1, RFC 6026 §8.7)


def test_invite_server_non2xx_unreliable_g_from_t1_capped_at_t2_h_is_64t1_i_is_t4():
    tx = ServerInviteTransaction("k", DEST, False, CFG)
    # §17.2.1: "Timer G is set to fire in T1 seconds" and "Timer H MUST be set to fire in 64*T1".
    assert started(tx.send_response(486, b"486")) == [("G", T1), ("H", T64)]
    # §17.2.1: G doubles, "MIN(2*T1, T2)" and so on: 0.6, 1.2, 2.4, then T2.
    assert [started(tx.on_timer("G")) for _ in range(5)] == [[("G", 0.6)], [("G", 1.2)], [("G", 2.4)], [("G", T2)], [("G", T2)]]
    # §17.2.1: Confirmed, "timer I is set to fire in T4 seconds for unreliable transports".
    assert started(tx.on_ack()) == [("I", T4)]


def test_invite_server_non2xx_reliable_only_h():
    tx = ServerInviteTransaction("k", DEST, True, CFG)
    assert started(tx.send_response(603, b"603")) == [("H", T64)]  # §17.2.1: H on every transport


def test_invite_server_2xx_timer_l_is_64t1():
    tx = ServerInviteTransaction("k", DEST, False, CFG)
    assert started(tx.send_response(180, b"180")) == []
    assert started(tx.send_response(200, b"200")) == [("L", T64)]  # RFC 6026 §8.7


# ------------------------------------------------------------------ non-INVITE server (§17.2.2)


def test_non_invite_server_timer_j_is_wt_timer():
    # §17.2.2 Timer J: 64*T1 in the RFC; proxyapp uses wt_timer (OpenSIPS tm wt_timer).
    tx = ServerNonInviteTransaction("k", DEST, False, CFG)
    assert started(tx.send_response(100, b"100")) == []
    assert started(tx.send_response(200, b"200")) == [("J", WT)]
    tx = ServerNonInviteTransaction("k", DEST, True, CFG)
    assert started(tx.send_response(200, b"200")) == []  # J = 0 on reliable transports


def test_non_invite_server_abandoned_waits_64t1_the_clients_timer_f():
    # No final to send (RFC 4320 §4.2): absorb retransmissions while the client can still send
    # them, i.e. its Timer F = 64*T1 (§17.1.2.2), whatever our own wt_timer says.
    tx = ServerNonInviteTransaction("k", DEST, False, CFG)
    assert started(tx.abandon()) == [("J", T64)]


# ------------------------------------------------------------------ INVITE client (§17.1.1, §16.6-16.8, RFC 6026 §8.4)


def test_invite_client_start_a_is_t1_b_is_fr_timeout_c_is_fr_inv_timeout():
    tx = ClientInviteTransaction("k", DEST, False, CFG, REQ)
    # §17.1.1.2: A = T1 (unreliable), B = 64*T1 in the RFC, fr_timeout here; §16.6 step 11: C.
    assert started(tx.start()) == [("A", T1), ("B", FR), ("C", FR_INV)]
    # §17.1.1.2: A doubles with no T2 cap for INVITE: 0.6, 1.2, 2.4, 4.8 (> T2 and > T4), 9.6.
    assert [started(tx.on_timer("A")) for _ in range(5)] == [[("A", 0.6)], [("A", 1.2)], [("A", 2.4)], [("A", 4.8)], [("A", 9.6)]]
    reliable = ClientInviteTransaction("k", DEST, True, CFG, REQ)
    assert started(reliable.start()) == [("B", FR), ("C", FR_INV)]


def test_invite_client_timer_c_reset_by_provisionals_then_b_guards_the_cancel():
    tx = ClientInviteTransaction("k", DEST, False, CFG, REQ)
    tx.start()
    assert started(tx.on_response(100)[1]) == []  # a 100 does not reset C (§16.7 step 2)
    assert started(tx.on_response(180)[1]) == [("C", FR_INV)]  # §16.7 step 2: 101-199 reset C
    assert started(tx.on_response(183)[1]) == [("C", FR_INV)]
    # §16.8: C fired after a provisional: the branch is CANCELled and B guards the 487.
    assert started(tx.on_timer("C")) == [("B", FR)]


def test_invite_client_timer_d_is_wt_timer_and_m_is_64t1():
    tx = ClientInviteTransaction("k", DEST, False, CFG, REQ)
    tx.start()
    # §17.1.1.2 Timer D: at least 32 s on unreliable transports; here wt_timer.
    assert started(tx.on_response(486, ACK)[1]) == [("D", WT)]
    tx = ClientInviteTransaction("k", DEST, True, CFG, REQ)
    tx.start()
    assert started(tx.on_response(486, ACK)[1]) == []  # D = 0 on reliable transports
    tx = ClientInviteTransaction("k", DEST, False, CFG, REQ)
    tx.start()
    assert started(tx.on_response(200)[1]) == [("M", T64)]  # RFC 6026 §8.4


# ------------------------------------------------------------------ non-INVITE client (§17.1.2)


def test_non_invite_client_e_from_t1_capped_at_t2_f_is_fr_timeout_k_is_t4():
    tx = ClientNonInviteTransaction("k", DEST, False, CFG, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    # §17.1.2.2: E = T1 (unreliable), F = 64*T1 in the RFC, fr_timeout here.
    assert started(tx.start()) == [("E", T1), ("F", FR)]
    # Trying: E doubles up to T2.
    assert [started(tx.on_timer("E")) for _ in range(4)] == [[("E", 0.6)], [("E", 1.2)], [("E", 2.4)], [("E", T2)]]
    # Proceeding: "the request is retransmitted ... every T2".
    tx = ClientNonInviteTransaction("k", DEST, False, CFG, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    tx.start()
    tx.on_response(100)
    assert started(tx.on_timer("E")) == [("E", T2)]
    # Completed: "timer K to fire in T4 seconds for unreliable transports".
    assert started(tx.on_response(200)[1]) == [("K", T4)]
    reliable = ClientNonInviteTransaction("k", DEST, True, CFG, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    assert started(reliable.start()) == [("F", FR)]


# ------------------------------------------------------------------ the proxy core passes the [timers] table on


def test_proxy_core_arms_the_configured_timers():
    """Config -> Proxy -> transactions: the [timers] table reaches every state machine."""
    h = Harness(timers=dict(TOML_TIMERS))
    acts = h.rx(req())  # INVITE over UDP: server tx upstream, client tx downstream
    fwd = sends(acts)[1]
    assert started(acts) == [("A", T1), ("B", FR), ("C", FR_INV)]
    acts = h.rx(resp_for(fwd.data, 486, "Busy Here"), CALLEE)
    # downstream: ACKed, Timer D; upstream: the 486 relayed, Timers G and H.
    assert sorted(started(acts)) == [("D", WT), ("G", T1), ("H", T64)]

    h = Harness(timers=dict(TOML_TIMERS))
    acts = h.rx(req("OPTIONS"))
    fwd = sends(acts)[-1]
    assert started(acts) == [("E", T1), ("F", FR)]
    acts = h.rx(resp_for(fwd.data, 200, "OK"), CALLEE)
    assert sorted(started(acts)) == [("J", WT), ("K", T4)]

    h = Harness(timers=dict(TOML_TIMERS))
    fwd = sends(h.rx(req(branch="z9hG4bKc2")))[1]
    acts = h.rx(resp_for(fwd.data, 200, "OK"), CALLEE)
    assert sorted(started(acts)) == [("L", T64), ("M", T64)]

