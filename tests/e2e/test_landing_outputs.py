"""Landings with spec.output and the other producer formats, through the running controller.

The consumers' real CRDs come from their published Go modules at test time (consumers.py);
what the controller creates must be accepted by them, and what it lands must work.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError
from lightkube.types import PatchType

from moonlander import api
from moonlander.controller import outputs
from moonlander.controller.companions import resource_for
from moonlander.kube.resources import LandingResource

from . import consumers
from .conftest import Env
from .harness import (
    PLANTED,
    decoded,
    eventually,
    landing,
    mint_token_kubeconfig,
    secret_with,
    wait_reason,
)
from .test_integrations import (
    install_crds,
    kubeconfig_from_argocd,
    kubectl_args_from_argocd,
    namespaces_via,
)
from .test_landing import get_secret, kubectl, landed

pytestmark = pytest.mark.e2e

KIND = outputs.PROVIDER_CONFIG_KINDS


async def test_argocd_cluster_secret_is_landed_and_works(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    """ChildToParent in Argo CD's format: a declarative cluster Secret whose config reaches
    the child, with kubectl and with a Python client."""
    local = env.local
    await local.create(secret_with(namespace, "vc-moo", {"config": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(
            namespace,
            "argo",
            kubeconfigSecretName="vc-moo",
            direction="ChildToParent",
            writeKubeconfigSecretName="cluster-moo",
            output={
                "format": "ArgoCD",
                "argocd": {"name": "moo", "project": "tenants", "namespaces": [namespace]},
            },
        )
    )
    await wait_reason(local, namespace, "argo", "Synced")
    secret = await landed(local, namespace, "cluster-moo")
    assert secret.metadata.labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert secret.metadata.labels[api.MANAGED_BY_LABEL] == "moonlander"
    values = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    assert values["name"] == "moo" and values["project"] == "tenants"
    assert values["namespaces"] == namespace
    assert values["server"] == env.plane["child-b"].url
    config = json.loads(values["config"])
    assert set(config["tlsClientConfig"]) >= {"caData", "certData", "keyData", "insecure"}
    args = kubectl_args_from_argocd(values["server"], config, tmp_path)
    out = kubectl(
        yaml.safe_dump(kubeconfig_from_argocd(values["server"], config)),
        tmp_path,
        "get",
        "ns",
        namespace,
        "-o",
        "name",
    )
    assert out.strip() == f"namespace/{namespace}"
    assert args[:2] == ["--server", env.plane["child-b"].url]
    assert namespace in await namespaces_via(kubeconfig_from_argocd(values["server"], config))


async def test_crossplane_provider_configs_follow_the_landing(env: Env, namespace: str) -> None:
    """provider-kubernetes' real CRDs in the child: the controller writes the ProviderConfigs
    next to the landed Secret, they are accepted, follow spec changes and go on delete."""
    local, child = env.local, env.admin["child-a"]
    crds = consumers.crds(consumers.PROVIDER_KUBERNETES, "package/crds")
    wanted = [KIND[(api.Provider.KUBERNETES, s)].crd_name for s in api.Scope]
    await install_crds(child, [crds[name] for name in wanted])
    await local.create(
        secret_with(
            namespace,
            "kubernetes-xp-admin-kubeconfig",
            {"admin.conf": env.kubeconfig_text("child-a")},
        )
    )
    name = f"talos-root-{namespace}"
    await local.create(
        landing(
            namespace,
            "xp",
            writeKubeconfigSecretName="talos-root-kubeconfig",
            output={"crossplane": {"scope": "Legacy", "name": name}},
        )
    )
    await wait_reason(local, namespace, "xp", "Synced")
    legacy = resource_for(KIND[(api.Provider.KUBERNETES, api.Scope.LEGACY)])
    pc = await child.get(legacy, name)
    assert pc.spec["credentials"]["secretRef"] == {
        "namespace": namespace,
        "name": "talos-root-kubeconfig",
        "key": "kubeconfig",
    }
    assert pc.metadata.annotations[api.OWNER_ANNOTATION] == f"{namespace}/xp"
    status = (await local.get(LandingResource, "xp", namespace=namespace)).status["landed"]
    assert status["providerConfigs"] == [f"ProviderConfig.kubernetes.crossplane.io {name}"]

    # Crossplane v2: a namespaced ProviderConfig next to the Secret; the legacy one goes.
    await local.patch(
        LandingResource,
        "xp",
        {"spec": {"output": {"crossplane": {"scope": "Namespaced", "name": name}}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    namespaced = resource_for(KIND[(api.Provider.KUBERNETES, api.Scope.NAMESPACED)])

    async def moved() -> bool:
        try:
            await child.get(legacy, name)
            return False
        except ApiError as err:
            if err.status.code != 404:
                raise
        got = await child.get(namespaced, name, namespace=namespace)
        return got.spec["credentials"]["secretRef"]["name"] == "talos-root-kubeconfig"

    await eventually(moved, what="legacy ProviderConfig replaced by the namespaced one")
    await local.delete(LandingResource, "xp", namespace=namespace)

    async def cleaned() -> bool:
        try:
            await child.get(namespaced, name, namespace=namespace)
        except ApiError as err:
            return err.status.code == 404
        return False

    await eventually(cleaned, what="ProviderConfig deleted with the Landing")
    assert await get_secret(child, namespace, "talos-root-kubeconfig") is None


async def test_crossplane_output_waits_for_its_crd(env: Env, namespace: str) -> None:
    """Where provider-helm's CRD does not exist, the Secret is landed and nothing else."""
    local = env.local
    await local.create(
        secret_with(
            namespace,
            "kubernetes-nohelm-admin-kubeconfig",
            {"value": env.kubeconfig_text("child-b")},
        )
    )
    await local.create(landing(namespace, "nohelm", output={"crossplane": {"providers": ["Helm"]}}))
    await wait_reason(local, namespace, "nohelm", "Synced")
    await landed(env.admin["child-b"], namespace, api.DEFAULT_WRITE_NAME)
    status = (await local.get(LandingResource, "nohelm", namespace=namespace)).status["landed"]
    assert "providerConfigs" not in status


