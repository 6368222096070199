"""Type stub of the Cython backend; it mirrors ``_parser_py`` (the spec) name for name."""

from typing import Iterable, Iterator, Literal, Union

__all__ = [
    "IMPLEMENTATION",
    "parse",
    "parse_uri",
    "make_response",
    "Message",
    "Request",
    "Response",
    "Headers",
    "SipURI",
    "AbsoluteURI",
    "Via",
    "NameAddr",
    "CSeq",
]

IMPLEMENTATION: Literal["c"]

class SipURI:
    """A sip: or sips: URI (RFC 3261 §19.1). ``str(uri)`` is the exact text it was parsed from."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None]
    headers: dict[str, str]
    def __init__(
        self,
        scheme: str,
        user: str | None,
        password: str | None,
        host: str,
        port: int | None,
        params: dict[str, str | None],
        headers: dict[str, str],
        raw: str,
    ) -> None: ...
    @property
    def transport(self) -> str | None:
        """The transport param, lower case, or None."""
    @property
    def lr(self) -> bool:
        """True when the URI carries the loose-routing ``lr`` param (RFC 3261 §19.1.1)."""
    @property
    def maddr(self) -> str | None:
        """The maddr param, or None."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class AbsoluteURI:
    """Any URI that is not sip:/sips: (tel:, urn:, mailto:, ...); keeps the raw text (RFC 3261 §25.1)."""

    scheme: str
    user: str | None
    params: dict[str, str | None]
    def __init__(self, scheme: str, user: str | None, params: dict[str, str | None], raw: str) -> None: ...
    @property
    def host(self) -> None: ...
    @property
    def port(self) -> None: ...
    @property
    def password(self) -> None: ...
    @property
    def headers(self) -> dict[str, str]:
        """Always a new empty dict."""
    @property
    def opaque(self) -> str:
        """Everything after the scheme's colon."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

URI = Union[SipURI, AbsoluteURI]

class Via:
    """One via-parm of a Via header (RFC 3261 §20.42), with RFC 3581 rport."""

    protocol: str
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]
    def __init__(
        self, protocol: str, transport: str, host: str, port: int | None, params: dict[str, str | None]
    ) -> None: ...
    @property
    def branch(self) -> str | None:
        """The branch param (RFC 3261 §8.1.1.7), or None."""
    @property
    def received(self) -> str | None:
        """The received param (RFC 3261 §18.2.1), or None."""
    @property
    def maddr(self) -> str | None:
        """The maddr param, or None."""
    @property
    def rport(self) -> int | bool | None:
        """RFC 3581: int when the value is filled in, True for a bare ``rport``, None when absent."""
    @property
    def ttl(self) -> int | None:
        """The ttl param as an int, or None."""
    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port`` as in the header."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]

class NameAddr:
    """A name-addr or addr-spec with header params: From, To, Contact, Route (RFC 3261 §20.10, §20.20)."""

    display: str | None
    uri: URI | None
    params: dict[str, str | None]
    wildcard: bool
    def __init__(
        self, display: str | None, uri: URI | None, params: dict[str, str | None], wildcard: bool = False
    ) -> None: ...
    @property
    def tag(self) -> str | None:
        """The tag param (RFC 3261 §19.3), or None."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]

class CSeq:
    """CSeq: sequence number and method (RFC 3261 §20.16)."""

    seq: int
    method: str
    def __init__(self, seq: int, method: str) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]

