"""Pins on message framing found loose by mutation testing (mutmut over the pure-Python backend).

Framing is the split of a datagram into start line, header lines and body, and
the checks on Content-Length, size and header count (RFC 3261 §7, §18.3, §20.14),
plus StreamParser's framing of a TCP byte stream (§18.3). Each test runs on both
backends (the ``impl`` fixture): the pure-Python twin is the executable spec and the
compiled backend must agree with it to the byte, error offsets and messages included.

Many messages here carry a folded header (``X-Fold``): a folded line keeps the header
block off the fast path, so the exact line loop of parse() is the code under test.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from fastsip._stream import StreamParser
from fastsip.errors import (
    ContentLengthError,
    HeaderError,
    IncompleteMessage,
    MessageTooLarge,
    TooManyHeaders,
    TruncatedBody,
)

START = b"INVITE sip:a@b SIP/2.0\r\n"
# Via (1) + X-Fold (2): the fold sends the whole header block through the exact loop.
EXACT = START + b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Fold: a\r\n b\r\n"
EXACT_LEN = len(EXACT)  # 75: the offset of the first header line after EXACT


def _err(impl: ModuleType, data: bytes, cls: type, **kw: int) -> Exception:
    with pytest.raises(cls) as info:
        impl.parse(data, **kw)
    assert type(info.value) is cls
    return info.value


# --- size limit (RFC 3261 §18.3 leaves it to the implementation) -------------------


def test_max_size_at_limit_and_one_over(impl: ModuleType) -> None:
    data = START + b"\r\n"
    assert impl.parse(data, max_size=len(data)).method == "INVITE"
    e = _err(impl, data, MessageTooLarge, max_size=len(data) - 1)
    assert e.offset == len(data) - 1
    assert str(e) == f"message of {len(data)} bytes is larger than the limit of {len(data) - 1} (at byte {len(data) - 1})"


def test_parse_rejects_str(impl: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"^parse\(\) takes bytes, bytearray or memoryview$"):
        impl.parse("INVITE sip:a@b SIP/2.0\r\n\r\n")  # type: ignore[arg-type]


# --- §7.5: line breaks before the start line are ignored -----------------------------


@pytest.mark.parametrize("lead", [b"\n", b"\r\n", b"\r\n\r\n\n", b"\r"])
def test_leading_line_breaks_skipped(impl: ModuleType, lead: bytes) -> None:
    msg = impl.parse(lead + START + b"\r\n")
    assert msg.method == "INVITE"
    assert bytes(msg) == START + b"\r\n"


def test_only_line_breaks(impl: ModuleType) -> None:
    e = _err(impl, b"\r\n\r\n", IncompleteMessage)
    assert str(e) == "no message: empty or only line breaks (at byte 4)"


# --- start line: a raw reason phrase that is not UTF-8 (§7.2 reason is TEXT-UTF8) ---


def test_reason_phrase_invalid_utf8_replaced(impl: ModuleType) -> None:
    assert impl.parse(b"SIP/2.0 200 \xffok\r\n\r\n").reason == "\ufffdok"


# --- header lines (§7.3, §7.3.1) ----------------------------------------------------


def test_stray_cr_offset_is_the_first_one(impl: ModuleType) -> None:
    e = _err(impl, EXACT + b"X: a\rb\rc\r\n\r\n", HeaderError)
    assert e.offset == EXACT_LEN + 4
    assert str(e) == f"CR without LF inside a header line (at byte {EXACT_LEN + 4})"


def test_folded_value_trailing_whitespace_trimmed(impl: ModuleType) -> None:
    # §7.3.1: the continuation line's trailing SP/HTAB is not part of the value.
    msg = impl.parse(START + b"Subject: a\r\n  b \t \r\n\r\n")
    assert msg.headers.items() == [("Subject", "a b")]


def test_whitespace_only_continuation_line(impl: ModuleType) -> None:
    msg = impl.parse(START + b"Subject: a\r\n \t \r\n\r\n")
    assert msg.headers.items() == [("Subject", "a")]
    assert msg.header("Subject") == "a"


def test_header_value_trailing_whitespace_exact_loop(impl: ModuleType) -> None:
    msg = impl.parse(EXACT + b"Subject\t: a \t\r\n\r\n")
    assert msg.headers.items()[-1] == ("Subject", "a")


def test_uncached_header_name_exact_loop(impl: ModuleType) -> None:
    # A name seen nowhere else in the suite. (The fast path caches it before declining the
    # folded block; test_uncached_header_name_then_stray_cr covers the exact loop's own decode.)
    msg = impl.parse(EXACT + b"X-Framing-Pin-Qz7: v\r\n\r\n")
    assert msg.headers.items()[-1] == ("X-Framing-Pin-Qz7", "v")
    assert msg.header("x-framing-pin-qz7") == "v"


def test_uncached_header_name_then_stray_cr(impl: ModuleType) -> None:
    # A stray CR sends the block past the fast path before it caches any name, so the exact
    # loop decodes this (never seen) name itself and then reports the CR (§7.3: CRLF ends a line).
    line = b"X-Framing-Pin-Uncached-Q8: v\r\n"
    e = _err(impl, EXACT + line + b"X: a\rb\r\n\r\n", HeaderError)
    assert str(e) == f"CR without LF inside a header line (at byte {EXACT_LEN + len(line) + 4})"


def test_empty_value_continued_on_the_next_line(impl: ModuleType) -> None:
    # §7.3.1: "Subject:" with its value on a folded line; the value is just that line's text.
    msg = impl.parse(START + b"Subject: \r\n b\r\nOrganization: ab \r\n\r\n")
    assert msg.headers.items() == [("Subject", "b"), ("Organization", "ab")]


def test_header_line_without_colon(impl: ModuleType) -> None:
    # The colon on the next line must not count: the error is at this line's start.
    e = _err(impl, EXACT + b"Bogus\r\nX: y\r\n\r\n", HeaderError)
    assert str(e) == f"header line without a colon (at byte {EXACT_LEN})"


def test_invalid_header_name_character_offset(impl: ModuleType) -> None:
    e = _err(impl, EXACT + b"Abc@d: a\r\n\r\n", HeaderError)
    assert str(e) == f"invalid character in a header name (at byte {EXACT_LEN + 3})"


def test_continuation_before_first_header(impl: ModuleType) -> None:
    e = _err(impl, START + b" X: a\r\n\r\n", HeaderError)
    assert str(e) == f"continuation line before the first header (at byte {len(START)})"


def test_no_empty_line(impl: ModuleType) -> None:
    data = EXACT + b"X: y\r\n"
    e = _err(impl, data, IncompleteMessage)
    assert str(e) == f"no empty line after the headers (at byte {len(data)})"


@pytest.mark.parametrize("fold", [False, True])
def test_header_count_at_limit_and_one_over(impl: ModuleType, fold: bool) -> None:
    lines = [b"H%d: %d\r\n" % (i, i) for i in range(5)]
    if fold:
        lines[1] = b"H1: 1\r\n 1\r\n"
    data = START + b"".join(lines) + b"\r\n"
    assert len(impl.parse(data, max_headers=5).headers) == 5
    e = _err(impl, data, TooManyHeaders, max_headers=4)
    off = len(START) + sum(map(len, lines[:4]))  # the start of the fifth header line
    assert str(e) == f"more than 4 header lines (at byte {off})"


def test_exact_loop_segments_survive_an_edit(impl: ModuleType) -> None:
    # After an edit bytes() is rebuilt from the segments parse() recorded: start line,
    # each header line with its line break (folds included), the empty line, the body.
    head = EXACT + b"Subject: s\r\nContent-Length: 3\r\n"
    msg = impl.parse(head + b"\r\nabc")
    msg.append_header("X-New", "1")
    assert bytes(msg) == head + b"X-New: 1\r\n\r\nabc"
    assert [n for n, _ in msg.headers.items()] == ["Via", "X-Fold", "Subject", "Content-Length", "X-New"]


@pytest.mark.parametrize("data", [START + b"\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"SIP/2.0 180 \r\n\r\n"])
def test_fast_start_line_segment_survives_an_edit(impl: ModuleType, data: bytes) -> None:
    msg = impl.parse(data)
    msg.append_header("X-New", "1")
    assert bytes(msg) == data[:-2] + b"X-New: 1\r\n\r\n"


# --- Content-Length (§18.3, §20.14) --------------------------------------------------


def test_content_length_ten_digits_is_a_number(impl: ModuleType) -> None:
    # Ten significant digits are a number (the body is then short); eleven are not.
    data = EXACT + b"Content-Length: 1234567890\r\n\r\n"
    e = _err(impl, data, TruncatedBody)
    assert str(e) == f"Content-Length is 1234567890 but only 0 body bytes follow (at byte {len(data)})"
    data = EXACT + b"Content-Length: 12345678901\r\n\r\n"
    e = _err(impl, data, ContentLengthError)
    assert str(e) == f"Content-Length is not a number (at byte {EXACT_LEN + 16})"


def test_content_length_disagree_offset(impl: ModuleType) -> None:
    data = EXACT + b"Content-Length: 2\r\nl: 3\r\n\r\nabc"
    e = _err(impl, data, ContentLengthError)
    assert str(e) == f"Content-Length headers disagree (at byte {EXACT_LEN + 22})"


def test_content_length_larger_than_body(impl: ModuleType) -> None:
    data = EXACT + b"Content-Length: 5\r\n\r\nabc"
    e = _err(impl, data, TruncatedBody)
    assert str(e) == f"Content-Length is 5 but only 3 body bytes follow (at byte {len(data)})"


@pytest.mark.parametrize(
    ("cl", "body"),
    [(b"", b"abc\r\n"), (b"Content-Length: 0\r\n", b""), (b"Content-Length: 003\r\n", b"abc"), (b"l: 2\r\n", b"ab")],
)
def test_content_length_frames_the_body(impl: ModuleType, cl: bytes, body: bytes) -> None:
    # Absent: the body runs to the end of the datagram (§18.3); present: exactly that many bytes.
    msg = impl.parse(EXACT + cl + b"\r\nabc\r\n")
    assert msg.body == body


# --- StreamParser: framing a TCP/TLS byte stream by Content-Length (§18.3) -----------

MSG1 = START + b"Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc"
MSG2 = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n"


def _stream(impl: ModuleType, **kw: int) -> StreamParser:
    return StreamParser(parse=impl.parse, **kw)


def test_stream_split_at_every_byte_boundary(impl: ModuleType) -> None:
    data = MSG1 + b"\r\n\r\n" + MSG2
    ping = range(len(MSG1) + 1, len(MSG1) + 4)  # cuts inside the CRLFCRLF ping
    for cut in range(len(data) + 1):
        sp = _stream(impl)
        got = sp.feed(data[:cut]) + sp.feed(data[cut:])
        assert [bytes(m) for m in got] == [MSG1, MSG2], cut  # type: ignore[call-overload]
        assert sp.buffered == 0
        if cut not in ping:  # a ping split across feed() calls is not counted (reported)
            assert sp.pings == 1, cut


@pytest.mark.parametrize(("lead", "pings"), [(b"\r\n\r\n\n", 1), (b"\n", 0), (b"\r\n\r\n\r\n\r\n", 2), (b"\r\n", 0)])
def test_stream_keepalives_before_a_message(impl: ModuleType, lead: bytes, pings: int) -> None:
    # RFC 5626 §3.5.1: CRLFCRLF is a ping; any line breaks before a start line are skipped.
    sp = _stream(impl)
    (msg,) = sp.feed(lead + MSG1)
    assert msg.method == "INVITE" and msg.body == b"abc"  # type: ignore[attr-defined]
    assert sp.pings == pings


def test_stream_header_block_size_at_limit_and_one_over(impl: ModuleType) -> None:
    sp = _stream(impl, max_size=20)
    assert sp.feed(b"x" * 20) == [] and sp.buffered == 20
    with pytest.raises(MessageTooLarge) as info:
        sp.feed(b"x")
    assert str(info.value) == "header block larger than the limit of 20 bytes (at byte 20)"


def test_stream_message_size_at_limit_and_one_over(impl: ModuleType) -> None:
    (msg,) = _stream(impl, max_size=len(MSG1)).feed(MSG1)
    assert msg.body == b"abc"  # type: ignore[attr-defined]
    with pytest.raises(MessageTooLarge) as info:
        _stream(impl, max_size=len(MSG1) - 1).feed(MSG1)
    assert str(info.value) == f"message of {len(MSG1)} bytes is larger than the limit of {len(MSG1) - 1} (at byte {len(MSG1) - 1})"


@pytest.mark.parametrize("value", [b"3\x0c", b"X3", b"3X", b"12345678901", b""])
def test_stream_content_length_not_a_number(impl: ModuleType, value: bytes) -> None:
    head = START + b"Content-Length: " + value + b"\r\n\r\n"
    with pytest.raises(ContentLengthError) as info:
        _stream(impl).feed(head + b"abc")
    assert str(info.value) == f"Content-Length is not a number (at byte {len(START) + 16})"


@pytest.mark.parametrize("value", [b"5\x0c", b"X5", b"5\x0b"])
def test_stream_bad_content_length_fails_before_the_body_arrives(impl: ModuleType, value: bytes) -> None:
    # The stream must not wait for a body framed by a malformed Content-Length (§18.3):
    # only SP/HTAB around the digits are stripped.
    with pytest.raises(ContentLengthError) as info:
        _stream(impl).feed(START + b"Content-Length: " + value + b"\r\n\r\nabc")
    assert info.value.offset == len(START) + 16


def test_stream_content_length_ten_digits_and_leading_zeros(impl: ModuleType) -> None:
    # Ten significant digits are a number (then too large here); leading zeros do not count.
    with pytest.raises(MessageTooLarge):
        _stream(impl).feed(START + b"Content-Length: 1234567890\r\n\r\n")
    (msg,) = _stream(impl).feed(START + b"Content-Length: 000000000003\r\n\r\nabc")
    assert msg.body == b"abc"  # type: ignore[attr-defined]


def test_stream_passes_its_limits_to_parse(impl: ModuleType) -> None:
    from fastsip._grammar import DEFAULT_MAX_SIZE

    body = b"x" * DEFAULT_MAX_SIZE
    big = START + b"Content-Length: %d\r\n\r\n" % len(body) + body
    (msg,) = _stream(impl, max_size=2 * DEFAULT_MAX_SIZE).feed(big)
    assert msg.body == body  # type: ignore[attr-defined]
    with pytest.raises(TooManyHeaders):
        _stream(impl, max_headers=2).feed(START + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n")


@pytest.mark.parametrize("pieces", [
    [b"\r\n", b"\r\n"],
    [b"\r", b"\n\r", b"\n"],
    [b"\r\n\r", b"\nOPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n"],
])
def test_stream_counts_a_ping_split_across_feeds(impl, pieces):
    # RFC 5626 §3.5.1: TCP may deliver the CRLFCRLF ping in several segments; each ping is one pong.
    sp = StreamParser(parse=impl.parse)
    for piece in pieces:
        sp.feed(piece)
    assert sp.pings == 1


def test_stream_line_breaks_around_a_message_do_not_join_into_a_ping(impl):
    sp = StreamParser(parse=impl.parse)
    sp.feed(b"\r\n")
    assert len(sp.feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")) == 1
    sp.feed(b"\r\n")
    assert sp.pings == 0
