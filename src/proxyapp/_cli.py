"""The ``proxyapp`` console script: check that the proxy's own dependencies are installed, then run.

``pip install fastsip`` installs the parser alone; the proxy's dependencies (loguru) come with the
``proxy`` extra. Without them ``proxyapp`` says so in one line and exits 2 instead of a traceback.
Only the standard library at module level: this must import whatever is missing.
"""

from __future__ import annotations

import importlib
import sys

EXIT_MISSING = 2
# What proxyapp imports unconditionally; the rest of the ``proxy`` extra is optional at run time.
REQUIRED = ("loguru",)
INSTALL_HINT = "pip install 'fastsip[proxy]'"


def missing_modules() -> list[str]:
    """The required modules that do not import (absent, or broken)."""
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    missing = missing_modules()
    if missing:
        print(
            f"proxyapp: {', '.join(missing)} not installed; the proxy needs the fastsip[proxy] extra: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_MISSING
    if sys.version_info < (3, 11):
        # tomllib and asyncio.Runner; the parser alone (import fastsip) runs on 3.10.
        print("proxyapp: the proxy needs Python 3.11 or later (fastsip, the parser, runs on 3.10)", file=sys.stderr)
        return EXIT_MISSING
    from proxyapp.__main__ import main as proxy_main

    return proxy_main(argv)


if __name__ == "__main__":
    sys.exit(main())
