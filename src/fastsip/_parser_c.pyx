# cython: language_level=3
"""The Cython backend: the same functions, results and exceptions as ``_parser_py`` (the spec), faster.

Design (mirrors ``_parser_py``; read that module's docstring first):

* ``parse`` takes the buffer once as ``const unsigned char*`` and frames the
  message with C integer indexes; each header line becomes a ``Field`` struct
  (offsets plus a small-int kind for the headers a proxy reads) in a C array
  owned by the ``Message``. No Python object is made per header until asked.
* A field's bytes live in ``Message._bufs[field.bufi]``: index 0 is the received
  buffer, the others are small buffers written by edits. Buffers are immutable
  and the list only grows, so offsets stay valid and copies can share buffers.
* Header values are parsed on first access. The sub-parsers (URI, Via,
  name-addr, CSeq) scan a ``Txt``: the value's own bytes when they are pure
  ASCII and unfolded (then a byte index is a character index, so error offsets
  are the reference's), else the decoded ``str`` read through ``PyUnicode_READ``.
  Either way 256-entry char-class tables classify characters, and str objects
  are made only for the fields returned (ASCII ones by a plain copy).
* Via and NameAddr keep their params as offsets plus a few slots (branch,
  received, maddr, rport, ttl, tag) filled by the validating scan; the params
  dict is built on first ``.params``. A URI inside a header keeps its text as
  offsets until ``str()``; the Request-URI is decoded on first need.
* Plain fields of the value objects and of Request/Response are member
  descriptors (see the end of the module), which CPython 3.11 reads at a fixed
  offset; Cython's own ``cdef public`` getsets take the generic attribute path.
* Exceptions come from ``fastsip.errors``; none is defined here.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
cimport cython
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

import re

from ._grammar import (
    CANONICAL_NAMES,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_SIZE,
    REASON_PHRASES,
    REQUIRED_REQUEST_HEADERS,
    SINGLE_HEADERS,
    TOKEN_CHARS,
    display_name,
    header_key,
    ipv6_ok,
    uint_value,
)
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

# The error classes the scanners take as an argument, as C-level references (no module lookup per call).
cdef object _E_URI = URIError
cdef object _E_VIA = ViaError
cdef object _E_NAMEADDR = NameAddrError

cdef extern from "Python.h":
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    unsigned int PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    bint PyUnicode_IS_ASCII(object o)
    ctypedef struct PyObject
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL
    PyObject* PyDict_GetItem(object d, object key)
    PyObject* PyList_GET_ITEM(object l, Py_ssize_t i)
    object PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)


cdef struct Txt:
    # Text being scanned: a str's data (any kind), or message bytes known to be pure ASCII (kind 1).
    int kind
    bint ascii  # every character < 128: substrings are made without a max-char scan
    void* data
    Py_ssize_t n
    PyObject* owner  # the str or bytes object that holds ``data`` (borrowed)


# Params a Via or NameAddr answers from offsets, without building its params dict (slot per name).
DEF P_BRANCH = 0
DEF P_RECEIVED = 1
DEF P_MADDR = 2
DEF P_RPORT = 3
DEF P_TTL = 4
DEF P_TAG = 5
DEF NSLOTS = 6
DEF SLOT_ABSENT = -2
DEF SLOT_FLAG = -1


cdef struct Params:
    # Where a value object's params are in its text; the dict is built from here on first access.
    int kind
    bint ascii
    const char* data
    Py_ssize_t ps, pe  # the params run [ps, pe), already validated
    Py_ssize_t sv[NSLOTS]  # value start per known name (first occurrence), or SLOT_ABSENT / SLOT_FLAG
    Py_ssize_t ev[NSLOTS]  # value end


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

IMPLEMENTATION = "c"

cdef str _WS = " \t"
# RFC 3261 §7.3.1: a line break followed by whitespace (possibly several, possibly
# with whitespace-only lines between) is one LWS, replaced by a single space.
_FOLD_RE = re.compile(rb"[ \t]*(?:\r?\n[ \t]+)+")
cdef int _MAX_PORT = 65535
cdef long long _MAX_CSEQ = 2**31 - 1

# ---------------------------------------------------------------------------
# Character classes (RFC 3261 §25.1), one bit per class; code points >= 128 are in none.
# ---------------------------------------------------------------------------

DEF C_TOKEN = 1
DEF C_HOST = 2
DEF C_IPV6 = 4
DEF C_HEX = 8
DEF C_DIGIT = 16
DEF C_SCHEME = 32
DEF C_ALPHA = 64
DEF C_URIBAD = 128
DEF C_PVEND = 256
DEF C_ADDREND = 512
DEF C_URISPEC = 1024  # ':' '@' '?' '%': the URI pre-scan notes where they are

cdef unsigned short CLS[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        CLS[c] = 0
    cdef str s
    for c in TOKEN_CHARS:
        CLS[c] |= C_TOKEN
    for s in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._":
        CLS[ord(s)] |= C_HOST
    for s in "0123456789abcdefABCDEF:.":
        CLS[ord(s)] |= C_IPV6
    for s in "0123456789abcdefABCDEF":
        CLS[ord(s)] |= C_HEX
    for s in "0123456789":
        CLS[ord(s)] |= C_DIGIT
    for s in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.":
        CLS[ord(s)] |= C_SCHEME
    for s in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        CLS[ord(s)] |= C_ALPHA
    for s in ' \t\r\n"<>\\^`{|}\x00':
        CLS[ord(s)] |= C_URIBAD
    for s in ";,? \t<>\"":
        CLS[ord(s)] |= C_PVEND
    for s in ";, \t":
        CLS[ord(s)] |= C_ADDREND
    for s in ":@?%":
        CLS[ord(s)] |= C_URISPEC


_init_tables()


cdef inline bint _is(unsigned int c, unsigned short m) noexcept nogil:
    return c < 128 and (CLS[c] & m) != 0


# ---------------------------------------------------------------------------
# Known headers: small ints so lookups are an int compare.
# ---------------------------------------------------------------------------

DEF K_OTHER = 0
DEF K_VIA = 1
DEF K_FROM = 2
DEF K_TO = 3
DEF K_CALLID = 4
DEF K_CSEQ = 5
DEF K_MAXFWD = 6
DEF K_CLEN = 7
DEF K_CONTACT = 8
DEF K_ROUTE = 9
DEF K_RR = 10
DEF K_CTYPE = 11
DEF K_TIMESTAMP = 12

cdef tuple _KIND_KEYS = (
    None, "via", "from", "to", "call-id", "cseq", "max-forwards", "content-length", "contact",
    "route", "record-route", "content-type", "timestamp",
)
cdef dict _KIND_BY_KEY = {k: i for i, k in enumerate(_KIND_KEYS) if k is not None}
cdef tuple _KIND_DISPLAY = tuple(None if k is None else CANONICAL_NAMES[k] for k in _KIND_KEYS)
# validate()'s whole-message checks, by kind (see _grammar.REQUIRED_REQUEST_HEADERS, SINGLE_HEADERS).
cdef tuple _REQUIRED_KINDS = tuple((_KIND_BY_KEY[key], name) for key, name in REQUIRED_REQUEST_HEADERS)
cdef frozenset _SINGLE_KINDS = frozenset(_KIND_BY_KEY[key] for key, _ in SINGLE_HEADERS)


cdef inline bint _ieq(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept nogil:
    # ``p`` holds token characters only, so |0x20 lower-cases exactly the ASCII letters.
    cdef Py_ssize_t k
    for k in range(n):
        if (p[k] | 0x20) != <unsigned char>lit[k]:
            return False
    return True


cdef int _classify(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """The kind of a received header name (ASCII token characters), full or compact form."""
    cdef unsigned char c
    if n == 0:
        return K_OTHER
    c = p[0] | 0x20
    if n == 1:
        if c == b'v':
            return K_VIA
        if c == b'f':
            return K_FROM
        if c == b't':
            return K_TO
        if c == b'i':
            return K_CALLID
        if c == b'l':
            return K_CLEN
        if c == b'm':
            return K_CONTACT
        if c == b'c':
            return K_CTYPE
        return K_OTHER
    if n == 2:
        return K_TO if _ieq(p, b"to", 2) else K_OTHER
    if n == 3:
        return K_VIA if _ieq(p, b"via", 3) else K_OTHER
    if n == 4:
        if c == b'f':
            return K_FROM if _ieq(p, b"from", 4) else K_OTHER
        if c == b'c':
            return K_CSEQ if _ieq(p, b"cseq", 4) else K_OTHER
        return K_OTHER
    if n == 5:
        return K_ROUTE if _ieq(p, b"route", 5) else K_OTHER
    if n == 7:
        if c == b'c':
            if _ieq(p, b"call-id", 7):
                return K_CALLID
            if _ieq(p, b"contact", 7):
                return K_CONTACT
        return K_OTHER
    if n == 9:
        return K_TIMESTAMP if _ieq(p, b"timestamp", 9) else K_OTHER
    if n == 12:
        if c == b'm':
            return K_MAXFWD if _ieq(p, b"max-forwards", 12) else K_OTHER
        if c == b'r':
            return K_RR if _ieq(p, b"record-route", 12) else K_OTHER
        if c == b'c':
            return K_CTYPE if _ieq(p, b"content-type", 12) else K_OTHER
        return K_OTHER
    if n == 14:
        return K_CLEN if _ieq(p, b"content-length", 14) else K_OTHER
    return K_OTHER


# header_key() results for names looked up by callers (msg.headers.get("User-Agent") and the like):
# a proxy asks for the same few names on every message.  Bounded, so arbitrary names from the wire
# (Headers of messages with unusual headers) cannot grow it without limit.
cdef dict _HKEY_CACHE = {}


cdef inline object _hkey(object name):
    """header_key(name), memoised for str names (anything else goes to header_key as before)."""
    if type(name) is not str:
        return header_key(name)
    key = _HKEY_CACHE.get(name)
    if key is None:
        key = header_key(name)
        if len(_HKEY_CACHE) < 4096:
            _HKEY_CACHE[name] = key
    return key


cdef int _kind_of(object name) except -1:
    """The kind of a header name given by the caller: ``_KIND_BY_KEY.get(header_key(name))``, fast for ASCII tokens."""
    cdef const unsigned char* p
    cdef Py_ssize_t n, k
    if type(name) is str and PyUnicode_IS_ASCII(name):
        p = <const unsigned char*>PyUnicode_DATA(name)
        n = PyUnicode_GET_LENGTH(name)
        for k in range(n):
            if not (CLS[p[k]] & C_TOKEN):
                break
        else:
            return _classify(p, n)
    return _KIND_BY_KEY.get(_hkey(name), K_OTHER)


cdef inline str _decode(const unsigned char* p, Py_ssize_t n):
    """Header values and reason phrases are UTF-8 (RFC 3261 §25.1 TEXT-UTF8); never fail on bad bytes."""
    return PyUnicode_DecodeUTF8(<const char*>p, n, "replace")


# Frequent short strings are returned as shared constants instead of new objects.
cdef str S_SIP20 = "SIP/2.0"
cdef str S_UDP = "UDP"
cdef str S_TCP = "TCP"
cdef str S_TLS = "TLS"
cdef str S_BRANCH = "branch"
cdef str S_RPORT = "rport"
cdef str S_TTL = "ttl"
cdef str S_RECEIVED = "received"
cdef str S_TAG = "tag"
cdef str S_TRANSPORT = "transport"
cdef str S_LR = "lr"
cdef str S_SIP = "sip"
cdef str S_SIPS = "sips"
cdef str S_UDPL = "udp"
cdef str S_TCPL = "tcp"

cdef tuple _METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
)


# ---------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------


cdef object _LAZY = object()  # an empty dict not made yet


@cython.freelist(8)
cdef class SipURI:
    """A sip: or sips: URI (RFC 3261 §19.1). ``str(uri)`` is the exact text it was parsed from."""

    cdef public object scheme, user, password, host, port

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")
    # Most URIs have no params or headers: their empty dicts are made on first access.
    cdef object _params, _headers
    # The text: _raw_s, or (while that is None) made from _rt, whose data _owner holds.
    cdef object _raw_s, _owner
    cdef Txt _rt

    def __init__(self, scheme, user, password, host, port, params, headers, raw):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self._params = params
        self._headers = headers
        self._raw_s = raw

    @property
    def _raw(self):
        if self._raw_s is None:
            self._raw_s = _sub(&self._rt, 0, self._rt.n)
            self._owner = None
        return self._raw_s

    def __reduce__(self):
        return (SipURI, (self.scheme, self.user, self.password, self.host, self.port, self.params, self.headers,
                         self._raw))

    @property
    def params(self):
        if self._params is _LAZY:
            self._params = {}
        return self._params

    @params.setter
    def params(self, value):
        self._params = value

    @property
    def headers(self):
        if self._headers is _LAZY:
            self._headers = {}
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = value

    @property
    def transport(self):
        """The transport param, lower case, or None."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self):
        """True when the URI carries the loose-routing ``lr`` param (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def maddr(self):
        return self.params.get("maddr")

    def __str__(self):
        return self._raw

    def __repr__(self):
        return f"SipURI({self._raw!r})"

    def __eq__(self, other):
        if not isinstance(other, (SipURI, AbsoluteURI)) and type(other).__name__ not in ("SipURI", "AbsoluteURI"):
            return NotImplemented
        return str(self) == str(other)

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self):
        return hash(self._raw)


@cython.freelist(8)
cdef class AbsoluteURI:
    """Any URI that is not sip:/sips: (tel:, urn:, mailto:, ...); keeps the raw text (RFC 3261 §25.1)."""

    cdef public object scheme, user, params, _raw

    def __init__(self, scheme, user, params, raw):
        self.scheme = scheme
        self.user = user
        self.params = params
        self._raw = raw

    @property
    def host(self):
        return None

    @property
    def port(self):
        return None

    @property
    def password(self):
        return None

    @property
    def headers(self):
        return {}

    @property
    def opaque(self):
        """Everything after the scheme's colon."""
        return self._raw[len(self.scheme) + 1 :]

    def __str__(self):
        return self._raw

    def __repr__(self):
        return f"AbsoluteURI({self._raw!r})"

    def __eq__(self, other):
        if not isinstance(other, (SipURI, AbsoluteURI)) and type(other).__name__ not in ("SipURI", "AbsoluteURI"):
            return NotImplemented
        return str(self) == str(other)

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self):
        return hash(self._raw)


