"""Proxy: the sans-IO proxy core bound to a routing script, what the edge and the tests drive.

The rules live in proxyapp.core, one module per RFC 3261 section; this facade only loads the
script (the built-in default when none is given) and binds it to the core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .auth import Auth, AuthConfig
from .config import Config
from .core import AccObserver, Branch, ProxyCore, Resolve, ScriptError, Stats, Target, TxContext
from .core.sockets import identity
from .location import Location
from .registrar import RegistrarConfig
from .script import Script, Services

__all__ = ["Branch", "Proxy", "Resolve", "ScriptError", "Stats", "Target", "TxContext"]


class Proxy(ProxyCore):
    """The stateful proxy running ``script`` (a Script; None loads cfg.script or the default).

    ``location`` is the registration store the script's save/lookup use (the caller starts and
    closes it); None gives an in-memory one. Raises ValueError for a bad [registrar] table."""

    def __init__(
        self,
        cfg: Config,
        script: Script | None = None,
        acc: AccObserver | None = None,
        *,
        location: Location | None = None,
        wallclock: Callable[[], float] = time.time,
        branch_salt: str | None = None,
    ) -> None:
        if script is None:
            script = Script.load(cfg.script)
        super().__init__(cfg, script, acc, wallclock=wallclock, branch_salt=branch_salt)
        script.proxy = self
        self.location = location if location is not None else Location()
        script.services = Services(
            self.location,
            RegistrarConfig.from_dict(cfg.registrar),
            # This node as other nodes sharing the store reach it: its first socket's address.
            f"sip:{self.sockets[0].sent_by}",
            # [auth]: digest authentication (the caller starts and closes it); none without the table.
            Auth(AuthConfig.from_dict(cfg.auth), clock=wallclock) if cfg.auth else None,
        )
        self.auth = script.services.auth
        if self.auth is not None:
            self.auth.on_failure = self.limits.auth_failed  # [limits] auth_failures_ban

    def reconfigure(self, cfg: Config, script: Script) -> None:
        """A reload: ``script`` and ``cfg`` serve the requests that arrive from now on.

        What cannot change in a running process (the sockets, accounting, the location store)
        must be equal in ``cfg`` (control.RESTART_KEYS; the caller keeps the old values).
        Transactions in flight keep the timers they started with and the failure, reply and
        branch routes they armed (resolved to the old script's functions); a module-level
        onreply_route is the new script's. Raises ValueError for a bad [registrar] table, before
        anything changed."""
        registrar = RegistrarConfig.from_dict(cfg.registrar)
        me = identity(self.sockets, cfg.aliases)
        old = self.script
        assert isinstance(old, Script)  # the facade binds only Scripts
        script.proxy = self
        script.services = Services(old.services.location, registrar, old.services.node, old.services.auth)
        self.script = script
        self.cfg = cfg
        self.timers = cfg.timers
        self.server_header = cfg.server_header
        self._server_hdr = (("Server", cfg.server_header),) if cfg.server_header else ()
        self.debug = cfg.log_level in ("TRACE", "DEBUG")
        self._me, self._me_any_port = me
