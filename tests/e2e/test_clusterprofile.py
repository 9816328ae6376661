"""``output.clusterProfile`` on real API servers (issue 27, item 1): a ClusterProfile
(multicluster.x-k8s.io/v1alpha1, the CRD of the sigs.k8s.io/cluster-inventory-api version
Kueue v0.17.0 requires: tests/e2e/inventory.py) and the Secret its secretreader plugin reads.

- The CRD absent: the Secret lands, the Landing says ClusterProfileCRDNotFound and retries;
  once the CRD is installed the profile is written (cluster manager, label, access providers
  with server, CA and the plugin's clusterName extension, ControlPlaneHealthy, version).
- The token Secret holds a token minted for the Landing's ServiceAccount (not the source's
  admin credential): it reaches the cluster with the minted rights only.
- Deleting the Landing removes profile and Secret.
- As the hostile tenant: a profile outside its namespace needs one LandingPolicy granting
  the namespace both as a target and for profiles; withdrawing it revokes both.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import ConfigMap, Secret, ServiceAccount
from lightkube.types import PatchType

from moonlander import api, minting
from moonlander.controller import profiles
from moonlander.controller.inventory import resource
from moonlander.kube.resources import LandingPolicyResource, LandingResource, LandingSetResource

from . import inventory
from .conftest import Env
from .harness import (
    PLANTED,
    eventually,
    landing,
    landing_gone,
    landing_policy,
    measure,
    mint_token_kubeconfig,
    ready_condition,
    secret_with,
    wait_reason,
)
from .tenants import Tenant, may_bind
from .test_integrations import install_crds
from .test_tenancy import _absent, _other_namespace

pytestmark = pytest.mark.e2e

PROFILE = resource()


# The test planes run no clusterrole-aggregation controller: "view" grants nothing there.
READ_CONFIGMAPS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]


def _profile_landing(ns: str, name: str, **spec: Any) -> Any:
    spec.setdefault(
        "serviceAccount", {"name": f"{name}-reader", "namespace": ns, "clusterRole": "view"}
    )
    return landing(
        ns,
        name,
        kubeconfigSecretName="src",
        direction="ChildToParent",
        writeKubeconfigSecretName=f"{name}-kubeconfig",
        output={"clusterProfile": {"displayName": f"{name} (child-b)"}},
        **spec,
    )


async def _crd_absent(client: AsyncClient) -> None:
    """Deletes the ClusterProfile CRD when another test left it, and waits until it is gone."""
    try:
        await client.delete(CustomResourceDefinition, inventory.CLUSTER_PROFILE_CRD_NAME)
    except ApiError as err:
        if err.status.code != 404:
            raise
    await eventually(
        lambda: _absent(client, CustomResourceDefinition, inventory.CLUSTER_PROFILE_CRD_NAME, None),
        timeout=60,
        what="ClusterProfile CRD removed",
    )


async def _refused_with(client: AsyncClient, ns: str, name: str, text: str) -> None:
    async def probe() -> bool:
        cond = await ready_condition(client, ns, name)
        return cond is not None and cond["reason"] == "NotPermitted" and text in cond["message"]

    await eventually(probe, timeout=30, what=f"NotPermitted saying {text}")


async def _token_of(client: AsyncClient, ns: str, name: str) -> str:
    secret = await client.get(Secret, name, namespace=ns)
    assert set((secret.data or {}).keys()) == {"token"}
    token = base64.b64decode(secret.data["token"]).decode()
    PLANTED.append(token)
    return token


def test_the_pin_is_what_kueue_requires() -> None:
    """The CRD the tests install is the one Kueue v0.17.0's MultiKueue reads."""
    assert inventory.kueue_required_version() == inventory.CLUSTER_INVENTORY_API.version
    assert inventory.crd()["spec"]["group"] == profiles.GROUP
    assert inventory.crd()["spec"]["versions"][0]["subresources"] == {"status": {}}


