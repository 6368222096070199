"""Build the optional Cython backend of fastsip; fall back to pure Python when it cannot build.

FASTSIP_NO_EXTENSIONS=1 skips the compiled backend entirely (the same switch the
runtime honours), as aiohttp and yarl do with AIOHTTP_NO_EXTENSIONS / YARL_NO_EXTENSIONS.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("FASTSIP_NO_EXTENSIONS")) or sys.implementation.name != "cpython"


class OptionalBuildExt(build_ext):
    """A failed compile leaves the pure-Python backend in place instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing, Cython missing, ...
            print(f"WARNING: fastsip compiled backend not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"WARNING: building {ext.name} failed ({exc}); using pure Python", file=sys.stderr)


def extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("WARNING: Cython not available; using pure Python", file=sys.stderr)
        return []
    cflags = os.environ.get("FASTSIP_CFLAGS", "-O3").split()
    ext = Extension("fastsip._parser_c", ["src/fastsip/_parser_c.pyx"], extra_compile_args=cflags)
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


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
