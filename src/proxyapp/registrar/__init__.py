"""The registrar: RFC 3261 §10.3 REGISTER rules with Path (RFC 3327) and outbound (RFC 5626), sans-IO.

A service (layer 4): it knows fastsip, the configuration and the Binding record, never the proxy
core. The script's save() reads the AOR's bindings from the location store, calls
``process_register`` and writes back ``outcome.bindings`` when it is not None, then replies with
``outcome.status``, ``outcome.reason`` and ``outcome.headers``.
"""

from ._config import RegistrarConfig
from ._rules import SUPPORTED_EXTENSIONS, RegisterOutcome, contact_header_values, process_register
from ._uri import aor_of, request_aor, uri_equal

__all__ = [
    "RegistrarConfig",
    "RegisterOutcome",
    "SUPPORTED_EXTENSIONS",
    "aor_of",
    "request_aor",
    "uri_equal",
    "process_register",
    "contact_header_values",
]
