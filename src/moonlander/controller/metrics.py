"""Prometheus metrics, by the Prometheus naming conventions: counters end in ``_total``,
durations are histograms in seconds ending in ``_seconds``, ``moonlander_build_info`` is a
constant 1 with the versions as labels. Labels carry reasons, kinds, HTTP methods and codes,
and Landings' namespaces and names: never secrets, and never a value a tenant chose freely
(a server URL would list every address a tenant ever named, and whether it answered; a
message would make a series per wording). ``tests/unit/controller/test_metrics.py`` walks
every registered metric and holds them to this."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from moonlander import __version__
from moonlander.kube import internals


@dataclass(frozen=True)
class ClusterHealth:
    reachable: bool


@dataclass(frozen=True)
class Snapshot:
    """What the controller knows right now, read at scrape time."""

    reasons: dict[str, int]  # Landings by Ready reason
    token_expiry: dict[str, float]  # Landing key (namespace/name) -> unix time
    clusters: list[ClusterHealth]  # remote clusters: which one is not said (the log says)
    queue_depth: int
    leader: bool


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self._snapshot()
        landings = GaugeMetricFamily(
            "moonlander_landings",
            "Landings by the reason of their Ready condition",
            labels=["reason"],
        )
        for reason, count in sorted(snap.reasons.items()):
            landings.add_metric([reason], count)
        yield landings
        expiry = GaugeMetricFamily(
            "moonlander_token_expiry_timestamp_seconds",
            "When the token a Landing minted expires (unix time)",
            labels=["namespace", "name"],
        )
        for key, when in sorted(snap.token_expiry.items()):
            namespace, _, name = key.partition("/")
            expiry.add_metric([namespace, name], when)
        yield expiry
        clusters = GaugeMetricFamily(
            "moonlander_clusters",
            "Remote clusters in use, by whether the last call to each was answered",
            labels=["state"],
        )
        up = sum(1 for cluster in snap.clusters if cluster.reachable)
        clusters.add_metric(["reachable"], up)
        clusters.add_metric(["unreachable"], len(snap.clusters) - up)
        yield clusters
        yield GaugeMetricFamily(
            "moonlander_queue_depth", "Landings waiting for a worker", value=snap.queue_depth
        )
        yield GaugeMetricFamily(
            "moonlander_leader",
            "1 when this replica holds the leader Lease",
            value=float(snap.leader),
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Resident memory, CPU seconds and open fds of this process, for capacity planning.
        ProcessCollector(registry=self.registry)
        self.reconciles = Counter(
            "moonlander_reconciles_total",
            "Reconciles by result (the Ready reason they ended with)",
            ["result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "moonlander_reconcile_duration_seconds",
            "Time one reconcile took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.writes = Counter(
            "moonlander_writes_total",
            "Objects written (created, updated or deleted) in any cluster",
            ["kind", "action"],
            registry=self.registry,
        )

        self.requests = Counter(
            "moonlander_api_requests_total",
            "Requests sent to API servers, by the HTTP status code of the answer, or "
            '"error" when none came (watches count once, when their headers arrive)',
            ["cluster", "method", "code"],
            registry=self.registry,
        )
        build = Gauge(
            "moonlander_build_info",
            "Always 1: the version of Moonlander and of what it runs on",
            ["version", "python", "lightkube"],
            registry=self.registry,
        )
        build.labels(*build_labels()).set(1)

    def count_requests(self, client: Any, cluster: str) -> None:
        """Counts every request a lightkube client sends, by HTTP method and status code;
        ``cluster`` is ``local`` or ``remote``, never a server's URL."""
        counter = self.requests
        children: dict[tuple[str, str], Any] = {}  # labels() locks and builds a key per call

        def count(method: str, code: str) -> None:
            child = children.get((method, code))
            if child is None:
                child = children[method, code] = counter.labels(cluster, method, code)
            child.inc()

        internals.wrap_transport(client, lambda inner: _CountingTransport(inner, count))

    def watch_state(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry.register(_StateCollector(snapshot))


class _CountingTransport(httpx2.AsyncBaseTransport):
    """Counts each request once its answer's status is known, or as ``error`` when the
    transport raised instead (refused, reset, timed out, or refused by our own guards)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, count: Callable[[str, str], None]) -> None:
        self._inner = inner
        self._count = count

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except Exception:
            self._count(request.method, "error")
            raise
        self._count(request.method, str(response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def build_labels() -> tuple[str, str, str]:
    """Moonlander's version, Python's, lightkube's: fixed at build time, never user input."""
    try:
        lightkube = importlib.metadata.version("lightkube")
    except importlib.metadata.PackageNotFoundError:
        lightkube = "unknown"
    return __version__, platform.python_version(), lightkube
