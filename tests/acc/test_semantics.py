"""When records are written (OpenSIPS acc semantics), driven through the engine with no sockets.

Each test feeds the proxy's events with explicit timestamps and asserts the exact records.
"""

import asyncio

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark
from proxyapp.acc.engine import cdr_record_id

from .memory import memory_backends, settle
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)
T0 = 1_700_000_000.0


@pytest.fixture
def acc_env(tmp_path):
    backends = memory_backends()
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "cdr_lifetime_s": 60})
    return cfg, backends


def run(coro):
    return asyncio.run(coro)


async def _started(cfg, backends):
    acc = Accounting(cfg, backends=backends, clock=lambda: T0)
    await acc.start()
    return acc


def call(acc, mark, callid="call-1", caller="ft1", callee="tt1", t=T0, answer=2.0, hangup=10.0, bye_from_callee=False, code=200):
    """An answered call: INVITE at t, 180, 200 at t+answer, ACK, BYE at t+hangup answered 200."""
    inv = request("INVITE", callid, caller)
    acc.observe_request(inv, SRC, t)
    acc.observe_request(inv, SRC, t + 0.5)  # a retransmission keeps the first arrival
    acc.observe_response(response(inv, 180, "Ringing", callee), t + 1)
    acc.observe_response(response(inv, code, "OK", callee), t + answer)
    acc.transaction_completed(mark, inv, code, "OK", callee, SRC, t + answer)
    acc.observe_response(response(inv, code, "OK", callee), t + answer + 0.5)  # 2xx retransmission
    acc.observe_request(request("ACK", callid, caller, callee), SRC, t + answer + 0.1)
    if bye_from_callee:
        bye = request("BYE", callid, callee, caller, cseq=1, swap=True)
    else:
        bye = request("BYE", callid, caller, callee, cseq=2)
    acc.observe_request(bye, SRC, t + hangup)
    acc.observe_request(bye, SRC, t + hangup + 0.5)  # BYE retransmission
    acc.transaction_completed(AccMark.parse("aaa"), bye, 200, "OK", bye.to.tag, SRC, t + hangup + 0.02)
    return inv, bye