@cython.freelist(8)
cdef class Via:
    """One via-parm of a Via header (RFC 3261 §20.42), with RFC 3581 rport."""

    cdef public object protocol, transport, host, port

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")
    # Parsed Vias keep their params as offsets (_pr, in _owner's text) until .params is read.
    cdef object _params, _owner
    cdef Params _pr

    def __init__(self, protocol, transport, host, port, params):
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self._params = params

    @property
    def params(self):
        if self._owner is not None:
            self._params = _params_dict(&self._pr, ViaError, "Via")
            self._owner = None
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self._owner = None

    @property
    def branch(self):
        if self._owner is not None:
            return _slot_str(&self._pr, P_BRANCH)
        return self._params.get("branch")

    @property
    def received(self):
        if self._owner is not None:
            return _slot_str(&self._pr, P_RECEIVED)
        return self._params.get("received")

    @property
    def maddr(self):
        if self._owner is not None:
            return _slot_str(&self._pr, P_MADDR)
        return self._params.get("maddr")

    @property
    def rport(self):
        """RFC 3581: int when the value is filled in, True for a bare ``rport``, None when absent."""
        if self._owner is not None:
            if self._pr.sv[P_RPORT] == SLOT_ABSENT:
                return None
            if self._pr.sv[P_RPORT] == SLOT_FLAG:
                return True
            return int(_slot_str(&self._pr, P_RPORT))
        if "rport" not in self._params:
            return None
        value = self._params["rport"]
        return True if value is None else int(value)

    @property
    def ttl(self):
        value = _slot_str(&self._pr, P_TTL) if self._owner is not None else self._params.get("ttl")
        return None if value is None else int(value)

    def __reduce__(self):
        return (Via, (self.protocol, self.transport, self.host, self.port, self.params))

    @property
    def sent_by(self):
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __repr__(self):
        return f"Via({self.protocol}/{self.transport} {self.sent_by} {self.params!r})"

    def __eq__(self, other):
        if type(other).__name__ != "Via":
            return NotImplemented
        o = other
        return (self.protocol, self.transport, self.host, self.port, self.params) == (
            o.protocol, o.transport, o.host, o.port, o.params,
        )

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None


@cython.freelist(8)
cdef class NameAddr:
    """A name-addr or addr-spec with header params: From, To, Contact, Route (RFC 3261 §20.10, §20.20)."""

    cdef public object display, uri, wildcard

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")
    # Parsed ones keep their params as offsets (_pr, in _owner's text) until .params is read.
    cdef object _params, _owner
    cdef Params _pr

    def __init__(self, display, uri, params, wildcard=False):
        self.display = display
        self.uri = uri
        self._params = params
        self.wildcard = wildcard

    @property
    def params(self):
        if self._owner is not None:
            self._params = _params_dict(&self._pr, NameAddrError, "")
            self._owner = None
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self._owner = None

    @property
    def tag(self):
        if self._owner is not None:
            return _slot_str(&self._pr, P_TAG)
        return self._params.get("tag")

    def __reduce__(self):
        return (NameAddr, (self.display, self.uri, self.params, self.wildcard))

    def __repr__(self):
        if self.wildcard:
            return "NameAddr(*)"
        return f"NameAddr({self.display!r}, {self.uri!r}, {self.params!r})"

    def __eq__(self, other):
        if type(other).__name__ != "NameAddr":
            return NotImplemented
        o = other
        return (self.display, self.uri, self.params, self.wildcard) == (o.display, o.uri, o.params, o.wildcard)

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None


@cython.freelist(8)
cdef class CSeq:
    """CSeq: sequence number and method (RFC 3261 §20.16)."""

    cdef public object seq, method

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")

    def __init__(self, seq, method):
        self.seq = seq
        self.method = method

    def __repr__(self):
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other):
        if type(other).__name__ != "CSeq":
            return NotImplemented
        o = other
        return self.seq == o.seq and self.method == o.method

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None


# ---------------------------------------------------------------------------
# Scanners over decoded header values (a str read through PyUnicode_READ)
# ---------------------------------------------------------------------------


cdef inline void _txt(Txt* t, str s):
    t.kind = PyUnicode_KIND(s)
    t.ascii = PyUnicode_IS_ASCII(s)
    t.data = PyUnicode_DATA(s)
    t.n = PyUnicode_GET_LENGTH(s)
    t.owner = <PyObject*>s


cdef inline unsigned int RD(Txt* t, Py_ssize_t i) noexcept nogil:
    return PyUnicode_READ(t.kind, t.data, i)


cdef inline str _sub(Txt* t, Py_ssize_t i, Py_ssize_t j):
    """The text ``t[i:j]`` as a new str (``t`` is a str's data or pure-ASCII message bytes)."""
    if t.ascii:
        return _ascii_str(<const char*>t.data + i, j - i)
    return PyUnicode_FromKindAndData(t.kind, <const char*>t.data + i * t.kind, j - i)


cdef inline str _ascii_str(const char* p, Py_ssize_t n):
    """A str of ``n`` ASCII bytes: ``PyUnicode_New`` plus a copy (what ``_PyUnicode_FromASCII`` does)."""
    cdef str r = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(r), p, n)
    return r


cdef str _method(Txt* t, Py_ssize_t i, Py_ssize_t j):
    """``t[i:j]`` as a str; the RFC 3261 methods are shared constants (no allocation)."""
    cdef Py_ssize_t n = j - i
    cdef str m
    if t.kind == 1:
        for m in _METHODS:
            if PyUnicode_GET_LENGTH(m) == n and memcmp(PyUnicode_DATA(m), <const char*>t.data + i, n) == 0:
                return m
    return _sub(t, i, j)


cdef inline str _ch(Txt* t, Py_ssize_t i):
    return chr(RD(t, i))