async def test_a_profile_waits_for_its_crd_then_describes_the_cluster(
    env: Env, namespace: str
) -> None:
    local, child = env.local, env.admin["child-b"]
    ns = namespace
    await _crd_absent(local)
    await local.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(
        _profile_landing(
            ns,
            "inv",
            serviceAccount={"name": "inv-reader", "namespace": ns, "rules": READ_CONFIGMAPS},
        )
    )
    cond = await wait_reason(local, ns, "inv", "ClusterProfileCRDNotFound", timeout=30)
    assert profiles.CRD_NAME in cond["message"] and "Secret is landed" in cond["message"]
    # The Secret is landed meanwhile (and recorded, so a deletion would revoke it).
    await local.get(Secret, "inv-kubeconfig", namespace=ns)
    assert await _absent(local, Secret, "inv", ns)  # no token Secret without its profile
    obj = await local.get(LandingResource, "inv", namespace=ns)
    assert obj.status["landed"]["name"] == "inv-kubeconfig"
    assert not obj.status["landed"].get("clusterProfile")

    started = time.monotonic()
    await install_crds(local, [inventory.crd()])
    await wait_reason(local, ns, "inv", "Synced", timeout=90)
    measure("ClusterProfile CRD installed->Synced", time.monotonic() - started)

    profile = (await local.get(PROFILE, "inv", namespace=ns)).to_dict()
    assert profile["spec"] == {
        "clusterManager": {"name": "moonlander"},
        "displayName": "inv (child-b)",
    }
    assert profile["metadata"]["labels"]["x-k8s.io/cluster-manager"] == "moonlander"
    status = profile["status"]
    source = yaml.safe_load(env.kubeconfig_text("child-b"))["clusters"][0]["cluster"]
    provider = {
        "name": "secretreader",
        "cluster": {
            "server": source["server"],
            "certificate-authority-data": source["certificate-authority-data"],
            "extensions": [
                {"name": "client.authentication.k8s.io/exec", "extension": {"clusterName": "inv"}}
            ],
        },
    }
    assert status["accessProviders"] == [provider]
    assert status["credentialProviders"] == [provider]
    (healthy,) = status["conditions"]
    assert healthy["type"] == "ControlPlaneHealthy" and healthy["status"] == "True", healthy
    version = status["version"]["kubernetes"]
    assert version.startswith("v1."), version
    obj = await local.get(LandingResource, "inv", namespace=ns)
    assert obj.status["landed"]["clusterProfile"] == f"{ns}/inv"

    # The token is minted for the Landing's ServiceAccount, and works with its rights only.
    token = await _token_of(local, ns, "inv")
    account = await child.get(ServiceAccount, "inv-reader", namespace=ns)
    assert minting.token_service_account_uid(token) == account.metadata.uid
    access = profiles.access_of(profile)
    assert access.secret_name == "inv"
    await child.create(ConfigMap(metadata=ObjectMeta(name="hello", namespace=ns)))
    reader = AsyncClient(KubeConfig.from_dict(profiles.kubeconfig_of(access, token, "inv")))
    try:
        # child-b, as the minted ServiceAccount: reads ConfigMaps, never writes them.
        names = {c.metadata.name async for c in reader.list(ConfigMap, namespace=ns)}
        assert names == {"hello"}
        with pytest.raises(ApiError) as denied:
            await reader.create(ConfigMap(metadata=ObjectMeta(name="x", namespace=ns)))
        assert denied.value.status.code == 403
    finally:
        await reader._client.close()
    # Not the source's credential: the admin kubeconfig holds no such token.
    assert token not in env.kubeconfig_text("child-b")

    # The cluster no longer answers where the Landing says it is: ControlPlaneHealthy False
    # (the access provider as it was); back again: True.
    async def healthy(status: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            found = (await local.get(PROFILE, "inv", namespace=ns)).to_dict()["status"]
            (cond,) = found["conditions"]
            return found if cond["status"] == status else None

        return await eventually(probe, timeout=60, what=f"ControlPlaneHealthy {status}")

    closed = "https://127.0.0.1:1"
    await local.patch(
        LandingResource,
        "inv",
        {"spec": {"server": closed}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    await wait_reason(local, ns, "inv", "ClusterUnreachable", timeout=30)
    down = await healthy("False")
    assert down["conditions"][0]["reason"] == "Unreachable"
    assert down["accessProviders"] == [provider]
    await local.patch(
        LandingResource, "inv", {"spec": {"server": None}}, namespace=ns, patch_type=PatchType.MERGE
    )
    await wait_reason(local, ns, "inv", "Synced", timeout=90)
    up = await healthy("True")
    assert up["conditions"][0]["reason"] == "Reachable"

    # Deleting the Landing removes the profile and its token Secret.
    started = time.monotonic()
    await local.delete(LandingResource, "inv", namespace=ns)
    await eventually(lambda: landing_gone(local, ns, "inv"), timeout=30, what="Landing gone")
    assert await _absent(local, PROFILE, "inv", ns)
    assert await _absent(local, Secret, "inv", ns)
    assert await _absent(local, Secret, "inv-kubeconfig", ns)
    measure("Landing deleted->ClusterProfile removed", time.monotonic() - started)


async def test_the_profiles_token_is_renewed_with_the_landed_one(env: Env, namespace: str) -> None:
    local, ns = env.local, namespace
    await install_crds(local, [inventory.crd()])
    await local.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(
        _profile_landing(
            ns,
            "renew",
            serviceAccount={
                "name": "renew-reader",
                "namespace": ns,
                "rules": READ_CONFIGMAPS,
                "expirationSeconds": 600,
                "renewBeforeFraction": 0.99,  # renew once 1 % of 10 minutes (6 s) has passed
            },
        )
    )
    await wait_reason(local, ns, "renew", "Synced", timeout=30)
    first = await _token_of(local, ns, "renew")

    async def renewed() -> str | None:
        token = await _token_of(local, ns, "renew")
        return token if token != first else None

    started = time.monotonic()
    second = await eventually(renewed, timeout=40, interval=0.5, what="profile token renewed")
    measure("ClusterProfile token renewed (due after 6 s)", time.monotonic() - started)

    async def landed_token() -> str:
        landed = await local.get(Secret, "renew-kubeconfig", namespace=ns)
        document = yaml.safe_load(base64.b64decode(landed.data["value"]))
        return str(document["users"][0]["user"]["token"])

    async def same() -> bool:
        return await landed_token() == await _token_of(local, ns, "renew")

    await eventually(same, timeout=20, what="profile token and landed token agree")
    assert second != first
    # A token due every 6 s renews for as long as the Landing lives: it goes, so that the
    # session's controller is quiet again for the tests that count its writes.
    await local.delete(LandingResource, "renew", namespace=ns)
    await eventually(lambda: landing_gone(local, ns, "renew"), timeout=30, what="renew gone")


async def test_parent_to_child_writes_the_parents_profile_into_the_child(
    env: Env, namespace: str
) -> None:
    """ParentToChild: the child gets a ClusterProfile of the parent (where the minted
    ServiceAccount lives), written with the child's own credential."""
    local, child, ns = env.local, env.admin["child-b"], namespace
    await install_crds(child, [inventory.crd()])
    await local.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(
            ns,
            "hub",
            kubeconfigSecretName="src",
            writeKubeconfigSecretName="hub-kubeconfig",
            serviceAccount={
                "name": f"{ns}-hub",
                "namespace": api.DEFAULT_MINT_NAMESPACE,
                "rules": READ_CONFIGMAPS,
            },
            output={"clusterProfile": {"name": "hub"}},
        )
    )
    await wait_reason(local, ns, "hub", "Synced", timeout=30)
    profile = (await child.get(PROFILE, "hub", namespace=ns)).to_dict()
    (provider,) = profile["status"]["accessProviders"]
    assert provider["cluster"]["server"] == env.plane["parent"].url
    token = await _token_of(child, ns, "hub")
    account = await local.get(ServiceAccount, f"{ns}-hub", namespace=api.DEFAULT_MINT_NAMESPACE)
    assert minting.token_service_account_uid(token) == account.metadata.uid
    await local.delete(LandingResource, "hub", namespace=ns)
    await eventually(lambda: landing_gone(local, ns, "hub"), timeout=30, what="Landing gone")
    assert await _absent(child, PROFILE, "hub", ns)
    assert await _absent(child, Secret, "hub", ns)


async def test_a_profile_needs_a_minted_token(env: Env, tenant: Tenant) -> None:
    """Refused at admission (the CRD's rule): consumers never get the source's credential."""
    ns = tenant.namespace
    with pytest.raises(ApiError) as err:
        await tenant.client.create(
            landing(
                ns,
                "no-mint",
                kubeconfigSecretName="src",
                direction="ChildToParent",
                output={"clusterProfile": {}},
            )
        )
    assert err.value.status.code == 422
    assert "output.clusterProfile needs serviceAccount" in (err.value.status.message or "")


async def test_a_tenant_gets_a_profile_elsewhere_only_by_one_policy(
    env: Env, tenant: Tenant
) -> None:
    local = env.local
    ns = tenant.namespace
    await install_crds(local, [inventory.crd()])
    elsewhere = await _other_namespace(env, "inventory")
    await may_bind(env, tenant, "view")
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await tenant.client.create(_profile_landing(ns, "fleet", targetNamespace=elsewhere))
    mint = {"clusterRoles": ["view"], "clusterWide": True, "serviceAccountNamespaces": [ns]}
    # Minting and the target namespace granted, profiles not: refused, nothing written.
    await local.create(
        landing_policy(
            f"target-{ns}", namespaces={"names": [ns]}, mint=mint, targetNamespaces=[elsewhere]
        )
    )
    await _refused_with(local, ns, "fleet", "outputs.clusterProfiles.namespaces")
    # Profiles granted by a second policy that does not also grant the target: still refused.
    await local.create(
        landing_policy(
            f"profiles-{ns}",
            namespaces={"names": [ns]},
            outputs={"clusterProfiles": {"namespaces": [elsewhere]}},
        )
    )
    await asyncio.sleep(2)  # seen by now: still refused, for want of one policy granting all
    await _refused_with(local, ns, "fleet", "one LandingPolicy")
    for name in ("fleet", "fleet-kubeconfig"):
        assert await _absent(local, Secret, name, elsewhere)
    assert await _absent(local, PROFILE, "fleet", elsewhere)

    # One policy granting it as a whole: lands.
    started = time.monotonic()
    await local.create(
        landing_policy(
            f"inventory-{ns}",
            namespaces={"names": [ns]},
            targetNamespaces=[elsewhere],
            outputs={"clusterProfiles": {"namespaces": [elsewhere]}},
        )
    )
    await wait_reason(local, ns, "fleet", "Synced", timeout=30)
    measure("outputs.clusterProfiles granted->Synced", time.monotonic() - started)
    profile = (await local.get(PROFILE, "fleet", namespace=elsewhere)).to_dict()
    assert profile["status"]["accessProviders"][0]["name"] == "secretreader"
    await _token_of(local, elsewhere, "fleet")
    # The tenant itself still cannot read the token Secret there.
    with pytest.raises(ApiError) as err:
        await tenant.client.get(Secret, "fleet", namespace=elsewhere)
    assert err.value.status.code == 403

    # Withdrawn: profile, token Secret and landed Secret are revoked.
    started = time.monotonic()
    await local.delete(LandingPolicyResource, f"inventory-{ns}")
    await wait_reason(local, ns, "fleet", "NotPermitted", timeout=30)

    async def revoked() -> bool:
        assert await _absent(local, PROFILE, "fleet", elsewhere)
        assert await _absent(local, Secret, "fleet", elsewhere)
        assert await _absent(local, Secret, "fleet-kubeconfig", elsewhere)
        return True

    await eventually(revoked, timeout=30, what="ClusterProfile revoked")
    measure("outputs.clusterProfiles withdrawn->revoked", time.monotonic() - started)
    for name in (f"target-{ns}", f"profiles-{ns}"):
        await local.delete(LandingPolicyResource, name)


# -- consuming: the clusterProfiles generator ---------------------------------------------------


async def _foreign_profile(env: Env, ns: str, name: str, manager: str, secret: str) -> None:
    """A ClusterProfile as another cluster manager (OCM, GKE Fleet) writes it, for child-b,
    and the secretreader Secret it names, holding a ServiceAccount token of child-b."""
    local, plane = env.local, env.plane["child-b"]
    text = await mint_token_kubeconfig(
        env.admin["child-b"], plane.url, plane.ca_pem, "default", f"{ns}-{name}", "cluster-admin"
    )
    token = yaml.safe_load(text)["users"][0]["user"]["token"]
    PLANTED.append(token)
    await local.create(secret_with(ns, secret, {"token": token}))
    await local.create(
        PROFILE.from_dict(
            {
                "apiVersion": profiles.API_VERSION,
                "kind": profiles.KIND,
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {profiles.CLUSTER_MANAGER_LABEL: manager},
                },
                "spec": {"clusterManager": {"name": manager}},
            }
        )
    )
    provider = profiles.access_provider(secret, plane.url, plane.ca_pem)
    await local.apply(
        PROFILE.Status.from_dict(
            {
                "apiVersion": profiles.API_VERSION,
                "kind": profiles.KIND,
                "metadata": {"name": name, "namespace": ns},
                "status": {"accessProviders": [provider]},
            }
        ),
        field_manager=manager,
        force=True,
    )


async def test_a_landingset_lands_each_profiles_cluster_with_its_secrets_token(
    env: Env, namespace: str
) -> None:
    local, ns = env.local, namespace
    await install_crds(local, [inventory.crd()])
    await _foreign_profile(env, ns, "east", "ocm", "east-access")
    await _foreign_profile(env, ns, "gke-1", "gke-fleet", "gke-1")
    started = time.monotonic()
    await local.create(
        LandingSetResource.from_dict(
            {
                "apiVersion": api.API_VERSION,
                "kind": "LandingSet",
                "metadata": {"name": "ocm", "namespace": ns},
                "spec": {
                    "generators": [
                        {"clusterProfiles": {"matchLabels": {"x-k8s.io/cluster-manager": "ocm"}}}
                    ],
                    "template": {
                        "metadata": {"name": "{{profile}}-worker"},
                        "spec": {
                            "direction": "ChildToParent",
                            "writeKubeconfigSecretName": "{{profile}}-kubeconfig",
                        },
                    },
                },
            }
        )
    )
    await wait_reason(local, ns, "east-worker", "Synced", timeout=30)
    measure("clusterProfiles generator: set created->Synced", time.monotonic() - started)
    generated = {
        g.metadata.name
        async for g in local.list(LandingResource, namespace=ns)
        if (g.metadata.labels or {}).get("moons.kingdon.ci/landingset") == "ocm"
    }
    assert generated == {"east-worker"}  # gke-1 is another manager's
    obj = await local.get(LandingResource, "east-worker", namespace=ns)
    assert obj.spec["clusterProfileName"] == "east"
    assert obj.status["landed"]["sourceKey"] == "token"

    # The landed kubeconfig is the profile's server and CA with the Secret's token.
    landed = await local.get(Secret, "east-kubeconfig", namespace=ns)
    document = yaml.safe_load(base64.b64decode(landed.data["value"]))
    token = await _token_of(local, ns, "east-access")
    assert document["users"][0]["user"] == {"token": token}
    assert document["clusters"][0]["cluster"]["server"] == env.plane["child-b"].url
    reached = AsyncClient(KubeConfig.from_dict(document))
    try:
        await env.admin["child-b"].create(
            ConfigMap(metadata=ObjectMeta(name="from-profile", namespace=ns))
        )
        names = {c.metadata.name async for c in reached.list(ConfigMap, namespace=ns)}
        assert "from-profile" in names
    finally:
        await reached._client.close()


async def test_a_profile_source_is_read_from_the_own_namespace_only(
    env: Env, tenant: Tenant
) -> None:
    """A tenant cannot point a Landing at another namespace's ClusterProfile (and so at its
    token Secret): refused before anything there is read."""
    local, ns = env.local, tenant.namespace
    await install_crds(local, [inventory.crd()])
    elsewhere = await _other_namespace(env, "profiles")
    await _foreign_profile(env, elsewhere, "east", "ocm", "east-access")
    await tenant.client.create(
        landing(
            ns,
            "steal",
            clusterProfileName="east",
            kubeconfigSecretNamespace=elsewhere,
            direction="ChildToParent",
        )
    )
    cond = await wait_reason(local, ns, "steal", "InvalidSpec", timeout=30)
    assert "own namespace only" in cond["message"], cond
    assert elsewhere not in cond["message"] and "east-access" not in cond["message"]
    assert await _absent(local, Secret, api.DEFAULT_WRITE_NAME, ns)
