"""REGISTER processing, RFC 3261 §10.3 with Path (RFC 3327) and outbound (RFC 5626): one pure function.

``process_register`` takes the REGISTER as received, the AOR's stored bindings and the time, and
returns a ``RegisterOutcome``: the status, reason and extra response headers, and the AOR's
complete new binding list (None: leave the store as it is). No I/O, no clock, no store: the
caller reads the store, calls it, writes ``bindings`` back atomically and sends the response.

The checks, in the order applied (each failure answers at once and stores nothing, §10.3:
"processed completely or not at all"):

    only REGISTER                                    405, Allow: REGISTER (§10.3, §8.2.1)
    To, Call-ID, CSeq, Via present and well formed   400 (§8.2.2, §10.2)
    Require: tags other than path, outbound          420, Unsupported (§10.3 step 2, §8.2.2.3)
    To is a SIP/SIPS URI with a user                 400 (§10.2; OpenSIPS "No username in To URI")
    To's domain is one we serve                      404 (§10.3 step 5)
    Expires, Contact, Path, q, expires, +sip.instance, reg-id well formed       400
    Path without Supported: path, path_mode strict   421, Require: path (RFC 3327 §5.3, §21.4.15)
    no Contact: a query                              200 with the bindings (§10.3 step 6 -> 8)
    Contact: * alone and with Expires: 0             else 400 (§10.3 step 6)
    reg-id via a first hop without outbound          439, or the reg-id ignored (RFC 5626 §6)
    reg-id with several non-zero Contacts            400 (RFC 5626 §6)
    0 < expires < min_expires (and < 3600)           423, Min-Expires (§10.3 step 7)
    same Call-ID, CSeq not higher                    400 (§10.3 steps 6-7), unless a retransmission
    more bindings than max_contacts                  503 (OpenSIPS R_TOO_MANY)
    success                                          200, every binding with its expires, Date (step 8)
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import fastsip

from ..location.binding import Binding
from ._config import MAX_DELTA_SECONDS, RegistrarConfig
from ._uri import URI, aor_of, uri_equal

# Option tags this registrar implements (RFC 3261 §8.2.2.3, §19.2): Path (RFC 3327) and
# outbound (RFC 5626). A Require naming anything else gets 420.
SUPPORTED_EXTENSIONS = ("path", "outbound")
# RFC 3261 §10.3 step 7: the 423 is allowed only for requests "smaller than one hour".
ONE_HOUR = 3600
MAX_REG_ID = 2**31 - 1  # RFC 5626 §4.2: reg-id is 1 to 2**31-1

_DIGITS = re.compile(r"[0-9]+")
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


@dataclass
class RegisterOutcome:
    """What to answer and what to store."""

    status: int
    reason: str
    headers: list[tuple[str, str]]  # to add to the response, in this order
    bindings: list[Binding] | None  # the AOR's complete new binding list; None = store unchanged
    aor: str | None  # the canonical AOR, when the request got that far


class _Reject(Exception):
    """A final non-2xx answer, raised from deep inside the steps."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def _bad(what: str) -> _Reject:
    return _Reject(400, f"Bad Request - {what}")


@dataclass
class _Contact:
    """One Contact of the REGISTER, validated."""

    uri: URI
    requested: int  # the requested expiration (§10.3 step 7 first part)
    q: float | None
    instance: str | None
    reg_id: int | None  # as sent; honoured only with an instance and an outbound-capable edge


def _number(text: str, lowest: int, highest: int, what: str) -> int:
    """Decimal digits (leading zeros allowed) between ``lowest`` and ``highest``, else a 400 naming ``what``."""
    text = text.strip()
    digits = text.lstrip("0") or "0"
    if not _DIGITS.fullmatch(text) or len(digits) > len(str(highest)) or not lowest <= int(digits) <= highest:
        raise _bad(f"invalid {what}")
    return int(digits)


def _delta_seconds(text: str, what: str) -> int:
    """RFC 3261 §25.1 delta-seconds, at most 2**32-1 (§20.19); anything else is a 400 naming ``what``."""
    return _number(text, 0, MAX_DELTA_SECONDS, what)


def _option_tags(msg: fastsip.Request, name: str) -> list[str]:
    """The option tags of every ``name`` header (Require, Supported), lower case, in order."""
    tags: list[str] = []
    for value in msg.headers.getall(name):
        tags.extend(t.strip().lower() for t in value.split(",") if t.strip())
    return tags


