"""The hostile tenant of the tenancy suites, and the admission webhook it is played against.

A tenant is a ServiceAccount whose only rights are a Role over Landings, LandingSets and
Secrets in its own namespace (``tenant-<hex>``, made in every cluster). Its namespaces carry
``LABEL``, and ``wired`` registers the session controller's admission webhook with the
parent API server for the namespaces that carry it (failurePolicy Fail, as config/webhook
ships it), so every write of the tenant's is admitted by the webhook first and then
authorized by the controller; other suites' namespaces are unaffected. The API server
presents its client certificate to the webhook (moonlander_dev.clusters' admission
configuration), as it must in production (docs/security.md, "The admission webhook").

The webhook asks whether the tenant could bind what a Landing mints (RBAC's escalation
check); a test of the controller's own refusal gives its tenant exactly that (``may_bind``)
so the Landing is admitted and the controller is what decides.

``wired`` and ``tenant`` are fixtures of every e2e module (tests/e2e/conftest.py imports
them)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from moonlander import api

from .harness import PLANTED, eventually, landing

if TYPE_CHECKING:  # conftest imports this module's fixtures
    from .conftest import Env

LABEL = "moonlander-tenancy-webhook"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass
class Tenant:
    namespace: str
    client: AsyncClient  # the tenant's own identity: a Role over Landings and Secrets
    # RBAC given for one test outside the tenant's namespace, deleted after it.
    granted: list[tuple[type, str, str | None]] = field(default_factory=list)


async def _tenant_client(env: Env, namespace: str) -> AsyncClient:
    local = env.local
    await local.create(
        Role(
            metadata=ObjectMeta(name="tenant", namespace=namespace),
            rules=[
                PolicyRule(
                    apiGroups=[api.GROUP],
                    resources=["landings", "landingsets"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                ),
                PolicyRule(
                    apiGroups=[""],
                    resources=["secrets"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                ),
            ],
        )
    )
    await local.create(ServiceAccount(metadata=ObjectMeta(name="tenant", namespace=namespace)))
    await local.create(
        RoleBinding(
            metadata=ObjectMeta(name="tenant", namespace=namespace),
            roleRef=RoleRef(apiGroup=RBAC_GROUP, kind="Role", name="tenant"),
            subjects=[Subject(kind="ServiceAccount", name="tenant", namespace=namespace)],
        )
    )
    token = (
        await local.create(
            ServiceAccount.Token(metadata=ObjectMeta(), spec={"audiences": []}),  # type: ignore[arg-type]
            name="tenant",
            namespace=namespace,
        )
    ).status.token
    PLANTED.append(token)
    parent = env.plane["parent"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "p",
                "cluster": {
                    "server": parent.url,
                    "certificate-authority-data": base64.b64encode(parent.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "tenant", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "p", "user": "tenant"}}],
        "current-context": "t",
    }
    return AsyncClient(KubeConfig.from_dict(config), field_manager="tenant")


async def checked_namespace(env: Env, prefix: str, *, everywhere: bool = False) -> str:
    """A fresh namespace ``<prefix>-<hex>`` the webhook checks (in the parent, or in every
    cluster)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    clients = env.admin.values() if everywhere else [env.local]
    for client in clients:
        await client.create(Namespace(metadata=ObjectMeta(name=name, labels={LABEL: "true"})))
    return name


def _webhook(env: Env, name: str, path: str, resource: str) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {
            "url": env.webhook.url(path),
            "caBundle": base64.b64encode(env.webhook.ca_pem).decode(),
        },
        "rules": [
            {
                "apiGroups": [api.GROUP],
                "apiVersions": [api.VERSION],
                "operations": ["CREATE", "UPDATE"],
                "resources": [resource],
            }
        ],
        "namespaceSelector": {"matchLabels": {LABEL: "true"}},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
    }


