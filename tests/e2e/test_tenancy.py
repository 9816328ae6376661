"""A hostile tenant, played for real: a ServiceAccount whose only rights are a Role over
Landings, LandingSets and Secrets in its own namespace, against the controller on exactly the
shipped RBAC, with the controller's admission webhook wired into the parent API server for
the tenant's namespaces (tests/e2e/tenants.py). Every attack of issue 11 is refused with its
reason and changes nothing; each grant of a LandingPolicy gives exactly what it says.

Where the webhook would refuse a create first (a mint of a role the tenant may not bind),
the test shows that refusal, then gives the tenant ``bind`` on the role (as Kubernetes'
escalation check requires) so that what is proved is the controller's LandingPolicy
enforcement: the two layers each hold.

These tests use their own tenant namespaces, never the ``namespace`` fixture (which the
operator trusts through a LandingPolicy)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Namespace, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.kube.resources import LandingPolicyResource

from .conftest import Env
from .harness import (
    decoded,
    eventually,
    landing,
    landing_policy,
    measure,
    ready_condition,
    secret_with,
    wait_reason,
)
from .tenants import (
    Tenant,
    checked_namespace,
    may_bind,
    refusal_of_bind,
    refused_by_webhook,
)
from .test_security import RecordingServer

pytestmark = pytest.mark.e2e

PARENT_SECRET = ("moonlander-system", "moonlander-parent-kubeconfig")


async def _other_namespace(env: Env, prefix: str) -> str:
    return await checked_namespace(env, prefix)


async def _still(reason: str, env: Env, namespace: str, name: str, seconds: float = 3.0) -> None:
    """The Landing keeps ``reason`` for ``seconds`` (it is not retried into something else)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cond = await ready_condition(env.local, namespace, name)
        assert cond is not None and cond["reason"] == reason, cond
        await asyncio.sleep(0.5)


async def _absent(client: AsyncClient, kind: type, name: str, namespace: str | None) -> bool:
    try:
        await client.get(kind, name, namespace=namespace)
    except ApiError as err:
        return err.status.code == 404
    return False


# -- 1. the parent credential -----------------------------------------------------------------


async def test_parent_credential_needs_a_policy_and_lands_once_granted(
    env: Env, tenant: Tenant
) -> None:
    """Pattern A as a tenant: refused without a policy (nothing is written in the child),
    landed within seconds of the operator's grant, revoked when the grant is withdrawn."""
    ns = tenant.namespace
    child = env.admin["child-a"]
    await tenant.client.create(
        secret_with(
            ns, "kubernetes-harvey-admin-kubeconfig", {"admin.conf": env.kubeconfig_text("child-a")}
        )
    )
    await tenant.client.create(
        landing(
            ns,
            "talos-root-access",
            kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
            writeKubeconfigSecretName="talos-root-kubeconfig",
        )
    )
    cond = await wait_reason(env.local, ns, "talos-root-access", "NotPermitted")
    assert "parentCredential" in cond["message"] and ns in cond["message"]
    await _still("NotPermitted", env, ns, "talos-root-access")
    assert await _absent(child, Secret, "talos-root-kubeconfig", ns)

    policy = f"parent-for-{ns}"
    started = time.monotonic()
    await env.local.create(
        landing_policy(policy, namespaces={"names": [ns]}, parentCredential=True)
    )
    await wait_reason(env.local, ns, "talos-root-access", "Synced", timeout=15)
    measure("policy granted->Synced", time.monotonic() - started)
    landed = await child.get(Secret, "talos-root-kubeconfig", namespace=ns)
    assert yaml.safe_load(decoded(landed, "value"))["clusters"][0]["cluster"]["server"] == (
        env.plane["parent"].url
    )

    async def matched() -> bool:
        obj = await env.local.get(LandingPolicyResource, policy)
        assert (obj.status or {}).get("matchedNamespaces") == [ns], obj.status
        return True

    await eventually(matched, timeout=15, what="policy status names the namespace")

    started = time.monotonic()
    await env.local.delete(LandingPolicyResource, policy)
    await wait_reason(env.local, ns, "talos-root-access", "NotPermitted", timeout=15)

    async def revoked() -> bool:
        assert await _absent(child, Secret, "talos-root-kubeconfig", ns)
        obj = await env.local.get(type(landing(ns, "x")), "talos-root-access", namespace=ns)
        assert "landed" not in (obj.status or {}), obj.status
        return True

    await eventually(revoked, timeout=15, what="landed parent credential revoked")
    measure("policy withdrawn->revoked", time.monotonic() - started)


