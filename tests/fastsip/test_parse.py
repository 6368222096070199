"""Exact parsing behaviour of both backends: start lines, headers, Via, name-addr, URI, CSeq, framing."""

from __future__ import annotations

import pytest

import fastsip
from fastsip import errors


def req(*headers: str, body: bytes = b"", start: str = "OPTIONS sip:bob@example.com SIP/2.0") -> bytes:
    head = start + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode() + body


# --- start line -----------------------------------------------------------------


def test_request_line(impl) -> None:
    msg = impl.parse(req("Via: SIP/2.0/UDP h;branch=z9hG4bK1", start="INVITE sip:2222@198.51.100.77;transport=udp SIP/2.0"))
    assert msg.is_request
    assert msg.method == "INVITE"
    assert msg.version == "SIP/2.0"
    assert str(msg.uri) == "sip:2222@198.51.100.77;transport=udp"
    assert msg.uri.user == "2222"
    assert msg.uri.host == "198.51.100.77"
    assert msg.uri.params == {"transport": "udp"}


def test_extension_method_is_any_token(impl) -> None:
    msg = impl.parse(req("CSeq: 7 FOO.BAR-baz!", start="FOO.BAR-baz! sip:x@y SIP/2.0"))
    assert msg.method == "FOO.BAR-baz!"
    assert (msg.cseq.seq, msg.cseq.method) == (7, "FOO.BAR-baz!")