cdef inline void _subtxt(Txt* dst, Txt* t, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    dst.kind = t.kind
    dst.ascii = t.ascii
    dst.data = <char*>t.data + i * t.kind
    dst.n = j - i
    dst.owner = t.owner


cdef inline bint _ascii_no_lf(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True when ``p[:n]`` is pure ASCII without a line break: then its bytes are its decoded text, index for index."""
    return _ascii(p, n) and (n == 0 or memchr(p, 10, n) == NULL)


cdef inline bint _ascii(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True when every byte of ``p[:n]`` is below 128."""
    cdef Py_ssize_t i = 0
    cdef unsigned long long acc = 0, w
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        acc |= w
        i += 8
    while i < n:
        acc |= p[i]
        i += 1
    return (acc & 0x8080808080808080ULL) == 0


cdef inline Py_ssize_t _skip_ws(Txt* t, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef unsigned int c
    while i < n:
        c = RD(t, i)
        if c != 32 and c != 9:
            break
        i += 1
    return i


cdef inline Py_ssize_t _scan_cls(Txt* t, Py_ssize_t i, Py_ssize_t n, unsigned short m) noexcept nogil:
    cdef const unsigned char* p
    if t.kind == 1:  # bytes index CLS directly (128-255 are in no class)
        p = <const unsigned char*>t.data
        while i < n and (CLS[p[i]] & m):
            i += 1
        return i
    while i < n and _is(RD(t, i), m):
        i += 1
    return i


cdef inline Py_ssize_t _scan_not_cls(Txt* t, Py_ssize_t i, Py_ssize_t n, unsigned short m) noexcept nogil:
    """The first index from ``i`` whose character is in class ``m`` (or ``n``)."""
    cdef const unsigned char* p
    if t.kind == 1:
        p = <const unsigned char*>t.data
        while i < n and not (CLS[p[i]] & m):
            i += 1
        return i
    while i < n and not _is(RD(t, i), m):
        i += 1
    return i


cdef inline Py_ssize_t _find(Txt* t, unsigned int ch, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef const void* r
    if t.kind == 1:
        if i >= n or ch > 255:
            return -1
        r = memchr(<const char*>t.data + i, ch, n - i)
        return -1 if r == NULL else <Py_ssize_t>(<const char*>r - <const char*>t.data)
    while i < n:
        if RD(t, i) == ch:
            return i
        i += 1
    return -1


cdef object _value_error(object err, str message, Py_ssize_t offset, str header):
    if issubclass(err, HeaderValueError):
        return err(f"{header}: {message}", offset, header)
    return err(message, offset)


cdef Py_ssize_t _scan_quoted(Txt* t, Py_ssize_t i, Py_ssize_t n, object err, Py_ssize_t base, str header) except -2:
    """``s[i]`` is the opening quote; returns the index after the closing quote (RFC 3261 §25.1)."""
    cdef Py_ssize_t j = i + 1
    cdef unsigned int c
    while j < n:
        c = RD(t, j)
        if c == 34:
            return j + 1
        if c == 92:
            if j + 1 >= n:
                break
            j += 2
            continue
        j += 1
    raise _value_error(err, "unterminated quoted string", base + i, header)


cdef str _unquote(Txt* t, Py_ssize_t i, Py_ssize_t end):
    """The content of the quoted string ``t[i:end]`` (quotes included), quoted-pairs unescaped."""
    cdef str inner = _sub(t, i + 1, end - 1)
    if "\\" not in inner:
        return inner
    out = []
    cdef Py_ssize_t j = 0
    cdef Py_ssize_t n = len(inner)
    while j < n:
        c = inner[j]
        if c == "\\" and j + 1 < n:
            out.append(inner[j + 1])
            j += 2
            continue
        out.append(c)
        j += 1
    return "".join(out)


cdef inline bint _teq(Txt* t, Py_ssize_t i, const char* lit, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if RD(t, i + k) != <unsigned int>(<unsigned char>lit[k]):
            return False
    return True


cdef inline str _lower_token(Txt* t, Py_ssize_t i, Py_ssize_t j):
    """``t[i:j].lower()`` for an ASCII token, with the frequent parameter names shared."""
    cdef Py_ssize_t k
    cdef unsigned int c
    cdef bint upper = False
    for k in range(i, j):
        c = RD(t, k)
        if 65 <= c <= 90:
            upper = True
            break
    if upper:
        return _sub(t, i, j).lower()
    k = j - i
    if k == 6 and _teq(t, i, b"branch", 6):
        return S_BRANCH
    if k == 5 and _teq(t, i, b"rport", 5):
        return S_RPORT
    if k == 3 and _teq(t, i, b"tag", 3):
        return S_TAG
    if k == 2 and _teq(t, i, b"lr", 2):
        return S_LR
    if k == 9 and _teq(t, i, b"transport", 9):
        return S_TRANSPORT
    if k == 8 and _teq(t, i, b"received", 8):
        return S_RECEIVED
    return _sub(t, i, j)


cdef Py_ssize_t _parse_params(
    Txt* t, Py_ssize_t i, Py_ssize_t n, Py_ssize_t base, object err, str header, bint comma_stops,
    dict params,
) except -2:
    """Parse ``*( SEMI name [EQUAL value] )`` from ``t[i]`` (up to ``n``) into ``params``.

    Values are kept as written (quotes too); the first of repeated names wins.
    Returns the index of the first character after the params: a comma (when
    ``comma_stops``) or ``n``; anything else raises.
    """
    cdef Py_ssize_t j
    cdef unsigned int c
    cdef str name
    cdef object value
    i = _skip_ws(t, i, n)
    while i < n and RD(t, i) == 59:
        i = _skip_ws(t, i + 1, n)
        j = _scan_cls(t, i, n, C_TOKEN)
        if j == i:
            raise _value_error(err, "empty parameter name", base + i, header)
        name = _lower_token(t, i, j)
        i = _skip_ws(t, j, n)
        value = None
        if i < n and RD(t, i) == 61:
            i = _skip_ws(t, i + 1, n)
            c = RD(t, i) if i < n else 0
            if i < n and c == 34:
                j = _scan_quoted(t, i, n, err, base, header)
            elif i < n and c == 91:
                j = _find(t, 93, i, n)
                if j < 0:
                    raise _value_error(err, "unterminated IPv6 reference in parameter", base + i, header)
                j += 1
            else:
                j = _scan_not_cls(t, i, n, C_PVEND)
            if j == i:
                raise _value_error(err, f"empty value for parameter {name!r}", base + i, header)
            value = _sub(t, i, j)
            i = _skip_ws(t, j, n)
        PyDict_SetDefault(params, name, value)  # the first of repeated names wins
    if i < n and not (comma_stops and RD(t, i) == 44):
        raise _value_error(err, f"unexpected character {_ch(t, i)!r}", base + i, header)
    return i


cdef inline bint _tieq(Txt* t, Py_ssize_t i, const char* lit, Py_ssize_t n) noexcept nogil:
    """``t[i:i+n].lower() == lit`` for a token (ASCII): only A-Z change case."""
    cdef Py_ssize_t k
    cdef unsigned int c
    for k in range(n):
        c = RD(t, i + k)
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned int>(<unsigned char>lit[k]):
            return False
    return True


cdef inline int _known_param(Txt* t, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """The slot of the param name ``t[i:j]`` (any case), or -1."""
    cdef Py_ssize_t n = j - i
    if n == 6:
        return P_BRANCH if _tieq(t, i, b"branch", 6) else -1
    if n == 8:
        return P_RECEIVED if _tieq(t, i, b"received", 8) else -1
    if n == 5:
        if _tieq(t, i, b"rport", 5):
            return P_RPORT
        return P_MADDR if _tieq(t, i, b"maddr", 5) else -1
    if n == 3:
        if _tieq(t, i, b"tag", 3):
            return P_TAG
        return P_TTL if _tieq(t, i, b"ttl", 3) else -1
    return -1


cdef inline void _params_init(Params* r, Txt* t, Py_ssize_t i) noexcept nogil:
    cdef int k
    r.kind = t.kind
    r.ascii = t.ascii
    r.data = <const char*>t.data
    r.ps = i
    r.pe = i
    for k in range(NSLOTS):
        r.sv[k] = SLOT_ABSENT
        r.ev[k] = SLOT_ABSENT


cdef Py_ssize_t _scan_params(
    Txt* t, Py_ssize_t i, Py_ssize_t n, Py_ssize_t base, object err, str header, bint comma_stops, Params* r,
) except -2:
    """``_parse_params`` without the dict: the same checks and errors, and the first value of each
    known name recorded in ``r``'s slots. Returns the index after the params (and sets ``r.pe``)."""
    cdef Py_ssize_t j, ni, vs0, ve0
    cdef unsigned int c
    cdef int slot
    i = _skip_ws(t, i, n)
    while i < n and RD(t, i) == 59:
        i = _skip_ws(t, i + 1, n)
        j = _scan_cls(t, i, n, C_TOKEN)
        if j == i:
            raise _value_error(err, "empty parameter name", base + i, header)
        slot = _known_param(t, i, j)
        ni = i
        vs0 = ve0 = SLOT_FLAG
        i = _skip_ws(t, j, n)
        if i < n and RD(t, i) == 61:
            i = _skip_ws(t, i + 1, n)
            c = RD(t, i) if i < n else 0
            if i < n and c == 34:
                j = _scan_quoted(t, i, n, err, base, header)
            elif i < n and c == 91:
                j = _find(t, 93, i, n)
                if j < 0:
                    raise _value_error(err, "unterminated IPv6 reference in parameter", base + i, header)
                j += 1
            else:
                j = _scan_not_cls(t, i, n, C_PVEND)
            if j == i:
                name = _lower_token(t, ni, _scan_cls(t, ni, n, C_TOKEN))
                raise _value_error(err, f"empty value for parameter {name!r}", base + i, header)
            vs0 = i
            ve0 = j
            i = _skip_ws(t, j, n)
        if slot >= 0 and r.sv[slot] == SLOT_ABSENT:
            r.sv[slot] = vs0
            r.ev[slot] = ve0
    if i < n and not (comma_stops and RD(t, i) == 44):
        raise _value_error(err, f"unexpected character {_ch(t, i)!r}", base + i, header)
    r.pe = i
    return i


cdef dict _params_dict(Params* r, object err, str header):
    """The params dict of a run ``_scan_params`` validated (so this raises nothing)."""
    cdef Txt t
    cdef dict d = {}
    t.kind = r.kind
    t.ascii = r.ascii
    t.data = <void*>r.data
    t.n = r.pe
    t.owner = NULL
    if r.pe > r.ps:
        _parse_params(&t, r.ps, r.pe, 0, err, header, False, d)
    return d


cdef object _slot_str(Params* r, int k):
    """The value of known param ``k`` as written, or None (absent, or a flag)."""
    cdef Py_ssize_t s = r.sv[k]
    if s < 0:
        return None
    if r.ascii:
        return _ascii_str(r.data + s, r.ev[k] - s)
    return PyUnicode_FromKindAndData(r.kind, r.data + s * r.kind, r.ev[k] - s)


cdef bint _digits_upto_t(Txt* t, Py_ssize_t s, Py_ssize_t e, Py_ssize_t maxlen, long maxval) noexcept:
    """True when ``t[s:e]`` is ASCII digits, at most maxlen of them after leading zeros, worth <= maxval."""
    cdef Py_ssize_t k, sig = 0
    cdef long x = 0
    cdef unsigned int c
    for k in range(s, e):
        c = RD(t, k)
        if c < 48 or c > 57:
            return False
        if sig == 0 and c == 48:
            continue  # leading zeros are not significant (RFC 4475 §3.1.1.1)
        sig += 1
        if sig <= 8:
            x = x * 10 + (c - 48)
    if sig > maxlen:
        return False
    return x <= maxval


cdef Py_ssize_t _scan_host(Txt* t, Py_ssize_t i, Py_ssize_t end, object err, Py_ssize_t base, str header) except -2:
    """Scan a host (hostname, IPv4 or bracketed IPv6 reference, RFC 3261 §25.1); returns the end index."""
    cdef Py_ssize_t j, k
    cdef bint colon = False
    if i < end and RD(t, i) == 91:
        j = _find(t, 93, i, end)
        if j < 0:
            raise _value_error(err, "unterminated IPv6 reference", base + i, header)
        if j == i + 1:
            raise _value_error(err, "invalid IPv6 reference", base + i, header)
        for k in range(i + 1, j):
            if not _is(RD(t, k), C_IPV6):
                raise _value_error(err, "invalid IPv6 reference", base + i, header)
            if RD(t, k) == 58:
                colon = True
        if not colon or not ipv6_ok(_sub(t, i + 1, j)):
            raise _value_error(err, "invalid IPv6 reference", base + i, header)
        return j + 1
    j = _scan_cls(t, i, end, C_HOST)
    if j == i:
        raise _value_error(err, "missing host", base + i, header)
    return j


cdef Py_ssize_t _scan_port(Txt* t, Py_ssize_t i, Py_ssize_t end, object err, Py_ssize_t base, str header, long* port) except -2:
    cdef Py_ssize_t j = _scan_cls(t, i, end, C_DIGIT)
    cdef Py_ssize_t k = i
    cdef long v = 0
    while k < j and RD(t, k) == 48:
        k += 1  # leading zeros
    cdef Py_ssize_t z = k
    for k in range(z, min(j, z + 6)):
        v = v * 10 + (RD(t, k) - 48)
    if j == i or j - z > 5 or v > _MAX_PORT:
        raise _value_error(err, "invalid port", base + i, header)
    port[0] = v
    return j


# ---------------------------------------------------------------------------
# URIs (RFC 3261 §19.1, §25.1)
# ---------------------------------------------------------------------------


cdef int _check_escapes(Txt* t, Py_ssize_t start, Py_ssize_t end, Py_ssize_t base) except -1:
    """Every '%' in ``s[start:end]`` must start a %HEX HEX escape (RFC 3261 §25.1 escaped)."""
    cdef Py_ssize_t i = _find(t, 37, start, end)
    while i >= 0:
        if i + 2 >= end or not _is(RD(t, i + 1), C_HEX) or not _is(RD(t, i + 2), C_HEX):
            raise URIError("invalid %-escape in URI", base + i)
        i = _find(t, 37, i + 3, end)
    return 0


cdef object _parse_uri(Txt* t, Py_ssize_t base, str s):
    """Parse the URI text ``t``; ``s`` is that text as a str when the caller has it (else it is made)."""
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t k, colon, i, at, pc, semi, h_end, q, pend, qm
    cdef unsigned int c
    cdef long port_v
    cdef bint pct = False
    if n == 0:
        raise URIError("empty URI", base)
    # One pass: forbidden characters, and where the first ':', the first '@' after it and the
    # first '?' are, and whether any '%' is (no '%': no escape to check).
    colon = at = qm = -1
    k = 0
    while True:
        k = _scan_not_cls(t, k, n, C_URIBAD | C_URISPEC)
        if k >= n:
            break
        c = RD(t, k)
        if CLS[c] & C_URIBAD:
            raise URIError(f"character {_ch(t, k)!r} not allowed in a URI", base + k)
        if c == 58:
            if colon < 0:
                colon = k
        elif c == 64:
            if at < 0 and colon >= 0:
                at = k
        elif c == 63:
            if qm < 0:
                qm = k
        else:
            pct = True
        k += 1
    if colon <= 0 or not _is(RD(t, 0), C_ALPHA):
        raise URIError("URI without a valid scheme", base)
    for k in range(colon):
        if not _is(RD(t, k), C_SCHEME):
            raise URIError("URI without a valid scheme", base)
    cdef str scheme
    if colon == 3 and (RD(t, 0) | 0x20) == 115 and (RD(t, 1) | 0x20) == 105 and (RD(t, 2) | 0x20) == 112:
        scheme = S_SIP
    elif colon == 4 and (RD(t, 0) | 0x20) == 115 and (RD(t, 1) | 0x20) == 105 and (RD(t, 2) | 0x20) == 112 and (RD(t, 3) | 0x20) == 115:
        scheme = S_SIPS
    else:
        scheme = _sub(t, 0, colon).lower()
    cdef dict params
    cdef AbsoluteURI au
    if scheme is not S_SIP and scheme is not S_SIPS:
        if colon + 1 >= n:
            raise URIError(f"empty {scheme}: URI", base + colon + 1)
        user = None
        params = {}
        if scheme == "tel":
            semi = _find(t, 59, colon + 1, n)
            user = _sub(t, colon + 1, semi if semi >= 0 else n)
            if not user:
                raise URIError("tel: URI without a number", base + colon + 1)
            if semi >= 0:
                _parse_params(t, semi, n, base, _E_URI, "", False, params)
        au = AbsoluteURI.__new__(AbsoluteURI)
        au.scheme = scheme
        au.user = user
        au.params = params
        au._raw = s if s is not None else _sub(t, 0, n)
        return au

    i = colon + 1
    # userinfo ends at the first '@' (the host, params and headers cannot hold one unescaped).
    user = password = None
    if at >= 0:
        pc = _find(t, 58, i, at)
        if pc >= 0:
            user = _sub(t, i, pc)
            password = _sub(t, pc + 1, at)
        else:
            user = _sub(t, i, at)
        if not user:
            raise URIError("empty user part before '@'", base + i)
        if pct:
            _check_escapes(t, i, at, base)
        i = at + 1
    h_end = _scan_host(t, i, n, _E_URI, base, "")
    host = _sub(t, i, h_end)
    i = h_end
    port = None
    if i < n and RD(t, i) == 58:
        i = _scan_port(t, i + 1, n, _E_URI, base, "", &port_v)
        port = port_v
    params = None
    if i < n and RD(t, i) == 59:
        params = {}
        q = -1 if qm < 0 else (qm if qm >= i else _find(t, 63, i, n))
        pend = q if q >= 0 else n
        _parse_params(t, i, pend, base, _E_URI, "", False, params)
        if pct:
            _check_escapes(t, i, pend, base)
        i = pend
    cdef dict headers = None
    if i < n and RD(t, i) == 63:
        headers = {}
        if pct:
            _check_escapes(t, i, n, base)
        for part in _sub(t, i + 1, n).split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            if not name:
                raise URIError("empty URI header name", base + i)
            headers.setdefault(name, value)
        i = n
    if i != n:
        raise URIError(f"unexpected character {_ch(t, i)!r} in URI", base + i)
    cdef SipURI u = SipURI.__new__(SipURI)
    u.scheme = scheme
    u.user = user
    u.password = password
    u.host = host
    u.port = port
    u._params = params if params else _LAZY
    u._headers = headers if headers else _LAZY
    if s is not None:
        u._raw_s = s
    else:
        u._rt = t[0]
        u._owner = <object>t.owner
    return u


def parse_uri(text):
    """Parse a SIP, SIPS or absolute URI.

    Returns a ``SipURI`` for sip:/sips:, else an ``AbsoluteURI``.
    Raises ``URIError`` (a ``ParseError``) when the text is not a URI.
    """
    if not isinstance(text, str):
        raise TypeError("parse_uri() takes a str")
    cdef str s = str(text)
    cdef Txt t
    _txt(&t, s)
    return _parse_uri(&t, 0, s)


# ---------------------------------------------------------------------------
# Header value parsers
# ---------------------------------------------------------------------------

cdef tuple _VIA_WHAT = ("protocol name", "protocol version", "transport")


cdef inline bint _eq3(Txt* t, Py_ssize_t i, Py_ssize_t j, unsigned int a, unsigned int b, unsigned int c) noexcept nogil:
    return j - i == 3 and RD(t, i) == a and RD(t, i + 1) == b and RD(t, i + 2) == c


cdef int _parse_vias(Txt* t, Py_ssize_t base, list out) except -1:
    """RFC 3261 §20.42: via-parm *(COMMA via-parm); appends to ``out``."""
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t i = 0, j = 0, h_end, k, element
    cdef Py_ssize_t ps[3]
    cdef Py_ssize_t pe[3]
    cdef long port_v
    cdef Via via
    cdef Params* pr
    cdef str protocol, transport
    while True:
        i = _skip_ws(t, i, n)
        element = i  # errors in params point at the via-parm that holds them
        for k in range(3):
            j = _scan_cls(t, i, n, C_TOKEN)
            if j == i:
                raise ViaError(f"Via: missing {_VIA_WHAT[k]}", base + i, "Via")
            ps[k] = i
            pe[k] = j
            i = _skip_ws(t, j, n)
            if k < 2:
                if i >= n or RD(t, i) != 47:
                    raise ViaError("Via: expected '/' in sent-protocol", base + i, "Via")
                i = _skip_ws(t, i + 1, n)
        if i == j:
            raise ViaError("Via: missing space before sent-by", base + i, "Via")
        if _eq3(t, ps[0], pe[0], 83, 73, 80) and _eq3(t, ps[1], pe[1], 50, 46, 48):
            protocol = S_SIP20
        else:
            protocol = f"{_sub(t, ps[0], pe[0])}/{_sub(t, ps[1], pe[1])}"
        if _eq3(t, ps[2], pe[2], 85, 68, 80):
            transport = S_UDP
        elif _eq3(t, ps[2], pe[2], 84, 67, 80):
            transport = S_TCP
        elif _eq3(t, ps[2], pe[2], 84, 76, 83):
            transport = S_TLS
        else:
            transport = _sub(t, ps[2], pe[2]).upper()
        h_end = _scan_host(t, i, n, _E_VIA, base, "Via")
        host = _sub(t, i, h_end)
        i = _skip_ws(t, h_end, n)
        port = None
        if i < n and RD(t, i) == 58:
            i = _scan_port(t, _skip_ws(t, i + 1, n), n, _E_VIA, base, "Via", &port_v)
            port = port_v
        via = Via.__new__(Via)
        pr = &via._pr
        _params_init(pr, t, i)
        i = _scan_params(t, i, n, base, _E_VIA, "Via", True, pr)
        if pr.sv[P_RPORT] >= 0 and not _digits_upto_t(t, pr.sv[P_RPORT], pr.ev[P_RPORT], 5, _MAX_PORT):
            raise ViaError("Via: invalid rport", base + element, "Via")
        if pr.sv[P_TTL] >= 0 and not _digits_upto_t(t, pr.sv[P_TTL], pr.ev[P_TTL], 3, 255):
            raise ViaError("Via: invalid ttl", base + element, "Via")
        via.protocol = protocol
        via.transport = transport
        via.host = host
        via.port = port
        via._owner = <object>t.owner
        out.append(via)
        if i >= n:
            return 0
        # s[i] == "," here: _parse_params stops only at a comma or the end.
        i += 1


cdef object _parse_name_addrs(Txt* t, Py_ssize_t base, str header, bint multi, list out):
    """RFC 3261 §20.10/§20.20: (name-addr / addr-spec) *(SEMI param), comma-separated when ``multi``."""
    cdef Txt ut
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t i = 0, j, close
    cdef unsigned int c
    cdef dict params
    cdef NameAddr na
    while True:
        i = _skip_ws(t, i, n)
        if i >= n:
            raise NameAddrError(f"{header}: empty value", base + i, header)
        display = None
        if RD(t, i) == 34:
            j = _scan_quoted(t, i, n, _E_NAMEADDR, base, header)
            display = _unquote(t, i, j)
            i = _skip_ws(t, j, n)
            if i >= n or RD(t, i) != 60:
                raise NameAddrError(f"{header}: expected '<' after display name", base + i, header)
        else:
            j = i
            while j < n:
                c = RD(t, j)
                if not (_is(c, C_TOKEN) or c == 32 or c == 9):
                    break
                j += 1
            if j < n and RD(t, j) == 60:
                if j > i:
                    display = _sub(t, i, j).strip(_WS) or None
                i = j
        if RD(t, i) == 60:
            close = _find(t, 62, i + 1, n)
            if close < 0:
                raise NameAddrError(f"{header}: missing '>'", base + i, header)
            _subtxt(&ut, t, i + 1, close)
            uri = _parse_uri(&ut, base + i + 1, None)
            i = close + 1
        else:
            # addr-spec: no <>, so the URI cannot hold ';', ',' or '?' (RFC 3261 §20.10).
            j = i
            while j < n and not _is(RD(t, j), C_ADDREND):
                j += 1
            close = _find(t, 63, i, j)
            if close >= 0:
                # RFC 3261 §20.10; RFC 4475 §3.1.2.13 (regbadct): the <> cannot be guessed in general.
                raise NameAddrError(f"{header}: a URI with headers must be enclosed in <>", base + close, header)
            _subtxt(&ut, t, i, j)
            uri = _parse_uri(&ut, base + i, None)
            i = j
        na = NameAddr.__new__(NameAddr)
        _params_init(&na._pr, t, i)
        i = _scan_params(t, i, n, base, _E_NAMEADDR, header, multi, &na._pr)
        na.display = display
        na.uri = uri
        na._owner = <object>t.owner
        na.wildcard = False
        if out is not None:
            out.append(na)
        if i >= n:
            return na
        i += 1  # past the comma


cdef object _parse_cseq(Txt* t, Py_ssize_t base):
    """RFC 3261 §20.16: CSeq = 1*DIGIT LWS Method."""
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t i = 0, j, k
    cdef long long v = 0
    cdef Py_ssize_t sig = 0
    while i < n and _is(RD(t, i), C_DIGIT):
        if sig > 0 or RD(t, i) != 48:  # leading zeros are not significant
            sig += 1
            if sig < 12:
                v = v * 10 + (RD(t, i) - 48)
        i += 1
    if i == 0 or sig > 10 or v > _MAX_CSEQ:
        raise CSeqError("CSeq: invalid sequence number", base, "CSeq")
    j = _skip_ws(t, i, n)
    if j == i:
        raise CSeqError("CSeq: expected whitespace after the number", base + i, "CSeq")
    k = _scan_cls(t, j, n, C_TOKEN)
    if k == j or k != n:
        raise CSeqError("CSeq: invalid method", base + j, "CSeq")
    cdef CSeq cs = CSeq.__new__(CSeq)
    cs.seq = v
    cs.method = _method(t, j, k)
    return cs


# ---------------------------------------------------------------------------
# Editing helpers (cold paths: plain Python, as the reference)
# ---------------------------------------------------------------------------


def _split_elements(value):
    """Split a header value at top-level commas (not inside quotes or <>)."""
    out = []
    rest = value
    while True:
        cut = _split_first_element(rest)
        if cut < 0:
            out.append(rest.strip(_WS))
            return out
        out.append(rest[:cut].strip(_WS))
        rest = rest[cut + 1 :]


cdef Py_ssize_t _split_first_element(str value):
    """Index of the first top-level comma in ``value``, or -1."""
    cdef Txt t
    _txt(&t, value)
    cdef Py_ssize_t depth_angle = 0
    cdef bint in_quote = False
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t n = t.n
    cdef unsigned int c
    while i < n:
        c = RD(&t, i)
        if in_quote:
            if c == 92:
                i += 1
            elif c == 34:
                in_quote = False
        elif c == 34:
            in_quote = True
        elif c == 60:
            depth_angle += 1
        elif c == 62:
            depth_angle = max(0, depth_angle - 1)
        elif c == 44 and depth_angle == 0:
            return i
        i += 1
    return -1


def _set_param(str element, str name, value):
    """Return ``element`` with ``;name[=value]`` replaced in place, or inserted right after the sent-by.

    OpenSIPS and Kamailio put a new ``received`` directly after the sent-by and
    fill a bare ``rport`` in place, as the reference does.
    """
    text = name if value is None else f"{name}={value}"
    cdef Txt tt
    cdef Txt* t = &tt
    _txt(t, element)
    cdef Py_ssize_t first_semi = -1
    cdef Py_ssize_t i = 0, j, k, m
    cdef Py_ssize_t n = t.n
    cdef bint in_quote = False
    cdef unsigned int c
    while i < n:
        c = RD(t, i)
        if in_quote:
            if c == 92:
                i += 1
            elif c == 34:
                in_quote = False
        elif c == 34:
            in_quote = True
        elif c == 59:
            if first_semi < 0:
                first_semi = i
            j = _skip_ws(t, i + 1, n)
            k = _scan_cls(t, j, n, C_TOKEN)
            if element[j:k].lower() == name:
                m = _skip_ws(t, k, n)
                if m < n and RD(t, m) == 61:
                    m = _skip_ws(t, m + 1, n)
                    if m < n and RD(t, m) == 34:
                        m = _scan_quoted(t, m, n, ViaError, 0, "Via")
                    else:
                        while m < n and not _is(RD(t, m), C_PVEND):
                            m += 1
                else:
                    m = k
                return element[: i + 1] + text + element[m:]
        i += 1
    if first_semi < 0:
        return f"{element};{text}"
    return f"{element[:first_semi]};{text}{element[first_semi:]}"


# ---------------------------------------------------------------------------
# Message model
# ---------------------------------------------------------------------------


cdef class Headers:
    """Case-insensitive multi-map of header values in wire order; compact names map to full names."""

    cdef object _items
    cdef dict _index

    def __init__(self, items):
        # (key, display name, value)
        self._items = items
        cdef dict index = {}
        for key, _, value in items:
            index.setdefault(key, []).append(value)
        self._index = index

    def get(self, name, default=None):
        """The first value of ``name``, or ``default``."""
        values = self._index.get(_hkey(name))
        return values[0] if values else default

    def getall(self, name):
        """All values of ``name`` in wire order (one per header line); [] when absent."""
        return list(self._index.get(_hkey(name), ()))

    def __getitem__(self, name):
        values = self._index.get(_hkey(name))
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name):
        return isinstance(name, str) and _hkey(name) in self._index

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return (name for _, name, _ in self._items)

    def keys(self):
        return [name for _, name, _ in self._items]

    def items(self):
        """(name, value) pairs in wire order; known headers under their RFC spelling."""
        return [(name, value) for _, name, value in self._items]

    def values(self):
        return [value for _, _, value in self._items]

    def __repr__(self):
        return f"Headers({self.items()!r})"


cdef struct Field:
    int kind       # K_* or K_OTHER
    int bufi       # index into Message._bufs (0: the received buffer)
    Py_ssize_t ls  # line start (= name start)
    Py_ssize_t ne  # name end
    Py_ssize_t vs  # value start (after the colon, leading whitespace skipped)
    Py_ssize_t ve  # value end (before the line break, trailing whitespace dropped)
    Py_ssize_t le  # line end (after the line break)
    int folded     # 0: the value holds no line break (a received line without continuation)


DEF INITIAL_FIELDS = 16

cdef object _UNSET = object()


cdef class Message:
    """Common base of ``Request`` and ``Response``: headers, body, lazy accessors, edits."""

    cdef Field* _f
    cdef Py_ssize_t _nf
    cdef Py_ssize_t _cap
    cdef list _bufs  # None until an edit adds a buffer: then [_buf0, ...]
    cdef bytes _buf0  # the received buffer
    cdef const unsigned char* _p0
    cdef int _sl_b, _tail_b, _body_b
    cdef Py_ssize_t _sl_s, _sl_e, _tail_s, _tail_e, _body_s, _body_e
    cdef bint _modified
    cdef object _c_headers, _c_via, _c_from, _c_to, _c_contact, _c_route, _c_rr, _c_cseq, _c_uri

    is_request = False

    def __cinit__(self):
        self._f = NULL
        self._nf = 0
        self._cap = 0
        self._c_headers = _UNSET
        self._c_via = _UNSET
        self._c_from = _UNSET
        self._c_to = _UNSET
        self._c_contact = _UNSET
        self._c_route = _UNSET
        self._c_rr = _UNSET
        self._c_cseq = _UNSET
        self._c_uri = _UNSET

    def __dealloc__(self):
        free(self._f)

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete {type(self).__name__}.{name}")

    def __init__(self):
        raise TypeError("use fastsip.parse() to build messages")

    # --- field array ---------------------------------------------------------
    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap
        cdef Field* nf
        if need <= self._cap:
            return 0
        cap = self._cap * 2 if self._cap else INITIAL_FIELDS
        while cap < need:
            cap *= 2
        nf = <Field*>realloc(self._f, cap * sizeof(Field))
        if nf == NULL:
            raise MemoryError()
        self._f = nf
        self._cap = cap
        return 0

    cdef inline const unsigned char* _ptr(self, int bufi):
        if bufi == 0:
            return self._p0
        return <const unsigned char*>PyBytes_AS_STRING(self._bufs[bufi])

    cdef int _add_buf(self, bytes b) except -1:
        if self._bufs is None:
            self._bufs = [self._buf0]
        self._bufs.append(b)
        return len(self._bufs) - 1

    cdef inline bytes _buf(self, int bufi):
        return self._buf0 if bufi == 0 else <bytes>self._bufs[bufi]

    cdef bytes _raw_value(self, Py_ssize_t k):
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi)
        raw = PyBytes_FromStringAndSize(<const char*>p + f.vs, f.ve - f.vs)
        if f.folded and memchr(p + f.vs, 10, f.ve - f.vs) != NULL:
            raw = _FOLD_RE.sub(b" ", raw)
        return raw

    cdef str _value(self, Py_ssize_t k):
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi)
        if f.folded and memchr(p + f.vs, 10, f.ve - f.vs) != NULL:
            return _FOLD_RE.sub(b" ", PyBytes_FromStringAndSize(<const char*>p + f.vs, f.ve - f.vs)).decode(
                "utf-8", "replace"
            )
        if _ascii(p + f.vs, f.ve - f.vs):  # ASCII is its own UTF-8: copy, no decoder
            return _ascii_str(<const char*>p + f.vs, f.ve - f.vs)
        return _decode(p + f.vs, f.ve - f.vs)

    cdef str _view(self, Py_ssize_t k, Txt* t):
        """Point ``t`` at the value of field ``k``: its own bytes when they are pure ASCII and unfolded
        (then byte and character offsets agree), else the decoded value, which is returned and must be
        held while ``t`` is used (None in the first case)."""
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi) + f.vs
        if _ascii(p, f.ve - f.vs) and not (f.folded and memchr(p, 10, f.ve - f.vs) != NULL):
            t.kind = 1
            t.ascii = True
            t.data = <void*>p
            t.n = f.ve - f.vs
            t.owner = <PyObject*>self._buf0 if f.bufi == 0 else PyList_GET_ITEM(self._bufs, f.bufi)
            return None
        cdef str s = self._value(k)
        _txt(t, s)
        return s

    cdef str _name(self, Py_ssize_t k):
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi)
        return PyUnicode_DecodeUTF8(<const char*>p + f.ls, f.ne - f.ls, "strict")

    cdef str _key(self, Py_ssize_t k):
        cdef int kind = self._f[k].kind
        if kind != K_OTHER:
            return _KIND_KEYS[kind]
        return _hkey(self._name(k))

    cdef Py_ssize_t _first(self, int kind) noexcept:
        cdef Py_ssize_t k
        for k in range(self._nf):
            if self._f[k].kind == kind:
                return k
        return -1

    cdef bint _matches(self, Py_ssize_t k, int kind, object key) except -1:
        if kind != K_OTHER:
            return self._f[k].kind == kind
        return self._f[k].kind == K_OTHER and self._key(k) == key

    cdef int _new_field(self, Field* f, name, value) except -1:
        """Fill ``f`` with a new line ``name: value`` in a buffer of its own (``_Field.new``)."""
        cdef Py_ssize_t nn, nv
        cdef bytes buf
        cdef char* o
        if type(name) is str and type(value) is str and PyUnicode_IS_ASCII(name) and PyUnicode_IS_ASCII(value):
            # ASCII text is its own UTF-8: one allocation, two copies.
            nn = PyUnicode_GET_LENGTH(name)
            nv = PyUnicode_GET_LENGTH(value)
            buf = PyBytes_FromStringAndSize(NULL, nn + nv + 4)
            o = PyBytes_AS_STRING(buf)
            memcpy(o, PyUnicode_DATA(name), nn)
            o[nn] = b':'
            o[nn + 1] = b' '
            memcpy(o + nn + 2, PyUnicode_DATA(value), nv)
            o[nn + 2 + nv] = b'\r'
            o[nn + 3 + nv] = b'\n'
        else:
            bname = name.encode("utf-8")
            bvalue = value.encode("utf-8")
            buf = bname + b": " + bvalue + b"\r\n"
            nn = len(bname)
            nv = len(bvalue)
        f.kind = _kind_of(name)
        f.folded = 1  # the caller's value may hold line breaks: look when reading
        f.bufi = self._add_buf(buf)
        f.ls = 0
        f.ne = nn
        f.vs = nn + 2
        f.ve = f.vs + nv
        f.le = nn + nv + 4
        return 0

    cdef int _insert_field(self, Py_ssize_t at, Field* f) except -1:
        self._reserve(self._nf + 1)
        if at < self._nf:
            memmove(&self._f[at + 1], &self._f[at], (self._nf - at) * sizeof(Field))
        self._f[at] = f[0]
        self._nf += 1
        return 0

    cdef void _delete_field(self, Py_ssize_t at) noexcept:
        if at + 1 < self._nf:
            memmove(&self._f[at], &self._f[at + 1], (self._nf - at - 1) * sizeof(Field))
        self._nf -= 1

    # --- raw access ----------------------------------------------------------
    def __bytes__(self):
        """The message bytes: exactly the received ones while unmodified."""
        cdef bytes buf
        if not self._modified:
            buf = self._buf(self._sl_b)
            if self._sl_s == 0 and self._body_e == PyBytes_GET_SIZE(buf):
                return buf
            return buf[self._sl_s : self._body_e]
        cdef Py_ssize_t total = (self._sl_e - self._sl_s) + (self._tail_e - self._tail_s) + (self._body_e - self._body_s)
        cdef Py_ssize_t k
        cdef Field* f
        for k in range(self._nf):
            f = &self._f[k]
            total += f.le - f.ls
        out = PyBytes_FromStringAndSize(NULL, total)
        cdef char* o = PyBytes_AS_STRING(out)
        cdef Py_ssize_t w = 0
        memcpy(o, self._ptr(self._sl_b) + self._sl_s, self._sl_e - self._sl_s)
        w = self._sl_e - self._sl_s
        for k in range(self._nf):
            f = &self._f[k]
            memcpy(o + w, self._ptr(f.bufi) + f.ls, f.le - f.ls)
            w += f.le - f.ls
        memcpy(o + w, self._ptr(self._tail_b) + self._tail_s, self._tail_e - self._tail_s)
        w += self._tail_e - self._tail_s
        memcpy(o + w, self._ptr(self._body_b) + self._body_s, self._body_e - self._body_s)
        return out

    def to_bytes(self):
        """The message bytes (same as ``bytes(msg)``)."""
        return self.__bytes__()

    @property
    def headers(self):
        cdef Py_ssize_t k
        cdef int kind
        if self._c_headers is _UNSET:
            items = []
            for k in range(self._nf):
                kind = self._f[k].kind
                if kind != K_OTHER:
                    items.append((_KIND_KEYS[kind], _KIND_DISPLAY[kind], self._value(k)))
                else:
                    name = self._name(k)
                    key = _hkey(name)
                    items.append((key, display_name(key, name), self._value(k)))
            self._c_headers = Headers(items)
        return self._c_headers

    def header(self, name, default=None):
        """``headers.get(name, default)`` without building the ``headers`` view: one scan of the
        header fields (a proxy or an accounting rule reading one header of each message)."""
        cdef Py_ssize_t k
        cdef int kind
        if self._c_headers is not _UNSET:
            return self._c_headers.get(name, default)
        kind = _kind_of(name)
        if kind != K_OTHER:
            k = self._first(kind)
            return self._value(k) if k >= 0 else default
        key = _hkey(name)
        for k in range(self._nf):
            if self._f[k].kind == K_OTHER and _hkey(self._name(k)) == key:
                return self._value(k)
        return default

    @property
    def body(self):
        if self._body_b == 0:
            return PyBytes_FromStringAndSize(<const char*>self._p0 + self._body_s, self._body_e - self._body_s)
        buf = self._bufs[self._body_b]
        return buf[self._body_s : self._body_e]

    # --- lazily parsed headers ------------------------------------------------
    @property
    def via(self):
        cdef Py_ssize_t k
        cdef list out
        cdef Txt t
        cdef str hold
        if self._c_via is _UNSET:
            out = []
            for k in range(self._nf):
                if self._f[k].kind == K_VIA:
                    hold = self._view(k, &t)
                    _parse_vias(&t, self._f[k].vs, out)
            self._c_via = out
        return self._c_via

    cdef object _name_addr(self, int kind, str header):
        cdef Py_ssize_t k = self._first(kind)
        cdef Txt t
        if k < 0:
            return None
        cdef str hold = self._view(k, &t)
        return _parse_name_addrs(&t, self._f[k].vs, header, False, None)

    @property
    def from_(self):
        if self._c_from is _UNSET:
            self._c_from = self._name_addr(K_FROM, "From")
        return self._c_from

    @property
    def to(self):
        if self._c_to is _UNSET:
            self._c_to = self._name_addr(K_TO, "To")
        return self._c_to

    cdef list _name_addr_list(self, int kind, str header, bint star):
        cdef list out = []
        cdef Py_ssize_t k
        cdef Txt t
        cdef str value
        for k in range(self._nf):
            if self._f[k].kind == kind:
                value = self._value(k)
                if star and value.strip(_WS) == "*":
                    out.append(NameAddr(None, None, {}, True))
                else:
                    _txt(&t, value)
                    _parse_name_addrs(&t, self._f[k].vs, header, True, out)
        return out

    @property
    def contact(self):
        if self._c_contact is _UNSET:
            self._c_contact = self._name_addr_list(K_CONTACT, "Contact", True)
        return self._c_contact

    @property
    def route(self):
        if self._c_route is _UNSET:
            self._c_route = self._name_addr_list(K_ROUTE, "Route", False)
        return self._c_route

    @property
    def record_route(self):
        if self._c_rr is _UNSET:
            self._c_rr = self._name_addr_list(K_RR, "Record-Route", False)
        return self._c_rr

    @property
    def cseq(self):
        cdef Py_ssize_t k
        cdef Txt t
        cdef str hold
        if self._c_cseq is _UNSET:
            k = self._first(K_CSEQ)
            if k < 0:
                self._c_cseq = None
            else:
                hold = self._view(k, &t)
                self._c_cseq = _parse_cseq(&t, self._f[k].vs)
        return self._c_cseq

    @property
    def call_id(self):
        cdef Py_ssize_t k = self._first(K_CALLID)
        if k < 0:
            return None
        value = self._value(k)
        if not value:
            raise HeaderValueError("Call-ID: empty value", self._f[k].vs, "Call-ID")
        return value

    @property
    def max_forwards(self):
        cdef Py_ssize_t k = self._first(K_MAXFWD)
        if k < 0:
            return None
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi)
        cdef Py_ssize_t i
        cdef long v = 0
        cdef Py_ssize_t n = f.ve - f.vs
        if 0 < n <= 3:
            for i in range(f.vs, f.ve):
                if p[i] < 48 or p[i] > 57:
                    break
                v = v * 10 + (p[i] - 48)
            else:
                if v <= 255:
                    return v
        # Anything else (leading zeros, non-ASCII): decide exactly as the reference does.
        mf = uint_value(self._value(k), 255, 3)
        if mf is None:
            raise NumberError("Max-Forwards: not a number from 0 to 255", f.vs, "Max-Forwards")
        return mf

    @property
    def content_length(self):
        cdef Py_ssize_t k = self._first(K_CLEN)
        if k < 0:
            return None
        cdef Field* f = &self._f[k]
        cdef const unsigned char* p = self._ptr(f.bufi)
        cdef Py_ssize_t i
        cdef long long v = 0
        if 0 < f.ve - f.vs <= 10:
            for i in range(f.vs, f.ve):
                if p[i] < 48 or p[i] > 57:
                    break
                v = v * 10 + (p[i] - 48)
            else:
                return v
        # Framing checked the received value; an edit may have written anything.
        cl = uint_value(self._value(k), 9999999999, 10)
        if cl is None:
            raise ContentLengthError("Content-Length is not a number", f.vs)
        return cl

    @property
    def content_type(self):
        cdef Py_ssize_t k = self._first(K_CTYPE)
        return None if k < 0 else self._value(k)

    def validate(self):
        """Parse every header this library knows now, and check the message as a whole (see _parser_py)."""
        cdef Py_ssize_t k
        cdef int kind
        if self.is_request:
            self.uri
        self.via
        self.from_
        self.to
        self.cseq
        self.call_id
        self.max_forwards
        self.contact
        self.route
        self.record_route
        cdef unsigned int seen = 0
        for k in range(self._nf):
            kind = self._f[k].kind
            if kind in _SINGLE_KINDS:
                if seen & (1u << kind):
                    name = _KIND_DISPLAY[kind]
                    raise HeaderValueError(f"{name}: more than one header", self._f[k].ls, name)
                seen |= 1u << kind
        if self.is_request:
            missing = tuple(name for kind, name in _REQUIRED_KINDS if self._first(kind) < 0)
            if missing:
                raise MissingHeaders("missing required headers: " + ", ".join(missing), self._tail_s, missing)
            cseq = self.cseq
            if cseq is not None and cseq.method != self.method:
                raise CSeqError(
                    f"CSeq: method {cseq.method!r} is not the request's {self.method!r}",
                    self._f[self._first(K_CSEQ)].vs,
                    "CSeq",
                )
            if self.uri.headers:
                raise URIError("headers are not allowed in a Request-URI", self._uri_offset + self.raw_uri.find("?"))

    # --- edits -----------------------------------------------------------------
    cdef void _edited(self) noexcept:
        self._modified = True
        self._c_headers = _UNSET
        self._c_via = _UNSET
        self._c_from = _UNSET
        self._c_to = _UNSET
        self._c_contact = _UNSET
        self._c_route = _UNSET
        self._c_rr = _UNSET
        self._c_cseq = _UNSET
        # _c_uri is kept: only the start line holds the Request-URI, and only set_uri rewrites it.

    def insert_header(self, name, value):
        """Insert ``name: value`` as the first header line (Via, Record-Route)."""
        cdef Field f
        self._new_field(&f, name, value)
        self._insert_field(0, &f)
        self._edited()

    def append_header(self, name, value):
        """Append ``name: value`` as the last header line."""
        cdef Field f
        self._new_field(&f, name, value)
        self._insert_field(self._nf, &f)
        self._edited()

    def set_header(self, name, value):
        """Replace the value of the first ``name`` header, keeping its place and its name as written; append when absent."""
        cdef int kind = _kind_of(name)
        key = None if kind != K_OTHER else _hkey(name)
        cdef Py_ssize_t k
        cdef Field f
        for k in range(self._nf):
            if self._matches(k, kind, key):
                self._new_field(&f, self._name(k), value)
                self._f[k] = f
                self._edited()
                return
        self.append_header(name, value)

    def remove_header(self, name):
        """Remove every ``name`` header line; returns how many were removed."""
        cdef int kind = _kind_of(name)
        key = None if kind != K_OTHER else _hkey(name)
        cdef Py_ssize_t k = 0, w = 0, removed
        for k in range(self._nf):
            if not self._matches(k, kind, key):
                if w != k:
                    self._f[w] = self._f[k]
                w += 1
        removed = self._nf - w
        self._nf = w
        if removed:
            self._edited()
        return removed

    cdef object _pop_first_element(self, int kind):
        """Remove the first comma-separated element of the first ``kind`` header; returns its text."""
        cdef Py_ssize_t k = self._first(kind)
        cdef Field f
        if k < 0:
            return None
        value = self._value(k)
        cdef Py_ssize_t cut = _split_first_element(value)
        first = value[:cut].strip(_WS) if cut >= 0 else value
        if cut < 0:
            self._delete_field(k)
        else:
            self._new_field(&f, self._name(k), value[cut + 1 :].strip(_WS))
            self._f[k] = f
        self._edited()
        return first

    def pop_via(self):
        """Remove the top via-parm (just that element of a comma-joined Via); returns it, or None."""
        top = self.via[0] if self.via else None
        if self._pop_first_element(K_VIA) is None:
            return None
        return top

    def pop_route(self):
        """Remove the first Route element; returns it, or None when there is no Route."""
        first = self.route[0] if self.route else None
        if self._pop_first_element(K_ROUTE) is None:
            return None
        return first

    def set_via_param(self, name, value=None, index=0):
        """Add or replace parameter ``name`` on the ``index``-th via-parm (RFC 3261 §18.2.1 received, RFC 3581 rport)."""
        self.via  # validates every Via before touching one
        lname = name.lower()
        seen = 0
        cdef Py_ssize_t k
        cdef Field f
        for k in range(self._nf):
            if self._f[k].kind != K_VIA:
                continue
            value_text = self._value(k)
            elements = _split_elements(value_text)
            if index >= seen + len(elements):
                seen += len(elements)
                continue
            pos = index - seen
            elements[pos] = _set_param(elements[pos], lname, value)
            self._new_field(&f, self._name(k), ", ".join(elements))
            self._f[k] = f
            self._edited()
            return
        raise IndexError(f"no Via at index {index}")

    def set_body(self, body, content_type=None):
        """Replace the body; Content-Length is set to match (and Content-Type when given)."""
        body = bytes(body)
        self._body_b = self._add_buf(body)
        self._body_s = 0
        self._body_e = len(body)
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        self.set_header("Content-Length", str(len(body)))
        self._edited()

    def copy(self):
        """An independent copy: edits to one do not show in the other."""
        cdef Message new = type(self).__new__(type(self))
        new._reserve(self._nf)
        memcpy(new._f, self._f, self._nf * sizeof(Field))
        new._nf = self._nf
        new._buf0 = self._buf0
        new._bufs = None if self._bufs is None else list(self._bufs)
        new._p0 = self._p0
        new._sl_b = self._sl_b
        new._sl_s = self._sl_s
        new._sl_e = self._sl_e
        new._tail_b = self._tail_b
        new._tail_s = self._tail_s
        new._tail_e = self._tail_e
        new._body_b = self._body_b
        new._body_s = self._body_s
        new._body_e = self._body_e
        new._modified = self._modified
        self._copy_extra(new)
        return new

    cdef void _copy_extra(self, Message new):
        pass

    cdef tuple _extra_state(self):
        return ()

    cdef int _set_extra_state(self, tuple extra) except -1:
        return 0

    def __reduce__(self):
        """Pickle, ``copy.copy`` and ``copy.deepcopy`` support: the buffers plus the field offsets."""
        cdef Py_ssize_t k
        cdef Field* f
        fields = []
        for k in range(self._nf):
            f = &self._f[k]
            fields.append((f.kind, f.bufi, f.ls, f.ne, f.vs, f.ve, f.le))
        segs = (self._sl_b, self._sl_s, self._sl_e, self._tail_b, self._tail_s, self._tail_e,
                self._body_b, self._body_s, self._body_e)
        bufs = [self._buf0] if self._bufs is None else list(self._bufs)
        return (_restore_message, (type(self), (bufs, fields, segs, self._modified, self._extra_state())))


