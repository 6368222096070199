"""Instructions per execution of a Python statement, counted by valgrind (callgrind): timeit without the noise.

parser_instructions.py counts whole adapter calls; this counts any statement, which is what deciding
between two ways of writing one step needs (a regex against a partition, a property against a slot).
Each statement runs after the setup code, 3 times to warm up and then N1 and N2 times in two separate
callgrind runs; the figure is (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up, imports and the setup cancel
out. The loop itself costs a few hundred instructions per pass: count ``pass`` to see it.

    python bench/stmt_instructions.py --setup 'import re; r = re.compile("(?:a)?b")' \\
        'r.fullmatch("ab")' 'pass'

PYTHONPATH is the tree's src/ (--tree, default this checkout) and PYTHONHASHSEED=0. FASTSIP_NO_EXTENSIONS
is passed through from the environment, so ``fastsip.parse`` is whichever backend it selects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE / "proxy"))  # after everything else: its modules shadow nothing

from instructions import callgrind_total, valgrind_python  # noqa: E402  (bench/proxy/instructions.py)

N1, N2 = 200, 1200


def count(setup: str, stmt: str, tree: Path, python: str) -> float:
    """Instructions per execution of ``stmt`` after ``setup``."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONHASHSEED="0")
    totals = []
    for n in (N1, N2):
        program = f"{setup}\nfor _ in range(3):\n    {stmt}\nfor _ in range({n}):\n    {stmt}\n"
        totals.append(callgrind_total([python, "-c", program], env))
    return (totals[1] - totals[0]) / (N2 - N1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stmts", nargs="+", metavar="STMT", help="one-line statements to count, each on its own")
    ap.add_argument("--setup", default="pass", help="code run once before the statements (may span lines)")
    ap.add_argument("--tree", type=Path, default=HERE.parent, help="checkout whose src/ is imported")
    args = ap.parse_args()
    python = valgrind_python()
    if python is None:
        return 2
    for stmt in args.stmts:
        print(f"{count(args.setup, stmt, args.tree, python):10,.0f}  {stmt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
