"""Nonces bound to this server with an expiry, and the nonce counts that stop replays.

A nonce is base64url(issued_ms[8] | flags[1] | random[8] | mac[16]) where mac is the first 16
bytes of HMAC-SHA256(secret, issued_ms | flags | random | realm): 44 characters. It needs no
server state until it is used: check() recomputes the MAC (constant-time comparison) and reads
the age. flags bit 0 says the challenge offered qop=auth, so a client cannot drop qop (and the
nonce count with it) from the response to a challenge that asked for it.

NonceCounts (OpenSIPS' nonce_count in spirit) remembers, per nonce that was used, the highest nc
accepted and a 64-wide window of the counts below it, so requests sent in parallel with
out-of-order counts pass while a (nonce, nc) pair is accepted once. A retransmission (the same
Call-ID, CSeq and Via branch as the request that used that nc) is not a replay: a REGISTER
answered statelessly is retransmitted through the script. The table is bounded: entries whose
nonce expired are dropped, and beyond ``max_nonces`` the oldest is dropped and any nonce issued
before it that is not in the table counts as stale from then on (nothing can be replayed by
pushing entries out).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections import OrderedDict

FLAG_QOP = 1
_HEAD = struct.Struct(">QB")
RAW_LEN = 8 + 1 + 8 + 16
# How far in the future (seconds) an issue time may lie (clocks of nodes sharing a secret).
CLOCK_SKEW = 5.0

# check() results
VALID, STALE, INVALID = "valid", "stale", "invalid"
# NonceCounts.use() results
FRESH, RETRANSMISSION, REPLAYED = "fresh", "retransmission", "replayed"

WINDOW = 64
_RECENT = 8  # request keys remembered per nonce (retransmission detection)


class Nonces:
    """Issue and check nonces with ``secret`` (bytes or text)."""

    def __init__(self, secret: str | bytes, expire: float) -> None:
        self.key = secret.encode() if isinstance(secret, str) else secret
        self.expire = expire

    def _mac(self, head: bytes, realm: str) -> bytes:
        return hmac.new(self.key, head + realm.encode("utf-8"), hashlib.sha256).digest()[:16]

    def issue(self, realm: str, now: float, qop: bool = True) -> str:
        head = _HEAD.pack(int(now * 1000), FLAG_QOP if qop else 0) + os.urandom(8)
        return base64.urlsafe_b64encode(head + self._mac(head, realm)).decode("ascii")

    def check(self, nonce: str, realm: str, now: float) -> tuple[str, float, bool]:
        """(VALID | STALE | INVALID, issue time, qop offered). INVALID: not issued by a server
        with our secret for this realm (tampered, foreign, or from before a restart)."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return INVALID, 0.0, False
        if len(raw) != RAW_LEN:
            return INVALID, 0.0, False
        head, mac = raw[:17], raw[17:]
        if not hmac.compare_digest(mac, self._mac(head, realm)):
            return INVALID, 0.0, False
        ms, flags = _HEAD.unpack(head[:9])
        issued = ms / 1000.0
        if issued > now + CLOCK_SKEW:
            return INVALID, issued, False
        qop = bool(flags & FLAG_QOP)
        if now - issued > self.expire:
            return STALE, issued, qop
        return VALID, issued, qop


class _Entry:
    __slots__ = ("issued", "highest", "mask", "recent")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.highest = 0
        self.mask = 0  # bit i: nc == highest - i was used
        self.recent: dict[int, object] = {}


class NonceCounts:
    """The nonce counts seen, bounded by ``max_nonces`` and by the nonces' expiry."""

    def __init__(self, expire: float, max_nonces: int = 100_000) -> None:
        self.expire = expire
        self.max_nonces = max_nonces
        self._table: OrderedDict[str, _Entry] = OrderedDict()
        self.horizon = -1.0  # nonces issued at or before this and not in the table are refused

    def __len__(self) -> int:
        return len(self._table)

    def _prune(self, now: float) -> None:
        table = self._table
        # Insertion order is first use, close to issue order: stop at the first live entry.
        while table:
            nonce, e = next(iter(table.items()))
            if now - e.issued <= self.expire:
                break
            del table[nonce]
        while len(table) > self.max_nonces:
            _, e = table.popitem(last=False)
            self.horizon = max(self.horizon, e.issued)

    def use(self, nonce: str, issued: float, nc: int, key: object, now: float) -> str:
        """Record the use of (nonce, nc) by the request ``key``: FRESH (accept), RETRANSMISSION
        (the same request again: accept) or REPLAYED (refuse). ``nc`` >= 1."""
        e = self._table.get(nonce)
        if e is None:
            self._prune(now)
            if issued <= self.horizon:
                return REPLAYED  # its counts were forgotten: it may have been used
            e = self._table[nonce] = _Entry(issued)
            self._prune(now)
        if nc > e.highest:
            shift = nc - e.highest
            e.mask = ((e.mask << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            e.highest = nc
        else:
            back = e.highest - nc
            if back >= WINDOW:
                return REPLAYED
            bit = 1 << back
            if e.mask & bit:
                return RETRANSMISSION if e.recent.get(nc) == key else REPLAYED
            e.mask |= bit
        e.recent[nc] = key
        if len(e.recent) > _RECENT:
            del e.recent[min(e.recent)]
        return FRESH
