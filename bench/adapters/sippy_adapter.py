"""sippy adapter (the Sippy B2BUA's SIP stack): SipRequest(str)/SipResponse(str) split the header lines
and build a typed header object per line, whose value is parsed on first getBody(); the Request-URI is
parsed eagerly.

The library works on str: like its own SipTransactionManager, the adapter decodes the datagram and picks
SipResponse when it starts with "SIP/2.0 ". Could read: every field. Content-Length is kept in a private
attribute (no accessor): read as `_SipMsg__content_length`. Request-URI params come from getParams()
("name=value" strings). Body: str of the MsgBody (SDP left unparsed, as the library leaves it).
"""

from __future__ import annotations

from sippy.SipHeader import SipHeader
from sippy.SipRequest import SipRequest
from sippy.SipResponse import SipResponse

from adapters import EDIT_HDR, EDIT_RR, EDIT_VIA

DIST = "sippy"
NOTES = ("decodes bytes to str first (its transaction manager does too); Content-Length read from a "
         "private attribute; R-URI params from getParams()")


def _parse(data):
    text = data.decode()
    if text.startswith("SIP/2.0 "):
        return SipResponse(text)
    return SipRequest(text)


def minimal(data):
    return _parse(data)


def _rport(params):
    if "rport" not in params:
        return None
    v = params["rport"]
    return True if v is None else int(v)


def full(data):
    m = _parse(data)
    if isinstance(m, SipRequest):
        start = m.getMethod()
        u = m.getRURI()
        ruri_user, ruri_host, ruri_params = u.username, u.host, u.getParams()
    else:
        start = (m.scode, m.reason)
        ruri_user = ruri_host = ruri_params = None
    v = m.getHFBody("via")
    f = m.getHFBody("from").getUri()
    t = m.getHFBody("to").getUri()
    cs = m.getHFBody("cseq")
    mf = m.getHFs("max-forwards")
    cl = m._SipMsg__content_length
    body = m.getBody()
    return (
        start, ruri_user, ruri_host, ruri_params,
        v.transport, v.hostname, v.port, v.getBranch(), _rport(v.params),
        f.url.username, f.url.host, f.getParam("tag"),
        t.url.username, t.url.host, t.getParam("tag"),
        cs.getCSeqNum(), cs.getCSeqMethod(), str(m.getHFBody("call-id")),
        mf[0].getBody().number if mf else None,
        None if cl is None else cl.getBody().number,
        "" if body is None else str(body),
    )


def serialize(data):
    m = _parse(data)
    first = m.headers[0]
    m.insertHeaderBefore(first, SipHeader(name="via", bodys=EDIT_VIA))
    m.insertHeaderBefore(m.headers[0], SipHeader(name="record-route", bodys=EDIT_RR))
    mf = m.getHFs("max-forwards")
    if mf:
        mf[0].getBody().number -= 1
    m.appendHeader(SipHeader(name=EDIT_HDR[0].lower(), bodys=EDIT_HDR[1]))
    return str(m).encode()
