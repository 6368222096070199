"""Where a proxy run's CPU goes: per process and per thread, in microseconds per call.

Starts bench/proxy/run.py for one proxy, variant and rate (20 s of calls), waits until the run is
in its steady state, reads utime+stime of every thread of the proxy, its helper processes (SQLite
writer, journal helper) and both SIPp processes from /proc twice, WINDOW seconds apart, and prints
each one's share of a core and its CPU per call at the offered rate. Then it prints run.py's row.

    python bench/proxy/cpu_split.py --proxy proxyapp1 --variant acc_db --rate 2500

Loopback only, like run.py; it stops nothing itself: run.py stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def _threads(pattern: str) -> dict[str, tuple[str, int]]:
    """{pid/tid: (name, utime+stime ticks)} of every process whose command line contains pattern."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern not in cmd or "cpu_split" in cmd or "run.py" in cmd:
            continue
        name = "sipp" if "sipp" in cmd.split(" ")[0] else cmd.split(" -m ")[-1].split(" ")[0] if " -m " in cmd else cmd[:30]
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(") ", 1)[1].split()
                out[f"{pid}/{tid}"] = (name, int(fields[11]) + int(fields[12]))
        except OSError:
            continue
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="proxyapp1")
    ap.add_argument("--variant", default="acc_db")
    ap.add_argument("--rate", type=int, default=2500)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the first reading")
    ap.add_argument("--window", type=float, default=5.0, help="seconds between the two readings")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cpu-split-")
    run = subprocess.Popen(
        [sys.executable, str(HERE / "run.py"), "--proxy", args.proxy, "--variants", args.variant,
         "--rates", str(args.rate), "--duration", "20", "--workdir", work],
        stdout=subprocess.PIPE, text=True,
    )
    time.sleep(args.warmup)
    patterns = (work, "sipp", "proxyapp.acc.")  # the proxy's config lives in work; its helpers
    before = {k: v for p in patterns for k, v in _threads(p).items()}
    time.sleep(args.window)
    after = {k: v for p in patterns for k, v in _threads(p).items()}
    assert run.stdout is not None
    report = run.stdout.read()
    run.wait()
    print(f"{args.proxy} / {args.variant} at {args.rate}/s, {args.window:.0f} s window after {args.warmup:.0f} s")
    for key in sorted(after):
        if key not in before:
            continue
        name, ticks = after[key]
        used = (ticks - before[key][1]) / TICK
        if used <= 0:
            continue
        print(f"  {key:>14} {name:<40} {100 * used / args.window:5.1f} % of a core  {1e6 * used / (args.window * args.rate):6.1f} us/call")
    print("\n".join(line for line in report.splitlines() if line.startswith(f"| {args.rate} ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
