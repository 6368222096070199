#!/usr/bin/env python3
"""Generate the simpler SIPp scenario pairs used for the fastsip corpus.

Writes uac-*.xml / uas-*.xml next to this file (they are committed too, this
script only documents how they were made). uac-call-full.xml / uas-call-full.xml
are hand-written.
"""
import os
HERE = os.path.dirname(os.path.abspath(__file__))

HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
FROM = 'From: "Alice Caller" <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]'
TO = 'To: <sip:[service]@[remote_ip]:[remote_port]>'
SDP = '''v=0
o=alice 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
'''
SDP_B = SDP.replace('alice 53655765 2353687637', 'bob 2890844527 2890844527')


def send(text, retrans=False):
    r = ' retrans="500"' if retrans else ''
    return f'  <send{r}>\n    <![CDATA[\n{text}\n    ]]>\n  </send>\n'


def req(method, ruri='sip:[service]@[remote_ip]:[remote_port]', cseq=1, extra='', body=None,
        branch='[branch]', to=TO, frm=FROM, route=''):
    lines = [f'{method} {ruri} SIP/2.0',
             f'Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch};rport']
    if route:
        lines.append(route)
    lines += [frm, to, 'Call-ID: [call_id]', f'CSeq: {cseq} {method}',
              'Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>',
              'Max-Forwards: 70', 'User-Agent: SIPp fastsip-corpus']
    if extra:
        lines += extra.rstrip('\n').split('\n')
    lines.append('Content-Length: [len]' if body else 'Content-Length: 0')
    lines.append('')
    if body:
        lines.append(body)
    return '\n'.join(lines) + '\n'


def resp(code, reason, tag=True, extra='', body=None, cseq=None, contact=True):
    lines = [f'SIP/2.0 {code} {reason}', '[last_Via:]', '[last_From:]',
             '[last_To:]' + (';tag=[pid]SIPpTag01[call_number]' if tag else ''),
             '[last_Call-ID:]', cseq or '[last_CSeq:]']
    if contact:
        lines.append('[last_Record-Route:]')
        lines.append('Contact: <sip:bob@[local_ip]:[local_port];transport=[transport]>')
    if extra:
        lines += extra.rstrip('\n').split('\n')
    lines.append('Content-Length: [len]' if body else 'Content-Length: 0')
    lines.append('')
    if body:
        lines.append(body)
    return '\n'.join(lines) + '\n'


def recv(what, extra=''):
    kind = 'response' if what[0].isdigit() else 'request'
    return f'  <recv {kind}="{what}"{extra}/>\n'


def write(name, comment, body):
    with open(os.path.join(HERE, name), 'w') as fh:
        fh.write(HEAD + f'<!-- fastsip corpus: {comment} -->\n<scenario name="{name}">\n' + body + '</scenario>\n')


ACK_INV_BRANCH = 'z9hG4bK-[pid]-[call_number]-inv'

# OPTIONS relayed by kamailio to the UAS
write('uac-options.xml', 'OPTIONS to a user, relayed by kamailio',
      send(req('OPTIONS', extra='Accept: application/sdp'), True) + recv('200'))
write('uas-options.xml', 'answers OPTIONS with 200',
      recv('OPTIONS') + send(resp(200, 'OK', extra='Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY\nAccept: application/sdp\nAccept-Language: en\nSupported: 100rel, timer')))

# MESSAGE
write('uac-message.xml', 'MESSAGE (RFC 3428) relayed by kamailio',
      send(req('MESSAGE', extra='Content-Type: text/plain;charset=UTF-8',
               body='Hello Bob, this is a fastsip corpus message. Gr\u00fc\u00dfe!'), True) + recv('200'))
write('uas-message.xml', 'answers MESSAGE with 200',
      recv('MESSAGE') + send(resp(200, 'OK', contact=False)))

# SUBSCRIBE / NOTIFY (presence)
PIDF = '''<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@127.0.0.1">
  <tuple id="t1"><status><basic>open</basic></status><contact>sip:bob@127.0.0.1:15070</contact></tuple>
</presence>'''
write('uac-subscribe.xml', 'SUBSCRIBE presence, then NOTIFY from the notifier through the proxy',
      send(req('SUBSCRIBE', extra='Event: presence\nAccept: application/pidf+xml\nExpires: 600'), True)
      + recv('200') + recv('NOTIFY')
      + send(resp(200, 'OK', tag=False, contact=False)))
write('uas-subscribe.xml', 'notifier: 200 to SUBSCRIBE then NOTIFY with PIDF',
      '  <recv request="SUBSCRIBE" rrs="true">\n    <action>\n      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="rfrom"/>\n    </action>\n  </recv>\n'
      + send(resp(200, 'OK', extra='Expires: 600'))
      + send('''NOTIFY [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:bob@127.0.0.1:15060>;tag=[pid]SIPpTag01[call_number]
To:[$rfrom]
Call-ID: [call_id]
CSeq: 1 NOTIFY
Contact: <sip:bob@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Event: presence
Subscription-State: active;expires=600
Content-Type: application/pidf+xml
Content-Length: [len]

''' + PIDF + '\n', True) + recv('200'))

