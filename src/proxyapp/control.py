"""The control socket: what ``proxyapp ctl`` talks to (in the spirit of kamcmd's ctl and
OpenSIPS' MI), and the statistics snapshot Prometheus reads.

Protocol: a UNIX stream socket, one JSON object per line each way. A request is
``{"cmd": "stats", "args": ["core"]}``; the answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "why"}``. The socket file is created with mode 0600 in the directory the
operator chose (``[control] socket``): whoever may open it may steer the proxy, as with
kamcmd's socket. One connection may send several requests.

Commands (``Commands``): ``stats [group]``, ``dialogs``, ``transactions``, ``acc status``,
``log-level LEVEL``, ``reload``, ``ul show [AOR]``, ``ul rm AOR [CONTACT]``, ``ping``.

With ``workers = N`` every worker serves its own socket (``SOCKET.N``) and the supervisor serves
``SOCKET`` itself (``FanOut``): it asks every worker and combines the answers, summing counters
(the statistics of the whole service), so ``ctl`` and Prometheus see one proxy.

The statistics snapshot is ``{group: {name: number}}``; the ``acc`` group is
``{backend: {stat: number}}``. Groups: core, tm, sl, dialog (proxyapp.core.stats), acc (the
accounting backends), usrloc (registrations), auth (digest challenges and outcomes; empty
without [auth]), tcp (connections, refusals, timeouts: transport.Edge.tcp_stats), limits (flood
bans, scanners dropped, the transaction budget: proxyapp.limits), workers (hand-offs), process (RSS, open file descriptors, event-loop lag,
uptime).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from .config import LOG_LEVELS, Config, ConfigError

if TYPE_CHECKING:
    from .proxy import Proxy

GROUPS = ("core", "tm", "sl", "dialog", "acc", "usrloc", "auth", "tcp", "limits", "workers", "process")
# Statistics that are levels, not counts: Prometheus gauges; combined over workers by summing
# too, except the MAX_OF ones (the worst worker's lag, the oldest spooled record).
GAUGES = frozenset({
    "inuse_transactions", "active_dialogs", "registered_contacts", "registered_aors", "rss_bytes",
    "open_fds", "loop_lag_s", "loop_lag_max_s", "uptime_s", "queued", "spool_pending",
    "spool_oldest_age_s", "dialogs", "draining", "events_buffered", "bytes_in_pipe_buffer",
    "subscribers", "nonces_tracked", "failing_sources", "connections", "connections_in",
    "banned_sources", "tracked_sources", "live_transactions", "transaction_bytes", "acc_pending_calls",
})
MAX_OF = frozenset({"loop_lag_s", "loop_lag_max_s", "uptime_s", "spool_oldest_age_s"})
# Config keys a reload cannot change in a running process (sockets, processes, the stores).
RESTART_KEYS = (
    "listen", "advertised_address", "workers", "acc", "location", "control_socket", "metrics_listen",
    "max_message_size", "log_format", "auth", "tcp", "limits", "tls", "permissions", "open_relay",
)
LAG_INTERVAL_S = 0.5
DIALOG_LIFETIME_S = 12 * 3600.0  # a dialog whose BYE never came is forgotten (acc's cdr_lifetime_s)
MAX_LINE = 1 << 16


class ControlError(Exception):
    """A command that cannot be done; the message is the answer's error."""


def process_stats(started: float) -> dict[str, float]:
    """RSS, open file descriptors and uptime of this process (Linux /proc)."""
    rss = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    fds = 0
    with contextlib.suppress(OSError):
        fds = len(os.listdir("/proc/self/fd"))
    return {"rss_bytes": rss, "open_fds": fds, "uptime_s": round(time.monotonic() - started, 3)}


def combine(parts: list[Any]) -> Any:
    """Combine the same answer of several workers: numbers summed (MAX_OF taken as the
    maximum), dicts key by key, lists concatenated."""
    first = next((p for p in parts if p is not None), None)
    if isinstance(first, dict):
        keys: list[str] = []
        for p in parts:
            if isinstance(p, dict):
                keys.extend(k for k in p if k not in keys)
        out = {}
        for k in keys:
            values = [p.get(k) for p in parts if isinstance(p, dict)]
            if k in MAX_OF and all(isinstance(v, (int, float)) for v in values if v is not None):
                out[k] = max((v for v in values if v is not None), default=0)
            else:
                out[k] = combine(values)
        return out
    if isinstance(first, list):
        return [x for p in parts if isinstance(p, list) for x in p]
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    return sum(p for p in parts if isinstance(p, (int, float)))


