"""Edits a proxy makes, serialized without touching the rest; make_response per RFC 3261 §8.2.6."""

from __future__ import annotations

import pytest

from fastsip import errors

from .conftest import corpus_files, read_corpus

SEED_SERVER = "OpenSIPS (2.2.7 (x86_64/linux))"
PROXY = "203.0.113.5"


def seed_request(impl):
    return impl.parse(read_corpus("seed-invite.sip"))


def test_seed_100_trying_is_byte_exact(impl) -> None:
    # The seed: OpenSIPS sets received/rport on the client's Via (RFC 3261 §18.2.1, RFC 3581)
    # and answers at once; the reply must equal the captured one byte for byte.
    msg = seed_request(impl)
    msg.set_via_param("received", "198.51.100.10")
    msg.set_via_param("rport", "4539")
    resp = impl.make_response(msg, 100, "Giving a try", headers=[("Server", SEED_SERVER)])
    assert bytes(resp) == read_corpus("seed-100-trying.sip")
    assert (resp.status, resp.reason) == (100, "Giving a try")


def test_seed_forwarded_invite_is_byte_exact(impl) -> None:
    msg = seed_request(impl)
    msg.set_via_param("received", "198.51.100.10")
    msg.set_via_param("rport", "4539")
    msg.set_header("Max-Forwards", str(msg.max_forwards - 1))
    msg.insert_header("Via", f"SIP/2.0/UDP {PROXY}:5060;branch=z9hG4bK07be.cf297d74.0")
    msg.insert_header("Record-Route", f"<sip:{PROXY};lr>")
    msg.append_header("P-hint", "outbound")
    assert bytes(msg) == read_corpus("seed-invite-forwarded.sip")
    # Attributes reflect the edits.
    assert [v.host for v in msg.via] == [PROXY, "192.0.2.20"]
    assert msg.max_forwards == 69
    assert str(msg.record_route[0].uri) == f"sip:{PROXY};lr"
    assert msg.headers.keys()[-1] == "P-hint"


def test_unmodified_message_is_the_input(impl) -> None:
    data = read_corpus("seed-invite.sip")
    msg = impl.parse(data)
    msg.via, msg.from_, msg.headers  # reading never modifies
    assert bytes(msg) == data


BASE = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n"
        b"v: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n"
        b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
        b"Route: <sip:p3.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"X-A: 1\r\nx-a: 2\r\n"
        b"Content-Length: 4\r\n\r\nbody")


def test_pop_via_takes_one_element_of_a_joined_header(impl) -> None:
    msg = impl.parse(BASE)
    assert msg.pop_via().host == "a.example.com"
    assert [v.host for v in msg.via] == ["b.example.com", "c.example.com"]
    assert b"Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nv: SIP/2.0/UDP c.example.com" in bytes(msg)
    assert msg.pop_via().host == "b.example.com"
    assert msg.pop_via().host == "c.example.com"
    assert msg.pop_via() is None
    assert msg.via == [] and "Via" not in msg.headers


def test_pop_route(impl) -> None:
    msg = impl.parse(BASE)
    assert str(msg.pop_route().uri) == "sip:p1.example.com;lr"
    assert [str(r.uri) for r in msg.route] == ["sip:p2.example.com;lr", "sip:p3.example.com;lr"]
    msg.pop_route()
    msg.pop_route()
    assert msg.pop_route() is None and msg.route == []


def test_remove_set_append_insert(impl) -> None:
    msg = impl.parse(BASE)
    assert msg.remove_header("X-A") == 2
    assert msg.remove_header("X-A") == 0
    msg.set_header("max-forwards", "69")
    msg.set_header("Subject", "new")  # absent -> appended
    msg.insert_header("Record-Route", "<sip:10.0.0.1;lr>")
    out = bytes(msg)
    assert out.startswith(b"INVITE sip:bob@example.com SIP/2.0\r\nRecord-Route: <sip:10.0.0.1;lr>\r\nVia: ")
    assert b"Max-Forwards: 69\r\nContent-Length: 4\r\nSubject: new\r\n\r\nbody" in out
    assert msg.max_forwards == 69 and msg.headers["subject"] == "new"
    assert impl.parse(out).headers.items() == msg.headers.items()


def test_set_via_param_replaces_in_place_or_inserts_after_sent_by(impl) -> None:
    msg = impl.parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport;x=\"q;r\"\r\n\r\n")
    msg.set_via_param("rport", "1234")
    msg.set_via_param("received", "192.0.2.1")
    assert msg.headers["Via"] == 'SIP/2.0/UDP h:5060;received=192.0.2.1;branch=z9hG4bK1;rport=1234;x="q;r"'
    assert msg.via[0].rport == 1234
    msg.set_via_param("received", "192.0.2.2")
    assert msg.via[0].received == "192.0.2.2"
    bare = impl.parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n")
    bare.set_via_param("received", "192.0.2.3")
    assert bare.headers["Via"] == "SIP/2.0/UDP h;received=192.0.2.3"
    with pytest.raises(IndexError):
        bare.set_via_param("x", "1", index=1)


def test_set_via_param_on_second_element_of_joined_header(impl) -> None:
    msg = impl.parse(BASE)
    msg.set_via_param("received", "192.0.2.9", index=1)
    assert [v.received for v in msg.via] == [None, "192.0.2.9", None]


