"""Trusted sources ([permissions]), identity checks and the open-relay start check (issue 17 items 2, 9).

Three jobs, all pure (no sockets, no clock):

- **Address groups**, in the spirit of the OpenSIPS/Kamailio ``permissions`` module's address
  table (``allow_source_address(group)``, ``check_address(group, ip, port, proto)``). The
  ``[permissions]`` table::

      [permissions]
      trusted = ["192.0.2.10", "198.51.100.0/24", "2001:db8::/32"]   # the group "trusted" (alias 1)
      [permissions.groups]
      trunks = ["203.0.113.5:5060:udp", "[2001:db8::5]:5060:tcp", "198.51.100.0/28:*:tls"]

  An entry is ``ADDRESS[/PREFIX][:PORT[:PROTO]]``: an IPv4 or IPv6 address or network (host
  bits must be zero), optionally the source port (``*`` or ``0``: any) and the transport
  (``udp``, ``tcp``, ``tls``, ``ws``, ``wss``, ``sctp`` or ``any``). An IPv6 address with a port
  is written in brackets, with the prefix inside or after them: ``[2001:db8::/32]:5060``.
  Without a port an entry matches every port and transport, as OpenSIPS' port 0 / proto "any".
  ``trusted`` is the group named ``"trusted"``; ``1`` (OpenSIPS' default group) names it too.

  Matching is precomputed per group: one dict per address family and prefix length, so a lookup
  costs one dict probe per distinct prefix length in the group (an exact IP: one probe), never
  a scan of the entries; the rules an IP matched are cached per source IP (bounded).

- **Identity** (``same_user``, ``same_host``), for OpenSIPS uri/auth ``check_from()`` /
  ``check_to()``: RFC 3261 §19.1.4 compares the user part case-sensitively, with ``%HH``
  escapes equal to the characters they encode, and the host case-insensitively.

- **The open-relay start check** (``check_open_relay``): a listener off loopback with neither an
  ``[auth]`` table, nor an address group, nor ``open_relay = true`` refuses to start.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote

from .config import Config, ConfigError

TRUSTED = "trusted"  # the group of the ``trusted`` list; "1" is an alias (OpenSIPS' default group)
PROTOS = ("udp", "tcp", "tls", "ws", "wss", "sctp", "any")
ANY_PORT = 0
ANY_PROTO = "any"
CACHE_SIZE = 4096  # source IPs whose matching rules a group remembers (cleared when full)
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Rule = tuple[int, str]  # (port or ANY_PORT, proto or ANY_PROTO)


@dataclass(frozen=True)
class Entry:
    """One parsed address entry: a network (an exact IP is a /32 or /128), a port, a transport."""

    network: IPNetwork
    port: int = ANY_PORT
    proto: str = ANY_PROTO

    @classmethod
    def parse(cls, text: Any, key: str) -> "Entry":
        """``ADDRESS[/PREFIX][:PORT[:PROTO]]``; raises ConfigError naming ``key``."""
        if not isinstance(text, str):
            raise ConfigError(key, f"expected a string 'IP[/PREFIX][:PORT[:PROTO]]', got {text!r}")
        s = text.strip()
        if s.startswith("["):
            close = s.find("]")
            if close < 0:
                raise ConfigError(key, f"{text!r}: no closing ']'")
            addr, rest = s[1:close], s[close + 1:]
            if rest.startswith("/"):
                if "/" in addr:
                    raise ConfigError(key, f"{text!r}: two prefix lengths")
                prefix, sep, tail = rest[1:].partition(":")
                addr, rest = f"{addr}/{prefix}", sep + tail
            if rest and not rest.startswith(":"):
                raise ConfigError(key, f"{text!r}: expected ':PORT' after ']'")
            extra = rest[1:].split(":") if rest else []
        else:
            head = s.split(":", 1)[0]
            if ":" not in s or "." not in head:
                return cls(_network(s, text, key))  # a bare address or network (IPv6 included): any port
            addr, *extra = s.split(":")  # IPv4[/PREFIX]:PORT[:PROTO]
        network = _network(addr, text, key)
        if len(extra) > 2:
            raise ConfigError(key, f"{text!r}: expected 'IP[/PREFIX][:PORT[:PROTO]]' (IPv6 with a port in brackets)")
        port = ANY_PORT
        proto = ANY_PROTO
        if extra:
            port = _port(extra[0], text, key)
        if len(extra) == 2:
            proto = extra[1].strip().lower()
            if proto not in PROTOS:
                raise ConfigError(key, f"{text!r}: transport {extra[1]!r} is not one of {', '.join(PROTOS)}")
        return cls(network, port, proto)


def _network(addr: str, text: str, key: str) -> IPNetwork:
    """The network ``addr`` names (host bits must be zero; an IPv4-mapped IPv6 one becomes IPv4,
    as the sources it is compared with do); raises ConfigError naming ``key``."""
    addr = addr.strip()
    try:
        net = ipaddress.ip_network(addr, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ConfigError(key, f"{text!r}: {addr!r} is not an IP address or network") from None
        raise ConfigError(key, f"{text!r}: host bits set in {addr!r} (did you mean '{loose}'?)") from exc
    mapped = net.network_address.ipv4_mapped if isinstance(net, ipaddress.IPv6Network) else None
    if mapped is not None and net.prefixlen >= 96:  # ::ffff:a.b.c.d: a source of a dual-stack socket
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _port(value: str, text: str, key: str) -> int:
    value = value.strip()
    if value == "*":
        return ANY_PORT
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(key, f"{text!r}: port {value!r} is not a number (or '*' for any)")
    port = int(value)
    if port > 65535:
        raise ConfigError(key, f"{text!r}: port {port} out of range")
    return port


@dataclass
class Group:
    """The entries of one group, indexed for lookup: per IP version, prefix length -> network
    number (the address shifted right by the host bits) -> the rules of the entries there."""

    name: str
    entries: tuple[Entry, ...] = ()
    _index: dict[int, list[tuple[int, int, dict[int, tuple[Rule, ...]]]]] = field(default_factory=dict, repr=False)
    _cache: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        tables: dict[tuple[int, int], dict[int, list[Rule]]] = {}
        for e in self.entries:
            net = e.network
            shift = net.max_prefixlen - net.prefixlen
            table = tables.setdefault((net.version, net.prefixlen), {})
            table.setdefault(int(net.network_address) >> shift, []).append((e.port, e.proto))
        index: dict[int, list[tuple[int, int, dict[int, tuple[Rule, ...]]]]] = {}
        for (version, plen), table in sorted(tables.items(), key=lambda kv: -kv[0][1]):  # most specific first
            bits = 32 if version == 4 else 128
            index.setdefault(version, []).append((plen, bits - plen, {k: tuple(v) for k, v in table.items()}))
        self._index = index

    def __len__(self) -> int:
        return len(self.entries)

    def rules(self, ip: str) -> tuple[Rule, ...]:
        """The (port, proto) rules of every entry whose network holds ``ip`` (() for none, or for
        text that is not an IP address). An IPv4-mapped IPv6 address counts as its IPv4 address."""
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        found: tuple[Rule, ...] = ()
        try:
            addr = ipaddress.ip_address(ip.strip("[]") if ip.startswith("[") else ip)
        except ValueError:
            addr = None
        if addr is not None:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            n = int(addr)
            out: list[Rule] = []
            for _plen, shift, table in self._index.get(addr.version, ()):
                hit = table.get(n >> shift)
                if hit is not None:
                    out.extend(hit)
            found = tuple(out)
        cache = self._cache
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[ip] = found
        return found

    def match(self, ip: str, port: int | None = None, proto: str | None = None) -> bool:
        """Does an entry hold ``ip`` with this ``port`` and ``proto``? None (or 0 / "any"):
        whatever the entry says about it."""
        rules = self.rules(ip)
        if not rules:
            return False
        if proto is not None:
            proto = proto.lower()
            if proto == ANY_PROTO:
                proto = None
        if port == ANY_PORT:
            port = None
        for rport, rproto in rules:
            if (port is None or rport == ANY_PORT or rport == port) and (
                    proto is None or rproto == ANY_PROTO or rproto == proto):
                return True
        return False


@dataclass
class Permissions:
    """The validated [permissions] table: address groups by name. Build it with from_dict()."""

    groups: dict[str, Group]
    source: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)  # the table it was built from

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None) -> "Permissions":
        """Validate [permissions]; raise ConfigError naming the key (``permissions.trusted[2]``)."""
        data = dict(table or {})
        known = ("groups", "trusted")
        for key in data:
            if key not in known:
                raise ConfigError(f"permissions.{key}", f"unknown key (known: {', '.join(known)})")
        groups = {TRUSTED: Group(TRUSTED, _entries(data.get("trusted", []), "permissions.trusted"))}
        named = data.get("groups", {})
        if not isinstance(named, dict):
            raise ConfigError("permissions.groups", "expected a table of name = [entries]")
        for name, entries in named.items():
            key = f"permissions.groups.{name}"
            if name in (TRUSTED, "1"):
                raise ConfigError(key, "group 1 / 'trusted' is the permissions.trusted list: put these entries there")
            if not _GROUP_NAME.match(name):
                raise ConfigError(key, "a group name is 1-64 letters, digits, '_', '-' or '.'")
            groups[name] = Group(name, _entries(entries, key))
        return cls(groups, source=table)

    def group(self, name: str | int) -> Group | None:
        """The group called ``name`` (1 or "1" is "trusted"), None when there is none."""
        key = str(name)
        return self.groups.get(TRUSTED if key == "1" else key)

    @property
    def restricts(self) -> bool:
        """Some group lists an address: a script can tell trusted sources from the others."""
        return any(len(g) for g in self.groups.values())


def _entries(value: Any, key: str) -> tuple[Entry, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of 'IP[/PREFIX][:PORT[:PROTO]]' strings, got {value!r}")
    return tuple(Entry.parse(v, f"{key}[{i}]") for i, v in enumerate(value))


# ------------------------------------------------------------------------------------------
# Identity: check_from() / check_to()


def same_user(uri_user: str | None, username: str | None) -> bool:
    """Is the user part of a SIP URI the digest ``username``? RFC 3261 §19.1.4: case-sensitive,
    ``%HH`` equal to the character it encodes (the digest username is unescaped text). A
    malformed escape (invalid UTF-8 once decoded) matches nothing."""
    if not uri_user or not username:
        return False
    if "%" not in uri_user:
        return uri_user == username
    try:
        return unquote(uri_user, errors="strict") == username
    except UnicodeDecodeError:
        return False


def same_host(uri_host: str | None, realm: str | None) -> bool:
    """Is a URI host the realm (a domain)? Case-insensitive, IPv6 brackets ignored (RFC 3261 §19.1.4)."""
    if not uri_host or not realm:
        return False
    return uri_host.strip("[]").lower() == realm.strip("[]").lower()


# ------------------------------------------------------------------------------------------
# The open-relay start check (issue 17 item 9)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and their IPv4-mapped form; not the wildcards 0.0.0.0 and ::."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def exposed_listeners(cfg: Config) -> list[str]:
    """The listen sockets that are not on loopback (``udp:0.0.0.0:5060``, ...)."""
    return [str(x) for x in cfg.listen if not is_loopback(x.host)]


def check_open_relay(cfg: Config) -> Permissions:
    """Validate [permissions] and refuse an open relay: raise ConfigError when a listener is off
    loopback and nothing restricts relaying, i.e. no [auth] table, no address in [permissions]
    and no ``open_relay = true``. Loopback-only configurations (the embedded defaults) pass.
    Returns the parsed permissions."""
    perms = Permissions.from_dict(cfg.permissions)
    exposed = exposed_listeners(cfg)
    if exposed and not (cfg.auth or perms.restricts or cfg.open_relay):
        raise ConfigError(
            "listen",
            f"{', '.join(exposed)} {'is' if len(exposed) == 1 else 'are'} not on loopback and nothing limits who "
            "may relay calls through the proxy: add an [auth] table (digest authentication, see "
            "examples/production.toml), a [permissions] trusted list of the addresses allowed to relay, "
            "or open_relay = true to relay for anyone",
        )
    return perms
