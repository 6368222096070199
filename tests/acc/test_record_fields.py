"""records.py behaviour the mutation run (mutmut, issue 14) showed untested: id counter, spool line
format, extra-column validation, and what happens when reading a SIP field fails."""

import json
import subprocess
import sys

import pytest
from loguru import logger

from proxyapp.acc.records import AccRecord, ExtraFields, compile_extra, new_record_id, request_fields, split_comment

from .sipfakes import request

LOW80 = (1 << 80) - 1


def test_ids_of_one_process_count_up_by_one_in_their_low_80_bits():
    """new_record_id: a random per-process start plus a counter, so ids made in the same
    millisecond sort in the order they were made (the time prefix orders the rest)."""
    ids = [new_record_id() for _ in range(1000)]
    lows = [int(i, 16) & LOW80 for i in ids]
    assert all((b - a) & LOW80 == 1 for a, b in zip(lows, lows[1:]))


def test_two_processes_draw_different_random_starts():
    code = "from proxyapp.acc.records import new_record_id; print(new_record_id())"
    first = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
             for _ in range(2)]
    assert all(len(i) == 32 for i in first)
    assert int(first[0], 16) & LOW80 != int(first[1], 16) & LOW80  # equal with probability 2**-80


def test_spool_line_format_is_compact_with_sorted_keys():
    """A spool line is what a later version reads back: one compact JSON object, keys sorted
    (stable bytes for the same record, no spaces wasted per spooled record)."""
    r = AccRecord(kind="acc", types=("db",), table=None, method="BYE", from_tag="a", to_tag="b", callid="c",
                  sip_code=200, sip_reason="OK", time=1, extra={"z": "1", "a": None}, record_id="0" * 32)
    assert r.to_json() == (
        '{"callid":"c","created":null,"duration":null,"end_reason":null,"extra":{"a":null,"z":"1"},'
        '"from_tag":"a","kind":"acc","method":"BYE","ms_duration":null,"record_id":"00000000000000000000000000000000",'
        '"setuptime":null,"sip_code":200,"sip_reason":"OK","table":null,"time":1,"to_tag":"b","types":["db"]}'
    )
    # and a line written with other spacing and key order (an older writer) still reads back
    loose = json.dumps(json.loads(r.to_json()), indent=1)
    assert AccRecord.from_json(loose) == r


@pytest.mark.parametrize("col", ["record_id", "end_reason", "id", "callid", "time"])
def test_extra_columns_must_not_clash_with_fixed_ones(col):
    with pytest.raises(ValueError, match=rf"^acc\.extra: column '{col}' clashes with a fixed column$"):
        compile_extra({col: "$si"})


def test_extra_column_errors_name_the_column():
    with pytest.raises(ValueError, match=r"^acc\.extra column 'bad col': 'bad col' is not a valid identifier"):
        compile_extra({"bad col": "$si"})
    with pytest.raises(ValueError, match=r"^acc\.extra\.port: value must be a string like '\$si'"):
        compile_extra({"port": 5060})
    with pytest.raises(ValueError, match=r"^acc\.extra\.x: unsupported pseudo-variable '\$nope'$"):
        compile_extra({"x": " $nope "})


def test_split_comment_keeps_a_multi_line_reason():
    assert split_comment("403 Forbidden\nby policy") == (403, "Forbidden\nby policy")
    assert split_comment("  480  Temporarily Unavailable ") == (480, "Temporarily Unavailable")
    assert split_comment("700 Nope") == (None, "700 Nope")  # not a SIP status class


class _Broken:
    """A request whose From raises what a parser bug would (not a ParseError) and whose To
    raises a ParseError (a ValueError), both only when read, as fastsip's lazy headers do."""

    method = "INVITE"
    call_id = "c-broken"
    uri = None

    @property
    def from_(self):
        raise RuntimeError("parser bug")

    @property
    def to(self):
        raise ValueError("bad To")

    def header(self, name, default=None):
        return {"User-Agent": "ua-1"}.get(name, default)


@pytest.fixture
def warnings_logged():
    seen = []
    sink = logger.add(lambda m: seen.append(m.record), level="WARNING")
    yield seen
    logger.remove(sink)


def test_request_fields_keep_what_can_be_read_and_report_a_parser_bug(warnings_logged):
    assert request_fields(_Broken()) == ("INVITE", None, None, "c-broken")
    # the ParseError is expected (malformed input): silent; the other exception is a bug: said once, with its traceback
    [w] = warnings_logged
    assert w["level"].name == "WARNING" and "parser bug?" in w["message"] and w["exception"] is not None


def test_extra_fields_keep_the_other_columns_and_report_a_parser_bug(warnings_logged):
    spec = {"src_ip": "$si", "from_user": "$fU", "to_user": "$tU", "ua": "$hdr(User-Agent)", "none": "$hdr(X-None)"}
    assert ExtraFields(spec)(_Broken(), ("192.0.2.7", 5060)) == {
        "src_ip": "192.0.2.7", "from_user": None, "to_user": None, "ua": "ua-1", "none": None}
    [w] = warnings_logged
    assert w["level"].name == "WARNING" and "parser bug?" in w["message"] and w["exception"] is not None
    # the guarded getters alone give the same, and a missing value stays None (not "None")
    assert {c: g(_Broken(), ("192.0.2.7", 5060)) for c, g in compile_extra(spec).items()}["none"] is None


def test_request_fields_read_field_by_field_after_a_failure():
    """One unreadable header costs only its own field: the tags of the other are still read."""

    class BrokenFrom(_Broken):
        to = request("BYE", "c", "ft", "tt").to

    class BrokenTo(_Broken):
        from_ = request("BYE", "c", "ft", "tt").from_

    assert request_fields(BrokenFrom()) == ("INVITE", None, "tt", "c-broken")
    assert request_fields(BrokenTo()) == ("INVITE", "ft", None, "c-broken")


def test_request_fields_fast_path_with_missing_from_or_to():
    req = request("OPTIONS", "c-1", "ft")
    req.to = None
    assert request_fields(req) == ("OPTIONS", "ft", None, "c-1")
    req = request("OPTIONS", "c-1", "ft", "tt")
    req.from_ = None
    assert request_fields(req) == ("OPTIONS", None, "tt", "c-1")