def _restore_message(cls, state):
    """Rebuild a message from ``Message.__reduce__``; offsets are checked against the buffers."""
    cdef Message m = cls.__new__(cls)
    bufs, fields, segs, modified, extra = state
    bufs = list(bufs)
    cdef Py_ssize_t nb = len(bufs)
    for b in bufs:
        if type(b) is not bytes:
            raise TypeError("message state holds a non-bytes buffer")

    def seg_ok(bi, a, b):
        return 0 <= bi < nb and 0 <= a <= b <= len(bufs[bi])

    cdef Field* f
    m._bufs = bufs
    m._buf0 = bufs[0]
    m._p0 = <const unsigned char*>PyBytes_AS_STRING(bufs[0])
    m._reserve(len(fields))
    for kind, bufi, ls, ne, vs, ve, le in fields:
        if not (0 <= kind < len(_KIND_KEYS) and seg_ok(bufi, ls, le) and ls <= ne <= le and ls <= vs <= ve <= le):
            raise ValueError("invalid message state")
        f = &m._f[m._nf]
        f.kind = kind
        f.folded = 1
        f.bufi = bufi
        f.ls = ls
        f.ne = ne
        f.vs = vs
        f.ve = ve
        f.le = le
        m._nf += 1
    m._sl_b, m._sl_s, m._sl_e, m._tail_b, m._tail_s, m._tail_e, m._body_b, m._body_s, m._body_e = segs
    if not (seg_ok(m._sl_b, m._sl_s, m._sl_e) and seg_ok(m._tail_b, m._tail_s, m._tail_e)
            and seg_ok(m._body_b, m._body_s, m._body_e)):
        raise ValueError("invalid message state")
    m._modified = modified
    m._set_extra_state(tuple(extra))
    return m


