"""LocationConfig: the validated [location] table of the proxy's TOML configuration.

Every key is optional; an empty table gives the embedded default, a SQLite file
"proxyapp-location.db" relative to the working directory. Unknown keys and bad values raise
ValueError naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

BACKENDS = ("sqlite", "memory", "postgres", "redis")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,54}\Z")  # + "_changes"/"_expires" stays under 63


@dataclasses.dataclass
class LocationConfig:
    """Location settings. Build it with from_dict(); the defaults are the documented ones."""

    # "sqlite" (a file; the worker processes of one machine share it), "memory" (nothing kept
    # across a restart, nothing shared), "postgres" or "redis" (several nodes share them).
    backend: str = "sqlite"
    # sqlite: a file path (or sqlite:///path); postgres: a postgresql:// URL.
    db_url: str = "proxyapp-location.db"
    # The table (sqlite, postgres); postgres also LISTENs on the channel of this name.
    db_table: str = "location"
    # redis: the server, and the prefix of the keys (PREFIX:<aor>), which is also the channel.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "proxyapp:location"
    # Seconds: one backend attempt (connect + write, or a read), the pause between attempts.
    write_timeout: float = 2.0
    retry_interval: float = 1.0
    # Seconds: the expiry timer; how often sqlite looks for other processes' changes; how often
    # expired rows are deleted from the database.
    expire_interval: float = 1.0
    sync_interval: float = 0.5
    purge_interval: float = 60.0
    # AORs per backend transaction.
    batch_max: int = 500

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None) -> "LocationConfig":
        """Validate the [location] table; raise ValueError naming the offending key."""
        table = dict(table or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        cfg = cls()
        for key, value in table.items():
            if key not in fields:
                raise ValueError(f"location.{key}: unknown key (known: {', '.join(sorted(fields))})")
            default = getattr(cfg, key)
            if isinstance(default, float):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                    raise ValueError(f"location.{key}: expected a positive number of seconds, got {value!r}")
                value = float(value)
            elif isinstance(default, int):
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise ValueError(f"location.{key}: expected a positive integer, got {value!r}")
            elif not isinstance(value, str) or not value:
                raise ValueError(f"location.{key}: expected a non-empty string, got {value!r}")
            setattr(cfg, key, value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Cross-field checks; raise ValueError naming the key."""
        if self.backend not in BACKENDS:
            raise ValueError(f"location.backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not _IDENT.match(self.db_table):
            raise ValueError(f"location.db_table: expected an SQL identifier (letters, digits, _), got {self.db_table!r}")
        if self.backend == "postgres" and not self.db_is_postgres:
            raise ValueError(f"location.db_url: the postgres backend needs a postgresql:// URL, got {self.db_url!r}")
        if self.backend == "sqlite" and (self.db_is_postgres or "://" in self.db_url.replace("sqlite:///", "", 1)):
            raise ValueError(f"location.db_url: the sqlite backend needs a file path, got {self.db_url!r}")
        if self.backend == "redis" and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"location.redis_url: expected redis://, rediss:// or unix://, got {self.redis_url!r}")

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

    def queue_options(self) -> dict[str, Any]:
        """The keyword arguments every queued backend takes."""
        return {
            "write_timeout": self.write_timeout,
            "retry_interval": self.retry_interval,
            "purge_interval": self.purge_interval,
            "batch_max": self.batch_max,
        }