def test_status_line(impl) -> None:
    msg = impl.parse(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n")
    assert not msg.is_request
    assert (msg.status, msg.reason, msg.version) == (486, "Busy Here", "SIP/2.0")


@pytest.mark.parametrize(
    "line, reason",
    [(b"SIP/2.0 200 ", ""), (b"SIP/2.0 200", ""), (b"SIP/2.0 180 Sonne \xc3\xa4 klingelt", "Sonne \u00e4 klingelt"),
     (b"SIP/2.0 200 OK  with  spaces ", "OK  with  spaces ")],
)
def test_reason_phrase_may_be_empty_or_utf8(impl, line: bytes, reason: str) -> None:
    assert impl.parse(line + b"\r\n\r\n").reason == reason


def test_version_is_case_insensitive(impl) -> None:
    assert impl.parse(b"sip/2.0 200 OK\r\n\r\n").status == 200
    assert impl.parse(b"OPTIONS sip:a@b sip/2.0\r\n\r\n").version == "SIP/2.0"


@pytest.mark.parametrize(
    "data, offset",
    [
        (b"OPTIONS sip:a@b SIP/3.0\r\n\r\n", 16),
        (b"OPTIONS sip:a@b\r\n\r\n", 7),
        (b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n", 8),
        (b"OPT\x01ONS sip:a@b SIP/2.0\r\n\r\n", 3),
        (b"OP(TIONS sip:a@b SIP/2.0\r\n\r\n", 2),
        (b"SIP/2.0 99 Low\r\n\r\n", 8),
        (b"SIP/2.0 2000 OK\r\n\r\n", 8),
        (b"SIP/2.0 700 X\r\n\r\n", 8),
        (b"SIP/2.0\r\n\r\n", 7),
    ],
)
def test_bad_start_lines(impl, data: bytes, offset: int) -> None:
    with pytest.raises(errors.StartLineError) as info:
        impl.parse(data)
    assert info.value.offset == offset
    assert info.value.status_hint == 400


def test_leading_line_breaks_are_skipped(impl) -> None:
    data = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    msg = impl.parse(data)
    assert msg.method == "OPTIONS"
    assert bytes(msg) == data[4:]


def test_lf_only_line_ends_are_accepted(impl) -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\nContent-Length: 2\n\nhi"
    msg = impl.parse(data)
    assert msg.via[0].branch == "z9hG4bK9"
    assert msg.body == b"hi"
    assert bytes(msg) == data


# --- headers ----------------------------------------------------------------------


def test_headers_multimap_case_insensitive_and_compact(impl) -> None:
    msg = impl.parse(req(
        "v: SIP/2.0/UDP a;branch=z9hG4bK1", "VIA: SIP/2.0/UDP b;branch=z9hG4bK2", "i: abc@h", "f: <sip:a@b>;tag=1",
        "t: <sip:c@d>", "m: <sip:a@10.0.0.1>", "l: 0", "c: text/plain", "k: 100rel", "s: hi", "e: gzip",
        "o: presence", "u: dialog", "r: <sip:x@y>", "b: <sip:z@y>", "x: 1800", "X-Custom: 1", "x-custom: 2",
    ))
    h = msg.headers
    assert h.getall("Via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"]
    assert h.getall("v") == h.getall("via")
    assert h["Call-ID"] == "abc@h" and h.get("I") == "abc@h"
    assert h["Content-Type"] == "text/plain"
    assert h["Supported"] == "100rel" and h["Subject"] == "hi" and h["Content-Encoding"] == "gzip"
    assert h["Event"] == "presence" and h["Allow-Events"] == "dialog"
    assert h["Refer-To"] == "<sip:x@y>" and h["Referred-By"] == "<sip:z@y>"
    assert h["Session-Expires"] == "1800"
    assert h.getall("X-CUSTOM") == ["1", "2"]
    assert "contact" in h and "Route" not in h
    assert h.get("Route") is None and h.getall("Route") == []
    with pytest.raises(KeyError):
        h["Route"]
    assert len(h) == 18
    # Known headers are listed under their RFC spelling, unknown ones as written, in wire order.
    assert h.keys()[:4] == ["Via", "Via", "Call-ID", "From"]
    assert h.keys()[-2:] == ["X-Custom", "x-custom"]
    assert msg.call_id == "abc@h"
    assert msg.content_type == "text/plain"


def test_header_folding(impl) -> None:
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nSubject: first\r\n  second\r\n\tthird\r\n"
            b"Via: SIP/2.0/UDP host\r\n ;branch=z9hG4bKf\r\nEmpty:\r\n later\r\nContent-Length: 0\r\n\r\n")
    msg = impl.parse(data)
    assert msg.headers["Subject"] == "first second third"
    assert msg.via[0].branch == "z9hG4bKf"
    assert msg.headers["Empty"] == "later"
    assert bytes(msg) == data


def test_whitespace_around_colon_and_values(impl) -> None:
    msg = impl.parse(req("Subject   :   spaced out  ", "Call-ID:\tx@y\t", "X-Empty:"))
    assert msg.headers["Subject"] == "spaced out"
    assert msg.call_id == "x@y"
    assert msg.headers["X-Empty"] == ""


@pytest.mark.parametrize(
    "data, cls, offset",
    [
        (b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n", errors.HeaderError, 25),
        (b"OPTIONS sip:a@b SIP/2.0\r\n folded: x\r\n\r\n", errors.HeaderError, 25),
        (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", errors.HeaderError, 28),
        (b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n", errors.HeaderError, 25),
        (b"OPTIONS sip:a@b SIP/2.0\r\nA: x\ry\r\n\r\n", errors.HeaderError, 29),
        (b"OPTIONS sip:a@b SIP/2.0\r\nA: x\r\n", errors.IncompleteMessage, 31),
        (b"OPTIONS sip:a@b SIP/2.0", errors.IncompleteMessage, 23),
        (b"", errors.IncompleteMessage, 0),
        (b"\r\n\r\n", errors.IncompleteMessage, 4),
    ],
)
def test_bad_header_blocks(impl, data: bytes, cls: type, offset: int) -> None:
    with pytest.raises(cls) as info:
        impl.parse(data)
    assert type(info.value) is cls
    assert info.value.offset == offset


# --- Content-Length and limits (RFC 3261 §18.3) ------------------------------------


def test_body_framed_by_content_length_extra_bytes_ignored(impl) -> None:
    data = req("Content-Length: 5", body=b"hello") 
    msg = impl.parse(data + b"garbage")
    assert msg.body == b"hello"
    assert msg.content_length == 5
    assert bytes(msg) == data


def test_body_without_content_length_is_rest_of_datagram(impl) -> None:
    msg = impl.parse(req(body=b"whole rest"))
    assert msg.body == b"whole rest"
    assert msg.content_length is None


@pytest.mark.parametrize(
    "headers, cls",
    [
        (("Content-Length: 10",), errors.TruncatedBody),
        (("Content-Length: abc",), errors.ContentLengthError),
        (("Content-Length: -1",), errors.ContentLengthError),
        (("Content-Length: 2", "l: 3"), errors.ContentLengthError),
        (("Content-Length: 99999999999",), errors.ContentLengthError),
    ],
)
def test_content_length_errors(impl, headers: tuple[str, ...], cls: type) -> None:
    with pytest.raises(cls) as info:
        impl.parse(req(*headers, body=b"abc"))
    assert type(info.value) is cls


def test_equal_duplicate_content_length_is_fine(impl) -> None:
    assert impl.parse(req("Content-Length: 3", "l: 3", body=b"abc")).body == b"abc"


def test_size_and_header_count_limits(impl) -> None:
    big = req("X-Pad: " + "a" * 70000)
    with pytest.raises(errors.MessageTooLarge) as info:
        impl.parse(big)
    assert info.value.status_hint == 513
    assert impl.parse(big, max_size=len(big)).headers["X-Pad"] == "a" * 70000
    many = req(*[f"X-H{i}: {i}" for i in range(300)])
    with pytest.raises(errors.TooManyHeaders):
        impl.parse(many)
    assert len(impl.parse(many, max_headers=300).headers) == 300
    with pytest.raises(errors.TooManyHeaders):
        impl.parse(req("A: 1", "B: 2", "C: 3"), max_headers=2)


def test_accepts_bytearray_and_memoryview(impl) -> None:
    data = req("Call-ID: mv")
    assert impl.parse(bytearray(data)).call_id == "mv"
    assert impl.parse(memoryview(data)).call_id == "mv"
    with pytest.raises(TypeError):
        impl.parse("text")  # type: ignore[arg-type]


# --- Via (RFC 3261 §20.42, RFC 3581) -------------------------------------------------


def test_via_fields(impl) -> None:
    msg = impl.parse(req(
        "Via: SIP/2.0/udp 192.0.2.20:58088;branch=z9hG4bK-d87;rport;received=198.51.100.10;ttl=16;maddr=224.2.0.1;x",
    ))
    (v,) = msg.via
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "UDP", "192.0.2.20", 58088)
    assert v.branch == "z9hG4bK-d87"
    assert v.rport is True
    assert v.received == "198.51.100.10"
    assert (v.ttl, v.maddr) == (16, "224.2.0.1")
    assert v.params == {"branch": "z9hG4bK-d87", "rport": None, "received": "198.51.100.10", "ttl": "16",
                        "maddr": "224.2.0.1", "x": None}
    assert v.sent_by == "192.0.2.20:58088"


def test_via_comma_joined_repeated_ipv6_and_odd_spacing(impl) -> None:
    msg = impl.parse(req(
        "Via: SIP / 2.0 / TCP [2001:db8::1]:5070 ; branch = z9hG4bKa ; rport = 5071 , SIP/2.0/TLS h.example.com;branch=z9hG4bKb",
        "v: SIP/2.0/SCTP [2001:db8::9];branch=z9hG4bKc;received=2001:db8::7",
    ))
    a, b, c = msg.via
    assert (a.protocol, a.transport, a.host, a.port, a.branch, a.rport) == ("SIP/2.0", "TCP", "[2001:db8::1]", 5070, "z9hG4bKa", 5071)
    assert (b.transport, b.host, b.port, b.branch, b.rport) == ("TLS", "h.example.com", None, "z9hG4bKb", None)
    assert (c.host, c.port, c.received) == ("[2001:db8::9]", None, "2001:db8::7")
    assert c.sent_by == "[2001:db8::9]"


def test_via_quoted_param_with_comma(impl) -> None:
    msg = impl.parse(req('Via: SIP/2.0/UDP h;branch=z9hG4bK1;x="a,b", SIP/2.0/UDP i;branch=z9hG4bK2'))
    assert [v.params.get("x") for v in msg.via] == ['"a,b"', None]
    assert msg.via[1].host == "i"


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0 h;branch=1",
        "SIP/2.0/UDP",
        "SIP/2.0/UDPh",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h:",
        "SIP/2.0/UDP h;rport=x",
        "SIP/2.0/UDP h;ttl=300",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP []",
        "SIP/2.0/UDP h;=x",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h junk",
        "SIP/2.0/UDP h;branch=1,",
    ],
)
def test_bad_vias_raise_on_access(impl, value: str) -> None:
    msg = impl.parse(req("Via: " + value))  # framing is fine; the value is parsed lazily
    with pytest.raises(errors.ViaError) as info:
        msg.via
    assert info.value.header == "Via"
    assert info.value.offset >= len("OPTIONS sip:bob@example.com SIP/2.0\r\nVia: ")
    with pytest.raises(errors.ViaError):
        msg.validate()


# --- name-addr (RFC 3261 §20.10, §20.20, §20.39) --------------------------------------


def test_from_to_forms(impl) -> None:
    msg = impl.parse(req(
        'From: "Alice \\"the\\" Smith, Jr." <sip:alice@atlanta.example.com>;tag=88sja8x;x=y',
        "To: Bob Jones <sip:bob@biloxi.example.com;user=phone>",
    ))
    f, t = msg.from_, msg.to
    assert f.display == 'Alice "the" Smith, Jr.'
    assert f.uri.user == "alice" and f.tag == "88sja8x"
    assert f.params == {"tag": "88sja8x", "x": "y"}
    assert t.display == "Bob Jones" and t.tag is None
    assert t.uri.params == {"user": "phone"}


def test_addr_spec_params_belong_to_the_header(impl) -> None:
    msg = impl.parse(req("To: sip:bob@biloxi.example.com;tag=abc"))
    assert str(msg.to.uri) == "sip:bob@biloxi.example.com"
    assert msg.to.tag == "abc"
    assert msg.to.display is None


def test_contact_list_star_and_commas_in_brackets(impl) -> None:
    msg = impl.parse(req(
        'Contact: "A, B" <sip:a,b@h1;x=1>;q=0.7;expires=60, <sip:b@h2>,sip:c@h3',
        'm: <tel:+1-201-555-0123>;+sip.instance="<urn:uuid:f81d4fae>"',
    ))
    c = msg.contact
    assert [str(x.uri) for x in c] == ["sip:a,b@h1;x=1", "sip:b@h2", "sip:c@h3", "tel:+1-201-555-0123"]
    assert c[0].display == "A, B" and c[0].params == {"q": "0.7", "expires": "60"}
    assert c[3].params == {"+sip.instance": '"<urn:uuid:f81d4fae>"'}
    assert c[3].uri.scheme == "tel" and c[3].uri.user == "+1-201-555-0123"
    star = impl.parse(req("Contact: *", "Expires: 0")).contact
    assert len(star) == 1 and star[0].wildcard and star[0].uri is None


def test_route_and_record_route_lists(impl) -> None:
    msg = impl.parse(req(
        "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr;ftag=x>",
        "Record-Route: <sip:[2001:db8::5]:5080;lr;transport=tcp>",
        "Route: <sip:p3.example.com;lr>",
    ))
    assert [str(r.uri) for r in msg.record_route] == [
        "sip:p1.example.com;lr", "sip:p2.example.com;lr;ftag=x", "sip:[2001:db8::5]:5080;lr;transport=tcp"]
    rr = msg.record_route[2].uri
    assert (rr.host, rr.port, rr.lr, rr.transport) == ("[2001:db8::5]", 5080, True, "tcp")
    assert msg.route[0].uri.params == {"lr": None}


@pytest.mark.parametrize(
    "value",
    ['"unterminated <sip:a@b>', "<sip:a@b", "Name sip:a@b", "<sip:a@b>;tag=1, <sip:c@d>", "<sip:a@b> junk", "", '"x" sip:a@b'],
)
def test_bad_from_raises_on_access(impl, value: str) -> None:
    msg = impl.parse(req("From: " + value))
    with pytest.raises((errors.NameAddrError, errors.URIError)):
        msg.from_


# --- URIs (RFC 3261 §19.1) -------------------------------------------------------------


def test_sip_uri_components(impl) -> None:
    u = impl.parse_uri("sips:alice%20smith:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1;method=REGISTER?subject=project%20x&priority=urgent")
    assert u.scheme == "sips"
    assert (u.user, u.password) == ("alice%20smith", "secret")
    assert (u.host, u.port) == ("Atlanta.example.com", 5061)
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1", "method": "REGISTER"}
    assert u.headers == {"subject": "project%20x", "priority": "urgent"}
    assert u.transport == "tcp" and u.lr and u.maddr == "239.255.255.1"
    assert str(u) == "sips:alice%20smith:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1;method=REGISTER?subject=project%20x&priority=urgent"


def test_uri_user_may_hold_user_unreserved(impl) -> None:
    u = impl.parse_uri("sip:+1-212-555-1212;phone-context=x@gw.example.com;user=phone")
    assert u.user == "+1-212-555-1212;phone-context=x"
    assert u.host == "gw.example.com" and u.params == {"user": "phone"}


def test_uri_without_user_and_ipv6(impl) -> None:
    u = impl.parse_uri("SIP:[2001:db8::10]:5060")
    assert (u.scheme, u.user, u.host, u.port, u.params) == ("sip", None, "[2001:db8::10]", 5060, {})


def test_absolute_uris(impl) -> None:
    tel = impl.parse_uri("tel:+358-555-1234567;postd=pp22")
    assert (tel.scheme, tel.user, tel.host, tel.port) == ("tel", "+358-555-1234567", None, None)
    assert tel.params == {"postd": "pp22"}
    urn = impl.parse_uri("urn:service:sos")
    assert (urn.scheme, urn.user, str(urn), urn.opaque) == ("urn", None, "urn:service:sos", "service:sos")


@pytest.mark.parametrize(
    "text, offset",
    [("", 0), ("sip:", 4), ("sip:a@", 6), ("sip:@h", 4), ("sip:a b@h", 5), ("sip:h:x", 6), ("sip:h:70000", 6),
     ("sip:a%2@h", 5), ("sip:a%zz@h", 5), ("sip:h;", 6), ("sip:h/x", 5), ("1sip:h", 0), ("tel:", 4), ("tel:;x", 4),
     ("sip:h?=x", 5), ("sip:[::1", 4)],
)
def test_bad_uris(impl, text: str, offset: int) -> None:
    with pytest.raises(errors.URIError) as info:
        impl.parse_uri(text)
    assert info.value.offset == offset


def test_bad_request_uri_raises_on_access_with_message_offset(impl) -> None:
    msg = impl.parse(b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n")
    with pytest.raises(errors.URIError) as info:
        msg.uri
    assert info.value.offset == len("INVITE sip:a@b:")


# --- CSeq, Max-Forwards, Call-ID -------------------------------------------------------


def test_cseq_max_forwards_call_id(impl) -> None:
    msg = impl.parse(req("CSeq:  4711   INVITE ", "Max-Forwards: 0", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com"))
    assert (msg.cseq.seq, msg.cseq.method) == (4711, "INVITE")
    assert msg.max_forwards == 0
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    bare = impl.parse(req())
    assert (bare.cseq, bare.max_forwards, bare.call_id, bare.from_, bare.to, bare.via, bare.contact) == (None, None, None, None, None, [], [])


@pytest.mark.parametrize("value", ["x INVITE", "1", "1INVITE", "4294967296 INVITE", "1 INV ITE", "1 INV@"])
def test_bad_cseq(impl, value: str) -> None:
    with pytest.raises(errors.CSeqError):
        impl.parse(req("CSeq: " + value)).cseq


@pytest.mark.parametrize("value", ["-1", "256", "abc", "", "1 2"])
def test_bad_max_forwards(impl, value: str) -> None:
    with pytest.raises(errors.NumberError):
        impl.parse(req("Max-Forwards: " + value)).max_forwards


def test_empty_call_id(impl) -> None:
    with pytest.raises(errors.HeaderValueError):
        impl.parse(req("Call-ID: ")).call_id


def test_parse_errors_pickle_round_trip() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(errors.ViaError("Via: bad", 42, "Via")))
    assert (type(err), err.offset, err.header, str(err)) == (errors.ViaError, 42, "Via", "Via: bad (at byte 42)")
    assert isinstance(fastsip.parse(req()), fastsip.Request)


def test_whitespace_only_continuation_lines_fold_to_one_space(impl) -> None:
    msg = impl.parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\n   \r\n  b\r\n\r\n")
    assert msg.headers["Subject"] == "a b"


def test_via_param_errors_point_at_their_via_parm(impl) -> None:
    prefix = b"OPTIONS sip:a@b SIP/2.0\r\nVia: "
    msg = impl.parse(prefix + b"SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;rport=x\r\n\r\n")
    with pytest.raises(errors.ViaError) as info:
        msg.via
    assert info.value.offset == len(prefix) + len("SIP/2.0/UDP a;branch=z9hG4bK1, ")


def test_edited_content_length_must_still_be_a_number(impl) -> None:
    msg = impl.parse(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    msg.set_header("Content-Length", "1_0")
    with pytest.raises(errors.ContentLengthError):
        msg.content_length
