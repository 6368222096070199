"""Property tests of the sans-IO dialog tracker: retransmissions, duplicates and either-side BYEs
never produce a duplicate or a wrong CDR, whatever the interleaving of calls."""

from hypothesis import given, settings
from hypothesis import strategies as st

from proxyapp.acc.dialog import DialogTracker


@st.composite
def scenario(draw):
    calls = draw(st.integers(1, 6))
    per_call = []
    for c in range(calls):
        answered = draw(st.booleans())
        ev = [("arr", c)] * draw(st.integers(1, 3))
        if answered:
            ev += [("2xx", c)] * draw(st.integers(1, 3))
            ev += [("done200", c)]
            ev += [("reinv", c)] * draw(st.integers(0, 2))
            ev += [("bye", c, draw(st.booleans()))] * draw(st.integers(0, 3))
            ev += [("byedone", c, draw(st.booleans()))] * draw(st.integers(0, 3))
        else:
            ev += [("done486", c)]
            ev += [("byedone", c, False)] * draw(st.integers(0, 1))
        per_call.append(ev)
    # interleave the calls, keeping each call's own order
    order = []
    queues = [list(e) for e in per_call]
    while any(queues):
        i = draw(st.sampled_from([k for k, q in enumerate(queues) if q]))
        order.append(queues[i].pop(0))
    return calls, order


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_at_most_one_cdr_per_dialog_with_first_times(sc):
    calls, events = sc
    tr = DialogTracker(lifetime_s=1e9)
    t = 0.0
    first = {}
    cdrs = []
    for e in events:
        t += 1.0
        kind, c = e[0], e[1]
        cid = f"call-{c}"
        if kind == "arr":
            tr.invite_arrived(cid, "A", t)
            first.setdefault((c, "arr"), t)
        elif kind == "2xx":
            tr.invite_answered(cid, "A", t)
            first.setdefault((c, "2xx"), t)
        elif kind == "done200":
            tr.invite_completed(cid, "A", "B", 200, "OK", t, True, ("db",), None, {})
        elif kind == "done486":
            assert tr.invite_completed(cid, "A", "B", 486, "Busy", t, True, ("db",), None, {}) is None
        elif kind == "reinv":
            tr.in_dialog_request("INVITE", cid, "A", "B", t)
        elif kind == "bye":
            a, b = ("B", "A") if e[2] else ("A", "B")
            if tr.find(cid, a, b) is not None:  # a BYE for an open dialog: its first arrival counts
                first.setdefault((c, "bye"), t)
            tr.in_dialog_request("BYE", cid, a, b, t)
        elif kind == "byedone":
            a, b = ("B", "A") if e[2] else ("A", "B")
            d = tr.bye_completed(cid, a, b, t)
            if d is not None:
                cdrs.append((c, d, t))
    ended = [c for c, _, _ in cdrs]
    assert len(ended) == len(set(ended))  # never twice
    for c, d, t_done in cdrs:
        assert d.created == first[(c, "arr")]
        assert d.answered == first.get((c, "2xx"), d.answered)
        assert d.ended == first.get((c, "bye"), t_done)
        assert d.end_reason == "bye" and (d.caller_tag, d.callee_tag) == ("A", "B")
    # what was not ended is still open, and only answered calls ever opened
    assert len(tr) + len(cdrs) == len({e[1] for e in events if e[0] == "done200"})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["open", "touch", "bye", "expire"]), st.integers(0, 7),
                          st.floats(0.0, 45.0)), max_size=60))
def test_expire_ends_what_a_full_scan_would_end(ops):
    """The deadline wheel gives, at every expire(now), exactly the dialogs a scan of all open
    dialogs would end (BYE grace first, then lifetime), with the same end times and reasons."""
    lifetime, grace = 60.0, 32.0
    tr = DialogTracker(lifetime_s=lifetime, bye_grace_s=grace)
    model: dict[str, dict] = {}
    opened: list[str] = []
    t = 1000.0
    for op, c, dt in ops:
        t += dt
        cid = f"call-{len(opened)}" if op == "open" else f"call-{c % max(1, len(opened))}"
        if op == "open":
            opened.append(cid)
            tr.invite_arrived(cid, "A", t)
            assert tr.invite_completed(cid, "A", "B", 200, "OK", t, True, ("db",), None, {}) is not None
            model[cid] = {"last": t, "bye": None}
        elif op == "touch" and cid in model:
            tr.in_dialog_request("INVITE", cid, "B", "A", t)
            model[cid]["last"] = max(model[cid]["last"], t)
        elif op == "bye" and cid in model:
            tr.in_dialog_request("BYE", cid, "A", "B", t)
            if model[cid]["bye"] is None:
                model[cid]["bye"] = t
        elif op == "expire":
            want = set()
            for k, m in list(model.items()):
                if m["bye"] is not None and t >= m["bye"] + grace:
                    want.add((k, "bye", m["bye"]))
                elif t >= m["last"] + lifetime:
                    want.add((k, "lifetime", m["last"] + lifetime))
                else:
                    continue
                del model[k]
            assert {(d.callid, d.end_reason, d.ended) for d in tr.expire(t)} == want
    assert len(tr) == len(model)
    tr.expire(t + lifetime + grace + 1)
    assert len(tr) == 0 and tr._wheel == {} and tr._slots == []  # nothing left filed


def test_expire_reads_only_the_due_slots():
    """100,000 open dialogs, none due: expire() files and ends nothing (it used to visit all)."""
    tr = DialogTracker(lifetime_s=3600.0)
    for i in range(100_000):
        tr.invite_completed(f"c{i}", "A", "B", 200, "OK", 1000.0 + i / 1000, True, ("db",), None, {})
    visited = []
    arm, end = tr._arm, tr._end
    tr._arm = lambda d: (visited.append(d), arm(d))[1]
    tr._end = lambda *a: (visited.append(a[0]), end(*a))[1]
    assert tr.expire(1000.0 + 3599.0) == [] and visited == []
    # due: the 50,001 deadlines up to now; read besides: the 999 later in the current 1 s slot
    assert len(tr.expire(1000.0 + 3600.0 + 50.0)) == 50_001 and len(visited) == 50_001 + 999
