"""The exception hierarchy shared by both parser backends: every parse failure is a ParseError."""

from __future__ import annotations

__all__ = [
    "ParseError",
    "MessageTooLarge",
    "TooManyHeaders",
    "StartLineError",
    "HeaderError",
    "MissingHeaders",
    "IncompleteMessage",
    "TruncatedBody",
    "ContentLengthError",
    "URIError",
    "HeaderValueError",
    "ViaError",
    "NameAddrError",
    "CSeqError",
    "NumberError",
]


class ParseError(ValueError):
    """Malformed SIP input: the sender's fault.

    ``offset`` is the byte offset (in the message, or in the text given to
    ``parse_uri``) where the problem was found; ``status_hint`` is the response a
    server should answer with (400 Bad Request, or 513 Message Too Large).
    """

    status_hint: int = 400
    # Set by StreamParser.feed when one framed message was refused and the stream is still in
    # sync: that message's bytes, and the messages completed before it in the same call.
    framed: bytes | None = None
    messages: list[object] | tuple[()] = ()

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.message} (at byte {self.offset})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.offset))


class MessageTooLarge(ParseError):
    """The message is larger than the configured maximum (RFC 3261 §21.5.11)."""

    status_hint = 513


class TooManyHeaders(ParseError):
    """More header lines than the configured maximum."""

    status_hint = 513


class StartLineError(ParseError):
    """The Request-Line or Status-Line is malformed (RFC 3261 §7.1, §7.2)."""


class HeaderError(ParseError):
    """A header line is malformed: no colon, bad name, stray folding, bare CR."""


class MissingHeaders(ParseError):
    """A request lacks headers RFC 3261 §8.1.1 requires; ``missing`` names them (RFC spelling, RFC order).

    Raised by ``validate()``. ``offset`` is where the header block ends (where they would have been).
    """

    missing: tuple[str, ...] = ()

    def __init__(self, message: str, offset: int = 0, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message, offset)
        self.missing = tuple(missing)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.offset, self.missing))


class IncompleteMessage(ParseError):
    """The bytes end before the message does (no empty line after the headers)."""


class TruncatedBody(IncompleteMessage):
    """Fewer body bytes than Content-Length says (RFC 3261 §18.3: an error on UDP)."""


class ContentLengthError(ParseError):
    """Content-Length is not a number, or several disagree."""


class URIError(ParseError):
    """A SIP or absolute URI is malformed (RFC 3261 §19.1, §25.1)."""


class HeaderValueError(ParseError):
    """A header value does not follow its grammar; ``header`` names the header."""

    header: str = ""

    def __init__(self, message: str, offset: int = 0, header: str = "") -> None:
        super().__init__(message, offset)
        self.header = header

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.offset, self.header))


class ViaError(HeaderValueError):
    """A Via value is malformed (RFC 3261 §20.42)."""


class NameAddrError(HeaderValueError):
    """A From/To/Contact/Route/Record-Route value is malformed (RFC 3261 §20.10)."""


class CSeqError(HeaderValueError):
    """A CSeq value is malformed (RFC 3261 §20.16)."""


class NumberError(HeaderValueError):
    """A numeric header (Max-Forwards, Expires) is not a valid number."""