# CANCEL: INVITE / 100 / 180 / CANCEL / 200 / 487 / ACK
write('uac-cancel.xml', 'INVITE cancelled after 180',
      send(req('INVITE', branch=ACK_INV_BRANCH, extra='Content-Type: application/sdp', body=SDP), True)
      + recv('100', ' optional="true"') + recv('180')
      + '  <pause milliseconds="300"/>\n'
      + send('''CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=''' + ACK_INV_BRANCH + ''';rport
''' + FROM + '\n' + TO + '''
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Reason: SIP;cause=487;text="Caller hung up"
Content-Length: 0
''', True)
      + recv('200') + recv('487')
      + send('''ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=''' + ACK_INV_BRANCH + ''';rport
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
'''))
write('uas-cancel.xml', '180 then 200 to CANCEL and 487 to the INVITE',
      recv('INVITE') + send(resp(180, 'Ringing')) + recv('CANCEL')
      + send(resp(200, 'OK', tag=False, contact=False))
      + send(resp(487, 'Request Terminated', cseq='CSeq: 1 INVITE', contact=False))
      + recv('ACK'))

# 486 Busy Here
write('uac-busy.xml', 'INVITE answered 486',
      send(req('INVITE', branch=ACK_INV_BRANCH, extra='Content-Type: application/sdp', body=SDP), True)
      + recv('100', ' optional="true"') + recv('486')
      + send('''ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=''' + ACK_INV_BRANCH + ''';rport
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
'''))
write('uas-busy.xml', 'answers INVITE with 486',
      recv('INVITE') + send(resp(486, 'Busy Here', contact=False, extra='Retry-After: 30')) + recv('ACK'))

# 408 from kamailio (UAS port 15999 has nobody) and 503 from kamailio
def invite_fail(code):
    return (send(req('INVITE', branch=ACK_INV_BRANCH, extra='Content-Type: application/sdp', body=SDP), True)
            + recv('100', ' optional="true"') + recv(str(code))
            + send('''ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=''' + ACK_INV_BRANCH + ''';rport
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
'''))
write('uac-timeout.xml', 'INVITE that kamailio cannot deliver (408)', invite_fail(408))
write('uac-503.xml', 'INVITE answered 503 by kamailio', invite_fail(503))

# INVITE with proxy authentication: 407 / ACK / INVITE+Proxy-Authorization / 100 / 200 / ACK / BYE / 200
write('uac-auth-invite.xml', 'INVITE challenged with 407 by kamailio, resent with credentials',
      send(req('INVITE', branch=ACK_INV_BRANCH, extra='Content-Type: application/sdp', body=SDP), True)
      + recv('100', ' optional="true"') + recv('407', ' auth="true"')
      + send('''ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=''' + ACK_INV_BRANCH + ''';rport
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
''')
      + send(req('INVITE', cseq=2, extra='[authentication username=alice password=secret]\nContent-Type: application/sdp', body=SDP), True)
      + recv('100', ' optional="true"') + recv('180', ' optional="true"') + recv('200', ' rrs="true"')
      + send('''ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
[routes]
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0
''')
      + '  <pause milliseconds="200"/>\n'
      + send('''BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
[routes]
''' + FROM + '''
[last_To:]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0
''', True) + recv('200'))
write('uas-answer.xml', 'plain answering UAS: 180, 200 with SDP, ACK, BYE',
      recv('INVITE') + send(resp(180, 'Ringing'))
      + send(resp(200, 'OK', extra='Content-Type: application/sdp', body=SDP_B), True)
      + recv('ACK') + recv('BYE') + send(resp(200, 'OK', tag=False, contact=False)))

# REGISTER with digest auth against the kamailio registrar
write('uac-register.xml', 'REGISTER challenged with 401, resent with Authorization',
      send('''REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:alice@127.0.0.1>;tag=[pid]SIPpTag00[call_number]
To: <sip:alice@127.0.0.1>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>;expires=3600
Max-Forwards: 70
Expires: 3600
User-Agent: SIPp fastsip-corpus
Content-Length: 0
''', True) + recv('401', ' auth="true"')
      + send('''REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:alice@127.0.0.1>;tag=[pid]SIPpTag00[call_number]
To: <sip:alice@127.0.0.1>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>;expires=3600
[authentication username=alice password=secret]
Max-Forwards: 70
Expires: 3600
User-Agent: SIPp fastsip-corpus
Content-Length: 0
''', True) + recv('200'))
print('ok')
