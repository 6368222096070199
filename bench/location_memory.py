"""Bytes per registration binding held by proxyapp.location.Location, measured with tracemalloc.

    python3 bench/location_memory.py [--bindings 100000] [--per-aor 1]

Builds N bindings shaped like a REGISTER's (a distinct Contact, Call-ID, source address and
times each; node, socket and a handful of User-Agents shared), puts them into a Location, and
reports the memory traced from before the first binding was built to after the last put: the
Binding objects with their strings and floats, the AOR dict, the per-AOR tuples and the expiry
heap. Also the time of a get() and of an expire() that finds nothing to do.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
import tracemalloc
from pathlib import Path

if __name__ == "__main__":  # run from a checkout; imported by tests/location, the installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from proxyapp.location import Binding, Location  # noqa: E402

USER_AGENTS = ["Linphone/5.2.0 (belle-sip/5.2.0)", "Bria 6.5.2 stamp 111", "Zoiper rv2.10.19.3", "Yealink SIP-T46U 108.86.0.45", "baresip v3.10.1"]


def build(n: int, per_aor: int, now: float, seed: int = 1) -> Location:
    rnd = random.Random(seed)
    loc = Location()
    for i in range(n // per_aor):
        aor = f"sip:user{i:06d}@example.com"
        bindings = []
        for j in range(per_aor):
            host = f"203.0.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
            port = rnd.randrange(1024, 65535)
            bindings.append(
                Binding(
                    aor=aor,
                    contact=f"sip:user{i:06d}@{host}:{port};transport=udp;line={j}",
                    expires=now + rnd.uniform(60, 3600),
                    q=None if j == 0 else 0.5,
                    call_id=f"{rnd.getrandbits(128):032x}@{host}",
                    cseq=rnd.randrange(1, 100000),
                    source_transport="udp",
                    source_host=host,
                    source_port=port,
                    socket="udp:192.0.2.10:5060",
                    node="sip:192.0.2.10:5060",
                    user_agent=rnd.choice(USER_AGENTS),
                    last_modified=now - rnd.uniform(0, 3600),
                )
            )
        loc.put(aor, bindings, now)
    return loc


def measure(n: int, per_aor: int = 1) -> tuple[float, Location]:
    """(bytes per binding, the Location) for n bindings, per_aor to an AOR."""
    now = time.time()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loc = build(n, per_aor, now)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert loc.count() == n
    return (after - before) / n, loc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindings", type=int, default=100_000)
    ap.add_argument("--per-aor", type=int, default=1)
    args = ap.parse_args()
    per, loc = measure(args.bindings, args.per_aor)
    now = time.time()
    aors = loc.aors()
    t0 = time.perf_counter()
    for aor in aors[:10000]:
        loc.get(aor, now)
    t_get = (time.perf_counter() - t0) / min(len(aors), 10000)
    t_exp = float("inf")
    for _ in range(5):  # the best of five: the first call pays for warming up
        t0 = time.perf_counter()
        loc.expire(now)
        t_exp = min(t_exp, time.perf_counter() - t0)
    print(f"Python {platform.python_version()} on {platform.machine()}")
    print(f"{args.bindings} bindings, {args.per_aor} per AOR ({len(loc)} AORs): {per:.0f} bytes per binding, {per * args.bindings / 2**20:.1f} MiB in all")
    print(f"get(): {t_get * 1e6:.2f} us; expire() with nothing due: {t_exp * 1e6:.1f} us")


if __name__ == "__main__":
    main()
