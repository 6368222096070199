"""Which memory allocator the proxy runs on: ``[limits] allocator`` (issue 17, bounded memory).

CPython's own small-object allocator (pymalloc) takes memory from the system in 1 MiB arenas
and gives an arena back only when every object in it is gone. A flood leaves a few long-lived
small objects in most of the arenas it filled: the last values of counters, a timestamp, a
cached string. Measured with 60,000 transactions toward a silent target
(tests/proxy/test_floods.py ``memory``), pymalloc held 80 arenas after the flood, with 16 MB of
live objects in them, the same 16 MB as before it. Most of those arenas stay: 104 MB of RSS
once the drop settled, where there were 41 MB before (about 300 more live objects than before
the flood). With ``PYTHONMALLOC=malloc`` every object comes from the C library's malloc, and
``malloc_trim`` (``[limits] malloc_trim``) hands back each free 4 KiB page. The same flood then
ends at 42 MB, where it began.

The price is CPU: glibc's malloc costs about 11 % more instructions per proxied call than
pymalloc, and about 8 % more time (bench/README.md). So:

- ``"auto"`` (the default) uses malloc when a listener is off loopback, where floods come from,
  and keeps pymalloc on loopback (the embedded defaults, tests and benchmarks);
- ``"malloc"`` and ``"pymalloc"`` choose either one.

The allocator is fixed when the interpreter starts, so ``reexec`` starts the process again
with ``PYTHONMALLOC=malloc`` in its environment (``execve``: same PID, same command line, same
descriptors). A ``PYTHONMALLOC`` already in the environment is the operator's choice and is
kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from .config import Config
from .permissions import exposed_listeners

def wanted(cfg: Config, choice: str) -> str:
    """"malloc" or "pymalloc" for ``[limits] allocator = choice`` with these listeners."""
    if choice == "auto":
        return "malloc" if exposed_listeners(cfg) else "pymalloc"
    return choice


def running(environ: Mapping[str, str] | None = None) -> str:
    """The allocator this interpreter runs on, as PYTHONMALLOC names it ("pymalloc" unset)."""
    env = os.environ if environ is None else environ
    return env.get("PYTHONMALLOC") or "pymalloc"


def exec_environment(cfg: Config, choice: str, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The environment to start again with, or None when this process is already right: it
    runs on what ``choice`` wants, or PYTHONMALLOC was set by whoever started it."""
    env = dict(os.environ if environ is None else environ)
    if "PYTHONMALLOC" in env or wanted(cfg, choice) == "pymalloc":
        return None
    env["PYTHONMALLOC"] = "malloc"
    return env


def reexec(cfg: Config, choice: str) -> None:
    """Start this very command again on malloc when ``choice`` wants it (does not return then).
    Call it before any socket, thread or child process exists."""
    env = exec_environment(cfg, choice)
    if env is None:
        return
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:  # go on, on pymalloc
        print(f"proxyapp: cannot restart on PYTHONMALLOC=malloc ({exc}); running on pymalloc", file=sys.stderr)