@cython.freelist(8)
cdef class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    cdef public object method, version, _uri_offset
    # The Request-URI text: _uri_str, or while _uri_lazy the received bytes _p0[_uri_s:_uri_e],
    # decoded on first need (a pure-ASCII one is parsed straight from the bytes).
    cdef object _uri_str
    cdef bint _uri_lazy
    cdef Py_ssize_t _uri_s, _uri_e

    is_request = True

    cdef object _uri_get(self):
        if self._uri_lazy:
            self._uri_str = _decode(self._p0 + self._uri_s, self._uri_e - self._uri_s)
            self._uri_lazy = False
        return self._uri_str

    @property
    def _uri_text(self):
        return self._uri_get()

    @_uri_text.setter
    def _uri_text(self, value):
        self._uri_str = value
        self._uri_lazy = False

    @property
    def uri(self):
        """The Request-URI, parsed on first access (raises ``URIError``)."""
        cdef Txt t
        cdef str s
        cdef const unsigned char* p
        if self._c_uri is _UNSET:
            p = self._p0 + self._uri_s
            if self._uri_lazy and _ascii_no_lf(p, self._uri_e - self._uri_s):
                t.kind = 1
                t.ascii = True
                t.data = <void*>p
                t.n = self._uri_e - self._uri_s
                t.owner = <PyObject*>self._buf0
                self._c_uri = _parse_uri(&t, self._uri_offset, None)
            else:
                s = <str?>self._uri_get()
                _txt(&t, s)
                self._c_uri = _parse_uri(&t, self._uri_offset, s)
        return self._c_uri

    @property
    def raw_uri(self):
        return self._uri_get()

    def set_uri(self, uri):
        """Replace the Request-URI (the start line is rewritten, the rest kept)."""
        line = f"{self.method} {uri} {self.version}\r\n".encode("utf-8")
        self._sl_b = self._add_buf(line)
        self._sl_s = 0
        self._sl_e = len(line)
        self._uri_str = uri
        self._uri_lazy = False
        self._uri_offset = len(self.method) + 1
        self._c_uri = _UNSET
        self._edited()

    cdef void _copy_extra(self, Message new):
        cdef Request r = <Request>new
        r.method = self.method
        r.version = self.version
        r._uri_str = self._uri_str
        r._uri_lazy = self._uri_lazy
        r._uri_s = self._uri_s
        r._uri_e = self._uri_e
        r._uri_offset = self._uri_offset

    cdef tuple _extra_state(self):
        return (self.method, self.version, self._uri_get(), self._uri_offset)

    cdef int _set_extra_state(self, tuple extra) except -1:
        self.method, self.version, self._uri_str, self._uri_offset = extra
        self._uri_lazy = False
        return 0

    def __repr__(self):
        return f"<Request {self.method} {self._uri_get()}>"


