"""`proxyapp acc ...` commands: schema migration, schema dump, spool status.

Exposed as main(argv) so proxyapp/__main__.py can wire it as a subcommand:
    proxyapp acc migrate --config proxy.toml     create/upgrade the tables of the configured db
    proxyapp acc migrate --db postgresql://...   same, for a URL or SQLite path given directly
    proxyapp acc schema --dialect postgres       print the CREATE statements
    proxyapp acc spool --config proxy.toml       per-backend records waiting in the spool
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tomllib
from typing import Any

from .config import AccConfig
from .schema import schema_script


def _config(args: argparse.Namespace) -> AccConfig:
    table: dict[str, Any] = {}
    if args.config:
        with open(args.config, "rb") as f:
            table = dict(tomllib.load(f).get("acc", {}))
    if getattr(args, "db", None):
        table["db_url"] = args.db
    return AccConfig.from_dict(table)


def migrate(cfg: AccConfig, tables: list[str]) -> list[str]:
    """Create or upgrade (add missing columns/indexes) the accounting tables; return the ALTERs."""
    tables = list(dict.fromkeys([cfg.db_table_acc, cfg.db_table_missed_calls] + tables))
    done: list[str] = []
    if cfg.db_is_postgres:
        import psycopg

        from .backends.db_postgres import migrate_postgres

        async def run() -> None:
            async with await psycopg.AsyncConnection.connect(cfg.db_url, autocommit=True) as conn:
                for t in tables:
                    done.extend(await migrate_postgres(conn, t, cfg.extra_names))

        asyncio.run(run())
    else:
        from .backends.db_sqlite import migrate_sqlite

        cfg.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(cfg.sqlite_path)
        try:
            for t in tables:
                done.extend(migrate_sqlite(conn, t, cfg.extra_names))
        finally:
            conn.close()
    return done


def main(argv: list[str] | None = None) -> int:
    """Run an acc subcommand; return the exit status (2 for bad usage/config)."""
    p = argparse.ArgumentParser(prog="proxyapp acc", description="proxyapp accounting tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("migrate", help="create or upgrade the accounting tables")
    m.add_argument("--config", help="proxy TOML config (its [acc] table)")
    m.add_argument("--db", help="SQLite path or postgresql:// URL (overrides the config)")
    m.add_argument("--table", action="append", default=[], help="extra table used with do_accounting(..., table)")
    s = sub.add_parser("schema", help="print the schema SQL")
    s.add_argument("--config")
    s.add_argument("--dialect", choices=("sqlite", "postgres"), default="sqlite")
    sp = sub.add_parser("spool", help="records waiting in the spool per backend")
    sp.add_argument("--config")
    args = p.parse_args(argv)
    try:
        cfg = _config(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"proxyapp acc: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "migrate":
        try:
            done = migrate(cfg, args.table)
        except Exception as exc:  # report, don't trace: an operator runs this
            print(f"proxyapp acc migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        for stmt in done:
            print(stmt)
        print(f"schema up to date ({'postgresql' if cfg.db_is_postgres else cfg.sqlite_path})")
        return 0
    if args.cmd == "schema":
        print(schema_script([cfg.db_table_acc, cfg.db_table_missed_calls], cfg.extra_names, args.dialect), end="")
        return 0
    from .spool import pending_records

    for worker, name, pending in pending_records(cfg.spool_dir):
        print(f"{worker} {name}: {pending}".lstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
