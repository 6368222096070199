"""Registration benchmark: SIPp REGISTER load on the registrar, calls to registered users, memory per binding.

    PYTHONPATH=src python bench/proxy/register_run.py --workloads register \\
        --proxy kamailio,proxyapp1,proxyapp1-sqlite --rates 1000,2000,3000 --duration 10
    PYTHONPATH=src python bench/proxy/register_run.py --workloads calls --proxy kamailio,proxyapp1 \\
        --variants plain,lookup --rates 1000,2000,3000 --users 10000
    PYTHONPATH=src python bench/proxy/register_run.py --workloads memory --proxy kamailio,proxyapp1 \\
        --bindings 100000 --memory-rate 2000
    python bench/proxy/register_run.py --from-json FILE      # print a saved run again

Three workloads, on loopback, with bench/proxy/run.py's harness (its processes, /proc accounting, ports,
lock, pass rule and report):

- register: SIPp sends rate*duration REGISTERs (reg.xml), one per user of an injection file of
  --users distinct users (u000000, u000001, ...), each binding sip:USER@127.0.0.1:CALLEE_PORT for
  3600 s. A registration succeeds when the 200 lists that binding. Stepped rates, then --bisect, as
  run.py does; proxy CPU per registration; for the sqlite store the rows written.
- calls: the "plain" variant is run.py's plain relay (uac.xml, uas.xml: R-URI of another domain, P-hint
  appended); the "lookup" variant first registers --users users (reg.xml, all bound to the SIPp
  callee), then calls them at the rate (uac_aor.xml: R-URI sip:USER@127.0.0.1:PROXY_PORT, the proxy's
  own domain), and the callee (uas_aor.xml) fails any INVITE whose Request-URI is not the registered
  Contact. Both variants run against the same proxy configuration, in the same invocation.
- memory: the proxy's memory idle, after --bindings REGISTERs with Expires: 0 (the same transactions,
  nothing stored: the control) and after --bindings REGISTERs that each store a binding, each in a
  fresh proxy, measured --settle seconds after the last REGISTER (when its transactions are gone):
  RSS of the proxy's processes (VmRSS, summed) and, for Kamailio, its shared memory in use
  (kamcmd core.shmmem) and usrloc's count of contacts.

Proxies: kamailio (kamailio-registrar.cfg: registrar + usrloc, db_mode 0), proxyapp1 (one process,
proxyapp-reg_memory.toml: [location] backend "memory"), proxyapp1-sqlite (one process,
proxyapp-reg_sqlite.toml: backend "sqlite", the embedded default), proxyapp-sqlite (2 workers sharing
the SQLite file; the memory store is per process, so 2 workers need a shared one).

proxyapp is imported as the child python finds it: run with PYTHONPATH=src to measure this tree.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _load_run():
    spec = importlib.util.spec_from_file_location("bench_proxy_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


run = _load_run()
RunResult = run.RunResult

KAMAILIO_CFG = HERE / "kamailio-registrar.cfg"
PROXYAPP_TOML = {"memory": "proxyapp-reg_memory.toml", "sqlite": "proxyapp-reg_sqlite.toml"}
# proxy name -> (workers, location store); "kamailio" is handled apart
PROXYAPPS = {"proxyapp1": (1, "memory"), "proxyapp1-sqlite": (1, "sqlite"), "proxyapp-sqlite": (2, "sqlite")}
EXPIRES = 3600
WORKLOADS = ("register", "calls", "memory")
CALL_VARIANTS = ("plain", "lookup")


# --------------------------------------------------------------------------- proxies

def kamailio_cmd(rundir: Path, port: int, ctl: str | None = None, shm_manager: str | None = None) -> list[str]:
    exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
    cmd = [exe, "-f", str(KAMAILIO_CFG), "-DD", "-E", "-l", f"udp:127.0.0.1:{port}", "-Y", str(rundir),
           "-P", str(rundir / "kamailio.pid"), "-m", "1024"] + (["-x", shm_manager] if shm_manager else [])
    if ctl:
        cmd += ["-A", f'CTLSOCK="{ctl}"']
    return cmd


def proxyapp_cmd(store: str, workers: int, rundir: Path, port: int) -> list[str]:
    tmpl = (HERE / PROXYAPP_TOML[store]).read_text()
    cfg = rundir / "proxyapp.toml"
    cfg.write_text(tmpl.replace("@PORT@", str(port)).replace("@RUNDIR@", str(rundir)).replace("@HERE@", str(HERE)))
    return [sys.executable, "-m", "proxyapp", "--config", str(cfg), "--workers", str(workers)]


def builder(proxy: str, ctl: str | None = None):
    """A run.py-style build(variant, rundir, port) for the proxy; the variant does not change the config.
    kamailio-fm and kamailio-tlsf are Kamailio with that shared-memory manager (-x) instead of q_malloc."""
    if proxy == "kamailio" or proxy.startswith("kamailio-"):
        shm = proxy.partition("-")[2] or None
        return lambda variant, rundir, port: kamailio_cmd(rundir, port, ctl, shm)
    workers, store = PROXYAPPS[proxy]
    return lambda variant, rundir, port: proxyapp_cmd(store, workers, rundir, port)


# --------------------------------------------------------------------------- SIPp helpers

def users_file(path: Path, n: int) -> Path:
    """An injection file of n users, read in order (SIPp wraps round at the end)."""
    if not path.exists():
        path.write_text("SEQUENTIAL\n" + "".join(f"u{i:06d};\n" for i in range(n)))
    return path


def fill(name: str, rundir: Path, **subst: str) -> Path:
    """A scenario with @PROXY_PORT@, @CALLEE_PORT@ and the given @KEY@ placeholders filled in."""
    text = (HERE / name).read_text().replace("@PROXY_PORT@", str(run.PROXY_PORT)).replace(
        "@CALLEE_PORT@", str(run.CALLEE_PORT))
    for k, v in subst.items():
        text = text.replace(f"@{k}@", v)
    out = rundir / name
    out.write_text(text)
    return out


def reg_scenario(rundir: Path, expires: int, port: int) -> Path:
    """reg.xml for a SIPp sending from port (the Contact it binds)."""
    if expires:  # the 200 must list this user's binding
        check = rf"(Contact|m): *<sip:u[0-9]+@127\.0\.0\.1:{port}>;([^>\r\n]*;)?expires=[1-9]"
    else:  # Expires: 0 of a user with no binding: a 200 listing nothing
        check = r"^SIP/2\.0 200"
    return fill("reg.xml", rundir, BINDING_CHECK=check.replace("<", "&lt;").replace(">", "&gt;"))


def sipp_reg(name: str, rundir: Path, rate: int, count: int, inf: Path, timeout: int, expires: int = EXPIRES,
             rtt: bool = True, trace_msg: bool = False, callee: bool = False) -> run.Proc:
    """SIPp sending count REGISTERs (reg.xml) from the caller's ports, or the callee's (callee=True:
    before the callee starts, so that the bindings' Contact is the address their REGISTER came from,
    as a phone's is; proxyapp sends a call to that source address when it differs from the Contact)."""
    sipp = shutil.which("sipp") or "sipp"
    port, ctl, media = ((run.CALLEE_PORT, run.CALLEE_CTL, run.CALLEE_MEDIA) if callee else
                        (run.CALLER_PORT, run.CALLER_CTL, run.CALLER_MEDIA))
    scen = reg_scenario(rundir, expires, port)
    return run.Proc(name, [sipp, f"127.0.0.1:{run.PROXY_PORT}", "-sf", str(scen), "-inf", str(inf),
                           "-key", "expires", str(expires),
                           "-i", "127.0.0.1", "-p", str(port), "-cp", str(ctl),
                           "-mp", str(media), "-nostdin", "-r", str(rate), "-rp", "1000",
                           "-m", str(count), "-l", str(max(100, rate * 4)), "-recv_timeout", "8000",
                           "-timeout", str(timeout), "-trace_stat", "-stf", f"{name}_stat.csv", "-fd", "1",
                           "-trace_err", "-max_recv_loops", "10000", "-timer_resol", "1"]
                    + (["-trace_rtt", "-rtt_freq", "1"] if rtt else []) + (["-trace_msg"] if trace_msg else []),
                    rundir)


def sipp_uas(scen: Path, rundir: Path, timeout: int, trace_msg: bool = False) -> run.Proc:
    sipp = shutil.which("sipp") or "sipp"
    return run.Proc("uas", [sipp, "-sf", str(scen), "-i", "127.0.0.1", "-p", str(run.CALLEE_PORT),
                            "-cp", str(run.CALLEE_CTL), "-mp", str(run.CALLEE_MEDIA), "-nostdin",
                            "-trace_stat", "-stf", "uas_stat.csv", "-fd", "1", "-trace_err",
                            "-max_recv_loops", "10000", "-timer_resol", "1", "-timeout", str(timeout), "-nd"]
                    + (["-trace_msg"] if trace_msg else []), rundir)


def rtts(rundir: Path, prefix: str) -> list[float]:
    vals = []
    for f in rundir.glob(f"{prefix}_*_rtt.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                try:
                    vals.append(float(parts[1]))
                except ValueError:
                    pass
    return vals


def start_proxy(proxy: str, build, variant: str, rundir: Path, res, need_callee: bool) -> run.Proc | None:
    """Start the proxy and wait for its port (and the callee's); None (res.error set) when it does not come up."""
    try:
        cmd = build(variant, rundir, run.PROXY_PORT)
    except (OSError, subprocess.CalledProcessError) as exc:
        res.error = f"cannot prepare {proxy}: {exc}"
        return None
    px = run.Proc("proxy", cmd, rundir, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    t0 = time.monotonic()
    while not (run.udp_bound(run.PROXY_PORT) and (run.udp_bound(run.CALLEE_PORT) or not need_callee)):
        if not px.alive():
            res.error = f"{proxy} exited with {px.p.returncode} before listening (see {rundir}/proxy.log)"
            px.stop()
            return None
        if time.monotonic() - t0 > 20:
            res.error = f"{proxy} or the callee did not bind its UDP port within 20 s"
            px.stop()
            return None
        time.sleep(0.05)
    time.sleep(1.0)  # let worker processes finish starting
    return px


def ports_busy(res) -> bool:
    busy = [p for p in (run.PROXY_PORT, run.CALLEE_PORT, run.CALLER_PORT) if run.udp_bound(p)]
    if busy:
        res.error = f"UDP port(s) {busy} already in use on 127.0.0.1 (another benchmark? use --port-base)"
    return bool(busy)


def sqlite_rows(rundir: Path) -> int | None:
    db = rundir / "location.db"
    if not db.exists():
        return None
    p = subprocess.run(["sqlite3", str(db), "select count(*) from location"], capture_output=True, text=True)
    try:
        return int(p.stdout.strip())
    except ValueError:
        return None


def fill_result(res, st: dict, cst: dict, wall: float, hold_s: float, vals: list[float]) -> None:
    res.attempted = run._int(st, "TotalCallCreated")
    res.succeeded = run._int(st, "SuccessfulCall(C)")
    res.failed = run._int(st, "FailedCall(C)") + max(0, res.attempted - res.succeeded - run._int(st, "FailedCall(C)"))
    res.callee_failed = run._int(cst, "FailedCall(C)")
    res.retransmissions = run._int(st, "Retransmissions(C)") + run._int(cst, "Retransmissions(C)")
    send_window = max(1e-9, wall - hold_s)
    res.achieved_rate = round(res.succeeded / send_window, 1) if res.succeeded else 0.0
    if vals:
        res.setup_median_ms = round(statistics.median(vals), 2)
        res.setup_p99_ms = round(run.p99(vals), 2)
        res.setup_mean_ms = round(statistics.fmean(vals), 3)
    if res.cpu_s is not None and res.attempted:
        res.cpu_ms_per_call = round(res.cpu_s * 1000 / res.attempted, 3)
    if not st:
        res.error = res.error or "no SIPp statistics (see the run directory's logs)"


def measure_end(res, px: run.Proc, cpu0: float, proxy: str) -> None:
    res.cpu_s = round(run.tree_cpu(px.pid) - cpu0, 3)
    res.udp_drops = {name: run.udp_drops(port) for name, port in
                     (("proxy", run.PROXY_PORT), ("callee", run.CALLEE_PORT), ("caller", run.CALLER_PORT))}
    res.rss_peak_kb, res.rss_sum_kb, res.nprocs = run.tree_hwm(px.pid)
    if not px.alive():
        res.notes.append(f"{proxy} died during the run (exit {px.p.returncode})")


# --------------------------------------------------------------------------- workloads

def register_run(proxy: str, build, rate: int, args, base: Path) -> RunResult:
    """rate*duration REGISTERs of distinct users (while they last) at the rate; CPU per registration."""
    res = RunResult(proxy, "register", rate, args.duration)
    rundir = base / f"{proxy}-register-{rate}"
    rundir.mkdir(parents=True, exist_ok=True)
    res.rundir = str(rundir)
    if ports_busy(res):
        return res
    count = max(1, int(rate * args.duration))
    inf = users_file(base / f"users-{args.users}.csv", args.users)
    if count > args.users:
        res.notes.append(f"{count - args.users} of the REGISTERs refresh a user registered earlier in the run")
    started: list[run.Proc] = []
    try:
        px = start_proxy(proxy, build, "register", rundir, res, need_callee=False)
        if px is None:
            return res
        started.append(px)
        cpu0 = run.tree_cpu(px.pid)
        uac = sipp_reg("reg", rundir, rate, count, inf, int(args.duration + 40), trace_msg=args.trace_msg)
        started.append(uac)
        t_start = time.monotonic()
        if uac.wait(args.duration + 55) is None:
            res.notes.append("SIPp did not finish in time; stopped")
        wall = time.monotonic() - t_start
        measure_end(res, px, cpu0, proxy)
        rows = sqlite_rows(rundir)
        if rows is not None:
            time.sleep(3.0)
            later = sqlite_rows(rundir)
            res.notes.append(f"location.db rows at the end: {rows}, 3 s later: {later}")
    finally:
        for p in reversed(started):
            p.stop()
    fill_result(res, run.read_stat(rundir / "reg_stat.csv"), {}, wall, 0.0, rtts(rundir, "reg"))
    return res


def register_users(rundir: Path, inf: Path, n: int, rate: int, expires: int, name: str = "prereg",
                   trace_msg: bool = False, callee: bool = False) -> tuple[int, int, float]:
    """Register users u000000..n-1 at the rate; (succeeded, failed, seconds)."""
    t0 = time.monotonic()
    p = sipp_reg(name, rundir, rate, n, inf, int(n / rate + 60), expires=expires, rtt=False, trace_msg=trace_msg,
                 callee=callee)
    try:
        if p.wait(n / rate + 75) is None:
            pass
    finally:
        p.stop()
    st = run.read_stat(rundir / f"{name}_stat.csv")
    return run._int(st, "SuccessfulCall(C)"), run._int(st, "FailedCall(C)"), time.monotonic() - t0


def lookup_run(proxy: str, build, rate: int, args, base: Path) -> RunResult:
    """Register --users users, then call them at the rate through lookup("location")."""
    res = RunResult(proxy, "lookup", rate, args.duration)
    rundir = base / f"{proxy}-lookup-{rate}"
    rundir.mkdir(parents=True, exist_ok=True)
    res.rundir = str(rundir)
    if ports_busy(res):
        return res
    calls = max(1, int(rate * args.duration))
    inf = users_file(base / f"users-{args.users}.csv", args.users)
    started: list[run.Proc] = []
    try:
        px = start_proxy(proxy, build, "lookup", rundir, res, need_callee=False)
        if px is None:
            return res
        started.append(px)
        # every user registers from the callee's address, before the callee listens there
        ok, bad, secs = register_users(rundir, inf, args.users, args.reg_rate, EXPIRES, trace_msg=args.trace_msg,
                                       callee=True)
        if ok != args.users:
            res.error = f"registration pass: {ok} of {args.users} users registered ({bad} failed)"
            return res
        res.notes.append(f"{ok} users registered first in {secs:.1f} s")
        t0 = time.monotonic()
        while run.udp_bound(run.CALLEE_PORT) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        uas = sipp_uas(fill("uas_aor.xml", rundir), rundir, int(args.duration + 50), trace_msg=args.trace_msg)
        started.insert(0, uas)
        while not run.udp_bound(run.CALLEE_PORT):
            if not uas.alive() or time.monotonic() - t0 > 20:
                res.error = "the callee did not bind its UDP port"
                return res
            time.sleep(0.05)
        time.sleep(1.0)
        cpu0 = run.tree_cpu(px.pid)
        uac = run.Proc("uac", [shutil.which("sipp") or "sipp", f"127.0.0.1:{run.PROXY_PORT}",
                               "-sf", str(fill("uac_aor.xml", rundir)), "-inf", str(inf),
                               "-i", "127.0.0.1", "-p", str(run.CALLER_PORT), "-cp", str(run.CALLER_CTL),
                               "-mp", str(run.CALLER_MEDIA), "-nostdin", "-r", str(rate), "-rp", "1000",
                               "-m", str(calls), "-d", str(args.hold_ms), "-l", str(max(100, rate * 4)),
                               "-recv_timeout", "8000", "-timeout", str(int(args.duration + 40)),
                               "-trace_stat", "-stf", "uac_stat.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
                               "-trace_err", "-max_recv_loops", "10000", "-timer_resol", "1"]
                       + (["-trace_msg"] if args.trace_msg else []), rundir)
        started.append(uac)
        t_start = time.monotonic()
        if uac.wait(args.duration + 55) is None:
            res.notes.append("caller did not finish in time; stopped")
        wall = time.monotonic() - t_start
        measure_end(res, px, cpu0, proxy)
        time.sleep(0.5)
    finally:
        for p in reversed(started):
            p.stop()
    fill_result(res, run.read_stat(rundir / "uac_stat.csv"), run.read_stat(rundir / "uas_stat.csv"), wall,
                args.hold_ms / 1000.0, rtts(rundir, "uac_aor"))
    return res


@dataclass
class MemoryResult:
    proxy: str
    phase: str  # "idle", "control" (N REGISTERs with Expires: 0), "bound" (N bindings)
    bindings_sent: int = 0
    registered: int = 0  # SIPp's successful REGISTERs
    failed: int = 0
    rss_main_kb: int | None = None  # VmRSS of the largest process
    rss_sum_kb: int | None = None  # VmRSS summed over the proxy's processes
    nprocs: int = 0
    shm_used: int | None = None  # Kamailio: core.shmmem used (bytes)
    shm_real_used: int | None = None  # Kamailio: core.shmmem real_used (with the allocator's overhead)
    usrloc_users: int | None = None  # Kamailio: usrloc's registered_users (one contact each here)
    pss_sum_kb: int | None = None  # Pss summed over the proxy's processes (shared pages split, not repeated)
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def tree_rss(root: int) -> tuple[int, int, int, int]:
    """(largest VmRSS, sum of VmRSS, sum of Pss, number of processes) in kB over root's tree. Kamailio's
    shared memory is in every process's RSS; Pss splits shared pages between the processes mapping them."""
    vals, pss = [], 0
    for pid in run.process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    vals.append(int(line.split()[1]))
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return (max(vals) if vals else 0), sum(vals), pss, len(vals)


def kamcmd(ctl: str, *cmd: str) -> str:
    exe = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
    p = subprocess.run([exe, "-s", ctl, *cmd], capture_output=True, text=True, timeout=20)
    return p.stdout


def kamailio_memory(ctl: str, m: MemoryResult) -> None:
    out = kamcmd(ctl, "core.shmmem")
    for line in out.splitlines():
        k, _, v = line.strip().partition(":")
        if k.strip() == "used":
            m.shm_used = int(v)
        elif k.strip() == "real_used":
            m.shm_real_used = int(v)
    out = kamcmd(ctl, "stats.get_statistics", "usrloc:")
    for line in out.splitlines():
        if "usrloc:registered_users" in line:
            m.usrloc_users = int(line.rsplit("=", 1)[1].strip())


def memory_run(proxy: str, phase: str, args, base: Path) -> MemoryResult:
    m = MemoryResult(proxy, phase)
    rundir = base / f"{proxy}-memory-{phase}"
    rundir.mkdir(parents=True, exist_ok=True)
    ctl = f"unix:{rundir}/kamailio_ctl" if proxy.startswith("kamailio") else None
    holder = RunResult(proxy, "memory", 0, 0)
    if ports_busy(holder):
        m.error = holder.error
        return m
    inf = users_file(base / f"users-{args.bindings}.csv", args.bindings)
    t0 = time.monotonic()
    px = start_proxy(proxy, builder(proxy, ctl), "memory", rundir, holder, need_callee=False)
    if px is None:
        m.error = holder.error
        return m
    try:
        if phase != "idle":
            m.bindings_sent = args.bindings
            expires = EXPIRES if phase == "bound" else 0
            m.registered, m.failed, _ = register_users(rundir, inf, args.bindings, args.memory_rate, expires,
                                                       name="reg")
        time.sleep(args.settle if phase != "idle" else 2.0)
        m.rss_main_kb, m.rss_sum_kb, m.pss_sum_kb, m.nprocs = tree_rss(px.pid)
        if ctl:
            kamailio_memory(ctl, m)
        if not px.alive():
            m.error = f"{proxy} died (exit {px.p.returncode})"
    finally:
        px.stop()
    m.seconds = round(time.monotonic() - t0, 1)
    return m


# --------------------------------------------------------------------------- report

def memory_report(mem: list[dict]) -> list[str]:
    if not mem:
        return []
    out = ["", "### Memory per binding", "",
           "| proxy | phase | REGISTERs sent | ok | failed | RSS MiB (largest / sum of procs) | Pss MiB (sum) | "
           "Kamailio shm used MiB (real_used) | usrloc registered_users |",
           "|---|---|---:|---:|---:|---|---:|---|---:|"]
    by: dict[tuple[str, str], dict] = {}
    for m in mem:
        by[(m["proxy"], m["phase"])] = m
        shm = "-" if m.get("shm_used") is None else f"{m['shm_used'] / 2**20:.1f} ({m['shm_real_used'] / 2**20:.1f})"
        rss = "-" if m.get("rss_sum_kb") is None else f"{m['rss_main_kb'] / 1024:.1f} / {m['rss_sum_kb'] / 1024:.1f} ({m['nprocs']})"
        err = f" ERROR {m['error']}" if m.get("error") else ""
        pss = "-" if m.get("pss_sum_kb") is None else f"{m['pss_sum_kb'] / 1024:.1f}"
        out.append(f"| {m['proxy']} | {m['phase']}{err} | {m['bindings_sent']} | {m['registered']} | {m['failed']} | "
                   f"{rss} | {pss} | {shm} | {'-' if m.get('usrloc_users') is None else m['usrloc_users']} |")
    out += ["", "| proxy | measure | bytes per binding (bound - control) | bytes per binding (bound - idle) |",
            "|---|---|---:|---:|"]
    for proxy in dict.fromkeys(m["proxy"] for m in mem):
        b, c, i = by.get((proxy, "bound")), by.get((proxy, "control")), by.get((proxy, "idle"))
        if not b or not b.get("registered"):
            continue
        n = b["registered"]

        def per(key: str, other: dict | None, scale: int) -> str:
            if not other or other.get(key) is None or b.get(key) is None:
                return "-"
            return f"{(b[key] - other[key]) * scale / n:.0f}"

        if b.get("nprocs") == 1:
            out.append(f"| {proxy} | RSS of the process | {per('rss_sum_kb', c, 1024)} | {per('rss_sum_kb', i, 1024)} |")
        out.append(f"| {proxy} | Pss, all processes | {per('pss_sum_kb', c, 1024)} | {per('pss_sum_kb', i, 1024)} |")
        if b.get("shm_used") is not None:
            out.append(f"| {proxy} | shared memory used | {per('shm_used', c, 1)} | {per('shm_used', i, 1)} |")
            out.append(f"| {proxy} | shared memory real_used | {per('shm_real_used', c, 1)} | {per('shm_real_used', i, 1)} |")
    out += ["", "Each phase is a fresh proxy, measured after the last REGISTER plus the settle time (its "
            "transactions gone). \"control\" received the same REGISTERs with Expires: 0, so the "
            "difference bound - control is the bindings alone; bound - idle also counts what the traffic "
            "left behind (allocator arenas, caches). Kamailio's shared memory is counted once in Pss and in "
            "core.shmmem; \"used\" is what usrloc asked for, \"real_used\" adds the allocator's per-fragment "
            "overhead (Debian's build: q_malloc with memory debugging)."]
    return out


def lookup_vs_plain(results: list[RunResult]) -> list[str]:
    out = []
    best = {}
    for r in results:
        if run.clean(r) and r.variant in CALL_VARIANTS:
            key = (r.proxy, r.variant)
            if key not in best or r.rate > best[key].rate:
                best[key] = r
    proxies = list(dict.fromkeys(r.proxy for r in results if r.variant == "lookup"))
    if not proxies:
        return out
    out += ["", "### Calls through lookup against the plain relay", "",
            "| proxy | plain zero-failure rate | lookup zero-failure rate | lookup / plain | CPU ms/call plain | "
            "CPU ms/call lookup |", "|---|---:|---:|---:|---|---|"]
    for p in proxies:
        a, b = best.get((p, "plain")), best.get((p, "lookup"))
        common = sorted({r.rate for r in results if r.proxy == p and r.variant == "plain" and run.clean(r)}
                        & {r.rate for r in results if r.proxy == p and r.variant == "lookup" and run.clean(r)})
        cpu_a = cpu_b = "-"
        if common:
            x = common[-1]
            ra = next(r for r in results if (r.proxy, r.variant, r.rate) == (p, "plain", x))
            rb = next(r for r in results if (r.proxy, r.variant, r.rate) == (p, "lookup", x))
            cpu_a, cpu_b = f"{ra.cpu_ms_per_call} (at {x}/s)", f"{rb.cpu_ms_per_call} (at {x}/s)"
        ratio = f"{100 * b.rate / a.rate:.0f} %" if a and b else "-"
        out.append(f"| {p} | {a.rate if a else '-'} | {b.rate if b else '-'} | {ratio} | {cpu_a} | {cpu_b} |")
    out += ["", "A zero-failure rate at the top of --rates is a lower bound; the ratio is then bounded too."]
    return out


def full_report(results: list[RunResult], facts: dict, mem: list[dict]) -> str:
    text = run.report(results, facts) if results else "\n".join(
        ["## Machine", ""] + [f"- {k}: {v}" for k, v in facts.items()])
    text = text.replace("Highest rate with zero failed calls", "Highest rate with zero failures")
    return "\n".join([text] + lookup_vs_plain(results) + memory_report(mem))


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="register", help=f"comma-separated: {', '.join(WORKLOADS)}")
    ap.add_argument("--proxy", default="kamailio,proxyapp1",
                    help=f"comma-separated: kamailio, kamailio-fm, kamailio-tlsf (shm manager -x), {', '.join(PROXYAPPS)}")
    ap.add_argument("--variants", default="plain,lookup", help="calls workload: plain, lookup")
    ap.add_argument("--rates", default="500,1000,2000")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of REGISTERs or calls per rate")
    ap.add_argument("--hold-ms", type=int, default=100, help="calls: hold between ACK and BYE")
    ap.add_argument("--users", type=int, default=100_000,
                    help="distinct users in the injection file (register); users registered before the lookup calls "
                         "(calls; 10000 is a good value there)")
    ap.add_argument("--reg-rate", type=int, default=2000, help="calls: REGISTERs/s of the registration pass")
    ap.add_argument("--bindings", type=int, default=100_000, help="memory: bindings to register")
    ap.add_argument("--memory-rate", type=int, default=2000, help="memory: REGISTERs/s")
    ap.add_argument("--phases", default="idle,control,bound", help="memory: which of idle, control, bound to run")
    ap.add_argument("--settle", type=float, default=40.0,
                    help="memory: seconds after the last REGISTER before measuring (proxyapp's Timer J is 32 s)")
    ap.add_argument("--keep-going", action="store_true", help="try higher rates after a rate had failures")
    ap.add_argument("--bisect", type=int, default=0)
    ap.add_argument("--max-wall", type=float, default=1500.0, help="seconds for the whole invocation")
    ap.add_argument("--port-base", type=int, default=45060)
    ap.add_argument("--trace-msg", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--from-json")
    ap.add_argument("--workdir")
    args = ap.parse_args()

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        rs = [RunResult(**{"udp_drops": {}, **r}) for r in saved["results"]]
        print(full_report(rs, saved["machine"], saved.get("memory", [])))
        return 0
    workloads = args.workloads.split(",")
    proxies = args.proxy.split(",")
    variants = args.variants.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}")
    for p in proxies:
        if p not in ("kamailio", "kamailio-fm", "kamailio-tlsf") and p not in PROXYAPPS:
            ap.error(f"unknown proxy {p!r}")
    for v in variants:
        if v not in CALL_VARIANTS:
            ap.error(f"unknown variant {v!r}")
    rates = [int(x) for x in args.rates.split(",")]
    # The proxies run in their run directories: a relative PYTHONPATH (PYTHONPATH=src) would not find
    # this tree there, and the child would import whatever proxyapp is installed.
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(x) for x in os.environ["PYTHONPATH"].split(os.pathsep) if x)
    run.set_ports(args.port_base)
    deadline = time.monotonic() + args.max_wall
    lock = open(Path(tempfile.gettempdir()) / f"fastsip-proxybench-{args.port_base}.lock", "w")
    waited = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited:
                print(f"# another benchmark holds ports {args.port_base}+: waiting (or use --port-base)",
                      file=sys.stderr, flush=True)
                waited = True
            if time.monotonic() > deadline:
                raise SystemExit("gave up waiting for the other run (--max-wall)")
            time.sleep(1)
    facts = run.machine_facts()
    facts["command"] = "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    facts["proxyapp imported from"] = subprocess.run(
        [sys.executable, "-c", "import proxyapp; print(proxyapp.__file__)"], capture_output=True, text=True,
        cwd=tempfile.gettempdir()).stdout.strip()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fastsip-regbench-"))
    base.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    mem: list[dict] = []
    per_run = args.duration + 70

    def log(r) -> None:
        print(f"# {r.proxy}/{r.variant} {r.rate}/s: {r.succeeded}/{r.attempted} ok, {r.failed} failed, "
              f"{r.retransmissions} retrans, cpu {r.cpu_ms_per_call} ms each, p50 {r.setup_median_ms} ms"
              + (f" ERROR {r.error}" if r.error else "") + (f" [{'; '.join(r.notes)}]" if r.notes else ""),
              file=sys.stderr, flush=True)

    def step(proxy: str, variant: str, one) -> None:
        last_ok = first_bad = None

        def go(rate):
            extra = args.users / args.reg_rate if variant == "lookup" else 0
            if time.monotonic() + per_run + extra > deadline:
                print(f"# skipped {proxy}/{variant}@{rate}: --max-wall reached", file=sys.stderr)
                return None
            r = one(rate)
            results.append(r)
            log(r)
            return r

        for rate in rates:
            r = go(rate)
            if r is None or (r.error and not r.attempted):
                break
            if not run.clean(r):
                first_bad = first_bad or rate
                if not args.keep_going:
                    break
            elif first_bad is None:
                last_ok = rate
        lo, hi = last_ok, first_bad
        for _ in range(args.bisect):
            if lo is None or hi is None or hi - lo <= max(10, lo // 20):
                break
            mid = (lo + hi) // 2
            r = go(mid)
            if r is None:
                break
            if run.clean(r):
                lo = mid
            else:
                hi = mid

    for w in workloads:
        if w == "register":
            for proxy in proxies:
                b = builder(proxy)
                step(proxy, "register", lambda rate, p=proxy, b=b: register_run(p, b, rate, args, base))
        elif w == "calls":
            for variant in variants:
                for proxy in proxies:
                    b = builder(proxy)
                    if variant == "plain":
                        one = lambda rate, p=proxy, b=b: run.one_run(p, b, "plain", rate, args, base)
                    else:
                        one = lambda rate, p=proxy, b=b: lookup_run(p, b, rate, args, base)
                    step(proxy, variant, one)
        elif w == "memory":
            for proxy in proxies:
                for phase in args.phases.split(","):
                    need = (args.bindings / args.memory_rate + args.settle + 30) if phase != "idle" else 30
                    if time.monotonic() + need > deadline:
                        print(f"# skipped memory {proxy}/{phase}: --max-wall reached", file=sys.stderr)
                        continue
                    m = memory_run(proxy, phase, args, base)
                    mem.append(asdict(m))
                    print(f"# memory {proxy}/{phase}: {m}", file=sys.stderr, flush=True)

    text = full_report(results, facts, mem)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": [asdict(r) for r in results],
                                               "memory": mem}, indent=1))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
