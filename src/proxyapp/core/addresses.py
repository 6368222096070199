"""Where messages go: the transport Target, and SIP URI to next-hop rules (RFC 3263 §4).

RFC 3263 §4.1 picks the transport: the URI's ``transport`` parameter (``udp``, ``tcp``,
``tls``), else TLS for a ``sips:`` URI (RFC 3261 §26.2.2: every hop of a SIPS request is TLS;
a ``sips:`` URI with ``;transport=tcp`` means TLS over TCP too, RFC 5630 §3.1.3's deprecated
form), else UDP. A port left out is 5061 for TLS and 5060 otherwise (RFC 3261 §19.1.2).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

import fastsip
from fastsip import ParseError

from ..config import Listen

# A parsed URI as fastsip returns it: a sip:/sips: URI, or any other scheme (tel:, urn:, ...).
URI = fastsip.SipURI | fastsip.AbsoluteURI
# (host, port or None, transport) of a next hop before DNS.
HopTarget = tuple[str, int | None, str]


@dataclass(slots=True)
class Target:
    """Where a message goes or came from. ``conn`` is the TCP connection to reuse (responses go back
    on the connection the request came in on; opaque to the core, owned by the asyncio edge);
    ``local`` is the Listen socket to send from."""

    transport: str  # "udp" | "tcp" | "tls"
    host: str
    port: int
    conn: Any = None
    local: Listen | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(slots=True)
class TlsTarget(Target):
    """A TLS destination with the name its certificate must show (RFC 5922 §7.2: the host of
    the URI the next hop came from, before DNS; None = the address itself, an IP literal)."""

    name: str | None = None


class ScriptError(Exception):
    """Raised by a verb used wrongly from the routing script (answered 500 like any script error)."""


def norm_host(host: str) -> str:
    """Lower case, IPv6 brackets removed: the form host comparisons use."""
    host = host.lower()
    if host.startswith("["):
        host = host[1:-1]
    return host


@functools.lru_cache(maxsize=4096)
def host_is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(norm_host(host))
        return True
    except ValueError:
        return False


def same_ip(a: str, b: str) -> bool:
    if a == b:
        return True
    if ":" in a and ":" in b:  # IPv6 text forms differ; compare the addresses
        try:
            return ipaddress.ip_address(a) == ipaddress.ip_address(b)
        except ValueError:
            return False
    return False


def uri_target(uri: URI) -> HopTarget | None:
    """(host, port or None, transport) of a SIP URI per RFC 3263 §4.1 (maddr wins), or None."""
    if uri.host is None:
        return None
    params = uri.params
    transport = (params.get("transport") or "").lower()
    if uri.scheme == "sips":
        transport = "tls"  # RFC 3261 §26.2.2 (also for ;transport=tcp, RFC 5630 §3.1.3)
    elif not transport:
        transport = "udp"
    host = params.get("maddr") or uri.host
    return norm_host(host), uri.port, transport


def parse_destination(dest: str) -> HopTarget:
    """A t_relay destination: ``udp:host:port``, ``tcp:host[:port]``, ``tls:host[:port]``,
    ``host[:port]`` or a SIP URI.

    Raises ScriptError when it cannot be understood."""
    text = dest.strip()
    if text.lower().startswith(("sip:", "sips:")):
        try:
            uri = fastsip.parse_uri(text)
        except ParseError as exc:
            raise ScriptError(f"bad destination URI {dest!r}: {exc}") from None
        t = uri_target(uri)
        if t is None:
            raise ScriptError(f"bad destination {dest!r}")
        return t
    transport = "udp"
    low = text.lower()
    for proto in ("udp:", "tcp:", "tls:"):
        if low.startswith(proto):
            transport, text = proto[:-1], text[4:]
            break
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_s = text.partition(":")
    if not host:
        raise ScriptError(f"bad destination {dest!r}")
    try:
        port = int(port_s) if port_s else None
    except ValueError:
        raise ScriptError(f"bad destination port in {dest!r}") from None
    return norm_host(host), port, transport


def is_loopback(host: str) -> bool:
    """A loopback IP literal (127.0.0.0/8, ::1); False for anything else, names included."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
