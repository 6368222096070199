"""Command line: ``proxyapp --config FILE`` (or ``python -m proxyapp``) -> config -> run."""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import signal
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

from loguru import logger

from . import __version__
from .config import LOG_LEVELS, Config, ConfigError, Listen
from .logs import setup_logging

EXIT_CONFIG = 2


def version_text() -> str:
    """Version and build facts, in the spirit of ``opensips -V``."""
    import fastsip

    impl = getattr(fastsip, "IMPLEMENTATION", "py")
    parser = "compiled (Cython)" if impl == "c" else "pure Python"
    try:
        import uvloop

        # getattr: uvloop does not re-export __version__ in its type information (same value).
        loop = f"uvloop {getattr(uvloop, '__version__')}"
    except ImportError:
        loop = "asyncio (uvloop not installed)"
    try:
        import dns.version

        dns_s = f"dnspython {dns.version.version}"
    except ImportError:
        dns_s = "no dnspython (A/AAAA via getaddrinfo only)"
    try:
        from . import acc  # noqa: F401

        acc_s = "available"
    except Exception:
        acc_s = "not available"
    return "\n".join([
        f"version: proxyapp {__version__} ({platform.machine()}/{sys.platform})",
        f"parser: fastsip {fastsip.__version__}, {parser} backend",
        f"event loop: {loop}",
        f"dns: {dns_s}",
        f"accounting: {acc_s}",
        f"python: {platform.python_implementation()} {platform.python_version()} ({platform.python_compiler()})",
    ])


def make_accounting(cfg: Config, worker: int | None = None, validate_only: bool = False) -> Any:
    """Accounting from the [acc] table; None when the config has no [acc] table (do_accounting
    then marks transactions but nothing is recorded). A worker of several gets its own spool and
    dialog journal (``spool_dir/worker-N``); the database is shared.

    Raises ConfigError (key "acc") when the table is invalid or accounting is not installed."""
    if not cfg.acc:
        return None
    try:
        from .acc import AccConfig, for_config
    except Exception as exc:
        raise ConfigError("acc", f"accounting is not available ({exc})") from None
    try:
        acc_cfg = AccConfig.from_dict(cfg.acc)
        if validate_only:
            return None
        if worker is not None:
            acc_cfg.spool_dir = str(Path(acc_cfg.spool_dir) / f"worker-{worker}")
        return for_config(acc_cfg, cfg.log_level, cfg.log_format)
    except Exception as exc:
        raise ConfigError("acc", str(exc)) from None


def make_location(cfg: Config) -> Any:
    """The location store of the [location] table (not started). Raises ConfigError."""
    from .location import LocationConfig, for_config

    try:
        return for_config(LocationConfig.from_dict(cfg.location))
    except ValueError as exc:
        raise ConfigError("location", str(exc)) from None


def check_registrar(cfg: Config) -> None:
    """Raises ConfigError for an invalid [registrar] table."""
    from .registrar import RegistrarConfig

    try:
        RegistrarConfig.from_dict(cfg.registrar)
    except ConfigError:
        raise  # from_dict names the key itself ("registrar.min_expires")
    except ValueError as exc:
        raise ConfigError("registrar", str(exc)) from None


async def serve(
    cfg: Config, script: Any, acc: Any, stop: asyncio.Event | None = None, dispatch: Any = None,
    load_config: Callable[[], Config] | None = None,
) -> None:
    """Run the proxy until ``stop`` is set (or SIGTERM / SIGINT); ``dispatch`` for a worker of
    several; ``load_config`` reads the configuration again for a reload (SIGHUP, ctl reload).

    A stop is graceful: new INVITEs get 503 with Retry-After while the transactions in flight
    get their final response, for at most cfg.stop_timeout seconds (a second signal cuts it
    short); then the sockets close and accounting is flushed."""
    from .control import Commands, ControlServer, worker_socket
    from .proxy import Proxy
    from .transport import Edge

    location = make_location(cfg)
    proxy = Proxy(cfg, script, acc, location=location)
    edge = Edge(proxy, cfg, dispatch)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()

    def on_stop_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    commands = Commands(
        proxy, cfg, acc=acc, dispatch=dispatch, load_config=load_config,
        set_log_level=lambda level: setup_logging(level, cfg.log_format), tcp_stats=edge.tcp_stats,
    )

    def on_hangup() -> None:
        try:
            commands.reload()
        except Exception as exc:  # ControlError: logged by reload; the old script keeps running
            logger.debug("SIGHUP reload: {}", exc)

    for sig, handler in ((signal.SIGTERM, on_stop_signal), (signal.SIGINT, on_stop_signal), (signal.SIGHUP, on_hangup)):
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):
            pass
    control = None
    if cfg.control_socket:
        path = cfg.control_socket if dispatch is None else worker_socket(cfg.control_socket, dispatch.index)
        control = ControlServer(commands, path)
    metrics = None
    if acc is not None:
        await acc.start()
    await location.start()
    if proxy.auth is not None:
        await proxy.auth.start()  # loads the subscribers ([auth]) into memory, reloads them periodically
    try:
        await edge.start()
        commands.start()
        if control is not None and not await control.start():
            control = None
        if cfg.metrics_listen is not None and dispatch is None:
            from . import metrics as metrics_mod

            metrics = metrics_mod.serve(cfg.metrics_listen, metrics_mod.loop_snapshot(loop, commands.stats))
            logger.info("metrics on http://{}:{}/metrics", *cfg.metrics_listen)
        who = f" worker {dispatch.index}/{dispatch.workers}" if dispatch is not None else ""
        from .allocator import running

        logger.info(
            "proxyapp {}{} ready (script {}; memory allocator {})", __version__, who,
            cfg.script or "built-in default", running(),
        )
        await stop.wait()
        await drain(proxy, cfg.stop_timeout, hurry, dispatch)
        if dispatch is not None:
            logger.info("worker {}: handed {} messages to their owner, took over {}", dispatch.index,
                        dispatch.handed_off, dispatch.taken_over)
        logger.info("stopping")
    finally:
        if metrics is not None:
            metrics.shutdown()
        if control is not None:
            await control.close()
        await commands.close()
        await edge.close()
        await location.close()  # flushes queued binding writes
        if proxy.auth is not None:
            await proxy.auth.close()
        if acc is not None:
            await acc.close()  # flushes pending records (the SIGTERM path)


