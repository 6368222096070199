"""Shared fixtures of the accounting tests (real PostgreSQL and FreeRADIUS live in fixtures.py).

The package under test is the installed one (`pip install -e .` or `pip install .`, as
tests/run.sh does): sys.path is not touched, so the compiled fastsip backend is the one
the other suites see too.
"""

from .fixtures import freeradius_server, pg, postgres_server  # noqa: F401
