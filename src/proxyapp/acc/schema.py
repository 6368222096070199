"""SQL schema of the accounting tables (acc, missed_calls, custom tables) and its migration.

OpenSIPS column names (method, from_tag, to_tag, callid, sip_code, sip_reason, time, duration,
ms_duration, setuptime, created) plus record_id (the dedup key that makes replay exactly-once: a
record_id a table already holds is not inserted again), end_reason and the configured extra
columns.

How each dialect keeps record_id unique:
- PostgreSQL: a UNIQUE index on record_id, and INSERT .. ON CONFLICT DO NOTHING.
- SQLite (schema v2): no index of its own. The INSERT skips a row when a row with the same
  callid and record_id exists, a look-up through the callid index, which every table has anyway
  (a record_id is derived from its Call-ID or random, so equal ids mean equal Call-IDs, and
  `IS` matches a NULL callid too). Why: record ids are random or hashes, so every insert into a
  record_id index lands on another page, and each commit wrote those pages to the WAL. One
  random index instead of two cut the SQLite writer's CPU from 17.6 to 8.6 us per row
  (Call-IDs in sequence, as SIPp's) and from 26.8 to 17.3 (random Call-IDs;
  bench/proxy/sqlite_ids.py). The rows of one INSERT do not see each other, so the writer
  drops repeated record_ids within a batch first. A v1 table keeps its UNIQUE index
  (migration drops nothing): both checks then apply.

Differences from OpenSIPS, on purpose: TEXT instead of CHAR(64) (long Call-IDs are not
truncated) and BIGINT epoch milliseconds for time/created instead of DATETIME seconds.  Every
table has the same columns.  Migration is additive: missing tables, columns and indexes are created; nothing is dropped.
"""

from __future__ import annotations

from typing import Iterable

from .records import check_identifier

SCHEMA_VERSION = 2

# (column, sqlite type, postgres type)
FIXED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("record_id", "TEXT NOT NULL", "TEXT NOT NULL"),
    ("method", "TEXT", "TEXT"),
    ("from_tag", "TEXT", "TEXT"),
    ("to_tag", "TEXT", "TEXT"),
    ("callid", "TEXT", "TEXT"),
    ("sip_code", "INTEGER", "INTEGER"),
    ("sip_reason", "TEXT", "TEXT"),
    ("time", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ("duration", "INTEGER", "INTEGER"),
    ("ms_duration", "INTEGER", "BIGINT"),
    ("setuptime", "INTEGER", "BIGINT"),
    ("created", "INTEGER", "BIGINT"),
    ("end_reason", "TEXT", "TEXT"),
)


def q(ident: str) -> str:
    """Quote a (validated) identifier: `time` is a type name in PostgreSQL."""
    return '"' + check_identifier(ident, "SQL identifier") + '"'


def columns(extra: Iterable[str]) -> list[tuple[str, str, str]]:
    return list(FIXED_COLUMNS) + [(check_identifier(e, "acc.extra column"), "TEXT", "TEXT") for e in extra]


def create_table_sql(table: str, extra: Iterable[str], dialect: str) -> list[str]:
    """CREATE TABLE/INDEX IF NOT EXISTS statements for one accounting table."""
    idx = 1 if dialect == "sqlite" else 2
    pk = "id INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "id BIGSERIAL PRIMARY KEY"
    cols = ",\n    ".join([pk] + [f"{q(c[0])} {c[idx]}" for c in columns(extra)])
    out = [f"CREATE TABLE IF NOT EXISTS {q(table)} (\n    {cols}\n)"]
    if dialect != "sqlite":  # SQLite checks record_id through the callid index (module docstring)
        out.append(f"CREATE UNIQUE INDEX IF NOT EXISTS {q(table + '_record_id_idx')} ON {q(table)} ({q('record_id')})")
    out.append(f"CREATE INDEX IF NOT EXISTS {q(table + '_callid_idx')} ON {q(table)} ({q('callid')})")
    return out


def add_column_sql(table: str, column: str, dialect: str, extra: Iterable[str]) -> str:
    types = {c[0]: c[1 if dialect == "sqlite" else 2] for c in columns(extra)}
    ctype = types[column].replace(" NOT NULL", "")  # ADD COLUMN NOT NULL needs a default
    return f"ALTER TABLE {q(table)} ADD COLUMN {q(column)} {ctype}"


def insert_sql(table: str, extra: Iterable[str], dialect: str, rows: int = 1) -> str:
    """INSERT of `rows` rows (one VALUES tuple each) that skips a record_id already stored."""
    names = [c[0] for c in columns(extra)]
    ph = "?" if dialect == "sqlite" else "%s"
    cols = ", ".join(q(n) for n in names)
    vals = "), (".join([", ".join(ph for _ in names)] * rows)
    if dialect == "sqlite":
        # VALUES as a subquery names its columns column1, column2, ... in order.
        rid, callid = (f"v.column{names.index(n) + 1}" for n in ("record_id", "callid"))
        return (
            f"INSERT OR IGNORE INTO {q(table)} ({cols}) SELECT * FROM (VALUES ({vals})) AS v WHERE NOT EXISTS "
            f"(SELECT 1 FROM {q(table)} AS o WHERE o.{q('callid')} IS {callid} AND o.{q('record_id')} = {rid})"
        )
    return f"INSERT INTO {q(table)} ({cols}) VALUES ({vals}) ON CONFLICT ({q('record_id')}) DO NOTHING"


def schema_script(tables: Iterable[str], extra: Iterable[str], dialect: str) -> str:
    """The whole schema as one SQL script (what the shipped acc-<dialect>.sql files contain)."""
    extra = list(extra)
    out = [f"-- proxyapp accounting schema v{SCHEMA_VERSION} ({dialect}); generated by proxyapp.acc.schema", ""]
    for t in tables:
        out += [s + ";" for s in create_table_sql(t, extra, dialect)]
        out.append("")
    return "\n".join(out)
