#!/usr/bin/env python3
"""Write the hand-written part of the fastsip corpus as exact bytes.

  corpus/valid/seed-*.sip    the three messages of shared/seed/opensips-usecase.md
  corpus/valid/edge-*.sip    valid edge cases in the spirit of RFC 4475 (own text)
  corpus/invalid/*.sip       malformed messages

Every message is built here from Python byte strings, so line endings are
explicit (CRLF unless the name says lf). Running it again rewrites the same
bytes (the garbage file uses a fixed seed). `--table` prints the README rows.
"""
import os, random, sys

HERE = os.path.dirname(os.path.abspath(__file__))
VALID = os.path.join(HERE, '..', 'valid')
INVALID = os.path.join(HERE, '..', 'invalid')
ROWS = []  # (dir, name, description)


def crlf(lines):
    """list of str lines -> bytes joined with CRLF (each line terminated)."""
    return ''.join(l + '\r\n' for l in lines).encode('utf-8')


def msg(head, body=b'', cl='auto', eol='\r\n'):
    """head: list of lines (start line + headers, no blank line).
    cl='auto' appends a correct Content-Length; None adds none."""
    head = list(head)
    if cl == 'auto':
        head.append(f'Content-Length: {len(body)}')
    return ''.join(l + eol for l in head).encode('utf-8') + eol.encode() + body


def put(d, name, data, what):
    path = os.path.join(VALID if d == 'valid' else INVALID, name)
    with open(path, 'wb') as fh:
        fh.write(data)
    ROWS.append((d, name, what))


# ---------------------------------------------------------------- seed
SUB = {
    '<from_ip>': '198.51.100.10',
    '<ofrom_pvtip>': '192.0.2.20',
    '<opensips_proxy_ip>': '203.0.113.5',
    '<opensips_proxy_pubip>': '203.0.113.5',
    '<outbound_server_ip>': '198.51.100.77',
}


def fill(s):
    for k, v in SUB.items():
        s = s.replace(k, v)
    return s


SEED_SDP = fill('''v=0
o=- 1562584100532486 1 IN IP4 <ofrom_pvtip>
s=Bria 3 release 3.5.5 stamp 71243
c=IN IP4 <ofrom_pvtip>
t=0 0
m=audio 62710 RTP/AVP 9 0 18 98 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=yes
a=rtpmap:98 ILBC/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv''').split('\n')
SEED_BODY = crlf(SEED_SDP)

SEED_INVITE = [fill(l) for l in '''INVITE sip:2222222222@<outbound_server_ip>;transport=udp SIP/2.0
Via: SIP/2.0/UDP <ofrom_pvtip>:58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport
Max-Forwards: 70
Contact: <sip:8887779996@<ofrom_pvtip>:58088;transport=udp>
To: <sip:2222222222@<outbound_server_ip>>
From: <sip:8887779996@<opensips_proxy_pubip>>;tag=fd542335
Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA
CSeq: 1 INVITE
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO
Content-Type: application/sdp
Supported: replaces
User-Agent: Bria 3 release 3.5.5 stamp 71243
Content-Length: @CL@'''.split('\n')]
put('valid', 'seed-invite.sip',
    crlf([l.replace('@CL@', str(len(SEED_BODY))) for l in SEED_INVITE]) + b'\r\n' + SEED_BODY,
    'seed: INVITE from the Bria client to the OpenSIPS proxy, SDP body (opensips-usecase.md, placeholders filled, Content-Length recomputed)')

put('valid', 'seed-100-trying.sip', crlf([fill(l) for l in '''SIP/2.0 100 Giving a try
Via: SIP/2.0/UDP <ofrom_pvtip>:58088;received=<from_ip>;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport=4539
To: <sip:2222222222@<outbound_server_ip>>
From: <sip:8887779996@<opensips_proxy_pubip>>;tag=fd542335
Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA
CSeq: 1 INVITE
Server: OpenSIPS (2.2.7 (x86_64/linux))
Content-Length: 0
'''.split('\n')]), 'seed: OpenSIPS "100 Giving a try" with received= and rport=4539 (opensips-usecase.md)')

