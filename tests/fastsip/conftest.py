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


# FASTSIP_REQUIRE_C=1 (the wheel sessions of noxfile.py, the [tool.cibuildwheel] test-command):
# the compiled backend must be the one `import fastsip` picked, or the whole run fails before any
# test, instead of passing on the pure-Python twin. setup.py honours the same switch at build time.
REQUIRE_C = bool(os.environ.get("FASTSIP_REQUIRE_C"))


def pytest_report_header(config: pytest.Config) -> str:
    import fastsip

    required = ", compiled backend required (FASTSIP_REQUIRE_C)" if REQUIRE_C else ""
    return f"fastsip {fastsip.__version__}: IMPLEMENTATION={fastsip.IMPLEMENTATION!r} from {pathlib.Path(fastsip.__file__).parent}{required}"


def required_backend_problem() -> str | None:
    """Why FASTSIP_REQUIRE_C=1 is not met, or None (also when it is not set)."""
    if not REQUIRE_C:
        return None
    if os.environ.get("FASTSIP_NO_EXTENSIONS"):
        return "FASTSIP_REQUIRE_C=1 and FASTSIP_NO_EXTENSIONS=1 contradict each other"
    import fastsip

    if fastsip.IMPLEMENTATION == "c":
        return None
    try:
        importlib.import_module("fastsip._parser_c")
        why = "it imports, yet fastsip did not pick it"
    except ImportError as exc:
        why = f"import fastsip._parser_c: {exc}"
    return (
        f"FASTSIP_REQUIRE_C=1 but fastsip.IMPLEMENTATION == {fastsip.IMPLEMENTATION!r} "
        f"({pathlib.Path(fastsip.__file__).parent}; {why})"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # Runs when tests/fastsip is on the command line (its conftest is then loaded at start-up).
    problem = required_backend_problem()
    if problem:
        raise pytest.UsageError(problem)


@pytest.fixture(scope="session", autouse=True)
def _require_compiled_backend() -> None:
    # The same check when this conftest is only found during collection (``pytest tests``).
    problem = required_backend_problem()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
