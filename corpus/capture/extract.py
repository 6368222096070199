#!/usr/bin/env python3
"""Extract SIP messages from a loopback pcap as exact bytes.

usage: extract.py PCAP OUTDIR [STEPS]
   -> OUTDIR/[<step>/]NNNN_proto_sport-dport_<first line>.raw  + index.txt
STEPS: lines "name start_epoch end_epoch" written by capture_all.sh; a message
is filed under the step whose time window contains it.
UDP: one datagram = one message (udp.payload, hex, decoded verbatim).
TCP: payload of each segment carrying data (the corpus captures use short
messages, each in one segment; checked by Content-Length by the caller).
Keep-alive datagrams (only CR/LF) and datagrams whose first line has no
"SIP/2.0" (RTP/RTCP from baresip/SIPp media) are skipped.
"""
import os, re, subprocess, sys

pcap, outdir = sys.argv[1], sys.argv[2]
steps = []
if len(sys.argv) > 3:
    for l in open(sys.argv[3]):
        n, a, b = l.split()
        steps.append((n, float(a), float(b)))
os.makedirs(outdir, exist_ok=True)
cmd = ['tshark', '-r', pcap, '-T', 'fields', '-E', 'separator=|',
       '-e', 'frame.number', '-e', 'frame.time_epoch', '-e', 'ip.src', '-e', 'udp.srcport', '-e', 'tcp.srcport',
       '-e', 'ip.dst', '-e', 'udp.dstport', '-e', 'tcp.dstport', '-e', 'udp.payload', '-e', 'tcp.payload']
idx = []
for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
    f = line.split('|')
    num, t, src, usp, tsp, dst, udp_, tdp, up, tp = f
    hexdata = up or tp
    if not hexdata:
        continue
    data = bytes.fromhex(hexdata.replace(':', ''))
    if not data.strip(b'\r\n'):
        continue
    if b'SIP/2.0' not in data.split(b'\n', 1)[0]:
        continue  # RTP/RTCP or other non-SIP datagram
    proto = 'udp' if up else 'tcp'
    first = data.split(b'\n', 1)[0].strip()
    slug = re.sub(rb'[^A-Za-z0-9]+', b'_', first)[:40].decode()
    name = f'{int(num):04d}_{proto}_{usp or tsp}-{udp_ or tdp}_{slug}.raw'
    sub = 'unassigned' if steps else ''
    for n, a, b in steps:
        if a <= float(t) <= b:
            sub = n
    if sub:
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
        name = os.path.join(sub, name)
    with open(os.path.join(outdir, name), 'wb') as fh:
        fh.write(data)
    idx.append(f'{name}\t{len(data)}')
with open(os.path.join(outdir, 'index.txt'), 'w') as fh:
    fh.write('\n'.join(idx) + '\n')
print('\n'.join(idx))
