"""RFC 3261 §17 state machines: the transitions mutation testing found unpinned.

Each test feeds events (responses, requests, timer firings, transport errors) and asserts the exact
actions and the state reached. The timer knobs all differ (T1 0.25, T2 2, T4 3, fr_timeout 20,
fr_inv_timeout 200, wt_timer 40; 64*T1 = 16), so a test also says which knob each timer uses.

Three families recur:
* boundaries of the status classes: 101 is a provisional other than 100 (§16.7 step 2), 300 is
  a final non-2xx (§17.1.1.3, §17.2.1), never a 2xx;
* a firing of a timer the current state did not arm (the edge can deliver one that raced a
  transition) changes nothing;
* Terminated is reached as the state ``Terminated`` (the core releases a context only on that
  state, base.CoreBase._release_if_done) and is final: a later transport error reports nothing.
"""

from __future__ import annotations

from proxyapp.config import TimerConfig
from proxyapp.transaction import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    CancelTimer,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    StartTimer,
    Terminated,
    Timeout,
    TransportFailure,
)

CFG = TimerConfig(t1=0.25, t2=2.0, t4=3.0, fr_timeout=20.0, fr_inv_timeout=200.0, wt_timer=40.0)
T64 = 16.0  # 64*T1: Timers H, L, M and the abandoned Timer J
DEST = ("udp", "192.0.2.1", 5060)
REQ = b"INVITE sip:x SIP/2.0\r\n\r\n"
ACK = b"ACK sip:x SIP/2.0\r\n\r\n"


def sit(reliable=False):
    return ServerInviteTransaction("k", DEST, reliable, CFG)


def snit(reliable=False):
    return ServerNonInviteTransaction("k", DEST, reliable, CFG)


def cit(reliable=False):
    tx = ClientInviteTransaction(("b", "INVITE"), DEST, reliable, CFG, REQ)
    tx.start()
    return tx


def cnit(reliable=False):
    tx = ClientNonInviteTransaction(("b", "BYE"), DEST, reliable, CFG, REQ)
    tx.start()
    return tx


# ------------------------------------------------------------------ what the edge and the core rely on


def test_new_transactions_have_no_owner_an_empty_timer_table_and_a_readable_repr():
    # The edge keeps timer handles in tx.timers (transport.py pops and sets names in it); the core's
    # _forget tests ``owner is not None`` before following it (a CANCEL's transaction has none).
    made = [sit(), snit(), cit(), cnit()]
    for tx in made:
        assert tx.timers == {} and type(tx.timers) is dict
        assert tx.owner is None
    assert [repr(tx) for tx in made] == [
        "<ServerInviteTransaction 'k' Proceeding>",
        "<ServerNonInviteTransaction 'k' Trying>",
        "<ClientInviteTransaction ('b', 'INVITE') Calling>",
        "<ClientNonInviteTransaction ('b', 'BYE') Trying>",
    ]


# ------------------------------------------------------------------ INVITE server (§17.2.1, RFC 6026 §8)


def test_invite_server_300_is_a_non_2xx_final_timer_g_and_h():
    # §17.2.1: 300-699 -> Completed, Timer G = T1 (unreliable) and Timer H = 64*T1. Not Accepted.
    tx = sit()
    assert tx.send_response(300, b"300") == [Send(DEST, b"300", tx), StartTimer(tx, "G", 0.25), StartTimer(tx, "H", T64)]
    assert tx.state == COMPLETED
    assert tx.on_request() == [Send(DEST, b"300", tx)]


def test_invite_server_accepted_passes_only_2xx_from_the_tu():
    # RFC 6026 §8.7: in Accepted, 2xx from the TU go out; a 300 (not a 2xx) is dropped.
    tx = sit()
    assert tx.send_response(299, b"299") == [Send(DEST, b"299", tx), StartTimer(tx, "L", T64)]
    assert tx.state == ACCEPTED
    assert tx.send_response(300, b"300") == []
    assert tx.send_response(299, b"299") == [Send(DEST, b"299", tx)]
    assert tx.state == ACCEPTED


def test_invite_server_reliable_timer_h_cancels_no_timer_g():
    # §17.2.1: Timer G is armed on unreliable transports only, so Timer H on TCP ends with no
    # CancelTimer for it.
    tx = sit(reliable=True)
    tx.send_response(486, b"486")
    assert tx.on_timer("H") == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_invite_server_stale_firings_change_nothing():
    # Confirmed: Timer H was cancelled by the ACK; a firing that raced it must not end the
    # transaction (Timer I does, §17.2.1).
    tx = sit()
    tx.send_response(486, b"486")
    tx.on_ack()
    assert tx.state == CONFIRMED
    assert tx.on_timer("H") == [] and tx.on_timer("L") == []
    assert tx.state == CONFIRMED
    # Accepted (RFC 6026 §8.7): only Timer L ends it.
    tx = sit()
    tx.send_response(200, b"200")
    for name in ("G", "H", "I"):
        assert tx.on_timer(name) == []
    assert tx.state == ACCEPTED
    # Proceeding: no timer runs at all.
    tx = sit()
    tx.send_response(180, b"180")
    for name in ("G", "H", "I", "L"):
        assert tx.on_timer(name) == []
    assert tx.state == PROCEEDING
    # Completed: Timer L or I belong to other states.
    tx = sit()
    tx.send_response(486, b"486")
    assert tx.on_timer("L") == [] and tx.on_timer("I") == []
    assert tx.state == COMPLETED


