"""Every real backend with more AORs than one batch: the chunked writes, reads and the load at start."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxyapp.location import LocationConfig, for_config

from .helpers import b, until

pytestmark = pytest.mark.timeout(120)

N = 1500  # three batches of batch_max = 500


def table(request, kind: str) -> dict:
    if kind == "sqlite":
        return {"backend": "sqlite", "db_url": str(request.getfixturevalue("tmp_path") / "loc.db"), "sync_interval": 0.05}
    if kind == "postgres":
        return {"backend": "postgres", "db_url": request.getfixturevalue("pg")[1]}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_server").url}


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis"])
def test_many_aors_reach_the_other_node_and_a_new_one(request, kind):
    cfg = LocationConfig.from_dict(table(request, kind) | {"retry_interval": 0.1})
    now = time.time()

    async def go():
        n1, n2 = for_config(cfg), for_config(cfg)
        await n1.start()
        await n2.start()
        for i in range(N):
            aor = f"sip:u{i:05d}@example.com"
            n1.put(aor, [b(aor, f"sip:u{i}@192.0.2.1:{5060 + j}", now + 600, q=j / 10) for j in range(i % 3 + 1)], now)
        await until(lambda: n2.count() == n1.count(), timeout=60, what=f"{N} AORs on n2")
        assert n2.snapshot() == n1.snapshot()
        for i in range(0, N, 2):
            n2.remove(f"sip:u{i:05d}@example.com")
        await until(lambda: len(n1) == N // 2, timeout=60, what="the removes on n1")
        await n1.close()
        await n2.close()
        n3 = for_config(cfg)
        loaded = await n3.start()
        await n3.close()
        return loaded, n3, n2

    loaded, n3, n2 = asyncio.run(go())
    assert loaded == n2.count() and n3.snapshot() == n2.snapshot()
