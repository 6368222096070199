"""Auth: the digest authentication service the script verbs call (www_/proxy_authorize, challenges).

It works on header values and plain facts (method, realm, source address), not on the proxy's
objects. Everything is synchronous and cheap: subscribers come from the store's memory copy.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from . import digest
from .config import AuthConfig
from .nonce import INVALID, REPLAYED, STALE, NonceCounts, Nonces
from .store import SubscriberStore

# www_authorize / proxy_authorize results (OpenSIPS auth_db's codes; positive = authenticated).
AUTHORIZED = 1
INVALID_USER = -1  # no such subscriber (counted as a failure)
INVALID_PASSWORD = -2  # the response does not match (counted as a failure)
STALE_NONCE = -3  # the right response, but the nonce expired or is not ours (restart): challenge with stale=true
NO_CREDENTIALS = -4  # no Digest credentials for this realm: challenge
GENERIC_ERROR = -5  # malformed credentials, unsupported algorithm or qop, qop dropped (a failure)
NONCE_REPLAYED = -6  # the right response, but that (nonce, nc) was used by another request (a failure)

CODES = {
    AUTHORIZED: "authorized", INVALID_USER: "invalid user", INVALID_PASSWORD: "invalid password",
    STALE_NONCE: "stale nonce", NO_CREDENTIALS: "no credentials", GENERIC_ERROR: "generic error",
    NONCE_REPLAYED: "nonce replayed",
}
_FAILURES = (INVALID_USER, INVALID_PASSWORD, GENERIC_ERROR, NONCE_REPLAYED)
_DUMMY_HA1 = {"MD5": "0" * 32, "SHA-256": "0" * 64}


@dataclasses.dataclass(slots=True)
class Result:
    """What authorize() found: the code, the user authenticated and which header it used."""

    code: int
    user: str | None = None
    index: int | None = None  # position of the credential among the request's headers of that name
    realm: str = ""

    @property
    def stale(self) -> bool:
        """The next challenge carries stale=true (the client may retry without asking its user)."""
        return self.code in (STALE_NONCE, NONCE_REPLAYED)


class Auth:
    """Digest authentication (RFC 3261 §22, RFC 8760) against a SubscriberStore.

    ``on_failure(ip, count)`` (optional) is called after each failed attempt from ``ip`` with
    that address's total: the hook a flood limiter uses to ban a source (svcrack and the like).
    """

    def __init__(self, cfg: AuthConfig, store: SubscriberStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store if store is not None else SubscriberStore.for_config(cfg)
        self.clock = clock
        self.nonces = Nonces(cfg.secret, cfg.nonce_expire)
        self.counts = NonceCounts(cfg.nonce_expire, cfg.max_nonces)
        self._failures: OrderedDict[str, int] = OrderedDict()
        self.on_failure: Callable[[str, int], None] | None = None
        self.challenges = 0
        self.authorized = 0
        self.failed = 0
        self.stale = 0
        self.replayed = 0
        self.no_credentials = 0

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------------ challenges

    def challenge(self, realm: str, qop: str | None = None, stale: bool = False,
                  algorithms: str | Sequence[str] | None = None) -> list[str]:
        """The WWW-Authenticate / Proxy-Authenticate values: one per algorithm, in order (default
        [auth] algorithms, SHA-256 first, RFC 8760 §2.4), sharing one fresh nonce. ``algorithms``
        ("MD5" or "MD5,SHA-256", OpenSIPS' argument) narrows the configured ones for this reply.
        Raises ValueError for a qop or an algorithm that is not supported or not configured."""
        qop = self.cfg.qop if qop is None else qop
        if qop not in ("auth", ""):
            raise ValueError(f"qop {qop!r}: only \"auth\" or \"\" (auth-int is not supported)")
        algs = self.cfg.algorithms
        if algorithms is not None:
            names = algorithms.split(",") if isinstance(algorithms, str) else list(algorithms)
            algs = [a.strip().upper() for a in names if a.strip()]
            bad = [a for a in algs if a not in self.cfg.algorithms]
            if bad or not algs:
                raise ValueError(f"algorithms {algorithms!r}: expected some of {', '.join(self.cfg.algorithms)}")
        nonce = self.nonces.issue(realm, self.clock(), qop=bool(qop))
        self.challenges += 1
        return [digest.challenge(realm, nonce, alg, qop, stale) for alg in algs]

    # ------------------------------------------------------------------ verification

    def authorize(self, values: Sequence[str], realm: str, method: str, source_ip: str,
                  request_key: object = None) -> Result:
        """Check the credentials among ``values`` (the request's Authorization or
        Proxy-Authorization values) for ``realm``; the first Digest one for the realm counts."""
        cred = None
        index = None
        for i, value in enumerate(values):
            if digest.realm_of(value) == realm:
                index = i
                cred = digest.parse_credentials(value)
                break
        if index is None:
            self.no_credentials += 1
            return Result(NO_CREDENTIALS, realm=realm)
        result = self._verify(cred, realm, method, request_key)
        result.index = index
        result.realm = realm
        if result.code == AUTHORIZED:
            self.authorized += 1
        elif result.code == STALE_NONCE:
            self.stale += 1
        if result.code == NONCE_REPLAYED:
            self.replayed += 1
        if result.code in _FAILURES:
            self._failed(source_ip)
        return result

    def _verify(self, cred: digest.Credentials | None, realm: str, method: str, request_key: object) -> Result:
        if cred is None:
            return Result(GENERIC_ERROR)
        alg = digest.canonical_algorithm(cred.algorithm)
        if alg is None or alg not in self.cfg.algorithms:
            return Result(GENERIC_ERROR)
        qop = cred.qop
        nc = 1
        if qop:
            if qop != "auth" or not cred.cnonce or len(cred.nc) != 8:
                return Result(GENERIC_ERROR)
            try:
                nc = int(cred.nc, 16)
            except ValueError:
                return Result(GENERIC_ERROR)
            if nc < 1:
                return Result(GENERIC_ERROR)
        hashes = self.store.get(cred.username, realm)
        if hashes is None:
            ha1 = _DUMMY_HA1[alg]  # the same work as for a subscriber: no timing oracle on names
        else:
            ha1 = hashes[0] if alg == "MD5" else hashes[1]
        expected = digest.response(alg, ha1, cred.nonce, method, cred.uri, qop, cred.nc, cred.cnonce)
        ok = digest.matches(expected, cred.response)
        if hashes is None:
            return Result(INVALID_USER)
        if not ok:
            return Result(INVALID_PASSWORD)
        # The response is right: the client knows the password. Now the nonce.
        now = self.clock()
        state, issued, qop_offered = self.nonces.check(cred.nonce, realm, now)
        if state in (STALE, INVALID):
            return Result(STALE_NONCE)
        if qop_offered and not qop:
            return Result(GENERIC_ERROR)  # qop (and its nonce count) dropped from the answer
        if self.counts.use(cred.nonce, issued, nc, request_key, now) == REPLAYED:
            return Result(NONCE_REPLAYED)
        return Result(AUTHORIZED, user=cred.username)

    # ------------------------------------------------------------------ failures and statistics

    def _failed(self, ip: str) -> None:
        self.failed += 1
        table = self._failures
        count = table.pop(ip, 0) + 1
        table[ip] = count  # most recent last: the least recently failing source is dropped first
        if len(table) > self.cfg.max_sources:
            table.popitem(last=False)
        hook = self.on_failure
        if hook is not None:
            hook(ip, count)

    def failures(self, ip: str) -> int:
        """Failed attempts from ``ip`` so far (while it is among the max_sources latest)."""
        return self._failures.get(ip, 0)

    def failure_counts(self) -> dict[str, int]:
        """Failed attempts per source address, the most recently failing last."""
        return dict(self._failures)

    def stats(self) -> dict[str, int]:
        """The ``auth`` statistics group."""
        return {
            "challenges": self.challenges, "authorized": self.authorized, "failed": self.failed,
            "stale": self.stale, "replayed": self.replayed, "no_credentials": self.no_credentials,
            "subscribers": len(self.store), "nonces_tracked": len(self.counts),
            "failing_sources": len(self._failures),
        }
