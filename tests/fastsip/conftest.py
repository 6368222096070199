"""Fixtures for the parser tests: ``impl`` runs each test on both backends; corpus helpers."""

from __future__ import annotations

import importlib
import os
import pathlib
from types import ModuleType

import pytest
from hypothesis import settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"

# With FASTSIP_NO_EXTENSIONS=1 only the pure-Python backend is under test (the
# fallback run of tests/run.sh); otherwise both, and a missing compiled
# backend is an import error, so the suite fails instead of silently testing less.
settings.register_profile("default", max_examples=150)
settings.register_profile("deep", max_examples=20000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKENDS = ["py"] if os.environ.get("FASTSIP_NO_EXTENSIONS") else ["py", "c"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", BACKENDS, indirect=True)


@pytest.fixture
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(f"fastsip._parser_{request.param}")


def corpus_files(kind: str) -> list[pathlib.Path]:
    return sorted((CORPUS / kind).glob("*.sip"))


def read_corpus(name: str) -> bytes:
    return (CORPUS / "valid" / name).read_bytes()
