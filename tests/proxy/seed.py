"""The seed's INVITE, 100 and forwarded INVITE (opensips-usecase.md) with the placeholders filled in."""

FROM_IP = "203.0.113.7"
FROM_PORT = 4539
PVT_IP = "192.168.1.20"
PROXY_IP = "198.51.100.10"
PUB_IP = "198.51.100.11"
OUT_IP = "192.0.2.50"

BODY = (
    "v=0\r\n"
    f"o=- 1562584100532486 1 IN IP4 {PVT_IP}\r\n"
    "s=Bria 3 release 3.5.5 stamp 71243\r\n"
    f"c=IN IP4 {PVT_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 62710 RTP/AVP 9 0 18 98 101\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=yes\r\n"
    "a=rtpmap:98 ILBC/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
    "\r\n"
)

INVITE = (
    f"INVITE sip:2222222222@{OUT_IP};transport=udp SIP/2.0\r\n"
    f"Via: SIP/2.0/UDP {PVT_IP}:58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport\r\n"
    "Max-Forwards: 70\r\n"
    f"Contact: <sip:8887779996@{PVT_IP}:58088;transport=udp>\r\n"
    f"To: <sip:2222222222@{OUT_IP}>\r\n"
    f"From: <sip:8887779996@{PUB_IP}>;tag=fd542335\r\n"
    "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA\r\n"
    "CSeq: 1 INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "Content-Type: application/sdp\r\n"
    "Supported: replaces\r\n"
    "User-Agent: Bria 3 release 3.5.5 stamp 71243\r\n"
    f"Content-Length: {len(BODY)}\r\n"
    "\r\n" + BODY
).encode()

STAMPED_VIA = (
    f"Via: SIP/2.0/UDP {PVT_IP}:58088;received={FROM_IP};"
    f"branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport={FROM_PORT}"
)

TRYING = (
    "SIP/2.0 100 Giving a try\r\n"
    f"{STAMPED_VIA}\r\n"
    f"To: <sip:2222222222@{OUT_IP}>\r\n"
    f"From: <sip:8887779996@{PUB_IP}>;tag=fd542335\r\n"
    "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA\r\n"
    "CSeq: 1 INVITE\r\n"
    "Server: OpenSIPS (2.2.7 (x86_64/linux))\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
).encode()


def forwarded_invite(branch: str, proxy_ip: str = PROXY_IP, proxy_port: int = 5060, rr: str | None = None) -> bytes:
    """The seed's forwarded INVITE, header by header, with our branch."""
    rr = rr if rr is not None else (proxy_ip if proxy_port == 5060 else f"{proxy_ip}:{proxy_port}")
    return (
        f"INVITE sip:2222222222@{OUT_IP};transport=udp SIP/2.0\r\n"
        f"Record-Route: <sip:{rr};lr>\r\n"
        f"Via: SIP/2.0/UDP {proxy_ip}:{proxy_port};branch={branch}\r\n"
        f"{STAMPED_VIA}\r\n"
        "Max-Forwards: 69\r\n"
        f"Contact: <sip:8887779996@{PVT_IP}:58088;transport=udp>\r\n"
        f"To: <sip:2222222222@{OUT_IP}>\r\n"
        f"From: <sip:8887779996@{PUB_IP}>;tag=fd542335\r\n"
        "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA\r\n"
        "CSeq: 1 INVITE\r\n"
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
        "Content-Type: application/sdp\r\n"
        "Supported: replaces\r\n"
        "User-Agent: Bria 3 release 3.5.5 stamp 71243\r\n"
        f"Content-Length: {len(BODY)}\r\n"
        "P-hint: outbound\r\n"
        "\r\n" + BODY
    ).encode()

# Our branch: magic cookie, loop-detection hash, per-transaction unique part, branch index
# (the shape of OpenSIPS' z9hG4bK07be.cf297d74.0).
FORWARDED_BRANCH_RE = r"z9hG4bK[0-9a-f]{8}\.[0-9a-z]+\.0"