put('valid', 'seed-invite-forwarded.sip', crlf([fill(l).replace('@CL@', str(len(SEED_BODY))) for l in '''INVITE sip:2222222222@<outbound_server_ip>;transport=udp SIP/2.0
Record-Route: <sip:<opensips_proxy_ip>;lr>
Via: SIP/2.0/UDP <opensips_proxy_ip>:5060;branch=z9hG4bK07be.cf297d74.0
Via: SIP/2.0/UDP <ofrom_pvtip>:58088;received=<from_ip>;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport=4539
Max-Forwards: 69
Contact: <sip:8887779996@<ofrom_pvtip>:58088;transport=udp>
To: <sip:2222222222@<outbound_server_ip>>
From: <sip:8887779996@<opensips_proxy_pubip>>;tag=fd542335
Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA
CSeq: 1 INVITE
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO
Content-Type: application/sdp
Supported: replaces
User-Agent: Bria 3 release 3.5.5 stamp 71243
Content-Length: @CL@
P-hint: outbound
'''.split('\n')]) + SEED_BODY,
    'seed: the INVITE as forwarded by OpenSIPS (Record-Route, 2 Vias, Max-Forwards 69, P-hint after Content-Length)')

# ---------------------------------------------------------------- valid edge cases
SDP = crlf(['v=0', 'o=edge 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0',
            'm=audio 49170 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000'])
CALLID = 'edge-{}@192.0.2.1'


def base_req(method, ruri='sip:bob@example.com', cid='x', cseq=1, via='SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-{}',
             extra=()):
    return [f'{method} {ruri} SIP/2.0', 'Via: ' + via.format(cid), 'Max-Forwards: 70',
            f'From: "Alice" <sip:alice@example.com>;tag=a-{cid}', 'To: <sip:bob@example.com>',
            'Call-ID: ' + CALLID.format(cid), f'CSeq: {cseq} {method}'] + list(extra)


put('valid', 'edge-compact-invite.sip', msg([
    'INVITE sip:bob@example.com SIP/2.0',
    'v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-compact1',
    'f: "Alice" <sip:alice@example.com>;tag=c1',
    't: <sip:bob@example.com>',
    'i: edge-compact1@192.0.2.1',
    'CSeq: 1 INVITE',
    'Max-Forwards: 70',
    'm: <sip:alice@192.0.2.1:5060>',
    's: compact forms everywhere',
    'k: timer, 100rel',
    'x: 1800;refresher=uac',
    'e: identity',
    'c: application/sdp',
    f'l: {len(SDP)}'], SDP, cl=None),
    'compact headers v f t i m s k x e c l (Via From To Call-ID Contact Subject Supported Session-Expires Content-Encoding Content-Type Content-Length)')

put('valid', 'edge-compact-refer.sip', msg([
    'REFER sip:bob@example.com SIP/2.0',
    'v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-compact2',
    'f: <sip:alice@example.com>;tag=c2',
    't: <sip:bob@example.com>;tag=b2',
    'i: edge-compact2@192.0.2.1',
    'CSeq: 7 REFER',
    'Max-Forwards: 70',
    'm: <sip:alice@192.0.2.1:5060>',
    'r: <sip:carol@example.com>',
    'b: <sip:alice@example.com>',
    'o: refer',
    'u: refer, presence',
    'y: eyJhbGciOiJFUzI1NiJ9.e30.c2ln;info=<https://cert.example.org/a.pem>;alg=ES256;ppt=shaken',
    'l: 0'], cl=None),
    'compact headers r b o u y (Refer-To Referred-By Event Allow-Events Identity) plus v f t i m l')

