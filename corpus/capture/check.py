#!/usr/bin/env python3
"""Sanity check of corpus/valid: every file has a header/body separator and,
when it has a Content-Length (or l:) header, the body length matches it.
Known exceptions are listed in EXPECT. Not a parser: a crude line splitter."""
import glob, os, re

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECT = {'edge-no-content-length.sip': 'no CL', 'edge-bytes-after-body.sip': 'body longer than CL'}
bad = 0
for f in sorted(glob.glob(os.path.join(HERE, '..', 'valid', '*.sip'))):
    name = os.path.basename(f)
    data = open(f, 'rb').read()
    sep = b'\r\n\r\n' if b'\r\n\r\n' in data else b'\n\n'
    if sep not in data:
        print('NO SEPARATOR', name); bad += 1; continue
    head, body = data.lstrip(b'\r\n').split(sep, 1)
    cls = re.findall(rb'^(?:content-length|l)[ \t]*:[ \t]*(\d+)', head, re.I | re.M)
    if not cls:
        if name not in EXPECT:
            print('no Content-Length', name); bad += 1
        continue
    if int(cls[0]) != len(body) and name not in EXPECT:
        print(f'CL mismatch {name}: header {cls[0].decode()} body {len(body)}'); bad += 1
print('problems:', bad)

# every captured file (listed in pick.py) must be byte-identical to a message in capture.pcap
import subprocess, sys, tempfile, hashlib
sys.argv = [sys.argv[0]]
sys.path.insert(0, HERE)
RULES = [l.split('\t')[0] for l in subprocess.run([sys.executable, os.path.join(HERE, 'pick.py'), '--table'],
                                                   capture_output=True, text=True, check=True).stdout.splitlines()]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, os.path.join(HERE, 'extract.py'), os.path.join(HERE, 'capture.pcap'), tmp],
                   check=True, capture_output=True)
    have = {hashlib.sha256(open(os.path.join(tmp, f), 'rb').read()).hexdigest() for f in os.listdir(tmp) if f.endswith('.raw')}
missing = [n for n in RULES if hashlib.sha256(open(os.path.join(HERE, '..', 'valid', n), 'rb').read()).hexdigest() not in have]
print(f'captured files checked against capture.pcap: {len(RULES)}, not found: {missing}')
