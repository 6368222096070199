"""The ``[tcp]`` table: limits and timeouts of TCP connections (issue 17 item 5), validated.

Names and defaults follow Kamailio's and OpenSIPS' tcp_* core parameters where they exist:

- ``idle_timeout`` (Kamailio ``tcp_connection_lifetime``): a connection that brought no complete
  message and no keep-alive ping (RFC 5626 CRLFCRLF) and sent nothing for this long is closed.
  Pings count as activity: a phone behind NAT keeps its flow open with them (RFC 5626 §4.4.1,
  one every 2 minutes or so), and the proxy needs that flow to reach it. 600 s is five missed
  pings; dead connections of vanished clients go within 10 minutes. 0 = never.
- ``message_timeout`` (OpenSIPS ``tcp_max_msg_time``): a message begun but not complete after
  this long closes the connection (slowloris, an incomplete 64 KB message). A 64 KB message
  arrives in well under a second even on a slow link; 10 s leaves room. 0 = never.
- ``max_connections`` (Kamailio ``tcp_max_connections``, same default 2048): open TCP connections,
  accepted and opened by the proxy; a new inbound connection beyond it is closed at once.
  Connections the proxy opens itself (to forward a request) are never refused.
- ``max_connections_per_ip``: inbound connections from one source address. 64 lets an office's
  phones share one NAT address and keeps one attacker to 1/32 of ``max_connections``; raise it
  for big sites behind one address. 0 = no per-address cap.
- ``max_write_buffer``: bytes queued for a peer that does not read; beyond it the connection is
  dropped. 1 MiB is some 2000 SIP messages, far beyond a healthy peer.
- ``write_timeout`` (Kamailio ``tcp_send_timeout``, 10 s there too): a peer whose queue stays
  above the transport's high-water mark (64 KiB) this long is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .config import ConfigError


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle_timeout: float = 600.0
    message_timeout: float = 10.0
    max_connections: int = 2048
    max_connections_per_ip: int = 64
    max_write_buffer: int = 1 << 20
    write_timeout: float = 10.0

    # (key, kind, minimum, maximum); a seconds key of minimum 0 means "0 turns it off".
    _RULES = {
        "idle_timeout": ("seconds", 0.0, 86400.0),
        "message_timeout": ("seconds", 0.0, 3600.0),
        "max_connections": ("integer", 1, 1_000_000),
        "max_connections_per_ip": ("integer", 0, 1_000_000),
        "max_write_buffer": ("integer", 4096, 1 << 30),
        "write_timeout": ("seconds", 0.01, 3600.0),
    }

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> "TcpLimits":
        """Validate the ``[tcp]`` table ({} = the defaults); raises ConfigError naming the key."""
        if not isinstance(table, dict):
            raise ConfigError("tcp", "expected a table")
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, raw in table.items():
            rule = cls._RULES.get(key) if isinstance(key, str) else None
            if rule is None:
                raise ConfigError(f"tcp.{key}", f"unknown key (known: {', '.join(known)})")
            kind, low, high = rule
            if kind == "integer":
                if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
                    raise ConfigError(f"tcp.{key}", f"expected an integer between {low} and {high}, got {raw!r}")
                values[key] = raw
            else:
                if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
                    raise ConfigError(f"tcp.{key}", f"expected seconds between {low:g} and {high:g}, got {raw!r}")
                values[key] = float(raw)
        return cls(**values)

    @property
    def sweep_interval(self) -> float:
        """How often the edge looks over its connections: 1 s, or a quarter of the shortest
        timeout when that is shorter (a timeout fires at most this much late)."""
        timeouts = [t for t in (self.idle_timeout, self.message_timeout, self.write_timeout) if t > 0]
        return max(0.05, min([1.0] + [t / 4 for t in timeouts]))
