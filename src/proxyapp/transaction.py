"""RFC 3261 §17 transaction state machines: events in, actions out, no I/O, no clock.

Design
------
Each transaction is a small object whose methods take one event (a response to send, a
retransmitted request, a received response, a timer that fired, a transport error) and return a
list of actions. Nothing here touches a socket or reads a clock: the asyncio edge
(proxyapp.transport) sends the bytes of ``Send`` and arms real timers for ``StartTimer`` /
``CancelTimer``; the proxy core (proxyapp.proxy) consumes the TU notifications ``Timeout``,
``TransportFailure`` and ``Terminated`` and removes terminated transactions from its table.

Rules implemented (RFC 3261 §17 with the RFC 6026 "Accepted" states, which a proxy needs so that
2xx retransmissions keep flowing end to end after the transaction saw its first 2xx):

* INVITE client  §17.1.1  Calling -> Proceeding -> Completed | Accepted -> Terminated.
  Timers A (retransmit, doubling, unreliable only), B (= fr_timeout), D (wait for response
  retransmissions, unreliable only), M (RFC 6026 Accepted) and the proxy's Timer C
  (RFC 3261 §16.6 step 11, reset on every 101-199 per §16.7 step 2) = fr_inv_timeout.
  Non-2xx finals are ACKed here, hop by hop (§17.1.1.3), with the same branch.
* non-INVITE client §17.1.2 Trying -> Proceeding -> Completed -> Terminated.
  Timers E (retransmit, capped at T2; T2 in Proceeding), F (= fr_timeout), K (T4, unreliable only).
* INVITE server  §17.2.1  Proceeding -> Completed -> Confirmed | Accepted -> Terminated.
  Timers G (retransmit final, capped at T2, unreliable only), H (64*T1 wait for ACK),
  I (T4, unreliable only), L (RFC 6026 Accepted).
* non-INVITE server §17.2.2 Trying -> Proceeding -> Completed -> Terminated; Timer J (wt_timer on
  unreliable transports, 0 on reliable ones).

A timer whose RFC value is zero on a reliable transport is not armed: the transition it would
cause happens in the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import TimerConfig

# States (strings keep logs and test failures readable).
CALLING = "Calling"
TRYING = "Trying"
PROCEEDING = "Proceeding"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
ACCEPTED = "Accepted"
TERMINATED = "Terminated"


# ---------------------------------------------------------------------------------------------
# Actions. Dataclass equality compares the class too, so tests can assert exact action lists.


@dataclass(slots=True, eq=True)
class Send:
    """Transmit ``data`` to ``dest`` (a transport Target); ``tx`` is told about a transport error."""

    dest: Any
    data: bytes
    tx: Any = None


@dataclass(slots=True, eq=True)
class StartTimer:
    """Arm (or re-arm, replacing the previous one) the timer ``name`` of ``tx`` for ``delay`` s."""

    tx: Any
    name: str
    delay: float


@dataclass(slots=True, eq=True)
class CancelTimer:
    """Disarm the timer ``name`` of ``tx`` (a no-op when it is not armed)."""

    tx: Any
    name: str


@dataclass(slots=True, eq=True)
class Timeout:
    """TU notification: the client transaction ``tx`` got no (final) response before ``timer``."""

    tx: Any
    timer: str


@dataclass(slots=True, eq=True)
class TransportFailure:
    """TU notification: the transport could not deliver for ``tx`` (RFC 3261 §17.1.4)."""

    tx: Any


@dataclass(slots=True, eq=True)
class Terminated:
    """The transaction is over: drop it from the table and disarm all of its timers."""

    tx: Any


Action = Send | StartTimer | CancelTimer | Timeout | TransportFailure | Terminated


class Transaction:
    """Common state: the key in the proxy's table, where to send, reliability, the timer knobs."""

    __slots__ = ("key", "dest", "reliable", "timers", "state", "owner", "_cfg", "__weakref__")

    kind = "transaction"

    def __init__(self, key: Any, dest: Any, reliable: bool, cfg: TimerConfig) -> None:
        self.key = key
        self.dest = dest
        self.reliable = reliable
        self._cfg = cfg
        self.state = ""
        # Owned by the asyncio edge: timer name -> its handle. The state machines never read it.
        self.timers: dict[str, Any] = {}
        # Back reference the proxy core sets (the server or branch context this transaction serves).
        self.owner: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r} {self.state}>"


# ---------------------------------------------------------------------------------------------
# Server transactions


