"""The checks fastsip-py makes on the seed INVITE, with nothing around them: the floor of issue 15's py target.

Issue 15 asks the pure-Python backend for a full parse within 10/9 of a hand-written one
(`py-handwritten`, which checks nothing), with the same results as the compiled backend. This adapter
measures what that contract costs at the least. It runs, in four plain functions (seven calls per full
parse, about 0.5k instructions each), exactly the operations fastsip-py's fast paths run on a request of
the seed's shape, with the same regexes (imported from fastsip._parser_py, so that they stay the same)
and the same checks:

- the start line by _FAST_REQUEST_LINE_RE; the header index by fastsip-py's own _light_headers (CRLF
  lines with no stray CR or LF, at most 100, token names, stripped values, the first value of each
  key, a plain Content-Length), and Content-Length framing the body;
- the Request-URI, Via, From and To by their validating fullmatches, CSeq by its own, with the range
  checks of port, rport, CSeq and Max-Forwards, and an empty Call-ID refused;
- the value objects fastsip returns (SipURI, Via, NameAddr, CSeq), built the way the fast paths build
  them.

It leaves out everything else fastsip-py has, so it is cheaper than any parser with that API could be:
no Message object, no properties (the fields are read from the objects' slots and the params dicts),
no cache of parsed values, no dispatch to the exact parser for other shapes (the checks that decide it
are skipped: it handles one Via, at most two params per list, no repeated param names), no offsets for
errors. It is not a parser: anything not of the seed's shape raises NotSeedShape (a ValueError), or a
KeyError when a header it reads is missing.
"""

from __future__ import annotations

from fastsip import _parser_py as _p

DIST = None
NOTES = ("fastsip-py's checks and value objects for the seed's shape, inlined: no Message, properties, caches"
         " or fallbacks (the floor of the py target under its contract)")
BACKEND = "fastsip-py's fast paths, inlined"
serialize = None

_REQUEST_LINE = _p._FAST_REQUEST_LINE_RE
_URI = _p._FAST_URI_RE
_VIA = _p._FAST_VIA_RE
_NAME_ADDR = _p._FAST_NAME_ADDR_RE
_CSEQ = _p._FAST_CSEQ_RE
_light_headers = _p._light_headers  # fastsip-py's own header index: the same work, one call
_new = object.__new__
_SipURI, _Via, _NameAddr, _CSeq = _p.SipURI, _p.Via, _p.NameAddr, _p.CSeq


class NotSeedShape(ValueError):
    """Raised for anything but a message of the seed's shape (the checks are inline: a call costs)."""


def minimal(data: bytes) -> tuple[str, str, list[str], dict[str, str], int, bytes]:
    """The parse call's share: start line, header index, body framed by Content-Length."""
    m = _REQUEST_LINE.match(data)
    if m is None:
        raise NotSeedShape
    method = m[1].decode("ascii")
    ruri = m[2].decode("utf-8", "replace")
    pos = m.end()
    he = data.find(b"\r\n\r\n", pos - 2)
    index = _light_headers(data, pos, he, 100) if he >= pos else None
    if index is None:
        raise NotSeedShape
    keys, first = index
    start = he + 4
    n = int(first["content-length"])  # _light_headers checked it is a plain number
    if start + n > len(data):
        raise NotSeedShape
    return method, ruri, keys, first, n, data[start : start + n]


def _sip_uri(raw: str, scheme: str, user: str | None, password: str | None, host: str, port: str | None,
             n1: str | None, v1: str | None, n2: str | None, v2: str | None, rest: str) -> _SipURI:
    if n2 is not None or rest:
        raise NotSeedShape
    u = _new(_SipURI)
    if port is None:
        u.port = None
    else:
        u.port = p = int(port)
        if p > 65535:
            raise NotSeedShape
    u.scheme = scheme
    u.user = user
    u.password = password
    u.host = host
    u.params = {} if n1 is None else {n1: v1}
    u.headers = {}
    u._raw = raw
    return u


def _name_addr(value: str) -> _NameAddr:
    m = _NAME_ADDR.fullmatch(value)
    if m is None:
        raise NotSeedShape
    g = m.groups()
    na = _new(_NameAddr)
    na.uri = _sip_uri(*g[2:13])
    n1, v1, n2, rest = g[13], g[14], g[15], g[17]
    if n2 is not None or rest:
        raise NotSeedShape
    na.params = {} if n1 is None else {n1: v1}
    na.display = g[0] if g[0] is not None else g[1]
    na.wildcard = False
    return na


def full(data: bytes) -> tuple:
    method, ruri, keys, first, length, body = minimal(data)
    m = _URI.fullmatch(ruri)
    if m is None:
        raise NotSeedShape
    u = _sip_uri(ruri, *m.groups())

    m = _VIA.fullmatch(first["via"])
    if not (m and (len(keys) == len(first) or keys.count("via") == 1)):
        raise NotSeedShape
    protocol, transport, host, port, n1, v1, n2, v2, rest = m.groups()
    if not (port and n2 is not None and n1 != n2 and not rest):
        raise NotSeedShape
    v = _new(_Via)
    v.params = params = {n1: v1, n2: v2}
    rport = params.get("rport")
    if not (rport is None or (len(rport) <= 5 and rport.isascii() and rport.isdigit() and int(rport) <= 65535)):
        raise NotSeedShape
    v.port = p = int(port)
    if p > 65535:
        raise NotSeedShape
    v.protocol = protocol
    v.transport = transport.upper()
    v.host = host

    f = _name_addr(first["from"])
    t = _name_addr(first["to"])
    m = _CSEQ.fullmatch(first["cseq"])
    if m is None:
        raise NotSeedShape
    c = _new(_CSeq)
    c.seq = seq = int(m[1])
    if seq > 2**31 - 1:
        raise NotSeedShape
    c.method = m[2]
    call_id = first["call-id"]
    if not call_id:
        raise NotSeedShape
    mf = first["max-forwards"]
    if not (len(mf) <= 3 and mf.isdigit() and mf.isascii() and int(mf) <= 255):
        raise NotSeedShape

    vp, fu, tu = v.params, f.uri, t.uri
    # As Via.rport: None when absent, True when bare, the number when filled in.
    rp = None if "rport" not in vp else True if vp["rport"] is None else int(vp["rport"])
    return (
        method, u.user, u.host, u.params,
        v.transport, v.host, v.port, vp.get("branch"), rp,
        fu.user, fu.host, f.params.get("tag"),
        tu.user, tu.host, t.params.get("tag"),
        c.seq, c.method, call_id, int(mf), length, body,
    )
