"""Issue 23, findings 1-4, played as the tenant (a ServiceAccount whose only rights are a Role
over Landings, LandingSets and Secrets in its own namespace) against the controller on
exactly the shipped RBAC, with its admission webhook wired into the parent API server for
the tenant's namespaces (tests/e2e/tenants.py), and with policies in the examples' style:

1. a cluster-scoped output (a Crossplane ProviderConfig or ClusterProviderConfig written into
   the controller's cluster) needs its name granted (``outputs.clusterScoped``) to this one
   namespace, and a name granted to two namespaces is refused to both;
2. one policy grants a mint as a whole: its ServiceAccount namespace, lifetime and bindings;
3. ParentToChild mints only into the controller's mint namespaces, where the tenant cannot
   write Secrets (no legacy, non-expiring token for the minted ServiceAccount);
4. no policy opens the controller's namespace to a minted binding, and a policy naming it
   says so in its status.

Each refusal is ``NotPermitted`` before anything is written; each grant lands within seconds
and its withdrawal revokes what it gave (both measured). A mint is first refused by the
webhook (the tenant may not bind the role); the tenant is then given ``bind`` on it, as
Kubernetes' escalation check requires, so that the controller's refusal is what is shown."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Namespace, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, Role, RoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.controller import outputs
from moonlander.controller.companions import resource_for
from moonlander.kube.resources import LandingPolicyResource, LandingResource, LandingSetResource

from . import consumers
from .conftest import Env
from .harness import eventually, landing, landing_policy, measure, secret_with, wait_reason
from .tenants import Tenant, may_bind, refusal_of_bind, refused_by_webhook
from .test_integrations import install_crds
from .test_tenancy import _absent, _other_namespace, _still

pytestmark = pytest.mark.e2e

KIND = outputs.PROVIDER_CONFIG_KINDS
LEGACY = KIND[(api.Provider.KUBERNETES, api.Scope.LEGACY)]
CLUSTER = KIND[(api.Provider.KUBERNETES, api.Scope.CLUSTER)]
MINTED = api.DEFAULT_MINT_NAMESPACE
CONTROLLER_NS = "moonlander-system"


async def _provider_config_crds(env: Env) -> None:
    """provider-kubernetes' real ProviderConfig CRDs, in the controller's own cluster."""
    crds = consumers.crds(consumers.PROVIDER_KUBERNETES, "package/crds")
    await install_crds(
        env.local, [crds[KIND[(api.Provider.KUBERNETES, s)].crd_name] for s in api.Scope]
    )


async def _policy_status(env: Env, name: str) -> dict[str, Any]:
    return dict((await env.local.get(LandingPolicyResource, name)).status or {})


async def _owned_by(
    client: AsyncClient, kind: Any, namespace: str | None, prefix: str
) -> list[str]:
    """Names of the Moonlander-made objects of ``kind`` whose owner starts with ``prefix``."""
    found = []
    async for obj in client.list(
        kind, namespace=namespace, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
    ):
        owner = (obj.metadata.annotations or {}).get(api.OWNER_ANNOTATION, "")
        if owner.startswith(prefix):
            found.append(obj.metadata.name)
    return found


async def _may(
    client: AsyncClient, verb: str, resource: str, namespace: str, sub: str = ""
) -> bool:
    review = await client.create(
        SelfSubjectAccessReview(
            spec=SelfSubjectAccessReviewSpec(
                resourceAttributes=ResourceAttributes(
                    verb=verb, resource=resource, subresource=sub or None, namespace=namespace
                )
            )
        )
    )
    return bool(review.status and review.status.allowed)


# -- 1. cluster-scoped outputs -----------------------------------------------------------------


async def test_cluster_scoped_provider_configs_need_a_granted_name(
    env: Env,
    tenant: Tenant,
) -> None:
    """The issue's attack: ChildToParent into the tenant's own namespace with a Legacy
    ProviderConfig ``default`` and a ClusterProviderConfig ``talos-root``. Refused (also under
    a policy granting other things) and nothing is written; a granted name lands, is refused
    to both namespaces once it is granted to a second one, and is revoked when withdrawn."""
    ns = tenant.namespace
    local = env.local
    await _provider_config_crds(env)
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    attacks = {
        "legacy": ("Legacy", "default", LEGACY),
        "cluster": ("Cluster", "talos-root", CLUSTER),
    }
    for name, (scope, config, _) in attacks.items():
        await tenant.client.create(
            landing(
                ns,
                name,
                kubeconfigSecretName="src",
                direction="ChildToParent",
                writeKubeconfigSecretName=f"{name}-kubeconfig",
                output={"crossplane": {"scope": scope, "name": config}},
            )
        )
    # As examples/pattern-b/policy.yaml, without the clusterScoped grant.
    await local.create(
        landing_policy(
            f"pattern-b-{ns}",
            namespaces={"names": [ns]},
            parentCredential=True,
            targetNamespaces=["crossplane-system"],
        )
    )
    for name, (_, config, kind) in attacks.items():
        cond = await wait_reason(local, ns, name, "NotPermitted")
        assert f"cluster-scoped {kind.kind}.{kind.group} {config}" in cond["message"]
        assert "outputs.clusterScoped" in cond["message"] and ns in cond["message"]
    await _still("NotPermitted", env, ns, "legacy", seconds=2)
    assert await _absent(local, resource_for(LEGACY), "default", None)
    assert await _absent(local, resource_for(CLUSTER), "talos-root", None)
    for name in attacks:
        assert await _absent(local, Secret, f"{name}-kubeconfig", ns)

    # Granted, to this namespace alone: lands.
    granted = f"{ns}-xp"
    await tenant.client.create(
        landing(
            ns,
            "granted",
            kubeconfigSecretName="src",
            direction="ChildToParent",
            writeKubeconfigSecretName="granted-kubeconfig",
            output={"crossplane": {"scope": "Legacy", "name": granted}},
        )
    )
    await wait_reason(local, ns, "granted", "NotPermitted")
    policy = f"xp-names-{ns}"
    started = time.monotonic()
    await local.create(
        landing_policy(
            policy, namespaces={"names": [ns]}, outputs={"clusterScoped": {"names": [granted]}}
        )
    )
    await wait_reason(local, ns, "granted", "Synced", timeout=15)
    measure("outputs.clusterScoped granted->Synced", time.monotonic() - started)
    pc = await local.get(resource_for(LEGACY), granted)
    assert pc.spec["credentials"]["secretRef"]["namespace"] == ns
    # The attacks stay refused: the grant names only this name.
    await wait_reason(local, ns, "legacy", "NotPermitted")
    assert await _absent(local, resource_for(LEGACY), "default", None)

    # The same name granted to a second namespace: refused to both, and revoked.
    other = await _other_namespace(env, "tenant-b")
    rival = f"xp-prefix-{other}"
    started = time.monotonic()
    await local.create(
        landing_policy(
            rival, namespaces={"names": [other]}, outputs={"clusterScoped": {"namePrefixes": [ns]}}
        )
    )
    cond = await wait_reason(local, ns, "granted", "NotPermitted", timeout=15)
    assert "ambiguous" in cond["message"] and other not in cond["message"]

    async def revoked() -> bool:
        assert await _absent(local, resource_for(LEGACY), granted, None)
        assert await _absent(local, Secret, "granted-kubeconfig", ns)
        return True

    await eventually(revoked, timeout=15, what="ambiguous name revoked")
    measure("outputs.clusterScoped made ambiguous->revoked", time.monotonic() - started)

    async def reported() -> bool:
        mine = await _policy_status(env, policy)
        assert any(f"name {granted}" in e and rival in e for e in mine.get("ambiguous", [])), mine
        theirs = await _policy_status(env, rival)
        assert any(policy in e for e in theirs.get("ambiguous", [])), theirs
        return True

    await eventually(reported, timeout=15, what="both policies report the ambiguous name")
    await local.delete(LandingPolicyResource, rival)
    await wait_reason(local, ns, "granted", "Synced", timeout=15)

    # Withdrawn: revoked.
    started = time.monotonic()
    await local.delete(LandingPolicyResource, policy)
    await wait_reason(local, ns, "granted", "NotPermitted", timeout=15)
    await eventually(revoked, timeout=15, what="withdrawn name revoked")
    measure("outputs.clusterScoped withdrawn->revoked", time.monotonic() - started)


async def test_a_label_that_brings_a_second_namespace_makes_the_name_ambiguous(
    env: Env,
    tenant: Tenant,
) -> None:
    """A name granted by matchLabels: held while one namespace matches; once a second
    namespace is labelled, refused to both and revoked, and back when the label goes."""
    ns = tenant.namespace
    local = env.local
    await _provider_config_crds(env)
    team = {"moons-test-team": ns}
    await local.patch(Namespace, ns, {"metadata": {"labels": team}}, patch_type=PatchType.MERGE)
    await tenant.client.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    name = f"{ns}-team"
    await local.create(
        landing_policy(
            f"team-names-{ns}",
            namespaces={"matchLabels": team},
            outputs={"clusterScoped": {"names": [name]}},
        )
    )
    await tenant.client.create(
        landing(
            ns,
            "team",
            kubeconfigSecretName="src",
            direction="ChildToParent",
            writeKubeconfigSecretName="team-kubeconfig",
            output={"crossplane": {"scope": "Cluster", "name": name}},
        )
    )
    await wait_reason(local, ns, "team", "Synced", timeout=15)
    await local.get(resource_for(CLUSTER), name)

    other = await _other_namespace(env, "tenant-b")
    started = time.monotonic()
    await local.patch(Namespace, other, {"metadata": {"labels": team}}, patch_type=PatchType.MERGE)
    cond = await wait_reason(local, ns, "team", "NotPermitted", timeout=15)
    assert "ambiguous" in cond["message"]

    async def revoked() -> bool:
        assert await _absent(local, resource_for(CLUSTER), name, None)
        return True

    await eventually(revoked, timeout=15, what="name revoked once a second namespace holds it")
    measure("outputs.clusterScoped second namespace labelled->revoked", time.monotonic() - started)
    await local.patch(
        Namespace,
        other,
        {"metadata": {"labels": {"moons-test-team": None}}},
        patch_type=PatchType.MERGE,
    )
    await wait_reason(local, ns, "team", "Synced", timeout=15)


async def test_a_landingset_cannot_name_cluster_scoped_outputs_by_variable(
    env: Env,
    tenant: Tenant,
) -> None:
    """Through a LandingSet the names come from the tenant's Secret names: each generated
    Landing is authorized like a hand-written one, so each is refused, and nothing exists."""
    ns = tenant.namespace
    local = env.local
    await _provider_config_crds(env)
    for cluster in ("default", "talos-root"):
        await tenant.client.create(
            secret_with(
                ns,
                f"kubernetes-{cluster}-admin-kubeconfig",
                {"value": env.kubeconfig_text("child-b")},
            )
        )
    await tenant.client.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "squat", "namespace": ns},
                "spec": {
                    "generators": [
                        {"secrets": {"namePattern": "kubernetes-{{cluster}}-admin-kubeconfig"}}
                    ],
                    "template": {
                        "metadata": {"name": "{{cluster}}-pc"},
                        "spec": {
                            "direction": "ChildToParent",
                            "writeKubeconfigSecretName": "{{cluster}}-kubeconfig",
                            "output": {"crossplane": {"scope": "Cluster", "name": "{{cluster}}"}},
                        },
                    },
                },
            }
        )
    )
    for cluster in ("default", "talos-root"):
        cond = await wait_reason(local, ns, f"{cluster}-pc", "NotPermitted")
        assert f"ClusterProviderConfig.kubernetes.m.crossplane.io {cluster}" in cond["message"]
        assert "outputs.clusterScoped" in cond["message"]
    await _still("NotPermitted", env, ns, "default-pc", seconds=2)
    for cluster in ("default", "talos-root"):
        assert await _absent(local, resource_for(CLUSTER), cluster, None)
        assert await _absent(local, Secret, f"{cluster}-kubeconfig", ns)


# -- 2. one policy grants a mint as a whole ----------------------------------------------------


async def test_policies_do_not_add_up_inside_one_mint(
    env: Env,
    tenant: Tenant,
) -> None:
    """P1 grants cluster-admin in apps with tokens <= 600 s; P2 grants view in apps with
    tokens <= 86400 s. cluster-admin in apps for a day is granted by neither: refused, nothing
    is minted. The same mint within P1's lifetime lands; withdrawing P1 revokes it."""
    ns = tenant.namespace
    local = env.local
    apps = await _other_namespace(env, "apps")
    await tenant.client.create(secret_with(ns, "child", {"value": env.kubeconfig_text("child-a")}))
    p1, p2 = f"admin-short-{ns}", f"view-long-{ns}"
    for name, role, lifetime in ((p1, "cluster-admin", 600), (p2, "view", 86400)):
        await local.create(
            landing_policy(
                name,
                namespaces={"names": [ns]},
                mint={
                    "clusterRoles": [role],
                    "roleNamespaces": [apps],
                    "serviceAccountNamespaces": [MINTED],
                    "maxExpirationSeconds": lifetime,
                },
            )
        )
    robot = f"{ns}-robot"
    composed = landing(
        ns,
        "composed",
        kubeconfigSecretName="child",
        writeKubeconfigSecretName="robot-kubeconfig",
        serviceAccount={
            "name": robot,
            "roles": [{"name": "cluster-admin", "namespaces": [apps]}],
            "expirationSeconds": 86400,
        },
    )
    message = await refused_by_webhook(tenant.client, composed)
    assert refusal_of_bind("cluster-admin", apps) in message
    await may_bind(env, tenant, "cluster-admin", apps)
    await tenant.client.create(composed)
    cond = await wait_reason(local, ns, "composed", "NotPermitted")
    assert "no single LandingPolicy" in cond["message"] and "as a whole" in cond["message"]
    assert f"{p1} does not grant expirationSeconds 86400" in cond["message"]
    assert f"{p2} does not grant ClusterRole cluster-admin in namespace {apps}" in cond["message"]
    await _still("NotPermitted", env, ns, "composed", seconds=2)
    assert await _absent(local, ServiceAccount, robot, MINTED)
    assert await _owned_by(local, RoleBinding, apps, f"{ns}/") == []
    assert await _absent(env.admin["child-a"], Secret, "robot-kubeconfig", ns)

    # Within what P1 grants by itself: minted.
    started = time.monotonic()
    await tenant.client.patch(
        LandingResource,
        "composed",
        {"spec": {"serviceAccount": {"expirationSeconds": 600}}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    await wait_reason(local, ns, "composed", "Synced", timeout=20)
    measure("mint within one policy->Synced", time.monotonic() - started)
    await local.get(ServiceAccount, robot, namespace=MINTED)
    assert await _owned_by(local, RoleBinding, apps, f"{ns}/composed") != []

    started = time.monotonic()
    await local.delete(LandingPolicyResource, p1)
    cond = await wait_reason(local, ns, "composed", "NotPermitted", timeout=15)

    async def revoked() -> bool:
        assert await _absent(local, ServiceAccount, robot, MINTED)
        assert await _owned_by(local, RoleBinding, apps, f"{ns}/") == []
        assert await _absent(env.admin["child-a"], Secret, "robot-kubeconfig", ns)
        return True

    await eventually(revoked, timeout=15, what="mint revoked with its policy")
    measure("mint policy withdrawn->revoked", time.monotonic() - started)


# -- 3. minted ServiceAccounts live where the tenant cannot write Secrets ---------------------


async def test_minting_into_a_namespace_the_tenant_can_write_is_refused(
    env: Env,
    tenant: Tenant,
) -> None:
    """A policy lists the tenant's own namespace and another one the tenant may write
    Secrets in: both are refused (a tenant could make a never-expiring token Secret for the
    ServiceAccount there), nothing is created, and the policy says so. The mint namespace
    works, and there the tenant can create neither Secrets nor tokens."""
    ns = tenant.namespace
    local = env.local
    shared = await _other_namespace(env, "shared")
    await local.create(
        Role(
            metadata=ObjectMeta(name="tenant-secrets", namespace=shared),
            rules=[PolicyRule(apiGroups=[""], resources=["secrets"], verbs=["create", "get"])],
        )
    )
    await local.create(
        RoleBinding(
            metadata=ObjectMeta(name="tenant-secrets", namespace=shared),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io", kind="Role", name="tenant-secrets"
            ),
            subjects=[Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
        )
    )
    assert await _may(tenant.client, "create", "secrets", shared)
    await tenant.client.create(secret_with(ns, "child", {"value": env.kubeconfig_text("child-a")}))
    policy = f"mint-view-{ns}"
    await local.create(
        landing_policy(
            policy,
            namespaces={"names": [ns]},
            mint={
                "clusterRoles": ["view"],
                "clusterWide": True,
                "serviceAccountNamespaces": [ns, shared, MINTED],
            },
        )
    )
    tokens = f"{ns}-tokens"
    asks = {
        name: landing(
            ns,
            name,
            kubeconfigSecretName="child",
            writeKubeconfigSecretName=f"{name}-kubeconfig",
            serviceAccount={"name": tokens, "namespace": where, "clusterRole": "view"},
        )
        for name, where in (("own", ns), ("shared", shared))
    }
    message = await refused_by_webhook(tenant.client, asks["own"])
    assert refusal_of_bind("view") in message
    await may_bind(env, tenant, "view")
    for ask in asks.values():
        await tenant.client.create(ask)
    cond = await wait_reason(local, ns, "own", "NotPermitted")
    assert "the Landing's own namespace" in cond["message"] and MINTED in cond["message"]
    cond = await wait_reason(local, ns, "shared", "NotPermitted")
    assert f"mint namespaces (--mint-namespace: {MINTED})" in cond["message"]
    assert f"not into namespace {shared}" in cond["message"]
    await _still("NotPermitted", env, ns, "own", seconds=2)
    for where in (ns, shared):
        assert await _absent(local, ServiceAccount, tokens, where)
    assert await _owned_by(local, ClusterRoleBinding, None, f"{ns}/") == []

    async def reported() -> bool:
        fenced = (await _policy_status(env, policy)).get("fenced", [])
        for where in (ns, shared):
            assert any(
                f"{where} is not one of the controller's mint namespaces" in e for e in fenced
            )
        return True

    await eventually(reported, timeout=15, what="the policy reports the fenced namespaces")

    # In the mint namespace: minted, and out of the tenant's reach.
    started = time.monotonic()
    await tenant.client.create(
        landing(
            ns,
            "minted",
            kubeconfigSecretName="child",
            writeKubeconfigSecretName="minted-kubeconfig",
            serviceAccount={"name": tokens, "clusterRole": "view"},
        )
    )
    await wait_reason(local, ns, "minted", "Synced", timeout=20)
    measure("mint into the mint namespace->Synced", time.monotonic() - started)
    await local.get(ServiceAccount, tokens, namespace=MINTED)
    assert not await _may(tenant.client, "create", "secrets", MINTED)
    assert not await _may(tenant.client, "create", "serviceaccounts", MINTED, sub="token")
    with pytest.raises(ApiError) as denied:
        await tenant.client.create(
            Secret(
                metadata=ObjectMeta(
                    name=f"{tokens}-legacy",
                    namespace=MINTED,
                    annotations={"kubernetes.io/service-account.name": tokens},
                ),
                type="kubernetes.io/service-account-token",
            )
        )
    assert denied.value.status.code == 403

    started = time.monotonic()
    await local.delete(LandingPolicyResource, policy)
    await wait_reason(local, ns, "minted", "NotPermitted", timeout=15)

    async def revoked() -> bool:
        assert await _absent(local, ServiceAccount, tokens, MINTED)
        assert await _owned_by(local, ClusterRoleBinding, None, f"{ns}/") == []
        return True

    await eventually(revoked, timeout=15, what="minted ServiceAccount revoked")
    measure("mint namespace grant withdrawn->revoked", time.monotonic() - started)


# -- 4. the fence around the controller's namespace --------------------------------------------


async def test_no_policy_opens_the_controller_namespace_to_a_minted_binding(
    env: Env,
    tenant: Tenant,
) -> None:
    """A policy listing moonlander-system in roleNamespaces (and serviceAccountNamespaces)
    with clusterRoles [edit]: edit there (which would read the parent credential) is refused,
    so is a ServiceAccount there; no RoleBinding appears in moonlander-system; the policy's
    status names the fenced entries. edit in another granted namespace is minted."""
    ns = tenant.namespace
    local = env.local
    apps = await _other_namespace(env, "apps")
    await tenant.client.create(secret_with(ns, "child", {"value": env.kubeconfig_text("child-a")}))
    policy = f"edit-{ns}"
    await local.create(
        landing_policy(
            policy,
            namespaces={"names": [ns]},
            mint={
                "clusterRoles": ["edit"],
                "roleNamespaces": [CONTROLLER_NS, apps],
                "serviceAccountNamespaces": [CONTROLLER_NS, MINTED],
            },
        )
    )
    asks: dict[str, dict[str, Any]] = {
        "edit-controller": {"roles": [{"name": "edit", "namespaces": [CONTROLLER_NS]}]},
        "sa-controller": {
            "namespace": CONTROLLER_NS,
            "roles": [{"name": "edit", "namespaces": [apps]}],
        },
    }
    fenced = {
        name: landing(
            ns,
            name,
            kubeconfigSecretName="child",
            writeKubeconfigSecretName=f"{name}-kubeconfig",
            serviceAccount={"name": f"{ns}-{name}", **sa},
        )
        for name, sa in asks.items()
    }
    message = await refused_by_webhook(tenant.client, fenced["edit-controller"])
    assert refusal_of_bind("edit", CONTROLLER_NS) in message
    # The tenant may bind edit even in the controller's namespace (as no real tenant
    # should): the controller's fence holds by itself.
    await may_bind(env, tenant, "edit", CONTROLLER_NS, apps)
    for obj in fenced.values():
        await tenant.client.create(obj)
    cond = await wait_reason(local, ns, "edit-controller", "NotPermitted")
    assert f"never binds roles in its own namespace {CONTROLLER_NS}" in cond["message"]
    cond = await wait_reason(local, ns, "sa-controller", "NotPermitted")
    assert f"never mints ServiceAccounts in its own namespace {CONTROLLER_NS}" in cond["message"]
    await _still("NotPermitted", env, ns, "edit-controller", seconds=2)
    assert await _owned_by(local, RoleBinding, CONTROLLER_NS, f"{ns}/") == []
    assert await _owned_by(local, ServiceAccount, CONTROLLER_NS, f"{ns}/") == []
    assert await _absent(local, ServiceAccount, f"{ns}-edit-controller", MINTED)

    async def reported() -> bool:
        fenced = (await _policy_status(env, policy)).get("fenced", [])
        for field in ("mint.roleNamespaces", "mint.serviceAccountNamespaces"):
            assert any(
                e.startswith(f"{field}: {CONTROLLER_NS} is the controller's own namespace")
                for e in fenced
            ), fenced
        return True

    await eventually(reported, timeout=15, what="the policy reports the controller namespace")

    started = time.monotonic()
    await tenant.client.create(
        landing(
            ns,
            "edit-apps",
            kubeconfigSecretName="child",
            writeKubeconfigSecretName="edit-apps-kubeconfig",
            serviceAccount={
                "name": f"{ns}-edit-apps",
                "roles": [{"name": "edit", "namespaces": [apps]}],
            },
        )
    )
    await wait_reason(local, ns, "edit-apps", "Synced", timeout=20)
    measure("edit in a granted namespace->Synced", time.monotonic() - started)
    assert await _owned_by(local, RoleBinding, apps, f"{ns}/edit-apps") != []
    assert await _owned_by(local, RoleBinding, CONTROLLER_NS, f"{ns}/") == []

    started = time.monotonic()
    await local.delete(LandingPolicyResource, policy)
    await wait_reason(local, ns, "edit-apps", "NotPermitted", timeout=15)

    async def revoked() -> bool:
        assert await _owned_by(local, RoleBinding, apps, f"{ns}/") == []
        assert await _absent(local, ServiceAccount, f"{ns}-edit-apps", MINTED)
        return True

    await eventually(revoked, timeout=15, what="edit binding revoked")
    measure("edit grant withdrawn->revoked", time.monotonic() - started)
    await local.get(Namespace, CONTROLLER_NS)  # still there, untouched
