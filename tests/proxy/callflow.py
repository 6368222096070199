"""The benchmark's call (bench/proxy/uac.xml, uas.xml) through the sans-IO proxy core, no sockets.

INVITE (SDP) -> 100 + forwarded INVITE -> 200 -> ACK (by its Route) -> BYE -> 200, the messages
SIPp sends, built here as bytes. Used by the memory test (bytes per transaction and per dialog) and
to profile the per-call Python work of the core:

    python3 -m tests.proxy.callflow 20000            # µs of core CPU per call
    python3 -m tests.proxy.callflow 20000 --profile  # cProfile, top functions
    python3 -m tests.proxy.callflow 20000 --acc      # plain, then with SQLite accounting + CDRs
    python3 -m tests.proxy.callflow 20000 --acc --process   # the same, accounting engine in a child
    python3 -m tests.proxy.callflow 20000 --acc-events  # only the accounting calls of each call

--acc runs the calls twice in one process, first without accounting, then with the bench's
accounting script (bench/proxy/proxyapp_acc_script.py: db CDR + failed on the initial INVITE, db on
the BYE) and a real Accounting writing to a temporary SQLite file, inside an asyncio loop that lets
its writers run between calls.  CPU is process time, and the SQLite writer process's
CPU is reported beside it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import fastsip

from proxyapp.config import Config
from proxyapp.proxy import Proxy, Target
from proxyapp.transaction import Send

PROXY = ("127.0.0.1", 45060)
CALLER = ("127.0.0.1", 45080)
CALLEE = ("127.0.0.1", 45070)

SDP = (
    "v=0\r\no=- 1562584100532486 1 IN IP4 127.0.0.1\r\ns=fastsip bench\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 45400 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def invite(n: int) -> bytes:
    return (
        f"INVITE sip:bench@{CALLEE[0]}:{CALLEE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{n}-1-0;rport\r\n"
        f"From: <sip:caller@{CALLER[0]}:{CALLER[1]}>;tag=1SIPpTag00{n}\r\n"
        f"To: <sip:bench@{CALLEE[0]}:{CALLEE[1]}>\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@{CALLER[0]}:{CALLER[1]};transport=UDP>\r\n"
        "Max-Forwards: 70\r\n"
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n"
        "User-Agent: fastsip-bench-uac\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def answer(forwarded: bytes, n: int) -> bytes:
    """The callee's 200 (Vias, Record-Route, From, To with its tag, Call-ID, CSeq, Contact, SDP)."""
    req = fastsip.parse(forwarded)
    rr = tuple(("Record-Route", v) for v in req.headers.getall("Record-Route"))
    hdrs = rr + (("Contact", f"<sip:callee@{CALLEE[0]}:{CALLEE[1]};transport=UDP>"),)
    return bytes(fastsip.make_response(req, 200, "OK", to_tag=f"1SIPpTag01{n}", headers=hdrs, body=SDP.encode(),
                                       content_type="application/sdp"))


