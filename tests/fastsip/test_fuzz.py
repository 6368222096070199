"""Hypothesis properties on both backends: any bytes give a message or ParseError; valid messages round-trip."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsip import errors
from fastsip._snapshot import snapshot

from .conftest import corpus_files

# Example counts come from the hypothesis profile (tests/fastsip/conftest.py): 150 by default,
# HYPOTHESIS_PROFILE=deep for a long local run.
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = [p.read_bytes() for p in corpus_files("valid")] or [b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"]


def parse_fully(impl, data: bytes) -> None:
    """Parse and read every attribute: only values or ParseError may come out."""
    try:
        msg = impl.parse(data)
    except errors.ParseError as exc:
        assert isinstance(exc.offset, int) and exc.offset >= 0
        return
    snapshot(msg)  # each lazy attribute returns a value or raises ParseError (recorded)
    out = bytes(msg)
    assert impl.parse(out).headers.items() == msg.headers.items()


@SETTINGS
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes(impl, data: bytes) -> None:
    parse_fully(impl, data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup-line", "special"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[i:]
        elif kind == "dup-line":
            j = data.find(b"\n", i)
            k = data.rfind(b"\n", 0, i)
            if j > k >= 0:
                data[j + 1 : j + 1] = data[k + 1 : j + 1]
        else:
            data[i:i] = draw(st.sampled_from([b";", b",", b"<", b">", b'"', b"\\", b":", b"[", b"]", b"%", b"\r\n ", b"\r", b"\n", b"\x00", b"@", b" "]))
    return bytes(data)


@SETTINGS
@given(data=mutated())
def test_mutated_corpus(impl, data: bytes) -> None:
    parse_fully(impl, data)


# --- generated valid messages round-trip --------------------------------------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8).filter(
    lambda x: x[0].isalpha())
host = st.one_of(
    st.lists(label, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t),
    st.tuples(*[st.integers(0, 0xFFFF)] * 8).map(lambda t: "[" + ":".join("%x" % x for x in t) + "]"),
)
port = st.one_of(st.none(), st.integers(1, 65535))
user = st.one_of(
    st.none(),
    st.tuples(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-_.!~*'()&=$,", min_size=1, max_size=12),
        st.sampled_from(["", "%20", "%41"]),
    ).map("".join),
)
display = st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=16))
param_value = st.one_of(st.none(), token)
# URI params (RFC 3261 §25.1): names are tokens made of unreserved characters; values may add
# param-unreserved characters.
uri_pname = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'", min_size=1, max_size=10)
uri_pvalue = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'/:&+$", min_size=1, max_size=10)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def sip_message(draw: st.DrawFn) -> tuple[bytes, dict]:
    method = draw(token)
    r_user, r_host, r_port = draw(user), draw(host), draw(port)
    uri = "sip:" + (f"{r_user}@" if r_user else "") + r_host + (f":{r_port}" if r_port else "")
    uri_params = draw(st.dictionaries(uri_pname, st.one_of(st.none(), uri_pvalue), max_size=3))
    uri += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in uri_params.items())
    vias = draw(st.lists(st.tuples(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]), host, port, token), min_size=1, max_size=4))
    via_lines = [f"SIP/2.0/{t} {h}" + (f":{p}" if p else "") + f";branch=z9hG4bK{b};rport" for t, h, p, b in vias]
    joined = draw(st.booleans())
    headers = [("Via", ", ".join(via_lines))] if joined else [("Via", v) for v in via_lines]
    f_display, f_user, f_host, f_tag = draw(display), draw(user), draw(host), draw(token)
    f_uri = "sip:" + (f"{f_user}@" if f_user else "") + f_host
    from_value = (quote(f_display) + " " if f_display is not None else "") + f"<{f_uri}>;tag={f_tag}"
    seq = draw(st.integers(0, 2**31 - 1))
    call_id = draw(token) + "@" + draw(host)
    mf = draw(st.integers(0, 255))
    body = draw(st.binary(max_size=64))
    compact = draw(st.booleans())
    headers += [
        ("f" if compact else "From", from_value),
        ("t" if compact else "To", f"<sip:{r_host}>"),
        ("i" if compact else "Call-ID", call_id),
        ("CSeq", f"{seq} {method}"),
        ("Max-Forwards", str(mf)),
        ("l" if compact else "Content-Length", str(len(body))),
    ]
    data = f"{method} {uri} SIP/2.0\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n" + body
    expect = dict(method=method, uri=uri, r_user=r_user, r_host=r_host, r_port=r_port, uri_params=uri_params,
                  vias=vias, f_display=f_display, f_uri=f_uri, f_tag=f_tag, seq=seq, call_id=call_id, mf=mf, body=body)
    return data, expect


@SETTINGS
@given(generated=sip_message())
def test_generated_messages_round_trip(impl, generated) -> None:
    data, e = generated
    msg = impl.parse(data)
    assert bytes(msg) == data
    assert msg.method == e["method"] and str(msg.uri) == e["uri"]
    assert (msg.uri.user, msg.uri.host, msg.uri.port, msg.uri.params) == (e["r_user"], e["r_host"], e["r_port"], e["uri_params"])
    assert [(v.transport, v.host, v.port, v.branch, v.rport) for v in msg.via] == [
        (t, h, p, f"z9hG4bK{b}", True) for t, h, p, b in e["vias"]]
    assert msg.from_.display == e["f_display"] and str(msg.from_.uri) == e["f_uri"] and msg.from_.tag == e["f_tag"]
    assert msg.to.tag is None and msg.to.uri.host == e["r_host"]
    assert (msg.cseq.seq, msg.cseq.method) == (e["seq"], e["method"])
    assert msg.call_id == e["call_id"] and msg.max_forwards == e["mf"]
    assert msg.body == e["body"] and msg.content_length == len(e["body"])
    # Serialize after proxy edits and parse again: the same fields plus the edits.
    msg.insert_header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy")
    msg.set_header("Max-Forwards", str(max(e["mf"] - 1, 0)))
    again = impl.parse(bytes(msg))
    assert [v.branch for v in again.via][0] == "z9hG4bKproxy"
    assert len(again.via) == len(e["vias"]) + 1
    assert again.max_forwards == max(e["mf"] - 1, 0) and again.body == e["body"]
