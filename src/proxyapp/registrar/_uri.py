"""Addresses-of-record and Contact URI equality for the registrar (RFC 3261 §10.3 step 5, §19.1.4).

fastsip's ``SipURI.__eq__`` compares the exact text, which is right for a parser and wrong for a
registrar: RFC 3261 §10.3 step 7 looks bindings up "using the URI comparison rules" of §19.1.4,
under which ``sip:alice@HOST;Transport=TCP`` and ``sip:%61lice@host;transport=tcp`` are the same
Contact. ``uri_equal`` implements those rules; ``aor_of`` the canonical AOR of step 5.
"""

from __future__ import annotations

import re

import fastsip

URI = fastsip.SipURI | fastsip.AbsoluteURI

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# RFC 3261 §25.1: the characters a user part may carry unescaped (unreserved / user-unreserved).
_USER_PLAIN = frozenset(_ALNUM + "-_.!~*'()" + "&=+$,;?/")
# §19.1.4: these parameters, when present in either URI, must be present in both and match.
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str) -> str:
    """Every %XX decoded (§19.1.4: an escaped character equals its unescaped form)."""
    if "%" not in text:
        return text
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _canonical_user(user: str) -> str:
    """The user part with needless escapes decoded and the rest in upper-case hex.

    RFC 3261 §10.3 step 5 converts escaped characters to their unescaped form; doing that for
    characters that must stay escaped (``@``, ``:``, space) would make two different users one
    key, so those keep a canonical ``%XX``.
    """

    def one(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _USER_PLAIN else "%" + m.group(1).upper()

    return _ESCAPE.sub(one, user)


def aor_of(uri: URI | str) -> str:
    """The canonical address-of-record of a To (or Request-URI) URI, RFC 3261 §10.3 step 5.

    ``"sip:user@host"``: scheme and host lower-cased, the user as written but with needless
    escapes decoded, the port only when given, password, URI parameters (user-param included)
    and headers dropped. ``sips`` stays ``sips`` (a different AOR, §19.1.4). A user-less URI gives
    ``"sip:host"``. Raises ``ValueError`` for a URI that is not sip:/sips: (tel:, urn:, ...), and
    ``fastsip.URIError`` (a ``ValueError``) for text that is not a URI.
    """
    if isinstance(uri, str):
        uri = fastsip.parse_uri(uri)
    if not isinstance(uri, fastsip.SipURI):
        raise ValueError(f"an address-of-record must be a SIP or SIPS URI, not {uri.scheme}: (RFC 3261 §10.2)")
    host = uri.host.lower()
    port = f":{uri.port}" if uri.port is not None else ""
    user = f"{_canonical_user(uri.user)}@" if uri.user else ""
    return f"{uri.scheme.lower()}:{user}{host}{port}"


def request_aor(msg: fastsip.Request) -> str | None:
    """The canonical AOR of a REGISTER's To URI, or None when To is missing, malformed or not SIP.

    Never raises: the store lookup before ``process_register`` uses it, and ``process_register``
    itself answers the bad cases with the right 4xx.
    """
    try:
        to = msg.to
        if to is None or to.uri is None:
            return None
        return aor_of(to.uri)
    except ValueError:  # fastsip.ParseError is a ValueError too
        return None


def _params(uri: fastsip.SipURI) -> dict[str, str | None]:
    # Names and values compare case-insensitively after unescaping (§19.1.4).
    return {_unescape(k).lower(): (None if v is None else _unescape(v).lower()) for k, v in uri.params.items()}


def _sip_equal(a: fastsip.SipURI, b: fastsip.SipURI) -> bool:
    if a.scheme.lower() != b.scheme.lower():
        return False  # a SIP and a SIPS URI are never equal
    # userinfo is case-sensitive; host case-insensitive; an absent port is not the default port.
    if _unescape(a.user or "") != _unescape(b.user or "") or (a.user is None) != (b.user is None):
        return False
    if _unescape(a.password or "") != _unescape(b.password or "") or (a.password is None) != (b.password is None):
        return False
    if _unescape(a.host).lower() != _unescape(b.host).lower() or a.port != b.port:
        return False
    pa, pb = _params(a), _params(b)
    for name in _STRICT_PARAMS:
        if (name in pa) != (name in pb):
            return False  # user, ttl, method, maddr, transport: in one URI only never matches
    for name in pa.keys() & pb.keys():
        if pa[name] != pb[name]:
            return False
    # Header components are never ignored: the same set, names case-insensitive, values exact.
    ha = {_unescape(k).lower(): _unescape(v) for k, v in a.headers.items()}
    hb = {_unescape(k).lower(): _unescape(v) for k, v in b.headers.items()}
    return ha == hb


def uri_equal(a: URI | str, b: URI | str) -> bool:
    """RFC 3261 §19.1.4 equality of two URIs (SIP/SIPS by its rules; other schemes by their text
    with the scheme case-folded). A string that does not parse equals only the identical string."""
    try:
        ua = fastsip.parse_uri(a) if isinstance(a, str) else a
        ub = fastsip.parse_uri(b) if isinstance(b, str) else b
    except ValueError:
        return str(a) == str(b)
    if isinstance(ua, fastsip.SipURI) and isinstance(ub, fastsip.SipURI):
        return _sip_equal(ua, ub)
    if isinstance(ua, fastsip.SipURI) or isinstance(ub, fastsip.SipURI):
        return False
    return ua.scheme.lower() == ub.scheme.lower() and ua.opaque == ub.opaque
