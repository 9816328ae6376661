"""LandingSet end to end: one Landing per tenant Secret, kept true, played as a tenant.

Every test runs as a tenant ServiceAccount whose only rights are a Role over Landings,
LandingSets and Secrets in its own namespace, against the controller on exactly the shipped
RBAC: a set may give its namespace nothing a hand-written Landing could not. The tenant's
namespace is not one the admission webhook checks (``unchecked_tenant``): these tests show
what the controller itself does with a set, bad templates included; the webhook's part is
tests/e2e/test_tenancy_webhook.py's."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from moonlander import api
from moonlander.api.landingset import SET_LABEL
from moonlander.kube.resources import LandingResource, LandingSetResource

from .conftest import Env
from .harness import decoded, eventually, landing, measure, secret_with, wait_reason
from .tenants import Tenant

pytestmark = pytest.mark.e2e

PATTERN = "kubernetes-{{tenant}}-admin-kubeconfig"


def landing_set(namespace: str, name: str, **template_spec: Any) -> Any:
    return LandingSetResource.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "generators": [{"secrets": {"namePattern": PATTERN}}],
                "template": {
                    "metadata": {"name": "{{tenant}}", "labels": {"tenant": "{{tenant}}"}},
                    "spec": {
                        "direction": "ChildToParent",
                        "writeKubeconfigSecretName": "{{tenant}}-landed",
                        **template_spec,
                    },
                },
            },
        }
    )


def tenant_secret(env: Env, namespace: str, tenant_name: str, cluster: str = "child-b") -> Secret:
    return secret_with(
        namespace,
        f"kubernetes-{tenant_name}-admin-kubeconfig",
        {"value": env.kubeconfig_text(cluster)},
    )


async def set_status(client: AsyncClient, namespace: str, name: str) -> dict[str, Any]:
    body = (await client.get(LandingSetResource, name, namespace=namespace)).to_dict()
    return dict(body.get("status") or {})


async def generated(client: AsyncClient, namespace: str, set_name: str) -> dict[str, Any]:
    return {
        item.metadata.name: item
        async for item in client.list(
            LandingResource, namespace=namespace, labels={SET_LABEL: set_name}
        )
    }


async def landed(client: AsyncClient, namespace: str, name: str) -> Secret | None:
    try:
        return await client.get(Secret, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


async def test_a_set_keeps_one_landing_per_tenant_secret(
    env: Env, unchecked_tenant: Tenant
) -> None:
    """Secrets appear → Landings, Ready; a tenant removed → its Landing and landed Secret
    go; a template edit reaches every Landing; a hand edit is reverted; status counts."""
    ns, client = unchecked_tenant.namespace, unchecked_tenant.client
    for name in ("acme", "globex"):
        await client.create(tenant_secret(env, ns, name))
    await client.create(secret_with(ns, "unrelated", {"value": "x"}))
    await client.create(landing_set(ns, "tenants"))

    async def all_ready(expected: set[str]) -> dict[str, Any]:
        status = await set_status(client, ns, "tenants")
        assert status.get("desired") == len(expected) and status.get("ready") == len(expected), (
            status
        )
        assert set(await generated(client, ns, "tenants")) == expected
        return status

    status = await eventually(lambda: all_ready({"acme", "globex"}), timeout=30)
    assert status["failing"] == 0 and status["conditions"][0]["reason"] == "AllReady"
    for name in ("acme", "globex"):
        secret = await landed(client, ns, f"{name}-landed")
        assert secret is not None
        server = yaml.safe_load(decoded(secret, "value"))["clusters"][0]["cluster"]["server"]
        assert server == env.plane["child-b"].url
        item = (await generated(client, ns, "tenants"))[name]
        assert item.metadata.labels["tenant"] == name
        assert item.metadata.ownerReferences[0].kind == "LandingSet"
        assert item.spec["kubeconfigSecretName"] == f"kubernetes-{name}-admin-kubeconfig"

    # One Event per kind of change, on the set, not one per Landing.
    async def created_event() -> bool:
        from lightkube.resources.core_v1 import Event

        messages = [
            e.message
            async for e in env.local.list(Event, namespace=ns)
            if e.involvedObject.kind == "LandingSet" and e.reason == "LandingsCreated"
        ]
        assert messages == ["2 Landings created: acme, globex"], messages
        return True

    await eventually(created_event, timeout=10)
    generated_now = await generated(client, ns, "tenants")
    assert all(api.FINALIZER in (g.metadata.finalizers or []) for g in generated_now.values())

    # Planet B, for a fleet: a new tenant's Secret appears → its Landing is Ready.
    started = time.monotonic()
    await client.create(tenant_secret(env, ns, "initech"))
    await wait_reason(client, ns, "initech", "Synced", timeout=30)
    measure("LandingSet: tenant Secret appears -> its Landing Synced", time.monotonic() - started)
    await eventually(lambda: all_ready({"acme", "globex", "initech"}), timeout=30)

    # A tenant removed: its Landing is deleted and, deletionPolicy Delete, what it landed.
    started = time.monotonic()
    await client.delete(Secret, "kubernetes-globex-admin-kubeconfig", namespace=ns)

    async def globex_gone() -> bool:
        return "globex" not in await generated(client, ns, "tenants") and (
            await landed(client, ns, "globex-landed") is None
        )

    await eventually(globex_gone, timeout=30)
    measure(
        "LandingSet: tenant Secret removed -> Landing and landed Secret gone",
        time.monotonic() - started,
    )
    await eventually(lambda: all_ready({"acme", "initech"}), timeout=30)

    # Editing the template updates every generated Landing.
    await client.patch(
        LandingSetResource,
        "tenants",
        {"spec": {"template": {"spec": {"writeKubeconfigSecretName": "{{tenant}}-v2"}}}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )

    async def moved() -> bool:
        for name in ("acme", "initech"):
            assert await landed(client, ns, f"{name}-v2") is not None
        return True

    await eventually(moved, timeout=30)

    # A hand edit of a generated Landing is reverted.
    await client.patch(
        LandingResource,
        "acme",
        {"spec": {"writeKubeconfigSecretName": "hand-edited", "suspend": True}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )

    async def reverted() -> bool:
        spec = (await client.get(LandingResource, "acme", namespace=ns)).spec
        assert spec["writeKubeconfigSecretName"] == "acme-v2" and not spec.get("suspend"), spec
        return True

    await eventually(reverted, timeout=30)

    # Deleting the set deletes its Landings (and what they landed).
    await client.delete(LandingSetResource, "tenants", namespace=ns)

    async def all_gone() -> bool:
        assert await generated(client, ns, "tenants") == {}
        assert await landed(client, ns, "acme-v2") is None
        return True

    await eventually(all_gone, timeout=30)


async def test_a_set_gets_nothing_a_landing_would_not(env: Env, unchecked_tenant: Tenant) -> None:
    """As the tenant, with no LandingPolicy: a set asking for the parent credential or a
    write into another namespace generates Landings that are refused (NotPermitted) exactly
    as hand-written ones; a Landing the tenant wrote by hand under a generated name is never
    touched; Secrets Moonlander wrote are never matched; nothing lands anywhere."""
    ns, client = unchecked_tenant.namespace, unchecked_tenant.client
    await client.create(tenant_secret(env, ns, "acme"))
    # The parent's credential, into the tenant's child: needs parentCredential.
    await client.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "grab-parent", "namespace": ns},
                "spec": {
                    "generators": [{"secrets": {"namePattern": PATTERN}}],
                    "template": {
                        "metadata": {"name": "parent-{{tenant}}"},
                        "spec": {"direction": "ParentToChild"},
                    },
                },
            }
        )
    )
    # A write into the controller's namespace, over the parent credential's Secret.
    await client.create(
        landing_set(
            ns,
            "elsewhere",
            targetNamespace="moonlander-system",
            writeKubeconfigSecretName="moonlander-parent-kubeconfig",
        )
    )
    await wait_reason(client, ns, "parent-acme", "NotPermitted", timeout=30)
    # "elsewhere" generates Landing "acme": also NotPermitted.
    await wait_reason(client, ns, "acme", "NotPermitted", timeout=30)

    async def counted(name: str) -> dict[str, Any]:
        status = await set_status(client, ns, name)
        assert status.get("failing") == 1 and status.get("ready") == 0, status
        assert "NotPermitted" in status["failingLandings"][0]
        return status

    await eventually(lambda: counted("grab-parent"), timeout=30)
    await eventually(lambda: counted("elsewhere"), timeout=30)
    parent_secret = await landed(env.local, "moonlander-system", "moonlander-parent-kubeconfig")
    assert parent_secret is None or api.MANAGED_BY_LABEL not in (
        parent_secret.metadata.labels or {}
    )

    # A hand-written Landing under a name the set would generate is left alone.
    await client.create(landing(ns, "handmade", kubeconfigSecretName="nothing-here"))
    await client.create(tenant_secret(env, ns, "handmade"))
    await client.create(landing_set(ns, "collide"))

    async def blocked() -> dict[str, Any]:
        status = await set_status(client, ns, "collide")
        assert any(
            f.startswith("handmade: a Landing of that name exists")
            for f in status.get("failingLandings", [])
        ), status
        return status

    await eventually(blocked, timeout=30)
    hand = await client.get(LandingResource, "handmade", namespace=ns)
    assert hand.spec["kubeconfigSecretName"] == "nothing-here"
    assert hand.spec["direction"] == "ParentToChild"  # the default, not the set's
    assert not hand.metadata.ownerReferences and SET_LABEL not in (hand.metadata.labels or {})

    # Moonlander's own output is never a source: "collide" lands acme-landed, a Secret whose
    # name does not match; a set matching everything Moonlander-labelled would loop.
    await client.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "everything", "namespace": ns},
                "spec": {
                    "generators": [
                        {"secrets": {"matchLabels": {api.MANAGED_BY_LABEL: api.MANAGED_BY}}}
                    ],
                    "template": {"spec": {"direction": "ChildToParent"}},
                },
            }
        )
    )

    async def empty() -> dict[str, Any]:
        status = await set_status(client, ns, "everything")
        assert status.get("conditions") and status.get("desired", 0) == 0, status
        return status

    await eventually(empty, timeout=30)
    assert await generated(client, ns, "everything") == {}


async def test_a_bad_template_says_which_field(env: Env, unchecked_tenant: Tenant) -> None:
    """An unknown variable is reported in the set's status, with its field; a generated
    name or spec that is not valid is reported per Secret, and nothing is generated."""
    ns, client = unchecked_tenant.namespace, unchecked_tenant.client
    body = landing_set(ns, "typo", writeKubeconfigSecretName="{{tenat}}-landed").to_dict()
    await client.create(LandingSetResource.from_dict(body))

    async def invalid() -> dict[str, Any]:
        status = await set_status(client, ns, "typo")
        condition = (status.get("conditions") or [{}])[0]
        assert condition.get("reason") == "InvalidSpec", status
        assert (
            "template.spec.writeKubeconfigSecretName: unknown variable {{tenat}}"
            in condition["message"]
        )
        return status

    await eventually(invalid, timeout=30)
    await client.create(tenant_secret(env, ns, "acme"))
    await client.create(landing_set(ns, "badkey", kubeconfigSecretKey="{{tenant}}/x"))

    async def refused() -> dict[str, Any]:
        status = await set_status(client, ns, "badkey")
        assert status.get("failing") == 1, status
        assert status["failingLandings"][0].startswith(
            "Secret kubernetes-acme-admin-kubeconfig: generated Landing acme: spec.kubeconfigSecretKey"
        ), status
        return status

    await eventually(refused, timeout=30)
    assert await generated(client, ns, "badkey") == {}


async def test_cluster_api_clusters_get_landings(env: Env, unchecked_tenant: Tenant) -> None:
    """With Cluster API's real Cluster CRD (fetched from its Go module): every Cluster of the
    namespace gets a Landing of its <cluster>-kubeconfig Secret (key value); a Cluster
    removed (CAPI deletes its Secret with it) loses its Landing."""
    import yaml as _yaml
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    from . import consumers

    crd = CustomResourceDefinition.from_dict(
        _yaml.safe_load(
            consumers.read_text(consumers.CLUSTER_API, consumers.CLUSTER_API_CLUSTER_CRD)
        )
    )
    await env.local.apply(crd, field_manager="tests", force=True)
    await env.local.wait(
        CustomResourceDefinition, crd.metadata.name, for_conditions=["Established"]
    )
    cluster_kind = create_namespaced_resource("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
    ns, client = unchecked_tenant.namespace, unchecked_tenant.client
    for name, labels in (("prod", {"fleet": "yes"}), ("lab", {"fleet": "yes"}), ("x", {})):
        await env.local.create(
            cluster_kind.from_dict(
                {
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"paused": True},
                }
            )
        )
        await client.create(
            secret_with(ns, f"{name}-kubeconfig", {"value": env.kubeconfig_text("child-b")})
        )
    await client.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "capi", "namespace": ns},
                "spec": {
                    "generators": [{"clusterAPI": {"matchLabels": {"fleet": "yes"}}}],
                    "template": {
                        "metadata": {"name": "{{cluster}}-access"},
                        "spec": {
                            "direction": "ChildToParent",
                            "writeKubeconfigSecretName": "{{cluster}}-landed",
                        },
                    },
                },
            }
        )
    )
    for name in ("prod", "lab"):
        await wait_reason(client, ns, f"{name}-access", "Synced", timeout=30)
        landing_spec = (await client.get(LandingResource, f"{name}-access", namespace=ns)).spec
        assert landing_spec["kubeconfigSecretName"] == f"{name}-kubeconfig"
        assert landing_spec["kubeconfigSecretKey"] == "value"
        assert await landed(client, ns, f"{name}-landed") is not None
    assert set(await generated(client, ns, "capi")) == {"prod-access", "lab-access"}

    await env.local.delete(cluster_kind, "lab", namespace=ns)
    await client.delete(Secret, "lab-kubeconfig", namespace=ns)

    async def lab_gone() -> bool:
        assert set(await generated(client, ns, "capi")) == {"prod-access"}
        assert await landed(client, ns, "lab-landed") is None
        return True

    await eventually(lab_gone, timeout=30)
