"""Worst case after SIGKILL: at most one unflushed batch per backend is lost, nothing else.

A child process accounts records at a steady rate and is killed with SIGKILL (no cleanup runs).
A new engine on the same spool then replays whatever was spooled.  Every record must be there
exactly once, in the order accepted, except a tail of at most batch_max records that were
still in memory (accepted during the last flush interval).
"""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from proxyapp.acc import AccConfig, Accounting

from .memory import settle

BATCH = 50
pytestmark = pytest.mark.timeout(120)


def _run_and_kill(tmp_path, db_url, n_before_kill):
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_kill_child.py")), str(tmp_path / "spool"), db_url, str(BATCH)], stdout=subprocess.PIPE, text=True)
    last = -1
    try:
        assert child.stdout is not None
        for line in child.stdout:
            last = int(line)
            if last >= n_before_kill:
                break
        os.kill(child.pid, signal.SIGKILL)
        # whatever the child printed before dying was accepted too
        for line in child.stdout:
            last = int(line)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    return last


def _recover(tmp_path, db_path):
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path / "spool"), "db_url": str(db_path), "flush_interval_ms": 1, "retry_interval_ms": 50})

    async def go():
        acc = Accounting(cfg)
        await acc.start()
        await settle(acc, timeout=30)
        s = acc.stats()["db"]
        await acc.close()
        return s

    s = asyncio.run(go())
    rows = [r[0] for r in sqlite3.connect(db_path).execute("SELECT callid FROM acc ORDER BY id")]
    return rows, s


def _check(rows, last):
    assert len(rows) == len(set(rows)), "duplicates"
    assert rows == [f"k{i:06d}" for i in range(len(rows))], "not the accepted prefix, in order"
    lost = last + 1 - len(rows)
    assert 0 <= lost <= BATCH, f"lost {lost} records (> one batch of {BATCH})"
    print(f"SIGKILL: accepted {last + 1}, recovered {len(rows)}, lost {lost} (bound {BATCH})")
    return lost


def test_sigkill_with_backend_up(tmp_path):
    db = tmp_path / "acc.db"
    last = _run_and_kill(tmp_path, str(db), 1500)
    rows, _ = _recover(tmp_path, db)
    _check(rows, last)


def test_sigkill_with_backend_down_spool_survives(tmp_path):
    # the child's db is a directory: every write fails, so every batch goes to the fsynced spool
    bad = tmp_path / "not-a-db"
    bad.mkdir()
    last = _run_and_kill(tmp_path, str(bad), 1500)
    db = tmp_path / "acc.db"
    rows, s = _recover(tmp_path, db)
    assert s["replayed"] == len(rows)
    _check(rows, last)
