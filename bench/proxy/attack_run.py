"""Proxy benchmark under attack: legitimate calls stepped up while a flood runs, against the same calls
without it, in one invocation (issue 17).

Floods can reach anything a name resolves to, so this runner refuses to run an attack outside a private
network namespace holding nothing but loopback; run the whole invocation in one:

    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python3 bench/proxy/attack_run.py \\
        --proxy kamailio,proxyapp --attack none,invite:2000:1,invite:2000:100,scan:2000:100 \\
        --rates 500,1000,1500,2000 --duration 10 --repeat 2 --json out.json'
    python bench/proxy/attack_run.py --from-json out.json       # print a saved run again

For every repeat, proxy and attack (in that order, so repeats interleave) it steps the legitimate call
rate up as bench/proxy/run.py does (same harness, processes, pass rule): run.py's "auth" variant by
default (proxyapp with examples/auth_script.py, Kamailio with kamailio-auth.cfg: digest auth, pike-like
flood limit, scanner filter), the caller authenticating every call from 127.0.0.1. Beside it, from
the attack's sources, bench/proxy/flood.py sends the flood:

    KIND:RATE[:SOURCES]    KIND invite or scan (see flood.py), RATE datagrams/s in total, SOURCES 1
                           (127.0.0.2, the default) or N (127.0.1.1 ... 127.0.1.N, round-robin)
    none                   no flood: the reference, measured in the same invocation

The flood starts --lead seconds before the caller (so a per-source ban is in place, or not, when the
calls begin) and is bounded by RATE * (lead + duration + 10) datagrams and lead + duration + 10 seconds;
it is stopped with the rest when the caller ends. Proxy CPU per call counts the flood's cost too (the
proxy's CPU over the caller's run divided by the legitimate calls). Reported: run.py's tables per
proxy and attack, the flood's own figures (datagrams sent, answers by status code), and a summary:
the median over repeats of the highest zero-failure rate per attack, its ratio to "none", and CPU per
call and setup latency at the highest rate every repeat of both passed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


sys.path.insert(0, str(HERE))
from register_run import _load_run  # noqa: E402  (run.py loaded as a module, as register_run does)

run = _load_run()
RunResult = run.RunResult
KINDS = ("invite", "scan")
FLOOD_PORT_OFFSET = 55  # the flood's source port: port base + 55 (on its own addresses)


def parse_attack(spec: str) -> tuple[str, int, int] | None:
    """'none' -> None; 'invite:2000' -> ('invite', 2000, 1); 'scan:2000:100' -> ('scan', 2000, 100)."""
    if spec == "none":
        return None
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in KINDS:
        raise ValueError(f"--attack: expected none or KIND:RATE[:SOURCES] with KIND in {KINDS}, got {spec!r}")
    rate, n = int(parts[1]), int(parts[2]) if len(parts) == 3 else 1
    if not (0 < rate <= 50_000 and 1 <= n <= 250):
        raise ValueError(f"--attack {spec!r}: RATE 1..50000, SOURCES 1..250")
    return parts[0], rate, n


def source_spec(n: int) -> str:
    return "127.0.0.2" if n == 1 else f"127.0.1.1-127.0.1.{n}"


def check_namespace() -> str | None:
    """None when this process is in a network namespace with loopback only, and loopback is up
    (a datagram from 127.0.0.2 reaches 127.0.0.1); else the reason."""
    try:
        names = [ln.split(":", 1)[0].strip() for ln in Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    except OSError as exc:
        return f"cannot read /proc/self/net/dev: {exc}"
    others = [n for n in names if n and n != "lo"]
    if others:
        return (f"network interfaces other than lo here ({', '.join(others)}): run inside "
                "unshare -n sh -c 'ip link set lo up; python bench/proxy/attack_run.py ...'")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            b.bind(("127.0.0.1", 0))
            b.settimeout(1.0)
            a.bind(("127.0.0.2", 0))
            a.sendto(b"ping", b.getsockname())
            b.recv(16)
    except OSError as exc:
        return f"loopback does not carry 127.0.0.2 -> 127.0.0.1 ({exc}): is lo up (ip link set lo up)?"
    return None


def flood_side(attack: tuple[str, int, int], args):
    kind, rate, n = attack
    seconds = args.lead + args.duration + 10

    def start(rundir: Path, res) -> run.Proc:
        cmd = [sys.executable, str(HERE / "flood.py"), "--target", f"127.0.0.1:{run.PROXY_PORT}", "--kind", kind,
               "--rate", str(rate), "--count", str(int(rate * seconds)), "--seconds", str(seconds),
               "--sources", source_spec(n), "--port", str(run.PROXY_PORT + FLOOD_PORT_OFFSET),
               "--domain", run.AUTH_DOMAIN, "--stats", str(rundir / "flood.json")]
        p = run.Proc("flood", cmd, rundir)
        time.sleep(args.lead)
        if not p.alive():
            res.notes.append(f"flood exited early ({p.p.returncode}): see {rundir}/flood.log")
        return p

    return start


def flood_stats(rundir: str) -> dict:
    try:
        return json.loads((Path(rundir) / "flood.json").read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- report

def label(variant: str, attack: str) -> str:
    return variant if attack == "none" else f"{variant} + {attack}"


def best_rate(rows: list[RunResult]) -> int | None:
    """Highest rate passed before the first failing one (rates stepped up in order)."""
    best = None
    for r in sorted(rows, key=lambda r: r.rate):
        if not run.clean(r):
            break
        best = r.rate
    return best


def cut_short(rows: list[RunResult], top: int | None) -> bool:
    """The series ended on a passed rate below the top of --rates: --max-wall stopped it, so its
    zero-failure rate is a lower bound."""
    return bool(rows) and top is not None and all(run.clean(r) for r in rows) and max(r.rate for r in rows) < top


def top_rate(facts: dict, records: list[dict]) -> int | None:
    """The top of --rates: saved with the run, else read from its command line."""
    if facts.get("rates"):
        return max(int(x) for x in str(facts["rates"]).split(","))
    words = facts.get("command", "").split()
    if "--rates" in words:
        return max(int(x) for x in words[words.index("--rates") + 1].split(","))
    return None


def summary(records: list[dict], attacks: list[str], top: int | None = None) -> list[str]:
    out = ["", "### Zero-failure rates, medians over repeats; under attack against no attack", "",
           "| proxy | variant | attack | zero-failure rate per repeat | median | / none | / first variant | "
           "/ kamailio | compared at | CPU ms/call none → attack | setup mean ms none → attack | "
           "setup p99 ms none → attack |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    keys = list(dict.fromkeys((r["result"]["proxy"], r["result"]["variant"]) for r in records))
    repeats = sorted({r["repeat"] for r in records})

    def rows(proxy, variant, attack, rep=None):
        return [RunResult(**{"udp_drops": {}, **x["result"]}) for x in records
                if (x["result"]["proxy"], x["result"]["variant"], x["attack"]) == (proxy, variant, attack)
                and (rep is None or x["repeat"] == rep)]

    variants = list(dict.fromkeys(v for _, v in keys))

    tops = {x["repeat"]: x.get("top", top) for x in records}  # merged files: each repeat its own --rates

    def per_repeat(proxy, variant, attack):
        """[(zero-failure rate or 0, a lower bound?)] per repeat that ran the series."""
        out = []
        for rep in repeats:
            rs = rows(proxy, variant, attack, rep)
            if rs:
                out.append((best_rate(rs) or 0, cut_short(rs, tops[rep])))
        return out

    def median_best(proxy, variant, attack):
        vals = [best_rate(rows(proxy, variant, attack, rep)) or 0 for rep in repeats
                if rows(proxy, variant, attack, rep)]
        return statistics.median(vals) if vals else None

    def rel(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    for proxy, variant in keys:
        base_med = None
        for attack in attacks:
            if not rows(proxy, variant, attack):
                continue
            got = per_repeat(proxy, variant, attack)
            vals = [v for v, _ in got]
            med = statistics.median(vals)
            bound = "≥" if any(cut for _, cut in got) else ""
            if attack == "none":
                base_med = med
            ratio = f"{med / base_med:.2f}" if base_med and attack != "none" else "-"
            cmp_at, cpu, mean, p99 = "-", "-", "-", "-"
            if attack != "none":
                # the highest rate that every repeat passed, with and without the attack
                ok = None
                for rate in sorted({r.rate for r in rows(proxy, variant, attack)}):
                    both = [r for a in ("none", attack) for r in rows(proxy, variant, a) if r.rate == rate]
                    if len(both) == 2 * len(repeats) and all(run.clean(r) for r in both):
                        ok = rate
                if ok is not None:
                    def med_of(a, key, ok=ok):
                        xs = [getattr(r, key) for r in rows(proxy, variant, a)
                              if r.rate == ok and getattr(r, key) is not None]
                        return statistics.median(xs) if xs else None
                    cmp_at = f"{ok}/s"
                    cpu = f"{run.fmt(med_of('none', 'cpu_ms_per_call'), 3)} → {run.fmt(med_of(attack, 'cpu_ms_per_call'), 3)}"
                    mean = f"{run.fmt(med_of('none', 'setup_mean_ms'))} → {run.fmt(med_of(attack, 'setup_mean_ms'))}"
                    p99 = f"{run.fmt(med_of('none', 'setup_p99_ms'), 0)} → {run.fmt(med_of(attack, 'setup_p99_ms'), 0)}"
            shown = ", ".join(("≥" if cut else "") + (str(v) if v else "none") for v, cut in got)
            first = rel(med, median_best(proxy, variants[0], attack)) if variant != variants[0] else "-"
            kam = rel(med, median_best("kamailio", variant, attack)) if proxy != "kamailio" else "-"
            out.append(f"| {proxy} | {variant} | {attack} | {shown} | {bound}{med:g} | {ratio} | {first} | {kam} | "
                       f"{cmp_at} | {cpu} | {mean} | {p99} |")
    out += ["", "Zero-failure rate: the highest rate of --rates passed (every call succeeded, >= 95 % of the "
            "rate achieved) before the first that failed, per repeat (\"none\": not even the lowest); at the "
            "top of --rates it is a lower bound, and so is a series --max-wall cut short (marked ≥, as is a "
            "median that counts one). Ratios are of medians: to the same proxy and variant without "
            "attack (/ none), to the same proxy and attack in the first variant given (/ first variant), to "
            "Kamailio in the same variant and attack (/ kamailio). CPU per call under attack includes the "
            "proxy's work on the flood."]
    return out


def flood_table(records: list[dict]) -> list[str]:
    rows = [x for x in records if x["attack"] != "none"]
    if not rows:
        return []
    out = ["", "### The floods", "",
           "| proxy | attack | repeat | legit rate/s | flood sent | flood achieved/s | answers by code | "
           "flood CPU s | legit ok / attempted |", "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for x in rows:
        r, f = x["result"], x.get("flood", {})
        ans = ", ".join(f"{k}: {v}" for k, v in sorted(f.get("answers", {}).items())) or "none"
        out.append(f"| {r['proxy']} | {x['attack']} | {x['repeat']} | {r['rate']} | {f.get('sent', '-')} | "
                   f"{f.get('achieved_rate', '-')} | {ans} | {f.get('cpu_s', '-')} | {r['succeeded']} / {r['attempted']} |")
    return out


def per_rate(records: list[dict]) -> list[str]:
    """Medians over repeats at each rate, for the rates that every repeat of a series ran: CPU per call
    and setup mean (the steadier figures on a shared machine), with how many repeats passed."""
    out = ["", "### Per rate, medians over repeats", "",
           "| proxy | variant | attack | rate/s | passed | achieved/s | proxy CPU ms/call | setup mean ms | "
           "setup p99 ms |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    repeats = sorted({x["repeat"] for x in records})
    series = list(dict.fromkeys((x["result"]["proxy"], x["result"]["variant"], x["attack"]) for x in records))
    for proxy, variant, attack in series:
        mine = [RunResult(**{"udp_drops": {}, **x["result"]}) for x in records
                if (x["result"]["proxy"], x["result"]["variant"], x["attack"]) == (proxy, variant, attack)]
        for rate in sorted({r.rate for r in mine}):
            at = [r for r in mine if r.rate == rate]
            if len(at) < len(repeats):
                continue

            def med(key: str):
                xs = [getattr(r, key) for r in at if getattr(r, key) is not None]
                return statistics.median(xs) if xs else None

            out.append(f"| {proxy} | {variant} | {attack} | {rate} | {sum(run.clean(r) for r in at)}/{len(at)} | "
                       f"{run.fmt(med('achieved_rate'), 1)} | {run.fmt(med('cpu_ms_per_call'), 3)} | "
                       f"{run.fmt(med('setup_mean_ms'))} | {run.fmt(med('setup_p99_ms'), 0)} |")
    out += ["", "Only the rates every repeat ran (a series stops at its first failure); a median over runs "
            "that failed is marked by passed < repeats."]
    return out


def full_report(records: list[dict], facts: dict, attacks: list[str]) -> str:
    results = []
    for x in records:
        r = RunResult(**{"udp_drops": {}, **x["result"]})
        r.variant = label(r.variant, x["attack"]) + (f" (repeat {x['repeat']})" if x.get("repeats", 1) > 1 else "")
        results.append(r)
    text = run.report(results, facts)
    return "\n".join([text] + flood_table(records) + summary(records, attacks, top_rate(facts, records))
                     + per_rate(records))


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="kamailio,proxyapp", help="kamailio, proxyapp, proxyapp1 (comma-separated)")
    ap.add_argument("--variants", default="auth", help="run.py variants (floods are meant for auth)")
    ap.add_argument("--attack", default="none,invite:2000:1",
                    help="comma-separated: none, KIND:RATE[:SOURCES] (KIND invite or scan)")
    ap.add_argument("--rates", default="500,1000,1500,2000")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of legitimate calls per rate")
    ap.add_argument("--hold-ms", type=int, default=100)
    ap.add_argument("--lead", type=float, default=2.0, help="seconds the flood runs before the caller starts")
    ap.add_argument("--repeat", type=int, default=1, help="the whole matrix this many times, interleaved")
    ap.add_argument("--keep-going", action="store_true", help="try higher rates after a rate had failures")
    ap.add_argument("--max-wall", type=float, default=900.0, help="seconds for the whole invocation")
    ap.add_argument("--port-base", type=int, default=45460)
    ap.add_argument("--trace-msg", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--from-json", action="append",
                    help="print the report of files written by --json, running nothing (repeatable: merged)")
    ap.add_argument("--workdir")
    args = ap.parse_args()

    if args.from_json:
        # several files: one report, their repeats numbered on (each keeps its own top of --rates)
        records, facts, attacks, offset = [], {}, [], 0
        for i, name in enumerate(args.from_json):
            saved = json.loads(Path(name).read_text())
            top = top_rate(saved["machine"], saved["records"])
            for x in saved["records"]:
                records.append({**x, "repeat": x["repeat"] + offset, "top": top,
                                "repeats": 2 if len(args.from_json) > 1 else x.get("repeats", 1)})
            offset = max([offset] + [x["repeat"] for x in records])
            attacks += [a for a in saved["attacks"] if a not in attacks]
            if i == 0:
                facts = dict(saved["machine"])
            else:
                facts[f"command {i + 1}"] = saved["machine"].get("command", "?")
                facts[f"date (UTC) {i + 1}"] = saved["machine"].get("date (UTC)", "?")
                facts[f"load average at start {i + 1}"] = saved["machine"].get("load average at start", "?")
        print(full_report(records, facts, attacks))
        return 0
    attacks = args.attack.split(",")
    try:
        parsed = {a: parse_attack(a) for a in attacks}
    except ValueError as exc:
        ap.error(str(exc))
    proxies = args.proxy.split(",")
    builders = {"kamailio": run.kamailio_cmd, "proxyapp": run.proxyapp_cmd, "proxyapp1": run.proxyapp1_cmd}
    for p in proxies:
        if p not in builders:
            ap.error(f"unknown proxy {p!r}")
    variants = args.variants.split(",")
    for v in variants:
        if v not in run.VARIANTS:
            ap.error(f"unknown variant {v!r}")
    rates = [int(x) for x in args.rates.split(",")]
    if any(parsed.values()):
        why = check_namespace()
        if why:
            raise SystemExit(f"attack_run.py: refusing to flood: {why}")
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(x) for x in os.environ["PYTHONPATH"].split(os.pathsep) if x)
    run.set_ports(args.port_base)
    deadline = time.monotonic() + args.max_wall
    lock = open(Path(tempfile.gettempdir()) / f"fastsip-proxybench-{args.port_base}.lock", "w")
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit("gave up waiting for the other run (--max-wall)")
            time.sleep(1)
    facts = run.machine_facts()
    facts["command"] = "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    facts["proxyapp imported from"] = subprocess.run(
        [sys.executable, "-c", "import proxyapp; print(proxyapp.__file__)"], capture_output=True, text=True,
        cwd=tempfile.gettempdir()).stdout.strip()
    facts["rates"] = args.rates
    facts["network namespace"] = "loopback only" if check_namespace() is None else "host (no attack run)"
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fastsip-attackbench-"))
    base.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    per_run = args.duration + args.lead + 70

    for rep in range(1, args.repeat + 1):
        for variant in variants:
            for proxy in proxies:
                for attack in attacks:
                    att = parsed[attack]
                    sub = base / f"r{rep}-{attack.replace(':', '_')}"
                    for rate in rates:
                        if time.monotonic() + per_run > deadline:
                            print(f"# skipped {proxy}/{variant}/{attack}@{rate} (repeat {rep}): --max-wall",
                                  file=sys.stderr, flush=True)
                            break
                        side = flood_side(att, args) if att else None
                        r = run.one_run(proxy, builders[proxy], variant, rate, args, sub, side=side)
                        rec = {"repeat": rep, "repeats": args.repeat, "attack": attack, "result": asdict(r),
                               "flood": flood_stats(r.rundir) if att else {}}
                        records.append(rec)
                        f = rec["flood"]
                        print(f"# r{rep} {proxy}/{variant}/{attack} {rate}/s: {r.succeeded}/{r.attempted} ok, "
                              f"{r.failed} failed, {r.retransmissions} retrans, achieved {r.achieved_rate}/s, "
                              f"cpu {r.cpu_ms_per_call} ms/call, setup mean {r.setup_mean_ms} ms"
                              + (f"; flood sent {f.get('sent')} answers {f.get('answers')}" if att else "")
                              + (f" ERROR {r.error}" if r.error else ""), file=sys.stderr, flush=True)
                        if r.error and not r.attempted:
                            break
                        if not run.clean(r) and not args.keep_going:
                            break
                    if args.json:  # as it goes: a run cut short keeps what it measured
                        Path(args.json).write_text(json.dumps({"machine": facts, "attacks": attacks,
                                                               "records": records}, indent=1))

    print(full_report(records, facts, attacks))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "attacks": attacks, "records": records}, indent=1))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
