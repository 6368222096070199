"""aaa backend against a real FreeRADIUS (Debian freeradius, started by the fixture on loopback)."""

import asyncio
import socket
import time

import pytest

from proxyapp.acc import AccConfig, Accounting, AccMark

from .fixtures import FreeRadius, free_port
from .memory import settle
from .sipfakes import request, response

SRC = ("192.0.2.7", 4539)
pytestmark = pytest.mark.timeout(120)


def _cfg(tmp_path, port, **kw):
    d = {"spool_dir": str(tmp_path / "spool"), "db_url": str(tmp_path / "a.db"), "flush_interval_ms": 1, "radius_server": f"127.0.0.1:{port}", "radius_secret": FreeRadius.SECRET}
    d.update(kw)
    return AccConfig.from_dict(d)


def test_radius_start_stop_failed_in_detail_file(freeradius_server, tmp_path):
    fr = freeradius_server
    now = time.time()

    async def go():
        acc = Accounting(_cfg(tmp_path, fr.port))
        await acc.start()
        inv = request("INVITE", "rad-call-1", "ft")
        acc.observe_request(inv, SRC, now)
        acc.observe_response(response(inv, 200, "OK", "tt"), now + 1)
        acc.transaction_completed(AccMark.parse("aaa"), inv, 200, "OK", "tt", SRC, now + 1)  # Start
        bye = request("BYE", "rad-call-1", "ft", "tt", cseq=2)
        acc.transaction_completed(AccMark.parse("aaa"), bye, 200, "OK", "tt", SRC, now + 5)  # Stop
        acc.transaction_completed(AccMark.parse("aaa", "failed"), request("INVITE", "rad-call-2", "f2"), 486, "Busy Here", "t2", SRC, now + 6)  # Failed
        # a CDR to aaa: Stop with the duration attributes
        inv3 = request("INVITE", "rad-call-3", "f3")
        acc.observe_request(inv3, SRC, now)
        acc.transaction_completed(AccMark.parse("aaa", "cdr"), inv3, 200, "OK", "t3", SRC, now + 2)
        bye3 = request("BYE", "rad-call-3", "f3", "t3")
        acc.observe_request(bye3, SRC, now + 9.5)
        acc.transaction_completed(None, bye3, 200, "OK", "t3", SRC, now + 9.6)
        await settle(acc)
        s = acc.stats()["aaa"]
        await acc.close()
        return s

    s = asyncio.run(go())
    assert s["written"] == 5 and s["spooled"] == 0
    recs = fr.detail_records()
    assert len(recs) == 5, recs
    by = {(r["Acct-Session-Id"], r["Acct-Status-Type"]): r for r in recs}
    start = by[("rad-call-1", "Start")]
    assert (start["Sip-Method"], start["Sip-Response-Code"], start["Sip-From-Tag"], start["Sip-To-Tag"]) == ("INVITE", "200", "ft", "tt")
    # Service-Type 15 is Sip-Session for OpenSIPS; FreeRADIUS' stock dictionary names 15 IAPP-Register
    assert start["Service-Type"] == "IAPP-Register"
    assert start["Sip-Src-IP"] == "192.0.2.7"
    assert start["NAS-IP-Address"] == "127.0.0.1"
    stop = by[("rad-call-1", "Stop")]
    assert (stop["Sip-Method"], stop["Sip-Response-Code"]) == ("BYE", "200")
    failed = by[("rad-call-2", "Failed")]
    assert (failed["Sip-Method"], failed["Sip-Response-Code"], failed["Sip-To-Tag"]) == ("INVITE", "486", "t2")
    cdr_start = by[("rad-call-3", "Start")]  # RFC 2866: the session's Start at the answer
    assert (cdr_start["Sip-Method"], cdr_start["Sip-Response-Code"], cdr_start["Sip-To-Tag"]) == ("INVITE", "200", "t3")
    cdr = by[("rad-call-3", "Stop")]
    assert (cdr["Sip-Method"], cdr["Acct-Session-Time"], cdr["Sip-Call-Duration"], cdr["Sip-Call-MSDuration"], cdr["Sip-Call-Setuptime"]) == ("INVITE", "7", "7", "7500", "2")
    # Event-Timestamp (RFC 2869 §5.3) is the record time, in seconds
    assert "Event-Timestamp" in start and "Acct-Delay-Time" in start


