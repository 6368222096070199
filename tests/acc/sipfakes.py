"""Small stand-ins with the fastsip Request/Response attributes accounting reads (unit tests only)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class URI:
    user: str | None
    host: str
    scheme: str = "sip"

    def __str__(self) -> str:
        return f"{self.scheme}:{self.user + '@' if self.user else ''}{self.host}"


@dataclasses.dataclass
class NameAddr:
    uri: URI
    tag: str | None = None


@dataclasses.dataclass
class CSeq:
    seq: int
    method: str


class Headers:
    def __init__(self, items: dict[str, str]) -> None:
        self._h = {k.lower(): v for k, v in items.items()}

    def get(self, name: str, default: Any = None) -> Any:
        return self._h.get(name.lower(), default)


@dataclasses.dataclass
class Request:
    method: str
    call_id: str
    from_: NameAddr
    to: NameAddr
    uri: URI
    cseq: CSeq
    headers: Headers

    def header(self, name: str, default: Any = None) -> Any:  # fastsip's Message.header
        return self.headers.get(name, default)


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    call_id: str
    from_: NameAddr
    to: NameAddr
    cseq: CSeq


def request(method: str, callid: str, from_tag: str, to_tag: str | None = None, cseq: int = 1, ua: str = "Bria 3", swap: bool = False) -> Request:
    caller = NameAddr(URI("8887779996", "198.51.100.1"), from_tag)
    callee = NameAddr(URI("2222222222", "203.0.113.9"), to_tag)
    if swap:  # a request from the callee: From/To swapped
        caller, callee = NameAddr(URI("2222222222", "203.0.113.9"), from_tag), NameAddr(URI("8887779996", "198.51.100.1"), to_tag)
    return Request(method, callid, caller, callee, URI("2222222222", "203.0.113.9"), CSeq(cseq, method), Headers({"User-Agent": ua}))


def response(req: Request, status: int, reason: str, to_tag: str | None) -> Response:
    return Response(status, reason, req.call_id, req.from_, NameAddr(req.to.uri, to_tag or req.to.tag), req.cseq)
