"""The pure-Python yardsticks of bench/ stay what bench/README.md says they are.

`py-checked` (bench/adapters/checked_adapter.py) is quoted as the least a full parse of the seed
INVITE can cost under issue 15's contract: fastsip-py's checks and value objects, inlined. That
claim holds only while it reads the same 21 fields as fastsip-py and refuses what fastsip-py's
checks refuse, so both are pinned here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastsip import _parser_py
from fastsip.errors import ParseError

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import adapters  # noqa: E402
import workloads  # noqa: E402
from adapters import checked_adapter, fastsip_adapter  # noqa: E402

WORKLOADS = workloads.load()
SEED = WORKLOADS["seed_invite"]


@pytest.fixture(autouse=True)
def _pure_python_fastsip():
    previous = fastsip_adapter.parse
    fastsip_adapter.select("fastsip-py")
    yield
    fastsip_adapter.parse = fastsip_adapter.minimal = previous


@pytest.mark.parametrize("name", ["seed_invite", "options_small"])
def test_checked_reads_what_fastsip_py_reads(name: str) -> None:
    data = WORKLOADS[name]
    got = checked_adapter.full(data)
    assert got == fastsip_adapter.full(data)
    assert adapters.check(name, WORKLOADS, got) == {"ok": list(adapters.FIELDS), "wrong": [], "missing": []}


def test_checked_refuses_other_shapes() -> None:
    with pytest.raises(checked_adapter.NotSeedShape):
        checked_adapter.full(WORKLOADS["ok_5via_3rr"])  # a response, with five Vias


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Max-Forwards: 70", b"Max-Forwards: 256"),  # above 255
        (b"198.51.100.10:58088;branch", b"198.51.100.10:65536;branch"),  # Via port out of range
        (b";rport\r\n", b";rport=70000\r\n"),  # rport out of range
        (b"CSeq: 1 INVITE", b"CSeq: 2147483648 INVITE"),  # above 2**31 - 1
        (b"Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA", b"Call-ID:"),  # empty
        (b"Content-Length: 286", b"Content-Length: 287"),  # more than the body
        (b"Supported: replaces", b"Supp@rted: replaces"),  # a header name that is no token
        (b"To: <sip:2222222222@203.0.113.5>", b"To: <sip:2222222222@203.0.113.5"),  # no ">"
    ],
)
def test_checked_refuses_what_fastsip_py_refuses(old: bytes, new: bytes) -> None:
    assert SEED.count(old) == 1
    data = SEED.replace(old, new)
    with pytest.raises(ParseError):
        fastsip_adapter.full(data)
    with pytest.raises(checked_adapter.NotSeedShape):
        checked_adapter.full(data)


def test_checked_uses_fastsip_py_regexes() -> None:
    # The floor is only a floor of fastsip-py's own checks while the regexes are the same objects.
    assert checked_adapter._URI is _parser_py._FAST_URI_RE
    assert checked_adapter._VIA is _parser_py._FAST_VIA_RE
    assert checked_adapter._NAME_ADDR is _parser_py._FAST_NAME_ADDR_RE
    assert checked_adapter._CSEQ is _parser_py._FAST_CSEQ_RE
    assert checked_adapter._REQUEST_LINE is _parser_py._FAST_REQUEST_LINE_RE
