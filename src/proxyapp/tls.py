"""The ``[tls]`` table: certificates and verification for ``tls:`` listeners and outgoing TLS, validated.

SIP over TLS is RFC 3261 §26.2 (and §18 for the stream framing, the same as TCP's); the names
follow OpenSIPS' and Kamailio's tls modules, made Pythonic:

- ``certificate`` (OpenSIPS ``certificate``): PEM file with our certificate, followed by any
  intermediate CA certificates. Required when a ``tls:`` listener exists; also presented as
  the client certificate on connections we open (peers that ask for one, RFC 3261 §26.3.2.2).
- ``private_key`` (OpenSIPS ``private_key``): PEM file with the certificate's private key
  (unencrypted: the proxy starts unattended). Required with ``certificate``.
- ``ca_list`` (OpenSIPS ``ca_list``): PEM file of CA certificates that peers' certificates are
  checked against, both ways. Without it, servers we connect to are checked against the
  system's trust store, and client certificates (``verify_client``) cannot be checked.
- ``verify_client`` (OpenSIPS ``verify_cert`` + ``require_cert``): ask every client of a
  ``tls:`` listener for a certificate issued by ``ca_list`` and refuse the handshake without
  one (mutual TLS, as between proxies of one operator). Default false: phones seldom have a
  certificate; they authenticate with SIP digest (RFC 3261 §22) inside the TLS connection.
- ``verify_server`` (OpenSIPS ``verify_cert`` of a client domain): check the certificate of
  every peer we open a TLS connection to, against ``ca_list`` or else the system store, and
  that it names the domain the request targets (RFC 5922 §7.2: the host part of the URI the
  next hop came from, never the address DNS resolved it to; an IP literal is checked against
  the certificate's IP addresses). Default true; false trusts anyone (test set-ups only).
- ``min_version`` (OpenSIPS ``tls_method``): the oldest protocol version accepted,
  ``"TLSv1.2"`` (the default; RFC 8996 retired 1.0 and 1.1) or ``"TLSv1.3"``.
- ``handshake_timeout`` (OpenSIPS ``tls_handshake_timeout``, Kamailio ``tls_connect_timeout``):
  seconds a TLS handshake may take, either way; a client that connects and stays silent is
  dropped after it. Default 10.

Validation (``TlsConfig.from_dict``, as tcp_limits does for ``[tcp]``) only looks at the values;
the files are read when the edge builds the contexts at start (``server_context`` /
``client_context``), and an unreadable file or a key that does not match the certificate is a
``TlsStartError`` naming the keys (an OSError: the proxy logs "cannot start" and exits 1).

Not done: certificate revocation (CRL/OCSP), per-domain certificates (SNI), the SIP URI
subjectAltName of RFC 5922 §7.1 (the DNS names and IP addresses are checked); wildcard DNS names
match as Python's ssl matches them, where RFC 5922 excludes wildcards.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from .config import ConfigError, Listen

MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsStartError(OSError):
    """A certificate, key or CA file that cannot be used: the proxy cannot start (an OSError,
    so it is reported as a start failure like a port that cannot be bound)."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    certificate: str | None = None
    private_key: str | None = None
    ca_list: str | None = None
    verify_client: bool = False
    verify_server: bool = True
    min_version: str = "TLSv1.2"
    handshake_timeout: float = 10.0

    @classmethod
    def from_dict(cls, table: dict[str, Any], listen: Iterable[Listen] = ()) -> "TlsConfig":
        """Validate the ``[tls]`` table ({} = the defaults) against the listeners (a ``tls:``
        one needs certificate and private_key); raises ConfigError naming the key."""
        if not isinstance(table, dict):
            raise ConfigError("tls", "expected a table")
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in known:
                raise ConfigError(f"tls.{key}", f"unknown key (known: {', '.join(known)})")
            if key in ("certificate", "private_key", "ca_list"):
                if not isinstance(raw, str) or not raw:
                    raise ConfigError(f"tls.{key}", f"expected the path of a PEM file, got {raw!r}")
            elif key in ("verify_client", "verify_server"):
                if not isinstance(raw, bool):
                    raise ConfigError(f"tls.{key}", f"expected true or false, got {raw!r}")
            elif key == "min_version":
                if raw not in MIN_VERSIONS:
                    raise ConfigError("tls.min_version", f"expected 'TLSv1.2' or 'TLSv1.3', got {raw!r}")
            else:  # handshake_timeout
                if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.1 <= raw <= 300:
                    raise ConfigError("tls.handshake_timeout", f"expected seconds between 0.1 and 300, got {raw!r}")
                raw = float(raw)
            values[key] = raw
        cfg = cls(**values)
        tls_listen = [x for x in listen if x.transport == "tls"]
        if tls_listen:
            for key in ("certificate", "private_key"):
                if getattr(cfg, key) is None:
                    raise ConfigError(
                        f"tls.{key}", f"required by the listener {tls_listen[0]} (a PEM file; see [tls])",
                    )
        if cfg.certificate is not None and cfg.private_key is None:
            raise ConfigError("tls.private_key", "required with tls.certificate")
        if cfg.private_key is not None and cfg.certificate is None:
            raise ConfigError("tls.certificate", "required with tls.private_key")
        if cfg.verify_client and cfg.ca_list is None:
            raise ConfigError("tls.verify_client", "needs tls.ca_list (the CAs client certificates are checked against)")
        return cfg

    def _base(self, purpose: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = MIN_VERSIONS[self.min_version]
        ctx.options |= ssl.OP_NO_COMPRESSION
        return ctx

    def _load_chain(self, ctx: ssl.SSLContext) -> None:
        cert, key = self.certificate, self.private_key
        assert cert is not None and key is not None
        for name, path in (("tls.certificate", cert), ("tls.private_key", key)):
            if not os.access(path, os.R_OK):
                why = "no such file" if not os.path.exists(path) else "not readable"
                raise TlsStartError(f"{name} {path!r}: {why}")
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsStartError(
                f"tls.certificate {cert!r} / tls.private_key {key!r}: cannot be used together ({exc.reason or exc})"
            ) from None

    def _load_cas(self, ctx: ssl.SSLContext) -> None:
        path = self.ca_list
        assert path is not None
        try:
            ctx.load_verify_locations(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            raise TlsStartError(f"tls.ca_list {path!r}: cannot be loaded ({exc})") from None

    def server_context(self) -> ssl.SSLContext:
        """The context of ``tls:`` listeners (RFC 3261 §26.3.1: the server presents its
        certificate; with verify_client, the client must present one issued by ca_list)."""
        if self.certificate is None:
            raise TlsStartError("tls.certificate is required for a tls listener")
        ctx = self._base(ssl.PROTOCOL_TLS_SERVER)
        self._load_chain(ctx)
        if self.verify_client:
            self._load_cas(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """The context of connections we open: with verify_server, the peer's chain must lead
        to ca_list (or the system store) and name the target (RFC 5922 §7.2; Python's hostname
        check matches DNS names and, for an IP literal, IP addresses of the subjectAltName)."""
        ctx = self._base(ssl.PROTOCOL_TLS_CLIENT)
        if self.verify_server:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = True
            if self.ca_list is not None:
                self._load_cas(ctx)
            else:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.certificate is not None:
            self._load_chain(ctx)  # our client certificate, for peers that ask (mutual TLS)
        return ctx
