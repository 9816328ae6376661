"""What /metrics says: counts by reason, kind and state; never a server a tenant named."""

from __future__ import annotations

from prometheus_client import generate_latest

from moonlander.controller.metrics import ClusterHealth, Metrics, Snapshot
from moonlander.credentials import Credentials, Policy
from moonlander.kube.clusters import ClusterPool


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
    creds = Credentials(
        server="https://10.0.0.7:6443",
        ca_data=None,
        token="not-a-real-token",
        client_cert=None,
        client_key=None,
        tls_server_name=None,
        insecure_skip_tls_verify=False,
        context_name="t",
        cluster_name="t",
        user_name="t",
        namespace=None,
    )
    try:
        pool.get(creds)
    finally:
        await pool.close()
    assert labels == ["remote"]