def _expires_header(msg: fastsip.Request) -> int | None:
    values = msg.headers.getall("Expires")
    if not values:
        return None
    if len(values) > 1:
        raise _bad("invalid Expires")  # a single-value header (§20.19)
    return _delta_seconds(values[0], "Expires")


def _path(msg: fastsip.Request) -> tuple[tuple[str, ...], bool]:
    """The Path values, top first (RFC 3327 §5.3), and whether the top one carries ``ob`` (RFC 5626 §5.1)."""
    values: list[str] = []
    for header in msg.headers.getall("Path"):
        values.extend(fastsip.split_values(header))
    top_ob = False
    for i, value in enumerate(values):
        close = value.find(">")
        if not value.startswith("<") or close < 0:
            raise _bad("invalid Path")
        try:
            uri = fastsip.parse_uri(value[1:close])
        except fastsip.ParseError:
            raise _bad("invalid Path") from None
        if i == 0:
            top_ob = "ob" in uri.params
    return tuple(values), top_ob


def _contact(na: fastsip.NameAddr, expires_header: int | None, cfg: RegistrarConfig) -> _Contact:
    """One Contact's requested expiration (§10.3 step 7), q (§20.10) and RFC 5626 §4 parameters."""
    if na.uri is None:
        raise _bad("invalid Contact")
    p = na.params
    if "expires" in p:
        requested = _delta_seconds(p["expires"] or "", "expires parameter")
    elif expires_header is not None:
        requested = expires_header
    else:
        requested = cfg.default_expires
    q: float | None = None
    if "q" in p:
        raw_q = p["q"] or ""
        if not _QVALUE.fullmatch(raw_q):
            raise _bad("invalid q")
        q = float(raw_q)
    instance: str | None = None
    if "+sip.instance" in p:
        raw = (p["+sip.instance"] or "").strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        if not raw:
            raise _bad("invalid +sip.instance")
        instance = raw
    reg_id: int | None = None
    if "reg-id" in p:
        reg_id = _number(p["reg-id"] or "", 1, MAX_REG_ID, "reg-id")
    return _Contact(na.uri, requested, q, instance, reg_id)


def _ordering(b: Binding, call_id: str, cseq: int, now: float, cfg: RegistrarConfig) -> Literal["apply", "repeat", "abort"]:
    """RFC 3261 §10.3 steps 6-7: may this REGISTER change binding ``b``?

    Another Call-ID: yes. The same Call-ID: only with a higher CSeq, "otherwise, the update MUST
    be aborted and the request fails". One exception, OpenSIPS usrloc's cseq_delay: the same CSeq
    within cseq_delay of the binding's last update is this very REGISTER again (a retransmission
    whose 200 was lost, seen after the transaction ended); it changes nothing and gets the 200.
    """
    if b.call_id != call_id or cseq > b.cseq:
        return "apply"
    if cseq == b.cseq and now - b.last_modified < cfg.cseq_delay:
        return "repeat"
    return "abort"


def _remaining(b: Binding, now: float) -> int:
    # Whole seconds, never 0 for a live binding; the small allowance keeps now + N from
    # showing as N + 1 through float rounding.
    return max(1, math.ceil(b.expires - now - 1e-3))


def _qstr(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".")


def contact_header_values(bindings: list[Binding], now: float) -> list[str]:
    """The Contact values of a 200 to REGISTER (RFC 3261 §10.3 step 8), one per live binding.

    ``<uri>;expires=N`` with N the whole seconds left (at least 1), then ``;q=`` when the binding
    has one, then ``;+sip.instance="<...>"`` and ``;reg-id=N`` for a flow (RFC 5626 §6). Bindings
    already expired at ``now`` are left out.
    """
    out = []
    for b in bindings:
        if b.expires <= now:
            continue
        value = f"<{b.contact}>;expires={_remaining(b, now)}"
        if b.q is not None:
            value += f";q={_qstr(b.q)}"
        if b.instance is not None:
            value += f';+sip.instance="{b.instance}"'
            if b.reg_id is not None:
                value += f";reg-id={b.reg_id}"
        out.append(value)
    return out


def _same_binding(b: Binding, c: _Contact, reg_id: int | None) -> bool:
    """RFC 5626 §6 (updating RFC 3261 §10): with a +sip.instance the binding is the AOR and
    (instance, reg-id); the Contact URI is stored but not compared. Without one, the Contact URI
    compared by RFC 3261 §19.1.4."""
    if c.instance is not None:
        return b.instance == c.instance and b.reg_id == reg_id
    return b.instance is None and uri_equal(b.contact, c.uri)


