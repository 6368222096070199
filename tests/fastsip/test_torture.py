"""RFC 4475 and RFC 5118 torture messages: each one does what corpus/torture.json says, on both backends.

The table holds the RFC's verdict per message and fastsip's required outcome: parse() and
validate() succeed and the fields the RFC discusses read as written there; or parse() raises
exactly the named ParseError subclass; or parse() succeeds and validate() raises it. Any other
exception fails the test: it is a bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastsip import errors
from fastsip._snapshot import snapshot

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"
TABLE = json.loads((CORPUS / "torture.json").read_text(encoding="utf-8"))["messages"]
BY_FILE = {e["file"]: e for e in TABLE}


def _plain(value: object) -> object:
    """A value as JSON holds it: tuples as lists, bytes as their UTF-8 text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _error_class(name: str) -> type[errors.ParseError]:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.ParseError)
    return cls  # type: ignore[no-any-return]


def test_table_covers_both_suites_exactly() -> None:
    files = {f"{p.parent.name}/{p.name}" for d in ("rfc4475", "rfc5118") for p in (CORPUS / d).glob("*.sip")}
    assert len([f for f in files if f.startswith("rfc4475/")]) == 49  # RFC 4475 §3 names 49 messages
    assert len([f for f in files if f.startswith("rfc5118/")]) == 12  # RFC 5118 §4 has 12
    assert files == set(BY_FILE), files ^ set(BY_FILE)
    for e in TABLE:
        assert e["outcome"] in ("ok", "parse", "validate"), e
        assert (e["outcome"] == "ok") == ("error" not in e), e
        assert e["rfc_verdict"] in ("valid", "invalid", "transaction", "insufficient", "application"), e


@pytest.mark.parametrize("entry", TABLE, ids=[e["file"] for e in TABLE])
def test_torture_message(impl, entry: dict) -> None:
    data = (CORPUS / entry["file"]).read_bytes()
    if entry["outcome"] == "parse":
        with pytest.raises(errors.ParseError) as info:
            impl.parse(data)
        assert type(info.value) is _error_class(entry["error"]), info.value
        assert info.value.status_hint == 400
        return
    msg = impl.parse(data)
    for expr, want in entry["fields"].items():
        got = eval(expr, {"__builtins__": {"len": len, "str": str, "bytes": bytes}}, {"msg": msg})  # noqa: S307 (test data)
        assert _plain(got) == want, (expr, got)
    if entry["outcome"] == "ok":
        msg.validate()
    else:
        with pytest.raises(errors.ParseError) as info:
            msg.validate()
        assert type(info.value) is _error_class(entry["error"]), info.value
        assert info.value.status_hint == 400


@pytest.mark.parametrize("entry", TABLE, ids=[e["file"] for e in TABLE])
def test_torture_parity(entry: dict) -> None:
    """Both backends give the same snapshot: every attribute, or the same exception and offset."""
    c_impl = pytest.importorskip("fastsip._parser_c", reason="compiled backend not built")
    from fastsip import _parser_py as py_impl

    data = (CORPUS / entry["file"]).read_bytes()

    def outcome(impl):  # type: ignore[no-untyped-def]
        try:
            msg = impl.parse(data)
        except errors.ParseError as exc:
            return ("parse", type(exc).__name__, exc.offset, str(exc))
        snap = snapshot(msg)
        try:
            msg.validate()
        except errors.ParseError as exc:
            return (snap, type(exc).__name__, exc.offset, str(exc))
        return (snap, None)

    assert outcome(py_impl) == outcome(c_impl)


def test_insuf_names_the_missing_headers_and_keeps_via(impl) -> None:
    """RFC 4475 §3.3.1: no To, From, Call-ID. The Via is readable, so a 400 can be addressed."""
    msg = impl.parse((CORPUS / "rfc4475/insuf.sip").read_bytes())
    assert msg.via[0].sent_by == "192.0.2.95"
    with pytest.raises(errors.MissingHeaders) as info:
        msg.validate()
    assert info.value.missing == ("To", "From", "Call-ID")
    assert info.value.message == "missing required headers: To, From, Call-ID"
    assert info.value.status_hint == 400
    # The offset is the empty line that ends the header block.
    data = (CORPUS / "rfc4475/insuf.sip").read_bytes()
    assert info.value.offset == data.index(b"\r\n\r\n") + 2


