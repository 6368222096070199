"""Packaging: `pip install fastsip` is the parser alone; the proxy's dependencies are the `proxy` extra.

The wheels themselves are built and tested by noxfile.py (README "Wheels"); these are the quick
checks of the metadata and of the import boundary, for every run of the suite.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastsip

from .conftest import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

BLOCK_LOGURU = "import sys; sys.modules['loguru'] = None\n"  # `import loguru` now raises ImportError


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    # The same sys.path as this run (PYTHONPATH=src in a checkout, site-packages for an installed wheel).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    if tomllib is None:
        pytest.skip("tomllib is Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_library_depends_on_nothing_and_loguru_is_in_the_proxy_extra(pyproject) -> None:
    project = pyproject["project"]
    assert project.get("dependencies", []) == []
    assert any(req.startswith("loguru") for req in project["optional-dependencies"]["proxy"])
    assert project["scripts"]["proxyapp"] == "proxyapp._cli:main"


def test_cibuildwheel_builds_cpython_310_to_313_and_tests_the_compiled_backend(pyproject) -> None:
    cibw = pyproject["tool"]["cibuildwheel"]
    assert cibw["build"].split() == ["cp310-*", "cp311-*", "cp312-*", "cp313-*"]
    assert cibw["environment"]["FASTSIP_REQUIRE_C"] == "1"
    assert cibw["test-environment"]["FASTSIP_REQUIRE_C"] == "1"
    assert "tests/fastsip" in cibw["test-command"]


def test_installed_metadata_has_loguru_only_in_the_proxy_extra() -> None:
    # Meaningful where fastsip was imported from an installed distribution (the wheel sessions).
    try:
        dist = importlib.metadata.distribution("fastsip")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastsip is not installed as a distribution")
    if dist.read_text("WHEEL") is None:  # e.g. the src/fastsip.egg-info a checkout's build leaves
        pytest.skip("fastsip's metadata is not that of an installed wheel")
    if Path(str(dist.locate_file("fastsip/__init__.py"))).resolve() != Path(fastsip.__file__).resolve():
        pytest.skip(f"fastsip imported from {Path(fastsip.__file__).parent}, not from the installed distribution")
    requires = dist.requires or []
    loguru = [r for r in requires if r.startswith("loguru")]
    assert loguru and all('extra == "proxy"' in r for r in loguru), requires
    unconditional = [r for r in requires if "extra ==" not in r]
    assert unconditional == [], unconditional
    assert any(ep.name == "proxyapp" and ep.value == "proxyapp._cli:main" for ep in dist.entry_points)


def test_fastsip_never_imports_loguru() -> None:
    code = BLOCK_LOGURU + (
        "import pkgutil, importlib, fastsip\n"
        "for m in pkgutil.iter_modules(fastsip.__path__):\n"
        "    importlib.import_module('fastsip.' + m.name)\n"
        "fastsip.parse(b'OPTIONS sip:a@b SIP/2.0\\r\\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\\r\\nFrom: <sip:x@y>;tag=1\\r\\n"
        "To: <sip:a@b>\\r\\nCall-ID: c\\r\\nCSeq: 1 OPTIONS\\r\\nMax-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n')\n"
        "print('ok')\n"
    )
    out = run_python(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_proxyapp_script_without_loguru_says_what_to_install_in_one_line() -> None:
    out = run_python(BLOCK_LOGURU + "from proxyapp._cli import main; sys.exit(main(['--version']))")
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fastsip[proxy]'" in lines[0] and "loguru" in lines[0], out.stderr


def test_proxyapp_script_runs_the_proxy_when_loguru_is_there() -> None:
    pytest.importorskip("loguru")
    out = run_python("import sys; from proxyapp._cli import main; sys.exit(main(['--version']))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("version: proxyapp "), out.stdout


BLOCK_COMPILED = (
    "import sys\n"
    "class _NoCompiled:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'fastsip._parser_c':\n"
    "            raise ImportError('blocked by the test: as if built without a compiler')\n"
    "sys.meta_path.insert(0, _NoCompiled())\n"
)


def test_a_fallback_install_warns_at_import_and_a_chosen_one_does_not() -> None:
    # pip shows setup.py's fallback banner only with -v: the import says it where users see it.
    code = BLOCK_COMPILED + "import warnings; warnings.simplefilter('default')\nimport fastsip; print(fastsip.IMPLEMENTATION)"
    env = {k: v for k, v in os.environ.items() if k != "FASTSIP_NO_EXTENSIONS"}  # (the suite's py pass sets it)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "py", out.stderr
    assert "RuntimeWarning: fastsip: the compiled parser is not installed" in out.stderr
    env = dict(os.environ, FASTSIP_NO_EXTENSIONS="1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    quiet = subprocess.run([sys.executable, "-W", "default", "-c", "import fastsip; print(fastsip.IMPLEMENTATION)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert quiet.stdout.strip() == "py" and "RuntimeWarning" not in quiet.stderr, quiet.stderr
