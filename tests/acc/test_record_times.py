"""Millisecond fields round to the nearest ms; whole-second fields floor. Pinned where it matters.

Every time in a record is integer milliseconds (records.py): `time` and `created` are epoch ms,
`setuptime` and `ms_duration` ms, `duration` whole seconds (floor of ms_duration, as OpenSIPS
readers expect). Each timestamp is rounded to the nearest ms once (records.ms), and the durations
are differences of those rounded values, so CDR fields always add up (created + setuptime == time).

Rounding changed to truncation went uncaught (issue 14): every earlier test used timestamps on
whole ms. Here each timestamp has a sub-ms part where round, truncate and ceil give different
results (never an exact half, where Python rounds to even), and each field is checked in a case
where truncation would change it:

    ts fraction   .0006 -> +1 ms   .0004 -> +0 ms   .9996 -> next ms
"""

import asyncio

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark
from proxyapp.acc.records import AccRecord, ms

from .memory import memory_backends, settle
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)
T0 = 1_700_000_000.0


@pytest.fixture
def acc_env(tmp_path):
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 1, "cdr_lifetime_s": 60})
    return cfg, memory_backends()


def run_with(cfg, backends, events):
    async def go():
        acc = Accounting(cfg, backends=backends, clock=lambda: T0)
        await acc.start()
        events(acc)
        await settle(acc)
        await acc.close()

    asyncio.run(go())


def test_ms_rounds_to_the_nearest_millisecond():
    assert ms(None) is None
    assert ms(0.9996) == 1000  # truncation: 999
    assert ms(0.0004) == 0  # ceil: 1
    assert ms(0.0006) == 1  # truncation: 0
    assert ms(T0 + 0.9996) == 1_700_000_001_000  # truncation: ..._000_999
    assert ms(T0 + 0.0004) == 1_700_000_000_000
    assert ms(T0 + 12.3456) == 1_700_000_012_346  # truncation: ..._345
    assert isinstance(ms(T0 + 0.0006), int)


def cdr_of(cfg, b, created, answered, ended):
    """The one CDR of a call: INVITE at `created`, 200 at `answered`, BYE at `ended` (answered 10 ms later)."""

    def events(acc):
        inv = request("INVITE", "call-r", "ft")
        acc.observe_request(inv, SRC, created)
        acc.observe_response(response(inv, 200, "OK", "tt"), answered)
        acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 200, "OK", "tt", SRC, answered)
        bye = request("BYE", "call-r", "ft", "tt", cseq=2)
        acc.observe_request(bye, SRC, ended)
        acc.transaction_completed(None, bye, 200, "OK", "tt", SRC, ended + 0.01)

    run_with(cfg, b, events)
    [r] = b["db"].records
    assert r.kind == "cdr" and r.end_reason == "bye"
    return (r.created, r.time, r.setuptime, r.ms_duration, r.duration)


def test_cdr_created_setuptime_ms_duration_duration_round(acc_env):
    cfg, b = acc_env
    got = cdr_of(cfg, b, created=T0 + 0.0006, answered=T0 + 1.0004, ended=T0 + 10.9996)
    # created rounds up (truncation: ..._000); time stays (ceil: ..._001_001);
    # setuptime 1000 - 1 = 999 (truncation: 1000); ms_duration 11000 - 1000 (truncation: 9999,
    # so duration 9).
    assert got == (1_700_000_000_001, 1_700_000_001_000, 999, 10_000, 10)


def test_cdr_time_rounds_and_duration_floors(acc_env):
    cfg, b = acc_env
    got = cdr_of(cfg, b, created=T0 + 0.0004, answered=T0 + 2.9996, ended=T0 + 12.6004)
    # time (the answer) rounds up to ..._003_000 (truncation: ..._002_999), so setuptime is 3000
    # (truncation: 2999) and ms_duration 12600 - 3000 = 9600 (truncation: 9601); duration is the
    # floor of 9.6 s, 9 (rounding it would give 10).
    assert got == (1_700_000_000_000, 1_700_000_003_000, 3000, 9600, 9)
    # The fields add up, as they would not if each were rounded on its own.
    created, time, setuptime, ms_duration, _ = got
    assert created + setuptime == time


def test_acc_missed_and_request_time_round(acc_env):
    cfg, b = acc_env

    def events(acc):
        inv = request("INVITE", "call-m", "ft")
        acc.observe_request(inv, SRC, T0)
        acc.transaction_completed(AccMark.parse("db", "missed|failed"), inv, 486, "Busy Here", "tt", SRC, T0 + 0.9996)
        acc.db_request(request("MESSAGE", "call-q", "fq"), "403 Forbidden", None, T0 + 5.0004)

    run_with(cfg, b, events)
    got = sorted((r.kind, r.time) for r in b["db"].records)
    assert got == [("acc", 1_700_000_001_000), ("missed", 1_700_000_001_000), ("request", 1_700_000_005_000)]


def test_radius_whole_seconds_floor_the_ms_fields():
    """The RADIUS attributes in seconds are the floor of the ms fields (RFC 2866 Acct-Session-Time
    is whole seconds; rounding would bill a 9.6 s call as 10 s)."""
    from proxyapp.acc.backends.radius import build_attributes

    r = AccRecord(kind="cdr", types=("aaa",), table=None, method="INVITE", from_tag="ft", to_tag="tt", callid="c",
                  sip_code=200, sip_reason="OK", time=1_700_000_002_999, duration=9, ms_duration=9_600,
                  setuptime=1_999, created=1_700_000_000_999, end_reason="bye")
    a = build_attributes(r, AccConfig(), {"INVITE", "BYE"})
    got = {k: a[k] for k in ("Event-Timestamp", "Acct-Session-Time", "Sip-Call-Duration", "Sip-Call-MSDuration",
                              "Sip-Call-Setuptime", "Sip-Call-Created")}
    assert got == {"Event-Timestamp": 1_700_000_002, "Acct-Session-Time": 9, "Sip-Call-Duration": 9,
                   "Sip-Call-MSDuration": 9_600, "Sip-Call-Setuptime": 1, "Sip-Call-Created": 1_700_000_000}
