"""The pure-Python reference backend: readable, complete, and the executable spec the Cython backend matches.

Design (shared with ``_parser_c.pyx``):

* ``parse`` frames one message (RFC 3261 §7, §18.3): it checks the size, the start
  line, every header line and Content-Length, and builds the header index: each
  line's lookup key and value (``_light_headers``). Nothing else is decoded yet.
  Where each header line sits in the buffer (``_Field``, for edits and for error
  offsets) is worked out on first need; for a block the index does not take (folding,
  bare LF, a malformed line) parse() scans the fields at once, errors included.
* Header values are parsed on first access (Kamailio's ``parse_headers(flags)``
  idea) and cached; a malformed value raises its ``ParseError`` subclass then.
* A message is a list of *segments* (start line, one per header line, the empty
  line plus body). Each segment is a slice of some buffer: the received bytes for
  untouched lines, a small new buffer for lines an edit wrote. Serializing joins
  the slices, merging neighbours that are contiguous in the received buffer, so
  an unmodified message costs one slice and an edited one a handful.
* Offsets in errors are absolute byte offsets in the message buffer. Inside a
  header value they count from the value's first byte through the unfolded value.
* Speed without a second spec: the common well-formed shapes (request line, a plain
  header block, one Via, a sip: URI, a <name-addr>, CSeq) are taken by one regex each
  (the ``_FAST_*`` names); everything else falls back to the exact scanners, which
  define behaviour and raise every error. tests/fastsip/test_fastpath.py holds the
  fast paths to giving exactly what the exact scanners give.
"""

from __future__ import annotations

import re
from functools import partial
from operator import itemgetter
from typing import Iterable, Iterator, NamedTuple, Union

from ._grammar import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_SIZE,
    REASON_PHRASES,
    REQUIRED_REQUEST_HEADERS,
    SINGLE_HEADERS,
    TOKEN_CHARS,
    display_name,
    header_key,
    ipv6_ok,
)
from ._grammar import uint_value as _uint
from .errors import (
    ContentLengthError,
    CSeqError,
    HeaderError,
    HeaderValueError,
    IncompleteMessage,
    MessageTooLarge,
    MissingHeaders,
    NameAddrError,
    NumberError,
    ParseError,
    StartLineError,
    TooManyHeaders,
    TruncatedBody,
    URIError,
    ViaError,
)

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

IMPLEMENTATION = "py"

_TOKEN_STR = frozenset(chr(c) for c in TOKEN_CHARS)
_WS = " \t"
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Characters never allowed inside a URI as written (RFC 3986 excludes them; RFC 3261 §19.1.1).
_URI_FORBIDDEN = frozenset(' \t\r\n"<>\\^`{|}\x00')
# A generic parameter value ends at one of these (gen-value = token / host / quoted-string).
_PARAM_VALUE_END = frozenset(";,? \t<>\"")
# RFC 3261 §7.3.1: a line break followed by whitespace (possibly several, possibly
# with whitespace-only lines between) is one LWS, replaced by a single space.
_FOLD_RE = re.compile(rb"[ \t]*(?:\r?\n[ \t]+)+")
# The scanners below run in C through re; each mirrors a C loop of the Cython backend.
_WS_RE = re.compile(r"[ \t]*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]*")
_HOST_RE = re.compile(r"[A-Za-z0-9\-._]*")
_DIGITS_RE = re.compile(r"[0-9]*")
_PARAM_VALUE_RE = re.compile(r'[^;,? \t<>"]*')
_URI_FORBIDDEN_RE = re.compile('[ \t\r\n"<>\\\\^`{|}\x00]')
_TOKEN_BYTES = bytes(sorted(TOKEN_CHARS))

# --- Fast paths ----------------------------------------------------------------------
# Each _FAST_*_RE matches, in one C call, only a common well-formed shape for which the
# code after it yields exactly what the exact scanner yields (values, types, params order,
# lower-casing, first duplicate wins). Anything else -- quotes, escapes, IPv6, folding,
# odd whitespace, every malformed input -- falls back to the exact scanner, which defines
# behaviour and produces the errors. tests/fastsip/test_fastpath.py proves fast == exact.
# An optional group is written (?:x|), not (?:x)?: both try x first and then nothing, so
# they match alike, but sre runs "?" on a group through its general repeat machinery and
# "|" as a plain branch, a third cheaper per fullmatch here (bench/stmt_instructions.py).
_TOKEN_CLASS = r"A-Za-z0-9\-.!%*_+`'~"
# Request-Line: token SP run-of-visible-bytes SP "SIP/2.0" [CR] LF (no control character).
_FAST_REQUEST_LINE_RE = re.compile(rb"([" + _TOKEN_CLASS.encode() + rb"]+) ([^\x00-\x20\x7f]+) SIP/2\.0\r?\n")
# Status-Line: "SIP/2.0" SP 3 digits from 100 to 699 [SP reason without control
# characters but tab] [CR] LF. Groups: the code, the reason (None when absent).
_FAST_STATUS_LINE_RE = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*)|)\r?\n")
# Header line: token [WS] ":" [WS] rest-of-line LF. Groups: the name with the separator,
# the name, the rest of the line without its LF (the value plus any trailing whitespace
# and CR). A folded line does not start with a token. The rest is scanned as [^\n]*
# (sre's fast single-byte loop), so it may hold a CR: _fast_header_lines gives up when
# _STRAY_CR_RE finds a CR that is not right before an LF.
_STRAY_CR_RE = re.compile(rb"\r(?!\n)")
_FAST_HEADER_LINE_RE = re.compile(rb"(([" + _TOKEN_CLASS.encode() + rb"]+)[ \t]*:[ \t]*)([^\n]*)\n")
# One generic param without whitespace, quotes or an IPv6 value: ";" token ["=" value].
# A value starting with "[" takes a different exact path, so "[" is left out altogether.
# Names are lower case here (the common case): _fast_params need not lower them.
_LOWER_TOKEN_CLASS = r"a-z0-9\-.!%*_+`'~"
_PARAM_VALUE_CLASS = r"^;,? \t<>\"\["


def _fast_params_re(name_class: str, value_class: str) -> str:
    """Regex text for *(";" name ["=" value]): the first two params as groups (name, value, name,
    value; a value group is None when the param has none), then the rest as one group. Most
    params lists hold one or two, and _fast_params then needs no splitting.

    The rest is written (|(?:...)+), empty first, so that the common short list never enters
    sre's repeat machinery. That alternative order cannot change a fullmatch's groups: what
    follows a params list in every fast regex is the end or a ">", which no param holds, and
    ";" splits the list one way only (no name or value holds one).
    """
    one = f";([{name_class}]+)(?:=([{value_class}]+)|)"
    rest = f";[{name_class}]+(?:=[{value_class}]+|)"
    return f"(?:{one}(?:{one}|)|)(|(?:{rest})+)"


