"""Proxy benchmark runner: SIPp caller -> proxy under test -> SIPp callee on loopback, call rate stepped up.

    python bench/proxy/run.py --proxy kamailio --rates 250,500,1000 --duration 10
    python bench/proxy/run.py --proxy both --variants plain,acc_log,acc_db --rates 100,200,400 --duration 10
    python bench/proxy/run.py --proxy mine --proxy-cmd 'mine=/path/to/proxy --port {port}' --rates 100
    python bench/proxy/run.py --proxy proxyapp,n0 --proxy-acc 'n0=proxyapp:nice=0' --variants acc_db --rates 3000
    PYTHONPATH=src python bench/proxy/run.py --proxy both --variants plain,auth --rates 500,1000,2000

Variant "auth" is digest authentication in front of the plain relay: proxyapp runs examples/auth_script.py
(proxyapp-auth.toml), Kamailio kamailio-auth.cfg (auth_db over SQLite); the same subscriber (AUTH_USER,
AUTH_PASSWORD in realm AUTH_DOMAIN) is created for both in the run directory, and the caller (uac_auth.xml)
answers a 407 on every call. bench/proxy/attack_run.py adds a flood beside the caller.

For every proxy, variant and rate it starts the callee (uas.xml), the proxy, then the caller (uac.xml),
which places rate*duration calls (INVITE/180/200/ACK, hold, BYE/200) at that rate. The callee fails any
call whose INVITE lacks the proxy's Record-Route, the proxy's Via or the appended P-hint header, so a
successful call is one that went through the proxy. Reported per rate: calls attempted, succeeded and
failed, retransmissions (caller + callee), achieved rate, setup latency (INVITE -> 200, median and p99,
from SIPp's -trace_rtt), proxy CPU seconds per call (utime+stime of the proxy and all its processes, from
/proc/PID/stat) and peak RSS (VmHWM from /proc/PID/status); then the highest rate with zero failed calls
(the session establishment rate of RFC 7501 §3.3 / RFC 7502 §5.1, stepped rather than searched unless
--bisect is given). With --proxy both, proxyapp/Kamailio ratios follow.

Loopback only, ports 45000-45999 only, every run bounded (--max-wall for the whole invocation, a per-run
cap of duration + 60 s), every process stopped by its pid (and its process group, for Kamailio's children).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

PROXY_PORT, CALLEE_PORT, CALLER_PORT = 45060, 45070, 45080
CALLEE_CTL, CALLER_CTL = 45090, 45091  # SIPp control sockets (default 8888 is outside our range)
CALLEE_MEDIA, CALLER_MEDIA = 45100, 45110  # SIPp RTP echo ports (unused, but SIPp binds them)


def set_ports(base: int) -> None:
    """All ports from --port-base: proxy base, callee +10, caller +20, SIPp control +30/+31, media +40/+50."""
    global PROXY_PORT, CALLEE_PORT, CALLER_PORT, CALLEE_CTL, CALLER_CTL, CALLEE_MEDIA, CALLER_MEDIA
    if not (45000 <= base and base + 60 <= 45999):
        raise SystemExit("--port-base must keep every port in 45000-45999")
    PROXY_PORT, CALLEE_PORT, CALLER_PORT = base, base + 10, base + 20
    CALLEE_CTL, CALLER_CTL = base + 30, base + 31
    CALLEE_MEDIA, CALLER_MEDIA = base + 40, base + 50
VARIANTS = ("plain", "acc_log", "acc_db", "auth")

KAMAILIO_DEFINES = {"plain": "WITH_PLAIN", "acc_log": "WITH_ACC_LOG", "acc_db": "WITH_ACC_DB"}
SQLITE_SCHEMA = [Path("/usr/share/kamailio/db_sqlite/standard-create.sql"),
                 Path("/usr/share/kamailio/db_sqlite/acc-create.sql")]
AUTH_SCHEMA = [Path("/usr/share/kamailio/db_sqlite/standard-create.sql"),
               Path("/usr/share/kamailio/db_sqlite/auth_db-create.sql")]
# Variant "auth": the caller's identity (From sip:AUTH_USER@AUTH_DOMAIN, the proxy's domain) and password.
AUTH_USER, AUTH_DOMAIN, AUTH_PASSWORD = "caller", "bench.test", "bench-17-pw"
# The caller scenario and extra SIPp arguments per variant (default uac.xml, none).
CALLER_SCENARIO = {"auth": "uac_auth.xml"}
CALLER_ARGS = {"auth": ["-au", AUTH_USER, "-ap", AUTH_PASSWORD]}


@dataclass
class RunResult:
    proxy: str
    variant: str
    rate: int
    duration: float
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    retransmissions: int = 0
    achieved_rate: float = 0.0
    setup_median_ms: float | None = None
    setup_p99_ms: float | None = None
    setup_mean_ms: float | None = None  # SIPp times in ticks of about 4 ms: the mean of many calls is finer
    cpu_s: float | None = None
    cpu_ms_per_call: float | None = None
    rss_peak_kb: int | None = None  # largest VmHWM of one proxy process
    rss_sum_kb: int | None = None  # sum of VmHWM over the proxy's processes (shared memory counted twice)
    nprocs: int = 0
    udp_drops: dict = field(default_factory=dict)  # receive-buffer overflows per socket, /proc/net/udp
    callee_failed: int = 0
    error: str | None = None
    rundir: str = ""
    notes: list[str] = field(default_factory=list)
    acc_spooled: int | None = None  # proxyapp: records left in its accounting spool after the run


# --------------------------------------------------------------------------- /proc accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu s, reaped children's cpu s) of pid, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def process_tree(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by root, its live descendants, and the children it has reaped."""
    total = 0.0
    for pid in process_tree(root):
        st = _stat(pid)
        if st:
            total += st[1] + (st[2] if pid == root else 0.0)
    return total


