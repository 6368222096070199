"""Proxy: the sans-IO proxy core bound to a routing script, what the edge and the tests drive.

The rules live in proxyapp.core, one module per RFC 3261 section; this facade only loads the
script (the built-in default when none is given) and binds it to the core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .config import Config
from .core import AccObserver, Branch, ProxyCore, Resolve, ScriptError, Stats, Target, TxContext
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
        script.services = Services(
            location if location is not None else Location(),
            RegistrarConfig.from_dict(cfg.registrar),
            # This node as other nodes sharing the store reach it: its first socket's address.
            f"sip:{self.sockets[0].sent_by}",
        )
