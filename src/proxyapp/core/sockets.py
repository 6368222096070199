"""Our own sockets: the bytes we write for each (Via, Record-Route) and "is this me" (OpenSIPS check_self).

A ``tls:`` socket writes ``Via: SIP/2.0/TLS`` (RFC 3261 §18.2.1 / §20.42: the transport the
request is sent over) and ``;transport=tls`` in its Record-Route, so the dialog's later
requests come back over TLS (RFC 3261 §26.2.2; a ``sip:`` Record-Route with transport=tls, as
OpenSIPS and Kamailio write it, keeps the scheme of the dialog). The port is written unless it
is 5060, so a TLS socket on 5061 shows it too (check_self compares ports, 5060 when absent).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config import Listen
from .addresses import norm_host


class LocalSocket:
    """A listening socket and the bytes we write for it: Via prefix and Record-Route line."""

    __slots__ = ("listen", "transport", "host", "port", "via_prefix", "rr_line", "rr_uri", "sent_by")

    def __init__(self, listen: Listen, advertised: str | None) -> None:
        self.listen = listen
        self.transport = listen.transport
        host, port = listen.host, listen.port
        if advertised:
            if advertised.startswith("["):
                end = advertised.find("]")
                host = advertised[1:end]
                if advertised[end + 1 : end + 2] == ":":
                    port = int(advertised[end + 2 :])
            elif advertised.count(":") == 1:
                h, p = advertised.split(":")
                host, port = h, int(p)
            else:
                host = advertised
        self.host = host
        self.port = port
        hp = f"[{host}]" if ":" in host else host
        self.sent_by = f"{hp}:{port}"
        self.via_prefix = f"Via: SIP/2.0/{self.transport.upper()} {self.sent_by};branch=".encode()
        # Record-Route as OpenSIPS' record_route() writes it: the port only when not 5060.
        rr = hp if port == 5060 else f"{hp}:{port}"
        if self.transport != "udp":
            rr += f";transport={self.transport}"
        self.rr_uri = f"sip:{rr};lr"
        self.rr_line = f"Record-Route: <{self.rr_uri}>\r\n".encode()


def identity(sockets: Iterable[LocalSocket], aliases: Iterable[str]) -> tuple[set[tuple[str, int]], set[str]]:
    """OpenSIPS check_self's tables: the (host, port) of every socket, advertised address and alias,
    and the hosts of aliases given without a port (they match any port)."""
    me: set[tuple[str, int]] = set()
    for s in sockets:
        me.add((norm_host(s.listen.host), s.listen.port))
        me.add((norm_host(s.host), s.port))
    any_port: set[str] = set()
    for alias in aliases:
        if alias.startswith("["):
            end = alias.find("]")
            host, port_s = alias[1:end], alias[end + 2 :]
        elif alias.count(":") == 1:
            host, port_s = alias.split(":")
        else:
            host, port_s = alias, ""
        if port_s:
            me.add((norm_host(host), int(port_s)))
        else:
            any_port.add(norm_host(host))
    return me, any_port
