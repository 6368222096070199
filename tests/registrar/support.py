"""Building REGISTER requests as bytes (parsed by fastsip, as the proxy receives them) and calling the registrar."""

from __future__ import annotations

from collections.abc import Sequence

import fastsip

from proxyapp.location.binding import Binding
from proxyapp.registrar import RegisterOutcome, RegistrarConfig, process_register

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"
AOR = "sip:alice@example.com"
SOURCE = ("UDP", "192.0.2.10", 5062)
SOCKET = "udp:127.0.0.1:5060"
NODE = "sip:127.0.0.1:5060"
CFG = RegistrarConfig(domains=("example.com",))


def register_bytes(
    contacts: Sequence[str] = ("<sip:alice@192.0.2.10:5062>",),
    *,
    to: str = "<sip:alice@example.com>",
    call_id: str = "call-1",
    cseq: int | str = 1,
    method: str = "REGISTER",
    expires: str | None = None,
    vias: int = 1,
    path: Sequence[str] = (),
    supported: str | None = None,
    require: str | None = None,
    user_agent: str | None = None,
    extra: Sequence[str] = (),
) -> bytes:
    """A REGISTER from alice's phone, one header line per item; ``vias`` > 1 puts proxies' Vias on top."""
    lines = [f"{method} sip:example.com SIP/2.0"]
    for i in range(vias - 1, 0, -1):
        lines.append(f"Via: SIP/2.0/UDP 198.51.100.{i}:5060;branch=z9hG4bKproxy{i}")
    lines.append("Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKphone;rport")
    lines += ["Max-Forwards: 70", f"To: {to}", "From: <sip:alice@example.com>;tag=f1", f"Call-ID: {call_id}"]
    lines.append(f"CSeq: {cseq} {'REGISTER' if method == 'REGISTER' else method}")
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += [f"Path: {p}" for p in path]
    if supported is not None:
        lines.append(f"Supported: {supported}")
    if require is not None:
        lines.append(f"Require: {require}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    lines += list(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def register(*args: object, **kwargs: object) -> fastsip.Request:
    msg = fastsip.parse(register_bytes(*args, **kwargs))  # type: ignore[arg-type]
    assert isinstance(msg, fastsip.Request)
    return msg


def run(
    msg: fastsip.Request,
    current: Sequence[Binding] = (),
    *,
    now: float = NOW,
    cfg: RegistrarConfig = CFG,
    conn: object = None,
) -> RegisterOutcome:
    return process_register(msg, list(current), now=now, cfg=cfg, source=SOURCE, socket=SOCKET, node=NODE, conn=conn)


def binding(contact: str = "sip:alice@192.0.2.10:5062", *, expires_in: float = 3600, call_id: str = "call-1",
            cseq: int = 1, modified_ago: float = 1800, **fields: object) -> Binding:
    """A stored binding of alice's, registered ``modified_ago`` seconds before NOW."""
    return Binding(aor=AOR, contact=contact, expires=NOW + expires_in, call_id=call_id, cseq=cseq,
                   last_modified=NOW - modified_ago, **fields)  # type: ignore[arg-type]


def fresh(contact: str = "sip:alice@192.0.2.10:5062", *, granted: int = 3600, call_id: str = "call-1",
          cseq: int = 1, conn: object = None, **fields: object) -> Binding:
    """The binding this module's REGISTERs create or refresh at NOW (source, socket, node as run() passes)."""
    return Binding(aor=AOR, contact=contact, expires=NOW + granted, call_id=call_id, cseq=cseq,
                   source_transport="udp", source_host="192.0.2.10", source_port=5062, socket=SOCKET,
                   node=NODE, last_modified=NOW, conn=conn, **fields)  # type: ignore[arg-type]