# ------------------------------------------------------------------ non-INVITE server (§17.2.2, RFC 4320)


def test_non_invite_server_reliable_abandon_is_terminated_and_final():
    tx = snit(reliable=True)
    assert tx.abandon() == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    assert tx.send_response(200, b"200") == [] and tx.on_request() == []


def test_non_invite_server_timer_j_only_in_completed_and_ends_in_terminated():
    tx = snit()
    assert tx.on_timer("J") == []  # Trying: Timer J is not armed
    tx.send_response(100, b"100")
    assert tx.on_timer("J") == [] and tx.state == PROCEEDING
    assert tx.send_response(404, b"404") == [Send(DEST, b"404", tx), StartTimer(tx, "J", 40.0)]
    assert tx.on_timer("K") == [] and tx.state == COMPLETED  # not a server timer
    assert tx.on_timer("J") == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_server_transport_error_in_completed_ends_it_once():
    # §17.2.4: a transport error ends the server transaction whatever its state.
    tx = snit()
    tx.send_response(200, b"200")
    assert tx.on_transport_error() == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


# ------------------------------------------------------------------ INVITE client (§17.1.1, §16.6-16.8)


def test_invite_client_101_in_calling_resets_timer_c():
    # §16.7 step 2: every provisional other than 100 resets Timer C; 101 is one.
    tx = cit()
    assert tx.on_response(101) == (True, [CancelTimer(tx, "A"), CancelTimer(tx, "B"), StartTimer(tx, "C", 200.0)])
    assert tx.state == PROCEEDING
    assert tx.on_response(101) == (True, [StartTimer(tx, "C", 200.0)])


def test_invite_client_180_in_calling_stops_a_and_b_and_resets_c():
    # §17.1.1.2: Calling -> Proceeding stops Timers A and B; §16.7 step 2 resets Timer C.
    tx = cit()
    assert tx.on_response(180) == (True, [CancelTimer(tx, "A"), CancelTimer(tx, "B"), StartTimer(tx, "C", 200.0)])
    assert tx.state == PROCEEDING
    rel = cit(reliable=True)
    assert rel.on_response(183) == (True, [CancelTimer(rel, "B"), StartTimer(rel, "C", 200.0)])


def test_invite_client_100_in_calling_does_not_touch_timer_c():
    tx = cit()
    assert tx.on_response(100) == (True, [CancelTimer(tx, "A"), CancelTimer(tx, "B")])


def test_invite_client_300_is_acked_hop_by_hop():
    # §17.1.1.3: any 300-699 is ACKed by the transaction and moves it to Completed (Timer D).
    tx = cit()
    tx.on_response(180)
    assert tx.on_response(300, ACK) == (True, [CancelTimer(tx, "C"), Send(DEST, ACK, tx), StartTimer(tx, "D", 40.0)])
    assert tx.state == COMPLETED


def test_invite_client_2xx_after_a_non_2xx_final_is_not_passed_up():
    tx = cit()
    tx.on_response(486, ACK)
    assert tx.on_response(200) == (False, [])
    assert tx.state == COMPLETED


def test_invite_client_2xx_frees_the_request():
    # After a 2xx nothing is retransmitted, CANCELled or ACKed hop by hop: the copy is dropped.
    tx = cit()
    tx.on_response(180)
    assert tx.on_response(202) == (True, [CancelTimer(tx, "C"), StartTimer(tx, "M", T64)])
    assert tx.state == ACCEPTED
    assert tx.request == b""
    assert tx.on_timer("A") == []  # nothing to retransmit in Accepted


def test_invite_client_reliable_final_is_terminated_and_a_retransmission_is_not_acked_again():
    # Timer D is 0 on reliable transports (§17.1.1.2): Terminated at once; a repeated final
    # (no retransmissions over TCP, but a buggy peer) finds no transaction state to ACK from.
    tx = cit(reliable=True)
    assert tx.on_response(486, ACK) == (True, [CancelTimer(tx, "B"), CancelTimer(tx, "C"), Send(DEST, ACK, tx), Terminated(tx)])
    assert tx.state == TERMINATED
    assert tx.on_response(486, ACK) == (False, [])
    assert tx.on_transport_error() == []


def test_invite_client_reliable_timer_b_and_c_cancel_no_timer_a():
    # Timer A runs on unreliable transports only (§17.1.1.2).
    tx = cit(reliable=True)
    assert tx.on_timer("B") == [CancelTimer(tx, "C"), Timeout(tx, "B"), Terminated(tx)]
    assert tx.state == TERMINATED
    tx = cit(reliable=True)
    assert tx.on_timer("C") == [CancelTimer(tx, "B"), Timeout(tx, "C"), Terminated(tx)]
    assert tx.state == TERMINATED


