"""redis backend: one key per AOR holding its bindings as JSON, changes announced by pub/sub.

Layout (PREFIX is ``[location] redis_prefix``, default "proxyapp:location"):

    PREFIX:<aor>   a string: JSON list of Binding.to_dict(), the AOR's whole list; its TTL ends at
                   the last binding's expiry (PXAT), so Redis itself drops dead AORs
    PREFIX         the pub/sub channel: each write publishes the AOR it changed

A batch is one MULTI/EXEC (SET ... PXAT or DEL, then PUBLISH per AOR). Every node re-reads the
AORs announced (its own too: pub/sub does not say who published, and re-reading our own write is
harmless, the list equals what we hold). When the subscription is re-established (redis-py
reconnects and re-subscribes by itself, announced by a second "subscribe" confirmation) or lost,
everything is re-read. Run Redis with persistence (appendonly yes): after a restart without it the
nodes take the empty store as the truth, and registrations return only as clients refresh them.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..binding import Binding
from .base import QueuedBackend

MGET_CHUNK = 500


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


class RedisBackend(QueuedBackend):
    name = "redis"

    def __init__(self, url: str, prefix: str = "proxyapp:location", **kw: Any) -> None:
        super().__init__(**kw)
        self.url = url
        self.prefix = prefix
        # One immediate retry inside redis-py (a pooled connection the server closed meanwhile is
        # replaced at once), no more: QueuedBackend retries, and a command must fail fast. The
        # subscription has its own client, its pool dropped whole when it breaks.
        self._r = self._client()
        self._sub = self._client()
        self._ps: Any = None  # redis.asyncio.client.PubSub
        self._confirmed = False

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self.url, socket_timeout=self.write_timeout, socket_connect_timeout=self.write_timeout, retry=Retry(NoBackoff(), 1)
        )

    def _key(self, aor: str) -> str:
        return f"{self.prefix}:{aor}"

    @staticmethod
    def _decode(value: bytes | str | None) -> list[Binding]:
        if not value:
            return []
        return [Binding.from_dict(d) for d in json.loads(value)]

    async def _load_all(self) -> list[Binding]:
        keys = [k async for k in self._r.scan_iter(match=_glob_escape(self.prefix) + ":*", count=1000)]
        out: list[Binding] = []
        now = time.time()
        for i in range(0, len(keys), MGET_CHUNK):
            for value in await self._r.mget(keys[i : i + MGET_CHUNK]):
                out.extend(b for b in self._decode(value) if b.expires > now)
        return out

    async def _load_many(self, aors: list[str]) -> dict[str, list[Binding]]:
        values = await self._r.mget([self._key(a) for a in aors])
        return {aor: self._decode(v) for aor, v in zip(aors, values)}

    async def _store(self, batch: dict[str, list[Binding]]) -> None:
        now = time.time()
        async with self._r.pipeline(transaction=True) as pipe:
            for aor, bindings in batch.items():
                last = max((b.expires for b in bindings), default=0.0)
                if last > now:
                    data = json.dumps([b.to_dict() for b in bindings], separators=(",", ":"))
                    pipe.set(self._key(aor), data, pxat=int(last * 1000) + 1)
                else:
                    pipe.delete(self._key(aor))
                pipe.publish(self.prefix, aor)
            await pipe.execute()

    async def _subscribe(self) -> bool:
        ps: Any = self._sub.pubsub()
        try:
            await ps.subscribe(self.prefix)
        except BaseException:
            await ps.aclose()
            raise
        self._ps, self._confirmed = ps, False
        return True

    async def _notifications(self) -> AsyncIterator[str]:
        ps = self._ps
        if ps is None:
            raise ConnectionError("not subscribed")
        while True:
            msg = await ps.get_message(timeout=1.0)
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                if self._confirmed:
                    yield ""  # re-subscribed after a reconnection: changes may have been missed
                self._confirmed = True
            elif msg["type"] == "message":
                data = msg["data"]
                yield data.decode() if isinstance(data, bytes) else str(data)

    async def _unsubscribe(self) -> None:
        ps, self._ps = self._ps, None
        if ps is not None:
            try:
                await ps.aclose()
            except Exception:
                pass
        try:
            await self._sub.connection_pool.disconnect()
        except Exception:
            pass

    async def _disconnect_writer(self) -> None:
        try:
            await self._r.connection_pool.disconnect()
        except Exception:
            pass

    async def _disconnect(self) -> None:
        await self._unsubscribe()
        await self._disconnect_writer()

    async def close(self) -> None:
        await super().close()
        for client in (self._r, self._sub):
            try:
                await client.aclose()
            except Exception:
                pass
