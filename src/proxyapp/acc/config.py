"""AccConfig: the validated [acc] table of the proxy's TOML configuration.

Every key is optional; an empty table gives a working setup (SQLite file, log through loguru,
spool and dialog journal under var/).  Unknown keys and bad values raise ValueError naming the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from .records import DEFAULT_EXTRA, check_identifier, compile_extra


def _hostport(value: Any, key: str, default_port: int | None = None) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"acc.{key}: expected 'host:port', got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"acc.{key}: expected 'host:port', got {value!r}")
        host, port = value, str(default_port)
    host = host.strip("[]")
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"acc.{key}: bad port in {value!r}") from None
    if not (0 < p < 65536) or not host:
        raise ValueError(f"acc.{key}: bad address {value!r}")
    return host, p


@dataclasses.dataclass
class AccConfig:
    """Accounting settings.  Build it with from_dict(); the defaults are the documented ones."""

    # Where the engine runs: "process" (a child process; the proxy only ships the events, see
    # acc/process.py) or "inline" (on the proxy's event loop; in-process evi subscribers need it).
    engine: str = "process"
    # db backend: a SQLite file path (or sqlite:///path) or a postgresql:// URL.
    db_url: str = "var/acc.db"
    db_table_acc: str = "acc"
    db_table_missed_calls: str = "missed_calls"
    # Extra columns: {column: OpenSIPS pseudo-variable}, see records.compile_extra.
    extra: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_EXTRA))
    # Durable state: per-backend spool segments and the open-dialog journal live here.
    spool_dir: str = "var/acc-spool"
    # Writer: bounded queue, batches, timeouts (milliseconds).
    queue_size: int = 10000
    batch_max: int = 200
    flush_interval_ms: int = 20
    backend_timeout_ms: int = 2000
    retry_interval_ms: int = 1000
    fsync: bool = True
    # CPU priority of accounting's own processes (the accounting process, the SQLite writer, the
    # journal helper), as nice(1): they run at this niceness, or at the proxy's if that is higher.
    # When the cores are short the proxy's calls go first and accounting uses what is left; its
    # events wait in the pipe and its records in the queue or the spool, none dropped. One process
    # with SQLite CDRs carried 3875 to 4000 calls/s with every record written instead of 3250 to
    # 3750 at niceness 0 (bench/README.md, Runs X, Y, AA against AC, AG); 2 workers on 2 cores
    # 3500 calls/s instead of 2875, every record written up to 3000/s instead of 2875/s (Run AN).
    nice: int = 10
    # CDR dialogs whose BYE never comes end after this lifetime (OpenSIPS dialog default_timeout).
    cdr_lifetime_s: float = 43200.0
    # Initial INVITEs seen but not completed yet (their arrival time waits for the CDR's
    # `created`): at most this many are kept, the oldest forgotten first (counted as
    # pending_evicted), so INVITEs a script drops without an answer cannot grow memory.
    max_pending_calls: int = 100000
    # Requests the script answered after they failed authentication (www_/proxy_authorize gave
    # no valid credentials: the 401/407 challenges, the 403 of a wrong password) are accounted
    # only when this is true, even when the script marked them: every stranger's attempt would
    # otherwise be a row (60,000 challenged INVITEs made a 29 MB database in two minutes).
    account_auth_failures: bool = False
    # log backend (loguru): an optional dedicated file and optional syslog.
    log_level: str = "INFO"
    log_file: str | None = None
    log_syslog: bool = False
    log_syslog_address: str = "/dev/log"  # a unix socket path or host:port (UDP)
    log_syslog_facility: str = "local0"
    # aaa backend: RADIUS accounting (RFC 2866).
    radius_server: str = "127.0.0.1:1813"
    radius_secret: str = ""
    radius_timeout_ms: int = 2000
    radius_retries: int = 3
    radius_dictionary: str | None = None  # default: the dictionary shipped in this package
    radius_nas_ip: str = "127.0.0.1"
    # evi backend: UDP destinations for the events and their payload format.
    evi_udp: list[str] = dataclasses.field(default_factory=list)
    evi_format: str = "json"  # "json" (JSON-RPC notification) or "datagram" (OpenSIPS event_datagram)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None) -> "AccConfig":
        """Validate the [acc] table; raise ValueError naming the offending key."""
        table = dict(table or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in table:
            if key not in fields:
                raise ValueError(f"acc.{key}: unknown key (known: {', '.join(sorted(fields))})")
        cfg = cls()
        for key, value in table.items():
            default = getattr(cfg, key)
            ftype: object = fields[key].type  # a string here (postponed annotations)
            if key == "extra":
                if not isinstance(value, Mapping):
                    raise ValueError("acc.extra: expected a table {column = '$pv'}")
                value = dict(value)
            elif key == "evi_udp":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list):
                    raise ValueError("acc.evi_udp: expected a list of 'host:port'")
            elif isinstance(default, bool) or ftype in ("bool",):
                if not isinstance(value, bool):
                    raise ValueError(f"acc.{key}: expected true/false, got {value!r}")
            elif key == "nice":
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 19:
                    raise ValueError(f"acc.nice: expected an integer from 0 to 19, got {value!r}")
            elif isinstance(default, int) and not isinstance(default, bool):
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise ValueError(f"acc.{key}: expected a positive integer, got {value!r}")
            elif isinstance(default, float):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                    raise ValueError(f"acc.{key}: expected a positive number, got {value!r}")
                value = float(value)
            elif not isinstance(value, str):
                raise ValueError(f"acc.{key}: expected a string, got {value!r}")
            setattr(cfg, key, value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Cross-field checks; raise ValueError naming the key."""
        check_identifier(self.db_table_acc, "acc.db_table_acc")
        check_identifier(self.db_table_missed_calls, "acc.db_table_missed_calls")
        compile_extra(self.extra)
        if self.engine not in ("process", "inline"):
            raise ValueError("acc.engine: expected 'process' or 'inline'")
        if self.evi_format not in ("json", "datagram"):
            raise ValueError("acc.evi_format: expected 'json' or 'datagram'")
        for addr in self.evi_udp:
            _hostport(addr, "evi_udp")
        _hostport(self.radius_server, "radius_server", 1813)
        if self.radius_retries > 20:
            raise ValueError("acc.radius_retries: at most 20")
        if self.batch_max > self.queue_size:
            raise ValueError("acc.batch_max: must not exceed acc.queue_size")
        if self.log_level.upper() not in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"acc.log_level: unknown level {self.log_level!r}")

    # Derived values used by the backends.
    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(self.extra)

    @property
    def db_is_postgres(self) -> bool:
        return self.db_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        url = self.db_url
        if url.startswith("sqlite:///"):
            # sqlite:///rel/path is relative, sqlite:////abs/path absolute (SQLAlchemy convention).
            url = url[len("sqlite:///") :]
        return Path(url)

    def radius_address(self) -> tuple[str, int]:
        return _hostport(self.radius_server, "radius_server", 1813)

    def evi_addresses(self) -> list[tuple[str, int]]:
        return [_hostport(a, "evi_udp") for a in self.evi_udp]
