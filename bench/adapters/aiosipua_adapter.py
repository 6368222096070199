"""aiosipua adapter: SipMessage.parse(bytes) splits and stores raw header values (splitting multi-value
headers at commas); via/from_addr/to_addr/cseq parse on each access; the Request-URI stays a string.

Could read: every field, but the Request-URI only by calling aiosipua.header_codec.parse_uri on the
string (the library's own URI parser, which it does not call itself). Max-Forwards has no accessor: the
raw header value is converted with int(). Via rport is a param: flag -> True.
"""

from __future__ import annotations

from aiosipua import SipMessage
from aiosipua.header_codec import parse_uri

from adapters import EDIT_HDR, EDIT_RR, EDIT_VIA

DIST = "aiosipua"
NOTES = ("Request-URI via header_codec.parse_uri (the message keeps it as str); Max-Forwards via "
         "int(get_header()); serialize re-renders headers grouped by name")


minimal = SipMessage.parse  # the parse call itself, no wrapper


def _rport(params):
    if "rport" not in params:
        return None
    v = params["rport"]
    return True if v is None else int(v)


def full(data):
    m = SipMessage.parse(data)
    if hasattr(m, "method"):
        start = m.method
        u = parse_uri(m.uri)
        ruri_user, ruri_host, ruri_params = u.user, u.host, u.params
    else:
        start = (m.status_code, m.reason_phrase)
        ruri_user = ruri_host = ruri_params = None
    v = m.via[0]
    f = m.from_addr
    t = m.to_addr
    cs = m.cseq
    mf = m.get_header("Max-Forwards")
    return (
        start, ruri_user, ruri_host, ruri_params,
        v.transport, v.host, v.port, v.branch, _rport(v.params),
        f.uri.user, f.uri.host, f.tag,
        t.uri.user, t.uri.host, t.tag,
        cs.seq, cs.method, m.call_id, None if mf is None else int(mf), m.content_length, m.body,
    )


def serialize(data):
    m = SipMessage.parse(data)
    # CaseInsensitiveDict keeps one list per name in first-seen order: set_single keeps the Via slot
    # where it is, so new Via first then the old ones; a new Record-Route name goes last (the library
    # cannot place a header above the others).
    vias = list(m.get_header_values("Via"))
    m.set_header("Via", EDIT_VIA)
    for value in vias:
        m.add_header("Via", value)
    rr = m.get_header_values("Record-Route")
    m.remove_header("Record-Route")
    for value in [EDIT_RR] + rr:
        m.add_header("Record-Route", value)
    mf = m.get_header("Max-Forwards")
    if mf is not None:
        m.set_header("Max-Forwards", str(int(mf) - 1))
    m.add_header(*EDIT_HDR)
    return bytes(m)
