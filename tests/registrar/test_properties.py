"""Property tests: random REGISTER sequences against a small reference model, and arbitrary header text.

The model is RFC 3261 §10.3 written as plainly as possible over a dict keyed by the Contact's
identity; the pool of Contacts spells each one several ways that §19.1.4 calls equal, so the
registrar's URI comparison is exercised too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import fastsip
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxyapp.location.binding import Binding
from proxyapp.registrar import RegistrarConfig

from .support import NOW, register_bytes, run

# Each Contact identity, spelled several §19.1.4-equal ways.
POOL = [
    ["sip:alice@192.0.2.1", "sip:%61lice@192.0.2.1", "sip:alice@192.0.2.1;lr"],
    ["sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.1:5060;foo=bar"],
    ["sip:alice@host.example.com;transport=tcp", "sip:alice@HOST.example.com;Transport=TCP"],
    ["sips:alice@192.0.2.1"],
    ["sip:bob@192.0.2.1"],
]
SPELLING = {text: key for key, spellings in enumerate(POOL) for text in spellings}
EXPIRES = [0, 30, 60, 61, 600, 3599, 3600, 7200]
MIN, MAX, DEFAULT, DELAY = 60, 3600, 1800, 20.0


@dataclass
class Req:
    call_id: str
    cseq: int
    contacts: list[tuple[int, int, int | None]]  # (identity, spelling, expires param)
    header: int | None  # Expires header
    star: bool
    advance: float  # seconds since the previous REGISTER


@dataclass
class Entry:
    call_id: str
    cseq: int
    expires: float
    modified: float


requests = st.builds(
    Req,
    call_id=st.sampled_from(["a", "b"]),
    cseq=st.integers(1, 5),
    contacts=st.lists(
        st.tuples(st.integers(0, len(POOL) - 1), st.integers(0, 2), st.none() | st.sampled_from(EXPIRES)), max_size=3
    ),
    header=st.none() | st.sampled_from(EXPIRES),
    star=st.booleans(),
    advance=st.sampled_from([0, 0.5, 5, 19.75, 30, 600, 1799.5, 4000]),
)


def model(state: dict[int, Entry], r: Req, now: float, max_contacts: int) -> tuple[int, dict[int, Entry]]:
    """RFC 3261 §10.3 steps 6-7 plainly: (status, the new state). Nothing changes unless 200."""
    live = {k: e for k, e in state.items() if e.expires > now}

    def order(e: Entry) -> str:
        if e.call_id != r.call_id or r.cseq > e.cseq:
            return "apply"
        return "repeat" if r.cseq == e.cseq and now - e.modified < DELAY else "abort"

    if r.star:
        if r.contacts or r.header != 0:
            return 400, state
        verdicts = {k: order(e) for k, e in live.items()}
        if "abort" in verdicts.values():
            return 400, state
        return 200, {k: e for k, e in live.items() if verdicts[k] == "repeat"}
    if not r.contacts:
        return 200, state
    wanted = [(k, p if p is not None else r.header if r.header is not None else DEFAULT) for k, _, p in r.contacts]
    if any(0 < e < min(MIN, 3600) for _, e in wanted):
        return 423, state
    new = dict(live)
    mine: set[int] = set()
    added = False
    for k, requested in wanted:
        if k in new and k not in mine:
            verdict = order(new[k])
            if verdict == "abort":
                return 400, state
            if verdict == "repeat":
                continue
        if requested == 0:
            new.pop(k, None)
            mine.discard(k)
            continue
        added |= k not in new
        new[k] = Entry(r.call_id, r.cseq, now + min(requested, MAX), now)
        mine.add(k)
    if max_contacts and added and len(new) > max_contacts:
        return 503, state
    return 200, new


def as_message(r: Req) -> fastsip.Request:
    contacts = ["*"] if r.star else []
    for k, spelling, param in r.contacts:
        text = POOL[k][spelling % len(POOL[k])]
        contacts.append(f"<{text}>" + (f";expires={param}" if param is not None else ""))
    raw = register_bytes(contacts, call_id=r.call_id, cseq=r.cseq,
                         expires=None if r.header is None else str(r.header))
    msg = fastsip.parse(raw)
    assert isinstance(msg, fastsip.Request)
    return msg


CONTACT_VALUE = re.compile(r"<([^>]*)>;expires=([0-9]+)")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=12), st.sampled_from([0, 2]))
def test_register_sequences_match_the_reference_model(reqs, max_contacts):
    cfg = RegistrarConfig(min_expires=MIN, max_expires=MAX, default_expires=DEFAULT, cseq_delay=DELAY,
                          max_contacts=max_contacts)
    stored: list[Binding] = []
    state: dict[int, Entry] = {}
    now = NOW
    for r in reqs:
        now += r.advance
        out = run(as_message(r), stored, now=now, cfg=cfg)
        status, state = model(state, r, now, max_contacts)
        event(f"status {status}")
        assert out.status == status, (r, out)
        if out.bindings is not None:
            stored = out.bindings
        live = {SPELLING[b.contact]: b for b in stored if b.expires > now}
        assert len(live) == len([b for b in stored if b.expires > now])  # one binding per identity
        assert {k: (b.call_id, b.cseq, b.expires, b.last_modified) for k, b in live.items()} == {
            k: (e.call_id, e.cseq, e.expires, e.modified) for k, e in state.items() if e.expires > now
        }
        if status == 200:
            # §10.3 step 8: the 200 lists exactly the current bindings, each with 0 < expires <= max.
            shown = [CONTACT_VALUE.fullmatch(v) for n, v in out.headers if n == "Contact"]
            assert all(m is not None for m in shown)
            assert sorted(SPELLING[m.group(1)] for m in shown if m) == sorted(live)
            assert all(0 < int(m.group(2)) <= MAX for m in shown if m)
            assert out.headers[-1][0] == "Date"
        else:
            assert out.bindings is None


# ---------------------------------------------------------------------------------------------
# Arbitrary header text: always an outcome, never an exception
# ---------------------------------------------------------------------------------------------

SIPPY = st.text(alphabet=st.sampled_from(list('<>;=,:@"*. \tsipSIP0123456789abxyz-_%+!~()/?&$[]\\')), max_size=40)
SAMPLES = st.sampled_from([
    "<sip:alice@192.0.2.1>", "*", "<sip:alice@192.0.2.1>;expires=abc", "<sip:a@b>;q=7",
    '<sip:a@b>;+sip.instance="<urn:uuid:1>";reg-id=1', "<sip:a@b>;reg-id=99999999999", "<tel:+1>",
    "<sip:a@b>;expires=99999999999999999999999", "sip:a@b;expires=60", '"x" <sip:a@b>;expires=0',
])
VALUES = SIPPY | SAMPLES


VALID = {
    "to": st.sampled_from(["<sip:alice@example.com>", "Alice <sip:alice@example.com;user=phone>"]),
    "contacts": st.lists(SAMPLES, max_size=2),
    "expires": st.none() | st.sampled_from(["0", "60", "3600", "86400"]),
    "cseq": st.sampled_from(["1", "2", "7"]),
    "path": st.just([]) | st.just(["<sip:p1.example.net;lr;ob>"]),
    "supported": st.none() | st.sampled_from(["path", "outbound", "path, outbound"]),
    "require": st.none() | st.sampled_from(["path", "outbound"]),
}
NOISY = {
    "to": VALUES, "contacts": st.lists(VALUES, max_size=3), "expires": VALUES, "cseq": SIPPY,
    "path": st.lists(VALUES, max_size=2), "supported": SIPPY, "require": SIPPY,
}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    noisy=st.sets(st.sampled_from(sorted(NOISY)), max_size=2),
    vias=st.integers(1, 2),
    current=st.lists(st.sampled_from(["sip:alice@192.0.2.1", "sip:a@b", "garbage<"]), max_size=2),
)
def test_any_header_text_gives_an_outcome(data, noisy, vias, current):
    # Every field well formed but one or two, which get arbitrary SIP-ish text.
    f = {name: data.draw(NOISY[name] if name in noisy else VALID[name], label=name) for name in sorted(VALID)}
    raw = register_bytes(f["contacts"], to=f["to"], cseq=f["cseq"], expires=f["expires"], path=f["path"],
                         supported=f["supported"], require=f["require"], vias=vias)
    try:
        msg = fastsip.parse(raw)
    except fastsip.ParseError:
        event("refused by the parser")
        return  # refused by the parser before the registrar sees it
    stored = [Binding(aor="sip:alice@example.com", contact=c, expires=NOW + 100, call_id="x", cseq=1) for c in current]
    out = run(msg, stored, cfg=RegistrarConfig())
    event(f"{out.status} {out.reason}")
    assert out.status in (200, 400, 404, 405, 420, 421, 423, 439, 503)
    if out.status != 200:
        assert out.bindings is None
    else:
        assert out.aor is not None
        shown = [v for n, v in out.headers if n == "Contact"]
        listed = out.bindings if out.bindings is not None else [b for b in stored if b.expires > NOW]
        assert len(shown) == len(listed)
        for v in shown:
            m = re.search(r";expires=([0-9]+)", v)
            assert m and 0 < int(m.group(1)) <= 3600
        if out.bindings is not None:
            assert all(b.aor == out.aor for b in out.bindings if b.last_modified == NOW)  # the ones it wrote


BASE = register_bytes(
    ['<sip:alice@192.0.2.1>;expires=0;q=0.5', '<sip:alice@192.0.2.2>;+sip.instance="<urn:uuid:1>";reg-id=1'],
    expires="3600", path=["<sip:p1.example.net;lr;ob>"], supported="path, outbound", vias=2,
)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, len(BASE) - 1), length=st.integers(0, 12),
       junk=st.binary(max_size=12) | st.text(alphabet='<>;=,:@" *\t%', max_size=6).map(str.encode))
def test_a_mutated_register_gives_an_outcome(start, length, junk):
    raw = BASE[:start] + junk + BASE[start + length:]
    try:
        msg = fastsip.parse(raw)
    except fastsip.ParseError:
        return
    if not isinstance(msg, fastsip.Request):
        return
    out = run(msg, [], cfg=RegistrarConfig())
    event(f"{out.status} {out.reason}")
    assert out.status in (200, 400, 404, 405, 420, 421, 423, 439, 503)
    if out.status != 200:
        assert out.bindings is None