class Headers:
    """Case-insensitive multi-map of header values in wire order; compact names map to full names."""

    def __init__(self, items: list[tuple[str, str, str]]) -> None: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
    def getall(self, name: str) -> list[str]:
        """All values of ``name`` in wire order (one per header line); [] when absent."""
    def __getitem__(self, name: str) -> str:
        """The first value of ``name``; raises ``KeyError`` when absent."""
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]:
        """Header names in wire order (known headers under their RFC spelling)."""
    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in wire order; known headers under their RFC spelling."""
    def values(self) -> list[str]:
        """Header values in wire order."""

class Message:
    """Common base of ``Request`` and ``Response``: headers, body, lazy accessors, edits."""

    is_request: bool
    def __init__(self) -> None:
        """Always raises ``TypeError``: messages come from ``parse()``."""
    def __bytes__(self) -> bytes:
        """The message bytes: exactly the received ones while unmodified."""
    def to_bytes(self) -> bytes:
        """The message bytes (same as ``bytes(msg)``)."""
    @property
    def headers(self) -> Headers:
        """Every header value (unfolded, stripped, decoded) in wire order."""
    def header(self, name: str, default: str | None = None) -> str | None:
        """``headers.get(name, default)`` without building the ``headers`` view."""
    @property
    def body(self) -> bytes:
        """The body as framed by Content-Length."""
    @property
    def via(self) -> list[Via]:
        """Every via-parm in wire order; raises ``ViaError`` for a malformed one."""
    @property
    def from_(self) -> NameAddr | None:
        """The From header; raises ``NameAddrError`` or ``URIError`` when malformed."""
    @property
    def to(self) -> NameAddr | None:
        """The To header; raises ``NameAddrError`` or ``URIError`` when malformed."""
    @property
    def contact(self) -> list[NameAddr]:
        """Every Contact element (``wildcard`` for ``*``)."""
    @property
    def route(self) -> list[NameAddr]:
        """Every Route element in wire order."""
    @property
    def record_route(self) -> list[NameAddr]:
        """Every Record-Route element in wire order."""
    @property
    def cseq(self) -> CSeq | None:
        """The CSeq header; raises ``CSeqError`` when malformed."""
    @property
    def call_id(self) -> str | None:
        """The Call-ID; raises ``HeaderValueError`` when empty."""
    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int; raises ``NumberError`` unless 0-255."""
    @property
    def content_length(self) -> int | None:
        """Content-Length as an int (checked by ``parse``), or None."""
    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written, or None."""
    def validate(self) -> None:
        """Parse every header this library knows now; raises the first ``ParseError`` found."""
    def insert_header(self, name: str, value: str) -> None:
        """Insert ``name: value`` as the first header line (Via, Record-Route)."""
    def append_header(self, name: str, value: str) -> None:
        """Append ``name: value`` as the last header line."""
    def set_header(self, name: str, value: str) -> None:
        """Replace the value of the first ``name`` header, keeping its place and its name as written; append when absent."""
    def remove_header(self, name: str) -> int:
        """Remove every ``name`` header line; returns how many were removed."""
    def pop_via(self) -> Via | None:
        """Remove the top via-parm (just that element of a comma-joined Via); returns it, or None."""
    def pop_route(self) -> NameAddr | None:
        """Remove the first Route element; returns it, or None when there is no Route."""
    def set_via_param(self, name: str, value: str | None = None, index: int = 0) -> None:
        """Add or replace parameter ``name`` on the ``index``-th via-parm; raises ``IndexError`` when absent."""
    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length is set to match (and Content-Type when given)."""
    def copy(self) -> "Message":
        """An independent copy: edits to one do not show in the other."""

class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    method: str
    version: str
    @property
    def uri(self) -> URI:
        """The Request-URI, parsed on first access (raises ``URIError``)."""
    @property
    def raw_uri(self) -> str:
        """The Request-URI text as written."""
    def set_uri(self, uri: str) -> None:
        """Replace the Request-URI (the start line is rewritten, the rest kept)."""
    def copy(self) -> "Request": ...

class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    version: str
    def copy(self) -> "Response": ...

def parse(
    data: bytes | bytearray | memoryview, *, max_size: int = 65535, max_headers: int = 256
) -> Request | Response:
    """Parse one SIP message (one UDP datagram, or one message framed by ``StreamParser``).

    Returns a ``Request`` or ``Response``. Raises a ``ParseError`` subclass for any
    malformed input, with ``offset`` pointing at the problem; ``TypeError`` for
    anything but bytes, bytearray or memoryview.
    """

def _split_elements(value: str) -> list[str]:
    """A header value cut at its top-level commas (not inside quotes or <>), each part stripped;
    public as ``fastsip.split_values``."""

def parse_uri(text: str) -> URI:
    """Parse a SIP, SIPS or absolute URI.

    Returns a ``SipURI`` for sip:/sips:, else an ``AbsoluteURI``.
    Raises ``URIError`` (a ``ParseError``) when the text is not a URI.
    """

def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build the response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via, To (adding ``;tag=to_tag`` when given and To has none),
    From, Call-ID and CSeq; then ``headers``, Content-Type when there is a body,
    and Content-Length. Returns the parsed ``Response``. Raises ``ValueError``
    for a status outside 100-699.
    """
