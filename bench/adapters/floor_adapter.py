"""Measurement floor: fastsip's full() code run on an already-built message of plain Python objects.

parse() here only looks up a prebuilt object (types.SimpleNamespace, attributes already set), so the
"full" time is what reading the 21 fields and returning them costs in CPython on this machine, with no
parsing at all: the lower bound for any Python-level parser measured this way (the C programs read
their fields in C and have no such floor).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import workloads
from adapters import _expected
from adapters import fastsip_adapter as _fa

DIST = None
NOTES = "no parsing: reads the 21 fields from prebuilt plain Python objects (the floor of full mode)"
BACKEND = "prebuilt objects"
serialize = None


def _build() -> dict[bytes, NS]:
    wl = workloads.load()
    exp = _expected(wl)
    out = {}
    for name, data in wl.items():
        e = exp[name]
        uri = NS(user=e["ruri_user"], host=e["ruri_host"], params=e["ruri_params"])
        req = not isinstance(e["start"], tuple)
        m = NS(is_request=req, uri=uri,
               via=[NS(transport=e["via_transport"], host=e["via_host"], port=e["via_port"],
                       branch=e["via_branch"], rport=e["via_rport"])],
               from_=NS(uri=NS(user=e["from_user"], host=e["from_host"]), tag=e["from_tag"]),
               to=NS(uri=NS(user=e["to_user"], host=e["to_host"]), tag=e["to_tag"]),
               cseq=NS(seq=e["cseq_seq"], method=e["cseq_method"]), call_id=e["call_id"],
               max_forwards=e["max_forwards"], content_length=e["content_length"], body=e["body"])
        if req:
            m.method = e["start"]
        else:
            m.status, m.reason = e["start"]
        out[data] = m
    return out


_PREBUILT = _build()
minimal = _PREBUILT.__getitem__  # a dict lookup: the floor of a parse call
_fa.parse = minimal
full = _fa.full