async def test_token_and_ca_secret_with_server_is_landed(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    """OCM managed-serviceaccount shape: only token + ca.crt, the server from the Landing."""
    local = env.local
    minted = await mint_token_kubeconfig(
        env.admin["child-a"],
        env.plane["child-a"].url,
        env.plane["child-a"].ca_pem,
        namespace,
        "ocm",
    )
    token = yaml.safe_load(minted)["users"][0]["user"]["token"]
    PLANTED.append(token)
    await local.create(
        secret_with(
            namespace, "ocm-msa", {"token": token, "ca.crt": env.plane["child-a"].ca_pem.decode()}
        )
    )
    await local.create(
        landing(
            namespace,
            "no-server",
            kubeconfigSecretName="ocm-msa",
            direction="ChildToParent",
            writeKubeconfigSecretName="a",
        )
    )
    cond = await wait_reason(local, namespace, "no-server", "SourceKeyNotFound")
    assert "spec.server" in cond["message"]
    await local.create(
        landing(
            namespace,
            "ocm",
            kubeconfigSecretName="ocm-msa",
            direction="ChildToParent",
            writeKubeconfigSecretName="b",
            server=env.plane["child-a"].url,
        )
    )
    await wait_reason(local, namespace, "ocm", "Synced")
    text = decoded(await landed(local, namespace, "b"), "value")
    assert namespace in kubectl(text, tmp_path, "get", "ns", "-o", "name")
    assert (await local.get(LandingResource, "ocm", namespace=namespace)).status["landed"][
        "sourceKey"
    ] == "token"


async def test_kamaji_svc_key_chosen_by_annotation(env: Env, namespace: str) -> None:
    """CozyStack/Kamaji: admin.conf and admin.svc side by side; the annotation picks one."""
    local = env.local
    svc = yaml.safe_load(env.kubeconfig_text("child-b"))
    svc["clusters"][0]["cluster"]["server"] = env.plane["child-b"].url.replace(
        "127.0.0.1", "localhost"
    )
    await local.create(
        secret_with(
            namespace,
            "kubernetes-kam-admin-kubeconfig",
            {"admin.conf": env.kubeconfig_text("child-b"), "admin.svc": yaml.safe_dump(svc)},
            annotations={"kamaji.clastix.io/kubeconfig-secret-key": "admin.svc"},
        )
    )
    await local.create(landing(namespace, "kam", direction="ChildToParent"))
    await wait_reason(local, namespace, "kam", "Synced")
    obj = await local.get(LandingResource, "kam", namespace=namespace)
    assert obj.status["landed"]["sourceKey"] == "admin.svc"
    assert obj.status["landed"]["server"].startswith("https://localhost:")


async def test_credential_that_does_not_authenticate_is_not_landed(
    env: Env, namespace: str
) -> None:
    """The credential is checked (SelfSubjectReview) where it grants access before it is
    landed: a revoked or made-up token is reported, and nothing is written."""
    local = env.local
    bogus = yaml.safe_load(env.kubeconfig_text("child-a"))
    bogus["users"][0]["user"] = {"token": "not-a-valid-token-" + namespace}
    await local.create(secret_with(namespace, "stale", {"value": yaml.safe_dump(bogus)}))
    await local.create(
        landing(namespace, "stale", kubeconfigSecretName="stale", direction="ChildToParent")
    )
    cond = await wait_reason(local, namespace, "stale", "CredentialRejected")
    assert env.plane["child-a"].url in cond["message"]
    assert await get_secret(local, namespace, api.DEFAULT_WRITE_NAME) is None
