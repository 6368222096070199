"""Instructions per parse, counted by valgrind (callgrind): the noise-free twin of compare_parsers.py.

On this project's shared 2-core VMs a parser's time per call moves by 30 % from run to run, and the
machines themselves differ by 2.5x (the Xeon of the final run against the AMD EPYC of later
sessions). The instruction count of the same work moves by well under 1 %. This runs the adapter
functions of bench/adapters (the same code compare_parsers.py times) under callgrind at two call
counts and reports (Ir(N2) - Ir(N1)) / (N2 - N1): imports and start-up cancel out, PYTHONHASHSEED=0
fixes dict and set layouts.

    python bench/parser_instructions.py [--libs fastsip-c,fastsip-py,py-floor,sippy]
        [--workloads seed_invite] [--modes minimal,full] [--tree DIR ...]

--tree DIR (repeatable) counts the fastsip libraries of another checkout too (built in place):
before/after in one invocation. Instructions are not time (a cache miss costs more than an add), so
quote them beside a timed run of compare_parsers.py, never instead of one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.append(str(HERE / "proxy"))  # after everything else: its modules shadow nothing

from instructions import callgrind_total, valgrind_python  # noqa: E402  (bench/proxy/instructions.py)


def _loop(lib: str, workload: str, mode: str, calls: int) -> None:
    """The counted program: ``calls`` calls of the adapter's ``mode`` function (a warm-up call first)."""
    sys.path.insert(0, str(HERE))
    import adapters
    import workloads

    data = workloads.load()[workload]
    fn = getattr(adapters.load(lib), mode)
    fn(data)
    for _ in range(calls):
        fn(data)


def count(lib: str, workload: str, mode: str, calls: int, tree: Path, python: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONHASHSEED="0")
    env.pop("FASTSIP_NO_EXTENSIONS", None)
    return callgrind_total([python, str(Path(__file__)), "--loop", lib, workload, mode, str(calls)], env)


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--loop":
        _loop(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libs", default="fastsip-c,fastsip-py,py-floor,sippy")
    ap.add_argument("--workloads", default="seed_invite")
    ap.add_argument("--modes", default="minimal,full")
    ap.add_argument("--tree", action="append", default=[], help="another checkout, for its fastsip rows")
    ap.add_argument("--n1", type=int, default=200)
    ap.add_argument("--n2", type=int, default=1200)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    python = valgrind_python()
    if python is None:
        return 2
    trees = [ROOT] + [Path(t).resolve() for t in args.tree]
    rows = []
    for workload in args.workloads.split(","):
        for mode in args.modes.split(","):
            for lib in args.libs.split(","):
                for tree in trees if lib.startswith("fastsip") else trees[:1]:
                    rows.append((lib, workload, mode, tree))
    for tree in trees:  # compile the .pyc files first: the counted runs must not differ by that
        for lib in {r[0] for r in rows}:
            subprocess.run([python, str(Path(__file__)), "--loop", lib, rows[0][1], "minimal", "1"],
                           env=dict(os.environ, PYTHONPATH=str(tree / "src")), capture_output=True, timeout=600)
    jobs = [(r, n) for r in rows for n in (args.n1, args.n2)]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        totals = dict(zip(jobs, pool.map(lambda j: count(*j[0][:3], j[1], j[0][3], python), jobs)))
    print(f"| library | tree | workload | mode | instructions per call |")
    print("|---|---|---|---|---:|")
    for r in rows:
        per = (totals[(r, args.n2)] - totals[(r, args.n1)]) / (args.n2 - args.n1)
        tree = _commit(r[3]) if r[3] != ROOT else f"{_commit(ROOT)} (this tree)"
        print(f"| {r[0]} | {tree} | {r[1]} | {r[2]} | {per:,.0f} |")
    return 0


def _commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    return (out.stdout.strip() or "?") + ("+changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