@cython.freelist(8)
cdef class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    cdef public object status, reason, version

    cdef void _copy_extra(self, Message new):
        cdef Response r = <Response>new
        r.status = self.status
        r.reason = self.reason
        r.version = self.version

    cdef tuple _extra_state(self):
        return (self.status, self.reason, self.version)

    cdef int _set_extra_state(self, tuple extra) except -1:
        self.status, self.reason, self.version = extra
        return 0

    def __repr__(self):
        return f"<Response {self.status} {self.reason}>"


# ---------------------------------------------------------------------------
# Framing: parse()
# ---------------------------------------------------------------------------


cdef inline unsigned char _up(unsigned char c) noexcept nogil:
    return c - 32 if 97 <= c <= 122 else c


cdef inline bint _is_version(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """``v.upper() == b"SIP/2.0"``."""
    return (n == 7 and _up(p[0]) == b'S' and _up(p[1]) == b'I' and _up(p[2]) == b'P' and p[3] == b'/'
            and p[4] == b'2' and p[5] == b'.' and p[6] == b'0')


cdef inline Py_ssize_t _findc(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, unsigned char c) noexcept nogil:
    if i >= end:
        return -1
    cdef const void* r = memchr(p + i, c, end - i)
    return -1 if r == NULL else <Py_ssize_t>(<const unsigned char*>r - p)


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* The index of the first CR or LF in p[i:n], or -1; 16 bytes at a time where SSE2 is there. */
    static inline Py_ssize_t fastsip_find_crlf(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) {
    #if defined(__SSE2__)
        const __m128i cr = _mm_set1_epi8(13), lf = _mm_set1_epi8(10);
        while (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i*)(p + i));
            int m = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            if (m) return i + __builtin_ctz((unsigned)m);
            i += 16;
        }
    #endif
        for (; i < n; i++) if (p[i] == 13 || p[i] == 10) return i;
        return -1;
    }
    """
    Py_ssize_t fastsip_find_crlf(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil


cdef inline Py_ssize_t _find_control(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The first control character (0x00-0x1f but HT, or DEL) in ``p[i:end]``, or -1.

    Eight bytes at a time while no byte is below 0x20 or equal to 0x7f (bytes >= 0x80 never match).
    """
    cdef unsigned long long w, x
    cdef unsigned char c
    while i + 8 <= end:
        memcpy(&w, p + i, 8)
        x = w ^ 0x7f7f7f7f7f7f7f7fULL
        if (((w - 0x2020202020202020ULL) & ~w) | ((x - 0x0101010101010101ULL) & ~x)) & 0x8080808080808080ULL:
            break
        i += 8
    while i < end:
        c = p[i]
        if (c < 32 and c != 9) or c == 127:
            return i
        i += 1
    return -1


