"""CPU per proxied call on pymalloc and on malloc ([limits] allocator), in one invocation.

Runs the in-process call flow (tests/proxy/callflow.py: INVITE, 100, 180, 200, ACK, BYE, 200
through the sans-IO core) as a child process with PYTHONMALLOC=pymalloc and =malloc in turn,
REPEATS times each, alternating so that the machine's noise hits both alike, and reports the
median user+system CPU time per call and the ratio.

    python bench/proxy/allocator.py [--calls 20000] [--repeats 5]

Instructions, which the noise does not move: PYTHONMALLOC=malloc python bench/proxy/instructions.py .
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOCATORS = ("pymalloc", "malloc")


def cpu_seconds(allocator: str, calls: int) -> float:
    """User + system CPU of one child running ``calls`` calls."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, PYTHONMALLOC=allocator, PYTHONPATH=str(ROOT / "src"), PYTHONHASHSEED="0")
    subprocess.run([sys.executable, "-m", "tests.proxy.callflow", str(calls)], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cpu_seconds("pymalloc", 50)  # compile the .pyc files first
    runs: dict[str, list[float]] = {a: [] for a in ALLOCATORS}
    for _ in range(args.repeats):
        for a in ALLOCATORS:
            runs[a].append(cpu_seconds(a, args.calls) / args.calls * 1e6)
    base = statistics.median(runs["pymalloc"])
    print(f"| allocator | CPU per call, median of {args.repeats} (µs) | runs | vs pymalloc |")
    print("|---|---:|---|---:|")
    for a in ALLOCATORS:
        med = statistics.median(runs[a])
        print(f"| {a} | {med:.1f} | {', '.join(f'{x:.1f}' for x in runs[a])} | {med / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
