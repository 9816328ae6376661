"""What /metrics says: counts by reason, kind, state and status code; never a server a tenant
named, never free text; names by the Prometheus conventions."""

from __future__ import annotations

import platform
import socket

import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lightkube import AsyncClient
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import Cluster, Context, User
from lightkube.resources.core_v1 import Secret
from prometheus_client import generate_latest

from moonlander import __version__
from moonlander.controller.metrics import ClusterHealth, Metrics, Snapshot
from moonlander.credentials import Policy
from moonlander.kube import internals
from moonlander.kube.clusters import ClusterPool

from ...support.builders import credentials


def test_clusters_are_counted_by_state_not_listed_by_url() -> None:
    metrics = Metrics()
    metrics.watch_state(
        lambda: Snapshot(
            reasons={"Synced": 2},
            token_expiry={},
            clusters=[ClusterHealth(True), ClusterHealth(False), ClusterHealth(False)],
            queue_depth=0,
            leader=True,
        )
    )
    text = generate_latest(metrics.registry).decode()
    assert 'moonlander_clusters{state="reachable"} 1.0' in text
    assert 'moonlander_clusters{state="unreachable"} 2.0' in text
    assert "server=" not in text and "https://" not in text


async def test_requests_to_remote_clusters_are_labelled_remote() -> None:
    labels: list[str] = []
    pool = ClusterPool(
        Policy(), lambda _keys: None, instrument=lambda _c, label: labels.append(label)
    )
    creds = credentials("https://10.0.0.7:6443")
    try:
        pool.get(creds)
    finally:
        await pool.close()
    assert labels == ["remote"]


# Label names that would carry a tenant's free text or an address (never allowed).
FORBIDDEN = ("url", "server", "host", "address", "endpoint", "message", "msg", "text", "error")


def _every_metric() -> Metrics:
    metrics = Metrics()
    metrics.watch_state(
        lambda: Snapshot(
            reasons={"Synced": 1},
            token_expiry={"ns/l": 1.0},
            clusters=[ClusterHealth(True)],
            queue_depth=0,
            leader=True,
        )
    )
    # One sample of each labelled child, so that collect() shows every label set.
    metrics.reconciles.labels("Synced").inc()
    metrics.writes.labels("Secret", "created").inc()
    metrics.requests.labels("local", "GET", "200").inc()
    metrics.duration.observe(0.1)
    return metrics


def test_every_metric_follows_the_conventions() -> None:
    families = list(_every_metric().registry.collect())
    names = {f.name for f in families}
    assert {"moonlander_build_info", "moonlander_api_requests", "moonlander_clusters"} <= names
    for family in families:
        labels = {label for sample in family.samples for label in sample.labels}
        labels -= {"le"}  # a histogram's buckets
        bad = [label for label in labels if any(word in label.lower() for word in FORBIDDEN)]
        assert not bad, f"{family.name}: label {bad} may carry an address or free text"
        if family.type in ("histogram", "summary"):
            assert family.name.endswith("_seconds"), f"{family.name}: a duration in seconds"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name


def test_build_info_is_one_with_the_versions() -> None:
    text = generate_latest(Metrics().registry).decode()
    [line] = [x for x in text.splitlines() if x.startswith("moonlander_build_info{")]
    assert line.endswith(" 1.0")
    assert f'version="{__version__}"' in line
    assert f'python="{platform.python_version()}"' in line
    assert 'lightkube="' in line


async def test_requests_are_counted_by_status_code_or_error() -> None:
    async def forbidden(_request: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403},
            status=403,
        )

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/secrets/s", forbidden)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    metrics = Metrics()
    answered = _client(f"http://127.0.0.1:{server.port}")
    refused = _client(f"http://127.0.0.1:{_closed_port()}")
    metrics.count_requests(answered, "local")
    metrics.count_requests(refused, "remote")
    try:
        with pytest.raises(httpx2.HTTPStatusError):  # lightkube: ApiError
            await answered.get(Secret, "s", namespace="ns")
        with pytest.raises(httpx2.ConnectError):
            await refused.get(Secret, "s", namespace="ns")
    finally:
        await internals.close(answered)
        await internals.close(refused)
        await server.close()
    text = generate_latest(metrics.registry).decode()
    assert 'moonlander_api_requests_total{cluster="local",code="403",method="GET"} 1.0' in text
    assert 'moonlander_api_requests_total{cluster="remote",code="error",method="GET"} 1.0' in text


def _client(server: str) -> AsyncClient:
    config = SingleConfig(
        context_name="c",
        context=Context(cluster="c", user="u"),
        cluster=Cluster(server=server),
        user=User(token="t"),
    )
    return AsyncClient(config, trust_env=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
