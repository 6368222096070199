"""PySIPio adapter: SipMessage(str) stores the text; its parse() splits lines into a plain dict
(a repeated header keeps only its LAST value) and regex-extracts a few properties.

Could read: start line (split by the library), top-Via branch (but from the last Via line, so wrong for
a multi-Via response), From/To tags, CSeq number and method, Call-ID, the raw Max-Forwards and
Content-Length values (int() by the adapter), the raw body text. Could not read: Request-URI user, host
and params; Via transport, host, port and (for requests) rport; From/To user and host. No serializer.
"""

from __future__ import annotations

from PySIP.sip_core import SipMessage

from adapters import NOT_READ

DIST = "PySIPio"
NOTES = ("no URI parsing at all (R-URI, From/To user/host), Via only branch (of the LAST Via line); "
         "no serializer")
serialize = None


def minimal(data):
    m = SipMessage(data.decode())
    m.parse()
    return m


def full(data):
    m = SipMessage(data.decode())
    m.parse()
    th = m.type_header
    is_request = not th[0].startswith("SIP/")
    if is_request:
        start = th[0]
        ruri = NOT_READ
        rport = NOT_READ
    else:
        start = (int(th[1]), " ".join(th[2:]))
        ruri = None
        rport = m.rport
    h = m.headers
    mf = h.get("Max-Forwards")
    cl = h.get("Content-Length")
    return (
        start, ruri, ruri, ruri,
        NOT_READ, NOT_READ, NOT_READ, m.branch, rport,
        NOT_READ, NOT_READ, m.from_tag,
        NOT_READ, NOT_READ, m.to_tag,
        m.cseq, m.method, m.call_id, None if mf is None else int(mf),
        None if cl is None else int(cl), m.body_data,
    )
