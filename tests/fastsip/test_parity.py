"""Parity: the Cython backend gives exactly the reference's results, attribute by attribute.

Every corpus message, and hypothesis mutations of them (byte flips, insertions,
deletions, truncations, duplicated lines), must give equal snapshots from both
backends: the same value for every public attribute or the same exception class,
offset and message, since parsing is lazy and each attribute may fail on its own.
The same edits are then applied to both and compared again.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from fastsip import _parser_py as py_impl
from fastsip.errors import ParseError

c_impl = pytest.importorskip("fastsip._parser_c", reason="compiled backend not built")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"
WORKLOADS = ROOT / "bench" / "workloads"


def _files() -> list[Path]:
    out: list[Path] = []
    for sub in ("valid", "invalid"):
        d = CORPUS / sub
        if d.is_dir():
            out.extend(sorted(p for p in d.iterdir() if p.is_file() and p.suffix == ".sip"))
    if WORKLOADS.is_dir():
        out.extend(sorted(WORKLOADS.glob("*.sip")))
    return out


FILES = _files()

# Hand-written messages that reach corners the corpus may not: folding, compact
# forms, comma-joined values, IPv6, tel: URIs, quoted display names, bad values.
EXTRA = [
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP h2;received=1.2.3.4\r\n"
    b"Via: SIP/2.0/UDP a.b;ttl=4;maddr=1.1.1.1\r\n"
    b"f: \"Alice \\\"A\\\"\" <sip:alice@a.com;transport=TCP>;tag=1\r\n"
    b"t: Bob <tel:+1-555;phone-context=x>\r\n"
    b"i: abc@h\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Max-Forwards: 70\r\n"
    b"m: <sip:a@b:5070>;expires=3, sip:c@d\r\n"
    b"Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
    b"Record-Route: <sip:rr;lr>\r\n"
    b"Subject: folded\r\n  over two lines\r\n"
    b"X-Empty:\r\n"
    b"Timestamp: 12\r\n"
    b"c: text/plain\r\n"
    b"l: 5\r\n\r\nhello",
    b"\r\n\r\nSIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h;branch=x\nTo: <sip:a@b>\nFrom: sip:c@d;tag=2\n"
    b"Contact: *\nCSeq: 2 BYE\nCall-ID: x\n\nbody",
    b"OPTIONS sips:u:pw@h:5061;a=b?X=1&Y=2 SIP/2.0\r\nVia: SIP/2.0/TLS h\r\nMax-Forwards: 300\r\n"
    b"CSeq: 99999999999 OPTIONS\r\nCall-ID:\r\nContent-Length: 0\r\n\r\n",
    b"MESSAGE urn:x:y SIP/2.0\r\nVia: SIP/2.0/UDP h:99999\r\nFrom: <sip:%zz@h>\r\nTo: x <sip:a@[::1]>\r\n\r\n",
    # Whitespace-only continuation lines fold into the one LWS; rport/ttl errors in a later via-parm.
    b"BYE sip:a@b SIP/2.0\r\nSubject: a \r\n \t\r\n\t\r\n  b\r\nVia: SIP/2.0/UDP a;branch=1,\r\n   \r\n  "
    b"SIP/2.0/UDP b;rport=70000\r\nVia: SIP/2.0/UDP c, SIP/2.0/TCP d;ttl=x\r\nContent-Length:\r\n  \r\n 0\r\n\r\n",
    b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP c, SIP/2.0/TCP d;ttl=256;rport\r\n\r\n",
]

EDITS = (
    ("insert_header", ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")),
    ("insert_header", ("Record-Route", "<sip:10.0.0.1;lr>")),
    ("set_header", ("Max-Forwards", "69")),
    ("append_header", ("X-Proxy", "fastsip")),
    ("set_header", ("to", "<sip:new@h>;tag=9")),
    ("remove_header", ("Contact",)),
    ("remove_header", ("X-Unknown",)),
    ("pop_via", ()),
    ("pop_route", ()),
    ("set_via_param", ("received", "192.0.2.1")),
    ("set_via_param", ("rport", "5062")),
    ("set_via_param", ("branch", "z9hG4bKx", 1)),
    ("set_uri", ("sip:changed@example.org;lr",)),
    ("set_body", (b"v=0\r\n", "application/sdp")),
    ("set_body", (b"",)),
    ("append_header", ("X-\u00dc", "wert \u00e9")),
    ("set_header", ("\u212a", "kelvin")),
    ("set_header", ("CALL-ID", "new-id")),
    ("remove_header", ("l",)),
    ("set_header", ("Via", "SIP/2.0/UDP \u00e9h")),
    ("set_header", (b"Via", "x")),
    ("set_via_param", ("ttl", None, -1)),
    ("set_via_param", ("maddr", "h", 99)),
    ("set_header", ("Content-Length", "1_0")),
    ("set_header", ("l", "\u0661")),
    ("set_header", ("Content-Length", "12345678901")),
    ("set_header", ("Content-Length", " 7")),
)


def _uri(u: object) -> object:
    if u is None:
        return None
    d = {k: getattr(u, k) for k in ("scheme", "user", "password", "host", "port", "params", "headers")}
    d["str"] = str(u)
    d["type"] = type(u).__name__
    for k in ("transport", "lr", "maddr", "opaque"):
        if hasattr(u, k):
            d[k] = getattr(u, k)
    return d


def _via(v: object) -> object:
    keys = ("protocol", "transport", "host", "port", "params", "branch", "received", "maddr", "rport", "ttl", "sent_by")
    out = {}
    for k in keys:
        out[k] = _attempt(lambda k=k: getattr(v, k))
    out["repr"] = repr(v)
    return out


def _na(a: object) -> object:
    if a is None:
        return None
    return {
        "display": a.display,  # type: ignore[attr-defined]
        "uri": _uri(a.uri),  # type: ignore[attr-defined]
        "params": a.params,  # type: ignore[attr-defined]
        "tag": a.tag,  # type: ignore[attr-defined]
        "wildcard": a.wildcard,  # type: ignore[attr-defined]
        "repr": repr(a),
    }


def _attempt(fn):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn())
    except ParseError as exc:
        return ("err", type(exc).__name__, exc.offset, str(exc), getattr(exc, "header", None))
    except Exception as exc:  # noqa: BLE001 -- must match too (e.g. ValueError from int())
        return ("exc", type(exc).__name__, str(exc))


def snapshot(msg: object) -> dict:
    m = msg
    s: dict = {}
    s["type"] = type(m).__name__
    s["is_request"] = m.is_request
    if m.is_request:
        s["method"] = m.method
        s["version"] = m.version
        s["raw_uri"] = m.raw_uri
        s["uri"] = _attempt(lambda: _uri(m.uri))
    else:
        s["status"] = m.status
        s["reason"] = m.reason
        s["version"] = m.version
    s["repr"] = repr(m)
    h = m.headers
    s["headers"] = (h.items(), h.keys(), h.values(), len(h), list(h))
    for name in ("via", "v", "From", "CSEQ", "x-empty", "subject", "nope", "Content-Length"):
        s["h:" + name] = (h.get(name), h.getall(name), name in h)
    s["via"] = _attempt(lambda: [_via(v) for v in m.via])
    s["from"] = _attempt(lambda: _na(m.from_))
    s["to"] = _attempt(lambda: _na(m.to))
    for key in ("contact", "route", "record_route"):
        s[key] = _attempt(lambda key=key: [_na(a) for a in getattr(m, key)])
    s["cseq"] = _attempt(lambda: None if m.cseq is None else (m.cseq.seq, m.cseq.method, repr(m.cseq)))
    for key in ("call_id", "max_forwards", "content_length", "content_type", "body"):
        s[key] = _attempt(lambda key=key: getattr(m, key))
    s["validate"] = _attempt(m.validate)
    s["pickled values"] = _attempt(lambda: _pickled_values(m))
    s["bytes"] = bytes(m)
    s["to_bytes"] = m.to_bytes()
    return s


def _pickled_values(m: object) -> list:
    """Value objects survive pickle and copy with every attribute (the C ones keep lazy params)."""
    values = list(m.via) + [m.from_, m.to, m.cseq] + list(m.contact) + list(m.route)  # type: ignore[attr-defined]
    if m.is_request:  # type: ignore[attr-defined]
        values.append(m.uri)  # type: ignore[attr-defined]
    values += [getattr(v, "uri", None) for v in values]
    out = []
    for v in values:
        for dup in (lambda x: pickle.loads(pickle.dumps(x)), copy.copy, copy.deepcopy):
            d = dup(v)
            out.append((repr(d), d == v, _via(d) if type(d).__name__ == "Via" else None))
    return out


def _parse(impl, data: bytes, **kw):  # type: ignore[no-untyped-def]
    try:
        return impl.parse(data, **kw), None
    except ParseError as exc:
        return None, (type(exc), exc.offset, str(exc))


def _response(impl, msg):  # type: ignore[no-untyped-def]
    def build():  # type: ignore[no-untyped-def]
        r = impl.make_response(msg, 200, to_tag="tt", headers=[("Server", "x")], body=b"ok", content_type="text/plain")
        return bytes(r), bytes(impl.make_response(msg, 100)), bytes(impl.make_response(msg, 486, "Busy"))

    return _attempt(build)


def check(data: bytes, edits=EDITS, **kw) -> None:  # type: ignore[no-untyped-def]
    a, ea = _parse(py_impl, data, **kw)
    b, eb = _parse(c_impl, data, **kw)
    assert ea == eb, data
    if a is None:
        return
    assert snapshot(a) == snapshot(b), data
    if a.is_request:
        assert _response(py_impl, a) == _response(c_impl, b)
    # Edits, one after the other, on a copy (the original must not change).
    ca, cb = a.copy(), b.copy()
    for name, args in edits:
        if name == "set_uri" and not ca.is_request:
            continue
        ra = _attempt(lambda: getattr(ca, name)(*args))
        rb = _attempt(lambda: getattr(cb, name)(*args))
        if name in ("pop_via", "pop_route") and ra[0] == rb[0] == "ok":
            ra = ("ok", None if ra[1] is None else repr(ra[1]))
            rb = ("ok", None if rb[1] is None else repr(rb[1]))
        assert ra == rb, (name, data)
        assert snapshot(ca) == snapshot(cb), (name, data)
    if ca.is_request:
        assert _response(py_impl, ca) == _response(c_impl, cb)
    # copy.copy, copy.deepcopy and pickle keep every attribute, edits included.
    for dup in (copy.copy, copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))):
        da, db = dup(ca), dup(cb)
        assert snapshot(da) == snapshot(db) == snapshot(cb)
    assert snapshot(a) == snapshot(b)
    assert bytes(a.copy()) == bytes(b.copy())


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_file(path: Path) -> None:
    check(path.read_bytes())


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_truncations(path: Path) -> None:
    data = path.read_bytes()
    for n in range(len(data) + 1):
        check(data[:n], edits=())


@pytest.mark.parametrize("data", EXTRA)
def test_extra(data: bytes) -> None:
    check(data)
    check(bytearray(data), edits=())
    check(memoryview(data), edits=())
    check(data, edits=(), max_headers=3)
    check(data, edits=(), max_size=40)


SEEDS = [p.read_bytes() for p in FILES] + EXTRA


@st.composite
def mutated(draw):  # type: ignore[no-untyped-def]
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "insert", "delete", "truncate", "dupline", "special")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "special":
            data[pos:pos] = draw(st.sampled_from([b" ", b"\t", b",", b";", b":", b"<", b">", b'"', b"\\", b"\r",
                                                  b"\n", b"\r\n ", b"[", b"]", b"@", b"%", b"=", b"\xff", b"\xc3\xa9"]))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 3))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "dupline":
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, max(len(lines) - 1, 0)))
            lines.insert(k, lines[k])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutations(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check(data, edits=())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=60))
def test_parse_uri(text: str) -> None:
    for prefix in ("", "sip:", "sip:u@", "tel:", "sips:a:b@[::1]:5;"):
        a = _attempt(lambda: _uri(py_impl.parse_uri(prefix + text)))
        b = _attempt(lambda: _uri(c_impl.parse_uri(prefix + text)))
        assert a == b


def test_plain_fields_are_member_descriptors() -> None:
    """The C value objects expose plain fields as members (CPython specializes those loads);
    they stay writable, and deleting one is refused so no field is ever NULL."""
    msg = c_impl.parse(EXTRA[0])
    objects = [msg, msg.uri, msg.via[0], msg.from_, msg.cseq]
    for obj, names in zip(objects, (("method", "version"), ("scheme", "user", "password", "host", "port"),
                                    ("protocol", "transport", "host", "port"), ("display", "uri", "wildcard"),
                                    ("seq", "method"))):
        for name in names:
            assert type(type(obj).__dict__[name]).__name__ == "member_descriptor", (type(obj), name)
            before = getattr(obj, name)
            with pytest.raises(AttributeError):
                delattr(obj, name)
            assert getattr(obj, name) == before
            setattr(obj, name, "x")
            assert getattr(obj, name) == "x"
        repr(obj)
    with pytest.raises(AttributeError):
        del msg.via
    response = c_impl.parse(EXTRA[1])
    assert (response.status, response.reason, response.version) == (180, "Ringing", "SIP/2.0")


def test_public_names() -> None:
    assert c_impl.IMPLEMENTATION == "c"
    assert set(c_impl.__all__) == set(py_impl.__all__)
    for name in py_impl.__all__:
        assert hasattr(c_impl, name), name