put('valid', 'edge-folding.sip', crlf([
    'OPTIONS sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060',
    ' ;branch=z9hG4bK-edge-fold',
    'Max-Forwards: 70',
    'From: "Alice"',
    '\t<sip:alice@example.com>;tag=fold1',
    'To: <sip:bob@example.com>',
    'Call-ID: edge-fold@192.0.2.1',
    'CSeq: 1 OPTIONS',
    'Subject: a subject that',
    '   continues on a second line',
    ' \t and a third one',
    'Accept: application/sdp,',
    '\tapplication/pidf+xml',
    'Content-Length: 0', '']),
    'header folding: continuation lines starting with SP, HT and SP+HT (Via, From, Subject, Accept)')

IPV6_SDP = crlf(['v=0', 'o=alice 1 1 IN IP6 2001:db8::1', 's=-', 'c=IN IP6 2001:db8::1', 't=0 0',
                 'm=audio 49170 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000'])
put('valid', 'edge-ipv6.sip', msg([
    'INVITE sip:bob@[2001:db8::2]:5070;transport=udp SIP/2.0',
    'Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-edge-v6;rport',
    'Via: SIP/2.0/UDP [2001:db8:0:0:0:0:0:a]:5062;branch=z9hG4bK-edge-v6b;received=2001:db8::a',
    'Max-Forwards: 70',
    'From: <sip:alice@[2001:db8::1]>;tag=v6',
    'To: <sip:bob@[2001:db8::2]:5070>',
    'Contact: <sip:alice@[2001:db8::1]:5060>',
    'Call-ID: edge-v6@2001:db8::1',
    'CSeq: 1 INVITE',
    'Content-Type: application/sdp'], IPV6_SDP),
    'IPv6 references in Request-URI, Via (sent-by and received=), From/To/Contact, SDP')

put('valid', 'edge-via-comma-joined.sip', msg([
    'BYE sip:bob@192.0.2.4:5060 SIP/2.0',
    'Via: SIP/2.0/UDP proxy2.example.net:5060;branch=z9hG4bK-edge-p2, SIP/2.0/TCP proxy1.example.com;branch=z9hG4bK-edge-p1;received=192.0.2.9',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-ua',
    'Max-Forwards: 68',
    'From: <sip:alice@example.com>;tag=cj1',
    'To: <sip:bob@example.com>;tag=cj2',
    'Call-ID: edge-commajoin@192.0.2.1',
    'CSeq: 2 BYE']),
    'two Via values comma-joined in one header line, followed by a third Via header (3 hops)')

put('valid', 'edge-many-vias.sip', msg([
    'SIP/2.0 200 OK'] + [
    f'Via: SIP/2.0/UDP proxy{n}.example.com:5060;branch=z9hG4bK-edge-hop{n}' for n in range(6, 0, -1)] + [
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-hop0;received=192.0.2.1;rport=5060',
    'From: <sip:alice@example.com>;tag=mv1',
    'To: <sip:bob@example.com>;tag=mv2',
    'Call-ID: edge-manyvias@192.0.2.1',
    'CSeq: 1 OPTIONS']),
    'response with seven separate Via headers')

put('valid', 'edge-escaped-uri.sip', msg([
    'INVITE sip:alice%20smith@example.com;x-note=a%3Bb%3Dc;transport=udp SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-esc',
    'Max-Forwards: 70',
    'From: <sip:%61lice@example.com>;tag=esc1',
    'To: "Alice Smith" <sip:alice%20smith@example.com>',
    'Contact: <sip:caller@192.0.2.1;x-path=%2Fa%2Fb?Subject=hi%20there&Priority=urgent>',
    'Call-ID: edge-escaped@192.0.2.1',
    'CSeq: 1 INVITE']),
    'percent-escapes in URI user part (%20, %61) and in URI params/headers (%3B %3D %2F %20)')

put('valid', 'edge-display-name-escapes.sip', msg([
    'MESSAGE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-dn',
    'Max-Forwards: 70',
    'From: "Alice \\"the\\" Smith \\\\ Jr." <sip:alice@example.com>;tag=dn1',
    'To: "Smith, Bob" <sip:bob@example.com>',
    'Reply-To: "Lee, \\"Rep\\"; <not a uri>" <sip:rep@example.com>',
    'Call-ID: edge-dispname@192.0.2.1',
    'CSeq: 1 MESSAGE',
    'Content-Type: text/plain'], b'hi'),
    'quoted display names with \\" and \\\\ escapes, a comma, a semicolon and <> inside the quotes')

