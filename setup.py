"""Build the optional Cython backend of fastsip; fall back to pure Python, loudly, when it cannot build.

Two things can stop the compiled backend (fastsip._parser_c) from building: Cython is not
importable (``pip install --no-build-isolation`` without it; build isolation installs it from
[build-system] requires), or the C compiler fails or is missing. Either way the install still
succeeds on the pure-Python twin (fastsip.IMPLEMENTATION == "py") and a WARNING banner saying
why goes to stderr (``python -m build`` shows it; ``pip install`` shows it with ``-v``).

Environment switches:
  FASTSIP_NO_EXTENSIONS=1  skip the compiled backend (the same switch the runtime honours), as
                           aiohttp and yarl do with AIOHTTP_NO_EXTENSIONS / YARL_NO_EXTENSIONS.
  FASTSIP_REQUIRE_C=1      the opposite: fail the build instead of falling back (the wheel builds
                           of noxfile.py and [tool.cibuildwheel] set it; the parser tests honour it
                           too, tests/fastsip/conftest.py).
  FASTSIP_CFLAGS           compiler flags (default -O3).
  FASTSIP_ANNOTATE=1       write Cython's HTML annotation next to the .pyx.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("FASTSIP_NO_EXTENSIONS"))
REQUIRE_C = bool(os.environ.get("FASTSIP_REQUIRE_C"))
EXT_NAME = "fastsip._parser_c"


def fall_back(reason: str) -> None:
    """Say loudly that this install gets the pure-Python backend, or stop if the C one is required."""
    if REQUIRE_C:
        sys.exit(f"error: fastsip: FASTSIP_REQUIRE_C=1 but the compiled backend cannot be built: {reason}")
    rule = "*" * 78
    print(
        f"\n{rule}\n"
        "WARNING: fastsip is being installed WITHOUT its compiled (Cython) backend:\n"
        f"    {reason}\n"
        "It works, on the pure-Python parser (fastsip.IMPLEMENTATION == 'py'), only slower.\n"
        "For the compiled one install a C compiler and the Python headers (Debian: apt install\n"
        "gcc python3-dev), then reinstall without pip's cached wheel:\n"
        "    pip install --no-cache-dir --force-reinstall --no-binary fastsip fastsip\n"
        f"{rule}\n",
        file=sys.stderr,
        flush=True,
    )


class OptionalBuildExt(build_ext):
    """A failed compile leaves the pure-Python backend in place instead of failing the install."""

    failed: list[str]

    def run(self) -> None:
        self.failed = []
        try:
            super().run()
        except Exception as exc:  # no usable compiler at all (DistutilsPlatformError before any compile)
            self.failed = [e.name for e in self.extensions]
            fall_back(f"no usable C compiler ({type(exc).__name__}: {exc})")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CCompilerError, DistutilsExecError, DistutilsPlatformError, ...
            self.failed.append(ext.name)
            fall_back(f"compiling {ext.name} failed ({type(exc).__name__}: {exc})")

    def _failed_paths(self) -> set[str]:
        return {self.get_ext_fullpath(name) for name in getattr(self, "failed", [])}

    def get_outputs(self) -> list[str]:
        # The wheel and editable installs must not list the extension that did not build.
        failed = self._failed_paths()
        return [p for p in super().get_outputs() if p not in failed]

    def get_output_mapping(self) -> dict[str, str]:
        failed = self._failed_paths()
        return {dst: src for dst, src in super().get_output_mapping().items() if dst not in failed and src not in failed}

    def copy_extensions_to_source(self) -> None:
        keep = self.extensions
        self.extensions = [e for e in keep if e.name not in getattr(self, "failed", [])]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = keep


def extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        print("fastsip: FASTSIP_NO_EXTENSIONS is set; building the pure-Python backend only", file=sys.stderr)
        return []
    if sys.implementation.name != "cpython":
        if REQUIRE_C:
            fall_back(f"{sys.implementation.name} is not CPython")
        print(f"fastsip: {sys.implementation.name} is not CPython; pure-Python backend only", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        fall_back(f"Cython is not installed ({exc})")
        return []
    cflags = os.environ.get("FASTSIP_CFLAGS", "-O3").split()
    ext = Extension(EXT_NAME, ["src/fastsip/_parser_c.pyx"], extra_compile_args=cflags)
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=bool(os.environ.get("FASTSIP_ANNOTATE")),
    )


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    # The generated C goes into the sdist next to the .pyx; a wheel needs only the compiled module.
    exclude_package_data={"fastsip": ["*.c"]},
)
