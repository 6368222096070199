"""Shared fixtures of the accounting tests (real PostgreSQL and FreeRADIUS live in fixtures/)."""

import sys
from pathlib import Path

# The tests run from a checkout with or without `pip install -e`: make src/ importable.
SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from .fixtures import freeradius_server, pg, postgres_server  # noqa: E402,F401
