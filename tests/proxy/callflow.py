"""The benchmark's call (bench/proxy/uac.xml, uas.xml) through the sans-IO proxy core, no sockets.

INVITE (SDP) -> 100 + forwarded INVITE -> 200 -> ACK (by its Route) -> BYE -> 200, the messages
SIPp sends, built here as bytes. Used by the memory test (bytes per transaction and per dialog) and
to profile the per-call Python work of the core:

    python3 -m tests.proxy.callflow 20000            # µs of core CPU per call
    python3 -m tests.proxy.callflow 20000 --profile  # cProfile, top functions
"""

from __future__ import annotations

import sys
import time

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


def new_proxy(acc: object = None) -> Proxy:
    cfg = Config.from_dict({"listen": [f"udp:{PROXY[0]}:{PROXY[1]}"], "log_level": "WARNING"})
    return Proxy(cfg, None, acc, branch_salt="abc123")


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
    gc.set_threshold(50_000, 20, 20)  # as proxyapp's main() does
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


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"{per_call_us(n, '--profile' in sys.argv):.1f} µs per call (core + driver)")