_FAST_PARAMS = _fast_params_re(_LOWER_TOKEN_CLASS, _PARAM_VALUE_CLASS)
# A sip:/sips: URI: scheme ":" [user [":" password] "@"] hostname/IPv4 [":" port] *(";" param),
# no %-escape, no "?headers", no IPv6. Every class leaves out "@" (the exact parser splits
# userinfo at the first "@" anywhere), "%" (escape checks) and the characters a URI may not
# hold. The scheme and the param names are lower case (upper case goes the exact way).
# Groups: scheme, user, password, host, port, then the five of _fast_params_re.
_FAST_URI = (
    r"(sips?):"
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)(?::([A-Za-z0-9\-_.!~*'()&=+$,]*)|)@|)"
    r"([A-Za-z0-9\-._]+)(?::([0-9]{1,5})|)"
    + _fast_params_re(r"a-z0-9\-.!*_+'~", r"A-Za-z0-9\-.!*_+'~:/=&$()")
)
_FAST_URI_RE = re.compile(_FAST_URI)
# One via-parm: protocol "/" version "/" transport WS host [":" port] *param, nothing else
# (no comma-joined second via-parm, no IPv6, no whitespace around "/", ":" or ";").
# Groups: protocol name and version, transport, host, port, then the five params groups.
_FAST_VIA_RE = re.compile(
    r"([" + _TOKEN_CLASS + r"]+/[" + _TOKEN_CLASS + r"]+)/([" + _TOKEN_CLASS + r"]+)[ \t]+"
    r"([A-Za-z0-9\-._]+)(?::([0-9]{1,5})|)" + _FAST_PARAMS
)
# One name-addr: ['"' display without escapes '"' [WS] / tokens separated by WS [WS]]
# "<" fast URI ">" *param, nothing else (no addr-spec, no comma-joined list).
# Groups: quoted display, token display, the URI text, the ten URI groups, the five params groups.
_FAST_NAME_ADDR_RE = re.compile(
    r'(?:"([^"\\]*)"[ \t]*|([' + _TOKEN_CLASS + r"]+(?:[ \t]+[" + _TOKEN_CLASS + r"]+)*)[ \t]*|)"
    r"<(" + _FAST_URI + r")>" + _FAST_PARAMS
)
# CSeq: 1-10 digits, WS, a token method.
_FAST_CSEQ_RE = re.compile(r"([0-9]{1,10})[ \t]+([" + _TOKEN_CLASS + r"]+)")
# Header name as received -> (lookup key, name as str); bounded so hostile input cannot grow it.
_NAME_CACHE: dict[bytes, tuple[str, str]] = {}
_NAME_CACHE_MAX = 2048
_MAX_PORT = 65535
_MAX_CSEQ = 2**31 - 1


def _decode(raw: bytes) -> str:
    """Header values and reason phrases are UTF-8 (RFC 3261 §25.1 TEXT-UTF8); never fail on bad bytes."""
    return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------


class SipURI:
    """A sip: or sips: URI (RFC 3261 §19.1). ``str(uri)`` is the exact text it was parsed from."""

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "_raw")

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
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params
        self.headers = headers
        self._raw = raw

    @property
    def transport(self) -> str | None:
        """The transport param, lower case, or None."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        """True when the URI carries the loose-routing ``lr`` param (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    def __str__(self) -> str:
        return self._raw

    def __repr__(self) -> str:
        return f"SipURI({self._raw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (SipURI, AbsoluteURI)) and type(other).__name__ not in ("SipURI", "AbsoluteURI"):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._raw)


class AbsoluteURI:
    """Any URI that is not sip:/sips: (tel:, urn:, mailto:, ...); keeps the raw text (RFC 3261 §25.1)."""

    __slots__ = ("scheme", "user", "params", "_raw")

    def __init__(self, scheme: str, user: str | None, params: dict[str, str | None], raw: str) -> None:
        self.scheme = scheme
        self.user = user
        self.params = params
        self._raw = raw

    host = None
    port = None
    password = None

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def opaque(self) -> str:
        """Everything after the scheme's colon."""
        return self._raw[len(self.scheme) + 1 :]

    def __str__(self) -> str:
        return self._raw

    def __repr__(self) -> str:
        return f"AbsoluteURI({self._raw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (SipURI, AbsoluteURI)) and type(other).__name__ not in ("SipURI", "AbsoluteURI"):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._raw)


URI = Union[SipURI, AbsoluteURI]


class Via:
    """One via-parm of a Via header (RFC 3261 §20.42), with RFC 3581 rport."""

    __slots__ = ("protocol", "transport", "host", "port", "params")

    def __init__(
        self, protocol: str, transport: str, host: str, port: int | None, params: dict[str, str | None]
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581: int when the value is filled in, True for a bare ``rport``, None when absent."""
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        return True if value is None else int(value)

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return None if value is None else int(value)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Via({self.protocol}/{self.transport} {self.sent_by} {self.params!r})"

    def __eq__(self, other: object) -> bool:
        if type(other).__name__ != "Via":
            return NotImplemented
        o: Via = other  # type: ignore[assignment]
        return (self.protocol, self.transport, self.host, self.port, self.params) == (
            o.protocol, o.transport, o.host, o.port, o.params,
        )

    __hash__ = None  # type: ignore[assignment]


class NameAddr:
    """A name-addr or addr-spec with header params: From, To, Contact, Route (RFC 3261 §20.10, §20.20)."""

    __slots__ = ("display", "uri", "params", "wildcard")

    def __init__(
        self, display: str | None, uri: URI | None, params: dict[str, str | None], wildcard: bool = False
    ) -> None:
        self.display = display
        self.uri = uri
        self.params = params
        self.wildcard = wildcard

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __repr__(self) -> str:
        if self.wildcard:
            return "NameAddr(*)"
        return f"NameAddr({self.display!r}, {self.uri!r}, {self.params!r})"

    def __eq__(self, other: object) -> bool:
        if type(other).__name__ != "NameAddr":
            return NotImplemented
        o: NameAddr = other  # type: ignore[assignment]
        return (self.display, self.uri, self.params, self.wildcard) == (o.display, o.uri, o.params, o.wildcard)

    __hash__ = None  # type: ignore[assignment]


class CSeq:
    """CSeq: sequence number and method (RFC 3261 §20.16)."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if type(other).__name__ != "CSeq":
            return NotImplemented
        o: CSeq = other  # type: ignore[assignment]
        return self.seq == o.seq and self.method == o.method

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------
# Small scanners over decoded header values
# ---------------------------------------------------------------------------


def _skip_ws(s: str, i: int) -> int:
    return _WS_RE.match(s, i).end()  # type: ignore[union-attr]


def _scan_token(s: str, i: int) -> int:
    return _TOKEN_RE.match(s, i).end()  # type: ignore[union-attr]


def _scan_quoted(s: str, i: int, err: type[ParseError], base: int, header: str) -> tuple[int, str]:
    """``s[i]`` is the opening quote; returns (index after the closing quote, unescaped content).

    RFC 3261 §25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE; quoted-pair = "\\" char.
    """
    n = len(s)
    j = i + 1
    out: list[str] = []
    while j < n:
        c = s[j]
        if c == '"':
            return j + 1, "".join(out)
        if c == "\\":
            if j + 1 >= n:
                break
            out.append(s[j + 1])
            j += 2
            continue
        out.append(c)
        j += 1
    raise _value_error(err, "unterminated quoted string", base + i, header)


def _value_error(err: type[ParseError], message: str, offset: int, header: str) -> ParseError:
    if issubclass(err, HeaderValueError):
        return err(f"{header}: {message}", offset, header)
    return err(message, offset)


def _parse_params(
    s: str, i: int, base: int, err: type[ParseError], header: str, stop: str = ","
) -> tuple[int, dict[str, str | None]]:
    """Parse ``*( SEMI name [EQUAL value] )`` from ``s[i]``; values are kept as written (quotes too).

    Returns the index of the first character that is not part of the params (a
    character in ``stop`` or the end). The first of repeated names wins.
    """
    params: dict[str, str | None] = {}
    n = len(s)
    i = _skip_ws(s, i)
    while i < n and s[i] == ";":
        i = _skip_ws(s, i + 1)
        j = _scan_token(s, i)
        if j == i:
            raise _value_error(err, "empty parameter name", base + i, header)
        name = s[i:j].lower()
        i = _skip_ws(s, j)
        value: str | None = None
        if i < n and s[i] == "=":
            i = _skip_ws(s, i + 1)
            if i < n and s[i] == '"':
                j, _ = _scan_quoted(s, i, err, base, header)
            elif i < n and s[i] == "[":
                j = s.find("]", i)
                if j < 0:
                    raise _value_error(err, "unterminated IPv6 reference in parameter", base + i, header)
                j += 1
            else:
                j = _PARAM_VALUE_RE.match(s, i).end()  # type: ignore[union-attr]
            if j == i:
                raise _value_error(err, f"empty value for parameter {name!r}", base + i, header)
            value = s[i:j]
            i = _skip_ws(s, j)
        if name not in params:
            params[name] = value
    if i < n and s[i] not in stop:
        raise _value_error(err, f"unexpected character {s[i]!r}", base + i, header)
    return i, params


def _scan_host(s: str, i: int, end: int, err: type[ParseError], base: int, header: str) -> int:
    """Scan a host (hostname, IPv4 or bracketed IPv6 reference, RFC 3261 §25.1); returns the end index."""
    if i < end and s[i] == "[":
        j = s.find("]", i, end)
        if j < 0:
            raise _value_error(err, "unterminated IPv6 reference", base + i, header)
        inner = s[i + 1 : j]
        if not inner or ":" not in inner or any(c not in _IPV6_CHARS for c in inner) or not ipv6_ok(inner):
            raise _value_error(err, "invalid IPv6 reference", base + i, header)
        return j + 1
    j = _HOST_RE.match(s, i, end).end()  # type: ignore[union-attr]
    if j == i:
        raise _value_error(err, "missing host", base + i, header)
    return j


def _scan_port(s: str, i: int, end: int, err: type[ParseError], base: int, header: str) -> tuple[int, int]:
    j = _DIGITS_RE.match(s, i, end).end()  # type: ignore[union-attr]
    port = _uint(s[i:j], _MAX_PORT, 5)
    if port is None:
        raise _value_error(err, "invalid port", base + i, header)
    return j, port


# ---------------------------------------------------------------------------
# Fast paths (see _FAST_*_RE above): None means "not a shape I take", never an error
# ---------------------------------------------------------------------------


def _fast_params(
    n1: str | None, v1: str | None, n2: str | None, v2: str | None, rest: str
) -> dict[str, str | None] | None:
    """The params dict from the five groups of _fast_params_re; None on a repeated name.

    (The exact path keeps the first of repeated names; that case is left to it.)
    """
    if n1 is None:
        return {}
    if n2 is None:
        return {n1: v1}
    if n1 == n2:
        return None
    params: dict[str, str | None] = {n1: v1, n2: v2}
    if rest:
        # rest matched (;name[=value])*, where a value holds no ";" and a name no "=" and no
        # upper case: so split and partition cut it exactly where the exact scanner does, and
        # the names are already what it makes of them.
        parts = rest.split(";")
        for part in parts:
            name, eq, value = part.partition("=")
            params[name] = value if eq else None
        del params[""]  # before the first ";"
        if len(params) != len(parts) + 1:
            return None
    return params


# The value objects of the fast paths are made as __reduce__ and copy make them: object.__new__
# and one store per slot, without the Python-level __init__ call (a third of a small parse).
_new = object.__new__


def _fast_sip_uri(
    raw: str,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: str | None,
    n1: str | None,
    v1: str | None,
    n2: str | None,
    v2: str | None,
    rest: str,
) -> SipURI | None:
    """Build a SipURI from the groups of _FAST_URI; None when the exact parser must decide."""
    params = _fast_params(n1, v1, n2, v2, rest)
    if params is None:
        return None
    u = _new(SipURI)
    if port is None:
        u.port = None
    else:
        p = int(port)
        if p > _MAX_PORT:
            return None
        u.port = p
    u.scheme = scheme
    u.user = user
    u.password = password
    u.host = host
    u.params = params
    u.headers = {}
    u._raw = raw
    return u


def _fast_uri(s: str) -> SipURI | None:
    m = _FAST_URI_RE.fullmatch(s)
    return None if m is None else _fast_sip_uri(s, *m.groups())


def _fast_via(s: str) -> Via | None:
    """One via-parm in the common shape (see _FAST_VIA_RE), else None."""
    m = _FAST_VIA_RE.fullmatch(s)
    if m is None:
        return None
    protocol, transport, host, port, n1, v1, n2, v2, rest = m.groups()
    v = _new(Via)
    if n1 is not None:
        params = _fast_params(n1, v1, n2, v2, rest)
        if params is None:
            return None
        # RFC 3581 rport and ttl must be numbers in range; the exact path raises otherwise.
        rport = params.get("rport")
        if rport is not None and not (
            len(rport) <= 5 and rport.isascii() and rport.isdigit() and int(rport) <= _MAX_PORT
        ):
            return None
        ttl = params.get("ttl")
        if ttl is not None and not (len(ttl) <= 3 and ttl.isascii() and ttl.isdigit() and int(ttl) <= 255):
            return None
        v.params = params
    else:
        v.params = {}
    if port is None:
        v.port = None
    else:
        p = int(port)
        if p > _MAX_PORT:
            return None
        v.port = p
    v.protocol = protocol
    v.transport = transport.upper()
    v.host = host
    return v


def _fast_name_addr(s: str) -> NameAddr | None:
    """One name-addr in the common shape (see _FAST_NAME_ADDR_RE), else None."""
    m = _FAST_NAME_ADDR_RE.fullmatch(s)
    if m is None:
        return None
    g = m.groups()
    uri = _fast_sip_uri(*g[2:13])
    if uri is None:
        return None
    params = _fast_params(*g[13:])
    if params is None:
        return None
    na = _new(NameAddr)
    na.params = params
    quoted = g[0]
    na.display = quoted if quoted is not None else g[1]
    na.uri = uri
    na.wildcard = False
    return na


def _fast_cseq(s: str) -> CSeq | None:
    m = _FAST_CSEQ_RE.fullmatch(s)
    if m is None:
        return None
    seq = int(m[1])
    if seq > _MAX_CSEQ:
        return None
    c = _new(CSeq)
    c.seq = seq
    c.method = m[2]
    return c


# ---------------------------------------------------------------------------
# URIs (RFC 3261 §19.1, §25.1)
# ---------------------------------------------------------------------------


def _check_escapes(s: str, start: int, end: int, base: int) -> None:
    """Every '%' in ``s[start:end]`` must start a %HEX HEX escape (RFC 3261 §25.1 escaped)."""
    i = s.find("%", start, end)
    while i >= 0:
        if i + 2 >= end or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
            raise URIError("invalid %-escape in URI", base + i)
        i = s.find("%", i + 3, end)


def _parse_uri(s: str, base: int = 0) -> URI:
    fast = _fast_uri(s)
    if fast is not None:
        return fast
    n = len(s)
    if n == 0:
        raise URIError("empty URI", base)
    bad = _URI_FORBIDDEN_RE.search(s)
    if bad is not None:
        raise URIError(f"character {bad.group()!r} not allowed in a URI", base + bad.start())
    colon = s.find(":")
    if colon <= 0 or s[0] not in _ALPHA or any(c not in _SCHEME_CHARS for c in s[:colon]):
        raise URIError("URI without a valid scheme", base)
    scheme = s[:colon].lower()
    if scheme not in ("sip", "sips"):
        if colon + 1 >= n:
            raise URIError(f"empty {scheme}: URI", base + colon + 1)
        user: str | None = None
        params: dict[str, str | None] = {}
        if scheme == "tel":
            semi = s.find(";", colon + 1)
            user = s[colon + 1 : semi if semi >= 0 else n]
            if not user:
                raise URIError("tel: URI without a number", base + colon + 1)
            if semi >= 0:
                _, params = _parse_params(s, semi, base, URIError, "", stop="")
        return AbsoluteURI(scheme, user, params, s)

    i = colon + 1
    # userinfo ends at the first '@' (the host, params and headers cannot hold one unescaped).
    at = s.find("@", i)
    user = password = None
    if at >= 0:
        info_end = at
        pc = s.find(":", i, at)
        if pc >= 0:
            user, password = s[i:pc], s[pc + 1 : at]
        else:
            user = s[i:at]
        if not user:
            raise URIError("empty user part before '@'", base + i)
        _check_escapes(s, i, info_end, base)
        i = at + 1
    h_end = _scan_host(s, i, n, URIError, base, "")
    host = s[i:h_end]
    i = h_end
    port: int | None = None
    if i < n and s[i] == ":":
        i, port = _scan_port(s, i + 1, n, URIError, base, "")
    params = {}
    if i < n and s[i] == ";":
        q = s.find("?", i)
        pend = q if q >= 0 else n
        j, params = _parse_params(s[:pend], i, base, URIError, "", stop="")
        _check_escapes(s, i, pend, base)
        i = pend
    headers: dict[str, str] = {}
    if i < n and s[i] == "?":
        _check_escapes(s, i, n, base)
        for part in s[i + 1 :].split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            if not name:
                raise URIError("empty URI header name", base + i)
            headers.setdefault(name, value)
        i = n
    if i != n:
        raise URIError(f"unexpected character {s[i]!r} in URI", base + i)
    return SipURI(scheme, user, password, host, port, params, headers, s)


def parse_uri(text: str) -> URI:
    """Parse a SIP, SIPS or absolute URI.

    Returns a ``SipURI`` for sip:/sips:, else an ``AbsoluteURI``.
    Raises ``URIError`` (a ``ParseError``) when the text is not a URI.
    """
    if not isinstance(text, str):
        raise TypeError("parse_uri() takes a str")
    return _parse_uri(text, 0)


# ---------------------------------------------------------------------------
# Header value parsers
# ---------------------------------------------------------------------------


def _parse_vias(s: str, base: int, out: list[Via]) -> None:
    """RFC 3261 §20.42: via-parm *(COMMA via-parm); appends to ``out``."""
    fast = _fast_via(s)
    if fast is not None:
        out.append(fast)
        return
    n = len(s)
    i = 0
    while True:
        i = _skip_ws(s, i)
        element = i  # errors in params point at the via-parm that holds them
        parts = []
        for k in range(3):
            j = _scan_token(s, i)
            if j == i:
                what = ("protocol name", "protocol version", "transport")[k]
                raise ViaError(f"Via: missing {what}", base + i, "Via")
            parts.append(s[i:j])
            i = _skip_ws(s, j)
            if k < 2:
                if i >= n or s[i] != "/":
                    raise ViaError("Via: expected '/' in sent-protocol", base + i, "Via")
                i = _skip_ws(s, i + 1)
        if i == j:
            raise ViaError("Via: missing space before sent-by", base + i, "Via")
        h_end = _scan_host(s, i, n, ViaError, base, "Via")
        host = s[i:h_end]
        i = _skip_ws(s, h_end)
        port: int | None = None
        if i < n and s[i] == ":":
            i, port = _scan_port(s, _skip_ws(s, i + 1), n, ViaError, base, "Via")
        i, params = _parse_params(s, i, base, ViaError, "Via")
        rport = params.get("rport", "")
        if rport is not None and rport != "" and _uint(rport, _MAX_PORT, 5) is None:
            raise ViaError("Via: invalid rport", base + element, "Via")
        ttl = params.get("ttl")
        if ttl is not None and _uint(ttl, 255, 3) is None:
            raise ViaError("Via: invalid ttl", base + element, "Via")
        out.append(Via(f"{parts[0]}/{parts[1]}", parts[2].upper(), host, port, params))
        if i >= n:
            return
        # s[i] == "," here: _parse_params stops only at a comma or the end.
        i += 1


def _parse_name_addrs(s: str, base: int, header: str, multi: bool, out: list[NameAddr]) -> None:
    """RFC 3261 §20.10/§20.20: (name-addr / addr-spec) *(SEMI param), comma-separated when ``multi``."""
    # A whole value the fast path takes is one element, so ``multi`` does not matter.
    fast = _fast_name_addr(s)
    if fast is not None:
        out.append(fast)
        return
    n = len(s)
    i = 0
    while True:
        i = _skip_ws(s, i)
        if i >= n:
            raise NameAddrError(f"{header}: empty value", base + i, header)
        display: str | None = None
        if s[i] == '"':
            i, display = _scan_quoted(s, i, NameAddrError, base, header)
            i = _skip_ws(s, i)
            if i >= n or s[i] != "<":
                raise NameAddrError(f"{header}: expected '<' after display name", base + i, header)
        else:
            j = i
            while j < n and (s[j] in _TOKEN_STR or s[j] in _WS):
                j += 1
            if j < n and s[j] == "<":
                display = s[i:j].strip(_WS) or None
                i = j
        if s[i] == "<":
            close = s.find(">", i + 1)
            if close < 0:
                raise NameAddrError(f"{header}: missing '>'", base + i, header)
            uri = _parse_uri(s[i + 1 : close], base + i + 1)
            i = close + 1
        else:
            # addr-spec: no <>, so the URI cannot hold ';', ',' or '?' (RFC 3261 §20.10).
            j = i
            while j < n and s[j] not in ";, \t":
                j += 1
            q = s.find("?", i, j)
            if q >= 0:
                # RFC 3261 §20.10; RFC 4475 §3.1.2.13 (regbadct): the <> cannot be guessed in general.
                raise NameAddrError(f"{header}: a URI with headers must be enclosed in <>", base + q, header)
            uri = _parse_uri(s[i:j], base + i)
            i = j
        i, params = _parse_params(s, i, base, NameAddrError, header, stop="," if multi else "")
        out.append(NameAddr(display, uri, params))
        if i >= n:
            return
        i += 1  # past the comma


# ---------------------------------------------------------------------------
# Message model
# ---------------------------------------------------------------------------


class _Field(NamedTuple):
    """One header line: its lookup key, name as written, and where its line and value sit in ``buf``.

    A tuple, so that parse() builds one in a single C call (``_new_field``).
    """

    key: str
    name: str
    buf: bytes
    ls: int  # line start
    vs: int  # value start (after the colon, leading whitespace skipped)
    ve: int  # value end (before the line break, trailing whitespace dropped)
    le: int  # line end (after the line break)

    @classmethod
    def new(cls, name: str, value: str) -> "_Field":
        bname = name.encode("utf-8")
        bvalue = value.encode("utf-8")
        buf = bname + b": " + bvalue + b"\r\n"
        vs = len(bname) + 2
        return cls(header_key(name), name, buf, 0, vs, vs + len(bvalue), len(buf))

    def raw_value(self) -> bytes:
        raw = self.buf[self.vs : self.ve]
        if b"\n" in raw:
            raw = _FOLD_RE.sub(b" ", raw)
        return raw

    def value(self) -> str:
        # _decode(self.raw_value()), written out: it is called for every header read.
        raw = self.buf[self.vs : self.ve]
        if b"\n" in raw:
            raw = _FOLD_RE.sub(b" ", raw)
        return raw.decode("utf-8", "replace")


class Headers:
    """Case-insensitive multi-map of header values in wire order; compact names map to full names."""

    __slots__ = ("_items", "_index")

    def __init__(self, items: list[tuple[str, str, str]]) -> None:
        # (key, display name, value)
        self._items = items
        index: dict[str, list[str]] = {}
        for key, _, value in items:
            index.setdefault(key, []).append(value)
        self._index = index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = self._index.get(header_key(name))
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        """All values of ``name`` in wire order (one per header line); [] when absent."""
        return list(self._index.get(header_key(name), ()))

    def __getitem__(self, name: str) -> str:
        values = self._index.get(header_key(name))
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for _, name, _ in self._items)

    def keys(self) -> list[str]:
        return [name for _, name, _ in self._items]

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in wire order; known headers under their RFC spelling."""
        return [(name, value) for _, name, value in self._items]

    def values(self) -> list[str]:
        return [value for _, _, value in self._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


_UNSET = object()
_SINGLE = dict(SINGLE_HEADERS)
_KEY = itemgetter(0)  # _Field.key, as a C function for map()


class Message:
    """Common base of ``Request`` and ``Response``: headers, body, lazy accessors, edits."""

    __slots__ = ("_buf", "_sl", "_fl", "_hs", "_tail", "_body", "_modified", "_cache", "_keys", "_first_vals")

    _buf: bytes
    _sl: tuple[bytes, int, int]
    _fl: list[_Field] | None
    _hs: int
    _tail: tuple[bytes, int, int]
    _body: tuple[bytes, int, int]
    _modified: bool
    _cache: dict[str, object]
    # The header index (see _light_headers): the lookup key of each header line in wire order,
    # and the first value of each key; None after an edit until a read remakes it.
    _keys: list[str] | None
    _first_vals: dict[str, str] | None
    is_request: bool = False

    def __init__(self) -> None:
        raise TypeError("use fastsip.parse() to build messages")

    # --- construction (called by parse) ------------------------------------
    def _init(
        self,
        buf: bytes,
        sl: tuple[bytes, int, int],
        fields: list[_Field] | None,
        hs: int,
        tail: tuple[bytes, int, int],
        body: tuple[bytes, int, int],
        index: tuple[list[str], dict[str, str]] | None,
    ) -> None:
        self._buf = buf
        self._sl = sl  # (buffer, start, end) of the start line incl. its line break
        self._fl = fields  # the header fields; None until something needs their offsets (see _fields)
        self._hs = hs  # where the header lines start in buf
        self._tail = tail  # (buffer, start, end) of the empty line
        self._body = body  # (buffer, start, end) of the body
        self._modified = False
        self._cache = {}
        if index is None:
            self._keys = self._first_vals = None
        else:
            self._keys, self._first_vals = index

    @property
    def _fields(self) -> list[_Field]:
        """One ``_Field`` per header line: made on first use when parse() took the header index only.

        Edits, errors with offsets and the ``headers`` view need them; the field accessors do not.
        parse() took the index only for a block that the field scanner takes too (plain CRLF lines,
        valid names, within the header limit), so this cannot fail.
        """
        fl = self._fl
        if fl is None:
            fl, _, _ = _header_fields(self._buf, self._hs, len(self._buf))
            self._fl = fl
        return fl

    @_fields.setter
    def _fields(self, fields: list[_Field]) -> None:
        self._fl = fields

    def _index(self) -> dict[str, str]:
        """The first value of each header key, (re)made from the fields after an edit."""
        fields = self._fields
        self._keys = [f.key for f in fields]
        # Reversed, so that the first field of a key is the one stored last.
        self._first_vals = first = {f.key: f.value() for f in reversed(fields)}
        return first

    # --- raw access ----------------------------------------------------------
    def __bytes__(self) -> bytes:
        """The message bytes: exactly the received ones while unmodified."""
        if not self._modified:
            buf, start, _ = self._sl
            end = self._body[2]
            return buf if start == 0 and end == len(buf) else buf[start:end]
        pieces: list[bytes] = []
        cur_buf: bytes | None = None
        cur_start = cur_end = 0
        segs: list[tuple[bytes, int, int]] = [self._sl]
        segs.extend((f.buf, f.ls, f.le) for f in self._fields)
        segs.append(self._tail)
        segs.append(self._body)
        for buf, s, e in segs:
            if buf is cur_buf and s == cur_end:
                cur_end = e
                continue
            if cur_buf is not None:
                pieces.append(cur_buf[cur_start:cur_end])
            cur_buf, cur_start, cur_end = buf, s, e
        if cur_buf is not None:
            pieces.append(cur_buf[cur_start:cur_end])
        return b"".join(pieces)

    to_bytes = __bytes__

    @property
    def headers(self) -> Headers:
        h = self._cache.get("headers")
        if h is None:
            h = Headers([(f.key, display_name(f.key, f.name), f.value()) for f in self._fields])
            self._cache["headers"] = h
        return h  # type: ignore[return-value]

    def header(self, name: str, default: str | None = None) -> str | None:
        """``headers.get(name, default)`` without building the ``headers`` view."""
        first = self._first_vals
        if first is None:
            first = self._index()
        v = first.get(header_key(name))
        return default if v is None else v

    def _first(self, key: str) -> _Field | None:
        """The first field with this key, or None (through an index made once per message and edit)."""
        index: dict[str, _Field] | None = self._cache.get("_first")  # type: ignore[assignment]
        if index is None:
            # Reversed, so that the first field of a key is the one stored last.
            rev = self._fields[::-1]
            self._cache["_first"] = index = dict(zip(map(_KEY, rev), rev))
        return index.get(key)

    @property
    def body(self) -> bytes:
        buf, s, e = self._body
        return buf[s:e]

    # --- lazily parsed headers ------------------------------------------------
    # Each accessor reads its value through the header index and tries the fast parser on it;
    # anything the fast parser does not take goes to the exact one with the field's offset.
    @property
    def via(self) -> list[Via]:
        v = self._cache.get("via")
        if v is None:
            out: list[Via] = []
            first = self._first_vals
            if first is None:
                first = self._index()
            s = first.get("via")
            if s is not None:
                # One Via line only (several go the exact way, in order). No key repeats at all
                # when there are as many first values as lines, which spares the count.
                keys: list[str] = self._keys  # type: ignore[assignment]
                fast = _fast_via(s) if len(keys) == len(first) or keys.count("via") == 1 else None
                if fast is not None:
                    out.append(fast)
                else:
                    for f in self._fields:
                        if f.key == "via":
                            _parse_vias(f.value(), f.vs, out)
            self._cache["via"] = v = out
        return v  # type: ignore[return-value]

    def _name_addr(self, key: str, header: str) -> NameAddr | None:
        v = self._cache.get(key, _UNSET)
        if v is _UNSET:
            first = self._first_vals
            if first is None:
                first = self._index()
            s = first.get(key)
            if s is None:
                v = None
            else:
                v = _fast_name_addr(s)  # the fast path of _parse_name_addrs, one call sooner
                if v is None:
                    f = self._first(key)
                    out: list[NameAddr] = []
                    _parse_name_addrs(f.value(), f.vs, header, False, out)  # type: ignore[union-attr]
                    v = out[0]
            self._cache[key] = v
        return v  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr | None:
        return self._name_addr("from", "From")

    @property
    def to(self) -> NameAddr | None:
        return self._name_addr("to", "To")

    def _name_addr_list(self, key: str, header: str, star: bool) -> list[NameAddr]:
        v = self._cache.get(key)
        if v is None:
            out: list[NameAddr] = []
            for f in self._fields:
                if f.key == key:
                    value = f.value()
                    if star and value.strip(_WS) == "*":
                        out.append(NameAddr(None, None, {}, True))
                    else:
                        _parse_name_addrs(value, f.vs, header, True, out)
            self._cache[key] = v = out
        return v  # type: ignore[return-value]

    @property
    def contact(self) -> list[NameAddr]:
        return self._name_addr_list("contact", "Contact", True)

    @property
    def route(self) -> list[NameAddr]:
        return self._name_addr_list("route", "Route", False)

    @property
    def record_route(self) -> list[NameAddr]:
        return self._name_addr_list("record-route", "Record-Route", False)

    @property
    def cseq(self) -> CSeq | None:
        v = self._cache.get("cseq", _UNSET)
        if v is _UNSET:
            first = self._first_vals
            if first is None:
                first = self._index()
            s = first.get("cseq")
            if s is None:
                v = None
            else:
                v = _fast_cseq(s)
                if v is None:
                    f = self._first("cseq")
                    v = _parse_cseq(f.value(), f.vs)  # type: ignore[union-attr]
            self._cache["cseq"] = v
        return v  # type: ignore[return-value]

    @property
    def call_id(self) -> str | None:
        first = self._first_vals
        if first is None:
            first = self._index()
        value = first.get("call-id")
        if value is None:
            return None
        if not value:
            raise HeaderValueError("Call-ID: empty value", self._first("call-id").vs, "Call-ID")  # type: ignore[union-attr]
        return value

    @property
    def max_forwards(self) -> int | None:
        first = self._first_vals
        if first is None:
            first = self._index()
        value = first.get("max-forwards")
        if value is None:
            return None
        # The common case in one test; isascii() and isdigit(): only 0-9, as the RFC's DIGIT.
        if len(value) <= 3 and value.isdigit() and value.isascii() and int(value) <= 255:
            return int(value)
        # 1*DIGIT with leading zeros (RFC 4475 §3.1.1.1), or an error.
        v = _uint(value, 255, 3)
        if v is None:
            raise NumberError("Max-Forwards: not a number from 0 to 255", self._first("max-forwards").vs, "Max-Forwards")  # type: ignore[union-attr]
        return v

    @property
    def content_length(self) -> int | None:
        first = self._first_vals
        if first is None:
            first = self._index()
        value = first.get("content-length")
        if value is None:
            return None
        if len(value) <= 10 and value.isdigit() and value.isascii():
            return int(value)
        # Framing checked the received value; an edit may have written anything.
        v = _uint(value, 9999999999, 10)
        if v is None:
            raise ContentLengthError("Content-Length is not a number", self._first("content-length").vs)  # type: ignore[union-attr]
        return v

    @property
    def content_type(self) -> str | None:
        first = self._first_vals
        if first is None:
            first = self._index()
        return first.get("content-type")

    def validate(self) -> None:
        """Parse every header this library knows now, and check the message as a whole.

        Raises the first ``ParseError`` found, in this order: a malformed value (as the
        attribute would), ``HeaderValueError`` for a single-valued header given twice,
        ``MissingHeaders`` when a request lacks one of To, From, CSeq, Call-ID, Via
        (RFC 3261 §8.1.1), ``CSeqError`` when the CSeq method is not the request's, and
        ``URIError`` for headers in the Request-URI (RFC 3261 §19.1.5). Returns None.
        """
        if self.is_request:
            self.uri  # type: ignore[attr-defined]  # noqa: B018
        self.via  # noqa: B018
        self.from_  # noqa: B018
        self.to  # noqa: B018
        self.cseq  # noqa: B018
        self.call_id  # noqa: B018
        self.max_forwards  # noqa: B018
        self.contact  # noqa: B018
        self.route  # noqa: B018
        self.record_route  # noqa: B018
        seen = set()
        for f in self._fields:
            if f.key in _SINGLE:
                if f.key in seen:
                    name = _SINGLE[f.key]
                    raise HeaderValueError(f"{name}: more than one header", f.ls, name)
                seen.add(f.key)
        if self.is_request:
            missing = tuple(name for key, name in REQUIRED_REQUEST_HEADERS if self._first(key) is None)
            if missing:
                raise MissingHeaders("missing required headers: " + ", ".join(missing), self._tail[1], missing)
            req: Request = self  # type: ignore[assignment]
            cseq = self.cseq
            if cseq is not None and cseq.method != req.method:
                raise CSeqError(
                    f"CSeq: method {cseq.method!r} is not the request's {req.method!r}",
                    self._first("cseq").vs,  # type: ignore[union-attr]
                    "CSeq",
                )
            if req.uri.headers:
                raise URIError("headers are not allowed in a Request-URI", req._uri_offset + req._uri_text.find("?"))

    # --- edits -----------------------------------------------------------------
    def _edited(self) -> None:
        self._modified = True
        uri = self._cache.get("uri")  # only the start line holds the Request-URI; set_uri drops it
        self._cache.clear()
        self._keys = self._first_vals = None  # remade from the fields on the next read
        if uri is not None:
            self._cache["uri"] = uri

    def insert_header(self, name: str, value: str) -> None:
        """Insert ``name: value`` as the first header line (Via, Record-Route)."""
        self._fields.insert(0, _Field.new(name, value))
        self._edited()

    def append_header(self, name: str, value: str) -> None:
        """Append ``name: value`` as the last header line."""
        self._fields.append(_Field.new(name, value))
        self._edited()

    def set_header(self, name: str, value: str) -> None:
        """Replace the value of the first ``name`` header, keeping its place and its name as written; append when absent."""
        key = header_key(name)
        for k, f in enumerate(self._fields):
            if f.key == key:
                self._fields[k] = _Field.new(f.name, value)
                self._edited()
                return
        self.append_header(name, value)

    def remove_header(self, name: str) -> int:
        """Remove every ``name`` header line; returns how many were removed."""
        key = header_key(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f.key != key]
        removed = before - len(self._fields)
        if removed:
            self._edited()
        return removed

    def _pop_first_element(self, key: str) -> str | None:
        """Remove the first comma-separated element of the first ``key`` header; returns its text."""
        for k, f in enumerate(self._fields):
            if f.key != key:
                continue
            value = f.value()
            cut = _split_first_element(value)
            first = value[:cut].strip(_WS) if cut >= 0 else value
            if cut < 0:
                del self._fields[k]
            else:
                self._fields[k] = _Field.new(f.name, value[cut + 1 :].strip(_WS))
            self._edited()
            return first
        return None

    def pop_via(self) -> Via | None:
        """Remove the top via-parm (just that element of a comma-joined Via); returns it, or None."""
        top = self.via[0] if self.via else None
        if self._pop_first_element("via") is None:
            return None
        return top

    def pop_route(self) -> NameAddr | None:
        """Remove the first Route element; returns it, or None when there is no Route."""
        first = self.route[0] if self.route else None
        if self._pop_first_element("route") is None:
            return None
        return first

    def set_via_param(self, name: str, value: str | None = None, index: int = 0) -> None:
        """Add or replace parameter ``name`` on the ``index``-th via-parm (RFC 3261 §18.2.1 received, RFC 3581 rport)."""
        self.via  # validates every Via before touching one  # noqa: B018
        lname = name.lower()
        seen = 0
        for k, f in enumerate(self._fields):
            if f.key != "via":
                continue
            value_text = f.value()
            elements = _split_elements(value_text)
            if index >= seen + len(elements):
                seen += len(elements)
                continue
            pos = index - seen
            elements[pos] = _set_param(elements[pos], lname, value)
            self._fields[k] = _Field.new(f.name, ", ".join(elements))
            self._edited()
            return
        raise IndexError(f"no Via at index {index}")

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length is set to match (and Content-Type when given)."""
        body = bytes(body)
        self._body = (body, 0, len(body))
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        self.set_header("Content-Length", str(len(body)))
        self._edited()

    def copy(self) -> "Message":
        """An independent copy: edits to one do not show in the other."""
        new = object.__new__(type(self))
        new._buf = self._buf
        new._sl = self._sl
        new._fl = None if self._fl is None else list(self._fl)
        new._hs = self._hs
        new._keys, new._first_vals = self._keys, self._first_vals  # never changed in place
        new._tail = self._tail
        new._body = self._body
        new._modified = self._modified
        new._cache = {}
        self._copy_extra(new)
        return new

    def _copy_extra(self, new: "Message") -> None:
        pass


def _split_elements(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or <>)."""
    out: list[str] = []
    rest = value
    while True:
        cut = _split_first_element(rest)
        if cut < 0:
            out.append(rest.strip(_WS))
            return out
        out.append(rest[:cut].strip(_WS))
        rest = rest[cut + 1 :]


def _split_first_element(value: str) -> int:
    """Index of the first top-level comma in ``value``, or -1."""
    depth_angle = 0
    in_quote = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            depth_angle += 1
        elif c == ">":
            depth_angle = max(0, depth_angle - 1)
        elif c == "," and depth_angle == 0:
            return i
        i += 1
    return -1


def _set_param(element: str, name: str, value: str | None) -> str:
    """Return ``element`` with ``;name[=value]`` replaced in place, or inserted right after the sent-by.

    OpenSIPS and Kamailio put a new ``received`` directly after the sent-by
    (``Via: SIP/2.0/UDP h:p;received=ip;branch=...;rport=port``), and fill a bare
    ``rport`` in place; the seed's 100 Trying shows exactly that.
    """
    text = name if value is None else f"{name}={value}"
    first_semi = -1
    i = 0
    n = len(element)
    in_quote = False
    while i < n:
        c = element[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ";":
            if first_semi < 0:
                first_semi = i
            j = _skip_ws(element, i + 1)
            k = _scan_token(element, j)
            if element[j:k].lower() == name:
                m = _skip_ws(element, k)
                if m < n and element[m] == "=":
                    m = _skip_ws(element, m + 1)
                    if m < n and element[m] == '"':
                        m, _ = _scan_quoted(element, m, ViaError, 0, "Via")
                    else:
                        while m < n and element[m] not in _PARAM_VALUE_END:
                            m += 1
                else:
                    m = k
                return element[: i + 1] + text + element[m:]
        i += 1
    if first_semi < 0:
        return f"{element};{text}"
    return f"{element[:first_semi]};{text}{element[first_semi:]}"


class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    __slots__ = ("method", "version", "_uri_text", "_uri_offset")

    method: str
    version: str
    _uri_text: str
    _uri_offset: int
    is_request = True

    @property
    def uri(self) -> URI:
        """The Request-URI, parsed on first access (raises ``URIError``)."""
        v = self._cache.get("uri")
        if v is None:
            self._cache["uri"] = v = _parse_uri(self._uri_text, self._uri_offset)
        return v  # type: ignore[return-value]

    @property
    def raw_uri(self) -> str:
        return self._uri_text

    def set_uri(self, uri: str) -> None:
        """Replace the Request-URI (the start line is rewritten, the rest kept)."""
        line = f"{self.method} {uri} {self.version}\r\n".encode("utf-8")
        self._sl = (line, 0, len(line))
        self._uri_text = uri
        self._uri_offset = len(self.method) + 1
        self._cache.pop("uri", None)
        self._edited()

    def _copy_extra(self, new: Message) -> None:
        assert isinstance(new, Request)
        new.method = self.method
        new.version = self.version
        new._uri_text = self._uri_text
        new._uri_offset = self._uri_offset

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    __slots__ = ("status", "reason", "version")

    status: int
    reason: str
    version: str

    def _copy_extra(self, new: Message) -> None:
        assert isinstance(new, Response)
        new.status = self.status
        new.reason = self.reason
        new.version = self.version

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _parse_cseq(s: str, base: int) -> CSeq:
    """RFC 3261 §20.16: CSeq = 1*DIGIT LWS Method."""
    fast = _fast_cseq(s)
    if fast is not None:
        return fast
    n = len(s)
    i = _DIGITS_RE.match(s).end()  # type: ignore[union-attr]
    seq = _uint(s[:i], _MAX_CSEQ, 10)
    if seq is None:
        raise CSeqError("CSeq: invalid sequence number", base, "CSeq")
    j = _skip_ws(s, i)
    if j == i:
        raise CSeqError("CSeq: expected whitespace after the number", base + i, "CSeq")
    k = _scan_token(s, j)
    if k == j or k != n:
        raise CSeqError("CSeq: invalid method", base + j, "CSeq")
    return CSeq(seq, s[j:k])


# ---------------------------------------------------------------------------
# Framing: parse()
# ---------------------------------------------------------------------------

_SIP_VERSION = b"SIP/2.0"


def _check_version(v: bytes, offset: int) -> str:
    if v.upper() != _SIP_VERSION:
        raise StartLineError(f"unsupported SIP version {_decode(v)!r}", offset)
    return "SIP/2.0"


def _start_line(data: bytes, pos: int, n: int) -> tuple[int, tuple[bytes, int, int], Request | Response]:
    """The exact start-line parser (RFC 3261 §7.1, §7.2): returns (index of its LF, its segment, the message)."""
    eol = data.find(b"\n", pos)
    if eol < 0:
        raise IncompleteMessage("the start line has no line break", n)
    ce = eol - 1 if data[eol - 1] == 13 else eol
    line = data[pos:ce]
    bad = _find_control(line)
    if bad >= 0:
        raise StartLineError("control character in the start line", pos + bad)
    sl = (data, pos, eol + 1)
    msg: Request | Response
    if line[:4].upper() == b"SIP/":
        sp1 = line.find(b" ")
        if sp1 < 0:
            raise StartLineError("status line without a status code", pos + len(line))
        version = _check_version(line[:sp1], pos)
        code = line[sp1 + 1 : sp1 + 4]
        if len(code) != 3 or not code.isdigit() or code[0] in b"0789":
            raise StartLineError("status code is not 3 digits from 100 to 699", pos + sp1 + 1)
        rest = line[sp1 + 4 :]
        if rest and rest[0] != 32:
            raise StartLineError("status code is not 3 digits from 100 to 699", pos + sp1 + 1)
        resp = object.__new__(Response)
        resp.status = int(code)
        resp.reason = _decode(rest[1:])
        resp.version = version
        msg = resp
    else:
        sp1 = line.find(b" ")
        sp2 = line.rfind(b" ")
        if sp1 <= 0 or sp2 == sp1:
            raise StartLineError("request line is not 'Method SP Request-URI SP SIP-Version'", pos + max(sp1, 0))
        method = line[:sp1]
        if method.translate(None, _TOKEN_BYTES):
            k = 0
            while method[k] in TOKEN_CHARS:
                k += 1
            raise StartLineError("invalid character in the method", pos + k)
        uri = line[sp1 + 1 : sp2]
        if not uri or b" " in uri:
            raise StartLineError("Request-URI is empty or holds a space", pos + sp1 + 1)
        version = _check_version(line[sp2 + 1 :], pos + sp2 + 1)
        req = object.__new__(Request)
        req.method = method.decode("ascii")
        req.version = version
        req._uri_text = _decode(uri)
        req._uri_offset = pos + sp1 + 1
        msg = req
    return eol, sl, msg


def parse(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_headers: int = DEFAULT_MAX_HEADERS,
) -> Request | Response:
    """Parse one SIP message (one UDP datagram, or one message framed by ``StreamParser``).

    Returns a ``Request`` or ``Response``. Raises a ``ParseError`` subclass for any
    malformed input, with ``offset`` pointing at the problem.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError("parse() takes bytes, bytearray or memoryview")
    n = len(data)
    if n > max_size:
        raise MessageTooLarge(f"message of {n} bytes is larger than the limit of {max_size}", max_size)

    # RFC 3261 §7.5: ignore line breaks before the start line.
    pos = 0
    while pos < n and data[pos] in (13, 10):
        pos += 1
    if pos >= n:
        raise IncompleteMessage("no message: empty or only line breaks", pos)
    msg_start = pos

    # --- start line -----------------------------------------------------------
    msg: Request | Response
    # Fast paths: see _FAST_REQUEST_LINE_RE and _FAST_STATUS_LINE_RE; _start_line defines behaviour.
    m = _FAST_REQUEST_LINE_RE.match(data, pos)
    if m is not None:
        eol = m.end() - 1
        sl = (data, pos, eol + 1)
        req = object.__new__(Request)
        req.method = m[1].decode("ascii")
        req.version = "SIP/2.0"
        req._uri_offset = m.start(2)
        req._uri_text = m[2].decode("utf-8", "replace")
        msg = req
    else:
        m = _FAST_STATUS_LINE_RE.match(data, pos)
        if m is not None:
            eol = m.end() - 1
            sl = (data, pos, eol + 1)
            resp = object.__new__(Response)
            resp.status = int(m[1])
            reason = m[2]
            resp.reason = "" if reason is None else reason.decode("utf-8", "replace")
            resp.version = "SIP/2.0"
            msg = resp
        else:
            eol, sl, msg = _start_line(data, pos, n)

    # --- header lines (RFC 3261 §7.3) ------------------------------------------
    pos = hs = eol + 1
    index = None
    if data[eol - 1] == 13:  # the header index takes CRLF lines only
        he = data.find(b"\r\n\r\n", eol - 1)
        if he >= 0:
            index = _light_headers(data, pos, he, max_headers)
    fields: list[_Field] | None
    if index is not None:
        fields = None
        tail = (data, he + 2, he + 4)
        pos = he + 4
        value = index[1].get("content-length")  # _light_headers checked it is a number
        length = None if value is None else int(value)
    else:
        fields, tail, pos = _header_fields(data, pos, max_headers)
        length = _fields_length(fields)

    # --- body framed by Content-Length (RFC 3261 §18.3, §20.14) ------------------
    if length is None:
        end = n
    else:
        end = pos + length
        if end > n:
            raise TruncatedBody(f"Content-Length is {length} but only {n - pos} body bytes follow", n)
    msg._init(data, sl, fields, hs, tail, (data, pos, end), index)
    return msg


def _header_fields(data: bytes, pos: int, max_headers: int) -> tuple[list[_Field], tuple[bytes, int, int], int]:
    """The exact header-block scanner (RFC 3261 §7.3): (fields, the empty line's segment, where the body starts)."""
    n = len(data)
    # Fast path (see _fast_header_lines): it takes every line or none; the exact loop
    # below then goes on from ``pos`` (the empty line, or everything when it took none).
    fields, pos = _fast_header_lines(data, pos, max_headers)
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            raise IncompleteMessage("no empty line after the headers", n)
        ce = eol - 1 if eol > pos and data[eol - 1] == 13 else eol
        if ce == pos:
            return fields, (data, pos, eol + 1), eol + 1
        cr = data.find(b"\r", pos, ce)
        if cr >= 0:
            raise HeaderError("CR without LF inside a header line", cr)
        c = data[pos]
        if c == 32 or c == 9:
            # §7.3.1 folding: a line starting with whitespace continues the previous header.
            if not fields:
                raise HeaderError("continuation line before the first header", pos)
            f = fields[-1]
            vs, ve = f.vs, f.ve
            v_end = ce
            while v_end > pos and data[v_end - 1] in (32, 9):
                v_end -= 1
            if v_end > pos:
                if vs == ve:  # the value so far was empty: it starts on this line
                    vs = _skip_ws_bytes(data, pos, ce)
                ve = v_end
            fields[-1] = _Field(f.key, f.name, f.buf, f.ls, vs, ve, eol + 1)
        else:
            colon = data.find(b":", pos, ce)
            if colon < 0:
                raise HeaderError("header line without a colon", pos)
            name_end = colon
            while name_end > pos and data[name_end - 1] in (32, 9):
                name_end -= 1
            name = data[pos:name_end]
            known = _NAME_CACHE.get(name)
            if known is None:
                if not name or name.translate(None, _TOKEN_BYTES):
                    k = 0
                    while k < len(name) and name[k] in TOKEN_CHARS:
                        k += 1
                    raise HeaderError("invalid character in a header name", pos + k)
                sname = name.decode("ascii")
                known = (header_key(sname), sname)
                if len(_NAME_CACHE) < _NAME_CACHE_MAX:
                    _NAME_CACHE[name] = known
            if len(fields) >= max_headers:
                raise TooManyHeaders(f"more than {max_headers} header lines", pos)
            vs = _skip_ws_bytes(data, colon + 1, ce)
            ve = ce
            while ve > vs and data[ve - 1] in (32, 9):
                ve -= 1
            fields.append(_Field(known[0], known[1], data, pos, vs, ve, eol + 1))
        pos = eol + 1


def _fields_length(fields: list[_Field]) -> int | None:
    """The body length the Content-Length fields give (None without one); they must agree."""
    length: int | None = None
    for f in fields:
        if f.key == "content-length":
            raw = f.raw_value()
            # bytes.isdigit() is ASCII-only; leading zeros do not count against the 10 digits.
            if not raw or not raw.isdigit() or len(raw.lstrip(b"0")) > 10:
                raise ContentLengthError("Content-Length is not a number", f.vs)
            value = int(raw)
            if length is not None and value != length:
                raise ContentLengthError("Content-Length headers disagree", f.vs)
            length = value
    return length


# Header name as written before the colon (trailing whitespace included) -> lookup key, for
# names that are tokens; bounded so that hostile input cannot grow it.
_INDEX_NAMES: dict[str, str] = {}


def _light_headers(data: bytes, pos: int, he: int, max_headers: int) -> tuple[list[str], dict[str, str]] | None:
    """The header index of the block ``data[pos:he]``: (the key of each line, first value of each key), or None.

    This is what parse() builds when it can: one key and one value per line, nothing else, so
    that headers nobody reads cost one partition each; the value parsers and the ``_Field``
    offsets come later, on first use. It takes a block only when every line ends in CRLF, holds
    no other CR or LF, has a colon, and starts with a token name (no folding); and when there are
    at most ``max_headers`` lines and the Content-Length values are plain numbers that agree.
    For anything else it returns None, and the exact scanner (_header_fields) does the block,
    errors and their offsets included: every block this takes, that one takes the same way.
    """
    if he < pos:  # no header line at all: the start line's CRLF is the first of CRLFCRLF
        return [], {}
    # Decoded once for the whole block: invalid UTF-8 becomes U+FFFD, as in _Field.value(), and
    # never a CR, LF or colon, so the lines and values are the ones the fields would give.
    text = data[pos:he].decode("utf-8", "replace")
    lines = text.split("\r\n")
    if len(lines) > max_headers:
        return None
    joined = "".join(lines)  # what is left of the block without its CRLFs: no CR or LF may remain
    if "\r" in joined or "\n" in joined:
        return None
    names = _INDEX_NAMES
    keys: list[str] = []
    first: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        key = names.get(name)
        if key is None:
            stripped = name.rstrip(_WS)
            if not stripped or not colon or _TOKEN_RE.fullmatch(stripped) is None:
                return None
            key = header_key(stripped)
            if len(names) < _NAME_CACHE_MAX:
                names[name] = key
        elif not colon:
            return None
        value = value.strip(_WS)  # as _Field.value(): the value without the whitespace around it
        keys.append(key)
        if key not in first:
            first[key] = value
    length = first.get("content-length")
    if length is not None:
        # As _fields_length(): ASCII digits, at most 10 after leading zeros; several are its job.
        if not (length.isdigit() and length.isascii() and len(length.lstrip("0")) <= 10):
            return None
        if len(keys) != len(first) and keys.count("content-length") > 1:  # (no key repeats: no count)
            return None
    return keys, first


# _Field(...) and _Field._make run Python code per call; this builds the same tuple in C.
_new_field = partial(tuple.__new__, _Field)


def _fast_header_lines(data: bytes, pos: int, max_headers: int) -> tuple[list[_Field], int]:
    """Fast path for the header block from ``pos``: (fields, position of the empty line), or ([], pos).

    It takes the block only when every line up to the first empty line is a plain
    _FAST_HEADER_LINE_RE line (one findall in C; the lines must tile the block with no
    gap, and no CR may stand anywhere but before an LF) and there are at most
    ``max_headers`` of them. Otherwise it takes nothing, and the exact loop in parse()
    does the whole block: folding, errors and their offsets, the header limit.
    """
    stop = data.find(b"\n\r\n", pos - 1)
    stop2 = data.find(b"\n\n", pos - 1)
    if stop2 >= 0 and (stop < 0 or stop2 < stop):
        stop = stop2
    if stop < pos:  # no header line, or no empty line at all
        return [], pos
    stop += 1
    lines = _FAST_HEADER_LINE_RE.findall(data, pos, stop)
    if len(lines) > max_headers or _STRAY_CR_RE.search(data, pos, stop) is not None:
        return [], pos
    fields: list[_Field] = []
    append = fields.append
    new_field = _new_field
    ls = pos
    for name_sep, name, rest in lines:
        known = _NAME_CACHE.get(name)
        if known is None:
            sname = name.decode("ascii")
            known = (header_key(sname), sname)
            if len(_NAME_CACHE) < _NAME_CACHE_MAX:
                _NAME_CACHE[name] = known
        vs = ls + len(name_sep)
        le = vs + len(rest) + 1
        # Every CR here is the one before LF, so this strips exactly the trailing whitespace.
        append(new_field((known[0], known[1], data, ls, vs, vs + len(rest.rstrip(b" \t\r")), le)))
        ls = le
    if ls != stop:  # findall skipped something: not every line is plain
        return [], pos
    return fields, stop


def _skip_ws_bytes(data: bytes, i: int, end: int) -> int:
    while i < end and data[i] in (32, 9):
        i += 1
    return i


_CONTROL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _find_control(line: bytes) -> int:
    m = _CONTROL_RE.search(line)
    return m.start() if m else -1


# ---------------------------------------------------------------------------
# Responses (RFC 3261 §8.2.6)
# ---------------------------------------------------------------------------


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

    Copies every Via (as the request has them now, edits included), To (adding
    ``;tag=to_tag`` when given and To has none), From, Call-ID and CSeq, in that
    order as OpenSIPS writes them; then ``headers``, Content-Type when there is a
    body, and Content-Length. Returns the parsed ``Response``. Raises ``ValueError``
    for a status outside 100-699.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not from 100 to 699")
    if reason is None:
        reason = REASON_PHRASES.get(status, "")
    out = [b"SIP/2.0 %d %s\r\n" % (status, reason.encode("utf-8"))]
    fields = request._fields
    for f in fields:
        if f.key == "via":
            out.append(b"Via: " + f.raw_value() + b"\r\n")
    to = request._first("to")
    if to is not None:
        value = to.raw_value()
        if to_tag is not None:
            try:
                has_tag = request.to is not None and request.to.tag is not None
            except ParseError:
                has_tag = True  # never make a malformed To worse
            if not has_tag:
                value += b";tag=" + to_tag.encode("utf-8")
        out.append(b"To: " + value + b"\r\n")
    copied = [("from", b"From"), ("call-id", b"Call-ID"), ("cseq", b"CSeq")]
    if status == 100:
        copied.append(("timestamp", b"Timestamp"))  # §8.2.6.1
    for key, bname in copied:
        field = request._first(key)
        if field is not None:
            out.append(bname + b": " + field.raw_value() + b"\r\n")
    for hname, hvalue in headers:
        out.append(f"{hname}: {hvalue}\r\n".encode("utf-8"))
    body = bytes(body)
    if body and content_type:
        out.append(f"Content-Type: {content_type}\r\n".encode("utf-8"))
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    out.append(body)
    resp = parse(b"".join(out), max_size=max(DEFAULT_MAX_SIZE, sum(map(len, out)) + 1))
    assert isinstance(resp, Response)
    return resp
