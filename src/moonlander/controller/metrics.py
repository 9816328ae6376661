"""Prometheus metrics. Labels carry reasons, kinds and Landings' namespaces and names: never
secrets, and never a value a tenant chose freely (a server URL would list every address a
tenant ever named, and whether it answered)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
            "Requests sent to API servers (watches count once, when they start)",
            ["cluster", "method"],
            registry=self.registry,
        )

    def count_requests(self, client: Any, cluster: str) -> None:
        """Counts every request a lightkube client sends, by HTTP method; ``cluster`` is
        ``local`` or ``remote``, never a server's URL."""
        counter = self.requests
        by_method: dict[str, Any] = {}  # labels() takes a lock and builds a key per call

        async def hook(request: Any) -> None:
            child = by_method.get(request.method)
            if child is None:
                child = by_method[request.method] = counter.labels(cluster, request.method)
            child.inc()

        internals.http_client(client).event_hooks["request"].append(hook)

    def watch_state(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry.register(_StateCollector(snapshot))