class ServerTransaction(Transaction):
    """What both server transactions share: a transport error ends them."""

    __slots__ = ()

    def on_transport_error(self) -> list[Action]:
        # §17.2.4 (after trying the §18.2.2 fallbacks, the edge's job): the transaction ends.
        if self.state == TERMINATED:
            return []
        self.state = TERMINATED
        return [Terminated(self)]


class ServerInviteTransaction(ServerTransaction):
    """INVITE server transaction, RFC 3261 §17.2.1 plus the RFC 6026 Accepted state."""

    __slots__ = ("last_response", "last_status", "_g")

    kind = "INVITE server"

    def __init__(self, key: Any, dest: Any, reliable: bool, cfg: TimerConfig) -> None:
        super().__init__(key, dest, reliable, cfg)
        # §17.2.1: "When a server transaction is constructed for a request, it enters the
        # Proceeding state." The TU (the proxy) sends the 100 itself, at once.
        self.state = PROCEEDING
        self.last_response: bytes | None = None
        self.last_status = 0
        self._g = 0.0

    def send_response(self, status: int, data: bytes) -> list[Action]:
        """The TU passes a response down; returns what to do (possibly nothing)."""
        state = self.state
        if state == PROCEEDING:
            self.last_response = data
            self.last_status = status
            acts: list[Action] = [Send(self.dest, data, self)]
            if status < 200:
                return acts
            if status < 300:
                # RFC 6026 §8.5: a 2xx moves Proceeding -> Accepted and starts Timer L, so that
                # INVITE retransmissions are absorbed and 2xx retransmissions pass through.
                self.state = ACCEPTED
                # Accepted absorbs INVITE retransmissions and never resends: keep no copy.
                self.last_response = None
                acts.append(StartTimer(self, "L", self._cfg.l))
                return acts
            # §17.2.1: final non-2xx -> Completed; Timer G for unreliable transports, Timer H always.
            self.state = COMPLETED
            if not self.reliable:
                self._g = self._cfg.t1
                acts.append(StartTimer(self, "G", self._g))
            acts.append(StartTimer(self, "H", self._cfg.h))
            return acts
        if state == ACCEPTED and 200 <= status < 300:
            # RFC 6026 §8.7: 2xx retransmissions from the TU are passed to the transport.
            return [Send(self.dest, data, self)]
        return []

    def on_request(self) -> list[Action]:
        """A retransmission of the INVITE arrived."""
        if self.state in (PROCEEDING, COMPLETED) and self.last_response is not None:
            # §17.2.1: retransmit the most recent provisional (Proceeding) or the final (Completed).
            return [Send(self.dest, self.last_response, self)]
        # Accepted / Confirmed: absorbed (RFC 6026 §8.7, RFC 3261 §17.2.1).
        return []

    def on_ack(self) -> list[Action]:
        """An ACK matched this transaction (so it acknowledges our non-2xx final)."""
        if self.state != COMPLETED:
            return []  # Confirmed: absorbed; others: not ours to handle
        # §17.2.1: Completed -> Confirmed; Timer G stops; Timer I = T4 (0 on reliable transports).
        acts: list[Action] = [CancelTimer(self, "H")]
        if not self.reliable:
            acts.insert(0, CancelTimer(self, "G"))
            self.state = CONFIRMED
            acts.append(StartTimer(self, "I", self._cfg.t4))
            return acts
        self.state = TERMINATED
        acts.append(Terminated(self))
        return acts

    def on_timer(self, name: str) -> list[Action]:
        state = self.state
        if name == "G" and state == COMPLETED:
            # §17.2.1: retransmit the final response, interval doubling up to T2.
            self._g = min(2 * self._g, self._cfg.t2)
            data = self.last_response
            assert data is not None  # Completed is entered only with a final (non-2xx) response kept
            return [Send(self.dest, data, self), StartTimer(self, "G", self._g)]
        if name == "H" and state == COMPLETED:
            # §17.2.1: the ACK never came; the transaction ends (a failure the proxy just logs).
            self.state = TERMINATED
            return [CancelTimer(self, "G"), Terminated(self)] if not self.reliable else [Terminated(self)]
        if (name == "I" and state == CONFIRMED) or (name == "L" and state == ACCEPTED):
            self.state = TERMINATED
            return [Terminated(self)]
        return []


