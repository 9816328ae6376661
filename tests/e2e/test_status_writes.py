"""A Landing's status is written only when it changes: a minted Landing that keeps failing
against a dead cluster says so once, then its retries write nothing (issue 24, item 3)."""

from __future__ import annotations

import re
import time

import pytest
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from moonlander.kube.resources import LandingResource

from .conftest import Env
from .harness import (
    FaultProxy,
    eventually,
    kubeconfig_with_server,
    landing,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e

SA_NS = "moonlander-minted"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` in Prometheus text (label order free); 0 when absent."""
    for line in text.splitlines():
        found = re.fullmatch(
            r"(?P<name>[a-zA-Z_:][\w:]*)(\{(?P<labels>.*)\})? (?P<value>\S+)", line
        )
        if not found or found.group("name") != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group("labels") or ""))
        if have == labels:
            return float(found.group("value"))
    return 0.0


def counters(env: Env) -> tuple[float, float]:
    """(status writes of Landings, reconciles that ended ClusterUnreachable) so far."""
    text = env.controller.http_get("/metrics")[1]
    return (
        sample(text, "moonlander_writes_total", kind="Landing", action="status"),
        sample(text, "moonlander_reconciles_total", result="ClusterUnreachable"),
    )


async def test_a_minted_landing_retrying_against_a_dead_cluster_writes_no_status(
    env: Env, namespace: str
) -> None:
    """Minted (serviceAccount, tokens in its status), landed in child-a through a proxy;
    the proxy closes and child-a is gone. The first failure is written (Synced ->
    ClusterUnreachable); the retries after it, with the same outcome and the same landed
    status, write nothing. Before the status was typed, each retry sent a PATCH: the landed
    status read back lost serviceAccount, tokenExpiresAt and tokenRenewAt and compared
    unequal."""
    local = env.local
    proxy = FaultProxy(env.plane["child-a"].port)
    await proxy.start()
    try:
        via_proxy = kubeconfig_with_server(
            env.kubeconfig_text("child-a"), f"https://127.0.0.1:{proxy.port}"
        )
        await local.create(secret_with(namespace, "dead-src", {"value": via_proxy}))
        await local.create(
            landing(
                namespace,
                "dead",
                kubeconfigSecretName="dead-src",
                serviceAccount={
                    "name": f"{namespace}-dead",
                    "namespace": SA_NS,
                    "clusterRole": "view",
                },
            )
        )
        await wait_reason(local, namespace, "dead", "Synced")
        before = (await local.get(LandingResource, "dead", namespace=namespace)).status["landed"]
        assert before["serviceAccount"] and before["tokenExpiresAt"] and before["tokenRenewAt"]
    finally:
        await proxy.close()  # connections refused from now on: child-a is dead
    # Something for the Landing to act on: its source changes (same content).
    await local.patch(
        Secret,
        "dead-src",
        {"metadata": {"annotations": {"touched": str(time.time())}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    await wait_reason(local, namespace, "dead", "ClusterUnreachable", timeout=40)

    async def retries_after(count: float, more: int) -> bool:
        return counters(env)[1] >= count + more

    # The first failure and the first failing-fast retry may say it in other words (each
    # one write); from then on the status says it.
    settled = counters(env)[1]
    await eventually(lambda: retries_after(settled, 2), timeout=40, what="two retries")
    writes_at, retries_at = counters(env)
    started = time.monotonic()
    await eventually(lambda: retries_after(retries_at, 3), timeout=40, what="three more retries")
    writes_now, retries_now = counters(env)
    print(
        f"\n{retries_now - retries_at:.0f} retries in {time.monotonic() - started:.1f}s: "
        f"{writes_now - writes_at:.0f} status writes"
    )
    assert writes_now == writes_at
    after = (await local.get(LandingResource, "dead", namespace=namespace)).status["landed"]
    assert after == before  # what it had landed is still what the status says
