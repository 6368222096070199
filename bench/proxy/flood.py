"""A bounded SIP flood on loopback, for bench/proxy/attack_run.py (the "under attack" proxy benchmark).

    python bench/proxy/flood.py --target 127.0.0.1:45060 --kind invite --rate 2000 --count 30000 \\
        --seconds 15 --sources 127.0.1.1-127.0.1.100 --port 45115 --stats flood.json

Kinds (what an operator's edge sees from the Internet; every datagram is fire-and-forget, as the attack
tools send them: no retransmission, no ACK, answers only counted):
- invite: INVITEs without credentials claiming to be from one of the proxy's users (From sip:NNN@DOMAIN,
  the proxy's domain, as toll-fraud scripts copy the target's domain) to an international number:
  an authenticating proxy answers each with a 407 challenge, or drops it once the source is banned.
- scan: SIPVicious svmap's probe, OPTIONS with User-Agent: friendly-scanner (the headers svmap 0.3
  sends): a proxy with a scanner filter drops it unanswered.

Sources: one address (127.0.0.2) or a range (127.0.1.1-127.0.1.100); datagrams go round-robin over them
at --rate in total, so a range of N spreads the flood to rate/N per source (under a per-source flood
limit such as pike's, it is then never banned). Every address must be in 127.0.0.0/8; the flood stops
after --count datagrams or --seconds, whichever is first, or at SIGTERM, and writes its statistics
(sent, send errors, answers by status code, its own CPU time) to --stats as JSON.
No name is ever resolved: addresses only.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
from pathlib import Path


def loopback(addr: str) -> str:
    if ipaddress.ip_address(addr) not in ipaddress.ip_network("127.0.0.0/8"):
        raise SystemExit(f"flood.py: {addr} is not in 127.0.0.0/8")
    return addr


def sources(spec: str) -> list[str]:
    if "-" in spec:
        lo, hi = (ipaddress.ip_address(loopback(x)) for x in spec.split("-", 1))
        out = [str(ipaddress.ip_address(i)) for i in range(int(lo), int(hi) + 1)]
    else:
        out = [str(loopback(x)) for x in spec.split(",")]
    if not out or len(out) > 4096:
        raise SystemExit("flood.py: 1 to 4096 sources")
    return out


def invite(n: int, src: str, port: int, target: str, domain: str) -> bytes:
    tag = f"{n:x}{random.getrandbits(24):06x}"
    ext = 100 + n % 900
    body = (f"v=0\r\no=- {n} 1 IN IP4 {src}\r\ns=-\r\nc=IN IP4 {src}\r\nt=0 0\r\n"
            "m=audio 45400 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:011972{n % 100000000:08d}@{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{port};branch=z9hG4bK-fl{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{ext}@{domain}>;tag={tag}\r\n"
            f"To: <sip:011972{n % 100000000:08d}@{domain}>\r\n"
            f"Call-ID: fl{tag}@{src}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:{ext}@{src}:{port}>\r\n"
            "User-Agent: Zoiper rv2.10.8.2\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def scan(n: int, src: str, port: int, target: str, domain: str) -> bytes:
    tag = f"{n:x}{random.getrandbits(24):06x}"
    return (f"OPTIONS sip:100@{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{port};branch=z9hG4bK-{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
            f'From: "sipvicious"<sip:100@1.1.1.1>;tag={tag}\r\n'
            "User-Agent: friendly-scanner\r\n"
            f"Call-ID: {n}{tag}\r\n"
            f"Contact: sip:100@{src}:{port}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n").encode()


KINDS = {"invite": invite, "scan": scan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="IP:PORT of the proxy (127.0.0.0/8)")
    ap.add_argument("--kind", choices=sorted(KINDS), required=True)
    ap.add_argument("--rate", type=float, required=True, help="datagrams per second, all sources together")
    ap.add_argument("--count", type=int, required=True, help="stop after this many datagrams")
    ap.add_argument("--seconds", type=float, required=True, help="stop after this long")
    ap.add_argument("--sources", default="127.0.0.2", help="ADDR[,ADDR...] or FIRST-LAST, in 127.0.0.0/8")
    ap.add_argument("--port", type=int, required=True, help="source UDP port (the same on every source address)")
    ap.add_argument("--domain", default="bench.test", help="invite: the proxy's domain claimed in From")
    ap.add_argument("--stats", required=True, help="write the statistics here (JSON)")
    args = ap.parse_args()

    host, _, port_s = args.target.rpartition(":")
    target = (loopback(host), int(port_s))
    srcs = sources(args.sources)
    make = KINDS[args.kind]
    socks = []
    sel = selectors.DefaultSelector()
    for src in srcs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, args.port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append((s, src))

    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sent = errors = 0
    answers: dict[str, int] = {}
    t0 = time.monotonic()
    end = t0 + args.seconds
    period = 1.0 / args.rate
    try:
        while not stop and sent < args.count:
            now = time.monotonic()
            if now >= end:
                break
            due = min(args.count, int((now - t0) * args.rate) + 1)
            while sent < due:
                s, src = socks[sent % len(socks)]
                try:
                    s.sendto(make(sent, src, args.port, target[0], args.domain), target)
                except OSError as exc:  # ENOBUFS, ECONNREFUSED from an earlier ICMP error
                    errors += 1
                    if exc.errno not in (errno.ENOBUFS, errno.ECONNREFUSED, errno.EAGAIN):
                        raise
                sent += 1
            wait = max(0.0, t0 + sent * period - time.monotonic())
            for key, _ in sel.select(min(wait, 0.05)):
                sock = key.fileobj
                for _ in range(64):
                    try:
                        data = sock.recv(65535)  # type: ignore[union-attr]
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    code = data[8:11].decode(errors="replace") if data.startswith(b"SIP/2.0 ") else "request"
                    answers[code] = answers.get(code, 0) + 1
    finally:
        elapsed = time.monotonic() - t0
        cpu = os.times()
        Path(args.stats).write_text(json.dumps({
            "kind": args.kind, "rate": args.rate, "sources": len(srcs), "sent": sent, "send_errors": errors,
            "seconds": round(elapsed, 3), "achieved_rate": round(sent / elapsed, 1) if elapsed > 0 else 0.0,
            "answers": answers, "cpu_s": round(cpu.user + cpu.system, 3)}))
        for s, _ in socks:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
