"""The registrar: RFC 3261 §10.3 REGISTER rules with Path (RFC 3327) and outbound (RFC 5626), sans-IO.

A service (layer 4): it knows fastsip, the configuration and the Binding record, never the proxy
core. How the script's save() uses it (one AOR's get -> process -> put must not interleave with
another REGISTER for the same AOR, §10.3 "processed in the order ... atomically"):

    cfg = RegistrarConfig.from_dict(config_table.get("registrar", {}))  # ConfigError names the key
    now = time.time()
    aor = request_aor(msg)                          # None when To is unusable: the outcome says why
    out = process_register(msg, loc.get(aor, now) if aor else [], now=now, cfg=cfg,
                           source=(transport, src_ip, src_port), socket=str(listen),
                           node=node_uri, conn=tcp_conn_or_None)
    if out.bindings is not None:
        loc.put(out.aor, out.bindings, now)         # the AOR's complete list; [] removes it
    reply = fastsip.make_response(msg, out.status, out.reason, to_tag=tag, headers=out.headers)

``msg`` must be the REGISTER as received (no Via of ours): RFC 5626 §6 counts its Vias. Steps 1
(is the Request-URI ours), 3 and 4 (authentication, 401/407, 403) are the script's, before save().
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