cdef inline Py_ssize_t _skip_ws_bytes(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    while i < end and (p[i] == 32 or p[i] == 9):
        i += 1
    return i


def parse(data, *, max_size=DEFAULT_MAX_SIZE, max_headers=DEFAULT_MAX_HEADERS):
    """Parse one SIP message (one UDP datagram, or one message framed by ``StreamParser``).

    Returns a ``Request`` or ``Response``. Raises a ``ParseError`` subclass for any
    malformed input, with ``offset`` pointing at the problem.
    """
    cdef bytes buf
    if type(data) is bytes:
        buf = <bytes>data
    elif isinstance(data, (bytearray, memoryview)) or isinstance(data, bytes):
        buf = bytes(data)
    else:
        raise TypeError("parse() takes bytes, bytearray or memoryview")
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    if n > max_size:
        raise MessageTooLarge(f"message of {n} bytes is larger than the limit of {max_size}", max_size)
    cdef Py_ssize_t mh
    if type(max_headers) is int and -(1 << 40) < max_headers < (1 << 40):
        mh = max_headers
    else:
        mh = -1
    return _parse(buf, n, mh, max_headers)


cdef object _parse(bytes buf, Py_ssize_t n, Py_ssize_t mh, object max_headers):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t pos = 0, eol, ce, k, sp1, sp2, L, cr, v_end, colon, name_end, vs, ve
    cdef unsigned char c
    cdef Message msg
    cdef Request req
    cdef Response resp
    cdef Field* f
    cdef Txt mt

    # RFC 3261 §7.5: ignore line breaks before the start line.
    while pos < n and (p[pos] == 13 or p[pos] == 10):
        pos += 1
    if pos >= n:
        raise IncompleteMessage("no message: empty or only line breaks", pos)

    # --- start line -----------------------------------------------------------
    eol = _findc(p, pos, n, 10)
    if eol < 0:
        raise IncompleteMessage("the start line has no line break", n)
    ce = eol - 1 if p[eol - 1] == 13 else eol
    k = _find_control(p, pos, ce)
    if k >= 0:
        raise StartLineError("control character in the start line", k)
    L = ce - pos
    if L >= 4 and _up(p[pos]) == b'S' and _up(p[pos + 1]) == b'I' and _up(p[pos + 2]) == b'P' and p[pos + 3] == b'/':
        sp1 = _findc(p, pos, ce, 32)
        if sp1 < 0:
            raise StartLineError("status line without a status code", pos + L)
        sp1 -= pos
        if not _is_version(p + pos, sp1):
            raise StartLineError(f"unsupported SIP version {_decode(p + pos, sp1)!r}", pos)
        if (sp1 + 4 > L or not (b'1' <= p[pos + sp1 + 1] <= b'6') or not (b'0' <= p[pos + sp1 + 2] <= b'9')
                or not (b'0' <= p[pos + sp1 + 3] <= b'9') or (L > sp1 + 4 and p[pos + sp1 + 4] != 32)):
            raise StartLineError("status code is not 3 digits from 100 to 699", pos + sp1 + 1)
        resp = Response.__new__(Response)
        resp.status = (p[pos + sp1 + 1] - 48) * 100 + (p[pos + sp1 + 2] - 48) * 10 + (p[pos + sp1 + 3] - 48)
        if L > sp1 + 5:
            resp.reason = _decode(p + pos + sp1 + 5, L - sp1 - 5)
        else:
            resp.reason = ""
        resp.version = S_SIP20
        msg = resp
    else:
        sp1 = _findc(p, pos, ce, 32)
        sp2 = -1
        k = ce - 1
        while k >= pos:
            if p[k] == 32:
                sp2 = k
                break
            k -= 1
        if sp1 >= 0:
            sp1 -= pos
            sp2 -= pos
        if sp1 <= 0 or sp2 == sp1:
            raise StartLineError("request line is not 'Method SP Request-URI SP SIP-Version'", pos + max(sp1, 0))
        for k in range(sp1):
            if not (CLS[p[pos + k]] & C_TOKEN):
                raise StartLineError("invalid character in the method", pos + k)
        # The URI is between the first and the last space; sp2 > sp1 here.
        if sp2 == sp1 + 1 or memchr(p + pos + sp1 + 1, 32, sp2 - sp1 - 1) != NULL:
            raise StartLineError("Request-URI is empty or holds a space", pos + sp1 + 1)
        if not _is_version(p + pos + sp2 + 1, L - sp2 - 1):
            raise StartLineError(f"unsupported SIP version {_decode(p + pos + sp2 + 1, L - sp2 - 1)!r}", pos + sp2 + 1)
        req = Request.__new__(Request)
        mt.kind = 1  # a token: ASCII
        mt.ascii = True
        mt.data = <void*>(p + pos)
        mt.n = sp1
        req.method = _method(&mt, 0, sp1)
        req.version = S_SIP20
        req._uri_lazy = True
        req._uri_s = pos + sp1 + 1
        req._uri_e = pos + sp2
        req._uri_offset = pos + sp1 + 1
        msg = req
    msg._buf0 = buf
    msg._p0 = p
    msg._sl_b = 0
    msg._sl_s = pos
    msg._sl_e = eol + 1

    # --- header lines (RFC 3261 §7.3) ------------------------------------------
    pos = eol + 1
    while True:
        # The first CR or LF ends the line when it is an LF or a CRLF (then no CR is inside);
        # a lone CR takes the exact path below, which reports it as the reference does.
        k = fastsip_find_crlf(p, pos, n)
        if k >= 0 and p[k] == 10:
            eol = ce = k
        elif k >= 0 and k + 1 < n and p[k + 1] == 10:
            eol = k + 1
            ce = k
        else:
            eol = _findc(p, pos, n, 10)
            if eol < 0:
                raise IncompleteMessage("no empty line after the headers", n)
            ce = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
            cr = _findc(p, pos, ce, 13)
            if cr >= 0 and ce != pos:
                raise HeaderError("CR without LF inside a header line", cr)
        if ce == pos:
            msg._tail_b = 0
            msg._tail_s = pos
            msg._tail_e = eol + 1
            pos = eol + 1
            break
        c = p[pos]
        if c == 32 or c == 9:
            # §7.3.1 folding: a line starting with whitespace continues the previous header.
            if msg._nf == 0:
                raise HeaderError("continuation line before the first header", pos)
            f = &msg._f[msg._nf - 1]
            v_end = ce
            while v_end > pos and (p[v_end - 1] == 32 or p[v_end - 1] == 9):
                v_end -= 1
            if v_end > pos:
                if f.vs == f.ve:  # the value so far was empty: it starts on this line
                    f.vs = _skip_ws_bytes(p, pos, ce)
                f.ve = v_end
            f.le = eol + 1
            f.folded = 1
        else:
            # Usually the name is all token characters right up to the colon: one loop does both.
            # p[ce] is the CR or LF ending the line, not a token character: it stops the loop.
            k = pos
            while CLS[p[k]] & C_TOKEN:
                k += 1
            if k > pos and k < ce and p[k] == 58:
                colon = name_end = k
            else:
                colon = _findc(p, pos, ce, 58)
                if colon < 0:
                    raise HeaderError("header line without a colon", pos)
                name_end = colon
                while name_end > pos and (p[name_end - 1] == 32 or p[name_end - 1] == 9):
                    name_end -= 1
                if name_end == pos:
                    raise HeaderError("invalid character in a header name", pos)
                for k in range(pos, name_end):
                    if not (CLS[p[k]] & C_TOKEN):
                        raise HeaderError("invalid character in a header name", k)
            if (msg._nf >= mh) if mh >= 0 else (msg._nf >= max_headers):
                raise TooManyHeaders(f"more than {max_headers} header lines", pos)
            vs = _skip_ws_bytes(p, colon + 1, ce)
            ve = ce
            while ve > vs and (p[ve - 1] == 32 or p[ve - 1] == 9):
                ve -= 1
            if msg._nf >= msg._cap:
                msg._reserve(msg._nf + 1)
            f = &msg._f[msg._nf]
            f.kind = _classify(p + pos, name_end - pos)
            f.folded = 0
            f.bufi = 0
            f.ls = pos
            f.ne = name_end
            f.vs = vs
            f.ve = ve
            f.le = eol + 1
            msg._nf += 1
        pos = eol + 1

    # --- body framed by Content-Length (RFC 3261 §18.3, §20.14) ------------------
    cdef long long length = -1, value
    cdef Py_ssize_t end
    for k in range(msg._nf):
        f = &msg._f[k]
        if f.kind == K_CLEN:
            if f.ve == f.vs:
                raise ContentLengthError("Content-Length is not a number", f.vs)
            value = 0
            ce = f.vs
            while ce < f.ve - 1 and p[ce] == 48:
                ce += 1  # leading zeros do not count against the 10 digits
            if f.ve - ce > 10:
                raise ContentLengthError("Content-Length is not a number", f.vs)
            for ce in range(f.vs, f.ve):
                if p[ce] < 48 or p[ce] > 57:
                    raise ContentLengthError("Content-Length is not a number", f.vs)
                value = value * 10 + (p[ce] - 48)
            if length >= 0 and value != length:
                raise ContentLengthError("Content-Length headers disagree", f.vs)
            length = value
    if length < 0:
        end = n
    else:
        if length > n - pos:
            raise TruncatedBody(f"Content-Length is {length} but only {n - pos} body bytes follow", n)
        end = pos + <Py_ssize_t>length
    msg._body_b = 0
    msg._body_s = pos
    msg._body_e = end
    return msg


# ---------------------------------------------------------------------------
# Responses (RFC 3261 §8.2.6)
# ---------------------------------------------------------------------------


def make_response(
    request,
    status,
    reason=None,
    *,
    to_tag=None,
    headers=(),
    body=b"",
    content_type=None,
):
    """Build the response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via (as the request has them now, edits included), To (adding
    ``;tag=to_tag`` when given and To has none), From, Call-ID and CSeq, in that
    order as OpenSIPS writes them; then ``headers``, Content-Type when there is a
    body, and Content-Length. Returns the parsed ``Response``. Raises ``ValueError``
    for a status outside 100-699.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not from 100 to 699")
    cdef Message req = <Message?>request
    if reason is None:
        reason = REASON_PHRASES.get(status, "")
    out = [b"SIP/2.0 %d %s\r\n" % (status, reason.encode("utf-8"))]
    cdef Py_ssize_t k
    for k in range(req._nf):
        if req._f[k].kind == K_VIA:
            out.append(b"Via: " + req._raw_value(k) + b"\r\n")
    k = req._first(K_TO)
    if k >= 0:
        value = req._raw_value(k)
        if to_tag is not None:
            try:
                has_tag = request.to is not None and request.to.tag is not None
            except ParseError:
                has_tag = True  # never make a malformed To worse
            if not has_tag:
                value += b";tag=" + to_tag.encode("utf-8")
        out.append(b"To: " + value + b"\r\n")
    for kind, name in ((K_FROM, b"From"), (K_CALLID, b"Call-ID"), (K_CSEQ, b"CSeq")):
        k = req._first(kind)
        if k >= 0:
            out.append(name + b": " + req._raw_value(k) + b"\r\n")
    if status == 100:
        k = req._first(K_TIMESTAMP)  # §8.2.6.1
        if k >= 0:
            out.append(b"Timestamp: " + req._raw_value(k) + b"\r\n")
    for name, value in headers:
        out.append(f"{name}: {value}\r\n".encode("utf-8"))
    body = bytes(body)
    if body and content_type:
        out.append(f"Content-Type: {content_type}\r\n".encode("utf-8"))
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    out.append(body)
    resp = parse(b"".join(out), max_size=max(DEFAULT_MAX_SIZE, sum(map(len, out)) + 1))
    assert isinstance(resp, Response)
    return resp


# ---------------------------------------------------------------------------
# Plain fields as member descriptors
# ---------------------------------------------------------------------------
# Cython exposes ``cdef public`` fields as getset properties, which CPython reads
# through the generic attribute path on every access. A member descriptor
# (T_OBJECT_EX) is what CPython 3.11's specializing interpreter turns into a
# direct load at a fixed offset (LOAD_ATTR_SLOT), so reading ``uri.host`` costs
# a few instructions instead of a descriptor call. The fields are re-exposed as
# members after the types are built; deleting one is refused (``__delattr__``),
# so a field is never NULL under the Cython code that reads it.

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
        const char* doc
    enum: T_OBJECT_EX

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        PyObject* tp_dict
        Py_ssize_t tp_basicsize
    object PyDescr_NewMember(PyTypeObject* t, PyMemberDef* m)
    void PyType_Modified(PyTypeObject* t)

cdef list _MEMBER_KEEP = []  # the names and definitions the member descriptors point at


cdef int _as_members(type cls, object probe, tuple names) except -1:
    """Replace the getset descriptors ``names`` of ``cls`` by member descriptors at the same fields.

    Each field's offset is found by setting it (through the getset) to a fresh sentinel on
    ``probe``, an instance, and finding that pointer in the instance's memory.
    """
    cdef PyTypeObject* tp = <PyTypeObject*>cls
    cdef PyMemberDef* d
    cdef Py_ssize_t off, found
    cdef char* base = <char*><PyObject*>probe
    defs = PyBytes_FromStringAndSize(NULL, len(names) * sizeof(PyMemberDef))
    _MEMBER_KEEP.append(defs)
    d = <PyMemberDef*>PyBytes_AS_STRING(defs)
    for k, name in enumerate(names):
        sentinel = object()
        setattr(probe, name, sentinel)
        found = -1
        off = 2 * sizeof(void*)  # past ob_refcnt and ob_type
        while off + <Py_ssize_t>sizeof(PyObject*) <= tp.tp_basicsize:
            if (<PyObject**>(base + off))[0] == <PyObject*>sentinel:
                found = off
                break
            off += sizeof(PyObject*)
        setattr(probe, name, None)
        if found < 0:
            raise RuntimeError(f"fastsip: no field for {cls.__name__}.{name}")
        bname = name.encode("ascii")
        _MEMBER_KEEP.append(bname)
        d[k].name = PyBytes_AS_STRING(bname)
        d[k].type = T_OBJECT_EX
        d[k].offset = found
        d[k].flags = 0
        d[k].doc = NULL
        (<dict>tp.tp_dict)[name] = PyDescr_NewMember(tp, &d[k])
    PyType_Modified(tp)
    return 0


_as_members(SipURI, SipURI.__new__(SipURI), ("scheme", "user", "password", "host", "port"))
_as_members(Via, Via.__new__(Via), ("protocol", "transport", "host", "port"))
_as_members(NameAddr, NameAddr.__new__(NameAddr), ("display", "uri", "wildcard"))
_as_members(CSeq, CSeq.__new__(CSeq), ("seq", "method"))
_as_members(Request, Request.__new__(Request), ("method", "version"))
_as_members(Response, Response.__new__(Response), ("status", "reason", "version"))
