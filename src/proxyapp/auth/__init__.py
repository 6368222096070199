"""proxyapp auth (OpenSIPS auth + auth_db): SIP digest authentication, RFC 3261 §22 with RFC 8760.

Integration contract:

    from proxyapp.auth import Auth, AuthConfig
    auth = Auth(AuthConfig.from_dict(config["auth"]), clock=time.time)  # ConfigError names a bad key
    await auth.start()     # load the subscribers into memory, start the periodic reload
    await auth.close()

    auth.challenge(realm, qop=None, stale=False)  # -> [header value, ...] one per algorithm
    auth.authorize(values, realm, method, source_ip, request_key)  # -> Result(code, user, index)
    auth.failures(ip), auth.failure_counts(), auth.stats(), auth.on_failure = fn(ip, count)

Design (OpenSIPS-like, the choices written down):

- Algorithms SHA-256 and MD5, one challenge each, SHA-256 first (RFC 8760 §2.4); a client
  answers the first it supports. ``-sess`` variants and qop=auth-int are not supported.
- qop=auth is offered by default: the response includes the client's nonce count (nc) and
  cnonce. A response without qop (RFC 2069) is accepted only for a challenge that offered no qop
  (``qop = ""`` in [auth] or the verb's argument); the nonce says which (nonce.py), and such a
  nonce serves one request.
- Nonces are stateless until used: issue time and a MAC with the server's secret (nonce.py), so
  a nonce from a restarted proxy or another node with a different secret is simply not ours.
  Verification order: the response first, then the nonce. A wrong response is INVALID_PASSWORD
  (or INVALID_USER), whatever the nonce; a right one with an expired or foreign nonce is
  STALE_NONCE and the challenge says stale=true (RFC 2617 §3.2.1: the client retries without
  asking its user); a (nonce, nc) already used by another request is NONCE_REPLAYED, also
  challenged with stale=true. The Request-URI is not compared with the credential's uri: the
  method is part of the hash and a (nonce, nc) is accepted once.
- Unknown users cost the same hash work as known ones (no timing oracle on user names); every
  comparison of secrets is hmac.compare_digest.
- Failed attempts (INVALID_USER, INVALID_PASSWORD, GENERIC_ERROR, NONCE_REPLAYED; not
  NO_CREDENTIALS nor STALE_NONCE, which honest clients produce) are counted per source address
  in a bounded table: failures(ip) is the hook for a flood limiter, and on_failure(ip, count) is
  called on each one.
- Subscribers live in SQLite or PostgreSQL as ha1 / ha1_sha256 (store.py); the verbs read a
  memory copy reloaded every refresh_interval seconds, so they never wait for a database.
- With several workers each keeps its own nonce-count table: a (nonce, nc) could be accepted
  once per worker within nonce_expire. The secret is shared by the workers of one start.
"""

from .config import ALGORITHMS, AuthConfig
from .service import (
    AUTHORIZED, CODES, GENERIC_ERROR, INVALID_PASSWORD, INVALID_USER, NO_CREDENTIALS, NONCE_REPLAYED, STALE_NONCE,
    Auth, Result,
)
from .store import SubscriberStore

__all__ = [
    "ALGORITHMS", "AUTHORIZED", "CODES", "GENERIC_ERROR", "INVALID_PASSWORD", "INVALID_USER", "NO_CREDENTIALS",
    "NONCE_REPLAYED", "STALE_NONCE", "Auth", "AuthConfig", "Result", "SubscriberStore",
]