def test_seed_example_cdr_and_bye(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        call(acc, AccMark.parse("db|log", "cdr|missed", "my_acc"))
        await settle(acc)
        await acc.close()

    run(go())
    # db and log: exactly one CDR (the answered INVITE is accounted as the CDR, OpenSIPS cdr flag)
    for name in ("db", "log"):
        assert len(b[name].records) == 1, name
        r = b[name].records[0]
        assert (r.kind, r.table, r.method, r.from_tag, r.to_tag, r.callid, r.sip_code, r.sip_reason) == ("cdr", "my_acc", "INVITE", "ft1", "tt1", "call-1", 200, "OK")
        assert r.created == 1_700_000_000_000  # first INVITE arrival, ms
        assert r.time == 1_700_000_002_000  # answer (first 2xx), ms
        assert r.setuptime == 2000
        assert r.ms_duration == 8000 and r.duration == 8  # BYE first arrival - answer
        assert r.end_reason == "bye"
        assert r.extra["src_ip"] == "192.0.2.7" and r.extra["user_agent"] == "Bria 3" and r.extra["from_user"] == "8887779996"
    # aaa: the BYE transaction (do_accounting("aaa") on BYE)
    assert [(r.kind, r.method, r.sip_code, r.from_tag, r.to_tag) for r in b["aaa"].records] == [("acc", "BYE", 200, "ft1", "tt1")]
    assert b["evi"].records == []


def test_bye_from_callee_ends_same_dialog(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        call(acc, AccMark.parse("db", "cdr"), bye_from_callee=True, hangup=5.25)
        await settle(acc)
        await acc.close()

    run(go())
    [r] = b["db"].records
    assert r.kind == "cdr" and r.ms_duration == 3250 and r.from_tag == "ft1" and r.to_tag == "tt1"


def test_bye_that_timed_out_still_ends_the_dialog(acc_env):
    # The proxy reports a BYE whose callee never answered as a local 408 (no 408 goes upstream,
    # RFC 4320); RFC 3261 §15.1.1 ends the dialog all the same, so the CDR must be written.
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        inv = request("INVITE", "call-t", "ft1")
        acc.observe_request(inv, SRC, T0)
        acc.observe_response(response(inv, 200, "OK", "tt1"), T0 + 1)
        acc.transaction_completed(AccMark.parse("db", "cdr|failed"), inv, 200, "OK", "tt1", SRC, T0 + 1)
        acc.observe_request(request("ACK", "call-t", "ft1", "tt1"), SRC, T0 + 1.1)
        bye = request("BYE", "call-t", "ft1", "tt1", cseq=2)
        acc.observe_request(bye, SRC, T0 + 6.5)
        acc.transaction_completed(AccMark.parse("db", "failed"), bye, 408, "Request Timeout", None, SRC, T0 + 38.5)
        await settle(acc)
        await acc.close()

    run(go())
    cdr = [r for r in b["db"].records if r.kind == "cdr"]
    byes = [r for r in b["db"].records if r.method == "BYE"]
    assert len(cdr) == 1 and cdr[0].end_reason == "bye" and cdr[0].ms_duration == 5500
    assert [(r.sip_code, r.sip_reason) for r in byes] == [(408, "Request Timeout")]


def _answered_call_with_unanswered_bye(acc, callid):
    inv = request("INVITE", callid, "ft1")
    acc.observe_request(inv, SRC, T0)
    acc.observe_response(response(inv, 200, "OK", "tt1"), T0 + 1)
    acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 200, "OK", "tt1", SRC, T0 + 1)
    acc.observe_request(request("BYE", callid, "ft1", "tt1", cseq=2), SRC, T0 + 4)


def test_unanswered_bye_ends_the_dialog_after_timer_f(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        _answered_call_with_unanswered_bye(acc, "call-g")
        assert acc.expire(T0 + 4 + 31) == 0  # the BYE could still be answered
        assert acc.expire(T0 + 4 + 32) == 1
        await settle(acc)
        await acc.close()

    run(go())
    [cdr] = b["db"].records
    assert (cdr.kind, cdr.end_reason, cdr.ms_duration) == ("cdr", "bye", 3000)


def test_shutdown_writes_cdrs_of_calls_whose_bye_is_pending(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        _answered_call_with_unanswered_bye(acc, "call-s")
        await settle(acc)
        await acc.close()

    run(go())
    [cdr] = b["db"].records
    assert (cdr.kind, cdr.callid, cdr.end_reason, cdr.ms_duration) == ("cdr", "call-s", "bye", 3000)


def test_reinvite_keeps_dialog_and_duplicate_bye_completion_ignored(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        inv = request("INVITE", "c2", "a")
        acc.observe_request(inv, SRC, T0)
        acc.observe_response(response(inv, 200, "OK", "b"), T0 + 1)
        acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 200, "OK", "b", SRC, T0 + 1)
        reinv = request("INVITE", "c2", "a", "b", cseq=2)
        acc.observe_request(reinv, SRC, T0 + 30)
        acc.observe_response(response(reinv, 200, "OK", "b"), T0 + 30.1)
        acc.transaction_completed(None, reinv, 200, "OK", "b", SRC, T0 + 30.1)
        assert acc.stats()["dialogs"] == 1
        bye = request("BYE", "c2", "b", "a", swap=True)
        acc.observe_request(bye, SRC, T0 + 61)
        acc.transaction_completed(None, bye, 200, "OK", "a", SRC, T0 + 61.01)
        acc.transaction_completed(None, bye, 200, "OK", "a", SRC, T0 + 61.5)  # duplicate completion
        # a BYE with the tags swapped from the other side too
        acc.transaction_completed(None, request("BYE", "c2", "a", "b"), 200, "OK", "b", SRC, T0 + 62)
        assert acc.expire(T0 + 1000) == 0  # the lifetime timer finds nothing left either
        await settle(acc)
        await acc.close()

    run(go())
    [r] = b["db"].records
    assert r.ms_duration == 60000 and r.end_reason == "bye"
    assert r.record_id == cdr_record_id(type("D", (), {"callid": "c2", "caller_tag": "a", "callee_tag": "b"})())


def test_lifetime_expiry_writes_cdr_with_end_reason(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        inv = request("INVITE", "dead", "a")
        acc.observe_request(inv, SRC, T0)
        acc.transaction_completed(AccMark.parse("db|log", "cdr"), inv, 200, "OK", "b", SRC, T0 + 1)
        acc.observe_request(request("INVITE", "dead", "a", "b", cseq=2), SRC, T0 + 20)  # re-INVITE refreshes
        assert acc.expire(T0 + 79) == 0
        assert acc.expire(T0 + 80) == 1
        await settle(acc)
        await acc.close()

    run(go())
    [r] = b["db"].records
    assert r.end_reason == "lifetime" and r.time == 1_700_000_001_000 and r.ms_duration == 79000 and r.setuptime == 1000


@pytest.mark.parametrize("code,reason", [(486, "Busy Here"), (487, "Request Terminated"), (408, "Request Timeout")])
def test_missed_call_once_then_rearm(acc_env, code, reason):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        mark = AccMark.parse("db|log", "cdr|missed", "my_acc")
        inv = request("INVITE", f"m{code}", "a")
        acc.observe_request(inv, SRC, T0)
        # first destination fails -> failure route: per-branch missed record, flag cleared
        acc.branch_failed(mark, inv, 486, "Busy Here", "x1", SRC, T0 + 1)
        assert not mark.missed
        acc.branch_failed(mark, inv, 486, "Busy Here", "x1", SRC, T0 + 1.5)  # not re-armed: nothing
        mark.update("db|log", "missed")  # failure route re-arms for the next destination
        acc.transaction_completed(mark, inv, code, reason, "x2", SRC, T0 + 3)
        assert acc.stats()["dialogs"] == 0
        await settle(acc)
        await acc.close()

    run(go())
    rows = [(r.kind, r.table, r.sip_code, r.to_tag, r.time) for r in b["db"].records]
    assert rows == [("missed", "my_acc", 486, "x1", 1_700_000_001_000), ("missed", "my_acc", code, "x2", 1_700_000_003_000)]
    assert len(b["log"].records) == 2


def test_transaction_acc_rules(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        opt = request("OPTIONS", "o1", "a")
        acc.transaction_completed(AccMark.parse("db"), opt, 200, "OK", "z", SRC, T0)  # < 300: always
        acc.transaction_completed(AccMark.parse("db"), request("OPTIONS", "o2", "a"), 404, "Not Found", "z", SRC, T0)  # no failed flag
        acc.transaction_completed(AccMark.parse("db", "failed"), request("OPTIONS", "o3", "a"), 404, "Not Found", "z", SRC, T0)
        acc.transaction_completed(AccMark.parse("db", "missed"), request("MESSAGE", "o4", "a"), 480, "Unavailable", "z", SRC, T0)  # missed: INVITE only
        acc.transaction_completed(AccMark.parse("db"), request("INVITE", "o5", "a"), 100, "Trying", None, SRC, T0)  # provisional: ignored
        # INVITE answered without cdr flag: a transaction record right away
        acc.transaction_completed(AccMark.parse("db|evi"), request("INVITE", "o6", "a"), 200, "OK", "z", SRC, T0)
        # failed + missed on an INVITE: both records
        acc.transaction_completed(AccMark.parse("db", "missed|failed"), request("INVITE", "o7", "a"), 603, "Decline", "z", SRC, T0)
        m = AccMark.parse("db")
        m.drop()
        acc.transaction_completed(m, request("INVITE", "o8", "a"), 200, "OK", "z", SRC, T0)  # drop_accounting
        await settle(acc)
        await acc.close()

    run(go())
    got = [(r.kind, r.callid, r.sip_code) for r in b["db"].records]
    assert got == [("acc", "o1", 200), ("acc", "o3", 404), ("acc", "o6", 200), ("missed", "o7", 603), ("acc", "o7", 603)]
    assert [(r.kind, r.callid) for r in b["evi"].records] == [("acc", "o6")]


def test_one_shot_requests(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        req = request("MESSAGE", "q1", "a")
        acc.log_request(req, "403 Forbidden", T0)
        acc.db_request(req, "screened", "audit", T0 + 1)
        with pytest.raises(ValueError):
            acc.db_request(req, "x", "bad table", T0)
        await settle(acc)
        await acc.close()

    run(go())
    [lr] = b["log"].records
    assert (lr.kind, lr.method, lr.sip_code, lr.sip_reason, lr.to_tag, lr.time) == ("request", "MESSAGE", 403, "Forbidden", None, 1_700_000_000_000)
    [dr] = b["db"].records
    assert (dr.kind, dr.table, dr.sip_code, dr.sip_reason) == ("request", "audit", None, "screened")


def test_unanswered_cdr_invite_opens_no_dialog(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        inv = request("INVITE", "u1", "a")
        acc.observe_request(inv, SRC, T0)
        acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 487, "Request Terminated", "z", SRC, T0 + 5)
        assert acc.stats()["dialogs"] == 0
        # a stray BYE for it later is not a CDR
        acc.transaction_completed(None, request("BYE", "u1", "a", "z"), 481, "No dialog", "z", SRC, T0 + 6)
        await settle(acc)
        await acc.close()

    run(go())
    assert b["db"].records == []


def test_transaction_reported_twice_is_one_record(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        req = request("OPTIONS", "dup", "a", cseq=7)
        acc.transaction_completed(AccMark.parse("db|log"), req, 200, "OK", "t", SRC, T0)
        acc.transaction_completed(AccMark.parse("db|log"), req, 200, "OK", "t", SRC, T0 + 0.5)
        # a new transaction (next CSeq) is a new record
        acc.transaction_completed(AccMark.parse("db|log"), request("OPTIONS", "dup", "a", cseq=8), 200, "OK", "t", SRC, T0 + 1)
        await settle(acc)
        await acc.close()

    run(go())
    # the in-memory backends ignore a record_id they have, like the SQL UNIQUE column
    assert [(r.callid, r.time) for r in b["db"].records] == [("dup", 1_700_000_000_000), ("dup", 1_700_000_001_000)]
    assert len(b["log"].records) == 2


def test_aaa_with_cdr_sends_start_at_answer_and_cdr_as_stop(acc_env):
    cfg, b = acc_env

    async def go():
        acc = await _started(cfg, b)
        call(acc, AccMark.parse("aaa|db", "cdr"), callid="r1")
        await settle(acc)
        await acc.close()

    run(go())
    # aaa: Start (the answered INVITE); when the BYE is answered the CDR (Stop), then the BYE
    # transaction itself (do_accounting("aaa") on the BYE in call())
    assert [(r.kind, r.method, r.sip_code) for r in b["aaa"].records] == [("acc", "INVITE", 200), ("cdr", "INVITE", 200), ("acc", "BYE", 200)]
    assert [r.kind for r in b["db"].records] == ["cdr"]


def test_dialog_to_dict_has_every_field():
    # to_dict is written out field by field for speed; it must stay what asdict would give.
    import dataclasses

    from proxyapp.acc.dialog import Dialog

    d = Dialog("c", "a", "b", 1.0, 2.0, 200, "OK", ("db", "log"), "t", {"x": 1}, 3.0, 4.0, 5.0, "bye")
    expected = dataclasses.asdict(d)
    expected["types"] = ["db", "log"]
    # key is derived from callid and the tags and wheel_slot is the tracker's filing (both
    # init=False), so neither is stored
    assert expected.pop("key") == ("c", "a", "b") and expected.pop("wheel_slot") is None
    assert [f.name for f in dataclasses.fields(d) if not f.init] == ["key", "wheel_slot"]
    assert d.to_dict() == expected
    assert Dialog.from_dict(d.to_dict()) == d and Dialog.from_dict(d.to_dict()).key == d.key
    assert Dialog("c", "z", "b", 1.0, 2.0, 200, "OK", ("db",), None, {}, 3.0).key == ("c", "b", "z")


def test_bytes_per_open_cdr_dialog(tmp_path):
    """What accounting holds per open CDR dialog (the Dialog, its extra columns, the tracker's
    and the deadline wheel's entries), with the benchmark's real fastsip INVITE and 200, parsed
    and dropped inside the measurement as the proxy drops them: 100,000 open calls must fit
    comfortably, so the bound is 2 KiB; the value is printed (pytest -s)."""
    import gc
    import tracemalloc

    import fastsip

    from tests.proxy.callflow import answer, invite

    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path), "fsync": False})
    mark = AccMark.parse("db", "cdr")
    calls = 3000

    def call(acc, n):
        inv = fastsip.parse(invite(n))
        tag = fastsip.parse(answer(invite(n), n)).to.tag
        acc.observe_request(inv, SRC, T0)
        acc.transaction_completed(mark, inv, 200, "OK", tag, SRC, T0)

    async def go():
        acc = Accounting(cfg, backends=memory_backends(), clock=lambda: T0)
        await acc.start()
        for n in range(100):
            call(acc, n)
        await settle(acc)
        await asyncio.sleep(0.1)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(1000, 1000 + calls):
                call(acc, n)
            await settle(acc)
            await asyncio.sleep(0.1)  # the journal buffer written out
            gc.collect()
            per_dialog = (tracemalloc.get_traced_memory()[0] - before) / calls
        finally:
            tracemalloc.stop()
        assert acc.stats()["dialogs"] == calls + 100
        await acc.close()
        return per_dialog

    per_dialog = asyncio.run(go())
    print(f"\naccounting: {per_dialog:.0f} bytes per open CDR dialog")
    assert 200 < per_dialog < 2048


def test_events_wait_for_their_batch_keep_their_order_and_survive_a_bad_one(acc_env):
    """The proxy's events are queued and processed in a batch EVENT_BATCH_S later, in order, with
    their own timestamps; reading the state (stats) processes them first; an event that raises
    is logged and the next ones still count."""
    from proxyapp.acc.engine import EVENT_BATCH_S

    cfg, b = acc_env

    class Broken:
        @property
        def method(self):
            raise RuntimeError("a parser bug")

    async def go():
        acc = await _started(cfg, b)
        mark = AccMark.parse("db", "cdr")
        inv = request("INVITE", "q1", "a")
        acc.observe_request(inv, SRC, T0)
        acc.transaction_completed(mark, Broken(), 200, "OK", "b", SRC, T0 + 1)
        acc.transaction_completed(mark, inv, 200, "OK", "b", SRC, T0 + 2)
        waiting = len(acc.tracker)  # not processed yet
        await asyncio.sleep(EVENT_BATCH_S * 4)
        processed = len(acc.tracker)
        bye = request("BYE", "q1", "a", "b", cseq=2)
        acc.observe_request(bye, SRC, T0 + 9)
        acc.transaction_completed(AccMark.parse("db"), bye, 200, "OK", "b", SRC, T0 + 9.5)
        dialogs = acc.stats()["dialogs"]  # processes the BYE first
        await settle(acc)
        await acc.close()
        return waiting, processed, dialogs

    waiting, processed, dialogs = run(go())
    assert (waiting, processed, dialogs) == (0, 1, 0)
    [bye, cdr] = sorted(b["db"].records, key=lambda r: r.kind)
    assert (cdr.kind, cdr.created, cdr.time, cdr.ms_duration) == ("cdr", 1_700_000_000_000, 1_700_000_002_000, 7000)
    assert (bye.kind, bye.method, bye.time) == ("acc", "BYE", 1_700_000_009_500)


def test_events_before_start_are_processed_at_once(acc_env):
    cfg, b = acc_env
    acc = Accounting(cfg, backends=b, clock=lambda: T0)
    acc.observe_request(request("INVITE", "early", "a"), SRC, T0)
    assert acc.tracker._pending  # no loop to batch on: the tracker saw it now
