"""A hand-written pure-Python parse of the seed's shape: the yardstick of the pure-Python target.

Issue 15 set the pure-Python backend's target (10 µs for the full parse of seed_invite) beside "a
hand-written pure-Python full parse" that took 9 µs on the same machine. The machines changed since
(the AMD EPYC VMs run CPython 2.5-2.8x slower than the Xeon of that figure), so this adapter keeps
that yardstick in the run: a target of 10 µs there is 10/9 of this row's time here.

It is not a SIP parser. It checks nothing (no token, no digit, no Content-Length framing, no
duplicate or compact header names), builds no objects (tuples and dicts), and would read any
garbage as a message: it is the floor of splitting the text the way a careless script would.
"""

from __future__ import annotations

DIST = None
NOTES = "no validation, no objects: str.split/partition on the decoded text (the yardstick of the py target)"
BACKEND = "hand-written split/partition"
serialize = None


def _params(text: str) -> dict[str, str]:
    return dict(p.partition("=")[::2] for p in text.split(";")) if text else {}


def _uri(text: str) -> tuple[str | None, str, dict[str, str]]:
    rest = text.partition(":")[2]
    rest, _, ptext = rest.partition(";")
    user, _, hostport = rest.rpartition("@")
    return user or None, hostport.partition(":")[0], _params(ptext)


def _name_addr(text: str) -> tuple[tuple[str | None, str, dict[str, str]], dict[str, str]]:
    lt = text.find("<")
    gt = text.find(">", lt)
    return _uri(text[lt + 1 : gt]), _params(text[gt + 2 :])


def minimal(data: bytes) -> tuple[list[str], dict[str, str], str]:
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0].split(" "), headers, body


def full(data: bytes) -> tuple:
    start, h, body = minimal(data)
    method, ruri, _ = start
    u = _uri(ruri)
    sent, _, rest = h["via"].partition(" ")
    parts = rest.split(";")
    vhost, _, vport = parts[0].partition(":")
    vparams = _params(";".join(parts[1:]))
    f, t = _name_addr(h["from"]), _name_addr(h["to"])
    seq, _, cmethod = h["cseq"].partition(" ")
    return (
        method, u[0], u[1], u[2],
        sent.rpartition("/")[2], vhost, int(vport), vparams.get("branch"), "rport" in vparams,
        f[0][0], f[0][1], f[1].get("tag"), t[0][0], t[0][1], t[1].get("tag"),
        int(seq), cmethod, h["call-id"], int(h["max-forwards"]), int(h["content-length"]), body.encode(),
    )
