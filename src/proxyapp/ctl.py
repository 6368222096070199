"""``proxyapp ctl``: the control client (kamcmd / opensips-cli for proxyapp).

    proxyapp ctl [-s SOCKET | -c CONFIG] [--json] COMMAND [ARGS]

    stats [GROUP]          statistics (groups: core tm sl dialog acc usrloc workers process)
    dialogs                confirmed dialogs (count and list)
    transactions           live transactions (count and list)
    acc status             accounting backends: written, failed, queued, spooled, oldest spooled
    log-level LEVEL        change the log level of the running proxy
    reload                 load the routing script and configuration again
    ul show [AOR]          registrations
    ul rm AOR [CONTACT]    remove an AOR's bindings (or one of them)
    ping                   is the proxy there

Text by default, the raw answer with --json. Exit status 0; 1 when the proxy cannot be reached
or refuses the command (the reason on stderr); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .config import DEFAULT_CONTROL_SOCKET, Config, ConfigError
from .control import ControlError, request

COMMANDS = ("stats", "dialogs", "transactions", "acc", "log-level", "reload", "ul", "ping")


def _flat(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}:{k}" if prefix else str(k), v, out)
    else:
        out.append(f"{prefix} = {value}")


def render(cmd: str, args: list[str], result: Any) -> str:
    """The text form of a command's answer."""
    lines: list[str] = []
    if cmd in ("stats", "acc"):
        _flat("", result if cmd == "stats" else result.get("backends", result), lines)
        if cmd == "acc" and not result.get("enabled", True):
            lines = ["accounting: off (no [acc] table)"]
    elif cmd == "dialogs":
        lines.append(f"{result['count']} dialogs")
        lines += [f"  {d['call_id']}  {d['duration_s']:.1f} s" for d in result["dialogs"]]
    elif cmd == "transactions":
        lines.append(f"{result['count']} transactions")
        lines += [
            f"  {t['kind']:<6} {t['method']:<9} {t['state']:<11} {t['peer']}  {t['branch']}"
            for t in result["transactions"]
        ]
    elif cmd == "log-level":
        if "workers" in result:
            result = result["workers"][0] if result["workers"] else {}
        lines.append(f"log level {result.get('log_level')} (was {result.get('was')})")
    elif cmd == "reload":
        answers = result.get("workers", [result])
        for a in answers:
            lines.append(f"reloaded: script {a['script']} (reload #{a['reloads']})")
            if a["restart_needed"]:
                lines.append(f"  not applied, they need a restart: {', '.join(a['restart_needed'])}")
    elif cmd == "ul" and args[:1] == ["show"]:
        for aor, bindings in result.items():
            lines.append(f"{aor}: {len(bindings)} contact(s)")
            for b in bindings:
                q = "" if b["q"] is None else f" q={b['q']}"
                lines.append(f"  {b['contact']}{q} expires in {b['expires_in_s']:.0f} s from {b['source']}"
                             + (f" ({b['user_agent']})" if b["user_agent"] else ""))
        if not result:
            lines.append("no registrations")
    elif cmd == "ul":
        lines.append(f"removed {result['removed']} binding(s)")
    else:
        lines.append(json.dumps(result))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="proxyapp ctl", description="Talk to a running proxyapp over its control socket.",
        epilog="commands: stats [GROUP] | dialogs | transactions | acc status | log-level LEVEL | reload | "
               "ul show [AOR] | ul rm AOR [CONTACT] | ping",
    )
    where = ap.add_mutually_exclusive_group()
    where.add_argument("-s", "--socket", help=f"control socket (default: {DEFAULT_CONTROL_SOCKET}, or the one in --config)")
    where.add_argument("-c", "--config", help="the proxy's configuration file: use its [control] socket")
    ap.add_argument("--json", action="store_true", help="print the answer as JSON")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("args", nargs="*")
    ns = ap.parse_args(argv)
    path = ns.socket
    if path is None and ns.config:
        try:
            path = Config.load(ns.config).control_socket
        except (ConfigError, OSError) as exc:
            print(f"proxyapp ctl: {exc}", file=sys.stderr)
            return 2
        if not path:
            print(f"proxyapp ctl: {ns.config} has no control socket ([control] socket = \"\")", file=sys.stderr)
            return 2
    path = path or DEFAULT_CONTROL_SOCKET
    try:
        result = request(path, ns.command, ns.args, timeout=ns.timeout)
    except ConnectionError as exc:
        print(f"proxyapp ctl: {exc}: is proxyapp running, with this control socket?", file=sys.stderr)
        return 1
    except ControlError as exc:
        print(f"proxyapp ctl: {ns.command}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"proxyapp ctl: {path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if ns.json else render(ns.command, ns.args, result))
    return 0