async def test_a_tenant_server_receives_nothing(env: Env, tenant: Tenant) -> None:
    """A source naming a server the tenant runs: the refusal comes before any connection,
    so the server never sees the parent's key, its token, or anything at all."""
    server = RecordingServer()
    await server.start()
    try:
        await tenant.client.create(
            secret_with(
                tenant.namespace,
                "kubernetes-evil-admin-kubeconfig",
                {"value": server.kubeconfig({"token": "tenant-own-token"})},
            )
        )
        await tenant.client.create(landing(tenant.namespace, "evil"))
        await wait_reason(env.local, tenant.namespace, "evil", "NotPermitted")
        await _still("NotPermitted", env, tenant.namespace, "evil")
        assert server.requests == []
    finally:
        await server.close()


# -- 2. minting --------------------------------------------------------------------------------


async def _allowed(client: AsyncClient, verb: str, resource: str) -> bool:
    review = await client.create(
        SelfSubjectAccessReview(
            spec=SelfSubjectAccessReviewSpec(
                resourceAttributes=ResourceAttributes(verb=verb, resource=resource, group="*")
            )
        )
    )
    return bool(review.status and review.status.allowed)


async def test_minting_is_bounded_by_the_policy(env: Env, tenant: Tenant) -> None:
    ns = tenant.namespace
    await tenant.client.create(
        secret_with(
            ns, "kubernetes-harvey-admin-kubeconfig", {"value": env.kubeconfig_text("child-a")}
        )
    )
    admin_ask = {"name": f"{ns}-admin", "namespace": "kube-system", "clusterRole": "cluster-admin"}
    escalate = landing(
        ns,
        "escalate",
        kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
        serviceAccount=admin_ask,
    )
    # The webhook: the tenant may not bind cluster-admin, so its Landing may not mint it.
    message = await refused_by_webhook(tenant.client, escalate)
    assert refusal_of_bind("cluster-admin") in message
    # The controller: even for a tenant who may bind both roles, a LandingPolicy decides.
    await may_bind(env, tenant, "cluster-admin")
    await may_bind(env, tenant, "view")
    await tenant.client.create(escalate)
    cond = await wait_reason(env.local, ns, "escalate", "NotPermitted")
    assert "mint" in cond["message"]
    assert await _absent(env.local, ServiceAccount, f"{ns}-admin", "kube-system")
    bindings = [
        b
        async for b in env.local.list(
            ClusterRoleBinding, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
        )
        if (b.metadata.annotations or {}).get(api.OWNER_ANNOTATION, "").startswith(f"{ns}/")
    ]
    assert bindings == []

    await env.local.create(
        landing_policy(
            f"view-for-{ns}",
            namespaces={"names": [ns]},
            mint={"clusterRoles": ["view"], "clusterWide": True},
        )
    )
    view_ask = {"name": f"{ns}-viewer", "clusterRole": "view"}
    await tenant.client.create(
        landing(
            ns,
            "viewer",
            kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
            writeKubeconfigSecretName="viewer-kubeconfig",
            serviceAccount=view_ask,
        )
    )
    await wait_reason(env.local, ns, "viewer", "Synced", timeout=20)
    # Under the view policy (which woke them): kube-system stays closed, and cluster-admin
    # stays refused in the namespace the policy does allow.
    cond = await wait_reason(env.local, ns, "escalate", "NotPermitted")
    assert "namespace kube-system" in cond["message"]
    admin_in_allowed = {"name": f"{ns}-admin", "clusterRole": "cluster-admin"}
    await tenant.client.create(
        landing(
            ns,
            "escalate-here",
            kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
            writeKubeconfigSecretName="admin-kubeconfig",
            serviceAccount=admin_in_allowed,
        )
    )
    cond = await wait_reason(env.local, ns, "escalate-here", "NotPermitted")
    assert "ClusterRole cluster-admin cluster-wide" in cond["message"]
    assert await _absent(env.local, ServiceAccount, f"{ns}-admin", api.DEFAULT_MINT_NAMESPACE)
    landed = await env.admin["child-a"].get(Secret, "viewer-kubeconfig", namespace=ns)
    minted = AsyncClient(KubeConfig.from_dict(yaml.safe_load(decoded(landed, "value"))))
    try:
        assert not await _allowed(minted, "*", "*")
        assert not await _allowed(minted, "create", "clusterrolebindings")
    finally:
        await minted._client._client.aclose()
    binding = [
        b
        async for b in env.local.list(
            ClusterRoleBinding, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
        )
        if (b.metadata.annotations or {}).get(api.OWNER_ANNOTATION) == f"{ns}/viewer"
    ]
    assert [b.roleRef.name for b in binding] == ["view"]