def test_invite_client_timer_c_without_provisional_ends_in_terminated():
    # §16.8: Timer C with no provisional = as if a 408 was received; nothing more comes.
    tx = cit()
    tx.on_timer("C")
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    assert tx.on_response(180) == (False, [])


def test_invite_client_timer_b_after_timer_c_ends_in_terminated():
    tx = cit()
    tx.on_response(180)
    tx.on_timer("C")
    assert tx.on_timer("B") == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_invite_client_stale_firings_change_nothing():
    # Proceeding: Timer A was cancelled by the 180; a firing that raced it does nothing.
    tx = cit()
    tx.on_response(180)
    assert tx.on_timer("A") == [] and tx.on_timer("D") == [] and tx.on_timer("M") == []
    assert tx.state == PROCEEDING
    # Completed: only Timer D ends it.
    tx = cit()
    tx.on_response(486, ACK)
    for name in ("A", "B", "C", "M"):
        assert tx.on_timer(name) == []
    assert tx.state == COMPLETED
    assert tx.on_timer("D") == [Terminated(tx)]
    assert tx.state == TERMINATED
    # Accepted: only Timer M ends it.
    tx = cit()
    tx.on_response(200)
    for name in ("A", "B", "C", "D"):
        assert tx.on_timer(name) == []
    assert tx.state == ACCEPTED
    assert tx.on_timer("M") == [Terminated(tx)]
    assert tx.state == TERMINATED
    # Calling: Timers D and M belong to later states.
    tx = cit()
    assert tx.on_timer("D") == [] and tx.on_timer("M") == []
    assert tx.state == CALLING


def test_invite_client_transport_error_ends_in_terminated_once():
    # §17.1.4: in Calling/Proceeding the TU hears of it; afterwards (an ACK that could not be
    # sent, in Completed) the transaction just ends; once Terminated nothing more happens.
    tx = cit()
    tx.on_transport_error()
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    tx = cit()
    tx.on_response(486, ACK)
    assert tx.on_transport_error() == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    tx = cit()
    tx.on_response(200)
    assert tx.on_transport_error() == [Terminated(tx)]
    assert tx.state == TERMINATED


# ------------------------------------------------------------------ non-INVITE client (§17.1.2)


def test_non_invite_client_provisionals_pass_up_until_the_final():
    tx = cnit()
    assert tx.on_response(100) == (True, [])
    assert tx.on_response(180) == (True, [])  # Proceeding: still passed to the TU
    assert tx.state == PROCEEDING
    tx.on_response(200)
    assert tx.on_response(180) == (False, [])  # Completed: absorbed


def test_non_invite_client_final_frees_the_request():
    tx = cnit()
    tx.on_response(200)
    assert tx.request == b""  # Completed never retransmits (Timer K only absorbs)


def test_non_invite_client_reliable_final_and_timer_f_end_in_terminated():
    tx = cnit(reliable=True)
    tx.on_response(200)
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    tx = cnit(reliable=True)
    assert tx.on_timer("F") == [Timeout(tx, "F"), Terminated(tx)]  # no Timer E on TCP
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_non_invite_client_timer_f_and_k_end_in_terminated():
    tx = cnit()
    tx.on_timer("F")
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    tx = cnit()
    tx.on_response(200)
    assert tx.on_timer("K") == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_non_invite_client_stale_firings_change_nothing():
    tx = cnit()
    assert tx.on_timer("K") == [] and tx.state == TRYING
    tx.on_response(100)
    assert tx.on_timer("K") == [] and tx.state == PROCEEDING
    tx.on_response(200)
    assert tx.on_timer("F") == [] and tx.state == COMPLETED


def test_non_invite_client_transport_error_unreliable():
    # §17.1.4: Timers E and F stop, the TU is told, the transaction ends.
    tx = cnit()
    assert tx.on_transport_error() == [CancelTimer(tx, "E"), CancelTimer(tx, "F"), TransportFailure(tx), Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []
    tx = cnit()
    tx.on_response(100)
    assert tx.on_transport_error() == [CancelTimer(tx, "E"), CancelTimer(tx, "F"), TransportFailure(tx), Terminated(tx)]


def test_non_invite_client_transport_error_after_the_final_just_ends():
    tx = cnit()
    tx.on_response(200)
    assert tx.on_transport_error() == [Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_transport_error() == []


def test_a_2xx_straight_in_calling_over_udp_cancels_timer_a_too():
    # RFC 3261 §17.1.1.2 / RFC 6026 §8.4: no provisional came, so Timer A still runs; Accepted
    # retransmits nothing, so the 2xx must disarm it (it stayed armed until it fired, ignored).
    tx = ClientInviteTransaction(("b", "INVITE"), ("udp", "192.0.2.1", 5060), False, CFG, b"INVITE sip:x SIP/2.0\r\n\r\n")
    tx.start()
    assert tx.on_response(200) == (
        True, [CancelTimer(tx, "A"), CancelTimer(tx, "B"), CancelTimer(tx, "C"), StartTimer(tx, "M", CFG.m)],
    )
