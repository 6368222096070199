"""A registration binding (RFC 3261 §10.3), with the flow it arrived on (RFC 5626) and its Path (RFC 3327).

This is the one record the registrar writes, the location store keeps and lookup reads. Times are
wall-clock seconds (time.time()), so bindings persisted by one node or process mean the same to
another.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(slots=True)
class Binding:
    """One Contact bound to an address-of-record."""

    aor: str  # canonical AOR: "sip:user@host", scheme and host lower case, no port unless given, no params
    contact: str  # the Contact URI exactly as registered, without <> and without header params
    expires: float  # absolute expiry time (wall clock)
    q: float | None = None  # the Contact's q parameter (0.0-1.0); None when absent (sorts as 1.0)
    call_id: str = ""  # Call-ID and CSeq of the REGISTER that last refreshed it (§10.3 step 7)
    cseq: int = 0
    instance: str | None = None  # +sip.instance (RFC 5626 §4.1), e.g. "<urn:uuid:...>"
    reg_id: int | None = None  # reg-id (RFC 5626 §4.2)
    path: tuple[str, ...] = ()  # the Path header values of the REGISTER, top first (RFC 3327 §5.3)
    # Where the REGISTER came from (its flow, RFC 5626 §5.2, and NAT traversal, RFC 3581): a
    # request for this binding goes there, not to the Contact's host, when the two differ.
    source_transport: str = "udp"  # "udp" | "tcp" | "tls" (a REGISTER over TLS, RFC 3261 §26.2)
    source_host: str = ""
    source_port: int = 0
    socket: str = ""  # the listen socket it arrived on, "udp:127.0.0.1:5060" (str(Listen))
    node: str = ""  # the proxyapp node that received it ("sip:IP:PORT"); several nodes share a store
    user_agent: str = ""
    last_modified: float = 0.0
    # In memory only, never persisted: the edge's TCP connection the REGISTER came on (opaque to
    # everything but the edge), so requests reuse the flow (RFC 5626 §5.3).
    conn: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def sort_q(self) -> float:
        """q for ordering: an absent q counts as 1.0 (the highest preference)."""
        return 1.0 if self.q is None else self.q

    def flow_key(self) -> tuple[str, int | None] | None:
        """RFC 5626 §6: (instance, reg-id) identifies a flow; None for a plain binding."""
        if self.instance is None or self.reg_id is None:
            return None
        return (self.instance, self.reg_id)

    def to_dict(self) -> dict[str, Any]:
        """The persisted form (JSON-friendly; ``conn`` left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "conn"} | {
            "path": list(self.path)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Binding":
        """The inverse of to_dict (unknown keys are ignored, so newer writers stay readable)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"conn"}
        values = {k: v for k, v in data.items() if k in names}
        values["path"] = tuple(values.get("path", ()))
        return cls(**values)
