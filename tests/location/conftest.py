"""Fixtures of the location tests: real PostgreSQL (shared with tests/acc) and Redis on loopback."""

from ..acc.fixtures import pg, postgres_server  # noqa: F401
from .fixtures import redis_server  # noqa: F401
