"""Real Argo CD deploys through a cluster Moonlander landed, and stops when it is revoked.

Argo CD v3.6.1's application-controller and repo-server (``hack/consumers/argocd``, Argo CD's
own commands) run as local processes with Debian's redis-server, against the parent as the
management cluster (Argo CD's CRDs and settings in a namespace of its own,
tests/e2e/argocd_deploy.py). A ChildToParent Landing lands child-b as an Argo CD cluster
Secret there, with a minted ServiceAccount token (the rights ``argocd cluster add`` gives its
``argocd-manager``). An Application whose destination is that cluster, by name, syncs a git
repository served by ``git daemon`` on loopback (a Namespace and a ConfigMap) into child-b.
Withdrawing the LandingPolicy grant revokes the Secret and the ServiceAccount: the Application
then reports its cluster as unknown, and a sync asked for afterwards fails rather than
reporting success.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.types import PatchType

from moonlander.kube.resources import LandingPolicyResource
from moonlander_dev.consumers import consumer_dir

from .argocd_deploy import (
    Application,
    ArgoCD,
    install_crds,
    install_deps,
    install_settings,
)
from .argocd_deploy import application as new_application
from .conftest import Env
from .harness import (
    PLANTED,
    decoded,
    eventually,
    landing,
    landing_policy,
    measure,
    secret_with,
    wait_reason,
)
from .test_landing import get_secret, landed

# The first test may build Argo CD (``make setup`` builds it ahead of time).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

CLUSTER_NAME = "child-b"  # the cluster's name in Argo CD (output.argocd.name)


@pytest.fixture
async def argocd(
    env: Env, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ArgoCD]:
    install_deps()
    binary = consumer_dir("argocd") / "argocd"  # fails (never skips) when the build fails
    await install_crds(env.local)
    argo_namespace = f"{namespace}-argocd"
    await install_settings(env.local, argo_namespace)
    workdir = tmp_path_factory.mktemp("argocd")
    argo = ArgoCD(binary, workdir, env.plane["parent"].kubeconfig, argo_namespace)
    try:
        argo.start()
        yield argo
    finally:
        argo.stop()
        print(f"\nArgo CD logs: {workdir}")


def token_status(server: str, ca_pem: bytes, token: str) -> int:
    """The HTTP status child-b's API server answers ``token`` with (a SelfSubjectReview)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    request = urllib.request.Request(  # noqa: S310 - the test API server's https URL
        f"{server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def app_state(app: Any) -> dict[str, Any]:
    status: dict[str, Any] = app.status or {}
    return {
        "sync": (status.get("sync") or {}).get("status"),
        "health": (status.get("health") or {}).get("status"),
        "conditions": status.get("conditions") or [],
        "operationState": status.get("operationState") or {},
        "resources": status.get("resources") or [],
    }