# -- 3. writes into other namespaces -----------------------------------------------------------


async def test_writes_outside_its_namespace_are_refused(env: Env, tenant: Tenant) -> None:
    """ChildToParent into the controller's namespace (over the parent credential), over a
    TLS Secret in kube-system, over another tenant's Secret, into a namespace that does not
    exist: all NotPermitted, nothing written, deleted or created."""
    ns = tenant.namespace
    local = env.local
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    victim_tls = f"victim-tls-{ns}"
    await local.create(
        Secret(
            metadata=ObjectMeta(name=victim_tls, namespace="kube-system"),
            type="kubernetes.io/tls",
            data={"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
        )
    )
    other = await _other_namespace(env, "tenant-b")
    await local.create(secret_with(other, "db-password", {"password": "hunter2"}))
    # As the shipped manifests mount it: the parent credential, in the controller's namespace.
    with contextlib.suppress(ApiError):
        await local.create(
            secret_with(*PARENT_SECRET, {"kubeconfig": env.kubeconfig_text("parent")})
        )
    parent_before = (await local.get(Secret, PARENT_SECRET[1], namespace=PARENT_SECRET[0])).data
    future = f"team-c-{ns}"
    attacks = {
        "parent": (PARENT_SECRET[0], PARENT_SECRET[1]),
        "tls": ("kube-system", victim_tls),
        "other": (other, "db-password"),
        "future": (future, "anything"),
    }
    for name, (target_ns, target) in attacks.items():
        await tenant.client.create(
            landing(
                ns,
                name,
                kubeconfigSecretName="src",
                direction="ChildToParent",
                targetNamespace=target_ns,
                writeKubeconfigSecretName=target,
                adoptExisting=True,
            )
        )
    for name in attacks:
        cond = await wait_reason(local, ns, name, "NotPermitted")
        assert "targetNamespaces" in cond["message"] or "its own namespace" in cond["message"]
    # Granting the controller's namespace does not open it (and the Landings are woken by
    # the policy, and stay refused).
    await local.create(
        landing_policy(
            f"targets-for-{ns}", namespaces={"names": [ns]}, targetNamespaces=["moonlander-system"]
        )
    )
    await asyncio.sleep(1)
    cond = await wait_reason(local, ns, "parent", "NotPermitted")
    assert "never writes into its own namespace" in cond["message"]
    for name in ("tls", "other", "future"):
        await _still("NotPermitted", env, ns, name, seconds=1)
    parent_secret = await local.get(Secret, PARENT_SECRET[1], namespace=PARENT_SECRET[0])
    assert api.MANAGED_BY_LABEL not in (parent_secret.metadata.labels or {})
    assert parent_secret.data == parent_before
    tls = await local.get(Secret, victim_tls, namespace="kube-system")
    assert tls.type == "kubernetes.io/tls" and set(tls.data or {}) == {"tls.crt", "tls.key"}
    assert await _absent(local, Namespace, future, None)
    # Deleting the Landings deletes nothing that is not theirs.
    for name in attacks:
        await tenant.client.delete(type(landing(ns, name)), name, namespace=ns)
    await asyncio.sleep(2)
    db = await local.get(Secret, "db-password", namespace=other)
    assert decoded(db, "password") == "hunter2"
    assert (
        await local.get(Secret, victim_tls, namespace="kube-system")
    ).type == "kubernetes.io/tls"


async def test_a_granted_target_namespace_is_written(env: Env, tenant: Tenant) -> None:
    ns = tenant.namespace
    granted = await _other_namespace(env, "crossplane")
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await tenant.client.create(
        landing(
            ns,
            "moo",
            kubeconfigSecretName="src",
            direction="ChildToParent",
            targetNamespace=granted,
        )
    )
    await wait_reason(env.local, ns, "moo", "NotPermitted")
    await env.local.create(
        landing_policy(
            f"crossplane-for-{ns}", namespaces={"names": [ns]}, targetNamespaces=[granted]
        )
    )
    await wait_reason(env.local, ns, "moo", "Synced", timeout=15)
    landed = await env.local.get(Secret, "remote-kubeconfig", namespace=granted)
    assert yaml.safe_load(decoded(landed, "value"))["clusters"][0]["cluster"]["server"] == (
        env.plane["child-b"].url
    )


# -- 4. adoption -------------------------------------------------------------------------------


async def test_two_claimants_of_one_secret(env: Env, tenant: Tenant) -> None:
    """Both adopt the same target: the first keeps it and stays Synced, the second gets
    Conflict, and ownership does not flip when the second is reconciled again."""
    ns = tenant.namespace
    local = env.local
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    spec = {
        "kubeconfigSecretName": "src",
        "direction": "ChildToParent",
        "writeKubeconfigSecretName": "shared",
        "adoptExisting": True,
    }
    await tenant.client.create(landing(ns, "first", **spec))
    await wait_reason(local, ns, "first", "Synced")
    await tenant.client.create(landing(ns, "second", **spec))
    cond = await wait_reason(local, ns, "second", "Conflict")
    assert "another Landing" in cond["message"]
    for attempt in range(3):  # new generations: reconciled again each time
        await tenant.client.patch(
            type(landing(ns, "second")),
            "second",
            {"spec": {"kubeconfigSecretKey": "value" if attempt % 2 == 0 else None}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        await asyncio.sleep(1)
        await wait_reason(local, ns, "second", "Conflict")
    shared = await local.get(Secret, "shared", namespace=ns)
    assert (shared.metadata.annotations or {})[api.OWNER_ANNOTATION] == f"{ns}/first"
    await wait_reason(local, ns, "first", "Synced")


async def test_a_typed_secret_is_never_adopted(env: Env, tenant: Tenant) -> None:
    ns = tenant.namespace
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    await tenant.client.create(
        Secret(
            metadata=ObjectMeta(name="own-tls", namespace=ns),
            type="kubernetes.io/tls",
            data={"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
        )
    )
    await tenant.client.create(
        landing(
            ns,
            "tls",
            kubeconfigSecretName="src",
            direction="ChildToParent",
            writeKubeconfigSecretName="own-tls",
            adoptExisting=True,
        )
    )
    cond = await wait_reason(env.local, ns, "tls", "Conflict")
    assert "not Opaque" in cond["message"]
    tls = await env.local.get(Secret, "own-tls", namespace=ns)
    assert tls.type == "kubernetes.io/tls"


# -- 5. no oracle ------------------------------------------------------------------------------


async def test_other_namespaces_secrets_are_no_oracle(env: Env, tenant: Tenant) -> None:
    """A reference to another namespace's Secret reads the same whether it exists or not."""
    ns = tenant.namespace
    other = await _other_namespace(env, "tenant-b")
    await env.local.create(secret_with(other, "exists", {"value": env.kubeconfig_text("child-b")}))
    for name, source in (("probe-a", "exists"), ("probe-b", "absent")):
        await tenant.client.create(
            landing(
                ns,
                name,
                kubeconfigSecretNamespace=other,
                kubeconfigSecretName=source,
                direction="ChildToParent",
            )
        )
    a = await wait_reason(env.local, ns, "probe-a", "CrossNamespaceNotAllowed")
    b = await wait_reason(env.local, ns, "probe-b", "CrossNamespaceNotAllowed")
    assert a["message"].replace("exists", "X") == b["message"].replace("absent", "X")
    assert a["status"] == b["status"]


# -- source networks ---------------------------------------------------------------------------


async def test_source_networks_narrow_what_sources_may_name(env: Env, tenant: Tenant) -> None:
    """A policy's sourceNetworks: a source naming a server outside them is refused before any
    connection, one inside lands (the test clusters are on 127.0.0.1)."""
    ns = tenant.namespace
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    policy = f"networks-for-{ns}"
    await env.local.create(
        landing_policy(policy, namespaces={"names": [ns]}, sourceNetworks=["10.0.0.0/8"])
    )
    await tenant.client.create(
        landing(ns, "moo", kubeconfigSecretName="src", direction="ChildToParent")
    )
    cond = await wait_reason(env.local, ns, "moo", "InvalidKubeconfig")
    assert "sourceNetworks" in cond["message"]
    await env.local.patch(
        LandingPolicyResource,
        policy,
        {"spec": {"sourceNetworks": ["10.0.0.0/8", "127.0.0.0/8"]}},
        patch_type=PatchType.MERGE,
    )
    await wait_reason(env.local, ns, "moo", "Synced", timeout=15)
