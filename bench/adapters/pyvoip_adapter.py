"""pyVoIP adapter: SIPMessage(bytes) parses everything eagerly in its constructor, including the SDP
body into a dict; it keeps only the first occurrence of each header except Via.

Could not read: the Request-URI (only the raw start line is kept), the raw body (the SDP is parsed into
a dict; the raw bytes survive only inside the whole datagram). Via transport is split out of the stored
"SIP/2.0/UDP" string. An absent To tag reads as "" (mapped to None). Rejects OPTIONS (its compatible
methods are INVITE, ACK, BYE, CANCEL). No serializer (it builds messages from templates).
"""

from __future__ import annotations

import pyVoIP.VoIP  # noqa: F401  (importing pyVoIP.SIP first fails on a circular import)
from pyVoIP.SIP import SIPMessage, SIPMessageType

from adapters import NOT_READ

DIST = "pyVoIP"
NOTES = ("no Request-URI parse, no raw body (SDP parsed to dict); rejects OPTIONS; no serializer")
serialize = None


minimal = SIPMessage  # the constructor is the parse call


def full(data):
    m = SIPMessage(data)
    if m.type == SIPMessageType.MESSAGE:
        start = m.method
    else:
        start = (int(m.status), m.status.phrase)
    h = m.headers
    v = h["Via"][0]
    host, port = v["address"]
    rport = v.get("rport", False)
    rport = None if rport is False else (True if rport is None else int(rport))
    f = h["From"]
    t = h["To"]
    cs = h["CSeq"]
    mf = h.get("Max-Forwards")
    ruri = NOT_READ if m.type == SIPMessageType.MESSAGE else None
    return (
        start, ruri, ruri, ruri,
        v["type"].rsplit("/", 1)[1], host, int(port), v.get("branch"), rport,
        f["number"], f["host"], f["tag"] or None,
        t["number"], t["host"], t["tag"] or None,
        int(cs["check"]), cs["method"], h.get("Call-ID"), None if mf is None else int(mf),
        h.get("Content-Length"), NOT_READ,
    )