# ---------------------------------------------------------------------------- one process


class Commands:
    """The commands of one proxy process, run on its event loop."""

    def __init__(
        self,
        proxy: "Proxy",
        cfg: Config,
        *,
        acc: Any = None,
        dispatch: Any = None,
        load_config: Callable[[], Config] | None = None,
        set_log_level: Callable[[str], None] | None = None,
        tcp_stats: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.proxy = proxy
        self.cfg = cfg
        self.acc = acc
        self.dispatch = dispatch
        self.load_config = load_config
        self.set_log_level = set_log_level
        self.tcp_stats = tcp_stats
        self.started = time.monotonic()
        self.loop_lag = 0.0  # the last measured delay of a timer callback
        self.loop_lag_max = 0.0  # the largest since the statistics were last read
        self.reloads = 0
        self._lag_task: asyncio.Task[None] | None = None

    # -- the lag monitor ---------------------------------------------------------------------

    def start(self) -> None:
        self._lag_task = asyncio.get_running_loop().create_task(self._monitor())

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task

    async def _monitor(self) -> None:
        """How late a timer callback runs: the event loop's lag (every LAG_INTERVAL_S); and
        once a minute the forgetting of dialogs whose BYE never came."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + 60.0
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            lag = max(0.0, loop.time() - t0 - LAG_INTERVAL_S)
            self.loop_lag = lag
            self.loop_lag_max = max(self.loop_lag_max, lag)
            if t0 >= next_sweep:
                next_sweep = t0 + 60.0
                self.proxy.expire_dialogs(time.time(), DIALOG_LIFETIME_S)

    # -- commands ----------------------------------------------------------------------------

    def run(self, cmd: str, args: list[str]) -> Any:
        """Run one command; raises ControlError."""
        if cmd == "ping":
            return {"pid": os.getpid(), "worker": self.dispatch.index if self.dispatch is not None else None}
        if cmd == "stats":
            return self.stats(args[0] if args else None)
        if cmd == "dialogs":
            return self.dialogs()
        if cmd == "transactions":
            return self.transactions()
        if cmd == "acc":
            if args[:1] != ["status"]:
                raise ControlError("usage: acc status")
            return self.acc_status()
        if cmd == "log-level":
            if len(args) != 1:
                raise ControlError("usage: log-level LEVEL")
            return self.log_level(args[0])
        if cmd == "reload":
            return self.reload()
        if cmd == "ul":
            return self.ul(args)
        raise ControlError(f"unknown command {cmd!r}")

    def stats(self, group: str | None = None) -> dict[str, Any]:
        if group is not None and group not in GROUPS:
            raise ControlError(f"unknown statistics group {group!r} (groups: {', '.join(GROUPS)})")
        out: dict[str, Any] = dict(self.proxy.statistics())
        out["dialog"]["draining"] = int(self.proxy.draining)
        acc: dict[str, Any] = {}
        if self.acc is not None:
            with contextlib.suppress(Exception):
                raw = self.acc.stats()
                acc = {k: v for k, v in raw.items() if isinstance(v, dict)}
                # Accounting's pending INVITEs (bounded by [acc] max_pending_calls), with the dialogs.
                out["dialog"]["acc_pending_calls"] = int(raw.get("pending_calls", 0))
                out["dialog"]["acc_pending_evicted"] = int(raw.get("pending_evicted", 0))
        out["acc"] = acc
        location = self.proxy.location
        out["usrloc"] = (
            {"registered_aors": len(location.aors()), "registered_contacts": location.count()}
            if location is not None else {"registered_aors": 0, "registered_contacts": 0}
        )
        auth = self.proxy.auth
        out["auth"] = auth.stats() if auth is not None else {}
        out["tcp"] = self.tcp_stats() if self.tcp_stats is not None else {}
        out["limits"] = self.proxy.limits.stats()
        d = self.dispatch
        out["workers"] = {"handed_off": d.handed_off if d else 0, "taken_over": d.taken_over if d else 0}
        proc: dict[str, Any] = process_stats(self.started)
        proc["loop_lag_s"] = round(self.loop_lag, 6)
        proc["loop_lag_max_s"] = round(self.loop_lag_max, 6)
        proc["reloads"] = self.reloads
        self.loop_lag_max = self.loop_lag
        out["process"] = proc
        if group is not None:
            return {group: out[group]}
        return out

    def dialogs(self) -> dict[str, Any]:
        now = time.time()
        items = [
            {"call_id": cid, "start": round(start, 3), "duration_s": round(now - start, 3)}
            for cid, start in self.proxy.dialogs.items()
        ]
        return {"count": len(items), "dialogs": items}

    def transactions(self) -> dict[str, Any]:
        items = []
        for kind, table in (("server", self.proxy.server_txs), ("client", self.proxy.client_txs)):
            for key, tx in table.items():
                dest = tx.dest
                items.append({
                    "kind": kind, "method": key[-1] if isinstance(key, tuple) else "?",
                    "branch": str(key[0]) if isinstance(key, tuple) and key else str(key),
                    "state": tx.state, "type": type(tx).__name__,
                    "peer": f"{dest.transport}:{dest.host}:{dest.port}" if dest is not None else "",
                })
        return {"count": len(items), "transactions": items}

    def acc_status(self) -> dict[str, Any]:
        if self.acc is None:
            return {"enabled": False}
        return {"enabled": True, "engine": type(self.acc).__name__, "backends": self.acc.stats()}

    def log_level(self, level: str) -> dict[str, str]:
        level = level.upper()
        if level not in LOG_LEVELS:
            raise ControlError(f"unknown level {level!r} (levels: {', '.join(LOG_LEVELS)})")
        old = self.cfg.log_level
        if self.set_log_level is not None:
            self.set_log_level(level)
        self.cfg.log_level = level
        self.proxy.debug = level in ("TRACE", "DEBUG")
        logger.info("log level {} (was {})", level, old)
        return {"log_level": level, "was": old}

    def reload(self) -> dict[str, Any]:
        """Load the script and the configuration again (ctl reload, SIGHUP). New transactions
        use them; those in flight finish with what they started with. Nothing changes when
        either fails to load."""
        from .script import Script, ScriptLoadError

        if self.load_config is None:
            raise ControlError("this proxy was not started from a configuration it can read again")
        old = self.cfg
        try:
            new = self.load_config()
            script = Script.load(new.script)
        except (ConfigError, ScriptLoadError, OSError) as exc:
            logger.error("reload failed, keeping the running script and configuration: {}", exc)
            raise ControlError(f"reload failed, nothing changed: {exc}") from None
        restart = [k for k in RESTART_KEYS if getattr(new, k) != getattr(old, k)]
        for k in restart:
            setattr(new, k, getattr(old, k))
        try:
            self.proxy.reconfigure(new, script)
        except (ConfigError, ValueError) as exc:
            logger.error("reload failed, keeping the running script and configuration: {}", exc)
            raise ControlError(f"reload failed, nothing changed: {exc}") from None
        self.cfg = new
        if new.log_level != old.log_level and self.set_log_level is not None:
            self.set_log_level(new.log_level)
        self.reloads += 1
        if restart:
            logger.warning("reloaded; these changes need a restart and were not applied: {}", ", ".join(restart))
        logger.info("reloaded: script {}", new.script or "built-in default")
        return {"script": new.script or "built-in default", "restart_needed": restart, "reloads": self.reloads}

    def ul(self, args: list[str]) -> Any:
        location = self.proxy.location
        if location is None:
            raise ControlError("no location store")
        if args[:1] == ["show"]:
            now = time.time()
            aors = [args[1]] if len(args) > 1 else location.aors()
            out = {}
            for aor in aors:
                bindings = location.get(aor, now)
                if bindings:
                    out[aor] = [
                        {"contact": b.contact, "expires_in_s": round(b.expires - now, 1), "q": b.q,
                         "source": f"{b.source_transport}:{b.source_host}:{b.source_port}",
                         "user_agent": b.user_agent, "instance": b.instance, "reg_id": b.reg_id,
                         "node": b.node, "path": list(b.path)}
                        for b in bindings
                    ]
            if len(args) > 1 and not out:
                raise ControlError(f"AOR {args[1]} has no live binding")
            return out
        if args[:1] == ["rm"] and len(args) in (2, 3):
            removed = location.remove(args[1], args[2] if len(args) == 3 else None)
            if not removed:
                raise ControlError(f"nothing removed: no binding {' '.join(args[1:])}")
            return {"removed": removed}
        raise ControlError("usage: ul show [AOR] | ul rm AOR [CONTACT]")


def _answer(run: Callable[[str, list[str]], Any], line: bytes) -> bytes:
    try:
        req = json.loads(line)
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise ControlError('expected {"cmd": NAME, "args": [...]}')
        args = req.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ControlError("args must be a list of strings")
        reply: dict[str, Any] = {"ok": True, "result": run(req["cmd"], args)}
    except ControlError as exc:
        reply = {"ok": False, "error": str(exc)}
    except json.JSONDecodeError:
        reply = {"ok": False, "error": "not JSON"}
    except Exception as exc:  # a bug in a command must not take the socket down
        logger.exception("control command failed")
        reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
    return json.dumps(reply, default=str).encode() + b"\n"


def claim_socket_path(path: str) -> bool:
    """Make ``path`` free for a new control socket: remove a stale one (nobody listening).
    Returns False when a live process answers there (another proxy owns it)."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return True
    if not stat.S_ISSOCK(p.lstat().st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return False
    except OSError:
        p.unlink()
        return True
    finally:
        probe.close()


class ControlServer:
    """The asyncio UNIX-socket server of one process."""

    def __init__(self, commands: Commands, path: str) -> None:
        self.commands = commands
        self.path = path
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> bool:
        """Listen on the path (mode 0600); False (logged) when another live proxy holds it."""
        if not claim_socket_path(self.path):
            logger.warning("control socket {} is in use by another process; this proxy has none", self.path)
            return False
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        return True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(_answer(self.commands.run, line))
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._server = None


# ---------------------------------------------------------------------------- the client side


def request(path: str, cmd: str, args: list[str] | None = None, timeout: float = 10.0) -> Any:
    """Send one command to the control socket at ``path``; returns the result. Raises
    ConnectionError when nobody listens there, ControlError for a refused command."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(f"no proxyapp listens on {path} ({exc.strerror})") from None
        s.sendall(json.dumps({"cmd": cmd, "args": args or []}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{path}: the proxy closed the connection")
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "failed"))
    return reply.get("result")


def worker_socket(path: str, index: int) -> str:
    return f"{path}.{index}"


class FanOut:
    """The supervisor's commands with ``workers = N``: each asks every worker's socket and
    combines the answers (combine()); ``workers`` lists which answered."""

    def __init__(self, path: str, workers: int) -> None:
        self.path = path
        self.workers = workers

    def ask_all(self, cmd: str, args: list[str]) -> list[Any]:
        answers: list[Any] = []
        errors = []
        for i in range(self.workers):
            try:
                answers.append(request(worker_socket(self.path, i), cmd, args))
            except ControlError as exc:
                errors.append(f"worker {i}: {exc}")
            except (ConnectionError, OSError) as exc:
                errors.append(f"worker {i}: unreachable ({exc})")
        if errors and (cmd in ("reload", "log-level") or not answers):
            raise ControlError("; ".join(errors))
        return answers

    def run(self, cmd: str, args: list[str]) -> Any:
        answers = self.ask_all(cmd, args)
        if cmd == "ping":
            return {"pid": os.getpid(), "workers": answers}
        if cmd in ("reload", "log-level"):
            return {"workers": answers}
        if cmd == "ul" and args[:1] == ["show"]:
            merged: dict[str, Any] = {}
            for a in answers:
                for aor, bindings in a.items():
                    merged.setdefault(aor, [])
                    merged[aor].extend(b for b in bindings if b not in merged[aor])
            return merged
        return combine(answers)


class FanOutServer:
    """The supervisor's control socket: a thread serving FanOut (the supervisor has no event
    loop; it waits for its workers)."""

    def __init__(self, fan: FanOut) -> None:
        self.fan = fan
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    def start(self) -> bool:
        if not claim_socket_path(self.fan.path):
            logger.warning("control socket {} is in use by another process; this proxy has none", self.fan.path)
            return False
        fan = self.fan

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    self.wfile.write(_answer(fan.run, line))
                    self.wfile.flush()

        old = os.umask(0o177)
        try:
            self._server = socketserver.ThreadingUnixStreamServer(self.fan.path, Handler)
        finally:
            os.umask(old)
        self._server.daemon_threads = True
        os.chmod(self.fan.path, 0o600)
        threading.Thread(target=self._server.serve_forever, name="proxyapp-control", daemon=True).start()
        return True

    def close_in_child(self) -> None:
        """In a forked worker: close the inherited listening socket (the supervisor's to serve)."""
        if self._server is not None:
            self._server.socket.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(OSError):
                os.unlink(self.fan.path)
            self._server = None