put('valid', 'edge-contact-list-commas.sip', msg([
    'SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-cl;received=192.0.2.1',
    'From: <sip:bob@example.com>;tag=cl1',
    'To: <sip:bob@example.com>;tag=cl2',
    'Call-ID: edge-contactlist@192.0.2.1',
    'CSeq: 3 REGISTER',
    'Contact: "Bob, home" <sip:bob,1@192.0.2.4:5060;x=a?h=1%2C2>;expires=3600;q=0.9, <sip:bob@192.0.2.5;transport=tcp>;expires=60,sip:bob@192.0.2.6;q=0.1',
    'Contact: <sip:bob@[2001:db8::5]>;expires=30;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
    'Date: Sat, 13 Nov 2010 23:29:00 GMT']),
    'Contact list: commas inside quotes and inside <> (user part bob,1; %2C in a URI header), name-addr and addr-spec mixed, quoted param with <>')

put('valid', 'edge-odd-spacing.sip', crlf([
    'OPTIONS sip:bob@example.com SIP/2.0',
    'Via: SIP / 2.0 / UDP  192.0.2.1 : 5060 ; branch = z9hG4bK-edge-sp ; rport',
    'Max-Forwards:70',
    'From:<sip:alice@example.com>;tag=sp1',
    'To :   <sip:bob@example.com>  ',
    'Call-ID\t:\tedge-spacing@192.0.2.1',
    'CSeq:   1    OPTIONS',
    'Subject   :value',
    'X-Tabbed:\t\ttab\tseparated\t',
    'Content-Length  :  0', '']),
    'legal LWS everywhere: around / ; = : in Via, no space after colon, space/tab before colon, trailing whitespace')

put('valid', 'edge-extension-method.sip', msg([
    'FOOBAR sip:x@y SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-foo',
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=fb1',
    'To: <sip:x@y>',
    'Call-ID: edge-foobar@192.0.2.1',
    'CSeq: 1 FOOBAR',
    'Content-Type: application/x-foobar'], b'payload of an unknown method\r\n'),
    'extension (unknown) method FOOBAR with matching CSeq and a body')

put('valid', 'edge-extension-method-token-chars.sip', msg([
    'NEW-METH.v2_x!%*+`\'~ sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-tok',
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=tk1',
    'To: <sip:bob@example.com>',
    'Call-ID: edge-tokenmethod@192.0.2.1',
    "CSeq: 4 NEW-METH.v2_x!%*+`'~"]),
    "extension method using every token punctuation char - . ! % * _ + ` ' ~")

put('valid', 'edge-tel-uri.sip', msg([
    'INVITE tel:+1-201-555-0123;phone-context=+1 SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-tel',
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=tel1',
    'To: <tel:+1-201-555-0123>',
    'Contact: <sip:alice@192.0.2.1>',
    'Call-ID: edge-tel@192.0.2.1',
    'CSeq: 1 INVITE',
    'Content-Type: application/sdp'], SDP),
    'tel: URI as Request-URI and in To')

put('valid', 'edge-contact-star.sip', msg([
    'REGISTER sip:example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-star',
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=st1',
    'To: <sip:alice@example.com>',
    'Call-ID: edge-star@192.0.2.1',
    'CSeq: 9 REGISTER',
    'Contact: *',
    'Expires: 0']),
    'REGISTER removing all bindings: Contact: * with Expires: 0')

put('valid', 'edge-empty-reason.sip', msg([
    'SIP/2.0 200 ',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-er',
    'From: <sip:alice@example.com>;tag=er1',
    'To: <sip:bob@example.com>;tag=er2',
    'Call-ID: edge-emptyreason@192.0.2.1',
    'CSeq: 1 OPTIONS']),
    'status line with empty reason phrase ("SIP/2.0 200 " then CRLF)')

