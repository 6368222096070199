"""Fast paths of the pure-Python backend give exactly what its exact scanners give.

Every ``_fast_*`` function and ``_FAST_*_RE`` regex in ``fastsip._parser_py`` takes only
inputs on which it matches the exact scanner; it returns None (or takes nothing) for the
rest, and the exact scanner then decides, errors included. Here each fast path is called
directly and compared with the exact path, run with every fast path switched off, on:
every header value of the corpus, hand-made values on the boundaries (quotes, escapes,
IPv6, upper-case and repeated param names, whitespace, empty values, big numbers), and
hypothesis strings built from those pieces. Whole messages (corpus, invalid corpus,
mutations) must also give the same snapshot, errors, offsets and edited bytes either way.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsip import _parser_py as py
from fastsip.errors import ParseError

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = sorted((ROOT / "corpus" / "valid").glob("*.sip")) + sorted((ROOT / "corpus" / "invalid").glob("*.sip"))
MESSAGES += sorted((ROOT / "bench" / "workloads").glob("*.sip"))
_NEVER = re.compile(rb"(?!)")


@contextlib.contextmanager
def exact_only() -> Iterator[None]:
    """Switch every fast path of the module off: what remains is the exact scanner."""
    saved = {name: getattr(py, name) for name in (
        "_fast_uri", "_fast_via", "_fast_name_addr", "_fast_cseq", "_fast_header_lines", "_FAST_REQUEST_LINE_RE",
        "_FAST_STATUS_LINE_RE", "_light_headers",
    )}
    py._fast_uri = lambda s: None
    py._fast_via = lambda s: None
    py._fast_name_addr = lambda s: None
    py._fast_cseq = lambda s: None
    py._fast_header_lines = lambda data, pos, max_headers: ([], pos)
    py._light_headers = lambda data, pos, he, max_headers: None
    py._FAST_REQUEST_LINE_RE = _NEVER
    py._FAST_STATUS_LINE_RE = _NEVER
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(py, name, value)


def plain(obj: Any) -> Any:
    """Value objects as plain data, with types and dict order (== on dicts ignores order)."""
    if isinstance(obj, dict):
        return ("dict", [(plain(k), plain(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [plain(v) for v in obj])
    if isinstance(obj, (py.SipURI, py.AbsoluteURI)):
        return (type(obj).__name__, str(obj), plain(obj.scheme), plain(obj.user), plain(obj.password),
                plain(obj.host), plain(obj.port), plain(obj.params), plain(obj.headers))
    if isinstance(obj, py.Via):
        return ("Via", plain(obj.protocol), plain(obj.transport), plain(obj.host), plain(obj.port),
                plain(obj.params), attempt(lambda: obj.rport), attempt(lambda: obj.ttl), obj.sent_by)
    if isinstance(obj, py.NameAddr):
        return ("NameAddr", plain(obj.display), plain(obj.uri), plain(obj.params), obj.wildcard)
    if isinstance(obj, py.CSeq):
        return ("CSeq", plain(obj.seq), plain(obj.method))
    return (type(obj).__name__, obj)


def attempt(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", plain(fn()))
    except ParseError as exc:
        return ("err", type(exc).__name__, exc.offset, str(exc), getattr(exc, "header", None))
    except Exception as exc:  # noqa: BLE001 -- must be equal too
        return ("exc", type(exc).__name__, str(exc))


# --- the fast value parsers against the exact ones ------------------------------------


def exact_uri(s: str) -> Any:
    with exact_only():
        return attempt(lambda: py._parse_uri(s, 0))


def exact_via(s: str) -> Any:
    out: list = []
    with exact_only():
        return attempt(lambda: (py._parse_vias(s, 0, out), out)[1])


def exact_name_addr(s: str, multi: bool) -> Any:
    out: list = []
    with exact_only():
        return attempt(lambda: (py._parse_name_addrs(s, 0, "To", multi, out), out)[1])


def exact_cseq(s: str) -> Any:
    with exact_only():
        return attempt(lambda: py._parse_cseq(s, 0))


def check_value(s: str) -> None:
    """Whatever a fast parser takes, the exact one parses to the same (and no fast parser raises)."""
    uri = py._fast_uri(s)
    if uri is not None:
        assert ("ok", plain(uri)) == exact_uri(s), s
    via = py._fast_via(s)
    if via is not None:
        assert ("ok", plain([via])) == exact_via(s), s
    na = py._fast_name_addr(s)
    if na is not None:
        for multi in (False, True):
            assert ("ok", plain([na])) == exact_name_addr(s, multi), s
    cseq = py._fast_cseq(s)
    if cseq is not None:
        assert ("ok", plain(cseq)) == exact_cseq(s), s
    # The public entry points give the same with and without fast paths, errors included.
    assert attempt(lambda: py._parse_uri(s, 0)) == exact_uri(s), s
    out: list = []
    assert attempt(lambda: (py._parse_vias(s, 0, out), out)[1]) == exact_via(s), s
    for multi in (False, True):
        out = []
        assert attempt(lambda: (py._parse_name_addrs(s, 0, "To", multi, out), out)[1]) == exact_name_addr(s, multi), s
    assert attempt(lambda: py._parse_cseq(s, 0)) == exact_cseq(s), s


def corpus_values() -> list[str]:
    values: set[str] = set()
    for path in MESSAGES:
        try:
            msg = py.parse(path.read_bytes())
        except ParseError:
            continue
        values.update(value for _, value in msg.headers.items())
        if msg.is_request:
            values.add(msg.raw_uri)
    return sorted(values)


CORPUS_VALUES = corpus_values()

BOUNDARY_VALUES = [
    "", " ", "sip:a@b", "sip:a@b ", " sip:a@b", "SIP:A@B", "sIpS:u:pw@h:5061;Transport=TCP;LR",
    "sip:u:@h", "sip::pw@h", "sip:@h", "sip:h:", "sip:h:65535", "sip:h:65536", "sip:h:123456", "sip:h:0",
    "sip:h;lr;lr=1", "sip:h;a=1;A=2", "sip:h;a=", "sip:h;=1", "sip:h;a=[::1]", "sip:h;a=b[c", "sip:h;a=%41",
    "sip:%41@h", "sip:%4@h", "sip:u@[::1]:5060", "sip:[::1]", "sip:h?x=1", "sip:h;x=a@b", "sip:a;b@h",
    "sip:a,b@h", "sip:h;a=b,c", "sip:h;a=é", "sip:é@h", "sip:h.example.com.;maddr=1.2.3.4",
    "tel:+1-555;phone-context=x", "sips:h", "sip:a@b;tag=1", "sip:h;;a",
    "SIP/2.0/UDP h", "SIP/2.0/udp h:5060;branch=z9hG4bK1;rport", "SIP/2.0/UDP h;rport=5060;RPORT=1",
    "SIP/2.0/UDP h;rport=65536", "SIP/2.0/UDP h;rport=x", "SIP/2.0/UDP h;rport=00001", "SIP/2.0/UDP h;rport=000001",
    "SIP/2.0/UDP h;ttl=255", "SIP/2.0/UDP h;ttl=256", "SIP/2.0/UDP h;ttl=0010", "SIP/2.0/UDP h;TTL=1;ttl=300",
    "SIP/2.0/UDP h;branch=a;Branch=b", "SIP/2.0/UDP [2001:db8::1]:5060", "SIP/2.0 / UDP h", "SIP/2.0/UDP\th",
    "SIP/2.0/UDP  h ; branch=1", "SIP/2.0/UDP h, SIP/2.0/TCP g", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h:",
    "SIP/2.0/UDP h;received=[::1]", 'SIP/2.0/UDP h;x="a;b"', "SIP/2.0/UDP h;x=", "SIP/2.0/UDPh", "a/b/c d",
    "SIP/2.0/UDP h;rport=²", "SIP/2.0/UDP h;ttl=١",
    "<sip:a@b>", "<sip:a@b>;tag=1", "<sip:a@b>;TAG=1;tag=2", '"Alice" <sip:a@b>;tag=x', '"" <sip:a@b>',
    '"A\\"B" <sip:a@b>', '"A,B" <sip:a@b>', "Alice Smith <sip:a@b>", "Alice\t <sip:a@b>", "Alice<sip:a@b>",
    "<sip:a@b>,<sip:c@d>", "<sip:a@b;lr>", "<sip:a@b?x=y>", "<sip:[::1]>", "<tel:+1>", "sip:a@b;tag=1",
    "<sip:a@b> ;tag=1", "<sip:a@b>;tag", "<sip:a@b>;tag=", '<sip:a@b>;x="1"', "<sip:a@b>;+sip.instance=x",
    "<sip:a@b", "<>", "*", "\"unterminated <sip:a@b>", "A.B-c <sip:a@b>;q=0.5",
    "1 INVITE", "0 ACK", "2147483647 BYE", "2147483648 BYE", "12345678901 BYE", "1  INVITE", "1\tINVITE",
    "1INVITE", "1 INVITE ", "01 invite", "١ INVITE", "1 IN VITE", "-1 INVITE",
]

PIECES = [
    "sip:", "sips:", "SIP:", "tel:", "u", "alice", "@", ":", ";", "=", "<", ">", '"', "\\", "[", "]", "::1",
    ",", " ", "\t", "%", "%41", "?", "&", "rport", "RPORT", "ttl", "tag", "TAG", "branch", "lr", "5060",
    "65535", "65536", "99999", "2147483648", "h", "example.com", "1.2.3.4", "SIP/2.0/UDP ", "SIP", "/", "2.0",
    "UDP", "é", "²", "x", "-", ".", "!", "*", "'", "~", "+", "`", "$", "(", ")", "1", "0",
]


@pytest.mark.parametrize("value", CORPUS_VALUES)
def test_corpus_values(value: str) -> None:
    check_value(value)


@pytest.mark.parametrize("value", BOUNDARY_VALUES)
def test_boundary_values(value: str) -> None:
    check_value(value)


def test_fast_paths_take_the_common_shapes() -> None:
    """The fast paths are not vacuous: the seed's values go through them."""
    assert py._fast_uri("sip:2222222222@203.0.113.5;transport=udp") is not None
    assert py._fast_via("SIP/2.0/UDP 198.51.100.10:58088;branch=z9hG4bK-d8754z-1;rport") is not None
    assert py._fast_name_addr("<sip:8887779996@198.51.100.7>;tag=fd542335") is not None
    assert py._fast_name_addr('"Bob" <sip:b@h>') is not None
    assert py._fast_cseq("1 INVITE") is not None
    seed = (ROOT / "bench" / "workloads" / "seed_invite.sip").read_bytes()
    pos = seed.index(b"\n") + 1
    fields, end = py._fast_header_lines(seed, pos, 256)
    assert len(fields) == 12 and seed[end : end + 2] == b"\r\n"
    keys, first = py._light_headers(seed, pos, end - 2, 256)
    assert len(keys) == 12 and first["cseq"] == "1 INVITE" and first["content-length"] == "286"
    msg = py.parse(seed)
    assert msg._fl is None  # parse() took the header index; the fields wait for an edit
    msg.via, msg.from_, msg.to, msg.cseq, msg.call_id, msg.max_forwards, msg.content_length  # noqa: B018
    assert msg._fl is None  # and the accessors did not need them
    assert py._FAST_REQUEST_LINE_RE.match(seed) is not None
    ok = (ROOT / "bench" / "workloads" / "ok_5via_3rr.sip").read_bytes()
    assert py._FAST_STATUS_LINE_RE.match(ok) is not None


