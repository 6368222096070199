"""Digest arithmetic (RFC 2617 §3.2, RFC 7616 §3.4, RFC 8760 for SIP) and header text, no state.

    ha1(alg, user, realm, password)                  H(user:realm:password), hex
    response(alg, ha1, nonce, method, uri, qop, nc, cnonce)
        qop "auth": H(HA1:nonce:nc:cnonce:auth:HA2); qop "": H(HA1:nonce:HA2) (RFC 2069)
        with HA2 = H(method:uri)
    parse_credentials('Digest username="a", ...')   -> Credentials, or None when not Digest
    challenge(realm, nonce, alg, qop, stale)         -> the WWW-/Proxy-Authenticate value
    matches(expected_hex, given)                     constant-time comparison (hmac.compare_digest)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def h(alg: str, text: str) -> str:
    """H(data) of the algorithm, lowercase hex. Raises KeyError for an unknown algorithm."""
    return _HASHES[alg](text.encode("utf-8")).hexdigest()


def ha1(alg: str, user: str, realm: str, password: str) -> str:
    return h(alg, f"{user}:{realm}:{password}")


def response(alg: str, ha1_hex: str, nonce: str, method: str, uri: str, qop: str = "auth", nc: str = "",
             cnonce: str = "") -> str:
    ha2 = h(alg, f"{method}:{uri}")
    if qop:
        return h(alg, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(alg, f"{ha1_hex}:{nonce}:{ha2}")


def matches(expected_hex: str, given: str) -> bool:
    """Constant-time comparison of the expected response with the client's (case-insensitive hex)."""
    return hmac.compare_digest(expected_hex.encode("ascii"), given.strip().lower().encode("ascii", "replace"))


def canonical_algorithm(value: str | None) -> str | None:
    """The algorithm a credential names (absent: MD5, RFC 2617); None for one we do not support."""
    if value is None or value == "":
        return "MD5"
    up = value.strip().strip('"').upper()
    return up if up in _HASHES else None


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """The parameters of one Authorization / Proxy-Authorization header (RFC 3261 §25.1)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    qop: str = ""
    nc: str = ""
    cnonce: str = ""
    opaque: str | None = None


def _params(text: str) -> dict[str, str]:
    """``k=v, k="quoted \\" value"`` -> {k: v} (keys lowercased, quotes and escapes removed)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        start = i
        while i < n and text[i] not in "=, \t":
            i += 1
        key = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            # a token without a value: skip to the next comma
            while i < n and text[i] != ",":
                i += 1
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1  # the closing quote
            value = "".join(buf)
        else:
            start = i
            while i < n and text[i] not in ", \t":
                i += 1
            value = text[start:i]
        if key and key not in out:
            out[key] = value
    return out


def parse_credentials(value: str) -> Credentials | None:
    """One header value; None when it is not a Digest credential with the required parameters."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    p = _params(rest)
    try:
        return Credentials(
            username=p["username"], realm=p["realm"], nonce=p["nonce"], uri=p["uri"], response=p["response"],
            algorithm=p.get("algorithm"), qop=p.get("qop", "").lower(), nc=p.get("nc", "").lower(),
            cnonce=p.get("cnonce", ""), opaque=p.get("opaque"),
        )
    except KeyError:
        return None


def realm_of(value: str) -> str | None:
    """The realm of a credential without parsing the rest (None when absent or not Digest)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    return _params(rest).get("realm")


def challenge(realm: str, nonce: str, alg: str, qop: str = "auth", stale: bool = False) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §22.1, RFC 8760 §2.2)."""
    parts = [f'Digest realm="{realm}"', f'nonce="{nonce}"']
    if qop:
        parts.append(f'qop="{qop}"')
    parts.append(f"algorithm={alg}")
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)
