"""Compare fastsip (both backends) with the Python SIP libraries and two C parsers on named workloads.

    python bench/compare_parsers.py                      # everything, markdown tables on stdout
    python bench/compare_parsers.py --libs fastsip-c,sippy --workloads seed_invite --modes full
    python bench/compare_parsers.py --worker LIB WORKLOAD MODE   # one measurement, JSON on stdout
    python bench/compare_parsers.py --before /path/to/old/tree   # also fastsip-c@before, fastsip-py@before

--before DIR runs the fastsip libraries a second time from DIR/src (another checkout, built in place with
`python setup.py build_ext --inplace`), interleaved with everything else: before/after in one invocation.

Every (library, workload, mode) runs in its own fresh subprocess (no library can warm or pollute another's
interpreter). A worker calibrates a timeit loop to at least --min-time seconds (timeit.autorange), then
takes --repeat timings of that loop; the parent reports the median per call in microseconds and the
ratio to the best median of the same table. timeit switches the garbage collector off while it times.

Modes (see bench/README.md): minimal = the parse call; full = parse and read the 21 FIELDS of
bench/adapters/__init__.py (checked against expected values: the "fields" column); serialize = parse,
insert Via and Record-Route, decrement Max-Forwards, append a header, produce the bytes.

The C parsers (libosip2, sofia-sip) are compiled from bench/c/ at run time when their Debian -dev packages
are installed; they have no serialize mode here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

PY_LIBS = ["fastsip-c", "fastsip-py", "sippy", "sipmessage", "aiosipua", "pyvoip", "pysipio", "py-floor",
           "py-handwritten", "py-checked"]
C_LIBS = {
    "sofia-sip": ("sofia_bench.c", ["pkg-config", "--cflags", "--libs", "sofia-sip-ua"], "libsofia-sip-ua-dev"),
    "libosip2": ("osip_bench.c", None, "libosip2-dev"),
}
MODES = ["minimal", "full", "serialize"]


# --------------------------------------------------------------------------- worker (one subprocess)

def run_worker(lib: str, workload: str, mode: str, repeat: int, min_time: float) -> dict:
    import timeit

    import adapters
    import workloads

    out: dict = {"lib": lib, "workload": workload, "mode": mode, "ok": False}
    data = workloads.load()[workload]
    base = lib.split("@")[0]  # fastsip-c@before: the same adapter, another tree on PYTHONPATH
    try:
        mod = adapters.load(base)
    except Exception as exc:  # not installed, or broken on import: reported, never dropped
        out["error"] = f"import failed: {type(exc).__name__}: {exc}"
        return out
    out["version"] = _version(base, mod)
    if base.startswith("fastsip"):
        import fastsip

        out["version"] += f" from {Path(fastsip.__file__).resolve().parents[2]}"
    out["notes"] = getattr(mod, "NOTES", "")
    fn = getattr(mod, mode, None)
    if fn is None:
        out["error"] = "the library has no API for this"
        out["unsupported"] = True
        return out
    try:
        result = fn(data)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return out
    if mode == "full":
        out["fields"] = adapters.check(workload, workloads.load(), result)
    elif mode == "serialize":
        out["edits_ok"] = _edits_ok(data, result)

    timer = timeit.Timer("fn(data)", globals={"fn": fn, "data": data})
    number = _autorange(timer, min_time)
    times = timer.repeat(repeat=repeat, number=number)
    per_call = [t / number * 1e6 for t in times]
    out.update(ok=True, loops=number, times_us=per_call, median_us=statistics.median(per_call),
               min_us=min(per_call))
    return out


def _autorange(timer, min_time: float) -> int:
    number = 1
    while True:
        for m in (1, 2, 5):
            n = number * m
            if timer.timeit(n) >= min_time:
                return n
        number *= 10


def _version(lib: str, mod) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if mod.DIST is None:  # the yardsticks (py-floor, py-handwritten, py-checked) are no distribution
        return "-"
    if lib.startswith("fastsip"):
        import fastsip

        return f"{getattr(fastsip, '__version__', '?')} ({mod.BACKEND})"
    try:
        return version(mod.DIST)
    except PackageNotFoundError:
        return "?"


def _edits_ok(original: bytes, produced: bytes) -> bool:
    """Did the serialize mode really produce the edited message?"""
    import adapters

    lines = [line.lower() for line in produced.decode("utf-8", "replace").split("\r\n")]
    # header names are case-insensitive (RFC 3261 §7.3.1): aiosipua writes "P-Hint"
    want = [f"via: {adapters.EDIT_VIA}", f"record-route: {adapters.EDIT_RR}", "p-hint: outbound"]
    if b"Max-Forwards: 70" in original:
        want.append("max-forwards: 69")
    return all(w.lower() in lines for w in want)


# --------------------------------------------------------------------------- C reference parsers

def build_c(build_dir: Path) -> dict[str, Path | str]:
    """Compile bench/c/*.c; return {lib: binary path, or a str saying why not}."""
    build_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Path | str] = {}
    cc = shutil.which("cc") or shutil.which("gcc")
    for lib, (src, pkg, deb) in C_LIBS.items():
        if cc is None:
            res[lib] = "no C compiler"
            continue
        flags: list[str] = []
        if pkg:
            p = subprocess.run(pkg, capture_output=True, text=True)
            if p.returncode != 0:
                res[lib] = f"not installed (apt-get install {deb})"
                continue
            flags = p.stdout.split()
        else:
            flags = ["-losipparser2"]
        binary = build_dir / src.replace(".c", "")
        p = subprocess.run([cc, "-O2", "-o", str(binary), str(HERE / "c" / src), *flags],
                           capture_output=True, text=True)
        res[lib] = binary if p.returncode == 0 else f"build failed (apt-get install {deb}?): {p.stderr[-200:]}"
    return res


def run_c(lib: str, binary: Path, workload: str, mode: str, repeat: int, min_time: float) -> dict:
    out = {"lib": lib, "workload": workload, "mode": mode, "ok": False}
    if mode == "serialize":
        out.update(error="not measured for the C parsers", unsupported=True)
        return out
    p = subprocess.run([str(binary), str(HERE / "workloads" / f"{workload}.sip"), mode, str(repeat),
                        str(min_time)], capture_output=True, text=True, timeout=300)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out["error"] = f"exit {p.returncode}: {p.stderr[-200:]}"
        return out
    if not res.get("ok"):
        out["error"] = res.get("error", "failed")
        return out
    per_call = [t / 1000 for t in res["times_ns"]]
    out.update(ok=True, loops=res["loops"], times_us=per_call, median_us=statistics.median(per_call),
               min_us=min(per_call), version=_deb_version(C_LIBS[lib][2]))
    if mode == "full":
        out["fields"] = {"ok": ["all (C, unchecked)"], "wrong": [], "missing": []}
    return out


def _commit(tree: str) -> str:
    return subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def _deb_version(pkg: str) -> str:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return p.stdout.strip() or "?"


# --------------------------------------------------------------------------- parent

def machine_facts() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "(no commit)"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "src", "bench"],
                           capture_output=True, text=True).stdout.strip()
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "commit": commit + (" (+ uncommitted changes)" if dirty else ""),
        "load average at start": load,
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
    }


def spawn_worker(lib: str, workload: str, mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", lib, workload, mode, "--repeat", str(args.repeat),
           "--min-time", str(args.min_time)]
    env = dict(os.environ)
    # py-checked runs fastsip-py's own regexes, so it imports the same tree
    tree = args.before if lib.endswith("@before") else (
        args.after if lib.startswith("fastsip") or lib == "py-checked" else None)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(Path(tree) / "src"), env.get("PYTHONPATH")) if x)
    try:
        # cwd: a scratch directory, because PySIPio writes PySIP.log into the working directory
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=args.scratch, env=env)
    except subprocess.TimeoutExpired:
        return {"lib": lib, "workload": workload, "mode": mode, "ok": False, "error": "timed out"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"lib": lib, "workload": workload, "mode": mode, "ok": False,
            "error": f"worker exit {p.returncode}: {p.stderr.strip()[-300:]}"}


def fields_cell(r: dict) -> str:
    f = r.get("fields")
    if not f:
        return ""
    if f["ok"] == ["all (C, unchecked)"]:
        return "all read"
    n = len(f["ok"]) + len(f["wrong"]) + len(f["missing"])
    cell = f"{len(f['ok'])}/{n}"
    if f["wrong"]:
        cell += f", wrong: {', '.join(x.split('=')[0] for x in f['wrong'])}"
    return cell


def table(results: list[dict], workload: str, mode: str) -> list[str]:
    rows = [r for r in results if r["workload"] == workload and r["mode"] == mode]
    good = [r for r in rows if r.get("ok")]
    # py-floor parses nothing (it is the cost of reading the fields): shown for reference, never "best"
    best = min((r["median_us"] for r in good if r["lib"] != "py-floor"), default=None)
    extra = {"full": "fields read correctly", "serialize": "edits present"}.get(mode, "")
    lines = [f"| library | version | median µs | min µs | vs best | {extra} |".replace(" |  |", " |"),
             "|---|---|---:|---:|---:|" + ("---|" if extra else "")]
    for r in sorted(good, key=lambda r: r["median_us"]):
        ratio = "(floor)" if r["lib"] == "py-floor" else f"{r['median_us'] / best:.1f}x"
        cells = [r["lib"], r.get("version", ""), f"{r['median_us']:.2f}", f"{r['min_us']:.2f}", ratio]
        if mode == "full":
            cells.append(fields_cell(r))
        elif mode == "serialize":
            cells.append("yes" if r.get("edits_ok") else "NO")
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if not r.get("ok"):
            what = f"n/a ({r.get('error')})" if r.get("unsupported") else f"FAILED: {r.get('error', '?')}"
            cells = [r["lib"], r.get("version", ""), what, "", ""] + ([""] if extra else [])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(results: list[dict]) -> list[str]:
    """Issue 2's targets for the full parse of seed_invite (medians), met or not."""
    med = {r["lib"]: r["median_us"] for r in results
           if r["workload"] == "seed_invite" and r["mode"] == "full" and r.get("ok")}
    if "fastsip-c" not in med and "fastsip-py" not in med:
        return []
    out = ["", "### Targets: full parse of seed_invite (medians)", "",
           "| target | measured | met |", "|---|---|---|"]

    def row(what: str, value: str, ok: bool | None) -> None:
        out.append(f"| {what} | {value} | {'-' if ok is None else ('yes' if ok else '**no**')} |")

    c, py = med.get("fastsip-c"), med.get("fastsip-py")
    if c is not None:
        row("compiled backend <= 1.2 µs", f"{c:.2f} µs", c <= 1.2)
        for lib in ("sofia-sip", "libosip2"):
            if lib in med:
                row(f"compiled faster than {lib}", f"{lib} {med[lib]:.2f} µs = {med[lib] / c:.2f}x fastsip-c",
                    c < med[lib])
        if "sippy" in med:
            row(">= 25x faster than sippy", f"sippy {med['sippy']:.2f} µs = {med['sippy'] / c:.1f}x fastsip-c",
                med["sippy"] / c >= 25)
    else:
        row("compiled backend <= 1.2 µs", "compiled backend not measured", None)
    if py is not None:
        row("pure-Python backend <= 10 µs", f"{py:.2f} µs", py <= 10)
    return out


def merge_rounds(results: list[dict]) -> list[dict]:
    """One row per (lib, workload, mode) from several rounds: median of the round medians, min of the mins.

    Rounds run the libraries one after the other, again and again, so a burst of load from other work on
    the machine hits one round of each library rather than all the runs of one library."""
    by: dict[tuple, list[dict]] = {}
    for r in results:
        by.setdefault((r["lib"], r["workload"], r["mode"]), []).append(r)
    out = []
    for rows in by.values():
        good = [r for r in rows if r.get("ok")]
        if not good:
            out.append(rows[0])
            continue
        m = dict(good[0])
        m["median_us"] = statistics.median(r["median_us"] for r in good)
        m["min_us"] = min(r["min_us"] for r in good)
        m["round_medians_us"] = [round(r["median_us"], 3) for r in good]
        out.append(m)
    return out


def render(facts: dict, results: list[dict]) -> str:
    """Markdown: machine facts, one table per (workload, mode), the targets, what each adapter reads."""
    import adapters

    out = ["## Machine", ""] + [f"- {k}: {v}" for k, v in facts.items()]
    wls = list(dict.fromkeys(r["workload"] for r in results))
    modes = list(dict.fromkeys(r["mode"] for r in results))
    libs = list(dict.fromkeys(r["lib"] for r in results))
    for wl in wls:
        for mode in modes:
            out += ["", f"### {wl} / {mode}", ""] + table(results, wl, mode)
    out += targets(results)
    out += ["", "### What each adapter reads", ""]
    for lib in libs:
        note = next((r["notes"] for r in results if r["lib"] == lib and r.get("notes")), None)
        if note is None and lib in adapters.LIBS:
            # Not in the results (older file): import here, in a scratch directory, because PySIPio
            # writes PySIP.log into the working directory when it is imported.
            cwd = os.getcwd()
            with tempfile.TemporaryDirectory() as scratch:
                os.chdir(scratch)
                try:
                    note = adapters.load(lib).NOTES
                except Exception as exc:
                    note = f"(not importable: {type(exc).__name__}: {exc})"
                finally:
                    os.chdir(cwd)
        if note is not None:
            out.append(f"- {lib}: {note}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("LIB", "WORKLOAD", "MODE"))
    ap.add_argument("--libs", default=",".join(PY_LIBS + list(C_LIBS)))
    ap.add_argument("--workloads", default="seed_invite,ok_5via_3rr,options_small")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=1, help="run every library this many times, interleaved")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per timed loop (default 0.2)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per worker")
    ap.add_argument("--json", help="also write all raw results to this file")
    ap.add_argument("--before", help="another fastsip tree (built in place): adds LIB@before for each fastsip LIB")
    ap.add_argument("--after", default=str(ROOT), help="the tree whose src/ the fastsip LIBs import (default: this one)")
    ap.add_argument("--from-json", help="print the tables of a file written by --json, measuring nothing")
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(run_worker(*args.worker, repeat=args.repeat, min_time=args.min_time)))
        return 0
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        print(render(saved["machine"], saved["results"]))
        return 0

    facts = machine_facts()
    args.scratch = tempfile.mkdtemp(prefix="fastsip-bench-")
    libs = [x for x in args.libs.split(",") if x]
    if args.before:
        libs += [f"{x}@before" for x in libs if x in ("fastsip-c", "fastsip-py")]
        facts["before"] = f"{args.before} (commit {_commit(args.before)})"
    wls = [x for x in args.workloads.split(",") if x]
    modes = [x for x in args.modes.split(",") if x]
    c_bins = build_c(Path("/tmp") / f"fastsip-bench-c-{os.getuid()}") if any(x in C_LIBS for x in libs) else {}
    results: list[dict] = []
    for _round in range(args.rounds):
        for wl in wls:
            for mode in modes:
                for lib in libs:
                    if lib in C_LIBS:
                        b = c_bins.get(lib)
                        if isinstance(b, Path):
                            r = run_c(lib, b, wl, mode, args.repeat, args.min_time)
                        else:
                            r = {"lib": lib, "workload": wl, "mode": mode, "ok": False, "error": b}
                    else:
                        r = spawn_worker(lib, wl, mode, args)
                    results.append(r)
                    status = f"{r['median_us']:.2f} µs" if r.get("ok") else r.get("error", "failed")
                    print(f"# {wl:14} {mode:9} {lib:11} {status}", file=sys.stderr, flush=True)

    if args.rounds > 1:
        results = merge_rounds(results)
        facts["rounds"] = f"{args.rounds} (libraries interleaved; median of the round medians, min of the mins)"
    print(render(facts, results))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": results}, indent=1))
    shutil.rmtree(args.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
