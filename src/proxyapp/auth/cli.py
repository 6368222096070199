"""``proxyapp user add|rm|list``: the subscribers of digest authentication (OpenSIPS' ``opensips-cli -x user``).

    proxyapp user [--config FILE] add USER[@DOMAIN] PASSWORD   # stores ha1 and ha1_sha256 only
    proxyapp user [--config FILE] rm USER[@DOMAIN]
    proxyapp user [--config FILE] list

The database and the default domain come from the [auth] table of FILE (db_url, db_table,
realm); without --config, ./proxyapp-subscribers.db. The domain is the realm the hashes are
computed with: give it (alice@example.com) or configure [auth] realm. A running proxy sees the
change within [auth] refresh_interval seconds.
"""

from __future__ import annotations

import argparse
import sys

from ..config import Config, ConfigError
from .config import AuthConfig
from .store import SubscriberStore


def _split(who: str, realm: str) -> tuple[str, str]:
    user, sep, domain = who.rpartition("@")
    if not sep:
        user, domain = who, realm
    if not user or not domain:
        raise ValueError(f"{who!r}: expected USER@DOMAIN (or configure [auth] realm)")
    return user, domain


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="proxyapp user", description="Manage digest authentication subscribers.")
    ap.add_argument("-c", "--config", help="TOML configuration file (its [auth] table: db_url, db_table, realm)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_add = sub.add_parser("add", help="add or replace a subscriber")
    p_add.add_argument("who", metavar="USER@DOMAIN")
    p_add.add_argument("password")
    p_rm = sub.add_parser("rm", help="remove a subscriber")
    p_rm.add_argument("who", metavar="USER@DOMAIN")
    sub.add_parser("list", help="list the subscribers (user@domain)")
    args = ap.parse_args(argv)
    try:
        table = Config.load(args.config).auth if args.config else {}
        cfg = AuthConfig.from_dict(table)
    except (ConfigError, OSError) as exc:
        print(f"proxyapp user: {exc}", file=sys.stderr)
        return 2
    store = SubscriberStore.for_config(cfg)
    try:
        if args.cmd == "add":
            user, domain = _split(args.who, cfg.realm)
            store.add(user, domain, args.password)
            print(f"added {user}@{domain}")
        elif args.cmd == "rm":
            user, domain = _split(args.who, cfg.realm)
            if not store.remove(user, domain):
                print(f"proxyapp user: no subscriber {user}@{domain}", file=sys.stderr)
                return 1
            print(f"removed {user}@{domain}")
        else:
            for user, domain, _, _ in store.rows():
                print(f"{user}@{domain}")
    except ValueError as exc:
        print(f"proxyapp user: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database: unreachable, locked, ...
        print(f"proxyapp user: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
