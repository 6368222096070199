"""Content-Length frames the body (RFC 3261 §18.3, §20.14), checked per backend with exact expectations.

Issue 14: a mutant that accepted a body one byte shorter than Content-Length was caught only by the
py-vs-C parity tests, so the same bug in both backends would have passed. These tests hold each
backend to the rule on its own.
"""

from __future__ import annotations

import pytest

from fastsip import errors

HEAD = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\n"


def test_body_one_byte_short_is_refused(impl) -> None:
    data = HEAD + b"abcd"
    with pytest.raises(errors.TruncatedBody) as info:
        impl.parse(data)
    assert type(info.value) is errors.TruncatedBody
    assert isinstance(info.value, errors.IncompleteMessage)
    assert info.value.message == "Content-Length is 5 but only 4 body bytes follow"
    assert info.value.offset == len(data)
    assert info.value.status_hint == 400


@pytest.mark.parametrize("short", range(0, 5))
def test_every_short_body_is_refused(impl, short: int) -> None:
    with pytest.raises(errors.TruncatedBody):
        impl.parse(HEAD + b"abcde"[:short])


def test_exact_body(impl) -> None:
    msg = impl.parse(HEAD + b"abcde")
    assert (msg.body, msg.content_length, bytes(msg)) == (b"abcde", 5, HEAD + b"abcde")


@pytest.mark.parametrize("extra", [b"f", b"\r\n", b"MESSAGE sip:a@b SIP/2.0\r\n\r\n"])
def test_longer_datagram_keeps_content_length_bytes(impl, extra: bytes) -> None:
    """Octets after Content-Length are not part of the message (RFC 3261 §18.3; RFC 4475 §3.1.1.8)."""
    msg = impl.parse(HEAD + b"abcde" + extra)
    assert (msg.body, msg.content_length) == (b"abcde", 5)
    assert bytes(msg) == HEAD + b"abcde"


def test_zero_content_length_with_trailing_bytes(impl) -> None:
    head = HEAD.replace(b"Content-Length: 5", b"Content-Length: 0")
    msg = impl.parse(head + b"xyz")
    assert (msg.body, bytes(msg)) == (b"", head)


def test_without_content_length_the_body_is_the_rest(impl) -> None:
    head = HEAD.replace(b"Content-Length: 5\r\n", b"")
    msg = impl.parse(head + b"abcdefg")
    assert (msg.body, msg.content_length) == (b"abcdefg", None)
