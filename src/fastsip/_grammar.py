"""RFC 3261 grammar tables: character classes, header names (full and compact), reason phrases."""

from __future__ import annotations

import ipaddress

__all__ = [
    "TOKEN_CHARS",
    "COMPACT_FORMS",
    "CANONICAL_NAMES",
    "REASON_PHRASES",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MAX_HEADERS",
    "REQUIRED_REQUEST_HEADERS",
    "SINGLE_HEADERS",
    "header_key",
    "display_name",
    "ipv6_ok",
    "uint_value",
]

# Default limits: OpenSIPS' BUF_SIZE (65535) for a message; a header count no real
# message reaches but that bounds the work an attacker can make us do.
DEFAULT_MAX_SIZE = 65535
DEFAULT_MAX_HEADERS = 256

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)

# Compact header forms, keyed by the lower-case letter, valued by the lower-case full name.
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",  # RFC 3261 §20.8
    "m": "contact",  # §20.10
    "e": "content-encoding",  # §20.12
    "l": "content-length",  # §20.14
    "c": "content-type",  # §20.15
    "f": "from",  # §20.20
    "s": "subject",  # §20.36
    "k": "supported",  # §20.37
    "t": "to",  # §20.39
    "v": "via",  # §20.42
    "o": "event",  # RFC 6665 §8.2.1
    "u": "allow-events",  # RFC 6665 §8.2.2
    "r": "refer-to",  # RFC 3515 §2.1
    "b": "referred-by",  # RFC 3892 §3
    "x": "session-expires",  # RFC 4028 §4
    "y": "identity",  # RFC 8224 §4
    "a": "accept-contact",  # RFC 3841 §9.2
    "j": "reject-contact",  # RFC 3841 §9.2
    "d": "request-disposition",  # RFC 3841 §9.1
    "n": "identity-info",  # RFC 4474 (obsoleted, still seen)
}

_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type",
    "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity", "Identity-Info",
    "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
    "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires",
    "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]
# Lower-case full name -> the spelling the RFCs use.
CANONICAL_NAMES: dict[str, str] = {name.lower(): name for name in _CANONICAL}


# RFC 3261 §8.1.1: a request MUST hold To, From, CSeq, Call-ID, Max-Forwards and Via (in that order
# there). Max-Forwards is left out on purpose: a receiver treats a missing one as passing the check
# (§16.3 step 3), and RFC 4475 §3.4.1 (an RFC 2543 INVITE without it) must be accepted.
# (lookup key, RFC spelling)
REQUIRED_REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    ("to", "To"), ("from", "From"), ("cseq", "CSeq"), ("call-id", "Call-ID"), ("via", "Via"),
)
# Headers whose grammar allows one value (RFC 3261 §7.3.1: only comma-separated lists may repeat);
# a message holding two is malformed (RFC 4475 §3.3.8). Content-Length is checked by the framing.
SINGLE_HEADERS: tuple[tuple[str, str], ...] = (
    ("to", "To"), ("from", "From"), ("cseq", "CSeq"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards"),
)


def ipv6_ok(text: str) -> bool:
    """True when ``text`` (between the brackets of an IPv6reference) is an IPv6 address.

    RFC 3261 §25.1 IPv6address, with its "three colons" typo fixed as RFC 5118 §4.10 says:
    ``2001:db8:::192.0.2.1`` is refused, ``2001:db8::192.0.2.1`` and ``::ffff:192.0.2.10`` are not.
    """
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def uint_value(s: str, maxval: int, maxlen: int) -> int | None:
    """The value of ``s`` when it is 1*DIGIT (ASCII) worth at most ``maxval``, else None.

    Leading zeros are accepted and not counted against ``maxlen`` significant digits
    (RFC 4475 §3.1.1.1: ``Max-Forwards: 0068`` is 68); ``maxlen`` keeps int() off huge strings.
    """
    if not s or not (s.isascii() and s.isdigit()):
        return None
    t = s.lstrip("0")
    if len(t) > maxlen:
        return None
    v = int(t) if t else 0
    return v if v <= maxval else None


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact forms expanded."""
    lower = name.lower()
    return COMPACT_FORMS.get(lower, lower)


def display_name(key: str, raw: str) -> str:
    """The name to show for a header: the RFC spelling when known, else as written."""
    return CANONICAL_NAMES.get(key, raw)


# RFC 3261 §21 and extensions: the default reason phrase of each status code.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 428: "Use Identity Header", 429: "Provide Referrer Identity",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}
