"""Where fastsip's full-parse time goes: the cost of parse() and of each first field access, per backend.

    python bench/breakdown.py [--workload seed_invite] [--backends c,py]

Each step is timed as (parse + every access up to and including this one) minus the previous step,
using the minimum of 7 timeit repeats (the least disturbed one on a shared machine), so a row shows what
that first access adds on a fresh message. For the parser's authors: it tells which accessor to make
cheaper to reach the full-parse target. On a loaded machine a row can come out negative: rerun.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402

STEPS = [
    ("parse()", ""),
    ("start line + Request-URI", "u = m.uri; u.user; u.host; u.params" ),
    ("via[0]", "v = m.via[0]; v.transport; v.host; v.port; v.branch; v.rport"),
    ("from_", "f = m.from_; f.uri.user; f.uri.host; f.tag"),
    ("to", "t = m.to; t.uri.user; t.uri.host; t.tag"),
    ("cseq", "c = m.cseq; c.seq; c.method"),
    ("call_id", "m.call_id"),
    ("max_forwards", "m.max_forwards"),
    ("content_length", "m.content_length"),
    ("body", "m.body"),
]


def measure(parse, data: bytes, is_request: bool, repeat: int = 7, min_time: float = 0.2) -> list[tuple[str, float]]:
    out, prev, body = [], 0.0, []
    for name, stmt in STEPS:
        if name.startswith("start") and not is_request:
            stmt = "m.status; m.reason"
        if stmt:
            body.append(stmt)
        code = "m = parse(data)\n" + "\n".join(body)
        t = timeit.Timer(code, globals={"parse": parse, "data": data})
        n = t.autorange()[0]
        while t.timeit(n) < min_time:
            n *= 2
        med = min(x / n * 1e6 for x in t.repeat(repeat, n))  # min: the least disturbed run on a shared machine
        out.append((name, med - prev))
        prev = med
    out.append(("total", prev))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workload", default="seed_invite")
    ap.add_argument("--backends", default="c,py")
    args = ap.parse_args()
    data = workloads.load()[args.workload]
    cols = {}
    for b in args.backends.split(","):
        try:
            mod = importlib.import_module(f"fastsip._parser_{b}")
        except ImportError as exc:
            print(f"fastsip._parser_{b}: not available ({exc})")
            continue
        cols[b] = measure(mod.parse, data, not data.startswith(b"SIP/"))
    if not cols:
        return 1
    names = [n for n, _ in next(iter(cols.values()))]
    print(f"{args.workload}: µs added by each step (min of 7)\n")
    print("| step | " + " | ".join(f"fastsip-{b}" for b in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for i, n in enumerate(names):
        print(f"| {n} | " + " | ".join(f"{cols[b][i][1]:.2f}" for b in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
