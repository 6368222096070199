"""The core's counters: what an operator looks at and the tests assert on."""

from __future__ import annotations


class Stats:
    """Counters an operator looks at (and tests assert on)."""

    __slots__ = (
        "received", "requests", "responses", "retransmissions", "absorbed_acks", "dropped",
        "bad_requests", "forwarded", "stateless", "script_errors", "sent", "keepalives",
    )

    # Declared for the type checker only (annotations, no class attributes: the slots hold them).
    received: int
    requests: int
    responses: int
    retransmissions: int
    absorbed_acks: int
    dropped: int
    bad_requests: int
    forwarded: int
    stateless: int
    script_errors: int
    sent: int
    keepalives: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
