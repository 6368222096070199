"""proxyapp location (OpenSIPS usrloc): registration bindings in memory for the call path, persisted and shared by a backend.

Integration contract (what the proxy, the registrar and lookup call). Everything but start() and
close() is synchronous, cheap and never blocks nor raises for a backend problem: writes are queued
and flushed by a background task, retried while the backend is down (backends/base.py).

    from proxyapp.location import Binding, Location, LocationConfig, for_config
    loc = for_config(LocationConfig.from_dict(config.get("location", {})), clock=time.time)  # ValueError names a bad key
    await loc.start()     # load the live bindings, subscribe to other nodes', start the expiry timer
    await loc.close()     # SIGTERM path: stop the timer, flush queued writes (bounded)

    loc.get(aor, now)               # -> list[Binding]: live (expires > now), q descending, most recent first
    loc.put(aor, bindings, now)     # the registrar's new list for the AOR ([] deletes it)
    loc.remove(aor, contact=None)   # -> int removed: the AOR, or its bindings with that Contact URI
    loc.expire(now)                 # -> int dropped (the timer start() runs calls it every second)
    loc.aors(), loc.count(), len(loc), aor in loc, loc.snapshot(), loc.stats()   # ul show, ul stats

``now`` and Binding.expires are wall-clock seconds (time.time()). AORs are compared as given:
the registrar canonicalises them (binding.py). Binding.conn, the edge's connection, stays in
memory: it survives a change another node makes to a binding only if the binding is unchanged.

Backends ([location] backend): "sqlite" (default; a file, shared by the worker processes of one
machine), "memory", "postgres" (LISTEN/NOTIFY) and "redis" (pub/sub) for several nodes. Last
write per AOR wins. Rules: store.py; the backend protocol: backends/base.py; config.py.
"""

import time
from typing import Callable

from .binding import Binding
from .config import LocationConfig
from .store import Location
from .backends.base import Backend

__all__ = ["Backend", "Binding", "Location", "LocationConfig", "for_config"]


def for_config(cfg: LocationConfig, clock: Callable[[], float] = time.time) -> Location:
    """A Location with the backend ``cfg.backend`` names (not started: await its start()).
    ``clock`` is the wall clock its expiry timer and replicated changes are judged by (the
    proxy's, when it injects one). The postgres and redis backends import psycopg / redis only
    when chosen."""
    backend: Backend
    if cfg.backend == "memory":
        from .backends.memory import MemoryBackend

        backend = MemoryBackend()
    elif cfg.backend == "sqlite":
        from .backends.db_sqlite import SqliteBackend

        backend = SqliteBackend(cfg.sqlite_path, cfg.db_table, sync_interval=cfg.sync_interval, **cfg.queue_options())
    elif cfg.backend == "postgres":
        from .backends.db_postgres import PostgresBackend

        backend = PostgresBackend(cfg.db_url, cfg.db_table, **cfg.queue_options())
    elif cfg.backend == "redis":
        from .backends.db_redis import RedisBackend

        backend = RedisBackend(cfg.redis_url, cfg.redis_prefix, **cfg.queue_options())
    else:  # validate() lets no other name through
        raise ValueError(f"location.backend: unknown backend {cfg.backend!r}")
    return Location(backend, clock=clock, expire_interval=cfg.expire_interval)
