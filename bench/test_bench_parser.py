"""pytest-benchmark suite: fastsip's two backends on the named workloads, in the three modes.

    pytest bench/test_bench_parser.py --benchmark-only
    pytest bench/test_bench_parser.py --benchmark-only --benchmark-group-by=param:workload,param:mode

Not collected by `pytest tests` (it lives outside tests/). The same adapters as bench/compare_parsers.py
are used, so these numbers and that table measure the same code; the competitors only run there, each in
its own subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adapters  # noqa: E402
import workloads  # noqa: E402

WORKLOADS = workloads.load()


def _backend(lib: str):
    try:
        return adapters.load(lib)
    except ImportError as exc:
        pytest.skip(f"{lib} not available: {exc}")


@pytest.fixture(params=["fastsip-c", "fastsip-py"])
def backend(request):
    # The adapter module is shared by both backends: bind it fresh for each test.
    return request.param


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("mode", ["minimal", "full", "serialize"])
def test_parse(benchmark, backend, workload, mode):
    mod = _backend(backend)
    fn = getattr(mod, mode)
    data = WORKLOADS[workload]
    benchmark.group = f"{workload} / {mode}"
    benchmark.extra_info["backend"] = mod.BACKEND
    result = benchmark(fn, data)
    if mode == "full":
        got = adapters.check(workload, WORKLOADS, result)
        assert not got["wrong"] and not got["missing"], got
    elif mode == "serialize":
        assert b"P-hint: outbound" in result