@pytest.mark.parametrize(
    ("lines", "missing"),
    [
        ([b"Via: SIP/2.0/UDP h;branch=z9hG4bK1"], ("To", "From", "CSeq", "Call-ID")),
        ([b"To: <sip:a@b>", b"From: <sip:c@d>;tag=1", b"Call-ID: x", b"CSeq: 1 OPTIONS"], ("Via",)),
        ([b"t: <sip:a@b>", b"f: <sip:c@d>;tag=1", b"i: x", b"CSeq: 1 OPTIONS", b"v: SIP/2.0/UDP h"], ()),
    ],
)
def test_missing_headers_in_rfc_order(impl, lines: list[bytes], missing: tuple[str, ...]) -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    msg = impl.parse(data)
    if not missing:
        msg.validate()  # compact forms count; Max-Forwards is not required (RFC 3261 §16.3)
        return
    with pytest.raises(errors.MissingHeaders) as info:
        msg.validate()
    assert info.value.missing == missing


def test_responses_are_not_held_to_request_headers(impl) -> None:
    impl.parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n").validate()


def test_missing_headers_pickles() -> None:
    import pickle

    exc = errors.MissingHeaders("missing required headers: To", 7, ("To",))
    back = pickle.loads(pickle.dumps(exc))
    assert (type(back), back.message, back.offset, back.missing) == (errors.MissingHeaders, exc.message, 7, ("To",))


def test_make_response_to_a_request_without_to_from_call_id(impl) -> None:
    """The proxy answers insuf with 400: the response copies what exists (Via, CSeq) and nothing else."""
    msg = impl.parse((CORPUS / "rfc4475/insuf.sip").read_bytes())
    resp = impl.make_response(msg, 400, "Missing To, From, Call-ID", to_tag="x1")
    assert bytes(resp) == (
        b"SIP/2.0 400 Missing To, From, Call-ID\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n"
        b"CSeq: 193942 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert (resp.status, resp.to, resp.from_, resp.call_id) == (400, None, None, None)


def test_make_response_with_only_via_and_from(impl) -> None:
    msg = impl.parse(
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP g\r\n"
        b"From: <sip:c@d>;tag=9\r\n\r\n"
    )
    resp = impl.make_response(msg, 400)
    assert bytes(resp) == (
        b"SIP/2.0 400 Bad Request\r\n"
        b"Via: SIP/2.0/UDP h:5060;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP g\r\n"
        b"From: <sip:c@d>;tag=9\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_baddn_with_its_headers_ended_is_still_refused(impl) -> None:
    """RFC 4475 §3.1.2.15: the archive's baddn lacks the final empty line; with it, the display name is refused."""
    msg = impl.parse((CORPUS / "rfc4475/baddn.sip").read_bytes() + b"\r\n")
    with pytest.raises(errors.URIError):
        msg.validate()


@pytest.mark.parametrize(
    ("header", "attr", "value"),
    [
        (b"Max-Forwards: 0068", "max_forwards", 68),
        (b"Max-Forwards: 0255", "max_forwards", 255),
        (b"Max-Forwards: 000000000000000000000000070", "max_forwards", 70),
        (b"Max-Forwards: 0", "max_forwards", 0),
        (b"Max-Forwards: 000", "max_forwards", 0),
        (b"CSeq: 0009 INVITE", "cseq", ("seq", 9)),
        (b"CSeq: 000000000002147483647 INVITE", "cseq", ("seq", 2147483647)),
        (b"Content-Length: 00000000000000", "content_length", 0),
    ],
)
def test_leading_zeros_are_accepted(impl, header: bytes, attr: str, value: object) -> None:
    msg = impl.parse(b"INVITE sip:a@b SIP/2.0\r\n" + header + b"\r\n\r\n")
    got = getattr(msg, attr)
    if isinstance(value, tuple):
        got = getattr(got, value[0])
        value = value[1]
    assert got == value


@pytest.mark.parametrize(
    ("header", "attr", "error"),
    [
        (b"Max-Forwards: 0256", "max_forwards", errors.NumberError),
        (b"Max-Forwards: 00001000", "max_forwards", errors.NumberError),
        (b"CSeq: 0002147483648 INVITE", "cseq", errors.CSeqError),
    ],
)
def test_leading_zeros_do_not_hide_overlarge_values(impl, header: bytes, attr: str, error: type) -> None:
    msg = impl.parse(b"INVITE sip:a@b SIP/2.0\r\n" + header + b"\r\n\r\n")
    with pytest.raises(error):
        getattr(msg, attr)


def test_ports_rport_ttl_with_leading_zeros(impl) -> None:
    msg = impl.parse(
        b"INVITE sip:a@b:005060 SIP/2.0\r\nVia: SIP/2.0/UDP h:0005060;rport=000000005062;ttl=0016\r\n\r\n"
    )
    assert (msg.uri.port, msg.via[0].port, msg.via[0].rport, msg.via[0].ttl) == (5060, 5060, 5062, 16)