@dataclass(frozen=True)
class _Origin:
    """Where this REGISTER came from: copied into every binding it creates or refreshes (RFC 5626 §5.2)."""

    transport: str
    host: str
    port: int
    socket: str
    node: str
    conn: object


@dataclass(frozen=True)
class _Register:
    """The REGISTER's header values the binding steps use, checked."""

    aor: str
    call_id: str
    cseq: int
    via_count: int
    supported: frozenset[str]
    user_agent: str


def process_register(
    msg: fastsip.Request,
    current: list[Binding],
    *,
    now: float,
    cfg: RegistrarConfig,
    source: tuple[str, str, int],
    socket: str,
    node: str,
    conn: object = None,
) -> RegisterOutcome:
    """Apply one REGISTER to its AOR's bindings (RFC 3261 §10.3, RFC 3327, RFC 5626).

    ``msg`` is the REGISTER as received (no Via of ours added); ``current`` the bindings stored
    for its AOR (``request_aor(msg)``), expired ones included or not; ``now`` wall-clock seconds;
    ``source`` the (transport, host, port) it came from, ``socket`` the listen socket (str of a
    Listen), ``node`` this proxyapp node, ``conn`` the edge's connection: they are copied into
    every binding this REGISTER creates or refreshes, with ``last_modified = now``.

    Returns the outcome and never raises for anything in the message: a malformed header is a
    400 outcome. ``bindings`` is None for a query and for every failure.
    """
    origin = _Origin(source[0].lower(), source[1], source[2], socket, node, conn)
    try:
        req = _check_request(msg, cfg)
    except _Reject as r:
        return RegisterOutcome(r.status, r.reason, r.headers, None, None)
    try:
        return _apply(msg, req, current, now, cfg, origin)
    except _Reject as r:
        return RegisterOutcome(r.status, r.reason, r.headers, None, req.aor)


_T = TypeVar("_T")


def _header(what: str, get: Callable[[], _T]) -> _T:
    """``get()`` of a lazily parsed header, a malformed value turned into a 400 naming it."""
    try:
        return get()
    except fastsip.ParseError:
        raise _bad(f"invalid {what}") from None


def _check_request(msg: fastsip.Request, cfg: RegistrarConfig) -> _Register:
    """§10.3 up to step 5: the method, the mandatory headers, Require, the AOR and its domain."""
    if msg.method != "REGISTER":
        raise _Reject(405, "Method Not Allowed", [("Allow", "REGISTER")])
    to = _header("To", lambda: msg.to)
    call_id = _header("Call-ID", lambda: msg.call_id)
    cseq = _header("CSeq", lambda: msg.cseq)
    vias = _header("Via", lambda: msg.via)
    if to is None or to.uri is None:
        raise _bad("missing To")
    if not call_id:
        raise _bad("missing Call-ID")
    if cseq is None:
        raise _bad("missing CSeq")
    if cseq.method != "REGISTER":
        raise _bad("CSeq method is not REGISTER")
    if not vias:
        raise _bad("missing Via")

    # Step 2 (§8.2.2.3): every Require tag must be one we implement.
    unsupported = [t for t in dict.fromkeys(_option_tags(msg, "Require")) if t not in SUPPORTED_EXTENSIONS]
    if unsupported:
        raise _Reject(420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])

    # Step 5: the AOR, canonical; its domain must be one we keep bindings for.
    if not isinstance(to.uri, fastsip.SipURI):
        raise _bad("To is not a SIP or SIPS URI")
    if not to.uri.user:
        raise _bad("no user in To URI")
    if cfg.domains and to.uri.host.lower() not in cfg.domains:
        raise _Reject(404, "Not Found")
    return _Register(
        aor=aor_of(to.uri),
        call_id=call_id,
        cseq=cseq.seq,
        via_count=len(vias),
        supported=frozenset(_option_tags(msg, "Supported")),
        user_agent=msg.headers.get("User-Agent") or "",
    )


