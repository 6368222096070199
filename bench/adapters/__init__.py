"""Per-library adapters: the same three benchmark modes written against each SIP library's real API.

Every adapter module defines:
  DIST              the PyPI distribution name (for the version column)
  minimal(data)     the library's parse call, nothing else
  full(data)        parse, then read FIELDS (a tuple in FIELDS order; None where the library cannot say)
  serialize(data)   parse, apply PROXY_EDITS, return the wire bytes; or None when the library cannot
  NOTES             what it could and could not read, and how the adapter had to reach it

check() compares full()'s tuple with EXPECTED, so a library that is lazy (or wrong) cannot look fast by
skipping work: the table shows how many fields each one really produced.
"""

from __future__ import annotations

import importlib

# lib name on the command line -> adapter module
LIBS = {
    "fastsip-c": "adapters.fastsip_adapter",
    "fastsip-py": "adapters.fastsip_adapter",
    "sippy": "adapters.sippy_adapter",
    "sipmessage": "adapters.sipmessage_adapter",
    "aiosipua": "adapters.aiosipua_adapter",
    "pyvoip": "adapters.pyvoip_adapter",
    "pysipio": "adapters.pysipio_adapter",
    "py-floor": "adapters.floor_adapter",
    "py-handwritten": "adapters.handwritten_adapter",
    "py-checked": "adapters.checked_adapter",
}

FIELDS = (
    "start",  # method, or (status, reason)
    "ruri_user", "ruri_host", "ruri_params",
    "via_transport", "via_host", "via_port", "via_branch", "via_rport",
    "from_user", "from_host", "from_tag",
    "to_user", "to_host", "to_tag",
    "cseq_seq", "cseq_method", "call_id", "max_forwards", "content_length", "body",
)

# The proxy edits of the "serialize" mode (what the seed's OpenSIPS did to the INVITE).
EDIT_VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK07be.cf297d74.0"
EDIT_RR = "<sip:192.0.2.1;lr>"
EDIT_HDR = ("P-hint", "outbound")

_BRANCH_SEED = "z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-"
_CALLID_SEED = "Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA"


def _expected(workloads: dict[str, bytes]) -> dict[str, dict]:
    def body(name: str) -> bytes:
        return workloads[name].partition(b"\r\n\r\n")[2]

    return {
        "seed_invite": dict(
            start="INVITE", ruri_user="2222222222", ruri_host="203.0.113.5", ruri_params={"transport": "udp"},
            via_transport="UDP", via_host="198.51.100.10", via_port=58088, via_branch=_BRANCH_SEED,
            via_rport=True, from_user="8887779996", from_host="198.51.100.7", from_tag="fd542335",
            to_user="2222222222", to_host="203.0.113.5", to_tag=None, cseq_seq=1, cseq_method="INVITE",
            call_id=_CALLID_SEED, max_forwards=70, content_length=286, body=body("seed_invite"),
        ),
        "ok_5via_3rr": dict(
            start=(200, "OK"), ruri_user=None, ruri_host=None, ruri_params=None,
            via_transport="UDP", via_host="192.0.2.40", via_port=5060, via_branch="z9hG4bK4b43c2ff8.1",
            via_rport=None, from_user="8887779996", from_host="198.51.100.7", from_tag="fd542335",
            to_user="2222222222", to_host="203.0.113.5", to_tag="as6151ad25", cseq_seq=1,
            cseq_method="INVITE", call_id=_CALLID_SEED, max_forwards=None,
            content_length=len(body("ok_5via_3rr")), body=body("ok_5via_3rr"),
        ),
        "options_small": dict(
            start="OPTIONS", ruri_user="keepalive", ruri_host="192.0.2.10", ruri_params={},
            via_transport="UDP", via_host="192.0.2.77", via_port=5060, via_branch="z9hG4bK.opt1",
            via_rport=True, from_user="monitor", from_host="192.0.2.77", from_tag="a73kszlfl",
            to_user="keepalive", to_host="192.0.2.10", to_tag=None, cseq_seq=63104, cseq_method="OPTIONS",
            call_id="1j9FpLxk3uxtm8tn@192.0.2.77", max_forwards=70, content_length=0, body=b"",
        ),
    }


def _norm(v):
    """Compare values across libraries: numbers and strings by text, params as a lower-cased dict."""
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, tuple):
        return tuple(_norm(x) for x in v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):  # sippy: ["name=value", "flag"]
        return {x.partition("=")[0].lower(): (x.partition("=")[2] or None) for x in v}
    if hasattr(v, "items"):
        return {str(k).lower(): (None if x is None else str(x)) for k, x in v.items()}
    return str(v)


def check(workload: str, workloads: dict[str, bytes], got: tuple) -> dict[str, list[str]]:
    """Return {"ok": [...], "wrong": [...], "missing": [...]} field names for one full() result."""
    exp = _expected(workloads)[workload]
    res: dict[str, list[str]] = {"ok": [], "wrong": [], "missing": []}
    for name, value in zip(FIELDS, got):
        want = exp[name]
        if want is None and value is None:
            res["ok"].append(name)
        elif value is NOT_READ:
            res["missing"].append(name)
        elif isinstance(want, bytes) and isinstance(value, str):
            (res["ok"] if value.encode() == want else res["wrong"]).append(name)
        elif _norm(value) == _norm(want):
            res["ok"].append(name)
        else:
            res["wrong"].append(f"{name}={value!r}")
    return res


class _NotRead:
    """Marker for a field the library offers no way to read."""

    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ = _NotRead()


def load(lib: str):
    """Import the adapter for lib (raises ImportError when the library is not installed)."""
    mod = importlib.import_module(LIBS[lib])
    if hasattr(mod, "select"):
        mod.select(lib)
    return mod
