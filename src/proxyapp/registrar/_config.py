"""The registrar's settings: the [registrar] table of the TOML file, validated (names as OpenSIPS registrar's)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..config import ConfigError

PATH_MODES = ("off", "lazy", "strict")
# RFC 3261 §20.19 / §25.1: delta-seconds is at most 2**32-1 (the largest Expires we accept).
MAX_DELTA_SECONDS = 2**32 - 1


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """How the registrar answers a REGISTER (RFC 3261 §10.3)."""

    # The domains this registrar keeps bindings for, lower case (§10.3: "a registrar has to know
    # the set of domain(s)"); an AOR elsewhere gets 404 (step 5). Empty: any domain.
    domains: tuple[str, ...] = ()
    # §10.3 step 7: 0 < requested < min_expires (and < 3600) -> 423 with Min-Expires. 0: no minimum.
    min_expires: int = 60
    # §10.3 step 7 "MAY choose an expiration less than the requested": longer requests are
    # shortened to this. 0: no maximum (as OpenSIPS max_expires = 0).
    max_expires: int = 3600
    # §10.3 step 7: neither a Contact expires param nor an Expires header.
    default_expires: int = 3600
    # Bindings per AOR, 0 = unlimited (OpenSIPS max_contacts): a REGISTER that would add one past
    # it gets 503, the code OpenSIPS answers (lib/reg/rerrno.c: R_TOO_MANY -> 503).
    max_contacts: int = 0
    # OpenSIPS usrloc cseq_delay: a REGISTER with the Call-ID and CSeq a binding already holds,
    # within this many seconds of that binding's last update, is a retransmission (its 200 was
    # lost) and is answered 200 without a change; later, or with a lower CSeq, it is out of
    # order and fails (§10.3 step 7). 0: every repeat fails, as the RFC text reads.
    cseq_delay: float = 20.0
    # RFC 3327 Path in the 200, as OpenSIPS save() flags p0/p1/p2: "off" stores Path and never
    # echoes it; "lazy" echoes it when the UA sent Supported: path; "strict" also rejects a
    # REGISTER with Path but without Supported: path (421 Extension Required, Require: path).
    path_mode: str = "lazy"

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> "RegistrarConfig":
        """Validate a parsed [registrar] TOML table; raises ConfigError (a ValueError) naming the key."""
        if not isinstance(table, dict):
            raise ConfigError("registrar", "expected a table")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            name = f"registrar.{key}"
            if key not in known:
                raise ConfigError(name, f"unknown key (known: {', '.join(sorted(known))})")
            if key == "domains":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(d, str) and d.strip() for d in value):
                    raise ConfigError(name, "expected a list of domain names")
                values[key] = tuple(dict.fromkeys(d.strip().lower() for d in value))
            elif key == "path_mode":
                if value not in PATH_MODES:
                    raise ConfigError(name, f"expected one of {', '.join(PATH_MODES)}, got {value!r}")
                values[key] = value
            elif key == "cseq_delay":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                    raise ConfigError(name, f"expected a number of seconds between 0 and 3600, got {value!r}")
                values[key] = float(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELTA_SECONDS:
                    raise ConfigError(name, f"expected a whole number between 0 and {MAX_DELTA_SECONDS}, got {value!r}")
                values[key] = value
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ConfigError when the values contradict each other."""
        if self.default_expires <= 0:
            raise ConfigError("registrar.default_expires", "must be positive")
        if self.max_expires and self.min_expires > self.max_expires:
            raise ConfigError("registrar.min_expires", f"{self.min_expires} is above max_expires {self.max_expires}")
        if self.default_expires < min(self.min_expires, 3600):
            # A REGISTER that asks for nothing would get 423 for the registrar's own default.
            raise ConfigError("registrar.default_expires", f"{self.default_expires} is below min_expires {self.min_expires}")
