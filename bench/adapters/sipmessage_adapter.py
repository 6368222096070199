"""sipmessage adapter (Spacinov): Message.parse(bytes) splits header lines eagerly; typed accessors
(uri, via, from_address, to_address, cseq, ...) parse the raw value with regular expressions on each access.

Could read: every field. The Request-URI is parsed eagerly by Message.parse. `msg.via` parses every Via
value (there is no top-Via-only accessor), as fastsip's `msg.via` does. rport is a parameter: present
without a value -> read as a flag. Body is everything after the blank line (no Content-Length framing).
"""

from __future__ import annotations

from sipmessage import Message

from adapters import EDIT_HDR, EDIT_RR, EDIT_VIA

DIST = "sipmessage"
NOTES = ("all fields via typed accessors; body = bytes after CRLFCRLF (not framed by Content-Length); "
         "serialize re-renders every header from its parsed list")


minimal = Message.parse  # the parse call itself, no wrapper


def _rport(params):
    if "rport" not in params:
        return None
    v = params["rport"]
    return True if v is None else int(v)


def full(data):
    m = Message.parse(data)
    if hasattr(m, "method"):
        start = m.method
        u = m.uri
        ruri_user, ruri_host, ruri_params = u.user, u.host, u.parameters
    else:
        start = (m.code, m.phrase)
        ruri_user = ruri_host = ruri_params = None
    v = m.via[0]
    f = m.from_address
    t = m.to_address
    cs = m.cseq
    return (
        start, ruri_user, ruri_host, ruri_params,
        v.transport, v.host, v.port, v.parameters.get("branch"), _rport(v.parameters),
        f.uri.user, f.uri.host, f.parameters.get("tag"),
        t.uri.user, t.uri.host, t.parameters.get("tag"),
        cs.sequence, cs.method, m.call_id, m.max_forwards, m.content_length, m.body,
    )


def serialize(data):
    m = Message.parse(data)
    h = m.headers
    # Headers keeps one (name, [values]) slot per name in first-seen order, so "insert at the top" is
    # "prepend to the Via list" plus a new Record-Route slot at the end; the library cannot place a new
    # header name above the others.
    h.setlist("Via", [EDIT_VIA] + h.getlist("Via"))
    rr = h.getlist("Record-Route")
    h.setlist("Record-Route", [EDIT_RR] + rr)
    mf = m.max_forwards
    if mf is not None:
        m.max_forwards = mf - 1
    h.add(*EDIT_HDR)
    return bytes(m)
