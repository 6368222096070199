"""RFC 3261 §17 state machines: feed events (timer firings included), assert the exact actions."""

from __future__ import annotations

import pytest

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

CFG = TimerConfig(t1=0.5, t2=4.0, t4=5.0, fr_timeout=32.0, fr_inv_timeout=180.0, wt_timer=32.0)
DEST = ("udp", "192.0.2.1", 5060)
REQ = b"INVITE sip:x SIP/2.0\r\n\r\n"
ACK = b"ACK sip:x SIP/2.0\r\n\r\n"


# ------------------------------------------------------------------ INVITE server (§17.2.1)


def sit(reliable=False):
    return ServerInviteTransaction("k", DEST, reliable, CFG)


def test_invite_server_provisional_and_retransmission():
    tx = sit()
    assert tx.state == PROCEEDING
    assert tx.on_request() == []  # nothing sent yet: nothing to repeat
    assert tx.send_response(100, b"100") == [Send(DEST, b"100", tx)]
    assert tx.on_request() == [Send(DEST, b"100", tx)]
    assert tx.send_response(180, b"180") == [Send(DEST, b"180", tx)]
    assert tx.on_request() == [Send(DEST, b"180", tx)]
    assert tx.state == PROCEEDING


def test_invite_server_non2xx_timer_g_doubles_to_t2_then_ack_confirms():
    tx = sit()
    assert tx.send_response(486, b"486") == [Send(DEST, b"486", tx), StartTimer(tx, "G", 0.5), StartTimer(tx, "H", 32.0)]
    assert tx.state == COMPLETED
    for expected in (1.0, 2.0, 4.0, 4.0):
        assert tx.on_timer("G") == [Send(DEST, b"486", tx), StartTimer(tx, "G", expected)]
    assert tx.on_request() == [Send(DEST, b"486", tx)]  # retransmitted INVITE: final again
    assert tx.send_response(200, b"200") == []  # a late 2xx from the TU is not ours to send here
    assert tx.on_ack() == [CancelTimer(tx, "G"), CancelTimer(tx, "H"), StartTimer(tx, "I", 5.0)]
    assert tx.state == CONFIRMED
    assert tx.on_ack() == []  # absorbed
    assert tx.on_request() == []
    assert tx.on_timer("G") == []  # a stale firing does nothing
    assert tx.on_timer("I") == [Terminated(tx)]
    assert tx.state == TERMINATED


