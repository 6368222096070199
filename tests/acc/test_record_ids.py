"""Record ids pinned to literal values: they are the deduplication key, across restarts and versions.

Backends drop a record whose record_id they already hold (schema.py), and a CDR regenerated from
the dialog journal after a restart, or an acc record replayed from a spool written by an older
release, is only dropped if it gets the very same id again. So these expected ids were computed
once (by the code of issue 14's time, cross-checked with uuid.uuid5) and MUST NEVER CHANGE: a test
failing here means duplicated rows in every deployment that upgrades. Do not "fix" the literals.

Comparing ids with the function that makes them (as the other tests do) cannot see a change of
field order, separator or namespace; literals can.
"""

import asyncio
import time

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark
from proxyapp.acc.engine import cdr_record_id
from proxyapp.acc.records import KIND_ACC, KIND_CDR, KIND_MISSED, KIND_REQUEST, KINDS

from .memory import memory_backends, settle
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)
T0 = 1_700_000_000.0
# RFC 3261 §24.2's example dialog.
CALLID = "a84b4c76e66710@pc33.atlanta.com"
CALLER = "1928301774"
CALLEE = "a6c85cf"

# uuid5(6f1c6a4e-2f57-4d0b-9a49-3c1f1b0c4acc, Call-ID US caller tag US callee tag)  (US = \x1f)
CDR_ID = "753b59356579532982bbfdc1cabcf950"
# uuid5(0b9d1a8e-6c2f-4a51-8d0e-1f5a3c7e9acc, Call-ID US From tag US CSeq number US method US status)
ACC_INVITE_200 = "fc2406be41985cec88408d3e74f4e48c"  # CALLID, CALLER, 1, INVITE, 200 (RADIUS Start)
ACC_BYE_200 = "396593727a7e59288845068c4a8f1d53"  # CALLID, CALLER, 2, BYE, 200
ACC_BYE_FROM_CALLEE = "369ac1be287b5e3983550366c2fc8a73"  # CALLID, CALLEE, 7, BYE, 200
ACC_INVITE_486 = "473214617df65e84996f7ae70b3f3e14"  # CALLID, CALLER, 1, INVITE, 486
ACC_NO_FROM_TAG = "36512b40bdbe52098861a95581c84281"  # "call-ü", "", 3, MESSAGE, 404


@pytest.fixture
def acc_env(tmp_path):
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "cdr_lifetime_s": 60})
    return cfg, memory_backends()


def run_with(cfg, backends, events):
    """Start a real engine on in-memory backends, feed events(acc), settle, close."""

    async def go():
        acc = Accounting(cfg, backends=backends, clock=lambda: T0)
        await acc.start()
        events(acc)
        await settle(acc)
        await acc.close()

    asyncio.run(go())


def answered_call(acc, bye_from_callee=False):
    inv = request("INVITE", CALLID, CALLER)
    acc.observe_request(inv, SRC, T0)
    acc.observe_response(response(inv, 200, "OK", CALLEE), T0 + 1)
    acc.transaction_completed(AccMark.parse("db|aaa", "cdr"), inv, 200, "OK", CALLEE, SRC, T0 + 1)
    acc.observe_request(request("ACK", CALLID, CALLER, CALLEE), SRC, T0 + 1.1)
    if bye_from_callee:
        bye = request("BYE", CALLID, CALLEE, CALLER, cseq=7, swap=True)
    else:
        bye = request("BYE", CALLID, CALLER, CALLEE, cseq=2)
    acc.observe_request(bye, SRC, T0 + 5)
    acc.transaction_completed(AccMark.parse("db"), bye, 200, "OK", bye.to.tag, SRC, T0 + 5.01)


def test_every_kind_is_covered_here():
    # acc and cdr ids are derived (pinned below); missed and request ids are random by design
    # (two forks of one INVITE failing alike are two missed calls, not one replayed twice).
    assert KINDS == (KIND_ACC, KIND_MISSED, KIND_CDR, KIND_REQUEST)