def tree_hwm(root: int) -> tuple[int, int, int]:
    """(largest VmHWM, sum of VmHWM, number of processes) in kB over root's tree."""
    vals = []
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    vals.append(int(line.split()[1]))
        except OSError:
            pass
    return (max(vals) if vals else 0), sum(vals), len(vals)


def udp_drops(port: int) -> int | None:
    """Datagrams the kernel dropped on 127.0.0.1:port because its receive buffer was full (/proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    try:
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            f = line.split()
            if f[1] == want:
                return int(f[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def udp_bound(port: int) -> bool:
    want = f"0100007F:{port:04X}"
    try:
        return any(line.split()[1] == want for line in Path("/proc/net/udp").read_text().splitlines()[1:])
    except OSError:
        return False


# --------------------------------------------------------------------------- processes

class Proc:
    """A started process; stop() ends it and everything in its process group, by pid."""

    def __init__(self, name: str, cmd: list[str], rundir: Path, env: dict | None = None):
        self.name = name
        self.cmd = cmd
        self.log = open(rundir / f"{name}.log", "wb")
        self.p = subprocess.Popen(cmd, cwd=rundir, stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.pid = self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> None:
        pids = process_tree(self.pid) if self.alive() else []
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.wait(grace)
        for pid in pids:  # children the main process did not take down (Kamailio's workers)
            if _stat(pid) is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(grace)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the group we created for it at start, nothing else
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


# --------------------------------------------------------------------------- proxies under test

def kamailio_auth_cmd(rundir: Path, port: int) -> list[str]:
    """kamailio-auth.cfg with a fresh SQLite subscriber table holding AUTH_USER's ha1 (and ha1b)."""
    import hashlib

    db = rundir / "subscriber.db"
    db.unlink(missing_ok=True)
    ha1 = hashlib.md5(f"{AUTH_USER}:{AUTH_DOMAIN}:{AUTH_PASSWORD}".encode()).hexdigest()
    ha1b = hashlib.md5(f"{AUTH_USER}@{AUTH_DOMAIN}:{AUTH_DOMAIN}:{AUTH_PASSWORD}".encode()).hexdigest()
    script = "".join(p.read_text() for p in AUTH_SCHEMA) + (
        "INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
        f"VALUES ('{AUTH_USER}', '{AUTH_DOMAIN}', '', '{ha1}', '{ha1b}');\n")
    subprocess.run(["sqlite3", str(db)], input=script, text=True, check=True)
    exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
    return [exe, "-f", str(HERE / "kamailio-auth.cfg"), "-DD", "-E", "-l", f"udp:127.0.0.1:{port}",
            "-Y", str(rundir), "-P", str(rundir / "kamailio.pid"), "-m", "1024", "-A", f'DBURL="sqlite://{db}"']