class ServerNonInviteTransaction(ServerTransaction):
    """non-INVITE server transaction, RFC 3261 §17.2.2."""

    __slots__ = ("last_response", "last_status")

    kind = "non-INVITE server"

    def __init__(self, key: Any, dest: Any, reliable: bool, cfg: TimerConfig) -> None:
        super().__init__(key, dest, reliable, cfg)
        self.state = TRYING  # §17.2.2: constructed in Trying
        self.last_response: bytes | None = None
        self.last_status = 0

    def send_response(self, status: int, data: bytes) -> list[Action]:
        state = self.state
        if state not in (TRYING, PROCEEDING):
            return []  # §17.2.2: in Completed, further finals from the TU are discarded
        self.last_response = data
        self.last_status = status
        acts: list[Action] = [Send(self.dest, data, self)]
        if status < 200:
            self.state = PROCEEDING
            return acts
        if self.reliable:
            # §17.2.2: Timer J is 0 on reliable transports: Completed -> Terminated at once.
            self.state = TERMINATED
            acts.append(Terminated(self))
            return acts
        self.state = COMPLETED
        acts.append(StartTimer(self, "J", self._cfg.wt_timer))
        return acts

    def on_request(self) -> list[Action]:
        # §17.2.2: absorbed in Trying; the last response is resent in Proceeding and Completed
        # (an abandoned transaction, see abandon(), has none: absorbed).
        if self.state in (PROCEEDING, COMPLETED) and self.last_response is not None:
            return [Send(self.dest, self.last_response, self)]
        return []

    def abandon(self) -> list[Action]:
        """Every branch timed out and the TU sends no final upstream (RFC 4320 §4.2: no 408 to a
        non-INVITE). The transaction still absorbs the client's retransmissions until the client
        itself gives up (its Timer F = 64*T1, RFC 3261 §17.1.2.2), so nothing is forwarded twice:
        Completed without a response to repeat, then Timer J = 64*T1 (0 on reliable transports,
        where the client does not retransmit)."""
        if self.state not in (TRYING, PROCEEDING):
            return []
        if self.reliable:
            self.state = TERMINATED
            return [Terminated(self)]
        self.state = COMPLETED
        self.last_response = None  # on_request: absorbed, nothing resent
        return [StartTimer(self, "J", 64 * self._cfg.t1)]

    def on_timer(self, name: str) -> list[Action]:
        if name == "J" and self.state == COMPLETED:
            self.state = TERMINATED
            return [Terminated(self)]
        return []


# ---------------------------------------------------------------------------------------------
# Client transactions