START_LINES = [
    b"SIP/2.0 200 OK", b"SIP/2.0 200", b"SIP/2.0 200 ", b"SIP/2.0 200  x", b"SIP/2.0 2000 OK", b"SIP/2.0 099 x",
    b"SIP/2.0 700 x", b"SIP/2.0 20 x", b"sip/2.0 200 OK", b"SIP/2.1 200 OK", b"SIP/2.0 200 O\tK", b"SIP/2.0 200 O\rK",
    b"SIP/2.0 200 \xc3\xa9\xff", b"SIP/2.0  200 OK", b"SIP/2.0 200 OK\r", b"SIP/2.0 200 O\x00K", b"SIP/2.0 200 O\x7fK",
    b"INVITE sip:a@b SIP/2.0", b"INVITE sip:a@b sip/2.0", b"INVITE  sip:a@b SIP/2.0", b"INVITE sip:a@b SIP/2.0 ",
    b"INVITE sip:a\tb SIP/2.0", b"INVITE sip:\xff SIP/2.0", b"INV@TE sip:a@b SIP/2.0", b"SIP sip:a@b SIP/2.0",
    b"INVITE sip:a b SIP/2.0", b"INVITE sip:a@b SIP/2.0\r", b"x y SIP/2.0",
]


@pytest.mark.parametrize("line", START_LINES)
@pytest.mark.parametrize("end", [b"\r\n", b"\n"])
def test_start_lines(line: bytes, end: bytes) -> None:
    both(line + end + b"Via: SIP/2.0/UDP h\r\n\r\n")


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_pieces(value: str) -> None:
    check_value(value)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(CORPUS_VALUES + BOUNDARY_VALUES), st.integers(0, 200), st.sampled_from(PIECES + [""]),
       st.integers(0, 3))
