"""Validated proxyapp configuration from one TOML file; transaction timers derived from T1/T2/T4."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


DEFAULT_LISTEN = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
LISTEN_TRANSPORTS = ("udp", "tcp", "tls")
# The port of a listener given without one (RFC 3261 §19.1.2: 5060, 5061 for TLS).
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
# The [acc] table of the embedded defaults (``proxyapp`` with no --config): SQLite records and
# CDRs in the working directory, spool and dialog journal beside them. A configuration file
# without an [acc] table has no accounting (the operator said everything there is to say).
DEFAULT_ACC = {"db_url": "proxyapp-acc.db", "spool_dir": "proxyapp-acc-spool"}
# The [location] table of the embedded defaults: registrations persisted in SQLite in the working
# directory, so they survive a restart. A configuration file without a [location] table keeps
# them in memory only.
DEFAULT_LOCATION = {"backend": "sqlite", "db_url": "proxyapp-location.db"}
# The embedded defaults serve the loopback names as the proxy's own domain.
DEFAULT_ALIASES = ("localhost",)
# No version by default: scanners report a version they can match to vulnerabilities (issue 17).
DEFAULT_SERVER_HEADER = "proxyapp"
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# The control socket `proxyapp ctl` talks to, relative to the working directory unless absolute.
DEFAULT_CONTROL_SOCKET = "proxyapp-ctl.sock"


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` names the offending TOML key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config: {key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening socket, ``udp:IP:PORT``, ``tcp:IP:PORT`` or ``tls:IP:PORT`` (SIP over TLS,
    RFC 3261 §26.2; its certificate comes from ``[tls]``, proxyapp.tls). Without a port: 5060,
    or 5061 for tls (RFC 3261 §19.1.2 / RFC 3263 §4.2's default for TLS)."""

    transport: str  # "udp" | "tcp" | "tls"
    host: str  # IP literal, IPv6 without brackets
    port: int

    @classmethod
    def parse(cls, text: str, key: str = "listen") -> "Listen":
        proto, sep, rest = text.partition(":")
        proto = proto.lower()
        if not sep or proto not in LISTEN_TRANSPORTS:
            raise ConfigError(key, f"{text!r}: expected 'udp:IP:PORT', 'tcp:IP:PORT' or 'tls:IP:PORT'")
        host, sep, port_s = rest.rpartition(":")
        if not sep or rest.endswith("]"):
            host, port_s = rest, str(DEFAULT_PORTS[proto])  # "IP" or "[IPv6]" without a port
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(key, f"{text!r}: {host!r} is not an IP address") from None
        try:
            port = int(port_s)
        except ValueError:
            raise ConfigError(key, f"{text!r}: port {port_s!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(key, f"{text!r}: port {port} out of range")
        return cls(proto, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Transaction timers in seconds (RFC 3261 §17 and Table 4; names as OpenSIPS tm's knobs).

    T1, T2 and T4 are given in milliseconds in the TOML file (like OpenSIPS ``T1_timer``);
    ``fr_timeout``, ``fr_inv_timeout`` and ``wt_timer`` in seconds.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # Timer B / F (RFC 3261 §17.1.1.2, §17.1.2.2): no final response; default 64*T1.
    fr_timeout: float = 32.0
    # Timer C (RFC 3261 §16.6 step 11): INVITE after a provisional; MUST be > 3 min.
    fr_inv_timeout: float = 180.0
    # Timer D / J on unreliable transports: how long a completed transaction absorbs
    # retransmissions before it is freed (RFC: D >= 32 s, J = 64*T1).
    wt_timer: float = 32.0

    @property
    def b(self) -> float:
        return self.fr_timeout

    @property
    def f(self) -> float:
        return self.fr_timeout

    @property
    def h(self) -> float:
        """Timer H, wait for ACK (RFC 3261 §17.2.1): 64*T1."""
        return 64 * self.t1

    @property
    def l(self) -> float:  # noqa: E743 - RFC 6026 names it L
        """Timer L, INVITE server Accepted state (RFC 6026 §8.7): 64*T1."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """Timer M, INVITE client Accepted state (RFC 6026 §8.4): 64*T1."""
        return 64 * self.t1


@dataclass(slots=True)
class Config:
    """Everything the proxy needs to run."""

    listen: list[Listen] = field(default_factory=lambda: [Listen.parse(s) for s in DEFAULT_LISTEN])
    advertised_address: str | None = None  # host or host:port written in Via / Record-Route
    aliases: list[str] = field(default_factory=list)  # extra "host" or "host:port" that are us
    script: str | None = None  # path of a routing script; None = built-in default script
    server_header: str = DEFAULT_SERVER_HEADER
    trying_reason: str = "Giving a try"
    log_level: str = "INFO"
    # "text" (human lines on stderr) or "json" (one loguru-serialized object per line, for shippers).
    log_format: str = "text"
    timers: TimerConfig = field(default_factory=TimerConfig)
    max_message_size: int = 65535
    acc: dict[str, Any] = field(default_factory=dict)  # passed through to proxyapp.acc.AccConfig
    # Passed through to proxyapp.location.LocationConfig ({} = in memory only) and
    # proxyapp.registrar.RegistrarConfig (expiry limits; the domains default to ours).
    location: dict[str, Any] = field(default_factory=lambda: {"backend": "memory"})
    registrar: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)  # proxyapp.auth.AuthConfig ({} = no auth service)
    # [tcp]: connection limits and timeouts (validated by the transport); {} = the defaults.
    tcp: dict[str, Any] = field(default_factory=dict)
    # [limits]: flood limits, scanner filter and memory caps (validated by proxyapp.limits).
    limits: dict[str, Any] = field(default_factory=dict)
    # [tls]: certificate, key, CA and verification for tls: listeners and outgoing TLS.
    tls: dict[str, Any] = field(default_factory=dict)
    # [permissions]: trusted source addresses and subnets (proxyapp.permissions).
    permissions: dict[str, Any] = field(default_factory=dict)
    # A listener off loopback with neither [auth] nor a trusted source list refuses to start
    # unless this is true: the operator says in writing that relaying for anyone is intended.
    open_relay: bool = False
    script_params: dict[str, Any] = field(default_factory=dict)  # [script_params], for the script
    # Worker processes sharing the listen addresses (proxyapp.workers); 1 = one process.
    workers: int = 1
    # [control] socket: the UNIX socket `proxyapp ctl` uses ("" = no control socket). Its file
    # mode is 0600: whoever can open it can steer the proxy.
    control_socket: str = DEFAULT_CONTROL_SOCKET
    # [metrics] listen: "IP:PORT" of the Prometheus endpoint; None = off (the default).
    metrics_listen: tuple[str, int] | None = None
    # A response that matches no client transaction (RFC 3261 §16.7 lets a proxy relay it on its
    # Via, a reflection tool for strangers): "auto" relays it when it arrived on a loopback
    # socket and drops it elsewhere, "relay" always, "drop" never. Never over TCP (that would
    # open a connection to an address a stranger chose).
    stateless_responses: str = "auto"
    # Graceful stop (SIGTERM / SIGINT): new INVITEs get 503 + Retry-After while the transactions
    # in flight finish, for at most this many seconds; then accounting is flushed.
    stop_timeout: float = 10.0

    def check_workers(self) -> None:
        """Raises ConfigError unless ``workers`` is 1..64, and UDP-only when above 1."""
        v = self.workers
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 64:
            raise ConfigError("workers", f"expected an integer between 1 and 64, got {v!r}")
        if v > 1 and any(x.transport != "udp" for x in self.listen):
            raise ConfigError(
                "workers", "more than one worker needs UDP-only listen sockets (a TCP connection "
                "lives in one process; use workers = 1 for TCP)",
            )

    @classmethod
    def embedded(cls) -> "Config":
        """The embedded defaults used without --config: loopback 5060 UDP+TCP, the default
        script, accounting to SQLite (DEFAULT_ACC, relative to the working directory),
        registrations persisted in SQLite (DEFAULT_LOCATION), "localhost" an alias of ours."""
        return cls(acc=dict(DEFAULT_ACC), location=dict(DEFAULT_LOCATION), aliases=list(DEFAULT_ALIASES))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read and validate a TOML file; raises ConfigError (invalid value) or OSError."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), f"invalid TOML: {exc}") from None
        cfg = cls.from_dict(data)
        if cfg.script is not None and not Path(cfg.script).is_absolute():
            # A relative script path is relative to the config file, as includes usually are.
            cand = (p.parent / cfg.script).resolve()
            if cand.exists() or not Path(cfg.script).exists():
                cfg.script = str(cand)
        return cfg

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Validate a parsed TOML document; raises ConfigError naming the key."""
        known = {
            "listen", "advertised_address", "aliases", "script", "server_header", "trying_reason",
            "log_level", "timers", "max_message_size", "acc", "script_params", "workers", "location",
            "registrar", "log_format", "control", "metrics", "stop_timeout", "auth",
            "stateless_responses", "tcp", "limits", "tls", "permissions", "open_relay",
        }
        for key in data:
            if key not in known:
                raise ConfigError(key, f"unknown key (known: {', '.join(sorted(known))})")
        cfg = cls()
        if "listen" in data:
            value = data["listen"]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ConfigError("listen", "expected a non-empty list of 'udp:IP:PORT' / 'tcp:IP:PORT' / 'tls:IP:PORT'")
            cfg.listen = [Listen.parse(v, f"listen[{i}]") for i, v in enumerate(value)]
        if "advertised_address" in data:
            cfg.advertised_address = _str(data, "advertised_address")
            if not cfg.advertised_address:
                raise ConfigError("advertised_address", "must not be empty")
        if "aliases" in data:
            value = data["aliases"]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError("aliases", "expected a list of 'host' or 'host:port' strings")
            cfg.aliases = list(value)
        if "script" in data:
            cfg.script = _str(data, "script")
        if "server_header" in data:
            cfg.server_header = _str(data, "server_header")
            if "\r" in cfg.server_header or "\n" in cfg.server_header:
                raise ConfigError("server_header", "must be one line")
        if "trying_reason" in data:
            cfg.trying_reason = _str(data, "trying_reason")
            if not cfg.trying_reason or "\r" in cfg.trying_reason or "\n" in cfg.trying_reason:
                raise ConfigError("trying_reason", "must be a non-empty single line")
        if "log_level" in data:
            level = _str(data, "log_level").upper()
            if level not in LOG_LEVELS:
                raise ConfigError("log_level", f"{data['log_level']!r}: expected one of {', '.join(LOG_LEVELS)}")
            cfg.log_level = level
        if "log_format" in data:
            fmt = _str(data, "log_format").lower()
            if fmt not in LOG_FORMATS:
                raise ConfigError("log_format", f"{data['log_format']!r}: expected one of {', '.join(LOG_FORMATS)}")
            cfg.log_format = fmt
        if "stateless_responses" in data:
            mode = _str(data, "stateless_responses")
            if mode not in ("auto", "relay", "drop"):
                raise ConfigError("stateless_responses", f"{mode!r}: expected 'auto', 'relay' or 'drop'")
            cfg.stateless_responses = mode
        if "open_relay" in data:
            if not isinstance(data["open_relay"], bool):
                raise ConfigError("open_relay", f"expected true or false, got {data['open_relay']!r}")
            cfg.open_relay = data["open_relay"]
        if "stop_timeout" in data:
            v = data["stop_timeout"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 3600:
                raise ConfigError("stop_timeout", f"expected seconds between 0 and 3600, got {v!r}")
            cfg.stop_timeout = float(v)
        if "control" in data:
            cfg.control_socket = _control(data["control"])
        if "metrics" in data:
            cfg.metrics_listen = _metrics(data["metrics"])
        if "max_message_size" in data:
            v = data["max_message_size"]
            if not isinstance(v, int) or isinstance(v, bool) or not 1024 <= v <= 1 << 20:
                raise ConfigError("max_message_size", "expected an integer between 1024 and 1048576")
            cfg.max_message_size = v
        if "timers" in data:
            cfg.timers = _timers(data["timers"])
        if "workers" in data:
            cfg.workers = data["workers"]
        cfg.check_workers()
        for table in ("acc", "script_params", "location", "registrar", "auth", "tcp", "limits", "tls", "permissions"):
            if table in data:
                if not isinstance(data[table], dict):
                    raise ConfigError(table, "expected a table")
                setattr(cfg, table, dict(data[table]))
        return cfg


def _str(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    return value


def _control(table: Any) -> str:
    if not isinstance(table, dict):
        raise ConfigError("control", "expected a table")
    for key in table:
        if key != "socket":
            raise ConfigError(f"control.{key}", "unknown key (known: socket)")
    value = table.get("socket", DEFAULT_CONTROL_SOCKET)
    if not isinstance(value, str):
        raise ConfigError("control.socket", f"expected a path string, got {type(value).__name__}")
    if len(value.encode()) > 100:  # sun_path holds 108 bytes; leave room for ".N" per worker
        raise ConfigError("control.socket", "path too long for a UNIX socket (at most 100 bytes)")
    return value


def _metrics(table: Any) -> tuple[str, int] | None:
    if not isinstance(table, dict):
        raise ConfigError("metrics", "expected a table")
    for key in table:
        if key != "listen":
            raise ConfigError(f"metrics.{key}", "unknown key (known: listen)")
    value = table.get("listen")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError("metrics.listen", f"expected 'IP:PORT', got {value!r}")
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_s)
    except ValueError:
        raise ConfigError("metrics.listen", f"{value!r}: expected 'IP:PORT'") from None
    if not sep or not 0 < port <= 65535:
        raise ConfigError("metrics.listen", f"{value!r}: expected 'IP:PORT'")
    return host, port


def _timers(table: Any) -> TimerConfig:
    if not isinstance(table, dict):
        raise ConfigError("timers", "expected a table")
    ms_keys = {"T1": "t1", "T2": "t2", "T4": "t4"}
    s_keys = ("fr_timeout", "fr_inv_timeout", "wt_timer")
    values: dict[str, float] = {}
    for key, raw in table.items():
        if key not in ms_keys and key not in s_keys:
            raise ConfigError(f"timers.{key}", f"unknown timer (known: T1, T2, T4 in ms; {', '.join(s_keys)} in s)")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
            raise ConfigError(f"timers.{key}", f"expected a positive number, got {raw!r}")
        if key in ms_keys:
            values[ms_keys[key]] = raw / 1000.0
        else:
            values[key] = float(raw)
    t1 = values.get("t1", 0.5)
    t2 = values.get("t2", max(4.0, t1))
    if t2 < t1:
        raise ConfigError("timers.T2", "must not be smaller than T1")
    return TimerConfig(
        t1=t1,
        t2=t2,
        t4=values.get("t4", 5.0),
        fr_timeout=values.get("fr_timeout", 64 * t1),
        fr_inv_timeout=values.get("fr_inv_timeout", 180.0),
        wt_timer=values.get("wt_timer", 64 * t1),
    )
