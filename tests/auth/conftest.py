"""Fixtures of the auth tests: real PostgreSQL (tests/acc), proxyapp processes and SIPp (tests/proxy), phones."""

from ..acc.fixtures import pg, postgres_server  # noqa: F401
from ..phones.conftest import phones  # noqa: F401
from ..proxy.conftest import proxy_factory, sipp  # noqa: F401
