"""Instructions per proxied call, counted by valgrind (callgrind), for one or more source trees.

On a shared, noisy VM the time per call of two trees run minutes apart differs by 10-30 %; the
instruction count of the same work does not (it moves by well under 1 % between runs). This
runs the in-process call flow (tests/proxy/callflow.py: INVITE, 100, 180, 200, ACK, BYE, 200
through the sans-IO core, no accounting) under callgrind at two call counts in each tree and
reports (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and imports cancel out (a warm-up run compiles
the .pyc files first, and PYTHONHASHSEED=0 fixes dict and set layouts).

    python bench/proxy/instructions.py TREE [TREE ...] [--n1 200] [--n2 1000]

A TREE is a checkout with the parser built in place (python3 setup.py build_ext --inplace),
e.g. a `git worktree add /tmp/base <commit>` of the commit to compare with. The runs go in
parallel, two at a time (valgrind is single-threaded; counts do not depend on load).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys


def callgrind_total(argv: list[str], env: dict[str, str], cwd: str | None = None) -> int:
    """Total instructions callgrind counted for ``argv`` (a Python command line); also used by
    bench/parser_instructions.py."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None or out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: no callgrind total\n{out.stderr[-2000:]}")
    return int(m.group(1))


def valgrind_python() -> str | None:
    """The interpreter for valgrind to run (not a pyenv shim), or None (with a message) without valgrind."""
    if shutil.which("valgrind") is None:
        print("valgrind is required (apt-get install valgrind)", file=sys.stderr)
        return None
    return os.path.realpath(sys.executable)


def instructions(tree: str, calls: int, python: str) -> int:
    """Total instructions of `python -m tests.proxy.callflow CALLS` in ``tree``."""
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"), PYTHONHASHSEED="0")
    return callgrind_total([python, "-m", "tests.proxy.callflow", str(calls)], env, cwd=tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--n1", type=int, default=200)
    ap.add_argument("--n2", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    python = valgrind_python()
    if python is None:
        return 2
    for t in args.trees:  # compile every .pyc first: the counted runs must not differ by that
        subprocess.run([python, "-m", "tests.proxy.callflow", "50"], cwd=t, capture_output=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=os.path.join(t, "src")))
    jobs = [(t, n) for t in args.trees for n in (args.n1, args.n2)]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        totals = dict(zip(jobs, pool.map(lambda j: instructions(j[0], j[1], python), jobs)))
    first = None
    print(f"| tree | Ir({args.n1} calls) | Ir({args.n2} calls) | instructions per call | vs first |")
    print("|---|---:|---:|---:|---:|")
    for t in args.trees:
        per = (totals[(t, args.n2)] - totals[(t, args.n1)]) / (args.n2 - args.n1)
        first = first or per
        print(f"| {t} | {totals[(t, args.n1)]:,} | {totals[(t, args.n2)]:,} | {per:,.0f} | {per / first:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
