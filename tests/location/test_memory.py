"""Memory per binding (bench/location_memory.py measures 100,000; this holds a smaller run to a bound)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "location_memory.py"


@pytest.mark.timeout(120)
def test_bytes_per_binding_stay_small():
    spec = importlib.util.spec_from_file_location("location_memory", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    per, loc = bench.measure(5_000)
    # 665 bytes at 100,000 on CPython 3.11 (bench/location_memory.py), ~330 of them the strings
    # of the REGISTER itself (Contact, Call-ID, source host, AOR).
    assert per < 800, per
    per3, _ = bench.measure(4_998, per_aor=3)
    assert per3 < 750, per3
