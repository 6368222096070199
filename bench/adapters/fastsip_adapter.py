"""fastsip adapter: the same code for both backends, bound to fastsip._parser_c or fastsip._parser_py.

Reads every field through the public API of docs/fastsip-api.md. fastsip parses lazily (start line and
header lines up front, values on first access), so full() is what makes it build the Via, NameAddr, URI
and CSeq objects.
"""

from __future__ import annotations

import importlib

from adapters import EDIT_HDR, EDIT_RR, EDIT_VIA

DIST = "fastsip"
NOTES = "reads all fields through the public API (lazy values are forced by reading them)"

parse = None  # bound by select()
BACKEND = None


def select(lib: str) -> None:
    """Bind parse() to the backend module named by lib: fastsip-c -> _parser_c, fastsip-py -> _parser_py."""
    global parse, minimal, BACKEND
    BACKEND = "fastsip._parser_c" if lib == "fastsip-c" else "fastsip._parser_py"
    parse = importlib.import_module(BACKEND).parse
    minimal = parse  # the parse call itself, no wrapper


minimal = None  # bound by select()


def full(data):
    m = parse(data)
    if m.is_request:
        start = m.method
        u = m.uri
        ruri_user, ruri_host, ruri_params = u.user, u.host, u.params
    else:
        start = (m.status, m.reason)
        ruri_user = ruri_host = ruri_params = None
    v = m.via[0]
    f = m.from_
    fu = f.uri
    t = m.to
    tu = t.uri
    cs = m.cseq
    return (
        start, ruri_user, ruri_host, ruri_params,
        v.transport, v.host, v.port, v.branch, v.rport,
        fu.user, fu.host, f.tag,
        tu.user, tu.host, t.tag,
        cs.seq, cs.method, m.call_id, m.max_forwards, m.content_length, m.body,
    )


def serialize(data):
    m = parse(data)
    m.insert_header("Via", EDIT_VIA)
    m.insert_header("Record-Route", EDIT_RR)
    mf = m.max_forwards
    if mf is not None:
        m.set_header("Max-Forwards", str(mf - 1))
    m.append_header(*EDIT_HDR)
    return bytes(m)