put('valid', 'edge-utf8-reason.sip', msg([
    'SIP/2.0 486 Besetzt – bitte später 再試行',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-u8',
    'From: <sip:alice@example.com>;tag=u81',
    'To: "Jürgen Müller" <sip:j%C3%BCrgen@example.com>;tag=u82',
    'Call-ID: edge-utf8@192.0.2.1',
    'CSeq: 1 INVITE']),
    'UTF-8 reason phrase (German and Japanese) and UTF-8 display name')

put('valid', 'edge-custom-status.sip', msg([
    'SIP/2.0 699 Custom Global Failure',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-699',
    'From: <sip:alice@example.com>;tag=c1',
    'To: <sip:bob@example.com>;tag=c2',
    'Call-ID: edge-699@192.0.2.1',
    'CSeq: 1 INVITE',
    'Warning: 399 example.com "unregistered status code, still 3 digits"']),
    'unregistered but well-formed status code 699, Warning header with quoted text')

put('valid', 'edge-rport-bare.sip', msg(base_req('OPTIONS', cid='rp1',
    via='SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK-edge-{}', extra=['Accept: application/sdp']) ),
    'request with bare rport (no value) before branch')

put('valid', 'edge-rport-value.sip', msg([
    'SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;rport=40123;branch=z9hG4bK-edge-rp2;received=198.51.100.200',
    'From: <sip:alice@example.com>;tag=rp2',
    'To: <sip:bob@example.com>;tag=rp3',
    'Call-ID: edge-rp2@192.0.2.1',
    'CSeq: 1 OPTIONS']),
    'response with rport=40123 and received= filled in by the server')

put('valid', 'edge-lf-options.sip', msg(base_req('OPTIONS', cid='lf1', extra=['Accept: application/sdp']), eol='\n'),
    'OPTIONS with LF-only line endings (no CR anywhere)')
LF_SDP = SDP.replace(b'\r\n', b'\n')
put('valid', 'edge-lf-invite-sdp.sip', msg(base_req('INVITE', cid='lf2', extra=['Contact: <sip:alice@192.0.2.1>', 'Content-Type: application/sdp']), LF_SDP, eol='\n'),
    'INVITE with SDP body, LF-only line endings in headers and body (Content-Length counts LF bytes)')
put('valid', 'edge-lf-response.sip', msg([
    'SIP/2.0 180 Ringing',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-lf3',
    'From: <sip:alice@example.com>;tag=lf3',
    'To: <sip:bob@example.com>;tag=lf4',
    'Call-ID: edge-lf3@192.0.2.1',
    'CSeq: 1 INVITE'], eol='\n'),
    '180 response with LF-only line endings')

put('valid', 'edge-leading-crlf.sip', b'\r\n\r\n' + msg(base_req('OPTIONS', cid='lead')),
    'two CRLFs before the start line (to be skipped, RFC 3261 7.5)')

put('valid', 'edge-no-content-length.sip', msg(base_req('MESSAGE', cid='nocl', extra=['Content-Type: text/plain']), b'body without a Content-Length header (datagram transport)\r\n', cl=None),
    'MESSAGE with a body and no Content-Length header (UDP: body runs to the end of the datagram)')

put('valid', 'edge-bytes-after-body.sip', msg(base_req('MESSAGE', cid='extra', extra=['Content-Type: text/plain', 'Content-Length: 5']), cl=None) + b'Hello, and these bytes are beyond Content-Length\r\n',
    'Content-Length: 5 but more bytes follow; the extra bytes are not part of the body')

put('valid', 'edge-header-case.sip', crlf([
    'OPTIONS sip:bob@example.com SIP/2.0',
    'vIA: SIP/2.0/UDP 192.0.2.1:5060;BRANCH=z9hG4bK-edge-case',
    'max-forwards: 70',
    'FROM: <sip:alice@EXAMPLE.COM>;TAG=case1',
    'to: <sip:bob@example.com>',
    'CALL-ID: edge-case@192.0.2.1',
    'cseq: 1 OPTIONS',
    'content-length: 0', '']),
    'header names and parameter names in unusual letter case')