def kamailio_cmd(variant: str, rundir: Path, port: int) -> list[str]:
    if variant == "auth":
        return kamailio_auth_cmd(rundir, port)
    exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
    cmd = [exe, "-f", str(HERE / "kamailio.cfg"), "-DD", "-E", "-l", f"udp:127.0.0.1:{port}",
           "-Y", str(rundir), "-P", str(rundir / "kamailio.pid"), "-m", "1024", "-A", KAMAILIO_DEFINES[variant]]
    if variant == "acc_db":
        db = rundir / "acc.db"
        # WAL: Kamailio's db_sqlite sets no busy timeout, so with two workers a rollback-journal database
        # is "locked" for one of them at almost every commit and its records are lost.
        script = "PRAGMA journal_mode=WAL;\n" + "".join(p.read_text() for p in SQLITE_SCHEMA)
        subprocess.run(["sqlite3", str(db)], input=script, text=True, check=True)
        cmd += ["-A", f'DBURL="sqlite://{db}"']
    return cmd


def proxyapp_cmd(variant: str, rundir: Path, port: int, workers: int = 2, acc_keys: tuple[str, ...] = ()) -> list[str]:
    """Write a proxyapp TOML config for the variant (bench/proxy/proxyapp-VARIANT.toml) and return the command.

    Two worker processes by default, like Kamailio's children=2 in kamailio.cfg; "proxyapp1" runs one.
    acc_keys are more [acc] lines ('engine = "inline"', "nice = 0"), for the variants that have accounting.
    """
    tmpl = (HERE / f"proxyapp-{variant}.toml").read_text()
    if acc_keys:
        tmpl = tmpl.replace("[acc]\n", "[acc]\n" + "".join(k + "\n" for k in acc_keys))
    cfg = rundir / "proxyapp.toml"
    cfg.write_text(tmpl.replace("@PORT@", str(port)).replace("@RUNDIR@", str(rundir))
                   .replace("@HERE@", str(HERE)))
    if variant == "auth":  # the subscriber, with proxyapp's own command (as an operator adds one)
        subprocess.run([sys.executable, "-m", "proxyapp", "user", "--config", str(cfg), "add",
                        f"{AUTH_USER}@{AUTH_DOMAIN}", AUTH_PASSWORD], cwd=rundir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return [sys.executable, "-m", "proxyapp", "--config", str(cfg), "--workers", str(workers)]


def proxyapp1_cmd(variant: str, rundir: Path, port: int) -> list[str]:
    return proxyapp_cmd(variant, rundir, port, workers=1)


def proxyapp1_inline_cmd(variant: str, rundir: Path, port: int) -> list[str]:
    """One process with the accounting engine on the proxy's event loop (the A/B of acc/process.py)."""
    return proxyapp_cmd(variant, rundir, port, workers=1, acc_keys=('engine = "inline"',))


PROXYAPP_WORKERS = {"proxyapp": 2, "proxyapp1": 1}


def proxyapp_acc_cmd(spec: str):
    """--proxy-acc NAME=BASE:KEY=VALUE[;KEY=VALUE...]: proxyapp (2 workers) or proxyapp1 (one process)
    with these [acc] keys added, e.g. 'n0=proxyapp:nice=0' to compare accounting's niceness in one run."""
    name, _, rest = spec.partition("=")
    base, _, keys = rest.partition(":")
    if not name or base not in PROXYAPP_WORKERS or "=" not in keys:
        raise ValueError(f"--proxy-acc: expected NAME=proxyapp|proxyapp1:KEY=VALUE[;KEY=VALUE], got {spec!r}")
    lines = tuple(f"{k.strip()} = {v.strip()}" for k, _, v in (kv.partition("=") for kv in keys.split(";")))

    def build(variant: str, rundir: Path, port: int) -> list[str]:
        return proxyapp_cmd(variant, rundir, port, workers=PROXYAPP_WORKERS[base], acc_keys=lines)

    return name, build


def custom_cmd(template: str):
    def build(variant: str, rundir: Path, port: int) -> list[str]:
        return shlex.split(template.format(port=port, variant=variant, rundir=rundir, here=HERE))
    return build


def db_rows(variant: str, rundir: Path, calls: int = 0) -> str | None:
    """What the accounting variants wrote, as a note (proves accounting happened)."""
    if variant == "acc_log":
        counts = []
        acc_log = rundir / "acc.log"
        if acc_log.exists():  # proxyapp's [acc] log_file
            counts.append(f"acc.log lines={sum(1 for _ in acc_log.open('rb'))}")
        with (rundir / "proxy.log").open("rb") as fh:  # Kamailio logs ACC: and CDR lines to stderr
            txt = [ln for ln in fh if b"ACC:" in ln or b"log_write_cdr" in ln]
        if txt:
            counts.append(f"log ACC lines={sum(b'ACC:' in ln for ln in txt)}, "
                          f"CDR lines={sum(b'log_write_cdr' in ln for ln in txt)}")
        return (f"after {calls} calls: " + "; ".join(counts)) if counts else "no accounting lines found"
    if variant != "acc_db":
        return None
    for db in rundir.glob("*.db"):
        out = []
        for table in ("acc", "acc_cdrs", "cdrs", "cdr"):
            p = subprocess.run(["sqlite3", str(db), f"select count(*) from {table}"], capture_output=True, text=True)
            if p.returncode == 0:
                out.append(f"{table}={p.stdout.strip()}")
        if out:
            return f"{db.name} after {calls} calls: " + ", ".join(out)
    return "no SQLite database found in the run directory"


def spooled_records(rundir: Path) -> int | None:
    """Records proxyapp left in its accounting spools (acc-spool/, acc-spool/worker-N/), every
    backend: what it had not written when it stopped (they are replayed at its next start). None
    when the run had no spool (Kamailio, or no accounting)."""
    top = rundir / "acc-spool"
    if not top.is_dir():
        return None
    if str(ROOT / "src") not in sys.path:
        sys.path.append(str(ROOT / "src"))
    from proxyapp.acc.spool import pending_records

    return sum(pending for _, _, pending in pending_records(top))


# --------------------------------------------------------------------------- SIPp

def scenario(name: str, rundir: Path, port: int) -> Path:
    """Copy a scenario with the proxy's port filled in (SIPp compiles ereg regexps before keywords apply)."""
    out = rundir / name
    out.write_text((HERE / name).read_text().replace("@PROXY_PORT@", str(port)))
    return out


def read_stat(path: Path) -> dict[str, str]:
    """The last line of a SIPp -trace_stat CSV as {column: value}."""
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    head = lines[0].rstrip(";").split(";")
    vals = lines[-1].rstrip(";").split(";")
    return dict(zip(head, vals))


def read_rtt(rundir: Path) -> list[float]:
    vals = []
    for f in rundir.glob("uac*_rtt.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                try:
                    vals.append(float(parts[1]))
                except ValueError:
                    pass
    return vals


def _int(d: dict, key: str) -> int:
    try:
        return int(float(d.get(key, "0") or 0))
    except ValueError:
        return 0


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def one_run(proxy: str, build_cmd, variant: str, rate: int, args, base: Path, side=None) -> RunResult:
    """One rate. side: an optional callable side(rundir, res) -> Proc | None, called once the proxy
    listens and before the caller starts (and before the proxy's CPU is first read), for a process
    that runs beside the caller (attack_run.py's flood); it is stopped with the others."""
    res = RunResult(proxy, variant, rate, args.duration)
    rundir = base / f"{proxy}-{variant}-{rate}"
    rundir.mkdir(parents=True, exist_ok=True)
    res.rundir = str(rundir)
    sipp = shutil.which("sipp")
    if sipp is None:
        res.error = "sipp not installed (apt-get install sip-tester)"
        return res
    calls = max(1, int(rate * args.duration))
    busy = [p for p in (PROXY_PORT, CALLEE_PORT, CALLER_PORT) if udp_bound(p)]
    if busy:
        res.error = f"UDP port(s) {busy} already in use on 127.0.0.1 (another benchmark? use --port-base)"
        return res
    started: list[Proc] = []
    try:
        uas = Proc("uas", [sipp, "-sf", str(scenario("uas.xml", rundir, PROXY_PORT)), "-i", "127.0.0.1",
                           "-p", str(CALLEE_PORT), "-cp", str(CALLEE_CTL), "-mp", str(CALLEE_MEDIA), "-nostdin",
                           "-trace_stat", "-stf", "uas_stat.csv", "-fd", "1", "-trace_err",
                           "-max_recv_loops", "10000", "-timer_resol", "1", "-timeout", str(int(args.duration + 50)), "-nd"]
                   + (["-trace_msg"] if args.trace_msg else []), rundir)
        started.append(uas)
        try:
            cmd = build_cmd(variant, rundir, PROXY_PORT)
        except (OSError, subprocess.CalledProcessError) as exc:
            res.error = f"cannot prepare {proxy}: {exc}"
            return res
        px = Proc("proxy", cmd, rundir, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        started.append(px)
        t0 = time.monotonic()
        while not (udp_bound(PROXY_PORT) and udp_bound(CALLEE_PORT)):
            if not px.alive():
                res.error = f"{proxy} exited with {px.p.returncode} before listening (see {rundir}/proxy.log)"
                return res
            if time.monotonic() - t0 > 20:
                res.error = f"{proxy} or the callee did not bind its UDP port within 20 s"
                return res
            time.sleep(0.05)
        time.sleep(1.0)  # let worker processes finish starting
        if side is not None:
            extra = side(rundir, res)
            if extra is not None:
                started.append(extra)
        cpu0 = tree_cpu(px.pid)
        uac_xml = CALLER_SCENARIO.get(variant, "uac.xml")
        uac = Proc("uac", [sipp, f"127.0.0.1:{PROXY_PORT}", "-sf", str(scenario(uac_xml, rundir, PROXY_PORT)),
                           "-s", "bench", "-key", "callee_port", str(CALLEE_PORT), "-i", "127.0.0.1",
                           "-p", str(CALLER_PORT), "-cp", str(CALLER_CTL), "-mp", str(CALLER_MEDIA), "-nostdin",
                           "-r", str(rate), "-rp", "1000", "-m", str(calls), "-d", str(args.hold_ms),
                           "-l", str(max(100, rate * 4)), "-recv_timeout", "8000",
                           "-timeout", str(int(args.duration + 40)), "-trace_stat", "-stf", "uac_stat.csv",
                           "-fd", "1", "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-max_recv_loops", "10000", "-timer_resol", "1"]
                   + CALLER_ARGS.get(variant, []) + (["-trace_msg"] if args.trace_msg else []), rundir)
        started.append(uac)
        t_start = time.monotonic()
        if uac.wait(args.duration + 55) is None:
            res.notes.append("caller did not finish in time; stopped")
        wall = time.monotonic() - t_start
        cpu1 = tree_cpu(px.pid)
        res.udp_drops = {name: udp_drops(port) for name, port in
                         (("proxy", PROXY_PORT), ("callee", CALLEE_PORT), ("caller", CALLER_PORT))}
        hwm, hwm_sum, n = tree_hwm(px.pid)
        res.cpu_s = round(cpu1 - cpu0, 3)
        res.rss_peak_kb, res.rss_sum_kb, res.nprocs = hwm, hwm_sum, n
        if not px.alive():
            res.notes.append(f"{proxy} died during the run (exit {px.p.returncode})")
        time.sleep(0.5)
    finally:
        for p in reversed(started):
            p.stop()

    st, cst = read_stat(rundir / "uac_stat.csv"), read_stat(rundir / "uas_stat.csv")
    res.attempted = _int(st, "TotalCallCreated")
    res.succeeded = _int(st, "SuccessfulCall(C)")
    res.failed = _int(st, "FailedCall(C)") + max(0, res.attempted - res.succeeded - _int(st, "FailedCall(C)"))
    res.callee_failed = _int(cst, "FailedCall(C)")
    res.retransmissions = _int(st, "Retransmissions(C)") + _int(cst, "Retransmissions(C)")
    send_window = max(1e-9, wall - args.hold_ms / 1000.0)
    res.achieved_rate = round(res.succeeded / send_window, 1) if res.succeeded else 0.0
    rtt = read_rtt(rundir)
    if rtt:
        res.setup_median_ms = round(statistics.median(rtt), 2)
        res.setup_p99_ms = round(p99(rtt), 2)
        res.setup_mean_ms = round(statistics.fmean(rtt), 3)
    if res.cpu_s is not None and res.attempted:
        res.cpu_ms_per_call = round(res.cpu_s * 1000 / res.attempted, 3)
    note = db_rows(variant, rundir, res.succeeded)
    if note:
        res.notes.append(note)
    res.acc_spooled = spooled_records(rundir)
    if res.acc_spooled:
        res.notes.append(f"accounting fell behind: {res.acc_spooled} records still in the spool")
    if not st:
        res.error = res.error or f"no SIPp statistics (see {rundir}/uac.log)"
    return res


# --------------------------------------------------------------------------- report

def clean(r: RunResult) -> bool:
    """A rate the proxy sustained: every call attempted succeeded, none failed, and the successful calls came
    at >= 95 % of the offered rate (with heavy retransmission the calls still succeed, but late and slower:
    RFC 7501 counts the rate the DUT establishes sessions at, not the rate they were offered)."""
    return (not r.error and r.attempted > 0 and r.failed == 0 and r.succeeded == r.attempted
            and r.achieved_rate >= 0.95 * r.rate)


def machine_facts() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    def ver(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "cpu": cpu, "nproc": str(os.cpu_count()), "python": platform.python_version(),
        "kernel": platform.release(), "commit": commit, "kamailio": ver(["kamailio", "-v"]),
        "sipp": ver(["sipp", "-v"]).strip(), "load average at start": " ".join(
            Path("/proc/loadavg").read_text().split()[:3]),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
    }


def fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def report(results: list[RunResult], facts: dict) -> str:
    out = ["## Machine", ""] + [f"- {k}: {v}" for k, v in facts.items()]
    keys = []
    for r in results:
        if (r.proxy, r.variant) not in keys:
            keys.append((r.proxy, r.variant))
    best: dict[tuple[str, str], RunResult | None] = {}
    for proxy, variant in keys:
        rows = [r for r in results if (r.proxy, r.variant) == (proxy, variant)]
        out += ["", f"### {proxy} / {variant}", "",
                "| rate/s | attempted | ok | failed | retrans | achieved/s | setup median ms | setup mean ms |"
                " setup p99 ms | proxy CPU ms/call | peak RSS MiB (max / sum of procs) | notes |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in sorted(rows, key=lambda r: r.rate):
            notes = "; ".join(([r.error] if r.error else []) + r.notes)
            drops = {k: v for k, v in r.udp_drops.items() if v}
            if drops:
                notes = (notes + "; " if notes else "") + "UDP drops (rcvbuf full): " + ", ".join(
                    f"{k} {v}" for k, v in drops.items())
            if r.callee_failed:
                notes = (notes + "; " if notes else "") + f"callee failed {r.callee_failed}"
            rss = "-" if r.rss_peak_kb is None else f"{r.rss_peak_kb / 1024:.1f} / {r.rss_sum_kb / 1024:.1f} ({r.nprocs})"
            out.append(f"| {r.rate} | {r.attempted} | {r.succeeded} | {r.failed} | {r.retransmissions} | "
                       f"{fmt(r.achieved_rate, 1)} | {fmt(r.setup_median_ms, 0)} | {fmt(r.setup_mean_ms)} | "
                       f"{fmt(r.setup_p99_ms, 0)} | "
                       f"{fmt(r.cpu_ms_per_call, 3)} | {rss} | {notes} |")
        ok_rows = [r for r in rows if clean(r)]
        b = max(ok_rows, key=lambda r: r.rate) if ok_rows else None
        best[(proxy, variant)] = b
        out += ["", f"Highest rate with zero failed calls (and >= 95 % of it achieved): **{b.rate}/s**" if b else
                "Highest rate with zero failed calls: none of the rates tried"]
        if any(r.acc_spooled is not None for r in rows):
            # Accounting that kept up: every record written by the end of the run, none deferred to
            # the spool (which proxyapp replays later, so nothing is lost, but the work is not done).
            kept = [r for r in ok_rows if r.acc_spooled == 0]
            k = max(kept, key=lambda r: r.rate) if kept else None
            out += ["", f"... and with every accounting record written, none left in the spool: **{k.rate}/s**" if k
                    else "... and with every accounting record written: none of the rates tried"]
    variants = sorted({v for _, v in keys})
    others = [p for p in dict.fromkeys(p for p, _ in keys) if p != "kamailio"]
    if any(p == "kamailio" for p, _ in keys) and others:
        out += ["", "### Ratios to Kamailio", "",
                "| proxy | variant | zero-failure rate ratio | CPU ms/call ratio | setup mean ratio | setup p99 ratio |",
                "|---|---|---:|---:|---:|---:|"]
        for other in others:
            for v in variants:
                a, k = best.get((other, v)), best.get(("kamailio", v))
                if not (a and k):
                    out.append(f"| {other} | {v} | - | - | - | - |")
                    continue
                passed = {(r.proxy, r.rate) for r in results if r.variant == v and clean(r)}
                common = [x for (p, x) in passed if p == other and ("kamailio", x) in passed]
                cpu_ratio = mean_ratio = p99_ratio = "-"
                if common:
                    x = max(common)
                    ra = next(r for r in results if (r.proxy, r.variant, r.rate) == (other, v, x))
                    rk = next(r for r in results if (r.proxy, r.variant, r.rate) == ("kamailio", v, x))
                    if ra.cpu_ms_per_call and rk.cpu_ms_per_call:
                        cpu_ratio = f"{ra.cpu_ms_per_call / rk.cpu_ms_per_call:.2f}x (at {x}/s)"
                    if ra.setup_mean_ms and rk.setup_mean_ms:
                        mean_ratio = f"{ra.setup_mean_ms / rk.setup_mean_ms:.1f}x (at {x}/s)"
                    if ra.setup_p99_ms and rk.setup_p99_ms:
                        p99_ratio = f"{ra.setup_p99_ms / rk.setup_p99_ms:.1f}x (at {x}/s)"
                out.append(f"| {other} | {v} | {a.rate / k.rate:.2f} | {cpu_ratio} | {mean_ratio} | {p99_ratio} |")
        out += ["", "Ratios are proxy / Kamailio (below 1 is better for CPU and latency, above 1 better for the "
                "rate); CPU and latency are compared at the highest rate both passed with zero failures. A rate "
                "ratio of 1.00 at the top of --rates only says both passed every rate tried."]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="kamailio",
                    help="kamailio, proxyapp (2 workers), proxyapp1 (1 worker), proxyapp1-inline (1 worker, "
                         "accounting engine inline), both (kamailio,proxyapp), "
                         "all, or names given with --proxy-cmd or --proxy-acc (comma-separated)")
    ap.add_argument("--proxy-cmd", action="append", default=[],
                    help="NAME=COMMAND with {port}, {variant}, {rundir}, {here} placeholders")
    ap.add_argument("--proxy-acc", action="append", default=[],
                    help="NAME=BASE:KEY=VALUE[;KEY=VALUE]: BASE (proxyapp or proxyapp1) with these [acc] keys, "
                         "e.g. 'n0=proxyapp:nice=0'")
    ap.add_argument("--variants", default="plain")
    ap.add_argument("--rates", default="250,500,1000")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of calls per rate")
    ap.add_argument("--hold-ms", type=int, default=100, help="call hold between ACK and BYE")
    ap.add_argument("--keep-going", action="store_true", help="try higher rates after a rate had failures")
    ap.add_argument("--bisect", type=int, default=0,
                    help="after the step-up, this many bisection runs between the last clean and first failing rate")
    ap.add_argument("--max-wall", type=float, default=1500.0, help="seconds for the whole invocation")
    ap.add_argument("--port-base", type=int, default=45060,
                    help="proxy port; callee +10, caller +20, SIPp control +30/+31, media +40/+50 (default 45060)")
    ap.add_argument("--trace-msg", action="store_true", help="SIPp -trace_msg on both sides (debugging)")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--from-json", help="print the report of a file written by --json, running nothing")
    ap.add_argument("--workdir", help="keep run directories here (default: a temporary directory, removed)")
    args = ap.parse_args()

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        rs = [RunResult(**{"udp_drops": {}, **r}) for r in saved["results"]]
        print(report(rs, saved["machine"]))
        return 0
    builders = {"kamailio": kamailio_cmd, "proxyapp": proxyapp_cmd, "proxyapp1": proxyapp1_cmd,
                "proxyapp1-inline": proxyapp1_inline_cmd}
    for spec in args.proxy_cmd:
        name, _, tmpl = spec.partition("=")
        builders[name] = custom_cmd(tmpl)
    for spec in args.proxy_acc:
        try:
            name, build = proxyapp_acc_cmd(spec)
        except ValueError as exc:
            ap.error(str(exc))
        builders[name] = build
    proxies = {"both": ["kamailio", "proxyapp"], "all": ["kamailio", "proxyapp", "proxyapp1"]}.get(
        args.proxy, args.proxy.split(","))
    variants = args.variants.split(",")
    rates = [int(x) for x in args.rates.split(",")]
    for p in proxies:
        if p not in builders:
            ap.error(f"unknown proxy {p!r}")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    # The proxies run in their run directories, where a relative PYTHONPATH (PYTHONPATH=src) finds
    # nothing: the child would import whatever proxyapp is installed instead of this tree.
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(x) for x in os.environ["PYTHONPATH"].split(os.pathsep) if x)
    set_ports(args.port_base)
    deadline = time.monotonic() + args.max_wall
    # One invocation at a time per port set: a second one waits here instead of colliding on the ports.
    lock = open(Path(tempfile.gettempdir()) / f"fastsip-proxybench-{args.port_base}.lock", "w")
    waited = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited:
                print(f"# another run.py holds ports {args.port_base}+: waiting (or use --port-base)",
                      file=sys.stderr, flush=True)
                waited = True
            if time.monotonic() > deadline:
                raise SystemExit("gave up waiting for the other run (--max-wall)")
            time.sleep(1)
    facts = machine_facts()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fastsip-proxybench-"))
    base.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    per_run = args.duration + 70

    def run(proxy, variant, rate) -> RunResult | None:
        if time.monotonic() + per_run > deadline:
            print(f"# skipped {proxy}/{variant}@{rate}: --max-wall {args.max_wall:.0f}s reached", file=sys.stderr)
            return None
        r = one_run(proxy, builders[proxy], variant, rate, args, base)
        results.append(r)
        print(f"# {proxy}/{variant} {rate}/s: {r.succeeded}/{r.attempted} ok, {r.failed} failed, "
              f"{r.retransmissions} retrans, cpu {r.cpu_ms_per_call} ms/call, setup p50 {r.setup_median_ms} ms"
              + (f" ERROR {r.error}" if r.error else ""), file=sys.stderr, flush=True)
        return r

    for variant in variants:
        for proxy in proxies:
            last_ok, first_bad = None, None
            for rate in rates:
                r = run(proxy, variant, rate)
                if r is None:
                    break
                if r.error and not r.attempted:
                    break  # the proxy does not even start: no point in higher rates
                if not clean(r):
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
                r = run(proxy, variant, mid)
                if r is None:
                    break
                if not clean(r):
                    hi = mid
                else:
                    lo = mid

    text = report(results, facts)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": [asdict(r) for r in results]},
                                              indent=1))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