class ClientInviteTransaction(Transaction):
    """INVITE client transaction, RFC 3261 §17.1.1 plus RFC 6026 Accepted and the proxy's Timer C."""

    __slots__ = ("request", "ack", "_a", "_b_armed", "provisional", "final_status")

    kind = "INVITE client"

    def __init__(self, key: Any, dest: Any, reliable: bool, cfg: TimerConfig, request: bytes) -> None:
        super().__init__(key, dest, reliable, cfg)
        self.state = CALLING
        self.request = request
        self.ack: bytes | None = None
        self._a = 0.0
        self._b_armed = False
        self.provisional = False  # a 1xx was received (CANCEL is allowed only then, §9.1)
        self.final_status = 0

    def start(self) -> list[Action]:
        """Send the INVITE; §17.1.1.2: Timer A (unreliable only) and Timer B, plus Timer C (§16.6/11)."""
        acts: list[Action] = [Send(self.dest, self.request, self)]
        if not self.reliable:
            self._a = self._cfg.t1
            acts.append(StartTimer(self, "A", self._a))
        self._b_armed = True
        acts.append(StartTimer(self, "B", self._cfg.b))
        acts.append(StartTimer(self, "C", self._cfg.fr_inv_timeout))
        return acts

    def on_response(self, status: int, ack: bytes | None = None) -> tuple[bool, list[Action]]:
        """A response matched. Returns (pass it to the TU?, actions).

        ``ack`` is the hop-by-hop ACK for a non-2xx final (built by the proxy from the request and
        the response's To); it is required when ``status >= 300``.
        """
        state = self.state
        if status < 200:
            if state == CALLING:
                # §17.1.1.2: Calling -> Proceeding; stop retransmitting, Timer B no longer applies.
                self.state = PROCEEDING
                self.provisional = True
                self._b_armed = False
                acts: list[Action] = [CancelTimer(self, "B")]
                if not self.reliable:
                    acts.insert(0, CancelTimer(self, "A"))
                if status > 100:
                    # §16.7 step 2: every 101-199 resets Timer C.
                    acts.append(StartTimer(self, "C", self._cfg.fr_inv_timeout))
                return True, acts
            if state == PROCEEDING:
                if status > 100:
                    return True, [StartTimer(self, "C", self._cfg.fr_inv_timeout)]
                return True, []
            return False, []
        if status < 300:
            if state in (CALLING, PROCEEDING):
                # RFC 6026 §8.4: 2xx -> Accepted, Timer M; the TU forwards this and later 2xx.
                # Timers first: Timer A (Calling only) is cancelled while the state still says so.
                acts = self._stop_timers()
                self.state = ACCEPTED
                self.final_status = status
                # Nothing is retransmitted, CANCELled or ACKed hop by hop after a 2xx: free the
                # forwarded request for the 32 s the transaction stays Accepted.
                self.request = b""
                acts.append(StartTimer(self, "M", self._cfg.m))
                return True, acts
            if state == ACCEPTED:
                return True, []  # 2xx retransmission or a 2xx from another fork: forwarded
            return False, []
        # 300-699
        if state in (CALLING, PROCEEDING):
            # §17.1.1.3: ACK it, Calling/Proceeding -> Completed, Timer D (0 on reliable transports).
            assert ack is not None, "a non-2xx final response needs its ACK"
            self.ack = ack
            self.final_status = status
            acts = self._stop_timers()
            acts.append(Send(self.dest, ack, self))
            if self.reliable:
                self.state = TERMINATED
                acts.append(Terminated(self))
            else:
                self.state = COMPLETED
                acts.append(StartTimer(self, "D", self._cfg.wt_timer))
            return True, acts
        if state == COMPLETED and self.ack is not None:
            # §17.1.1.2: a retransmitted final is ACKed again and not passed up.
            return False, [Send(self.dest, self.ack, self)]
        return False, []

    def _stop_timers(self) -> list[Action]:
        acts: list[Action] = []
        if self.state == CALLING and not self.reliable:
            acts.append(CancelTimer(self, "A"))
        if self._b_armed:
            self._b_armed = False
            acts.append(CancelTimer(self, "B"))
        acts.append(CancelTimer(self, "C"))
        return acts

    def on_timer(self, name: str) -> list[Action]:
        state = self.state
        if name == "A" and state == CALLING:
            # §17.1.1.2: retransmit, and double the interval (no T2 cap for INVITE).
            self._a *= 2
            return [Send(self.dest, self.request, self), StartTimer(self, "A", self._a)]
        if name == "B" and state == CALLING:
            # §17.1.1.2: no response at all -> Terminated, the TU sees a timeout (it answers 408).
            self.state = TERMINATED
            acts: list[Action] = [CancelTimer(self, "A")] if not self.reliable else []
            acts += [CancelTimer(self, "C"), Timeout(self, "B"), Terminated(self)]
            return acts
        if name == "C" and state in (CALLING, PROCEEDING):
            # §16.8: Timer C fired. With a provisional the proxy CANCELs the branch and keeps the
            # transaction for the 487 (Timer B re-armed as a guard); without one it behaves as if
            # a 408 was received: the transaction ends here.
            if self.provisional:
                self._b_armed = True
                return [Timeout(self, "C"), StartTimer(self, "B", self._cfg.b)]
            self.state = TERMINATED
            acts = [CancelTimer(self, "A")] if not self.reliable else []
            acts += [CancelTimer(self, "B"), Timeout(self, "C"), Terminated(self)]
            return acts
        if name == "B" and state == PROCEEDING:
            # Only armed again after Timer C fired: the CANCELled branch never sent its final.
            self.state = TERMINATED
            return [Terminated(self)]
        if (name == "D" and state == COMPLETED) or (name == "M" and state == ACCEPTED):
            self.state = TERMINATED
            return [Terminated(self)]
        return []

    def on_transport_error(self) -> list[Action]:
        # §17.1.4: transport failure -> Terminated, reported to the TU (it answers 503).
        state = self.state
        if state in (CALLING, PROCEEDING):
            acts = self._stop_timers()
            self.state = TERMINATED
            acts += [TransportFailure(self), Terminated(self)]
            return acts
        if state == TERMINATED:
            return []
        self.state = TERMINATED  # an ACK could not be sent: nothing else to do
        return [Terminated(self)]