async def test_argo_cd_syncs_into_a_landed_cluster_until_revoked(
    env: Env, namespace: str, argocd: ArgoCD
) -> None:
    started = time.monotonic()
    local, child = env.local, env.admin["child-b"]
    argo_ns = argocd.namespace
    deployed = f"{namespace}-deployed"
    repo_url = argocd.repository(
        "apps",
        {
            "apps/namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {deployed}\n",
            "apps/configmap.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n"
                f"  namespace: {deployed}\ndata:\n  hello: from-argo-cd\n"
            ),
        },
    )

    # The grant to write into Argo CD's namespace; the trusted policy (fixture) grants minting.
    grant = f"argocd-{namespace}"
    await local.create(
        landing_policy(grant, namespaces={"names": [namespace]}, targetNamespaces=[argo_ns])
    )
    await local.create(secret_with(namespace, "vc-b", {"config": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(
            namespace,
            "argo-deploy",
            kubeconfigSecretName="vc-b",
            direction="ChildToParent",
            targetNamespace=argo_ns,
            writeKubeconfigSecretName="cluster-child-b",
            serviceAccount={
                "name": "argocd-manager",
                "namespace": namespace,
                # What `argocd cluster add` binds its argocd-manager to: Argo CD's cluster
                # cache watches every resource type of the cluster.
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            },
            output={"format": "ArgoCD", "argocd": {"name": CLUSTER_NAME}},
        )
    )
    await wait_reason(local, namespace, "argo-deploy", "Synced", timeout=60)
    ready_at = time.monotonic()
    secret = await landed(local, argo_ns, "cluster-child-b")
    assert ((secret.metadata and secret.metadata.labels) or {})[
        "argocd.argoproj.io/secret-type"
    ] == "cluster"
    token = json.loads(decoded(secret, "config"))["bearerToken"]
    assert token
    PLANTED.append(token)  # never in Moonlander's logs, events, status (test_zz_secret_scan)
    child_b = env.plane["child-b"]
    assert await asyncio.to_thread(token_status, child_b.url, child_b.ca_pem, token) == 201

    await local.create(new_application(argo_ns, "landed", repo_url, CLUSTER_NAME, deployed))

    async def synced_healthy() -> dict[str, Any]:
        argocd.assert_running()
        state = app_state(await local.get(Application, "landed", namespace=argo_ns))
        assert (state["sync"], state["health"]) == ("Synced", "Healthy"), state
        return state

    state = await eventually(synced_healthy, timeout=180, interval=0.2, what="Synced+Healthy")
    sync_seconds = time.monotonic() - ready_at
    measure("argocd: Landing Ready -> App Synced+Healthy", sync_seconds)
    assert state["operationState"].get("phase") == "Succeeded", state["operationState"]
    assert state["operationState"]["operation"]["initiatedBy"].get("automated") is True
    assert {(r["kind"], r["name"]) for r in state["resources"]} == {
        ("Namespace", deployed),
        ("ConfigMap", "greeting"),
    }, state["resources"]

    # The objects are in child-b, the landed cluster, and nowhere else.
    cm = await child.get(ConfigMap, "greeting", namespace=deployed)
    assert cm.data == {"hello": "from-argo-cd"}
    # Argo CD v3's resource tracking (annotation): this Application put it there.
    annotations = (cm.metadata and cm.metadata.annotations) or {}
    assert annotations.get("argocd.argoproj.io/tracking-id") == (
        f"landed:/ConfigMap:{deployed}/greeting"
    ), annotations
    await child.get(Namespace, deployed)
    for other in ("parent", "child-a"):
        with pytest.raises(ApiError) as missing:
            await env.admin[other].get(Namespace, deployed)
        assert missing.value.status.code == 404

    # Revoke: the operator withdraws the grant. Moonlander removes the cluster Secret and the
    # minted ServiceAccount; Argo CD must say its cluster is gone.
    revoked_at = time.monotonic()
    await local.delete(LandingPolicyResource, grant)
    await wait_reason(local, namespace, "argo-deploy", "NotPermitted", timeout=60)
    assert await get_secret(local, argo_ns, "cluster-child-b") is None

    async def cluster_error() -> dict[str, Any]:
        argocd.assert_running()
        state = app_state(await local.get(Application, "landed", namespace=argo_ns))
        messages = [c.get("message", "") for c in state["conditions"]]
        assert any(
            f"there are no clusters with this name: {CLUSTER_NAME}" in m for m in messages
        ), state
        # Not a stale success: Argo CD knows neither what is deployed nor its health.
        assert (state["sync"], state["health"]) == ("Unknown", "Unknown"), state
        return state

    state = await eventually(cluster_error, timeout=120, interval=0.2, what="cluster error")
    error_seconds = time.monotonic() - revoked_at
    measure("argocd: grant withdrawn -> App cluster error", error_seconds)
    print(
        f"\nafter revoke: sync={state['sync']} health={state['health']} conditions={state['conditions']}"
    )

    # Nor would a copy of the landed Secret still reach child-b: the minted ServiceAccount is
    # gone, so its token is refused (the API server may cache a token for up to 10 s).
    async def token_refused() -> bool:
        return await asyncio.to_thread(token_status, child_b.url, child_b.ca_pem, token) == 401

    await eventually(token_refused, timeout=30, interval=0.5, what="the token refused")
    # What was deployed stays where it is: revoking access undeploys nothing.
    assert (await child.get(ConfigMap, "greeting", namespace=deployed)).data == {
        "hello": "from-argo-cd"
    }

    # A sync asked for now must fail, not report success against nothing.
    await local.patch(
        Application,
        "landed",
        {"operation": {"initiatedBy": {"username": "tests"}, "sync": {"revision": "main"}}},
        namespace=argo_ns,
        patch_type=PatchType.MERGE,
    )

    async def sync_failed() -> dict[str, Any]:
        argocd.assert_running()
        state = app_state(await local.get(Application, "landed", namespace=argo_ns))
        op = state["operationState"]
        assert op.get("operation", {}).get("initiatedBy", {}).get("username") == "tests", op
        assert op.get("phase") in ("Error", "Failed"), op
        return state

    state = await eventually(sync_failed, timeout=120, interval=0.2, what="manual sync fails")
    print(
        f"manual sync: {state['operationState'].get('phase')}: {state['operationState'].get('message')}"
    )
    assert CLUSTER_NAME in state["operationState"].get("message", ""), state["operationState"]
    assert (state["sync"], state["health"]) == ("Unknown", "Unknown"), state

    print(
        f"Landing Ready -> Application Synced+Healthy {sync_seconds:.1f}s; "
        f"grant withdrawn -> cluster error {error_seconds:.1f}s; "
        f"test {time.monotonic() - started:.1f}s"
    )