put('valid', 'edge-empty-header-values.sip', msg(base_req('OPTIONS', cid='empty', extra=['Subject:', 'Organization: ', 'Supported:', 'Accept:'])),
    'headers with empty values (Subject, Organization, Supported, Accept)')

put('valid', 'edge-addr-spec-params.sip', msg([
    'OPTIONS sips:bob@example.com:5061;maddr=192.0.2.50;lr SIP/2.0',
    'Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK-edge-as;alias',
    'Max-Forwards: 70',
    'From: sip:alice@example.com;tag=as1',
    'To: sips:bob@example.com',
    'Route: <sips:proxy.example.com;lr>, <sip:192.0.2.60;lr;transport=tcp>',
    'Call-ID: edge-addrspec@192.0.2.1',
    'CSeq: 1 OPTIONS']),
    'sips: URIs, From/To in addr-spec form (tag is a header param), Route list, valueless params lr/alias')

LONG = 'x' * 3000
put('valid', 'edge-long-header.sip', msg(base_req('OPTIONS', cid='long', extra=['X-Long: ' + LONG, 'X-Empty-Params: a;b;c;d;e;f;g;h'])),
    'a 3000-character header value and many valueless params')

BOUND = 'boundary42'
MP = crlf(['--' + BOUND, 'Content-Type: application/sdp', '']) + SDP + crlf(['', '--' + BOUND,
    'Content-Type: application/isup;version=itu-t92+', 'Content-Disposition: signal;handling=optional', '']) + \
    bytes([0x01, 0x00, 0x49, 0x00, 0x00, 0x03, 0x02, 0x00, 0x07, 0x04, 0x10, 0x00, 0x33, 0x63, 0x21, 0x43, 0x00, 0x00, 0x03]) + \
    crlf(['', '--' + BOUND + '--'])
put('valid', 'edge-multipart-binary.sip', msg(base_req('INVITE', cid='mp', extra=['Contact: <sip:alice@192.0.2.1>', 'MIME-Version: 1.0',
    f'Content-Type: multipart/mixed;boundary={BOUND}']), MP),
    'multipart/mixed body with SDP and binary ISUP part (NUL bytes in body)')

put('valid', 'edge-crlf-in-body-only.sip', msg(['SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-edge-b',
    'From: <sip:alice@example.com>;tag=b1',
    'To: <sip:bob@example.com>;tag=b2',
    'Call-ID: edge-bodycrlf@192.0.2.1',
    'CSeq: 1 INFO',
    'Content-Type: text/plain'], b'\r\n\r\n'),
    'response whose body is exactly CRLFCRLF (Content-Length: 4)')

# ---------------------------------------------------------------- invalid
GOOD = base_req('OPTIONS', cid='bad')


def bad(name, data, what):
    put('invalid', name, data, what)


