"""A plain-data view of a parsed message: every public attribute, for golden files and backend parity."""

from __future__ import annotations

from typing import Any, Callable

from .errors import ParseError

__all__ = ["snapshot", "uri_dict"]


def uri_dict(uri: Any) -> dict[str, Any] | None:
    """The public fields of a SipURI or AbsoluteURI as a dict (None stays None)."""
    if uri is None:
        return None
    return {
        "text": str(uri),
        "scheme": uri.scheme,
        "user": uri.user,
        "password": uri.password,
        "host": uri.host,
        "port": uri.port,
        "params": dict(uri.params),
        "headers": dict(uri.headers),
    }


def _via(v: Any) -> dict[str, Any]:
    return {
        "protocol": v.protocol,
        "transport": v.transport,
        "host": v.host,
        "port": v.port,
        "branch": v.branch,
        "received": v.received,
        "rport": v.rport,
        "maddr": v.maddr,
        "ttl": v.ttl,
        "params": dict(v.params),
    }


def _name_addr(na: Any) -> dict[str, Any] | None:
    if na is None:
        return None
    return {
        "display": na.display,
        "uri": uri_dict(na.uri),
        "tag": na.tag,
        "params": dict(na.params),
        "wildcard": na.wildcard,
    }


def _guard(fn: Callable[[], Any]) -> Any:
    """Lazy attributes may raise: record the error class and offset instead of the value."""
    try:
        return fn()
    except ParseError as exc:
        return {"error": type(exc).__name__, "offset": exc.offset}


def snapshot(msg: Any) -> dict[str, Any]:
    """Every public attribute of ``msg`` as JSON-ready data; a failing attribute becomes {"error", "offset"}."""
    out: dict[str, Any] = {}
    if msg.is_request:
        out["method"] = msg.method
        out["uri"] = _guard(lambda: uri_dict(msg.uri))
    else:
        out["status"] = msg.status
        out["reason"] = msg.reason
    out["version"] = msg.version
    out["headers"] = [list(item) for item in msg.headers.items()]
    out["via"] = _guard(lambda: [_via(v) for v in msg.via])
    out["from"] = _guard(lambda: _name_addr(msg.from_))
    out["to"] = _guard(lambda: _name_addr(msg.to))
    out["contact"] = _guard(lambda: [_name_addr(c) for c in msg.contact])
    out["route"] = _guard(lambda: [_name_addr(c) for c in msg.route])
    out["record_route"] = _guard(lambda: [_name_addr(c) for c in msg.record_route])
    out["cseq"] = _guard(lambda: None if msg.cseq is None else [msg.cseq.seq, msg.cseq.method])
    out["call_id"] = _guard(lambda: msg.call_id)
    out["max_forwards"] = _guard(lambda: msg.max_forwards)
    out["content_length"] = msg.content_length
    out["content_type"] = msg.content_type
    out["body"] = msg.body.decode("utf-8", "replace")
    out["body_length"] = len(msg.body)
    return out
