"""The in-memory store's rules (store.py): ordering, expiry, put/remove, replicated changes; no I/O, no sleeps."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyapp.location import Binding, Location
from proxyapp.location.backends.base import Backend

from .helpers import b, contacts

A = "sip:alice@example.com"
B = "sip:bob@example.com"
T = 1_700_000_000.0


class Recorder(Backend):
    """Records write() calls; start() returns what it was given."""

    name = "recorder"

    def __init__(self, stored: list[Binding] | None = None) -> None:
        self.writes: list[tuple[str, list[str]]] = []
        self.stored = stored or []
        self.apply = None

    async def start(self, apply, aors=None):
        self.apply = apply
        return self.stored

    def write(self, aor, bindings):
        self.writes.append((aor, contacts(bindings)))


def test_get_orders_by_q_then_most_recent_first():
    loc = Location(Recorder())
    loc.put(A, [
        b(A, "sip:low@h", T + 60, q=0.1, last_modified=T - 1),
        b(A, "sip:none-old@h", T + 60, last_modified=T - 50),  # no q counts as 1.0
        b(A, "sip:one-new@h", T + 60, q=1.0, last_modified=T - 5),
        b(A, "sip:half@h", T + 60, q=0.5, last_modified=T - 9),
        b(A, "sip:half-new@h", T + 60, q=0.5, last_modified=T - 2),
    ], T)
    assert contacts(loc.get(A, T)) == ["sip:one-new@h", "sip:none-old@h", "sip:half-new@h", "sip:half@h", "sip:low@h"]


def test_equal_keys_keep_the_registrars_order():
    loc = Location()
    loc.put(A, [b(A, f"sip:{i}@h", T + 60) for i in range(5)], T)
    assert contacts(loc.get(A, T)) == [f"sip:{i}@h" for i in range(5)]


def test_get_never_returns_an_expired_binding_and_does_not_drop_it():
    loc = Location()
    loc.put(A, [b(A, "sip:short@h", T + 10), b(A, "sip:long@h", T + 100)], T)
    assert contacts(loc.get(A, T + 9.999)) == ["sip:short@h", "sip:long@h"]
    assert contacts(loc.get(A, T + 10)) == ["sip:long@h"]  # expires == now: expired
    assert loc.get(A, T + 100) == [] and loc.get(B, T) == []
    assert loc.count() == 2  # only expire() drops
    got = loc.get(A, T)
    got.clear()  # the list is the caller's
    assert loc.count() == 2 and len(loc.get(A, T)) == 2


def test_put_replaces_filters_expired_and_empty_deletes():
    rec = Recorder()
    loc = Location(rec)
    loc.put(A, [b(A, "sip:1@h", T + 60), b(A, "sip:2@h", T + 60)], T)
    loc.put(B, [b(B, "sip:b@h", T + 60)], T)
    assert (len(loc), loc.count(), loc.aors()) == (2, 3, [A, B])
    loc.put(A, [b(A, "sip:3@h", T + 60), b(A, "sip:dead@h", T)], T)  # replaced; the dead one is not kept
    assert contacts(loc.get(A, T)) == ["sip:3@h"] and loc.count() == 2
    loc.put(A, [], T)
    assert A not in loc and (len(loc), loc.count()) == (1, 1)
    loc.put(A, [b(A, "sip:dead@h", T - 1)], T)  # only expired ones: nothing held
    assert A not in loc and loc.count() == 1
    assert rec.writes == [(A, ["sip:1@h", "sip:2@h"]), (B, ["sip:b@h"]), (A, ["sip:3@h"]), (A, []), (A, [])]


def test_put_refuses_a_binding_of_another_aor():
    loc = Location()
    with pytest.raises(ValueError, match="another AOR"):
        loc.put(A, [b(B, "sip:b@h", T + 60)], T)
    assert len(loc) == 0


def test_remove_one_contact_or_the_aor():
    rec = Recorder()
    loc = Location(rec)
    loc.put(A, [b(A, "sip:1@h", T + 60), b(A, "sip:2@h", T + 60), b(A, "sip:1@h", T + 70, instance="<urn:x>", reg_id=1)], T)
    assert loc.remove(A, "sip:1@h") == 2
    assert contacts(loc.get(A, T)) == ["sip:2@h"] and loc.count() == 1
    assert loc.remove(A, "sip:nope@h") == 0
    assert loc.remove(B) == 0
    assert loc.remove(A) == 1
    assert A not in loc and loc.count() == 0
    assert rec.writes[1:] == [(A, ["sip:2@h"]), (A, [])]  # no write when nothing was removed


def test_expire_counts_and_drops_aors_left_empty():
    loc = Location()
    loc.put(A, [b(A, "sip:a1@h", T + 10), b(A, "sip:a2@h", T + 20)], T)
    loc.put(B, [b(B, "sip:b1@h", T + 10)], T)
    assert loc.expire(T + 9) == 0
    assert loc.expire(T + 10) == 2  # expires == now counts as expired
    assert loc.aors() == [A] and loc.count() == 1
    assert loc.expire(T + 10) == 0
    assert loc.expire(T + 1000) == 1
    assert (len(loc), loc.count()) == (0, 0)


def test_a_refresh_moves_the_expiry():
    loc = Location()
    loc.put(A, [b(A, "sip:a@h", T + 10)], T)
    loc.put(A, [b(A, "sip:a@h", T + 100)], T + 5)  # re-registered
    assert loc.expire(T + 50) == 0 and contacts(loc.get(A, T + 50)) == ["sip:a@h"]
    loc.put(A, [b(A, "sip:a@h", T + 30)], T + 6)  # shortened
    assert loc.expire(T + 50) == 1 and A not in loc


def test_expiry_within_one_second_of_the_wheel():
    loc = Location()
    loc.put(A, [b(A, "sip:a@h", T + 10.75)], T)
    loc.put(B, [b(B, "sip:b@h", T + 10.25), b(B, "sip:b2@h", T + 10.5)], T)
    assert loc.expire(T + 10.1) == 0
    assert loc.expire(T + 10.25) == 1 and contacts(loc.get(B, T + 10.25)) == ["sip:b2@h"]
    assert loc.expire(T + 10.6) == 1 and B not in loc
    assert loc.expire(T + 10.74) == 0 and A in loc
    assert loc.expire(T + 11) == 1 and len(loc) == 0 and loc._wheel == {}


def test_stale_wheel_entries_go_when_their_second_comes():
    loc = Location()
    for i in range(10_000):
        loc.put(A, [b(A, "sip:a@h", T + 3600 + i)], T + i)  # each refresh moves the expiry a second
    assert sum(map(len, loc._wheel.values())) == 10_000
    assert loc.expire(T + 3600 + 9_998) == 0
    assert sum(map(len, loc._wheel.values())) == 1
    assert loc.expire(T + 3600 + 9_999) == 1 and loc._wheel == {}


def test_snapshot_is_the_persisted_form():
    loc = Location()
    loc.put(B, [b(B, "sip:b@h", T + 60, path=("<sip:edge;lr>",))], T)
    loc.put(A, [b(A, "sip:a@h", T + 60, conn=object())], T)
    snap = loc.snapshot()
    assert list(snap) == [A, B]
    assert snap[B][0]["contact"] == "sip:b@h" and snap[B][0]["path"] == ["<sip:edge;lr>"]
    assert "conn" not in snap[A][0]
    assert Binding.from_dict(snap[B][0]) == loc.get(B, T)[0]


def test_a_replicated_change_keeps_conn_of_unchanged_bindings():
    loc = Location(clock=lambda: T)
    conn1, conn2 = object(), object()
    loc.put(A, [b(A, "sip:1@h", T + 60, conn=conn1, cseq=1), b(A, "sip:2@h", T + 60, conn=conn2, cseq=1)], T)
    # Another node refreshed sip:2 (a new CSeq) and added sip:3; sip:1 is unchanged.
    remote = [Binding.from_dict(b(A, "sip:1@h", T + 60, cseq=1).to_dict()), b(A, "sip:2@h", T + 60, cseq=2), b(A, "sip:3@h", T + 60)]
    loc.apply(A, remote)
    got = {x.contact: x for x in loc.get(A, T)}
    assert got["sip:1@h"].conn is conn1
    assert got["sip:2@h"].conn is None and got["sip:2@h"].cseq == 2
    assert got["sip:3@h"].conn is None
    assert loc.count() == 3 and loc.applied == 1


def test_a_replicated_copy_of_what_we_hold_changes_nothing():
    loc = Location(clock=lambda: T)
    held = b(A, "sip:1@h", T + 60, conn=object())
    loc.put(A, [held], T)
    loc.apply(A, [Binding.from_dict(held.to_dict())])
    assert loc.get(A, T)[0] is held and loc.applied == 0


def test_a_replicated_change_drops_expired_and_empty_deletes():
    rec = Recorder()
    loc = Location(rec, clock=lambda: T)
    loc.put(A, [b(A, "sip:1@h", T + 60)], T)
    loc.apply(A, [b(A, "sip:old@h", T - 1), b(A, "sip:new@h", T + 60)])
    assert contacts(loc.get(A, T)) == ["sip:new@h"]
    loc.apply(A, [])
    assert A not in loc and loc.count() == 0
    assert rec.writes == [(A, ["sip:1@h"])]  # a change from another node is not written back


def test_start_loads_live_bindings_and_a_put_before_start_wins():
    rec = Recorder([b(A, "sip:a@h", T + 60), b(A, "sip:dead@h", T - 1), b(B, "sip:b-old@h", T + 60)])
    loc = Location(rec, clock=lambda: T, expire_interval=0)
    loc.put(B, [b(B, "sip:b-new@h", T + 60)], T)

    async def go():
        n = await loc.start()
        await loc.close()
        return n

    assert asyncio.run(go()) == 1
    assert contacts(loc.get(A, T)) == ["sip:a@h"] and contacts(loc.get(B, T)) == ["sip:b-new@h"]


def test_the_timer_expires_bindings():
    now = [T]
    loc = Location(clock=lambda: now[0], expire_interval=0.01)

    async def go():
        await loc.start()
        loc.put(A, [b(A, "sip:a@h", T + 1)], T)
        now[0] = T + 2
        for _ in range(500):
            if A not in loc:
                break
            await asyncio.sleep(0.01)
        await loc.close()

    asyncio.run(go())
    assert A not in loc


def test_shared_strings_are_stored_once():
    loc = Location()
    node, ua = "".join(["sip:10.0.0.1:", "5060"]), "".join(["Bria ", "5"])
    loc.put(A, [b(A, "sip:1@h", T + 60, node=node, user_agent=ua)], T)
    loc.put(B, [b(B, "sip:2@h", T + 60, node="".join(["sip:10.0.0.1:", "5060"]), user_agent="".join(["Bria ", "5"]))], T)
    x, y = loc.get(A, T)[0], loc.get(B, T)[0]
    assert x.node is y.node and x.user_agent is y.user_agent


# ---------------------------------------------------------------------- property test

AORS = [f"sip:u{i}@example.com" for i in range(4)]
CONTACTS = [f"sip:c{i}@192.0.2.{i}" for i in range(4)]

op = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from(AORS),
        st.lists(st.tuples(st.sampled_from(CONTACTS), st.integers(-20, 120).map(lambda n: n / 4), st.sampled_from([None, 0.0, 0.5, 1.0]), st.integers(0, 3)), max_size=4),
    ),
    st.tuples(st.just("remove"), st.sampled_from(AORS), st.one_of(st.none(), st.sampled_from(CONTACTS))),
    st.tuples(st.just("expire"), st.integers(0, 40).map(lambda n: n / 4)),
    st.tuples(st.just("tick"), st.integers(0, 40).map(lambda n: n / 4)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=40))
def test_random_sequences_match_a_simple_model(ops):
    """The store against a dict of lists with every rule spelled out the slow way."""
    loc = Location()
    model: dict[str, list[Binding]] = {}
    now = T
    for o in ops:
        if o[0] == "put":
            _, aor, specs = o
            bs = [b(aor, c, now + e, q=q, last_modified=now - age) for c, e, q, age in specs]
            loc.put(aor, bs, now)
            live = [x for x in bs if x.expires > now]
            live.sort(key=lambda x: (-x.sort_q, -x.last_modified))
            if live:
                model[aor] = live
            else:
                model.pop(aor, None)
        elif o[0] == "remove":
            _, aor, contact = o
            held = model.get(aor, [])
            keep = [] if contact is None else [x for x in held if x.contact != contact]
            assert loc.remove(aor, contact) == len(held) - len(keep)
            if keep:
                model[aor] = keep
            else:
                model.pop(aor, None)
        elif o[0] == "expire":
            now += o[1]
            dropped = 0
            for aor in list(model):
                keep = [x for x in model[aor] if x.expires > now]
                dropped += len(model[aor]) - len(keep)
                if keep:
                    model[aor] = keep
                else:
                    del model[aor]
            assert loc.expire(now) == dropped
        else:
            now += o[1]
        for aor in AORS:
            assert loc.get(aor, now) == [x for x in model.get(aor, []) if x.expires > now]
        assert sorted(loc.aors()) == sorted(model)
        assert loc.count() == sum(map(len, model.values())) and len(loc) == len(model)
