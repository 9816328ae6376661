"""Argo CD's own code reads the cluster Secrets Moonlander lands, and reaches the cluster.

``loadcluster`` (``hack/consumers/argocd``, built against the Argo CD version its go.mod
pins) does what Argo CD's cluster cache does with a cluster Secret: ``util/db.SecretToCluster``
turns it into a ``v1alpha1.Cluster`` and ``Cluster.RESTConfig()`` into a client-go
``rest.Config``, with which it lists the namespaces of the cluster. It refuses a Secret
without Argo CD's cluster label, as Argo CD would not see it.

child-b is the cluster whose access is landed; a namespace that exists only there, and one
that exists only in child-a, tell which cluster was reached.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

from moonlander_dev.consumers import consumer_dir

from .conftest import Env
from .harness import PLANTED, landing, secret_with, wait_reason
from .test_landing import landed

# The first test may build the program (``make setup`` builds it ahead of time).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def loadcluster() -> Path:
    return consumer_dir("argocd") / "loadcluster"  # fails (never skips) when the build fails


@pytest.fixture
async def markers(env: Env, namespace: str) -> tuple[str, str]:
    """(a namespace only child-b has, one only child-a has)."""
    only_b, only_a = f"{namespace}-only-b", f"{namespace}-only-a"
    await env.admin["child-b"].create(Namespace(metadata=ObjectMeta(name=only_b)))
    await env.admin["child-a"].create(Namespace(metadata=ObjectMeta(name=only_a)))
    return only_b, only_a


async def run_loadcluster(binary: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["KUBECONFIG"] = "/nonexistent"  # only what the Secret says may be used

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, env=env, check=False
        )

    proc = await asyncio.to_thread(run)
    assert proc.returncode == 0, f"loadcluster {' '.join(args)} failed: {proc.stderr}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def config_of(secret: Secret) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(base64.b64decode((secret.data or {})["config"]))
    return config


async def test_argo_cd_reads_a_client_certificate_cluster_secret(
    env: Env, namespace: str, markers: tuple[str, str], loadcluster: Path
) -> None:
    """ChildToParent, Argo CD format, child-b's admin kubeconfig (a client certificate): Argo
    CD's SecretToCluster and RESTConfig, read from the API server, reach child-b."""
    only_b, only_a = markers
    local = env.local
    await local.create(secret_with(namespace, "vc-b", {"config": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(
            namespace,
            "argo",
            kubeconfigSecretName="vc-b",
            direction="ChildToParent",
            writeKubeconfigSecretName="cluster-b",
            output={"format": "ArgoCD", "argocd": {"name": "harvey", "project": "tenants"}},
        )
    )
    await wait_reason(local, namespace, "argo", "Synced")
    secret = await landed(local, namespace, "cluster-b")
    assert set(config_of(secret)["tlsClientConfig"]) >= {"certData", "keyData", "caData"}

    got = await run_loadcluster(
        loadcluster,
        f"-kubeconfig={env.plane['parent'].kubeconfig}",
        f"-namespace={namespace}",
        "-secret=cluster-b",
    )
    assert got["name"] == "harvey"
    assert got["server"] == env.plane["child-b"].url
    assert only_b in got["namespaces"], got
    assert only_a not in got["namespaces"], got


async def test_argo_cd_reads_a_minted_token_cluster_secret(
    env: Env, namespace: str, markers: tuple[str, str], loadcluster: Path, tmp_path: Path
) -> None:
    """A minted ServiceAccount token (bearerToken) that may only list namespaces; the Secret
    as a YAML file, as ``kubectl get secret -o yaml`` would give it. A Secret without the
    cluster label is refused."""
    only_b, only_a = markers
    local = env.local
    await local.create(secret_with(namespace, "vc-b", {"config": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(
            namespace,
            "argo-token",
            kubeconfigSecretName="vc-b",
            direction="ChildToParent",
            writeKubeconfigSecretName="cluster-b-token",
            serviceAccount={
                "name": f"{namespace}-argocd",
                "namespace": namespace,
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
            },
            output={"format": "ArgoCD"},
        )
    )
    await wait_reason(local, namespace, "argo-token", "Synced")
    secret = await landed(local, namespace, "cluster-b-token")
    config = config_of(secret)
    assert config["bearerToken"] and "certData" not in config["tlsClientConfig"]
    PLANTED.append(config["bearerToken"])

    path = tmp_path / "cluster-secret.yaml"
    path.write_text(yaml.safe_dump(secret.to_dict()))
    path.chmod(0o600)
    got = await run_loadcluster(loadcluster, f"-file={path}")
    assert got["name"] == "argo-token"  # output.argocd.name defaults to the Landing's name
    assert got["server"] == env.plane["child-b"].url
    assert only_b in got["namespaces"], got
    assert only_a not in got["namespaces"], got

    unlabelled = secret.to_dict()
    del unlabelled["metadata"]["labels"]["argocd.argoproj.io/secret-type"]
    path.write_text(yaml.safe_dump(unlabelled))
    with pytest.raises(AssertionError, match="Argo CD does not read it"):
        await run_loadcluster(loadcluster, f"-file={path}")