def test_set_uri_and_set_body(impl) -> None:
    msg = impl.parse(BASE)
    msg.set_uri("sip:carol@192.0.2.7:5080;transport=tcp")
    msg.set_body(b"v=0\r\n", content_type="application/sdp")
    out = bytes(msg)
    assert out.startswith(b"INVITE sip:carol@192.0.2.7:5080;transport=tcp SIP/2.0\r\n")
    assert out.endswith(b"Content-Length: 5\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n")
    assert (msg.uri.user, msg.uri.port, msg.body, msg.content_length) == ("carol", 5080, b"v=0\r\n", 5)
    again = impl.parse(out)
    assert again.body == b"v=0\r\n" and again.content_type == "application/sdp"


def test_header_edits_keep_the_parsed_uri_set_uri_replaces_it(impl) -> None:
    msg = impl.parse(BASE)
    uri = msg.uri
    msg.set_via_param("received", "192.0.2.9")
    msg.set_header("Max-Forwards", "69")
    msg.append_header("P-Hint", "x")
    msg.remove_header("P-Hint")
    assert msg.uri is uri  # only the start line holds the Request-URI
    msg.set_uri("sip:carol@192.0.2.7:5080")
    assert (msg.uri.user, msg.uri.host, msg.uri.port) == ("carol", "192.0.2.7", 5080)
    assert msg.uri is not uri


def test_copy_is_independent(impl) -> None:
    msg = impl.parse(BASE)
    other = msg.copy()
    other.insert_header("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKx")
    other.set_uri("sip:x@y")
    assert len(msg.via) == 3 and len(other.via) == 4
    assert bytes(msg) == BASE
    assert other.method == "INVITE" and str(other.uri) == "sip:x@y"


def test_make_response_copies_headers_in_order(impl) -> None:
    msg = impl.parse(
        b"BYE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\ni: cid\r\nCSeq: 2 BYE\r\nTimestamp: 54\r\nContent-Length: 0\r\n\r\n"
    )
    resp = impl.make_response(msg, 200, to_tag="xyz", headers=[("Server", "proxyapp")], body=b"ok", content_type="text/plain")
    assert bytes(resp) == (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
        b"To: <sip:b@h>;tag=xyz\r\nFrom: <sip:a@h>;tag=1\r\nCall-ID: cid\r\nCSeq: 2 BYE\r\n"
        b"Server: proxyapp\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    )
    trying = impl.make_response(msg, 100)
    assert b"\r\nTimestamp: 54\r\n" in bytes(trying) and trying.reason == "Trying"
    assert impl.make_response(msg, 599).reason == ""
    with pytest.raises(ValueError):
        impl.make_response(msg, 99)


def test_make_response_keeps_an_existing_to_tag(impl) -> None:
    msg = impl.parse(b"BYE sip:b@h SIP/2.0\r\nTo: <sip:b@h>;tag=old\r\n\r\n")
    assert impl.make_response(msg, 481, to_tag="new").to.tag == "old"


def test_set_via_param_refuses_to_edit_a_malformed_via(impl) -> None:
    msg = impl.parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0 broken\r\n\r\n")
    with pytest.raises(errors.ViaError):
        msg.set_via_param("received", "192.0.2.1")


def _names_to_try(msg) -> list[str]:
    names = {n for n, _ in msg.headers.items()}
    out = set()
    for n in names:
        out |= {n, n.lower(), n.upper()}
    # compact forms, a header absent everywhere, and names written oddly
    out |= {"v", "f", "t", "i", "m", "l", "c", "k", "s", "X-Not-There", "user-agent", "USER-AGENT"}
    return sorted(out)


@pytest.mark.parametrize("path", corpus_files("valid"), ids=lambda p: p.name)
def test_header_equals_headers_get(impl, path) -> None:
    """msg.header(name) is msg.headers.get(name) for every header of every corpus message, under
    any spelling, before and after the headers view exists, and after edits."""
    data = path.read_bytes()
    names = _names_to_try(impl.parse(data))
    fresh = impl.parse(data)
    got = [fresh.header(n, "-") for n in names]  # the view was never built
    assert got == [impl.parse(data).headers.get(n, "-") for n in names]
    viewed = impl.parse(data)
    viewed.headers  # built first: header() answers from it
    assert [viewed.header(n, "-") for n in names] == got
    edited = impl.parse(data)
    edited.insert_header("User-Agent", "first-ua")
    edited.append_header("X-Added", "1")
    edited.remove_header("Call-ID")
    edited.set_header("Max-Forwards", "69")
    assert [edited.header(n) for n in names + ["X-Added"]] == [impl.parse(bytes(edited)).headers.get(n) for n in names + ["X-Added"]]
    assert edited.header("user-agent") == "first-ua" and edited.header("i") is None


@pytest.mark.parametrize(
    "value,parts",
    [
        ("<sip:a;lr>, <sip:b;lr>", ["<sip:a;lr>", "<sip:b;lr>"]),
        ('"x, y" <sip:b;lr>,<sip:c>;p=1', ['"x, y" <sip:b;lr>', "<sip:c>;p=1"]),
        ('"a \\" , b" <sip:q>', ['"a \\" , b" <sip:q>']),
        ("<sip:u@h;x=a,b>", ["<sip:u@h;x=a,b>"]),
        ("SIP/2.0/UDP h1;branch=z9hG4bK1 ,\tSIP/2.0/TCP h2", ["SIP/2.0/UDP h1;branch=z9hG4bK1", "SIP/2.0/TCP h2"]),
        ("one", ["one"]),
        ("a,,b", ["a", "", "b"]),
    ],
)
def test_split_values_cuts_at_top_level_commas(impl, value, parts) -> None:
    import fastsip

    assert impl._split_elements(value) == parts
    assert fastsip.split_values(value) == parts
