"""Accounting records: the one row shape every backend writes, and how it is built from SIP messages.

OpenSIPS acc semantics (modules/acc, "fixed minimal accounting information"): method, from_tag,
to_tag, callid, sip_code, sip_reason, time.  CDRs (the `cdr` flag) add duration, ms_duration,
setuptime and created.  Unlike OpenSIPS, which keeps whole seconds, every time here is in
milliseconds: `time` and `created` are Unix epoch milliseconds, `setuptime` and `ms_duration` are
milliseconds; `duration` stays whole seconds (floor of ms_duration) only because OpenSIPS readers
expect it.  Every record kind has the same columns, None (SQL NULL) where a field does not apply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from typing import Any, Callable, Mapping

from loguru import logger

# Record kinds.  The kind decides the log prefix, the evi event and the default DB table.
KIND_ACC = "acc"  # a transaction accounted on its final reply
KIND_MISSED = "missed"  # a failed INVITE with the `missed` flag
KIND_CDR = "cdr"  # a whole dialog, written when its BYE is answered (or on lifetime expiry)
KIND_REQUEST = "request"  # one-shot acc_log_request / acc_db_request
KINDS = (KIND_ACC, KIND_MISSED, KIND_CDR, KIND_REQUEST)

# CDR end reasons (column end_reason); None for every other kind.
END_BYE = "bye"
END_LIFETIME = "lifetime"

# The fixed columns, in the order the schema and the log lines use (OpenSIPS column names).
CORE_COLUMNS = (
    "method",
    "from_tag",
    "to_tag",
    "callid",
    "sip_code",
    "sip_reason",
    "time",
    "duration",
    "ms_duration",
    "setuptime",
    "created",
)

# Default extra columns: what operators bill and debug with (source IP, parties, user agent).
# Values use the OpenSIPS pseudo-variable names so a config reads like an OpenSIPS `extra` list.
DEFAULT_EXTRA: dict[str, str] = {
    "src_ip": "$si",
    "src_port": "$sp",
    "from_user": "$fU",
    "from_host": "$fd",
    "to_user": "$tU",
    "to_host": "$td",
    "ruri_user": "$rU",
    "ruri_host": "$rd",
    "user_agent": "$hdr(User-Agent)",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_HDR = re.compile(r"^\$hdr\(([A-Za-z0-9!%*_+`'~.-]+)\)$")


def check_identifier(name: str, what: str) -> str:
    """Return `name` if it is safe as an SQL identifier (table or column); raise ValueError otherwise."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{what}: {name!r} is not a valid identifier (letters, digits, _; max 63)")
    return name


# new_record_id: 80 bits drawn once per process (again in a forked child), then counted up.  A
# getrandom() per record cost a system call on the event loop, and one that releases the GIL, so
# a busy writer thread could take it over right there.
_ID_MASK = (1 << 80) - 1
_id_state = [int.from_bytes(os.urandom(10), "big"), 0]


def _reseed_ids() -> None:
    _id_state[0] = int.from_bytes(os.urandom(10), "big")
    _id_state[1] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_record_id() -> str:
    """A globally unique, roughly time-ordered record id (the exactly-once dedup key of every backend):
    48 bits of epoch milliseconds then 80 bits (a random per-process start plus a counter), as 32
    hex digits (the layout of a UUIDv7)."""
    st = _id_state
    st[1] += 1
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{(st[0] + st[1]) & _ID_MASK:020x}"


