#!/usr/bin/env python3
"""Copy selected captured messages from out/msgs/<step>/ to corpus/valid/.

Each rule: (target name, step, source port, destination port, regex). The
first message of that step, sent between those ports ('*' = any), whose bytes
match the regex (DOTALL) is copied byte for byte. Ports: 15060 kamailio,
15070 SIPp UAS, 15080 SIPp UAC, 15090 sipsak, 151xx sipvicious.
`--table` prints name/step/description rows for the README.
"""
import glob, os, re, shutil, sys

HERE = os.path.dirname(os.path.abspath(__file__))
MSGS = os.path.join(HERE, 'out', 'msgs')
VALID = os.path.join(HERE, '..', 'valid')
K, UAS, UAC = '15060', '15070', '15080'

RULES = [
    # name, step, sport, dport, regex, description
    ('sipp-uac-invite-sdp.sip', 'sipp-call-full', UAC, K, r'^INVITE ', 'INVITE with SDP offer, Supported: 100rel, sent by the SIPp UAC to kamailio'),
    ('kamailio-100-trying.sip', 'sipp-call-full', K, UAC, r'^SIP/2.0 100 ', '100 trying from kamailio tm (Via with rport=/received=)'),
    ('kamailio-fwd-invite.sip', 'sipp-call-full', K, UAS, r'^INVITE ', 'INVITE as relayed by kamailio: Record-Route, two Vias, Max-Forwards 69'),
    ('sipp-uas-180-ringing.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 180 ', '180 Ringing from the SIPp UAS (two Vias, Record-Route, To tag)'),
    ('sipp-uas-183-100rel-sdp.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 183 ', 'reliable 183 Session Progress: Require: 100rel, RSeq, SDP answer'),
    ('kamailio-fwd-183.sip', 'sipp-call-full', K, UAC, r'^SIP/2.0 183 ', '183 relayed by kamailio to the UAC (top Via removed)'),
    ('sipp-uac-prack.sip', 'sipp-call-full', UAC, K, r'^PRACK ', 'PRACK with RAck and Route, in dialog'),
    ('sipp-uas-200-prack.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 200 .*CSeq: 2 PRACK', '200 OK to PRACK'),
    ('sipp-uas-200-invite-sdp.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 200 .*CSeq: 1 INVITE', '200 OK to INVITE with SDP, Allow, Supported, Record-Route'),
    ('kamailio-fwd-200-invite.sip', 'sipp-call-full', K, UAC, r'^SIP/2.0 200 .*CSeq: 1 INVITE', '200 OK to INVITE relayed by kamailio'),
    ('sipp-uac-ack.sip', 'sipp-call-full', UAC, K, r'^ACK ', 'ACK for the 2xx, with Route (loose routing)'),
    ('kamailio-fwd-ack.sip', 'sipp-call-full', K, UAS, r'^ACK ', 'ACK after kamailio loose_route (Route removed, Via added)'),
    ('sipp-uac-info-dtmf.sip', 'sipp-call-full', UAC, K, r'^INFO ', 'INFO with application/dtmf-relay body'),
    ('sipp-uas-200-info.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 200 .*CSeq: 3 INFO', '200 OK to INFO'),
    ('sipp-uac-update-sdp.sip', 'sipp-call-full', UAC, K, r'^UPDATE ', 'UPDATE with a new SDP offer (sendonly)'),
    ('sipp-uas-200-update-sdp.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 200 .*CSeq: 4 UPDATE', '200 OK to UPDATE with SDP answer'),
    ('sipp-uac-refer.sip', 'sipp-call-full', UAC, K, r'^REFER ', 'REFER with Refer-To carrying an escaped Replaces URI header, Referred-By'),
    ('sipp-uas-202-accepted.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 202 ', '202 Accepted to REFER'),
    ('sipp-uas-notify-sipfrag.sip', 'sipp-call-full', UAS, K, r'^NOTIFY ', 'NOTIFY (Event: refer) with message/sipfrag body, sent by the UAS'),
    ('kamailio-fwd-notify.sip', 'sipp-call-full', K, UAC, r'^NOTIFY ', 'the NOTIFY relayed by kamailio'),
    ('sipp-uac-200-notify.sip', 'sipp-call-full', UAC, K, r'^SIP/2.0 200 .*NOTIFY', '200 OK to NOTIFY sent by the UAC'),
    ('sipp-uac-bye.sip', 'sipp-call-full', UAC, K, r'^BYE ', 'BYE with Route and a Reason header (quoted text)'),
    ('kamailio-fwd-bye.sip', 'sipp-call-full', K, UAS, r'^BYE ', 'BYE relayed by kamailio'),
    ('sipp-uas-200-bye.sip', 'sipp-call-full', UAS, K, r'^SIP/2.0 200 .*BYE', '200 OK to BYE'),
    ('sipp-uac-options.sip', 'sipp-options', UAC, K, r'^OPTIONS ', 'OPTIONS to a user, relayed by kamailio'),
    ('sipp-uas-200-options.sip', 'sipp-options', UAS, K, r'^SIP/2.0 200 ', '200 OK to OPTIONS with Allow, Accept, Accept-Language, Supported'),
    ('sipp-uac-options-tcp.sip', 'sipp-options-tcp', UAC, K, r'^OPTIONS ', 'OPTIONS sent over TCP (Via SIP/2.0/TCP), one TCP segment'),
    ('kamailio-200-options-tcp.sip', 'sipp-options-tcp', K, UAC, r'^SIP/2.0 200 ', '200 OK to OPTIONS relayed back over TCP, one TCP segment'),
    ('sipp-uac-message-utf8.sip', 'sipp-message', UAC, K, r'^MESSAGE ', 'MESSAGE with text/plain;charset=UTF-8 body containing non-ASCII'),
    ('sipp-uas-200-message.sip', 'sipp-message', UAS, K, r'^SIP/2.0 200 ', '200 OK to MESSAGE'),
    ('sipp-uac-subscribe.sip', 'sipp-subscribe', UAC, K, r'^SUBSCRIBE ', 'SUBSCRIBE Event: presence, Expires'),
    ('kamailio-fwd-subscribe.sip', 'sipp-subscribe', K, UAS, r'^SUBSCRIBE ', 'SUBSCRIBE relayed by kamailio with Record-Route'),
    ('sipp-uas-200-subscribe.sip', 'sipp-subscribe', UAS, K, r'^SIP/2.0 200 ', '200 OK to SUBSCRIBE with Expires'),
    ('sipp-uas-notify-pidf.sip', 'sipp-subscribe', UAS, K, r'^NOTIFY ', 'NOTIFY Event: presence, Subscription-State, application/pidf+xml body'),
    ('sipp-uac-invite-cancel.sip', 'sipp-cancel', UAC, K, r'^INVITE ', 'INVITE that will be cancelled'),
    ('sipp-uac-cancel.sip', 'sipp-cancel', UAC, K, r'^CANCEL ', 'CANCEL with Reason header'),
    ('kamailio-200-canceling.sip', 'sipp-cancel', K, UAC, r'^SIP/2.0 200 ', '"200 canceling" reply of kamailio to the CANCEL'),
    ('kamailio-fwd-cancel.sip', 'sipp-cancel', K, UAS, r'^CANCEL ', 'CANCEL generated by kamailio toward the UAS'),
    ('sipp-uas-487.sip', 'sipp-cancel', UAS, K, r'^SIP/2.0 487 ', '487 Request Terminated from the UAS'),
    ('kamailio-ack-487.sip', 'sipp-cancel', K, UAS, r'^ACK ', 'hop-by-hop ACK for the 487 generated by kamailio'),
    ('kamailio-fwd-487.sip', 'sipp-cancel', K, UAC, r'^SIP/2.0 487 ', '487 relayed to the UAC'),
    ('sipp-uac-ack-487.sip', 'sipp-cancel', UAC, K, r'^ACK ', 'ACK for the 487 from the UAC'),
    ('sipp-uas-486-busy.sip', 'sipp-busy', UAS, K, r'^SIP/2.0 486 ', '486 Busy Here with Retry-After'),
    ('kamailio-fwd-486.sip', 'sipp-busy', K, UAC, r'^SIP/2.0 486 ', '486 relayed to the UAC'),
    ('kamailio-407-invite.sip', 'sipp-auth-invite', K, UAC, r'^SIP/2.0 407 ', '407 Proxy Authentication Required with Proxy-Authenticate digest challenge'),
    ('sipp-uac-ack-407.sip', 'sipp-auth-invite', UAC, K, r'^ACK ', 'ACK for the 407'),
    ('sipp-uac-invite-proxy-auth.sip', 'sipp-auth-invite', UAC, K, r'^INVITE .*Proxy-Authorization', 'INVITE resent with Proxy-Authorization digest credentials'),
    ('kamailio-fwd-invite-auth.sip', 'sipp-auth-invite', K, UAS, r'^INVITE ', 'the authenticated INVITE relayed by kamailio (credentials consumed)'),
    ('kamailio-408-timeout.sip', 'sipp-timeout', K, UAC, r'^SIP/2.0 408 ', '408 Request Timeout generated by kamailio (nobody listens on the next hop)'),
    ('kamailio-fwd-invite-unreachable.sip', 'sipp-timeout', K, '15999', r'^INVITE ', 'INVITE sent by kamailio to a port where nothing listens'),
    ('kamailio-503.sip', 'sipp-503', K, UAC, r'^SIP/2.0 503 ', '503 Service Unavailable sent by kamailio (scripted sl_send_reply)'),
    ('sipp-uac-register.sip', 'sipp-register', UAC, K, r'^REGISTER .*CSeq: 1 ', 'REGISTER without credentials'),
    ('kamailio-401-register.sip', 'sipp-register', K, UAC, r'^SIP/2.0 401 ', '401 Unauthorized with WWW-Authenticate digest challenge (nonce, qop)'),
    ('sipp-uac-register-auth.sip', 'sipp-register', UAC, K, r'^REGISTER .*Authorization', 'REGISTER with Authorization digest credentials'),
    ('kamailio-200-register.sip', 'sipp-register', K, UAC, r'^SIP/2.0 200 ', '200 OK to REGISTER listing the binding (Contact ;expires=)'),
    ('baresip-register.sip', 'baresip', '15110', K, r'^REGISTER (?!.*Authorization)', 'baresip REGISTER with outbound Route, before the challenge'),
    ('kamailio-401-register-baresip.sip', 'baresip', K, '15110', r'^SIP/2.0 401 ', '401 challenge to baresip'),
    ('baresip-register-auth.sip', 'baresip', '15110', K, r'^REGISTER (?!.*expires=0).*Authorization', 'baresip REGISTER with Authorization, Contact ;expires=600'),
    ('baresip-invite-sdp.sip', 'baresip', '15110', K, r'^INVITE ', 'baresip INVITE: Route to the outbound proxy, empty "Supported:" header, SDP with a=ssrc, a=rtcp-rsize'),
    ('kamailio-fwd-invite-baresip.sip', 'baresip', K, UAS, r'^INVITE ', 'the baresip INVITE relayed by kamailio'),
    ('baresip-ack.sip', 'baresip', '15110', K, r'^ACK ', 'baresip ACK for the 2xx'),
    ('baresip-bye.sip', 'baresip', '15110', K, r'^BYE ', 'baresip BYE'),
    ('baresip-unregister-auth.sip', 'baresip', '15110', K, r'^REGISTER .*expires=0.*Authorization', 'baresip de-REGISTER at exit: Contact ;expires=0 with Authorization'),
    ('sipsak-options.sip', 'sipsak-options', '*', K, r'^OPTIONS ', 'sipsak default OPTIONS ping'),
    ('kamailio-200-options.sip', 'sipsak-options', K, '*', r'^SIP/2.0 200 ', '200 OK to OPTIONS from kamailio itself'),
    ('sipsak-register.sip', 'sipsak-register', '*', K, r'^REGISTER .*CSeq: 1 ', 'sipsak usrloc-mode REGISTER'),
    ('kamailio-401-register-sipsak.sip', 'sipsak-register', K, '*', r'^SIP/2.0 401 ', '401 challenge to the sipsak REGISTER'),
    ('sipsak-register-auth.sip', 'sipsak-register', '*', K, r'^REGISTER .*Authorization', 'sipsak REGISTER with Authorization (-a password)'),
    ('sipsak-options-maxfwd0.sip', 'sipsak-trace', '*', K, r'^OPTIONS .*Max-Forwards: 0', 'sipsak traceroute mode OPTIONS with Max-Forwards: 0'),
    ('kamailio-483.sip', 'sipsak-trace', K, '*', r'^SIP/2.0 483 ', '483 Too Many Hops from kamailio'),
    ('svmap-options.sip', 'svmap', '15100', K, r'^OPTIONS ', 'sipvicious svmap OPTIONS probe'),
    ('kamailio-200-options-svmap.sip', 'svmap', K, '15100', r'^SIP/2.0 200 ', '200 OK to the svmap probe'),
    ('svmap-options-compact.sip', 'svmap-compact', '15101', K, r'^OPTIONS ', 'svmap -c probe using compact header names'),
    ('svwar-register.sip', 'svwar', '15102', K, r'^REGISTER ', 'sipvicious svwar REGISTER extension probe'),
    ('svwar-options.sip', 'svwar-options', '15103', K, r'^OPTIONS sip:100@', 'sipvicious svwar -m OPTIONS probe for extension 100'),
]


def main():
    table = '--table' in sys.argv
    missing = []
    for name, step, sp, dp, rx, what in RULES:
        if table:
            print(f'{name}\t{step}\t{what}')
            continue
        hit = None
        for f in sorted(glob.glob(os.path.join(MSGS, step, '*.raw'))):
            m = re.match(r'\d+_(udp|tcp)_(\d+)-(\d+)_', os.path.basename(f))
            if (sp in ('*', m.group(2))) and (dp in ('*', m.group(3))) and \
                    re.search(rx.encode(), open(f, 'rb').read(), re.S):
                hit = f
                break
        if hit:
            shutil.copyfile(hit, os.path.join(VALID, name))
        else:
            missing.append(name)
    if not table:
        print(f'copied {len(RULES) - len(missing)}; missing: {missing}')


main()
