"""Dialog tracking for CDRs: a sans-IO state machine fed with SIP events and timestamps.

Design (OpenSIPS acc `cdr` flag on top of its dialog module):
- An initial INVITE (no To tag) marked with `cdr` creates a dialog when its transaction completes
  with a 2xx (RFC 3261 §12.1: the 2xx establishes the dialog; its To tag is the remote tag).
  `created` is the first arrival of the INVITE, `answered` the first 2xx forwarded upstream.
- Requests inside the dialog are matched by Call-ID and the tag pair in either order, so a BYE
  from the caller or from the callee both end it.  Re-INVITEs (and any other in-dialog request)
  only refresh the dialog's activity (its lifetime clock).
- The CDR is produced when the BYE transaction gets its final reply ("store the CDR as soon as the
  BYE request is replied to"); the call's end is the BYE's first arrival.  Any final reply ends
  the dialog: per RFC 3261 §15.1.2 the UAC considers the session over as soon as it sends BYE.
- A dialog whose BYE never comes (a UA that died) ends `lifetime` seconds after its last activity
  and still yields a CDR with end_reason "lifetime".
- Those deadlines sit on a wheel of 1 s slots, so the once-a-second expire() looks only at the
  dialogs due now, not at every open one: a scan of 100,000 open dialogs held the event loop for
  8 ms every second. A refreshed dialog is not moved when it is refreshed (an ACK costs nothing
  here); expire() finds its deadline later and moves it then.
- Retransmissions never yield duplicates: the first arrival/answer/BYE times win, and an ended
  dialog leaves a tombstone so a late or duplicated BYE completion finds nothing to end.
No sockets, no clock: every method takes the event's timestamp (float seconds).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from typing import Any

from .records import END_BYE, END_LIFETIME

# How long an ended dialog's key is remembered (64*T1, the RFC 3261 transaction lifetime).
TOMBSTONE_S = 32.0
# A pending INVITE (arrival seen, no completion yet) is forgotten after this long.
PENDING_MAX_S = 600.0
# The deadline wheel's slot width (s); expire() runs about this often.
WHEEL_S = 1.0


def dialog_key(callid: str, tag_a: str, tag_b: str) -> tuple[str, str, str]:
    """Direction-independent dialog id: a BYE from the callee swaps From and To tags."""
    return (callid, tag_a, tag_b) if tag_a <= tag_b else (callid, tag_b, tag_a)


@dataclasses.dataclass(slots=True)
class Dialog:
    """An established dialog with a pending CDR.  JSON-serialisable for the journal."""

    callid: str
    caller_tag: str
    callee_tag: str
    created: float  # INVITE arrival (s)
    answered: float  # first 2xx (s)
    sip_code: int
    sip_reason: str
    types: tuple[str, ...]
    table: str | None
    extra: dict[str, Any]
    last_activity: float
    bye_ts: float | None = None
    ended: float | None = None
    end_reason: str | None = None
    # dialog_key() of the three ids above, which never change: computed once, not per event.
    key: tuple[str, str, str] = dataclasses.field(init=False, repr=False, compare=False)
    # DialogTracker's deadline wheel: the slot this dialog is filed under (None: not filed).
    wheel_slot: int | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = dialog_key(self.callid, self.caller_tag, self.callee_tag)

    def to_dict(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies recursively, which cost about half of
        # all accounting work per call (it runs for every journaled dialog).
        return {
            "callid": self.callid, "caller_tag": self.caller_tag, "callee_tag": self.callee_tag,
            "created": self.created, "answered": self.answered, "sip_code": self.sip_code,
            "sip_reason": self.sip_reason, "types": list(self.types), "table": self.table,
            "extra": dict(self.extra), "last_activity": self.last_activity, "bye_ts": self.bye_ts,
            "ended": self.ended, "end_reason": self.end_reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Dialog":
        d = dict(d)
        d["types"] = tuple(d["types"])
        return cls(**d)


class DialogTracker:
    """Open CDR dialogs plus the INVITE timestamps needed to create them."""

    def __init__(self, lifetime_s: float, bye_grace_s: float = 32.0, max_pending: int = 100000) -> None:
        self.lifetime_s = lifetime_s
        # At most this many pending INVITEs; past it the oldest is forgotten (its call, if it is
        # answered, gets `created` = its answer time).
        self.max_pending = max_pending
        self.pending_evicted = 0
        # A BYE that arrived but was never answered (the callee ignored it, or the proxy stopped
        # first) still ends the call at its arrival (RFC 3261 §15.1.1): once the BYE transaction
        # could no longer complete (Timer F, 64*T1 = 32 s by default) the CDR is written.
        self.bye_grace_s = bye_grace_s
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        # (callid, from_tag) -> [first INVITE arrival, first 2xx or None]
        self._pending: dict[tuple[str, str], list[float | None]] = {}
        self._tombstones: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        # Deadline wheel: slot -> {key: dialog}, and the slots that exist, soonest first.
        self._wheel: dict[int, dict[tuple[str, str, str], Dialog]] = {}
        self._slots: list[int] = []

    def __len__(self) -> int:
        return len(self.dialogs)

    # -- initial INVITE ---------------------------------------------------------------------
    def invite_arrived(self, callid: str, from_tag: str, ts: float) -> None:
        """An initial INVITE arrived (retransmissions keep the first time)."""
        pending = self._pending
        key = (callid, from_tag)
        if key in pending:
            return
        if len(pending) >= self.max_pending:
            del pending[next(iter(pending))]  # the oldest (arrival order)
            self.pending_evicted += 1
        pending[key] = [ts, None]

    @property
    def pending(self) -> int:
        """Initial INVITEs seen and not completed yet."""
        return len(self._pending)

    def invite_answered(self, callid: str, from_tag: str, ts: float) -> None:
        """A 2xx to an initial INVITE is forwarded upstream (the first one is the answer time)."""
        p = self._pending.get((callid, from_tag))
        if p is None:
            return
        if p[1] is None:
            p[1] = ts

    def invite_completed(
        self,
        callid: str,
        from_tag: str,
        to_tag: str | None,
        code: int,
        reason: str,
        ts: float,
        cdr: bool,
        types: tuple[str, ...],
        table: str | None,
        extra: dict[str, Any],
    ) -> Dialog | None:
        """The initial INVITE's server transaction completed.  Returns the new dialog when it was
        answered (2xx) with the `cdr` flag and a To tag; None otherwise."""
        arrival, answer = self._pending.pop((callid, from_tag), [None, None])
        if not (cdr and 200 <= code < 300 and to_tag and types):
            return None
        key = dialog_key(callid, from_tag, to_tag)
        if key in self.dialogs or key in self._tombstones:
            return None  # a duplicated completion must not open a second dialog
        answered = answer if answer is not None else ts
        created = arrival if arrival is not None else answered
        d = Dialog(
            callid=callid,
            caller_tag=from_tag,
            callee_tag=to_tag,
            created=created,
            answered=answered,
            sip_code=code,
            sip_reason=reason,
            types=types,
            table=table,
            extra=extra,  # the caller's fresh dict (Accounting builds one per request)
            last_activity=answered,
        )
        self.dialogs[key] = d
        self._arm(d)
        return d

    # -- in-dialog requests -----------------------------------------------------------------
    def find(self, callid: str | None, tag_a: str | None, tag_b: str | None) -> Dialog | None:
        if not (callid and tag_a and tag_b):
            return None
        return self.dialogs.get(dialog_key(callid, tag_a, tag_b))

    def in_dialog_request(self, method: str, callid: str, from_tag: str, to_tag: str, ts: float) -> Dialog | None:
        """A request with both tags arrived.  BYE records the call's end (first arrival wins);
        anything else (ACK, re-INVITE, UPDATE, INFO...) refreshes the lifetime.  Returns the
        dialog when the event changed something worth journaling (BYE or re-INVITE)."""
        d = self.find(callid, from_tag, to_tag)
        if d is None:
            return None
        if method == "BYE":
            if d.bye_ts is None:
                d.bye_ts = ts
                self._arm(d)  # the BYE's grace may end it before its lifetime
                return d
            return None
        d.last_activity = max(d.last_activity, ts)
        return d if method == "INVITE" else None

    def bye_completed(self, callid: str, from_tag: str, to_tag: str, ts: float) -> Dialog | None:
        """The BYE transaction got its final reply: end the dialog and return it (None when there
        is no such open dialog, e.g. a duplicate)."""
        d = self.find(callid, from_tag, to_tag)
        if d is None:
            return None
        end = d.bye_ts if d.bye_ts is not None else ts
        return self._end(d, end, END_BYE, ts)

    # -- timers -----------------------------------------------------------------------------
    def expire(self, now: float) -> list[Dialog]:
        """Dialogs whose lifetime ran out (no BYE): ended at their expiry time, end_reason
        "lifetime"; and dialogs whose BYE was never answered, bye_grace_s after it. Also forgets
        stale pending INVITEs and old tombstones. Only the wheel slots due by ``now`` are read."""
        out: list[Dialog] = []
        current = int(now // WHEEL_S)
        slots = self._slots
        while slots and slots[0] <= current:
            slot = slots[0]
            bucket = self._wheel.get(slot)
            if bucket:
                for d in list(bucket.values()):
                    if d.bye_ts is not None and now >= d.bye_ts + self.bye_grace_s:
                        out.append(self._end(d, d.bye_ts, END_BYE, now))
                    elif now >= d.last_activity + self.lifetime_s:
                        out.append(self._end(d, d.last_activity + self.lifetime_s, END_LIFETIME, now))
                    else:
                        self._arm(d)  # refreshed since it was filed, or due later in this slot
            if bucket:
                break  # the current slot, with dialogs due later in it
            heapq.heappop(slots)
            self._wheel.pop(slot, None)
        # Both in arrival order: stop at the first one still current.
        pending = self._pending
        while pending:
            k, p = next(iter(pending.items()))
            if now - (p[0] or now) <= PENDING_MAX_S:
                break
            del pending[k]
        while self._tombstones:
            tk, until = next(iter(self._tombstones.items()))
            if until > now:
                break
            self._tombstones.popitem(last=False)
        return out

    def _deadline(self, d: Dialog) -> float:
        deadline = d.last_activity + self.lifetime_s
        if d.bye_ts is not None:
            deadline = min(deadline, d.bye_ts + self.bye_grace_s)
        return deadline

    def _arm(self, d: Dialog) -> None:
        """File the dialog under the slot of its current deadline."""
        slot = int(self._deadline(d) // WHEEL_S)
        if slot == d.wheel_slot:
            return
        self._unarm(d)
        bucket = self._wheel.get(slot)
        if bucket is None:
            bucket = self._wheel[slot] = {}
            heapq.heappush(self._slots, slot)
        bucket[d.key] = d
        d.wheel_slot = slot

    def _unarm(self, d: Dialog) -> None:
        if d.wheel_slot is not None:
            bucket = self._wheel.get(d.wheel_slot)
            if bucket is not None:
                bucket.pop(d.key, None)  # an emptied slot goes when expire() reaches it
            d.wheel_slot = None

    def end_byes(self, now: float) -> list[Dialog]:
        """End every dialog whose BYE arrived but was not answered yet (shutdown: the transaction
        that would have answered it goes away with this process)."""
        return [self._end(d, d.bye_ts, END_BYE, now) for d in list(self.dialogs.values()) if d.bye_ts is not None]

    def restore(self, dialogs: list[Dialog]) -> None:
        """Put journaled dialogs back after a restart."""
        for d in dialogs:
            self.dialogs[d.key] = d
            self._arm(d)

    def _end(self, d: Dialog, end: float, reason: str, now: float) -> Dialog:
        del self.dialogs[d.key]
        self._unarm(d)
        self._tombstones[d.key] = now + TOMBSTONE_S
        d.ended = max(end, d.answered)
        d.end_reason = reason
        return d