def test_radius_server_down_spools_then_replays(tmp_path):
    """No server answering: retransmits per timeout, spools; server starts: replayed in order."""
    fr = FreeRadius()
    try:
        cfg = _cfg(tmp_path, fr.port, radius_timeout_ms=100, radius_retries=1, retry_interval_ms=200, backend_timeout_ms=1000)

        async def go():
            acc = Accounting(cfg)
            await acc.start()
            for i in range(5):
                acc.transaction_completed(AccMark.parse("aaa"), request("BYE", f"rd-{i}", "a", "b"), 200, "OK", "b", SRC, time.time())
            # Each record fails after 2 x 100 ms; wait for all five to reach the spool (a fixed
            # sleep was flaky on a loaded machine), then check none was written.
            deadline = time.monotonic() + 15
            while acc.stats()["aaa"]["spool_pending"] < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            s = acc.stats()["aaa"]
            assert s["spool_pending"] == 5 and s["written"] == 0
            backend = acc.workers["aaa"].backend
            before = backend.retransmitted
            await asyncio.to_thread(fr.start)
            await settle(acc, timeout=20)
            s = acc.stats()["aaa"]
            await acc.close()
            return s, backend.retransmitted - before

        s, resent = asyncio.run(go())
        assert s["replayed"] == 5
        # In order, each once; FreeRADIUS logs a retransmission that crossed a slow reply again
        # (it caches no accounting reply), so a copy may follow, identical to the first, and only
        # as many as packets were sent again once the server was up (CI saw one on a loaded machine).
        recs = fr.detail_records()
        ids = [r["Acct-Session-Id"] for r in recs]
        assert list(dict.fromkeys(ids)) == [f"rd-{i}" for i in range(5)]
        assert len(recs) - 5 <= resent
        first = {}
        for r in recs:
            body = {k: v for k, v in r.items() if k not in ("_header", "Timestamp", "Acct-Unique-Session-Id")}
            assert first.setdefault(r["Acct-Session-Id"], body) == body
    finally:
        fr.destroy()


def test_radius_retransmits_same_packet_and_ignores_forged_reply(tmp_path):
    """RFC 2866/5080: an unanswered request is resent byte for byte; a reply with a wrong
    Response Authenticator is not an acknowledgement."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(3)
    port = srv.getsockname()[1]
    cfg = _cfg(tmp_path, port, radius_timeout_ms=150, radius_retries=3, backend_timeout_ms=3000)
    got = []

    async def go():
        from proxyapp.acc.backends.radius import RadiusBackend
        from proxyapp.acc.records import AccRecord

        b = RadiusBackend(cfg)
        await b.open()
        r = AccRecord(kind="acc", types=("aaa",), table=None, method="BYE", from_tag="a", to_tag="b", callid="rt-1", sip_code=200, sip_reason="OK", time=int(time.time() * 1000))
        task = asyncio.create_task(b.write([r]))
        p1, addr = await asyncio.to_thread(srv.recvfrom, 4096)
        p2, _ = await asyncio.to_thread(srv.recvfrom, 4096)
        got.extend([p1, p2])
        # forged: right id, garbage authenticator
        srv.sendto(bytes([5, p1[1], 0, 20]) + b"\x00" * 16, addr)
        p3, _ = await asyncio.to_thread(srv.recvfrom, 4096)
        got.append(p3)
        # a correct Accounting-Response
        import hashlib

        hdr = bytes([5, p1[1], 0, 20])
        srv.sendto(hdr + hashlib.md5(hdr + p1[4:20] + FreeRadius.SECRET.encode()).digest(), addr)
        await task
        await b.close()

    asyncio.run(go())
    srv.close()
    assert got[0] == got[1] == got[2]  # same Identifier and Request Authenticator