async def drain(proxy: Any, timeout: float, hurry: asyncio.Event, dispatch: Any = None) -> None:
    """The graceful part of a stop: refuse new calls (503) and let the transactions in flight
    get their final response and the dialogs up their BYE (so their CDRs are written now, not
    at the next start), up to ``timeout`` seconds or until ``hurry`` is set. A worker of several
    also waits for the other stopping workers (Dispatch.others_pending): until they are done,
    they hand it the messages of the calls it owns."""
    proxy.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> tuple[int, int]:
        return proxy.pending_transactions(), len(proxy.dialogs)

    pending, dialogs = left()
    if dispatch is not None:
        dispatch.post_pending(pending + dialogs)
    others = dispatch.others_pending() if dispatch is not None else 0
    logger.info("stopping: new calls get 503; waiting up to {} s for {} transactions and {} dialogs",
                timeout, pending, dialogs)
    while (pending or dialogs or others) and loop.time() < deadline and not hurry.is_set():
        try:
            await asyncio.wait_for(hurry.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
        pending, dialogs = left()
        if dispatch is not None:
            dispatch.post_pending(pending + dialogs)
            others = dispatch.others_pending()
    if pending:
        logger.warning("stopping with {} transactions still waiting for a final response", pending)
    if dialogs:
        logger.info("stopping with {} dialogs up: their CDRs end at their BYE after the next start", dialogs)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["ctl"]:
        # `proxyapp ctl ...`: the control client (proxyapp.ctl)
        from .ctl import main as ctl_main

        return ctl_main(args_in[1:])
    if args_in[:1] == ["acc"]:
        # `proxyapp acc migrate|schema|spool ...`: accounting maintenance (proxyapp.acc.cli)
        from .acc.cli import main as acc_main

        return acc_main(args_in[1:])
    if args_in[:1] == ["user"]:
        # `proxyapp user add|rm|list`: digest authentication subscribers (proxyapp.auth.cli)
        from .auth.cli import main as user_main

        return user_main(args_in[1:])
    ap = argparse.ArgumentParser(
        prog="proxyapp", description="A stateful SIP proxy on fastsip.",
        epilog="Control a running proxy: proxyapp ctl --help. "
               "Accounting maintenance: proxyapp acc {migrate,schema,spool} --help",
    )
    ap.add_argument(
        "-c", "--config",
        help="TOML configuration file (default: listen on 127.0.0.1:5060 UDP+TCP, the default script, "
             "accounting to ./proxyapp-acc.db)",
    )
    ap.add_argument(
        "-l", "--listen", action="append", metavar="PROTO:IP:PORT",
        help="listen here instead of the configuration's listen list (repeatable), like kamailio -l",
    )
    ap.add_argument("-w", "--workers", type=int, help="worker processes sharing the UDP port (overrides workers)")
    ap.add_argument("-V", "--version", action="store_true", help="print version and build facts, then exit")
    ap.add_argument("--log-level", help=f"override log_level ({', '.join(LOG_LEVELS)})")
    ap.add_argument("--check", action="store_true", help="validate the configuration and the script, then exit")
    args = ap.parse_args(args_in)
    if args.version:
        print(version_text())
        return 0

    def load_config() -> Config:
        """The configuration file (or the embedded defaults) with the command line's overrides;
        again for each reload."""
        cfg = Config.load(args.config) if args.config else Config.embedded()
        if args.listen:
            cfg.listen = [Listen.parse(v, "--listen") for v in args.listen]
        if args.workers is not None:
            cfg.workers = args.workers
        cfg.check_workers()
        if args.log_level:
            level = args.log_level.upper()
            if level not in LOG_LEVELS:
                raise ConfigError("--log-level", f"{args.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
            cfg.log_level = level
        return cfg

    try:
        cfg = load_config()
        from .permissions import check_open_relay

        check_open_relay(cfg)  # validates [permissions]; no open relay off loopback (before any socket)
        from .script import Script, ScriptLoadError

        try:
            script = Script.load(cfg.script)
        except ScriptLoadError as exc:
            raise ConfigError("script", str(exc)) from None
        # With several workers the table is only validated here: each worker builds its own
        # accounting after the fork (its writer threads and queues must not be shared).
        acc = make_accounting(cfg, validate_only=cfg.workers > 1)
        make_location(cfg)  # validates [location]; each process builds its own store
        check_registrar(cfg)
        from .tcp_limits import TcpLimits

        TcpLimits.from_dict(cfg.tcp)  # validates [tcp] (raises ConfigError naming the key)
        from .tls import TlsConfig

        TlsConfig.from_dict(cfg.tls, cfg.listen)  # validates [tls] against the tls: listeners
        from .limits import LimitsConfig

        try:
            limits_cfg = LimitsConfig.from_dict(cfg.limits)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError("limits", str(exc)) from None
        if cfg.auth:  # validate [auth]; a random secret is drawn once, so the workers share it
            from .auth import AuthConfig

            cfg.auth["secret"] = AuthConfig.from_dict(cfg.auth).secret
    except ConfigError as exc:
        print(f"proxyapp: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"proxyapp: cannot read config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print("configuration OK")
        return 0
    if argv is None:  # run as a program (not main() called in-process): its allocator may change
        from . import allocator

        allocator.reexec(cfg, limits_cfg.allocator)  # PYTHONMALLOC=malloc: returns only if unchanged
    setup_logging(cfg.log_level, cfg.log_format)

    # The cycle collector is off. It scans every live container: with 100,000 transactions alive
    # (32 s of calls at 3,000/s) one generation-1 pass stalls the event loop for half a second,
    # far beyond a 10 ms setup-latency budget. The core frees a call's contexts, branches and
    # transactions by reference counting alone (proxy.Proxy._release_if_done breaks their cycles;
    # tests/proxy/test_memory.py holds it to no cyclic garbage per call). What start-up allocated
    # is frozen out of any later explicit collection.
    gc.collect()
    gc.freeze()
    gc.disable()

    if cfg.workers > 1:
        return run_workers(cfg, script, load_config)
    return run(cfg, script, acc, load_config=load_config)


def run_workers(cfg: Config, script: Any, load_config: Callable[[], Config]) -> int:
    """``workers = N``: the supervisor forks the workers; it serves the control socket (and
    the metrics endpoint) itself, combining what the workers answer on theirs."""
    from .control import FanOut, FanOutServer
    from .workers import supervise

    fan_server = None
    metrics = None
    if cfg.control_socket:
        fan = FanOut(cfg.control_socket, cfg.workers)
        fan_server = FanOutServer(fan)
        if not fan_server.start():
            fan_server = None
        if cfg.metrics_listen is not None:
            from . import metrics as metrics_mod

            def snapshot() -> dict[str, Any]:
                result: dict[str, Any] = fan.run("stats", [])
                return result

            try:
                metrics = metrics_mod.serve(cfg.metrics_listen, snapshot)
            except OSError as exc:
                logger.error("cannot start the metrics endpoint on {}:{}: {}", *cfg.metrics_listen, exc)
                return 1
            logger.info("metrics on http://{}:{}/metrics", *cfg.metrics_listen)
    elif cfg.metrics_listen is not None:
        logger.warning("[metrics] with several workers needs the control socket ([control] socket): off")

    def in_child() -> None:
        # The supervisor's listening sockets are not the worker's to hold open.
        if fan_server is not None:
            fan_server.close_in_child()
        if metrics is not None:
            metrics.socket.close()

    def worker(dispatch: Any) -> int:
        in_child()
        return run(cfg, script, make_accounting(cfg, dispatch.index), dispatch, load_config=load_config)

    try:
        return supervise(cfg.workers, worker)
    finally:
        if metrics is not None:
            metrics.shutdown()
        if fan_server is not None:
            fan_server.close()


def run(cfg: Config, script: Any, acc: Any, dispatch: Any = None, load_config: Callable[[], Config] | None = None) -> int:
    """One proxy process (the only one, or a worker of several) until SIGTERM / SIGINT."""
    from .transport import new_event_loop

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve(cfg, script, acc, dispatch=dispatch, load_config=load_config))
    except OSError as exc:
        logger.error("cannot start: {}", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
