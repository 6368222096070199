"""The whole source tree (fastsip and proxyapp) type-checks: `mypy` as pyproject.toml configures it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_sources_pass_mypy_strict() -> None:
    # mypy is in the test extras: this test never skips. [tool.mypy] gives strict and the files.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
