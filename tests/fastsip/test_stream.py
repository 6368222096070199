"""StreamParser: framing a TCP byte stream by Content-Length (RFC 3261 §18.3), keep-alives, limits."""

from __future__ import annotations

import pytest

import fastsip
from fastsip import errors

ONE = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 3\r\n\r\nabc"
TWO = b"SIP/2.0 200 OK\r\ni: 2\r\nl: 0\r\n\r\n"


@pytest.fixture
def stream(impl) -> fastsip.StreamParser:
    return fastsip.StreamParser(parse=impl.parse)


def test_messages_split_across_and_within_chunks(stream) -> None:
    data = ONE + TWO + ONE
    got = []
    for i in range(len(data)):  # one byte at a time
        got.extend(stream.feed(data[i : i + 1]))
    assert [m.call_id for m in got] == ["1", "2", "1"]
    assert [bytes(m) for m in got] == [ONE, TWO, ONE]
    assert stream.buffered == 0
    assert [m.call_id for m in stream.feed(data)] == ["1", "2", "1"]


def test_keepalives_are_skipped_and_pings_counted(stream) -> None:
    got = stream.feed(b"\r\n\r\n" + ONE + b"\r\n" + TWO + b"\r\n\r\n")
    assert len(got) == 2
    assert stream.pings == 2


def test_missing_content_length_means_empty_body(stream) -> None:
    (msg,) = stream.feed(b"OPTIONS sip:a@b SIP/2.0\r\ni: x\r\n\r\n")
    assert msg.body == b""


def test_partial_message_waits(stream) -> None:
    assert stream.feed(ONE[:-1]) == []
    assert stream.buffered == len(ONE) - 1
    assert len(stream.feed(ONE[-1:])) == 1


def test_bounded_buffer(impl) -> None:
    stream = fastsip.StreamParser(max_size=1000, parse=impl.parse)
    with pytest.raises(errors.MessageTooLarge):
        stream.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 2000)
    stream = fastsip.StreamParser(max_size=1000, parse=impl.parse)
    with pytest.raises(errors.MessageTooLarge):
        stream.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")


def test_bad_content_length_and_bad_message(stream) -> None:
    with pytest.raises(errors.ContentLengthError):
        stream.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(errors.StartLineError):
        fastsip.StreamParser().feed(b"HELLO\r\n\r\n")


def test_content_length_with_leading_zeros_frames_like_parse(stream) -> None:
    """Stream framing and parse() read Content-Length alike: 000000000003 is 3 (RFC 4475 §3.1.1.1)."""
    msg = ONE.replace(b"Content-Length: 3", b"Content-Length: 000000000003")
    got = stream.feed(msg + TWO)
    assert [bytes(m) for m in got] == [msg, TWO]
    assert got[0].body == b"abc"


def test_a_refused_framed_message_keeps_the_stream_in_sync(impl) -> None:
    """A framed message the parser refuses comes back as ``framed`` with the messages before it;
    feed(b"") goes on after it. A framing error leaves ``framed`` None (the stream is lost)."""
    stream = fastsip.StreamParser(max_headers=4, parse=impl.parse)
    many = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"l: 0\r\n\r\n"
    with pytest.raises(errors.TooManyHeaders) as info:
        stream.feed(TWO + many + ONE)
    assert info.value.framed == many
    assert [bytes(m) for m in info.value.messages] == [TWO]
    assert [bytes(m) for m in stream.feed(b"")] == [ONE]
    assert stream.buffered == 0
    with pytest.raises(errors.StartLineError) as info:
        stream.feed(b"HELLO\r\n\r\n" + ONE)
    assert (info.value.framed, info.value.messages) == (b"HELLO\r\n\r\n", [])
    assert [bytes(m) for m in stream.feed(b"")] == [ONE]
    with pytest.raises(errors.ContentLengthError) as info:
        fastsip.StreamParser(parse=impl.parse).feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n")
    assert info.value.framed is None
