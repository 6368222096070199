"""[location] validation (LocationConfig.from_dict) and for_config's choice of backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyapp.location import Location, LocationConfig, for_config
from proxyapp.location.backends.db_postgres import PostgresBackend
from proxyapp.location.backends.db_redis import RedisBackend
from proxyapp.location.backends.db_sqlite import SqliteBackend
from proxyapp.location.backends.memory import MemoryBackend


def test_the_empty_table_is_sqlite_in_the_working_directory():
    for table in (None, {}):
        cfg = LocationConfig.from_dict(table)
        assert (cfg.backend, cfg.db_url, cfg.sqlite_path) == ("sqlite", "proxyapp-location.db", Path("proxyapp-location.db"))
    loc = for_config(LocationConfig.from_dict({}))
    assert isinstance(loc, Location) and isinstance(loc.backend, SqliteBackend)
    assert loc.backend.path == Path("proxyapp-location.db") and loc.backend.table == "location"


def test_each_backend():
    assert isinstance(for_config(LocationConfig.from_dict({"backend": "memory"})).backend, MemoryBackend)
    pg = for_config(LocationConfig.from_dict({"backend": "postgres", "db_url": "postgresql://u@db/x", "db_table": "ul"})).backend
    assert isinstance(pg, PostgresBackend) and (pg.url, pg.table) == ("postgresql://u@db/x", "ul")
    rd = for_config(LocationConfig.from_dict({"backend": "redis", "redis_url": "redis://r:6380/1", "redis_prefix": "p:loc", "write_timeout": 1})).backend
    assert isinstance(rd, RedisBackend) and (rd.url, rd.prefix, rd.write_timeout) == ("redis://r:6380/1", "p:loc", 1.0)
    sq = for_config(LocationConfig.from_dict({"db_url": "sqlite:////var/lib/p/loc.db", "batch_max": 10, "sync_interval": 0.2})).backend
    assert isinstance(sq, SqliteBackend) and sq.path == Path("/var/lib/p/loc.db") and sq.batch_max == 10 and sq.sync_interval == 0.2
    assert for_config(LocationConfig.from_dict({"expire_interval": 5}))._expire_interval == 5.0
    clock = lambda: 42.0  # noqa: E731
    assert for_config(LocationConfig.from_dict({"backend": "memory"}), clock=clock)._clock is clock


@pytest.mark.parametrize(
    "table, key",
    [
        ({"backend": "mysql"}, "location.backend"),
        ({"bakend": "sqlite"}, "location.bakend: unknown key"),
        ({"db_url": ""}, "location.db_url"),
        ({"db_url": 5}, "location.db_url"),
        ({"backend": "postgres"}, "location.db_url"),  # still the SQLite file
        ({"db_url": "postgresql://h/db"}, "location.db_url"),  # sqlite backend with a URL
        ({"backend": "redis", "redis_url": "http://x"}, "location.redis_url"),
        ({"db_table": "loc; DROP"}, "location.db_table"),
        ({"write_timeout": 0}, "location.write_timeout"),
        ({"retry_interval": True}, "location.retry_interval"),
        ({"expire_interval": "1"}, "location.expire_interval"),
        ({"batch_max": 1.5}, "location.batch_max"),
        ({"batch_max": 0}, "location.batch_max"),
    ],
)
def test_a_bad_value_names_its_key(table, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        LocationConfig.from_dict(table)


def test_the_default_store_is_a_file_in_the_working_directory(tmp_path, monkeypatch):
    import asyncio
    import time

    from proxyapp.location import Binding

    monkeypatch.chdir(tmp_path)
    now = time.time()

    async def go(put: bool):
        loc = for_config(LocationConfig.from_dict({}))
        await loc.start()
        if put:
            loc.put("sip:a@h", [Binding("sip:a@h", "sip:a@192.0.2.1", now + 60)], now)
        await loc.close()
        return loc

    asyncio.run(go(True))
    assert (tmp_path / "proxyapp-location.db").is_file()
    assert asyncio.run(go(False)).aors() == ["sip:a@h"]