def test_cdr_record_id_literals():
    dialog = lambda c, a, b: type("Dialog", (), {"callid": c, "caller_tag": a, "callee_tag": b})()  # noqa: E731
    assert cdr_record_id(dialog(CALLID, CALLER, CALLEE)) == CDR_ID
    assert cdr_record_id(dialog("call-1", "ft1", "tt1")) == "2ad82bd3d95b503a8229d075eec6b760"
    assert cdr_record_id(dialog("é日本@x", "", "b")) == "e9fa5ed8042c5843b551b9de6c020936"  # UTF-8 encoded
    assert cdr_record_id(dialog("call-ü", "x", "y")) == "2044b8ab0bd9536682da53d15cbf5c6c"


@pytest.mark.parametrize("bye_from_callee", [False, True], ids=["caller-hangs-up", "callee-hangs-up"])
def test_answered_call_ids(acc_env, bye_from_callee):
    cfg, b = acc_env
    run_with(cfg, b, lambda acc: answered_call(acc, bye_from_callee))
    # The CDR id depends on the dialog only, not on who hung up.
    by_kind = {(r.kind, r.method): r.record_id for r in b["db"].records}
    assert by_kind == {("cdr", "INVITE"): CDR_ID, ("acc", "BYE"): ACC_BYE_FROM_CALLEE if bye_from_callee else ACC_BYE_200}
    # RADIUS: the Start (the answered INVITE, an acc record) and the Stop (the CDR).
    assert [(r.kind, r.record_id) for r in b["aaa"].records] == [("acc", ACC_INVITE_200), ("cdr", CDR_ID)]


def test_failed_invite_acc_id_is_pinned_missed_id_is_fresh(acc_env):
    cfg, b = acc_env
    before = int(time.time() * 1000)

    def events(acc):
        inv = request("INVITE", CALLID, CALLER)
        acc.observe_request(inv, SRC, T0)
        for _ in range(2):  # the same transaction reported twice: one acc row, two missed rows
            acc.transaction_completed(AccMark.parse("db", "missed|failed"), inv, 486, "Busy Here", CALLEE, SRC, T0 + 3)

    run_with(cfg, b, events)
    after = int(time.time() * 1000)
    acc = [r.record_id for r in b["db"].records if r.kind == "acc"]
    missed = [r.record_id for r in b["db"].records if r.kind == "missed"]
    assert acc == [ACC_INVITE_486]
    assert len(missed) == 2 and missed[0] != missed[1]
    for rid in missed:  # records.new_record_id: 48 bits of epoch ms at creation, then 80 bits
        assert len(rid) == 32 and before <= int(rid[:12], 16) <= after


def test_acc_id_without_from_tag_and_with_non_ascii_call_id(acc_env):
    cfg, b = acc_env

    def events(acc):
        msg = request("MESSAGE", "call-ü", None, cseq=3)
        acc.transaction_completed(AccMark.parse("db", "failed"), msg, 404, "Not Found", None, SRC, T0)

    run_with(cfg, b, events)
    assert [(r.kind, r.from_tag, r.record_id) for r in b["db"].records] == [("acc", None, ACC_NO_FROM_TAG)]


def test_acc_id_falls_back_to_a_fresh_one_without_a_cseq(acc_env):
    cfg, b = acc_env
    before = int(time.time() * 1000)

    def events(acc):
        msg = request("MESSAGE", CALLID, CALLER, cseq=3)
        msg.cseq = None  # nothing to derive the transaction from: a random id, never a shared one
        for _ in range(2):
            acc.transaction_completed(AccMark.parse("db"), msg, 200, "OK", "x", SRC, T0)

    run_with(cfg, b, events)
    after = int(time.time() * 1000)
    ids = [r.record_id for r in b["db"].records]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(len(i) == 32 and before <= int(i[:12], 16) <= after for i in ids)


def test_request_record_ids_are_fresh(acc_env):
    cfg, b = acc_env
    before = int(time.time() * 1000)

    def events(acc):
        msg = request("MESSAGE", CALLID, CALLER, cseq=3)
        for _ in range(2):  # acc_db_request / acc_log_request twice: two records each
            acc.db_request(msg, "403 Forbidden", None, T0)
            acc.log_request(msg, "403 Forbidden", T0)

    run_with(cfg, b, events)
    after = int(time.time() * 1000)
    for name in ("db", "log"):
        ids = [r.record_id for r in b[name].records]
        assert [r.kind for r in b[name].records] == ["request", "request"]
        assert ids[0] != ids[1] and all(before <= int(i[:12], 16) <= after for i in ids)
