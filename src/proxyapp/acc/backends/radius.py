"""aaa backend: RADIUS accounting (RFC 2866) with pyrad packets over asyncio UDP.

Attributes follow OpenSIPS acc aaa: Acct-Status-Type Start for an answered initial INVITE (also
sent at the answer when the INVITE has the `cdr` flag), Stop for BYE/CANCEL and for a CDR (which
also carries Acct-Session-Time and the Sip-Call-* duration attributes), Failed otherwise; Acct-Session-Id = Call-ID, Service-Type = Sip-Session,
Sip-Method, Sip-Response-Code, Sip-From-Tag, Sip-To-Tag, Event-Timestamp (RFC 2869 §5.3).
Retransmission (RFC 2866 §2, RFC 5080 §2.2.1): a request unanswered after radius_timeout_ms is
sent again byte for byte (same Identifier and Request Authenticator, so the server can
recognise the duplicate) up to radius_retries times.  Acct-Delay-Time (RFC 2866 §5.2) is set
when a packet is built; a spool replay builds a new packet with a new Identifier, as §5.2 requires
when Acct-Delay-Time changes.  Replies are accepted only with a valid Response Authenticator.

Delivery is at least once: FreeRADIUS (3.2) does not cache accounting replies, so a
retransmission that crosses a slow reply is logged a second time (its detail file then holds two
identical records).  RFC 2866 §2 leaves duplicate detection to the server; keep
radius_timeout_ms above the server's answer time so retransmissions stay rare.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from typing import Any

from loguru import logger
from pyrad.dictionary import Dictionary
from pyrad.packet import AccountingRequest, AccountingResponse, AcctPacket, Packet, PacketError

from ..config import AccConfig
from ..records import KIND_CDR, AccRecord
from .base import Backend, BackendError

STATUS_START, STATUS_STOP, STATUS_FAILED = "Start", "Stop", "Failed"
# Extras sent as attributes when configured (OpenSIPS maps extra names to dictionary attributes).
EXTRA_ATTRS = {"src_ip": "Sip-Src-IP", "src_port": "Sip-Src-Port", "ruri_user": "Sip-Uri-User"}
# In flight at once: the Identifier is one octet (RFC 2865 §3); stay well below 256.
WINDOW = 64


def default_dictionary_path() -> str:
    return str(importlib.resources.files("proxyapp.acc").joinpath("dictionary"))


def status_type(r: AccRecord) -> str:
    if r.kind == KIND_CDR:
        return STATUS_STOP
    if r.method == "INVITE" and r.sip_code is not None and 200 <= r.sip_code < 300:
        return STATUS_START
    if r.method in ("BYE", "CANCEL"):
        return STATUS_STOP
    return STATUS_FAILED


def build_attributes(r: AccRecord, cfg: AccConfig, method_names: set[str]) -> dict[str, Any]:
    """The attributes of one record's Accounting-Request (names from the shipped dictionary)."""
    a: dict[str, Any] = {
        "Acct-Status-Type": status_type(r),
        "Service-Type": "Sip-Session",
        "NAS-IP-Address": cfg.radius_nas_ip,
        "Acct-Session-Id": r.callid or "",
        # A method the dictionary has no VALUE for is sent as 0 (OTHER).
        "Sip-Method": r.method if r.method in method_names else 0,
        "Event-Timestamp": int(r.time // 1000),
        "Acct-Delay-Time": max(0, int(time.time() - r.time / 1000)),
    }
    if r.sip_code is not None:
        a["Sip-Response-Code"] = r.sip_code
    if r.from_tag:
        a["Sip-From-Tag"] = r.from_tag
    if r.to_tag:
        a["Sip-To-Tag"] = r.to_tag
    if r.kind == KIND_CDR:
        a["Acct-Session-Time"] = int(r.duration or 0)
        a["Sip-Call-Duration"] = int(r.duration or 0)
        a["Sip-Call-MSDuration"] = int(r.ms_duration or 0)
        a["Sip-Call-Setuptime"] = int((r.setuptime or 0) // 1000)
        a["Sip-Call-Created"] = int((r.created or 0) // 1000)
    for col, attr in EXTRA_ATTRS.items():
        v = r.extra.get(col)
        if v:
            a[attr] = str(v)
    return a


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, backend: "RadiusBackend") -> None:
        self.backend = backend

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.backend._on_reply(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the server is down; the retransmission timer handles it.
        logger.debug("acc radius: {}", exc)


class RadiusBackend(Backend):
    name = "aaa"

    def __init__(self, cfg: AccConfig) -> None:
        self.cfg = cfg
        self.dict = Dictionary(cfg.radius_dictionary or default_dictionary_path())
        self.method_names = set(self.dict.attributes["Sip-Method"].values.forward)
        self.secret = cfg.radius_secret.encode()
        self.server = cfg.radius_address()
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, tuple[AcctPacket, asyncio.Future[bool]]] = {}
        self._next_id = 0
        # Packets sent again after a timeout (each may reach the server's log twice).
        self.retransmitted = 0

    async def open(self) -> None:
        if not self.secret:
            raise BackendError("acc.radius_secret is not set")
        if self._transport is None:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), remote_addr=self.server)

    def _alloc_id(self) -> int:
        for _ in range(256):
            i = self._next_id
            self._next_id = (self._next_id + 1) % 256
            if i not in self._pending:
                return i
        raise BackendError("no free RADIUS identifier")

    def _on_reply(self, data: bytes) -> None:
        if len(data) < 20:
            return
        entry = self._pending.get(data[1])
        if entry is None:
            return  # a late reply to a request already answered or given up
        pkt, fut = entry
        try:
            reply = Packet(packet=data, dict=self.dict, secret=self.secret)
        except PacketError:
            return
        if reply.code == AccountingResponse and pkt.VerifyReply(reply, data) and not fut.done():
            fut.set_result(True)

    async def _send_one(self, r: AccRecord) -> bool:
        assert self._transport is not None
        pkt = AcctPacket(code=AccountingRequest, id=self._alloc_id(), secret=self.secret, dict=self.dict)
        for k, v in build_attributes(r, self.cfg, self.method_names).items():
            pkt[k] = v
        raw = pkt.RequestPacket()
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[pkt.id] = (pkt, fut)
        try:
            for attempt in range(1 + self.cfg.radius_retries):
                self.retransmitted += attempt > 0
                self._transport.sendto(raw)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), self.cfg.radius_timeout_ms / 1000)
                except asyncio.TimeoutError:
                    continue
            return False
        finally:
            self._pending.pop(pkt.id, None)

    async def write(self, records: list[AccRecord]) -> None:
        await self.open()
        done: set[str] = set()
        sem = asyncio.Semaphore(WINDOW)

        async def one(r: AccRecord) -> None:
            async with sem:
                if await self._send_one(r):
                    done.add(r.record_id)

        await asyncio.gather(*(one(r) for r in records))
        if len(done) != len(records):
            raise BackendError(f"RADIUS server {self.server[0]}:{self.server[1]} did not answer", done)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
