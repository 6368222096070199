"""Real phones through proxyapp: it is their registrar and outbound proxy, and it accounts their calls.

Each phone (baresip) is ``sip:USER@127.0.0.1`` and sends everything, REGISTER included, to
proxyapp through a preloaded Route (baresip's ``outbound``). A calls B by B's address-of-record:
proxyapp looks B up in its location service and forks to B's registered contact.

The calls follow RFC 3261: the registrar (§10.3) binds the Contact, the proxy (§16.5) forwards to
the bindings (none: 404 or 480; two devices of one AOR ring in parallel and the best answer wins,
§16.6-16.7) and removes its own Route from initial requests (§16.4), so a call to another phone's
own address through the outbound proxy reaches that phone. The default
script's accounting writes one CDR per answered call and a missed-call record per failed one.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from .baresip import Phone, establish, hang_up, ring

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TRANSPORTS = ["udp", "tcp"]
AOR = "sip:{}@127.0.0.1"


def _pair(phones, proxy, transport_a: str, transport_b: str | None = None) -> tuple[Phone, Phone]:
    """alice and bob, both registered with proxyapp (REGISTER_OK, or the test fails with the status)."""
    to = f"127.0.0.1:{proxy.port}"
    a = phones.phone("alice", transport=transport_a, proxy=to)
    b = phones.phone("bob", transport=transport_b or transport_a, proxy=to)
    a.register()
    b.register()
    return a, b


def _rows(proxy, sql: str, args: tuple = ()) -> list[dict]:
    if not proxy.acc_db.exists():
        return []
    conn = sqlite3.connect(proxy.acc_db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    except sqlite3.OperationalError:  # the table is created with its first record
        return []
    finally:
        conn.close()


def _wait_rows(proxy, phones, what: str, sql: str, args: tuple, count: int, timeout: float = 10.0) -> list[dict]:
    """The rows of ``sql`` once there are ``count`` (the SQLite writer is a child process: bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(proxy, sql, args)
        if len(rows) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == count, f"{what}: {len(rows)} rows, expected {count}: {rows}\n{phones.report()}"
    return rows


def _cdrs(proxy, phones, call_id: str, count: int = 1) -> list[dict]:
    return _wait_rows(proxy, phones, f"CDRs of call {call_id}",
                      "SELECT * FROM acc WHERE callid = ? AND end_reason IS NOT NULL", (call_id,), count)


def _assert_proxy_clean(proxy, phones) -> None:
    log = proxy.log()
    assert "Traceback" not in log and "internal error" not in log, phones.report()


def _assert_transport(transport: str, *ps: Phone) -> None:
    # The SIP trace names the transport of each message; the proxy's Via gets it right too.
    for p in ps:
        assert f"{transport.upper()} 127.0.0.1:" in p.log(), p.context()


# ---------------------------------------------------------------------- registration


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_register(phones, proxy, transport):
    a, b = _pair(phones, proxy, transport)
    _assert_transport(transport, a, b)
    _assert_proxy_clean(proxy, phones)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unregistered_callee_is_not_found(phones, proxy, transport):
    # After bob's REGISTER with Expires: 0 the location service has nothing for his AOR.
    a, b = _pair(phones, proxy, transport)
    assert b.unregister() == "200 OK", phones.report()
    a.dial(AOR.format("bob"))
    closed = a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert closed.param.startswith(("404", "480")), f"{closed}\n{phones.report()}"
    b.assert_no_event("CALL_INCOMING", within=0.5)
    _assert_proxy_clean(proxy, phones)


# ---------------------------------------------------------------------- calls by address-of-record


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("who", ["caller", "callee"])
def test_call_by_aor(phones, proxy, transport, who):
    a, b = _pair(phones, proxy, transport)
    call_id = establish(a, b, AOR.format("bob"))
    time.sleep(1.0)  # a call that lasts: the CDR's duration counts it
    by, other = (a, b) if who == "caller" else (b, a)
    closed_by, closed_other = hang_up(by, other)
    assert "reset by peer" in closed_other.param, f"{closed_other}\n{phones.report()}"
    _assert_transport(transport, a, b)

    (cdr,) = _cdrs(proxy, phones, call_id)
    assert (cdr["method"], cdr["sip_code"], cdr["end_reason"]) == ("INVITE", 200, "bye"), cdr
    assert (cdr["from_user"], cdr["to_user"]) == ("alice", "bob"), cdr
    assert cdr["ms_duration"] >= 900, cdr
    assert _rows(proxy, "SELECT * FROM missed_calls WHERE callid = ?", (call_id,)) == []
    _assert_proxy_clean(proxy, phones)


def test_call_udp_phone_to_tcp_phone(phones, proxy):
    # alice registered over UDP, bob over TCP: the proxy bridges the transports.
    a, b = _pair(phones, proxy, "udp", "tcp")
    call_id = establish(a, b, AOR.format("bob"))
    hang_up(b, a)
    _assert_transport("udp", a)
    _assert_transport("tcp", b)
    _cdrs(proxy, phones, call_id)
    _assert_proxy_clean(proxy, phones)


def test_two_calls_two_cdrs(phones, proxy):
    a, b = _pair(phones, proxy, "udp")
    first = establish(a, b, AOR.format("bob"))
    hang_up(a, b)
    second = establish(b, a, AOR.format("alice"))
    hang_up(a, b)
    assert first != second
    for call_id in (first, second):
        _cdrs(proxy, phones, call_id)
    _wait_rows(proxy, phones, "all CDRs", "SELECT * FROM acc WHERE end_reason IS NOT NULL", (), 2)
    _assert_proxy_clean(proxy, phones)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_callee_rejects(phones, proxy, transport):
    a, b = _pair(phones, proxy, transport)
    incoming = ring(a, b, AOR.format("bob"))
    b.hangup()  # baresip refuses an unanswered call with 486
    closed = a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "486" in closed.param, f"{closed}\n{phones.report()}"
    b.wait_event("CALL_CLOSED")

    (missed,) = _wait_rows(proxy, phones, "missed-call record", "SELECT * FROM missed_calls WHERE callid = ?",
                           (incoming.call_id,), 1)
    assert missed["sip_code"] == 486, missed
    assert _rows(proxy, "SELECT * FROM acc WHERE end_reason IS NOT NULL") == []  # no CDR
    _assert_proxy_clean(proxy, phones)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_caller_cancels_while_ringing(phones, proxy, transport):
    a, b = _pair(phones, proxy, transport)
    incoming = ring(a, b, AOR.format("bob"))
    a.hangup()  # CANCEL, relayed hop by hop to bob
    a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    b.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "487 Request Terminated" in b.log(), phones.report()

    (missed,) = _wait_rows(proxy, phones, "missed-call record", "SELECT * FROM missed_calls WHERE callid = ?",
                           (incoming.call_id,), 1)
    assert missed["sip_code"] == 487, missed
    assert _rows(proxy, "SELECT * FROM acc WHERE end_reason IS NOT NULL") == []
    _assert_proxy_clean(proxy, phones)


# ---------------------------------------------------------------------- a phone's own address


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_phone_address_through_outbound_proxy(phones, proxy, transport):
    # The Request-URI is bob's own address (sip:bob@127.0.0.1:PORT), not his AOR; alice's INVITE
    # still carries the preloaded Route to proxyapp. RFC 3261 §16.4: the proxy removes its own
    # Route and forwards by the Request-URI (not a loop, not a lookup). Neither phone registers:
    # the call needs no location service.
    to = f"127.0.0.1:{proxy.port}"
    a = phones.phone("alice", transport=transport, proxy=to)
    b = phones.phone("bob", transport=transport, proxy=to)
    call_id = establish(a, b, b.uri)
    hang_up(a, b)
    _cdrs(proxy, phones, call_id)
    _assert_proxy_clean(proxy, phones)


# ---------------------------------------------------------------------- forking: one AOR, two devices


def _bob_twice(phones, proxy) -> tuple[Phone, Phone, Phone]:
    """alice, and bob registered from a desk phone (UDP) and a mobile (TCP): two bindings for one AOR."""
    to = f"127.0.0.1:{proxy.port}"
    a = phones.phone("alice", proxy=to)
    desk = phones.phone("bob", name="bob-desk", proxy=to)
    mobile = phones.phone("bob", name="bob-mobile", transport="tcp", proxy=to)
    for p in (a, desk, mobile):
        p.register()
    return a, desk, mobile


def _both_ring(a: Phone, desk: Phone, mobile: Phone) -> None:
    a.dial(AOR.format("bob"))
    a.wait_event("CALL_RINGING", fail_on=("CALL_CLOSED",))
    for p in (desk, mobile):
        incoming = p.wait_event("CALL_INCOMING")
        assert incoming.peeruri == a.aor, f"{incoming}\n{p.context()}"


def test_forking_first_answer_wins(phones, proxy):
    # RFC 3261 §16.7 step 10: the 2xx goes upstream and the proxy CANCELs the branch still ringing.
    a, desk, mobile = _bob_twice(phones, proxy)
    _both_ring(a, desk, mobile)
    mobile.answer()
    established = a.wait_event("CALL_ESTABLISHED", fail_on=("CALL_CLOSED",))
    mobile.wait_event("CALL_ESTABLISHED", fail_on=("CALL_CLOSED",))
    desk.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "CANCEL sip:" in desk.log(), desk.context()
    a.wait_event("CALL_RTPESTAB")
    hang_up(a, mobile)

    (cdr,) = _cdrs(proxy, phones, established.call_id)
    assert cdr["end_reason"] == "bye", cdr
    assert _rows(proxy, "SELECT * FROM missed_calls") == []  # answered: not a missed call
    _assert_proxy_clean(proxy, phones)


def test_forking_busy_device_does_not_end_the_call(phones, proxy):
    # RFC 3261 §16.7 step 6: a 486 from one branch is held while another branch may still answer.
    a, desk, mobile = _bob_twice(phones, proxy)
    _both_ring(a, desk, mobile)
    desk.hangup()  # 486 from the desk phone
    desk.wait_event("CALL_CLOSED")
    a.assert_no_event("CALL_CLOSED", within=1.0)
    mobile.answer()
    established = a.wait_event("CALL_ESTABLISHED", fail_on=("CALL_CLOSED",))
    mobile.wait_event("CALL_ESTABLISHED", fail_on=("CALL_CLOSED",))
    hang_up(mobile, a)
    _cdrs(proxy, phones, established.call_id)
    _assert_proxy_clean(proxy, phones)


def test_forking_every_device_busy(phones, proxy):
    # The best final response (§16.7 step 6) once every branch failed: both 486, the caller gets 486.
    a, desk, mobile = _bob_twice(phones, proxy)
    _both_ring(a, desk, mobile)
    desk.hangup()
    desk.wait_event("CALL_CLOSED")
    mobile.hangup()
    mobile.wait_event("CALL_CLOSED")
    closed = a.wait_event("CALL_CLOSED", fail_on=("CALL_ESTABLISHED",))
    assert "486" in closed.param, f"{closed}\n{phones.report()}"
    (missed,) = _wait_rows(proxy, phones, "missed-call record", "SELECT * FROM missed_calls WHERE callid = ?",
                           (closed.call_id,), 1)
    assert missed["sip_code"] == 486, missed
    _assert_proxy_clean(proxy, phones)