def test_invite_server_timer_h_ends_without_ack():
    tx = sit()
    tx.send_response(408, b"408")
    assert tx.on_timer("H") == [CancelTimer(tx, "G"), Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_ack() == []


def test_invite_server_2xx_accepted_timer_l():
    tx = sit()
    tx.send_response(100, b"100")
    assert tx.send_response(200, b"200") == [Send(DEST, b"200", tx), StartTimer(tx, "L", 32.0)]
    assert tx.state == ACCEPTED
    assert tx.on_request() == []  # RFC 6026: INVITE retransmissions absorbed
    assert tx.send_response(200, b"200b") == [Send(DEST, b"200b", tx)]  # 2xx retransmissions pass
    assert tx.send_response(486, b"486") == []
    assert tx.on_timer("L") == [Terminated(tx)]


def test_invite_server_reliable_no_g_no_i():
    tx = sit(reliable=True)
    assert tx.send_response(486, b"486") == [Send(DEST, b"486", tx), StartTimer(tx, "H", 32.0)]
    assert tx.on_ack() == [CancelTimer(tx, "H"), Terminated(tx)]
    assert tx.state == TERMINATED


def test_invite_server_transport_error():
    tx = sit()
    assert tx.on_transport_error() == [Terminated(tx)]
    assert tx.on_transport_error() == []


# ------------------------------------------------------------------ non-INVITE server (§17.2.2)


def test_non_invite_server_trying_completed_timer_j():
    tx = ServerNonInviteTransaction("k", DEST, False, CFG)
    assert tx.state == TRYING
    assert tx.on_request() == []  # absorbed in Trying
    assert tx.send_response(200, b"200") == [Send(DEST, b"200", tx), StartTimer(tx, "J", 32.0)]
    assert tx.state == COMPLETED
    assert tx.on_request() == [Send(DEST, b"200", tx)]
    assert tx.send_response(500, b"500") == []
    assert tx.on_timer("J") == [Terminated(tx)]


def test_non_invite_server_proceeding_resends_provisional():
    tx = ServerNonInviteTransaction("k", DEST, False, CFG)
    assert tx.send_response(180, b"1xx") == [Send(DEST, b"1xx", tx)]
    assert tx.state == PROCEEDING
    assert tx.on_request() == [Send(DEST, b"1xx", tx)]


def test_non_invite_server_abandoned_absorbs_for_64_t1_rfc4320():
    # No final goes upstream after every branch timed out: Completed with nothing to resend.
    tx = ServerNonInviteTransaction("k", DEST, False, CFG)
    tx.send_response(100, b"100")
    assert tx.abandon() == [StartTimer(tx, "J", 64 * 0.5)]
    assert tx.state == COMPLETED
    assert tx.on_request() == []
    assert tx.send_response(200, b"late") == []
    assert tx.abandon() == []
    assert tx.on_timer("J") == [Terminated(tx)]
    reliable = ServerNonInviteTransaction("k", DEST, True, CFG)
    assert reliable.abandon() == [Terminated(reliable)]


def test_non_invite_server_reliable_j_is_zero():
    tx = ServerNonInviteTransaction("k", DEST, True, CFG)
    assert tx.send_response(200, b"200") == [Send(DEST, b"200", tx), Terminated(tx)]
    assert tx.state == TERMINATED


# ------------------------------------------------------------------ INVITE client (§17.1.1)


def cit(reliable=False):
    return ClientInviteTransaction(("b", "INVITE"), DEST, reliable, CFG, REQ)


def test_invite_client_timer_a_doubles_then_b_times_out():
    tx = cit()
    assert tx.start() == [Send(DEST, REQ, tx), StartTimer(tx, "A", 0.5), StartTimer(tx, "B", 32.0), StartTimer(tx, "C", 180.0)]
    assert tx.state == CALLING
    for expected in (1.0, 2.0, 4.0, 8.0, 16.0):  # §17.1.1.2: no T2 cap for INVITE
        assert tx.on_timer("A") == [Send(DEST, REQ, tx), StartTimer(tx, "A", expected)]
    assert tx.on_timer("B") == [CancelTimer(tx, "A"), CancelTimer(tx, "C"), Timeout(tx, "B"), Terminated(tx)]
    assert tx.state == TERMINATED
    assert tx.on_timer("A") == []


def test_invite_client_100_stops_a_and_b_180_resets_c_486_acked():
    tx = cit()
    tx.start()
    assert tx.on_response(100) == (True, [CancelTimer(tx, "A"), CancelTimer(tx, "B")])
    assert tx.state == PROCEEDING
    assert tx.on_response(180) == (True, [StartTimer(tx, "C", 180.0)])  # §16.7 step 2
    assert tx.on_response(100) == (True, [])
    assert tx.on_response(486, ACK) == (True, [CancelTimer(tx, "C"), Send(DEST, ACK, tx), StartTimer(tx, "D", 32.0)])
    assert tx.state == COMPLETED
    assert tx.on_response(486, ACK) == (False, [Send(DEST, ACK, tx)])  # retransmission: ACK again
    assert tx.on_response(180) == (False, [])
    assert tx.on_timer("D") == [Terminated(tx)]


def test_invite_client_final_in_calling_stops_everything():
    tx = cit()
    tx.start()
    assert tx.on_response(404, ACK) == (
        True, [CancelTimer(tx, "A"), CancelTimer(tx, "B"), CancelTimer(tx, "C"), Send(DEST, ACK, tx), StartTimer(tx, "D", 32.0)],
    )


def test_invite_client_2xx_accepted_timer_m():
    tx = cit()
    tx.start()
    tx.on_response(180)
    assert tx.on_response(200) == (True, [CancelTimer(tx, "C"), StartTimer(tx, "M", 32.0)])
    assert tx.state == ACCEPTED
    assert tx.on_response(200) == (True, [])  # RFC 6026: 2xx retransmissions go to the TU
    assert tx.on_response(486, ACK) == (False, [])
    assert tx.on_timer("M") == [Terminated(tx)]


def test_invite_client_timer_c_with_provisional_keeps_waiting_for_487():
    tx = cit()
    tx.start()
    tx.on_response(180)
    assert tx.on_timer("C") == [Timeout(tx, "C"), StartTimer(tx, "B", 32.0)]  # §16.8: TU CANCELs
    assert tx.state == PROCEEDING
    assert tx.on_response(487, ACK) == (
        True, [CancelTimer(tx, "B"), CancelTimer(tx, "C"), Send(DEST, ACK, tx), StartTimer(tx, "D", 32.0)],
    )


def test_invite_client_timer_c_then_b_when_the_487_never_comes():
    tx = cit()
    tx.start()
    tx.on_response(180)
    tx.on_timer("C")
    assert tx.on_timer("B") == [Terminated(tx)]


def test_invite_client_timer_c_without_provisional_ends():
    tx = cit()
    tx.start()
    assert tx.on_timer("C") == [CancelTimer(tx, "A"), CancelTimer(tx, "B"), Timeout(tx, "C"), Terminated(tx)]


def test_invite_client_transport_error():
    tx = cit()
    tx.start()
    assert tx.on_transport_error() == [
        CancelTimer(tx, "A"), CancelTimer(tx, "B"), CancelTimer(tx, "C"), TransportFailure(tx), Terminated(tx),
    ]


def test_invite_client_reliable_no_a_no_d():
    tx = cit(reliable=True)
    assert tx.start() == [Send(DEST, REQ, tx), StartTimer(tx, "B", 32.0), StartTimer(tx, "C", 180.0)]
    assert tx.on_response(486, ACK) == (True, [CancelTimer(tx, "B"), CancelTimer(tx, "C"), Send(DEST, ACK, tx), Terminated(tx)])


# ------------------------------------------------------------------ non-INVITE client (§17.1.2)


def nct(reliable=False):
    return ClientNonInviteTransaction(("b", "BYE"), DEST, reliable, CFG, REQ)


def test_non_invite_client_timer_e_caps_at_t2_and_uses_t2_in_proceeding():
    tx = nct()
    assert tx.start() == [Send(DEST, REQ, tx), StartTimer(tx, "E", 0.5), StartTimer(tx, "F", 32.0)]
    for expected in (1.0, 2.0, 4.0, 4.0):
        assert tx.on_timer("E") == [Send(DEST, REQ, tx), StartTimer(tx, "E", expected)]
    tx2 = nct()
    tx2.start()
    assert tx2.on_response(100) == (True, [])
    assert tx2.state == PROCEEDING
    assert tx2.on_timer("E") == [Send(DEST, REQ, tx2), StartTimer(tx2, "E", 4.0)]


def test_non_invite_client_final_timer_k():
    tx = nct()
    tx.start()
    assert tx.on_response(200) == (True, [CancelTimer(tx, "E"), CancelTimer(tx, "F"), StartTimer(tx, "K", 5.0)])
    assert tx.state == COMPLETED
    assert tx.on_response(200) == (False, [])
    assert tx.on_timer("E") == []
    assert tx.on_timer("K") == [Terminated(tx)]


def test_non_invite_client_timer_f():
    tx = nct()
    tx.start()
    assert tx.on_timer("F") == [CancelTimer(tx, "E"), Timeout(tx, "F"), Terminated(tx)]


def test_non_invite_client_reliable():
    tx = nct(reliable=True)
    assert tx.start() == [Send(DEST, REQ, tx), StartTimer(tx, "F", 32.0)]
    assert tx.on_response(200) == (True, [CancelTimer(tx, "F"), Terminated(tx)])
    tx = nct(reliable=True)
    tx.start()
    assert tx.on_transport_error() == [CancelTimer(tx, "F"), TransportFailure(tx), Terminated(tx)]


@pytest.mark.parametrize("t1,t2", [(0.1, 1.0), (0.5, 4.0)])
def test_timers_derive_from_t1(t1, t2):
    from proxyapp.config import Config

    cfg = Config.from_dict({"timers": {"T1": int(t1 * 1000), "T2": int(t2 * 1000)}}).timers
    assert (cfg.t1, cfg.t2) == (t1, t2)
    assert cfg.b == cfg.f == cfg.h == cfg.l == cfg.m == pytest.approx(64 * t1)
    assert cfg.wt_timer == pytest.approx(64 * t1)
    assert cfg.fr_inv_timeout == 180.0


def test_tx_table_is_a_map_spread_over_shards():
    """TxTable answers like a dict, and its keys spread over its 64 shards, so growing or
    rehashing one shard copies about 1/64 of the transactions, never all of them."""
    from proxyapp.transaction import TxTable

    table = TxTable()
    keys = [(f"z9hG4bK-{i}-1-0", "127.0.0.1:45080", "INVITE") for i in range(20000)]
    for i, k in enumerate(keys):
        table[k] = i
    assert len(table) == 20000 and table.get(keys[123]) == 123 and keys[9] in table
    assert table.get(("z9hG4bK-x", "127.0.0.1:1", "BYE")) is None
    for k in keys[:19990]:
        del table[k]
    assert len(table) == 10 and sorted(table.values()) == list(range(19990, 20000))
    assert keys[0] not in table
    table.discard(keys[19995], "another transaction")  # the key maps to 19995, not to this
    table.discard(keys[19996], table.get(keys[19996]))  # the very object it maps to
    assert table.get(keys[19995]) == 19995 and keys[19996] not in table
    table[keys[19996]] = 19996
    with pytest.raises(KeyError):
        del table[keys[0]]
    for i, k in enumerate(keys):
        table[k] = i
    sizes = [len(shard) for shard in table._shards]
    assert len(sizes) == TxTable.SHARDS == 64 and max(sizes) < 2 * 20000 / 64