def _apply(
    msg: fastsip.Request, req: _Register, current: list[Binding], now: float, cfg: RegistrarConfig, origin: _Origin
) -> RegisterOutcome:
    """§10.3 steps 6-8 with RFC 3327 Path and RFC 5626 flows."""
    live = [b for b in current if b.expires > now]
    expires_header = _expires_header(msg)
    contacts = _header("Contact", lambda: msg.contact)
    path, top_ob = _path(msg)
    if path and "path" not in req.supported and cfg.path_mode == "strict":
        # The registrar needs an extension the UA did not list in Supported: that is 421 with
        # Require (RFC 3261 §21.4.15), as Yxa answers; OpenSIPS's strict mode sends 420 with
        # Unsupported: path, a code meant for a Require the server does not know (§21.4.14).
        raise _Reject(421, "Extension Required", [("Require", "path")])

    if not contacts:  # a query (§10.3 step 6: "if not, it skips to the last step")
        return _ok(req.aor, live, now, None, [])

    if any(na.wildcard for na in contacts):  # §10.3 step 6
        if len(contacts) != 1:
            raise _bad("'*' Contact with other Contacts")
        if expires_header != 0:
            raise _bad("'*' Contact without Expires: 0")
        kept = []
        for b in live:
            verdict = _ordering(b, req.call_id, req.cseq, now, cfg)
            if verdict == "abort":
                raise _bad("out-of-order CSeq")
            if verdict == "repeat":
                kept.append(b)
        return _ok(req.aor, kept, now, kept, [])

    parsed = [_contact(na, expires_header, cfg) for na in contacts]

    # RFC 5626 §6: outbound processing needs the registrar to be the first hop (one Via) or the
    # top Path URI to carry "ob"; otherwise a UA asking for outbound gets 439 and any other
    # reg-id is ignored. A reg-id without +sip.instance is always ignored.
    honoured: list[int | None]
    if req.via_count > 1 and not top_ob:
        if "outbound" in req.supported and any(c.reg_id is not None for c in parsed):
            raise _Reject(439, "First Hop Lacks Outbound Support")
        honoured = [None] * len(parsed)
    else:
        honoured = [c.reg_id if c.instance is not None else None for c in parsed]
    flows = [r for r in honoured if r is not None]
    if flows and sum(1 for c in parsed if c.requested) > 1:
        # RFC 5626 §6: one REGISTER with a reg-id registers one flow (it may also remove others).
        raise _bad("reg-id with more than one Contact")

    # Step 7: the requested interval of every Contact first (a 423 skips everything after).
    for c in parsed:
        if 0 < c.requested < ONE_HOUR and c.requested < cfg.min_expires:
            raise _Reject(423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))])

    work: list[tuple[Binding, bool]] = [(b, False) for b in live]  # (binding, set by this REGISTER)
    added = False
    for c, reg_id in zip(parsed, honoured):
        granted = min(c.requested, cfg.max_expires) if cfg.max_expires else c.requested
        idx = next((i for i, (b, _) in enumerate(work) if _same_binding(b, c, reg_id)), None)
        if idx is not None and not work[idx][1]:
            # An earlier Contact of this same REGISTER is not ordered against: the last one wins.
            verdict = _ordering(work[idx][0], req.call_id, req.cseq, now, cfg)
            if verdict == "abort":
                raise _bad("out-of-order CSeq")
            if verdict == "repeat":
                continue
        if granted == 0:
            if idx is not None:
                del work[idx]
            continue
        new = Binding(
            aor=req.aor, contact=str(c.uri), expires=now + granted, q=c.q, call_id=req.call_id,
            cseq=req.cseq, instance=c.instance, reg_id=reg_id, path=path,
            source_transport=origin.transport, source_host=origin.host, source_port=origin.port,
            socket=origin.socket, node=origin.node, user_agent=req.user_agent, last_modified=now,
            conn=origin.conn,
        )
        if idx is None:
            work.append((new, True))
            added = True
        else:
            work[idx] = (new, True)

    result = [b for b, _ in work]
    if cfg.max_contacts and added and len(result) > cfg.max_contacts:
        raise _Reject(503, "Service Unavailable - too many registered contacts")

    extra: list[tuple[str, str]] = []
    if path and cfg.path_mode != "off" and "path" in req.supported:
        extra += [("Path", value) for value in path]  # RFC 3327 §5.3: echoed to a UA that supports it
    if flows:
        extra.append(("Require", "outbound"))  # RFC 5626 §6: only when a reg-id was honoured
    return _ok(req.aor, result, now, result, extra)


def _ok(
    aor: str, shown: list[Binding], now: float, store: list[Binding] | None, extra: list[tuple[str, str]]
) -> RegisterOutcome:
    """§10.3 step 8: 200 listing every current binding with its expires, and a Date (a SHOULD)."""
    headers = [("Contact", v) for v in contact_header_values(shown, now)]
    headers += extra
    headers.append(("Date", email.utils.formatdate(now, usegmt=True)))
    return RegisterOutcome(200, "OK", headers, store, aor)