def test_mutated_values(value: str, pos: int, piece: str, drop: int) -> None:
    pos = min(pos, len(value))
    check_value(value[:pos] + piece + value[pos + drop :])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=40))
def test_any_text(value: str) -> None:
    check_value(value)
    check_value("sip:" + value)
    check_value("SIP/2.0/UDP h;" + value)
    check_value("<sip:a@b>;" + value)


# --- whole messages: framing fast paths and the value fast paths behind the accessors -----


def snapshot(msg: Any) -> Any:
    s: dict = {"type": type(msg).__name__, "bytes": bytes(msg), "repr": repr(msg)}
    if msg.is_request:
        s["start"] = (msg.method, msg.version, msg.raw_uri, attempt(lambda: msg.uri))
    else:
        s["start"] = (msg.status, msg.reason, msg.version)
    s["headers"] = msg.headers.items()
    s["fields"] = [tuple(f) for f in msg._fields]
    for name in ("via", "from_", "to", "contact", "route", "record_route", "cseq", "call_id", "max_forwards",
                 "content_length", "content_type", "body"):
        s[name] = attempt(lambda name=name: getattr(msg, name))
    return s


EDITS = (
    ("insert_header", ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")),
    ("set_via_param", ("received", "1.2.3.4")),
    ("set_via_param", ("rport", "5060")),
    ("set_header", ("Max-Forwards", "69")),
    ("set_header", ("To", "<sip:new@h>;tag=9")),
    ("set_header", ("From", ' "x" <sip:f@h>;tag=1 ')),
    ("append_header", ("X-Proxy", "fastsip")),
    ("pop_via", ()),
    ("remove_header", ("Contact",)),
    ("set_body", (b"abc",)),
)


def both(data: bytes, **kw: Any) -> None:
    def run() -> Any:
        try:
            msg = py.parse(data, **kw)
        except ParseError as exc:
            return ("err", type(exc).__name__, exc.offset, str(exc))
        out = [snapshot(msg)]
        for name, args in EDITS:
            out.append(attempt(lambda: getattr(msg, name)(*args)) if name != "pop_via" else
                       attempt(lambda: msg.pop_via() and None))
            out.append(snapshot(msg))
        return out

    fast = run()
    with exact_only():
        exact = run()
    assert fast == exact, data


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_messages(path: Path) -> None:
    data = path.read_bytes()
    both(data)
    both(data, max_headers=3)
    both(data.replace(b"\r\n", b"\n"))
    for n in range(0, len(data), 7):
        both(data[:n])


MESSAGE_BYTES = [p.read_bytes() for p in MESSAGES]


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(MESSAGE_BYTES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(("flip", "insert", "delete", "special")))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 3))]
        else:
            data[pos:pos] = draw(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n ", b"\n\n", b":",
                                                  b";", b",", b"<", b'"', b"[", b"@", b"%", b"\xff", b"\r\r\n"]))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    both(data)
    both(data, max_headers=5)
