"""The named benchmark workloads: exact SIP datagrams, built here and stored in bench/workloads/*.sip.

`python bench/workloads.py --write` regenerates the .sip files; `load()` reads them back and checks
their Content-Length, so every benchmark (Python, C, pytest-benchmark) parses the very same bytes.

seed_invite (875 bytes): the INVITE of the seed document (opensips-usecase.md; "." at line end = CR,
so CRLF line endings) with its placeholders filled with documentation addresses (RFC 5737):
  <ofrom_pvtip>          -> 198.51.100.10  (Via, Contact, SDP o= and c=; 13 characters like the
                            original, so the SDP body stays 286 bytes = the seed's Content-Length)
  <outbound_server_ip>   -> 203.0.113.5    (Request-URI and To)
  <opensips_proxy_pubip> -> 198.51.100.7   (From)
With these choices the whole message is exactly 875 bytes and Content-Length: 286 is correct, as the seed
has it. (The other two placeholders, <from_ip> and <opensips_proxy_ip>, do not occur in the INVITE.)

ok_5via_3rr: the 200 OK that answers that INVITE after it crossed four proxies (5 Via header lines,
3 Record-Routes; one value per line so that every library under test can read it), with a 2xx SDP answer.

options_small: a short out-of-dialog OPTIONS keep-alive with no body.
"""

from __future__ import annotations

import sys
from pathlib import Path

DIR = Path(__file__).resolve().parent / "workloads"
NAMES = ("seed_invite", "ok_5via_3rr", "options_small")

PVT, OUT, PUB = "198.51.100.10", "203.0.113.5", "198.51.100.7"

_SDP_OFFER = [
    "v=0",
    f"o=- 1562584100532486 1 IN IP4 {PVT}",
    "s=Bria 3 release 3.5.5 stamp 71243",
    f"c=IN IP4 {PVT}",
    "t=0 0",
    "m=audio 62710 RTP/AVP 9 0 18 98 101",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:98 ILBC/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
]

_SDP_ANSWER = [
    "v=0",
    f"o=gw 2890844527 2890844528 IN IP4 {OUT}",
    "s=-",
    f"c=IN IP4 {OUT}",
    "t=0 0",
    "m=audio 30000 RTP/AVP 18 101",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
]


def _message(head: list[str], body_lines: list[str] | None) -> bytes:
    body = ("\r\n".join(body_lines) + "\r\n") if body_lines else ""
    head = [line.replace("{CL}", str(len(body.encode()))) for line in head]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def build() -> dict[str, bytes]:
    """Return {name: exact bytes} for every workload."""
    seed_invite = _message(
        [
            f"INVITE sip:2222222222@{OUT};transport=udp SIP/2.0",
            f"Via: SIP/2.0/UDP {PVT}:58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport",
            "Max-Forwards: 70",
            f"Contact: <sip:8887779996@{PVT}:58088;transport=udp>",
            f"To: <sip:2222222222@{OUT}>",
            f"From: <sip:8887779996@{PUB}>;tag=fd542335",
            "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA",
            "CSeq: 1 INVITE",
            "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO",
            "Content-Type: application/sdp",
            "Supported: replaces",
            "User-Agent: Bria 3 release 3.5.5 stamp 71243",
            "Content-Length: {CL}",
        ],
        _SDP_OFFER,
    )
    ok = _message(
        [
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP 192.0.2.40:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.40",
            "Via: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bK77ef4c2312983.1",
            "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKnashds7.2",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK07be.cf297d74.0",
            f"Via: SIP/2.0/UDP {PVT}:58088;received={PUB};"
            "branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport=4539",
            "Record-Route: <sip:192.0.2.40;lr>",
            "Record-Route: <sip:192.0.2.30;lr;ftag=fd542335>",
            "Record-Route: <sip:192.0.2.10;lr>",
            f"To: <sip:2222222222@{OUT}>;tag=as6151ad25",
            f"From: <sip:8887779996@{PUB}>;tag=fd542335",
            "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA",
            "CSeq: 1 INVITE",
            f"Contact: <sip:2222222222@{OUT}:5060>",
            "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY",
            "Supported: replaces, timer",
            "Server: ExampleGW 1.0",
            "Content-Type: application/sdp",
            "Content-Length: {CL}",
        ],
        _SDP_ANSWER,
    )
    options = _message(
        [
            "OPTIONS sip:keepalive@192.0.2.10 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bK.opt1;rport",
            "Max-Forwards: 70",
            "To: <sip:keepalive@192.0.2.10>",
            "From: <sip:monitor@192.0.2.77>;tag=a73kszlfl",
            "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.77",
            "CSeq: 63104 OPTIONS",
            "Content-Length: {CL}",
        ],
        None,
    )
    return {"seed_invite": seed_invite, "ok_5via_3rr": ok, "options_small": options}


def _check(name: str, data: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            if int(line.split(b":", 1)[1]) != len(body):
                raise ValueError(f"{name}: Content-Length does not match the body")
    if name == "seed_invite" and len(data) != 875:
        raise ValueError(f"seed_invite is {len(data)} bytes, not 875")


def load() -> dict[str, bytes]:
    """Read the stored workloads (exact bytes), checked; raise ValueError if one is inconsistent."""
    out = {}
    for name in NAMES:
        data = (DIR / f"{name}.sip").read_bytes()
        _check(name, data)
        out[name] = data
    return out


def main() -> int:
    if "--write" in sys.argv:
        DIR.mkdir(exist_ok=True)
        for name, data in build().items():
            _check(name, data)
            (DIR / f"{name}.sip").write_bytes(data)
            print(f"wrote {DIR / name}.sip ({len(data)} bytes)")
    else:
        built, stored = build(), load()
        for name in NAMES:
            same = "same as built" if built[name] == stored[name] else "DIFFERS from build()"
            print(f"{name}: {len(stored[name])} bytes, {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