class ClientNonInviteTransaction(Transaction):
    """non-INVITE client transaction, RFC 3261 §17.1.2."""

    __slots__ = ("request", "_e", "final_status")

    kind = "non-INVITE client"

    def __init__(self, key: Any, dest: Any, reliable: bool, cfg: TimerConfig, request: bytes) -> None:
        super().__init__(key, dest, reliable, cfg)
        self.state = TRYING
        self.request = request
        self._e = 0.0
        self.final_status = 0

    def start(self) -> list[Action]:
        """Send the request; §17.1.2.2: Timer E (unreliable only) and Timer F."""
        acts: list[Action] = [Send(self.dest, self.request, self)]
        if not self.reliable:
            self._e = self._cfg.t1
            acts.append(StartTimer(self, "E", self._e))
        acts.append(StartTimer(self, "F", self._cfg.f))
        return acts

    def on_response(self, status: int, ack: bytes | None = None) -> tuple[bool, list[Action]]:
        """A response matched. Returns (pass it to the TU?, actions)."""
        state = self.state
        if status < 200:
            if state == TRYING:
                self.state = PROCEEDING
                return True, []
            return state == PROCEEDING, []
        if state in (TRYING, PROCEEDING):
            # §17.1.2.2: final -> Completed; Timer K = T4 (0 on reliable transports).
            self.final_status = status
            acts: list[Action] = []
            if not self.reliable:
                acts.append(CancelTimer(self, "E"))
            acts.append(CancelTimer(self, "F"))
            if self.reliable:
                self.state = TERMINATED
                acts.append(Terminated(self))
            else:
                self.state = COMPLETED
                self.request = b""  # never retransmitted again: Completed only absorbs (Timer K)
                acts.append(StartTimer(self, "K", self._cfg.t4))
            return True, acts
        return False, []  # Completed: retransmissions absorbed

    def on_timer(self, name: str) -> list[Action]:
        state = self.state
        if name == "E" and state in (TRYING, PROCEEDING):
            # §17.1.2.2: Trying doubles up to T2; Proceeding retransmits every T2.
            self._e = min(2 * self._e, self._cfg.t2) if state == TRYING else self._cfg.t2
            return [Send(self.dest, self.request, self), StartTimer(self, "E", self._e)]
        if name == "F" and state in (TRYING, PROCEEDING):
            self.state = TERMINATED
            acts: list[Action] = [CancelTimer(self, "E")] if not self.reliable else []
            acts += [Timeout(self, "F"), Terminated(self)]
            return acts
        if name == "K" and state == COMPLETED:
            self.state = TERMINATED
            return [Terminated(self)]
        return []

    def on_transport_error(self) -> list[Action]:
        state = self.state
        if state in (TRYING, PROCEEDING):
            self.state = TERMINATED
            acts: list[Action] = [CancelTimer(self, "E")] if not self.reliable else []
            acts += [CancelTimer(self, "F"), TransportFailure(self), Terminated(self)]
            return acts
        if state == TERMINATED:
            return []
        self.state = TERMINATED
        return [Terminated(self)]


class TxTable:
    """The transactions of one kind (server or client) by their matching key (§17.1.3, §17.2.3).

    Kept in SHARDS dicts chosen by the key's hash rather than in one: a dict grows by copying its
    whole table, and so does a dict whose deletions have used up its free slots. At 2250 calls/s
    some 150,000 transactions wait out Timers J, L and M, and copying one table that size held the
    event loop 3 to 7 ms at a time (15 ms at 350,000). A shard holds 1/64 of them.
    """

    __slots__ = ("_shards",)

    SHARDS = 64  # the shard is hash(key) & 63, written out in each method (no lookup per call)

    def __init__(self) -> None:
        self._shards: tuple[dict[Any, Any], ...] = tuple({} for _ in range(self.SHARDS))

    def get(self, key: Any) -> Any:
        return self._shards[hash(key) & 63].get(key)

    def __setitem__(self, key: Any, tx: Any) -> None:
        self._shards[hash(key) & 63][key] = tx

    def __delitem__(self, key: Any) -> None:
        del self._shards[hash(key) & 63][key]

    def discard(self, key: Any, tx: Any) -> None:
        """Remove ``key`` if it still maps to ``tx`` (a newer transaction may have the key now)."""
        shard = self._shards[hash(key) & 63]
        if shard.get(key) is tx:
            del shard[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._shards[hash(key) & 63]

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def compact(self) -> None:
        """Copy each shard into a table its size: a dict keeps the table it grew to after its
        entries go (called once a flood's transactions are all gone, proxyapp.limits)."""
        self._shards = tuple(dict(s) for s in self._shards)

    def values(self) -> list[Any]:
        return [tx for shard in self._shards for tx in shard.values()]

    def items(self) -> list[tuple[Any, Any]]:
        return [item for shard in self._shards for item in shard.items()]
