"""evi backend: OpenSIPS Event Interface events E_ACC_EVENT, E_ACC_MISSED_EVENT and E_ACC_CDR.

Delivered to in-process subscribers (Accounting.subscribe) and as UDP datagrams to the configured
addresses, either as a JSON-RPC 2.0 notification (OpenSIPS >= 3.x event_datagram) or in the
OpenSIPS 2.x event_datagram text grammar:  event_name '\\n' (name '::' value '\\n')*.
Parameters are the OpenSIPS acc ones (method, from_tag, to_tag, callid, sip_code, sip_reason,
time, the extras; CDRs add duration, ms_duration, setuptime, created) plus end_reason and record_id.
UDP is fire-and-forget, so this backend never spools on a lost datagram.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Callable

from loguru import logger

from ..config import AccConfig
from ..records import KIND_CDR, KIND_MISSED, AccRecord
from .base import Backend

E_ACC_EVENT = "E_ACC_EVENT"
E_ACC_MISSED_EVENT = "E_ACC_MISSED_EVENT"
E_ACC_CDR = "E_ACC_CDR"
EVENTS = (E_ACC_EVENT, E_ACC_MISSED_EVENT, E_ACC_CDR)


def event_name(r: AccRecord) -> str:
    if r.kind == KIND_CDR:
        return E_ACC_CDR
    if r.kind == KIND_MISSED:
        return E_ACC_MISSED_EVENT
    return E_ACC_EVENT


def event_params(r: AccRecord, extra_names: tuple[str, ...]) -> dict[str, Any]:
    p: dict[str, Any] = {
        "method": r.method,
        "from_tag": r.from_tag,
        "to_tag": r.to_tag,
        "callid": r.callid,
        "sip_code": r.sip_code,
        "sip_reason": r.sip_reason,
        "time": r.time,
    }
    for n in extra_names:
        p[n] = r.extra.get(n)
    if r.kind == KIND_CDR:
        p.update(duration=r.duration, ms_duration=r.ms_duration, setuptime=r.setuptime, created=r.created, end_reason=r.end_reason)
    p["record_id"] = r.record_id
    return p


def _dg_value(v: Any) -> str:
    s = "" if v is None else str(v)
    # The 2.x grammar: a value with a quote, comma or newline is sent as a quoted string.
    if any(c in s for c in "\",\n\r"):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def encode(name: str, params: dict[str, Any], fmt: str) -> bytes:
    """The datagram payload for one event."""
    if fmt == "json":
        return json.dumps({"jsonrpc": "2.0", "method": name, "params": params}, separators=(",", ":")).encode()
    return (name + "\n" + "".join(f"{k}::{_dg_value(v)}\n" for k, v in params.items())).encode()


def decode_datagram(data: bytes) -> tuple[str, dict[str, str]]:
    """Parse the 2.x text format (for tests and consumers): (event name, {name: value})."""
    lines = data.decode().split("\n")
    params = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition("::")
            if v.startswith('"') and v.endswith('"'):
                v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            params[k] = v
    return lines[0], params


class EviBackend(Backend):
    """Raises the acc events to subscribers and UDP listeners."""

    name = "evi"

    def __init__(self, cfg: AccConfig, subscribers: dict[str, list[Callable[[str, dict[str, Any]], Any]]]) -> None:
        self.cfg = cfg
        self.subscribers = subscribers
        self._addrs = cfg.evi_addresses()
        self._sock: socket.socket | None = None

    async def open(self) -> None:
        if self._addrs and self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    async def write(self, records: list[AccRecord]) -> None:
        names = self.cfg.extra_names
        for r in records:
            name = event_name(r)
            params = event_params(r, names)
            for cb in list(self.subscribers.get(name, ())):
                try:
                    res = cb(name, dict(params))
                    if asyncio.iscoroutine(res):
                        await res
                except Exception:  # a subscriber's bug must not stop accounting
                    logger.exception("acc evi subscriber for {} failed", name)
            if self._sock is not None:
                payload = encode(name, params, self.cfg.evi_format)
                for addr in self._addrs:
                    try:
                        self._sock.sendto(payload, addr)
                    except (BlockingIOError, OSError) as exc:
                        # Datagram delivery is best effort by nature (like OpenSIPS event_datagram).
                        logger.warning("acc evi: datagram to {}:{} not sent: {}", addr[0], addr[1], exc)

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