@pytest.fixture(scope="session")
async def wired(env: Env) -> AsyncIterator[None]:
    """The webhook registered as config/webhook ships it, for the labelled namespaces, in
    force (the API server calls it) before the first tenant writes anything."""
    name = f"moonlander-tenancy-{secrets.token_hex(3)}"
    await env.local.create(
        ValidatingWebhookConfiguration.from_dict(
            {
                "metadata": {"name": name},
                "webhooks": [
                    _webhook(env, "landings.moons.kingdon.ci", "/validate", "landings"),
                    _webhook(
                        env, "landingsets.moons.kingdon.ci", "/validate-landingset", "landingsets"
                    ),
                ],
            }
        )
    )
    probe = await checked_namespace(env, "wh-probe")

    async def in_force() -> bool:
        with pytest.raises(ApiError) as err:
            await env.local.create(landing(probe, "imds", server="https://169.254.169.254"))
        assert "admission webhook" in (err.value.status.message or "")
        return True

    await eventually(in_force, timeout=30, interval=0.5, what="the API server calls the webhook")
    yield
    await env.local.delete(ValidatingWebhookConfiguration, name)


async def _new_tenant(env: Env, labels: dict[str, str]) -> Tenant:
    name = f"tenant-{secrets.token_hex(3)}"
    for client in env.admin.values():
        await client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels or None)))
    return Tenant(name, await _tenant_client(env, name))


async def _close(env: Env, tenant: Tenant) -> None:
    for kind, name, namespace in reversed(tenant.granted):
        await env.local.delete(kind, name, namespace=namespace)
    await tenant.client._client._client.aclose()


@pytest.fixture
async def tenant(env: Env, wired: None) -> AsyncIterator[Tenant]:
    """Namespace tenant-<hex> in every cluster, checked by the webhook, with no
    LandingPolicy, and its identity."""
    made = await _new_tenant(env, {LABEL: "true"})
    yield made
    await _close(env, made)


@pytest.fixture
async def unchecked_tenant(env: Env) -> AsyncIterator[Tenant]:
    """The same tenant in a namespace the webhook does not check (for suites that test
    what the controller reports of specs the webhook would refuse first)."""
    made = await _new_tenant(env, {})
    yield made
    await _close(env, made)


def refusal_of_bind(role: str, namespace: str | None = None) -> str:
    """What the webhook says of a tenant who may not bind ClusterRole ``role`` there."""
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    return f"may not bind clusterroles {role} {where}"


async def refused_by_webhook(client: AsyncClient, obj: Any) -> str:
    """The webhook's refusal of ``obj`` at admission (fails when it is admitted)."""
    with pytest.raises(ApiError) as err:
        await client.create(obj)
    message = err.value.status.message or ""
    assert "admission webhook" in message, message
    return message


async def may_bind(env: Env, tenant: Tenant, role: str, *namespaces: str) -> None:
    """Gives the tenant ``bind`` on ClusterRole ``role`` in each of ``namespaces`` (none:
    cluster-wide), as Kubernetes' escalation check requires of whoever binds it, and waits
    until the API server's authorizer says so. It gives nothing else: the tenant still may
    not create a binding itself."""
    ns = tenant.namespace
    name = f"bind-{role}-{ns}"
    rule = PolicyRule(
        apiGroups=[RBAC_GROUP], resources=["clusterroles"], verbs=["bind"], resourceNames=[role]
    )
    await env.local.create(ClusterRole(metadata=ObjectMeta(name=name), rules=[rule]))
    tenant.granted.append((ClusterRole, name, None))
    role_ref = RoleRef(apiGroup=RBAC_GROUP, kind="ClusterRole", name=name)
    subjects = [Subject(kind="ServiceAccount", name="tenant", namespace=ns)]
    if not namespaces:
        await env.local.create(
            ClusterRoleBinding(metadata=ObjectMeta(name=name), roleRef=role_ref, subjects=subjects)
        )
        tenant.granted.append((ClusterRoleBinding, name, None))
    for where in namespaces:
        await env.local.create(
            RoleBinding(
                metadata=ObjectMeta(name=name, namespace=where), roleRef=role_ref, subjects=subjects
            )
        )
        tenant.granted.append((RoleBinding, name, where))

    async def in_force() -> bool:
        for where in namespaces or (None,):
            review = await tenant.client.create(
                SelfSubjectAccessReview(
                    spec=SelfSubjectAccessReviewSpec(
                        resourceAttributes=ResourceAttributes(
                            verb="bind",
                            group=RBAC_GROUP,
                            resource="clusterroles",
                            name=role,
                            namespace=where,
                        )
                    )
                )
            )
            assert review.status and review.status.allowed, (role, where)
        return True

    await eventually(in_force, timeout=15, what=f"the tenant may bind {role}")
