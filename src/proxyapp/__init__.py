"""proxyapp: a stateful SIP proxy built on fastsip that behaves like OpenSIPS on the wire.

Layers, bottom to top; a module imports only from its own layer or those below it
(tests/proxy/test_layers.py keeps it so):

1. base: ``config`` (validated configuration, timers from T1/T2/T4), ``logs`` (log set-up).
   ``limits`` (sans-IO [limits]: per-source flood bans and the scanner filter for the edge, the
   transaction budget for the core).
2. ``transaction``: RFC 3261 §17 state machines; events in, actions out, no I/O, no clock.
3. ``core``: the sans-IO proxy, RFC 3261 §16 split by section (requests §16.3-16.6, responses
   §16.7, cancel §16.10, stateless §16.11, local replies). It calls the script and accounting
   only through the contracts in ``core.hooks``.
4. services: ``acc`` (accounting; its contract is acc/__init__.py), ``location`` (bindings, usrloc)
   and ``registrar`` (RFC 3261 §10.3 rules). They know nothing of the core.
   ``auth`` (digest authentication, RFC 3261 §22 / RFC 8760, subscribers in SQLite or PostgreSQL).
5. ``script``: the routing-script API (OpenSIPS-like verbs) and ``default_script``.
6. ``proxy``: the facade that binds a script to the core.
7. ``workers`` and ``transport``: the asyncio edge (sockets, the clock, DNS, several processes);
   ``control`` (the UNIX control socket's server side: statistics, reload, usrloc) and ``metrics``
   (the Prometheus endpoint).
8. ``__main__`` (the command line), ``ctl`` (``proxyapp ctl``, the control client) and ``_cli``
   (the console-script entry, which checks the proxy's dependencies are installed).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