rnd = random.Random(4475)
bad('garbage-bytes.sip', bytes(rnd.randrange(256) for _ in range(512)), '512 random bytes (fixed seed 4475), not SIP at all')
bad('empty.sip', b'', 'empty file (0 bytes)')
bad('only-crlf.sip', b'\r\n' * 8, 'only CRLFs, no start line')
bad('http-request.sip', crlf(['GET / HTTP/1.1', 'Host: 127.0.0.1', '']), 'an HTTP/1.1 request, wrong protocol/version')
bad('start-line-no-version.sip', msg(['INVITE sip:bob@example.com'] + GOOD[1:]), 'request line has no SIP-Version')
bad('bad-version-sip7.sip', msg(['OPTIONS sip:bob@example.com SIP/7.0'] + GOOD[1:]), 'unknown SIP version SIP/7.0')
bad('bad-version-response.sip', msg(['SIP/1.0 200 OK'] + GOOD[1:]), 'status line with unsupported version SIP/1.0')
bad('status-code-two-digits.sip', msg(['SIP/2.0 99 X'] + GOOD[1:]), 'status code with 2 digits (99)')
bad('status-code-four-digits.sip', msg(['SIP/2.0 2000 X'] + GOOD[1:]), 'status code with 4 digits (2000)')
bad('status-code-not-numeric.sip', msg(['SIP/2.0 2O0 OK'] + GOOD[1:]), 'status code contains a letter O (2O0)')
bad('header-without-colon.sip', msg(GOOD[:3] + ['This line has no colon'] + GOOD[3:]), 'a header line without any colon')
bad('folding-before-first-header.sip', msg(GOOD[:1] + [' continuation before any header'] + GOOD[1:]), 'a continuation (folded) line directly after the start line')
bad('content-length-not-number.sip', msg(GOOD + ['Content-Type: text/plain', 'Content-Length: five'], b'hello', cl=None), 'Content-Length value is not a number ("five")')
bad('content-length-negative.sip', msg(GOOD + ['Content-Type: text/plain', 'Content-Length: -5'], b'hello', cl=None), 'negative Content-Length (-5)')
bad('content-length-too-large.sip', msg(GOOD + ['Content-Type: text/plain', 'Content-Length: 500'], b'truncated body', cl=None), 'Content-Length 500 but only 14 body bytes (truncated message)')
bad('content-length-conflicting.sip', msg(GOOD + ['Content-Type: text/plain', 'Content-Length: 5', 'Content-Length: 7'], b'hello', cl=None), 'two Content-Length headers with different values (5 and 7)')
bad('content-length-overflow.sip', msg(GOOD + ['Content-Length: 99999999999999999999999'], cl=None), 'Content-Length larger than any integer type (23 digits)')
bad('no-empty-line-after-headers.sip', crlf(GOOD + ['Content-Length: 0']), 'headers end at end of data without the empty line (no CRLFCRLF)')
bad('header-name-with-space.sip', msg(GOOD + ['Bad Name: x']), 'header name with a space inside ("Bad Name: x")')
bad('header-empty-name.sip', msg(GOOD + [': no name']), 'header line with an empty name (line starts with colon)')
bad('nul-in-start-line.sip', msg(['OPTIONS sip:bob@exa\x00mple.com SIP/2.0'] + GOOD[1:]), 'NUL byte inside the Request-URI on the start line')
bad('method-illegal-chars.sip', msg(['INV(ITE) sip:bob@example.com SIP/2.0'] + GOOD[1:6] + ['CSeq: 1 INV(ITE)']), 'method contains ( and ), not token characters')
bad('request-uri-space-only.sip', msg(['OPTIONS   SIP/2.0'] + GOOD[1:]), 'Request-URI is only spaces ("OPTIONS   SIP/2.0")')
bad('request-line-extra-token.sip', msg(['OPTIONS sip:bob@example.com SIP/2.0 extra'] + GOOD[1:]), 'request line with a fourth token after the version')
bad('cr-without-lf-in-header.sip', msg(GOOD[:4] + ['Subject: broken\rline', ] + GOOD[4:]), 'bare CR (no LF) in the middle of a header line')
bad('missing-start-line.sip', msg(GOOD[1:]), 'headers without any start line (first line is a Via header)')
bad('version-followed-by-del-byte.sip', msg(['SIP/2.0 200 OK'.replace('SIP/2.0', 'SIP/2.0\x7f')] + GOOD[1:]), 'status line whose version is followed by a DEL byte (SIP/2.0\\x7f)')

# > 65535 bytes: a valid-looking MESSAGE whose body makes the datagram too large
bigbody = (b'0123456789abcdef' * 4200)[:66000]
bad('oversize-66k.sip', msg(base_req('MESSAGE', cid='big', extra=['Content-Type: text/plain']), bigbody),
    'a MESSAGE of more than 65535 bytes (66000-byte body, correct Content-Length): over the UDP / parser size limit')

if '--table' in sys.argv:
    for d, n, w in ROWS:
        print(f'{d}\t{n}\t{w}')
else:
    print(f'wrote {sum(1 for r in ROWS if r[0]=="valid")} valid, {sum(1 for r in ROWS if r[0]=="invalid")} invalid')