def uuid5_hex(namespace: bytes, name: str) -> str:
    """uuid.uuid5(UUID(bytes=namespace), name).hex, without building two UUID objects (RFC 4122
    §4.3: SHA-1 of namespace + name, version 5, variant 10xx)."""
    h = bytearray(hashlib.sha1(namespace + name.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    return h.hex()


def ms(ts: float | None) -> int | None:
    """Seconds (float) -> integer milliseconds; None stays None."""
    return None if ts is None else int(round(ts * 1000))


@dataclasses.dataclass(slots=True)
class AccRecord:
    """One accounting record.  Serialisable to a JSON line for the spool (to_json / from_json)."""

    kind: str
    types: tuple[str, ...]  # backends this record goes to: log, db, aaa, evi
    table: str | None  # DB table; None means the kind's default table
    method: str | None
    from_tag: str | None
    to_tag: str | None
    callid: str | None
    sip_code: int | None
    sip_reason: str | None
    time: int  # epoch ms: completion time (acc/missed/request), answer time (cdr)
    duration: int | None = None  # whole seconds (cdr only)
    ms_duration: int | None = None  # ms (cdr only)
    setuptime: int | None = None  # ms from INVITE arrival to answer (cdr only)
    created: int | None = None  # epoch ms of the INVITE arrival (cdr only)
    end_reason: str | None = None  # cdr only: "bye" or "lifetime"
    extra: dict[str, str | None] = dataclasses.field(default_factory=dict)
    record_id: str = ""  # empty: a fresh new_record_id()

    def __post_init__(self) -> None:
        if not self.record_id:
            self.record_id = new_record_id()

    def columns(self, extra_names: tuple[str, ...]) -> dict[str, Any]:
        """All column values for a row: record_id, the core columns, end_reason, then the extras."""
        return dict(zip(("record_id", *CORE_COLUMNS, "end_reason", *extra_names), self.row(extra_names)))

    def row(self, extra_names: tuple[str, ...]) -> tuple[Any, ...]:
        """The column values in schema order (what the db backends insert; columns() names them)."""
        return (
            self.record_id, self.method, self.from_tag, self.to_tag, self.callid, self.sip_code,
            self.sip_reason, self.time, self.duration, self.ms_duration, self.setuptime, self.created,
            self.end_reason, *map(self.extra.get, extra_names),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str | bytes) -> "AccRecord":
        d = json.loads(line)
        d["types"] = tuple(d["types"])
        return cls(**d)


# --- Extracting fields from fastsip messages -------------------------------------------------
# Requests are fastsip.Request objects (docs/fastsip-api.md); only attribute access is used, so
# any object with the same attributes works (the unit tests use small stand-ins).


def _tag(nameaddr: Any) -> str | None:
    return getattr(nameaddr, "tag", None) if nameaddr is not None else None


def _safe(fn: Callable[[], Any]) -> Any:
    # fastsip parses lazily and raises ParseError (a ValueError) on a malformed header at access
    # time (docs/fastsip-api.md); accounting must record what it can instead of failing.  Any
    # other exception is a parser bug: still record the rest, but say so.
    try:
        return fn()
    except ValueError:
        return None
    except Exception:
        logger.opt(exception=True).warning("acc: unexpected error reading a SIP field (parser bug?)")
        return None


# Pseudo-variable -> (expression, the locals it needs) for the generated extractor below.  The
# locals are read once per record whatever the number of columns using them.
_PV_EXPR: dict[str, tuple[str, tuple[str, ...]]] = {
    "$si": ("(src[0] if src else None)", ()),
    "$sp": ("(str(src[1]) if src else None)", ()),
    "$fu": ("(None if fu is None else str(fu))", ("f", "fu")),
    "$fU": ("(None if fu is None else fu.user)", ("f", "fu")),
    "$fd": ("(None if fu is None else fu.host)", ("f", "fu")),
    "$tu": ("(None if tu is None else str(tu))", ("t", "tu")),
    "$tU": ("(None if tu is None else tu.user)", ("t", "tu")),
    "$td": ("(None if tu is None else tu.host)", ("t", "tu")),
    "$ru": ("(None if ru is None else str(ru))", ("ru",)),
    "$rU": ("(None if ru is None else ru.user)", ("ru",)),
    "$rd": ("(None if ru is None else ru.host)", ("ru",)),
    "$ci": ("req.call_id", ()),
    "$ua": ("req.header('User-Agent')", ()),
}
_PV_LOCALS = (
    ("f", "f = req.from_"),
    ("fu", "fu = None if f is None else f.uri"),
    ("t", "t = req.to"),
    ("tu", "tu = None if t is None else t.uri"),
    ("ru", "ru = req.uri"),
)


def _expression(pv: str) -> tuple[str, tuple[str, ...]]:
    """(Python expression, locals it needs) of one pseudo-variable; KeyError for an unknown one."""
    m = _HDR.match(pv)
    if m:
        return f"req.header({m.group(1)!r})", ()  # fastsip: no headers view built for one value
    return _PV_EXPR[pv]


def _compile_columns(spec: Mapping[str, str], name: str) -> Callable[[Any, tuple[str, int] | None], dict[str, Any]]:
    """One generated function `(req, src) -> {column: value}` for a spec whose names are already
    validated (identifiers, header tokens): each local it needs is read once for all columns."""
    need: set[str] = set()
    items = []
    for col, pv in spec.items():
        expr, deps = _expression(pv.strip())
        need.update(deps)
        items.append(f"        {col!r}: {expr},")
    lines = ["def extract(req, src):"]
    lines += [f"    {stmt}" for local, stmt in _PV_LOCALS if local in need]
    lines += ["    return {", *items, "    }"]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", name, "exec"), {"str": str}, namespace)
    fn: Callable[[Any, tuple[str, int] | None], dict[str, Any]] = namespace["extract"]
    return fn


class ExtraFields:
    """The configured extra columns as one callable: request, source address -> {column: value}.

    The fast path is one function generated for the configuration (as dataclasses and namedtuple
    generate theirs): each header is read once, every column in one expression, no call per
    column.  A column that raises -- fastsip rejects a malformed header lazily, when it is read --
    sends the request to the guarded per-column getters (compile_extra: the same expressions, one
    column each), which give None for that column and keep the others.
    """

    __slots__ = ("_fast", "_guarded")

    def __init__(self, spec: Mapping[str, str]) -> None:
        self._guarded = compile_extra(spec)  # validates every column and pseudo-variable
        self._fast = _compile_columns(spec, "<acc extra columns>")

    def __call__(self, req: Any, src: tuple[str, int] | None) -> dict[str, str | None]:
        try:
            return self._fast(req, src)
        except Exception:
            return {col: get(req, src) for col, get in self._guarded.items()}


def compile_extra(spec: Mapping[str, str]) -> dict[str, Callable[[Any, tuple[str, int] | None], str | None]]:
    """Compile {column: pseudo-variable} into {column: getter(request, source_addr)}.

    Supported (OpenSIPS names): $si $sp (source IP/port), $fu $fU $fd (From URI/user/host),
    $tu $tU $td (To), $ru $rU $rd (Request-URI), $ci (Call-ID), $ua (User-Agent),
    $hdr(Name) (first value of any header).  Raises ValueError naming the bad column or value.
    """
    out: dict[str, Callable[[Any, tuple[str, int] | None], str | None]] = {}
    for col, pv in spec.items():
        check_identifier(col, f"acc.extra column {col!r}")
        if col in CORE_COLUMNS or col in ("record_id", "end_reason", "id"):
            raise ValueError(f"acc.extra: column {col!r} clashes with a fixed column")
        if not isinstance(pv, str):
            raise ValueError(f"acc.extra.{col}: value must be a string like '$si' or '$hdr(User-Agent)'")
        try:
            one = _compile_columns({col: pv}, f"<acc extra column {col}>")
        except KeyError:
            raise ValueError(f"acc.extra.{col}: unsupported pseudo-variable {pv.strip()!r}") from None
        out[col] = _guard(one, col)
    return out


def _guard(fn: Callable[[Any, tuple[str, int] | None], dict[str, Any]], col: str) -> Callable[[Any, tuple[str, int] | None], str | None]:
    def get(req: Any, src: tuple[str, int] | None) -> str | None:
        # fastsip parses lazily and raises ParseError (a ValueError) on a malformed header at
        # access time (docs/fastsip-api.md): record the rest instead of failing.
        try:
            v = fn(req, src)[col]
        except ValueError:
            return None
        except Exception:
            logger.opt(exception=True).warning("acc: unexpected error reading a SIP field (parser bug?)")
            return None
        return None if v is None else str(v)

    return get


def request_fields(request: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(method, from_tag, to_tag, callid) of a request; None for anything unparsable."""
    try:  # the common case in one go; any trouble takes the field-by-field path
        f = request.from_
        t = request.to
        return (request.method, None if f is None else f.tag, None if t is None else t.tag, request.call_id)
    except Exception:
        pass
    return (
        getattr(request, "method", None),
        _safe(lambda: _tag(request.from_)),
        _safe(lambda: _tag(request.to)),
        _safe(lambda: request.call_id),
    )


def split_comment(comment: str) -> tuple[int | None, str]:
    """acc_*_request comment -> (sip_code, sip_reason): "403 Forbidden" -> (403, "Forbidden").

    OpenSIPS acc_comm: a leading 3-digit code becomes the code, the rest the reason; a comment
    without one is all reason.
    """
    m = re.match(r"^([1-6][0-9][0-9])(?:\s+(.*))?$", comment.strip(), re.S)
    if m:
        return int(m.group(1)), (m.group(2) or "")
    return None, comment
