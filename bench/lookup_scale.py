"""Does a large location store slow the call path? µs per call through lookup with 10 and 100,000 bindings.

    PYTHONPATH=src python3 bench/lookup_scale.py [--calls 20000] [--repeats 5]

Sans-IO (no sockets): one Proxy with the default script; the store is filled with N bindings of
distinct AORs, then each call is an INVITE to one registered AOR (100 Trying + the forwarded
INVITE) and its 200. The cycle collector is off, as in proxyapp. The store sizes alternate within each repeat, so drift on this
shared machine hits both alike; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import fastsip

from proxyapp.config import Config
from proxyapp.location import Binding, Location
from proxyapp.proxy import Proxy, Target

PROXY = "127.0.0.1"


def make_proxy(n_bindings: int) -> tuple[Proxy, Target]:
    cfg = Config.from_dict({"listen": [f"udp:{PROXY}:5060"], "log_level": "WARNING"})
    location = Location()
    now = time.time()
    for i in range(n_bindings):
        aor = f"sip:user{i}@{PROXY}"
        location.put(aor, [Binding(aor, f"sip:user{i}@10.1.{i // 250 % 250}.{i % 250 + 1}:5060", now + 3600,
                                   source_host=f"10.1.{i // 250 % 250}.{i % 250 + 1}", source_port=5060)], now)
    return Proxy(cfg, None, location=location, branch_salt="b"), Target("udp", "10.9.9.9", 5060, None, cfg.listen[0])


def invite(n: int, user: str) -> bytes:
    return (
        f"INVITE sip:{user}@{PROXY} SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:caller@10.9.9.9>;tag=f{n}\r\nTo: <sip:{user}@{PROXY}>\r\n"
        f"Call-ID: {n}@bench\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def run(proxy: Proxy, caller: Target, calls: int, user: str, offset: int) -> float:
    """Process time per call in µs."""
    start = time.process_time()
    for n in range(offset, offset + calls):
        acts = proxy.receive(invite(n, user), caller)
        fwd = acts[1].data  # the forwarded INVITE (acts[0] is the 100)
        ok = bytes(fastsip.make_response(fastsip.parse(fwd), 200, "OK", to_tag=f"t{n}"))
        proxy.receive(ok, Target("udp", acts[1].dest.host, acts[1].dest.port, None, caller.local))
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="10,100000")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    proxies = {n: make_proxy(n) for n in sizes}
    # As proxyapp's main() does: the cycle collector off, what start-up built frozen.
    gc.collect()
    gc.freeze()
    gc.disable()
    results: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(args.repeats):
        for n in sizes:
            proxy, caller = proxies[n]
            results[n].append(run(proxy, caller, args.calls, "user7", (r + 1) * 10_000_000 + n))
    base = statistics.median(results[sizes[0]])
    print("| bindings in the store | µs per call (median) | runs | vs. the first |")
    print("|---:|---:|---|---:|")
    for n in sizes:
        med = statistics.median(results[n])
        runs = ", ".join(f"{x:.1f}" for x in results[n])
        print(f"| {n:,} | {med:.1f} | {runs} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
