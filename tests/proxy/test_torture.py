"""The RFC 4475 and RFC 5118 torture messages through the proxy core (corpus/torture.json).

RFC 4475 §3.3 says an element must answer an invalid or insufficient request 400 when it can
address the reply; nothing may make the proxy fail internally (500, or an exception it logs).
"""

from __future__ import annotations

import json
from pathlib import Path

import fastsip
import pytest
from loguru import logger

from .harness import Harness

ROOT = Path(__file__).resolve().parents[2]
TORTURE = json.loads((ROOT / "corpus" / "torture.json").read_text())["messages"]


def _run(entry):
    data = (ROOT / "corpus" / entry["file"]).read_bytes()
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        h = Harness()
        actions = h.rx(data)
    finally:
        logger.remove(sink)
    answers = [fastsip.parse(a.data) for a in actions if hasattr(a, "data") and a.data.startswith(b"SIP/2.0 ")]
    return data, [a.status for a in answers], answers, "\n".join(lines)


@pytest.mark.parametrize("entry", TORTURE, ids=[e["file"] for e in TORTURE])
def test_no_torture_message_makes_the_proxy_fail(entry):
    _, statuses, _, log = _run(entry)
    assert "internal error" not in log and "Traceback" not in log and "routing script failed" not in log, log
    assert 500 not in statuses, log


INSUFFICIENT = [e for e in TORTURE if e["rfc_verdict"] in ("invalid", "insufficient") and e["outcome"] != "ok"]


# Invalid in what a proxy does not read (escaped headers in the Request-URI, a repeated single-value
# header, a REGISTER's Contact for another domain's registrar): forwarded like any request, as a
# proxy may (RFC 4475 §1); fastsip's validate() rejects each (tests/fastsip/test_torture.py).
FORWARDED = ("escruri.sip", "multi01.sip", "regbadct.sip")
# Nothing to answer on: the Via itself is broken, or the message is a response.
UNANSWERABLE = ("badinv01.sip",)


@pytest.mark.parametrize("entry", INSUFFICIENT, ids=[e["file"] for e in INSUFFICIENT])
def test_an_invalid_request_is_answered_400_when_its_via_can_be_read(entry):
    data, statuses, answers, log = _run(entry)
    name = entry["file"].rsplit("/", 1)[1]
    if data.lstrip(b"\r\n").startswith(b"SIP/") or name in UNANSWERABLE:
        assert statuses == [], log
    elif name in FORWARDED:
        assert all(x == 100 for x in statuses), log  # relayed: no final of ours (an INVITE's 100 only)
    elif name == "badvers.sip":
        assert statuses == [505], log  # RFC 4475 §3.1.2.16: 505 Version Not Supported
        assert answers[0].reason.startswith("Version Not Supported - ")
    else:
        assert statuses == [400], log
        assert answers[0].reason.startswith("Bad Request - ")


def test_the_insufficient_request_gets_400_naming_the_missing_headers():
    entry = next(e for e in TORTURE if e["file"].endswith("insuf.sip"))
    _, statuses, answers, _ = _run(entry)
    assert statuses == [400]
    assert answers[0].reason == "Bad Request - missing To, From, Call-ID (at byte 0)"
    assert answers[0].via[0].branch  # it went back on the request's Via


@pytest.mark.parametrize("name", ["unkscm.sip", "novelsc.sip"])
def test_an_unknown_request_uri_scheme_gets_416(name):
    entry = next(e for e in TORTURE if e["file"].endswith(name))
    _, statuses, _, log = _run(entry)
    assert statuses == [416], log  # RFC 3261 §16.3 step 2; RFC 4475 §3.3.2, §3.3.3
