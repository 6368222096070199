"""Helpers for the operator tests (tests/proxy/test_operations.py): ``proxyapp ctl`` as a real
subprocess, a real Prometheus server scraping the proxy, SIPp callers in the background and
SIPp's final statistics.

Every process started here is stopped by pid; every wait is bounded in time.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .support import SRC, Sipp, _stop, free_port


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def ctl(socket_path: str | Path | None, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``python -m proxyapp ctl -s SOCKET ARGS`` (``socket_path`` None: no -s)."""
    where = ["-s", str(socket_path)] if socket_path is not None else []
    return subprocess.run(
        [sys.executable, "-m", "proxyapp", "ctl", *where, *args],
        capture_output=True, text=True, timeout=timeout, env=env_with_src(),
    )


def ctl_json(socket_path: str | Path, *args: str) -> Any:
    res = ctl(socket_path, "--json", *args)
    assert res.returncode == 0, f"ctl {' '.join(args)}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------- SIPp


def uac_background(sipp: Sipp, scenario: str, proxy_port: int, uas: str, *, calls: int, rate: float,
                   timeout: float = 60, extra: list[str] = (), name: str = "uac") -> tuple[subprocess.Popen, Path]:
    """A SIPp caller in the background, with its statistics in ``<tmp>/<name>-stat.csv``
    (``-trace_stat``, read by sipp_final_stats) after it exited."""
    stat = sipp.tmp / f"{name}-stat.csv"
    port = free_port()
    cmd = sipp._cmd(scenario, port, "udp", [
        f"127.0.0.1:{proxy_port}", "-key", "uas", uas, "-m", str(calls), "-r", str(rate), "-rp", "1000",
        "-timeout", str(int(timeout)), "-trace_stat", "-stf", str(stat), "-fd", "1", *extra,
    ])
    out = (sipp.tmp / f"{name}.out").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(sipp.tmp))
    sipp.procs.append(proc)
    return proc, stat


def sipp_final_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat CSV (semicolon separated): its cumulative counters."""
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    assert len(rows) >= 2, f"no statistics in {path}"
    return dict(zip(rows[0], rows[-1]))


def sipp_int(stats: dict[str, str], column: str) -> int:
    return int(stats[column])


def sipp_counts(tmp: Path, scenario: str, pid: int) -> dict[str, int]:
    """The last row of a SIPp -trace_counts CSV (``<scenario>_<pid>_counts.csv``): per scenario
    message ``INDEX_NAME_Sent|Recv|Retrans|Timeout|Unexp``, cumulative."""
    path = tmp / f"{Path(scenario).stem}_{pid}_counts.csv"
    rows = [r for r in csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";")]
    assert len(rows) >= 2, f"no counts in {path}"
    return {k: int(v) for k, v in zip(rows[0][2:], rows[-1][2:]) if k}


def retrans(counts: dict[str, int], name: str) -> list[int]:
    """The Retrans column of each scenario message called ``name`` (INVITE, 200 ...), in
    scenario order: for a message SIPp sends, how often it sent it again; for one it
    receives, how many copies of it came again."""
    cols = sorted((int(k.split("_")[0]), v) for k, v in counts.items() if k.split("_")[1:] == [name, "Retrans"])
    assert cols, (name, counts)
    return [v for _, v in cols]


# ---------------------------------------------------------------------------- Prometheus


def prometheus_path() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is required for the operator tests: apt-get install prometheus "
                    "(tests/run.sh installs it)")
    return path


class Prometheus:
    """A real Prometheus server on 127.0.0.1 scraping ``target`` every second."""

    def __init__(self, tmp: Path, target: str, job: str = "proxyapp") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.job = job
        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log_path = tmp / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [prometheus_path(), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(tmp),
        )
        try:
            wait_until(self._ready, 30, "prometheus /-/ready", 0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"prometheus did not start:\n{self.log()[-3000:]}") from None

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body.get("status") == "success", body
        return body["data"]

    def last_scrape(self) -> tuple[float, str, str]:
        """(time of the target's last scrape as a Unix time, its health, its last error)."""
        for t in self.api("targets")["activeTargets"]:
            if t["labels"].get("job") == self.job:
                ts = t["lastScrape"]
                # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
                head, _, frac = ts.partition(".")
                if frac:
                    digits = "".join(ch for ch in frac if ch.isdigit())
                    tz = frac[len(digits):]
                    ts = f"{head}.{digits[:6]}{tz}"
                ts = ts.replace("Z", "+00:00")
                return datetime.fromisoformat(ts).timestamp(), t["health"], t.get("lastError", "")
        return 0.0, "unknown", "no target"

    def wait_for_scrape_after(self, t: float, timeout: float = 15) -> None:
        """Until a successful scrape started after Unix time ``t``."""
        def done() -> bool:
            when, health, _ = self.last_scrape()
            return when > t and health == "up"
        try:
            wait_until(done, timeout, "a Prometheus scrape", 0.2)
        except AssertionError:
            raise AssertionError(f"no successful scrape after {t}: {self.last_scrape()}\n{self.log()[-2000:]}") from None

    def query(self, expr: str) -> dict[str, float]:
        """An instant query: {label set as text: value}; one unlabelled series gives key ''."""
        out: dict[str, float] = {}
        for s in self.api("query", query=expr)["result"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items()) if k not in ("__name__", "instance", "job"))
            out[labels] = float(s["value"][1])
        return out

    def value(self, expr: str) -> float:
        r = self.query(expr)
        assert list(r) == [""], f"{expr}: expected one unlabelled series, got {r}"
        return r[""]

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()
