"""Flood limits, the scanner filter and the transaction budget ([limits]; issue 17 items 3-4).

Sans-IO: no sockets, no asyncio, no clock of its own (the caller passes ``now``).

- Per-source density, as OpenSIPS pike: every datagram from an IP counts in the current window
  (``sampling_time_unit`` seconds); past ``reqs_density_per_unit`` in one window the IP is banned
  for ``ban_time`` seconds and its datagrams are dropped before parsing. The edge pays one dict
  lookup, one increment and one comparison per datagram (``admit``); the window is closed by
  ``tick``, which the edge calls every ``sampling_time_unit`` seconds: it forgets every source
  that is not banned (so the table holds the sources of one window and the banned ones) and
  lifts the bans that expired. The table holds at most ``max_sources`` IPs; a new source past that
  is admitted without being counted (``untracked``) until the next tick. ``trusted`` IPs or
  networks are never banned. Windows are fixed, not sliding: a burst straddling two windows may
  reach twice the density before the ban. Over TCP and TLS every framed message counts the
  same way (``admit`` per message; a banned source's connection is closed).
- Scanners: a request whose User-Agent names a known SIP scanner (friendly-scanner, sipvicious,
  sipcli, VaxSIPUserAgent, ...) is dropped without an answer (``is_scanner``: two substring
  searches in the header block, a regular expression only over the User-Agent value; on a
  stream, ``is_scanner_agent`` on the parsed request's User-Agent).
- The transaction budget (``TxBudget``): live transactions and the request bytes they keep; the
  core answers 503 with Retry-After to a new request past either cap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The User-Agent values of known SIP scanners (case-insensitive regular expressions).
DEFAULT_SCANNERS = (
    "friendly-scanner", "sipvicious", "sipcli", "vaxsipuseragent", "sundayddr", "pplsip",
    r"\biwar\b", "sipscan", r"\bsmap\b",
)

# Local processes (a SIPp on the same host, a co-located PBX): never banned unless [limits]
# trusted is given, which replaces this.
DEFAULT_TRUSTED = ("127.0.0.0/8", "::1")

_BANNED = 1 << 62  # a banned source's count: over any density, so admit() needs one comparison
_TRUSTED = -(1 << 62)  # a trusted source's count once seen over the density: never reaches it again


ALLOCATORS = ("auto", "malloc", "pymalloc")  # [limits] allocator (proxyapp.allocator)


@dataclass(frozen=True)
class LimitsConfig:
    """The validated [limits] table ({} gives these defaults)."""

    sampling_time_unit: float = 2.0
    reqs_density_per_unit: int = 200  # datagrams per source and window; 0 disables the flood limit
    ban_time: float = 300.0
    trusted: tuple[str, ...] = DEFAULT_TRUSTED
    max_sources: int = 100_000
    scanner_filter: bool = True
    scanners: tuple[str, ...] = DEFAULT_SCANNERS
    max_transactions: int = 500_000
    max_transaction_bytes: int = 256 << 20
    retry_after: int = 5
    malloc_trim: bool = True
    # One of ALLOCATORS: the allocator the process runs on (proxyapp.allocator).
    allocator: str = "auto"
    # Ban a source (ban_time) once it failed digest authentication this many times ([auth]);
    # 0 = never. Password guessers (svcrack) end there; a trusted source is never banned.
    auth_failures_ban: int = 20
    networks: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LimitsConfig:
        """Raises ValueError naming the key for a bad value or an unknown key."""
        known = {
            "sampling_time_unit", "reqs_density_per_unit", "ban_time", "trusted", "max_sources",
            "scanner_filter", "scanners", "max_transactions", "max_transaction_bytes", "retry_after",
            "malloc_trim", "auth_failures_ban", "allocator",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"[limits]: unknown key(s) {', '.join(unknown)}")
        kw: dict[str, Any] = {}

        def number(key: str, kind: type, minimum: float) -> None:
            if key not in data:
                return
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
                raise ValueError(f"[limits] {key}: expected {'an integer' if kind is int else 'a number'}, got {v!r}")
            if v < minimum:
                raise ValueError(f"[limits] {key}: must be >= {minimum}, got {v!r}")
            kw[key] = kind(v)

        number("sampling_time_unit", float, 0.1)
        number("reqs_density_per_unit", int, 0)
        number("ban_time", float, 0)
        number("max_sources", int, 1)
        number("max_transactions", int, 1)
        number("max_transaction_bytes", int, 1)
        number("retry_after", int, 0)
        number("auth_failures_ban", int, 0)
        for key in ("scanner_filter", "malloc_trim"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ValueError(f"[limits] {key}: expected true or false, got {data[key]!r}")
                kw[key] = data[key]
        if "allocator" in data:
            if data["allocator"] not in ALLOCATORS:
                raise ValueError(f"[limits] allocator: expected \"auto\", \"malloc\" or \"pymalloc\", got {data['allocator']!r}")
            kw["allocator"] = data["allocator"]
        for key in ("trusted", "scanners"):
            if key in data:
                v = data[key]
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError(f"[limits] {key}: expected a list of strings, got {v!r}")
                kw[key] = tuple(v)
        nets = []
        for t in kw.get("trusted", DEFAULT_TRUSTED):
            try:
                nets.append(ipaddress.ip_network(t, strict=False))
            except ValueError:
                raise ValueError(f"[limits] trusted: {t!r} is not an IP address or network") from None
        for s in kw.get("scanners", ()):
            try:
                re.compile(s)
            except re.error as exc:
                raise ValueError(f"[limits] scanners: {s!r}: {exc}") from None
        return cls(**kw, networks=tuple(nets))


# Windows (sampling_time_unit, 2 s by default) between the trim at no live transaction left
# and the last one of a drop (Limits.tick).
SETTLE_TICKS = 3


class TxBudget:
    """Live transactions and the request bytes they keep, against their caps (the core's tables
    count into it; the core compares before it creates a server transaction)."""

    __slots__ = ("live", "bytes", "max_live", "max_bytes", "retry_after", "rejected", "peak_live")

    def __init__(self, max_live: int, max_bytes: int, retry_after: int) -> None:
        self.live = 0
        self.bytes = 0
        self.max_live = max_live
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.rejected = 0
        self.peak_live = 0  # the most live transactions since the last malloc_trim (Limits.tick)


def _libc_malloc_trim() -> Any:
    try:
        name = ctypes.util.find_library("c") or "libc.so.6"
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


class Limits:
    """The per-source density table, the scanner filter's counters and the transaction budget."""

    def __init__(self, cfg: LimitsConfig) -> None:
        self.cfg = cfg
        self.density = cfg.reqs_density_per_unit or _BANNED - 1  # 0: no flood limit
        self._sources: dict[str, list[Any]] = {}  # IP -> [count this window, banned until]
        self._networks = cfg.networks
        self._scanner_re = re.compile("|".join(f"(?:{s})" for s in cfg.scanners).encode(), re.IGNORECASE) \
            if cfg.scanners and cfg.scanner_filter else None
        self.budget = TxBudget(cfg.max_transactions, cfg.max_transaction_bytes, cfg.retry_after)
        self.flood_dropped = 0
        self.scanner_dropped = 0
        self.bans = 0
        self.auth_bans = 0
        self.untracked = 0
        self.trims = 0
        self.settles = 0  # drops that ran to their settling collection and trim (tick)
        self._trim = _libc_malloc_trim() if cfg.malloc_trim else None
        self._now = 0.0  # the clock at the last tick (a ban's start is dated by it)
        # Live transactions at the last trim of a drop: below 100, fewer than that trims again
        # (0: none is left, or no drop yet, and nothing does).
        self._trimmed_at = 0
        self._settle = 0  # windows until the last trim after a drop (tick)
        self._collect = gc.collect  # (tests observe it)
        self.on_settle: list[Callable[[], None]] = []  # what lets go of a drop's tables first

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        return cls(LimitsConfig.from_dict(data))

    # ------------------------------------------------------------------ per datagram

    def admit(self, host: str) -> bool:
        """Count a datagram from ``host``: False when the source is banned (drop it unparsed)."""
        e = self._sources.get(host)
        if e is None:
            if len(self._sources) < self.cfg.max_sources:
                self._sources[host] = [1, 0.0]
            else:
                self.untracked += 1
            return True
        c = e[0] = e[0] + 1
        if c <= self.density:
            return True
        return self._over(host, e)

    def _over(self, host: str, e: list[Any]) -> bool:
        if e[0] > _BANNED:
            self.flood_dropped += 1
            return False
        if self.trusted(host):
            e[0] = _TRUSTED
            return True
        e[0] = _BANNED + 1
        e[1] = self._now + self.cfg.ban_time
        self.bans += 1
        self.flood_dropped += 1
        return False

    def ban(self, host: str) -> bool:
        """Ban ``host`` now for ban_time (failed authentication too often); False when it is
        trusted (never banned) or already banned."""
        e = self._sources.get(host)
        if (e is not None and e[0] > _BANNED) or self.trusted(host):
            return False
        self._sources[host] = [_BANNED + 1, self._now + self.cfg.ban_time]
        self.bans += 1
        return True

    def auth_failed(self, host: str, count: int) -> None:
        """auth.Auth.on_failure: ``count`` failed attempts from ``host`` so far."""
        limit = self.cfg.auth_failures_ban
        if limit and count >= limit and self.ban(host):
            self.auth_bans += 1

    def trusted(self, host: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def is_scanner_agent(self, user_agent: str | None) -> bool:
        """A parsed request's User-Agent (a stream: TCP, TLS) names a scanner: counted; the caller
        drops the request unanswered."""
        rx = self._scanner_re
        if rx is None or not user_agent:
            return False
        if rx.search(user_agent.strip().encode("utf-8", "surrogateescape")) is None:
            return False
        self.scanner_dropped += 1
        return True

    def is_scanner(self, data: bytes) -> bool:
        """A request from a SIP scanner (its User-Agent): counted; the caller drops it unanswered."""
        rx = self._scanner_re
        if rx is None:
            return False
        i = data.find(b"\nUser-Agent")
        if i < 0:
            i = data.find(b"\nuser-agent")
            if i < 0:
                return False
        end = data.find(b"\r\n\r\n")
        if 0 <= end < i:
            return False  # in the body, not the header block
        eol = data.find(b"\n", i + 11)
        line = data[i + 11:eol if eol >= 0 else len(data)]
        colon = line.find(b":")
        if colon < 0 or line[:colon].strip(b" \t"):
            return False  # another header (User-Agent-X)
        if rx.search(line[colon + 1:].strip()) is None:
            return False
        self.scanner_dropped += 1
        return True

    # ------------------------------------------------------------------ periodic

    def tick(self, now: float) -> None:
        """Close the window (every sampling_time_unit seconds): forget the sources that are not
        banned, lift the bans that expired; trim the C heap after a big drop of transactions."""
        self._now = now
        self._sources = {h: e for h, e in self._sources.items() if e[0] > _BANNED and e[1] > now}
        b = self.budget
        if b.live > b.peak_live:
            b.peak_live = b.live
        elif (b.peak_live >= 5_000 and b.live < b.peak_live // 4) or (b.live < 100 and b.live < self._trimmed_at):
            # Most of a flood's transactions ended: hand the freed pages back to the system
            # (glibc keeps them in its heap otherwise; see docs/proxyapp/configuration.md), and
            # again when (almost) none is left, which gives back the most: below 100 live, each
            # time fewer are left than at the last trim, until none is (at most 100 more trims).
            self._trim_now()
            self._trimmed_at = b.live
            b.peak_live = b.live
            # Once none is left, a last trim SETTLE_TICKS windows later: the edge's timer heap
            # lets go of cancelled retransmission timers (and what they held) only when they
            # would have fired, up to T2 (4 s) later.
            self._settle = SETTLE_TICKS if b.live == 0 else 0
        elif self._settle:
            self._settle -= 1
            if self._settle == 0 and b.live == 0 and self._trim is not None:
                # The free lists of tuples, floats, dicts ... (CPython keeps thousands of each
                # for reuse) are emptied by a full collection only; main() disables the cycle
                # collector, and with nothing left to track (start-up's objects are frozen out
                # of it) this one is short. Then their memory can go back too.
                for compact in self.on_settle:
                    compact()
                self._collect()
                self._trim_now()
                self.settles += 1

    def _trim_now(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1

    def is_banned(self, host: str) -> bool:
        """Whether ``host`` is banned now (nothing counted: a connection attempt, not a request)."""
        e = self._sources.get(host)
        return e is not None and e[0] > _BANNED

    def banned(self) -> list[str]:
        return [h for h, e in self._sources.items() if e[0] > _BANNED]

    def stats(self) -> dict[str, int]:
        """The counters, for the statistics (group "limits")."""
        b = self.budget
        return {
            "banned_sources": len(self.banned()),
            "bans": self.bans,
            "auth_bans": self.auth_bans,
            "flood_dropped": self.flood_dropped,
            "scanner_dropped": self.scanner_dropped,
            "tracked_sources": len(self._sources),
            "untracked": self.untracked,
            "live_transactions": b.live,
            "transaction_bytes": b.bytes,
            "transaction_cap_rejects": b.rejected,
            "malloc_trims": self.trims,
            "settled_drops": self.settles,
        }
