"""AuthConfig: the validated [auth] table of the proxy's TOML configuration.

Every key is optional. Unknown keys and bad values raise ConfigError naming the key
("auth.nonce_expire"). A proxy whose configuration has no [auth] table has no auth service: the
auth verbs then raise ScriptError (the request gets a 500), like save() without a location.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from pathlib import Path
from typing import Any, Mapping

from ..config import ConfigError

ALGORITHMS = ("SHA-256", "MD5")  # RFC 8760 / RFC 3261; the -sess variants are not supported
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


@dataclasses.dataclass
class AuthConfig:
    """Digest authentication settings. Build it with from_dict(); the defaults are the documented ones."""

    # The realm of challenges and of the subscribers' hashes. "" = the request's domain: the To
    # host of a REGISTER challenged with 401, the From host otherwise (OpenSIPS' rule).
    realm: str = ""
    # The subscriber table: a SQLite file path (or sqlite:///path) or a postgresql:// URL.
    db_url: str = "proxyapp-subscribers.db"
    db_table: str = "subscriber"
    # One challenge per algorithm, in this order (RFC 8760 §2.4: the preferred, SHA-256, first).
    algorithms: list[str] = dataclasses.field(default_factory=lambda: list(ALGORITHMS))
    # The qop offered: "auth" (RFC 2617, nonce counts) or "" (RFC 2069 legacy, one request per nonce).
    qop: str = "auth"
    # Seconds a nonce stays valid; an older one gets a new challenge with stale=true.
    nonce_expire: float = 30.0
    # The HMAC key binding nonces to this server. "" = random per start (every worker of one
    # start shares it); several nodes that must accept each other's nonces need the same value.
    secret: str = ""
    # Seconds between reloads of the subscriber table into memory (the verbs never touch the DB).
    refresh_interval: float = 5.0
    # Bounds: nonces whose counts are remembered, source addresses whose failures are counted.
    max_nonces: int = 100_000
    max_sources: int = 10_000

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None) -> "AuthConfig":
        """Validate the [auth] table; raise ConfigError naming the offending key."""
        table = dict(table or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        cfg = cls()
        for key, value in table.items():
            name = f"auth.{key}"
            if key not in fields:
                raise ConfigError(name, f"unknown key (known: {', '.join(sorted(fields))})")
            default = getattr(cfg, key)
            if key == "algorithms":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not value:
                    raise ConfigError(name, f"expected a non-empty list of {', '.join(ALGORITHMS)}")
                out: list[str] = []
                for v in value:
                    up = v.upper() if isinstance(v, str) else v
                    if up not in ALGORITHMS:
                        raise ConfigError(name, f"{v!r}: expected one of {', '.join(ALGORITHMS)}")
                    if up not in out:
                        out.append(up)
                value = out
            elif key == "qop":
                if value not in ("auth", ""):
                    raise ConfigError(name, f"expected \"auth\" or \"\", got {value!r}")
            elif isinstance(default, float):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                    raise ConfigError(name, f"expected a positive number of seconds, got {value!r}")
                value = float(value)
            elif isinstance(default, int):
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise ConfigError(name, f"expected a positive integer, got {value!r}")
            elif not isinstance(value, str):
                raise ConfigError(name, f"expected a string, got {value!r}")
            setattr(cfg, key, value)
        if not cfg.db_url:
            raise ConfigError("auth.db_url", "must not be empty")
        if not _IDENT.match(cfg.db_table):
            raise ConfigError("auth.db_table", f"expected an SQL identifier (letters, digits, _), got {cfg.db_table!r}")
        if any(c in cfg.realm for c in '"\\\r\n'):
            raise ConfigError("auth.realm", "must not contain quotes, backslashes or line breaks")
        if cfg.secret and len(cfg.secret) < 16:
            raise ConfigError("auth.secret", "at least 16 characters (or leave it out for a random one)")
        if not cfg.secret:
            cfg.secret = secrets.token_hex(32)
        return cfg

    @property
    def db_is_postgres(self) -> bool:
        return self.db_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file: sqlite:///rel/path is relative, sqlite:////abs/path absolute."""
        url = self.db_url
        if url.startswith("sqlite:///"):
            url = url[len("sqlite:///") :]
        return Path(url)
