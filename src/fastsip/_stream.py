"""Framing of a SIP byte stream (TCP, TLS): split it into messages by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import re
from typing import Callable, Union

from ._grammar import DEFAULT_MAX_HEADERS, DEFAULT_MAX_SIZE
from .errors import ContentLengthError, MessageTooLarge, ParseError

__all__ = ["StreamParser"]

# Content-Length (or its compact form l) at the start of a header line.
_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_END_RE = re.compile(rb"\r?\n\r?\n")


class StreamParser:
    """Feed bytes from a stream, get whole messages back.

    CRLF keep-alives between messages are skipped; each double-CRLF ping
    (RFC 5626 §3.5.1) adds one to ``pings`` so the transport can answer it with a
    single CRLF. A message that outgrows ``max_size`` raises ``MessageTooLarge``.
    A missing Content-Length on a stream counts as 0.

    Two kinds of ``ParseError`` come out of ``feed``. When the stream cannot be framed
    (a Content-Length that is no number, a message over ``max_size``) it is out of sync
    and the connection must be closed. When one framed message is refused by the parser
    (a bad header, too many header lines), the stream is still in sync: the error carries
    ``framed`` (that message's bytes, to answer 400 or 513 on, RFC 3261 §16.3 / §21.5.11)
    and ``messages`` (those completed before it in this call); ``feed(b"")`` goes on with
    what is buffered after it. ``framed`` is None for the first kind.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        parse: Callable[..., object] | None = None,
    ) -> None:
        if parse is None:
            from ._parser import parse as active  # the active backend

            parse = active
        self._parse: Callable[..., object] = parse
        self._buf = bytearray()
        self._max_size = max_size
        self._max_headers = max_headers
        self.pings = 0
        self._breaks = bytearray()  # line breaks of a keep-alive run not yet counted as a ping

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[object]:
        """Add ``data``; return every message now complete, in order (possibly none)."""
        buf = self._buf
        buf += data
        out: list[object] = []
        while buf:
            # Keep-alives: skip line breaks before a start line; count CRLFCRLF pings.
            i = 0
            n = len(buf)
            while i < n and buf[i] in (13, 10):
                i += 1
            if i:
                # A ping may arrive in pieces (TCP keeps no message boundaries): the line breaks
                # of a run split over several feed() calls are counted together.
                run = self._breaks + buf[:i]
                pings = run.count(b"\r\n\r\n")
                self.pings += pings
                # The unfinished tail of the run waits for the next call, unless a start line
                # follows it here (then the run is over).
                self._breaks = run[run.rfind(b"\r\n\r\n") + 4:] if pings else run
                if i < n:
                    self._breaks = bytearray()
                del buf[:i]
                continue
            self._breaks = bytearray()
            end = _END_RE.search(buf)
            if end is None:
                if len(buf) > self._max_size:
                    raise MessageTooLarge(
                        f"header block larger than the limit of {self._max_size} bytes", self._max_size
                    )
                break
            head_end = end.end()
            length = 0
            for m in _CL_RE.finditer(buf, 0, end.start() + 1):
                raw = m.group(1).strip(b" \t")
                # As parse(): ASCII digits, leading zeros not counted against the 10 (RFC 4475 §3.1.1.1).
                if not raw.isdigit() or len(raw.lstrip(b"0")) > 10:
                    raise ContentLengthError("Content-Length is not a number", m.start(1))
                length = int(raw)
            total = head_end + length
            if total > self._max_size:
                raise MessageTooLarge(f"message of {total} bytes is larger than the limit of {self._max_size}", self._max_size)
            if len(buf) < total:
                break
            chunk = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(self._parse(chunk, max_size=self._max_size, max_headers=self._max_headers))
            except ParseError as exc:
                exc.framed = chunk
                exc.messages = out
                raise
        return out