def in_dialog(method: str, n: int, cseq: int, route: str) -> bytes:
    return (
        f"{method} sip:callee@{CALLEE[0]}:{CALLEE[1]};transport=UDP SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{n}-{cseq}-{method};rport\r\n"
        f"Route: {route}\r\n"
        f"From: <sip:caller@{CALLER[0]}:{CALLER[1]}>;tag=1SIPpTag00{n}\r\n"
        f"To: <sip:bench@{CALLEE[0]}:{CALLEE[1]}>;tag=1SIPpTag01{n}\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def ok_for(forwarded: bytes) -> bytes:
    return bytes(fastsip.make_response(fastsip.parse(forwarded), 200, "OK"))


def new_proxy(acc: object = None, script: object = None, params: dict[str, str] | None = None) -> Proxy:
    cfg = Config.from_dict({"listen": [f"udp:{PROXY[0]}:{PROXY[1]}"], "log_level": "WARNING",
                            "script_params": params or {}})
    return Proxy(cfg, script, acc, branch_salt="abc123")


def bench_acc_script() -> object:
    """The routing script of bench/proxy/run.py's acc_db variant, with acc_types = "db"."""
    import importlib.util
    from pathlib import Path

    from proxyapp.script import Script

    path = Path(__file__).resolve().parents[2] / "bench" / "proxy" / "proxyapp_acc_script.py"
    spec = importlib.util.spec_from_file_location("proxyapp_acc_script", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return Script(mod, str(path))


class Flow:
    """Drives calls through one Proxy; precomputes the callee's messages outside the timed part."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.listen = proxy.cfg.listen[0]

    def rx(self, data: bytes, src: tuple[str, int]) -> list[object]:
        return self.proxy.receive(data, Target("udp", src[0], src[1], None, self.listen))

    def setup(self, n: int) -> str:
        """INVITE .. 200 .. ACK: one answered dialog; returns the caller's route set for the BYE."""
        out = self.rx(invite(n), CALLER)
        fwd = [a.data for a in out if type(a) is Send and a.data.startswith(b"INVITE")][0]
        ok = answer(fwd, n)
        out = self.rx(ok, CALLEE)
        up = [a.data for a in out if type(a) is Send][0]
        route = fastsip.parse(up).headers.get("Record-Route")
        self.rx(in_dialog("ACK", n, 1, route), CALLER)
        return route

    def teardown(self, n: int, route: str) -> None:
        out = self.rx(in_dialog("BYE", n, 2, route), CALLER)
        fwd = [a.data for a in out if type(a) is Send][0]
        self.rx(ok_for(fwd), CALLEE)


def per_call_us(calls: int, profile: bool = False) -> float:
    """Core CPU µs per full call (the callee's messages are built by the driver, inside the timing:
    an upper bound; the driver's own share is measured separately by ``driver_us``)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.disable()  # as proxyapp's main() does
    flow = Flow(new_proxy())
    for n in range(200):  # warm-up
        flow.teardown(n, flow.setup(n))
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.process_time()
    for n in range(1000, 1000 + calls):
        flow.teardown(n, flow.setup(n))
    dt = time.process_time() - t0
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)
    return dt / calls * 1e6


def per_call_us_acc(calls: int, profile: bool = False, engine: str = "inline") -> tuple[float, float, float, int]:
    """(plain µs per call, accounting µs per call in this process, in the child processes (the
    SQLite writer; with engine "process" the accounting process too), rows written): the same
    calls through a proxy without and then with SQLite accounting, in one run (compare within
    one run only)."""
    import asyncio
    import gc
    import os
    import sqlite3
    import tempfile

    from proxyapp.acc import AccConfig, for_config

    async def run() -> tuple[float, float, float, int]:
        d = tempfile.mkdtemp(prefix="callflow-acc-")
        cfg = AccConfig.from_dict({"db_url": os.path.join(d, "acc.db"), "spool_dir": os.path.join(d, "spool"), "engine": engine})
        acc = for_config(cfg)
        await acc.start()
        out = []
        for with_acc in (False, True):
            p = new_proxy(acc if with_acc else None, bench_acc_script(), {"acc_types": "db"})
            flow = Flow(p)
            for n in range(200):  # warm-up
                flow.teardown(n, flow.setup(n))
            await asyncio.sleep(0.1)
            prof = None
            if profile and with_acc:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t0 = time.process_time()
            c0 = os.times()
            base = 1_000_000 if with_acc else 1000
            for n in range(base, base + calls):
                flow.teardown(n, flow.setup(n))
                await asyncio.sleep(0)  # a loop iteration per call, as datagrams give the proxy
            await acc.close()  # with_acc: the writer's remaining work is counted too
            dt = time.process_time() - t0
            c1 = os.times()  # the SQLite writer process, reaped by close()
            child = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
            if prof is not None:
                import pstats

                prof.disable()
                pstats.Stats(prof).sort_stats(os.environ.get("CALLFLOW_SORT", "tottime")).print_stats(40)
            out.append(dt / calls * 1e6)
            out.append(child / calls * 1e6)
            if not with_acc:
                acc = for_config(acc.cfg)
                await acc.start()
        with sqlite3.connect(os.path.join(d, "acc.db")) as conn:
            rows = conn.execute("select count(*) from acc").fetchone()[0]
        return out[0], out[2], out[3], rows

    gc.collect()
    gc.freeze()
    gc.disable()  # as proxyapp's main() does
    return asyncio.run(run())


def acc_events_us(calls: int) -> float:
    """µs per call of the Accounting calls alone (no proxy): the events the proxy reports for one
    call -- INVITE seen, 200 forwarded, INVITE completed with a db cdr|failed mark, ACK and BYE
    seen, BYE completed with a db failed mark -- on messages parsed beforehand, with backends that
    drop the records (the engine's work on the event loop, nothing else)."""
    import asyncio
    import gc
    import tempfile

    from proxyapp.acc import AccConfig, Accounting, AccMark
    from proxyapp.acc.backends.base import Backend

    class Drop(Backend):
        async def write(self, records: list[Any]) -> None:
            pass

    def messages(n: int) -> tuple[Any, Any, Any, Any]:
        inv, ok = fastsip.parse(invite(n)), fastsip.parse(answer(invite(n), n))
        ack = fastsip.parse(in_dialog("ACK", n, 1, "<sip:127.0.0.1:45060;lr>"))
        bye = fastsip.parse(in_dialog("BYE", n, 2, "<sip:127.0.0.1:45060;lr>"))
        for m in (inv, ok, ack, bye):  # what the proxy has read before accounting sees them
            m.from_, m.to, m.call_id, m.cseq
        return inv, ok, ack, bye

    async def run() -> float:
        cfg = AccConfig.from_dict({"spool_dir": tempfile.mkdtemp(prefix="callflow-events-"), "fsync": False, "queue_size": 10 * calls})
        acc = Accounting(cfg, backends={n: Drop() for n in ("log", "db", "aaa", "evi")})
        await acc.start()
        sets = [messages(n) for n in range(calls)]
        src = ("127.0.0.1", 45080)
        invite_mark, bye_mark = AccMark.parse("db", "cdr|failed"), AccMark.parse("db", "failed")
        gc.collect()
        gc.freeze()
        gc.disable()  # as proxyapp's main() does
        t0 = time.thread_time()
        for inv, ok, ack, bye in sets:
            ts = time.time()
            acc.observe_request(inv, src, ts)
            acc.observe_response(ok, ts)
            mark = AccMark(set(invite_mark.types), invite_mark.cdr, invite_mark.missed, invite_mark.failed)
            acc.transaction_completed(mark, inv, 200, "OK", ok.to.tag, src, ts)
            acc.observe_request(ack, src, ts)
            acc.observe_request(bye, src, ts)
            mark = AccMark(set(bye_mark.types), bye_mark.cdr, bye_mark.missed, bye_mark.failed)
            acc.transaction_completed(mark, bye, 200, "OK", None, src, ts)
        acc.process_events()  # the events wait for their batch: processing them is the work
        dt = time.thread_time() - t0
        await acc.close()
        return dt / calls * 1e6

    return asyncio.run(run())


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    if "--acc-events" in sys.argv:
        print(f"{acc_events_us(n):.1f} µs of Accounting calls per call")
    elif "--acc" in sys.argv:
        engine = "process" if "--process" in sys.argv else "inline"
        plain, with_acc, writer, rows = per_call_us_acc(n, "--profile" in sys.argv, engine)
        print(f"plain {plain:.1f} µs per call; with SQLite accounting ({engine} engine) {with_acc:.1f} µs in the proxy "
              f"process ({with_acc / plain:.2f}x) + {writer:.1f} µs in its children; {rows} rows for {n} calls + warm-up")
    else:
        print(f"{per_call_us(n, '--profile' in sys.argv):.1f} µs per call (core + driver)")
