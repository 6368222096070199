"""The Prometheus endpoint (``[metrics] listen = "IP:PORT"``, off by default).

Built with prometheus-client: a custom collector turns the control snapshot (proxyapp.control)
into metric families at scrape time, so counting stays a plain integer increment on the hot
path and nothing is pushed anywhere between scrapes. Names: ``proxyapp_<group>_<name>``, lower
case; counters get ``_total``. The acc group carries a ``backend`` label. With ``workers = N``
the supervisor's snapshot is the workers' combined one (control.combine), so each counter is
the service's total.

The HTTP server runs in a daemon thread (prometheus_client.start_http_server). The ``snapshot``
callable it is given must be safe to call from that thread: one process hands the work to its
event loop (``loop_snapshot``), the supervisor asks its workers' control sockets.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

from .control import GAUGES

Snapshot = Callable[[], dict[str, Any]]
SCRAPE_TIMEOUT_S = 5.0
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(group: str, name: str) -> str:
    return "proxyapp_" + _BAD.sub("_", f"{group}_{name}").lower()


def families(snapshot: dict[str, Any]) -> Iterator[Any]:
    """Prometheus metric families for a control statistics snapshot."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for group, values in snapshot.items():
        if not isinstance(values, dict):
            continue
        if group == "acc":
            by_stat: dict[str, list[tuple[str, float]]] = {}
            for backend, stats in values.items():
                if isinstance(stats, dict):
                    for stat, v in stats.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            by_stat.setdefault(stat, []).append((backend, v))
            for stat, samples in by_stat.items():
                name = metric_name("acc", stat)
                fam: Any
                if stat in GAUGES:
                    fam = GaugeMetricFamily(name, f"accounting: {stat}, per backend", labels=["backend"])
                else:
                    fam = CounterMetricFamily(name, f"accounting: {stat}, per backend", labels=["backend"])
                for backend, v in samples:
                    fam.add_metric([backend], v)
                yield fam
            continue
        for stat, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            name = metric_name(group, stat)
            if stat in GAUGES:
                yield GaugeMetricFamily(name, f"{group}:{stat}", value=v)
            else:
                yield CounterMetricFamily(name, f"{group}:{stat}", value=v)


class SnapshotCollector:
    """A prometheus_client collector reading ``snapshot()`` at each scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            snap = self.snapshot()
        except Exception:
            yield GaugeMetricFamily("proxyapp_up", "1 when the proxy answered this scrape", value=0)
            return
        yield GaugeMetricFamily("proxyapp_up", "1 when the proxy answered this scrape", value=1)
        yield from families(snap)


def loop_snapshot(loop: asyncio.AbstractEventLoop, read: Callable[[], dict[str, Any]]) -> Snapshot:
    """A snapshot callable for another thread: ``read`` runs on ``loop`` (the proxy's state
    belongs to the event loop's thread)."""

    async def on_loop() -> dict[str, Any]:
        return read()

    def snapshot() -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(SCRAPE_TIMEOUT_S)

    return snapshot


def serve(listen: tuple[str, int], snapshot: Snapshot) -> Any:
    """Start the HTTP endpoint (GET /metrics) in a daemon thread; returns the server (its
    ``shutdown()`` stops it). Raises OSError when the address cannot be bound, ImportError
    when prometheus-client is not installed."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    server, _thread = start_http_server(listen[1], addr=listen[0], registry=registry)
    return server
