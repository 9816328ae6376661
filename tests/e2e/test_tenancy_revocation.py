"""The tenant of test_tenancy.py again (a Role over Landings, LandingSets and Secrets in its
own namespace, against the controller on exactly the shipped RBAC, with its admission webhook
wired into the parent API server for the tenant's namespaces: tests/e2e/tenants.py), on what
issue 23 found past the first round: a grant withdrawn is revoked whatever the Landing's
``suspend`` and ``deletionPolicy`` (finding 5); a Landing is woken only by Secrets it may
read (finding 6); a cluster a tenant names is no port scanner, in statuses, Events or
/metrics (finding 7). A minting Landing is first refused by the webhook (the tenant may not
bind ``view``); the tenant is then given ``bind`` on it, so that the revocations shown are
the controller's."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Event, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, Role, RoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.api import DEFAULT_MINT_NAMESPACE
from moonlander.controller.errors import UNREACHABLE
from moonlander.kube.resources import LandingPolicyResource, LandingResource

from .conftest import Env
from .harness import (
    FaultProxy,
    decoded,
    eventually,
    kubeconfig_with_server,
    landing,
    landing_gone,
    landing_policy,
    measure,
    ready_condition,
    secret_with,
    wait_reason,
)
from .tenants import Tenant, may_bind, refusal_of_bind, refused_by_webhook
from .test_security import RecordingServer
from .test_tenancy import _absent, _other_namespace, _still

pytestmark = pytest.mark.e2e


async def _landing(env: Env, namespace: str, name: str) -> Any:
    return await env.local.get(LandingResource, name, namespace=namespace)


async def _suspend(tenant: Tenant, name: str) -> None:
    await tenant.client.patch(
        LandingResource,
        name,
        {"spec": {"suspend": True}},
        namespace=tenant.namespace,
        patch_type=PatchType.MERGE,
    )


async def _revoked(env: Env, namespace: str, name: str) -> dict[str, Any]:
    """The Landing says its grant is gone and what it had landed was revoked."""
    obj = await _landing(env, namespace, name)
    status = obj.status or {}
    assert status.get("landed") is None, status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NotPermitted", ready
    return dict(ready)


# -- finding 5: suspend and Orphan keep nothing whose grant is gone -----------------------------


async def _landed_parent_credential(
    env: Env, tenant: Tenant, name: str, kubeconfig: str | None = None, **spec: Any
) -> str:
    """A ParentToChild Landing of the tenant's into child-a (``kubeconfig``: the source,
    child-a's admin kubeconfig by default), landed under a parentCredential policy; the
    policy's name."""
    ns = tenant.namespace
    source = kubeconfig or env.kubeconfig_text("child-a")
    await tenant.client.create(secret_with(ns, f"{name}-child", {"value": source}))
    policy = f"parent-{name}-{ns}"
    await env.local.create(
        landing_policy(policy, namespaces={"names": [ns]}, parentCredential=True)
    )
    await tenant.client.create(
        landing(
            ns,
            name,
            kubeconfigSecretName=f"{name}-child",
            writeKubeconfigSecretName=f"{name}-kubeconfig",
            **spec,
        )
    )
    await wait_reason(env.local, ns, name, "Synced", timeout=20)
    await env.admin["child-a"].get(Secret, f"{name}-kubeconfig", namespace=ns)
    return policy


async def test_a_suspended_landing_loses_what_its_withdrawn_grant_gave(
    env: Env, tenant: Tenant
) -> None:
    """Suspended, then the operator withdraws parentCredential: the landed parent credential
    is deleted from the child within seconds, and the Landing says so. Granted again while
    suspended, it stays suspended and lands nothing."""
    ns = tenant.namespace
    child = env.admin["child-a"]
    policy = await _landed_parent_credential(env, tenant, "held")
    await _suspend(tenant, "held")
    await wait_reason(env.local, ns, "held", "Suspended")
    assert not await _absent(child, Secret, "held-kubeconfig", ns)  # suspending keeps it

    started = time.monotonic()
    await env.local.delete(LandingPolicyResource, policy)

    async def gone() -> bool:
        assert await _absent(child, Secret, "held-kubeconfig", ns)
        return True

    await eventually(gone, timeout=30, interval=0.05, what="landed parent credential deleted")
    elapsed = time.monotonic() - started
    measure("suspended: policy withdrawn->Secret deleted", elapsed)
    ready = await eventually(
        lambda: _revoked(env, ns, "held"), timeout=30, what="NotPermitted, revoked"
    )
    assert "parentCredential" in ready["message"], ready

    async def told() -> bool:  # the transition's Event says what happened
        events = await _events(env, ns, "held")
        assert any(
            reason == "NotPermitted" and "what it had landed was revoked" in message
            for _, reason, message in events
        ), events
        return True

    await eventually(told, timeout=30, what="a NotPermitted Event saying it was revoked")
    assert elapsed < 10.0, elapsed  # seconds, even on a loaded machine

    # A grant back while suspended: suspended again, and nothing is landed.
    await env.local.create(
        landing_policy(f"{policy}-again", namespaces={"names": [ns]}, parentCredential=True)
    )
    await wait_reason(env.local, ns, "held", "Suspended", timeout=30)
    await _still("Suspended", env, ns, "held", seconds=2)
    assert await _absent(child, Secret, "held-kubeconfig", ns)


class _Minted:
    """A ParentToChild minting Landing of the tenant's, landed under a mint policy: a
    ServiceAccount in the parent's mint namespace bound to ``view`` cluster-wide, its token
    landed in child-a."""

    def __init__(self, env: Env, tenant: Tenant, name: str) -> None:
        self.env = env
        self.tenant = tenant
        self.name = name
        self.policy = f"mint-{name}-{tenant.namespace}"
        self.service_account = f"{tenant.namespace}-{name}"
        self.token: AsyncClient | None = None

    async def land(self, spec: dict[str, Any] | None = None, **grants: Any) -> None:
        ns = self.tenant.namespace
        await self.tenant.client.create(
            secret_with(ns, f"{self.name}-child", {"value": self.env.kubeconfig_text("child-a")})
        )
        await self.env.local.create(
            landing_policy(
                self.policy,
                namespaces={"names": [ns]},
                mint={
                    "clusterRoles": ["view"],
                    "clusterWide": True,
                    "serviceAccountNamespaces": [DEFAULT_MINT_NAMESPACE],
                    "maxExpirationSeconds": 3600,
                },
                **grants,
            )
        )
        minting = landing(
            ns,
            self.name,
            kubeconfigSecretName=f"{self.name}-child",
            writeKubeconfigSecretName=f"{self.name}-kubeconfig",
            serviceAccount={
                "name": self.service_account,
                "namespace": DEFAULT_MINT_NAMESPACE,
                "clusterRole": "view",
            },
            **(spec or {}),
        )
        # The webhook refuses it to a tenant who may not bind view; bind is what RBAC asks.
        message = await refused_by_webhook(self.tenant.client, minting)
        assert refusal_of_bind("view") in message
        await may_bind(self.env, self.tenant, "view")
        await self.tenant.client.create(minting)
        await wait_reason(self.env.local, ns, self.name, "Synced", timeout=20)
        landed = await self.env.admin["child-a"].get(
            Secret, f"{self.name}-kubeconfig", namespace=ns
        )
        self.token = AsyncClient(KubeConfig.from_dict(yaml.safe_load(decoded(landed, "value"))))
        await self.token.create(SelfSubjectReview(metadata=ObjectMeta()))  # the token works
        assert await self.bindings()

    async def bindings(self) -> list[str]:
        owner = f"{self.tenant.namespace}/{self.name}"
        return [
            str(b.metadata.name)
            async for b in self.env.local.list(
                ClusterRoleBinding, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
            )
            if (b.metadata.annotations or {}).get(api.OWNER_ANNOTATION) == owner
        ]

    async def identity_gone(self) -> bool:
        sa, ns = self.service_account, DEFAULT_MINT_NAMESPACE
        assert await _absent(self.env.local, ServiceAccount, sa, ns)
        assert await self.bindings() == []
        return True

    async def token_refused(self) -> bool:
        assert self.token is not None
        try:
            await self.token.create(SelfSubjectReview(metadata=ObjectMeta()))
        except ApiError as err:
            return err.status.code == 401
        return False

    async def close(self) -> None:
        if self.token is not None:
            await self.token._client._client.aclose()


async def test_a_suspended_minting_landing_loses_its_identity_and_token(
    env: Env, tenant: Tenant
) -> None:
    """A minted ServiceAccount, its binding and the landed token: all revoked when the mint
    grant is withdrawn while the Landing is suspended; the token is refused (401)."""
    ns = tenant.namespace
    robot = _Minted(env, tenant, "robot")
    try:
        await robot.land()
        await _suspend(tenant, "robot")
        await wait_reason(env.local, ns, "robot", "Suspended")

        started = time.monotonic()
        await env.local.delete(LandingPolicyResource, robot.policy)

        async def revoked() -> bool:
            assert await robot.identity_gone()
            assert await _absent(env.admin["child-a"], Secret, "robot-kubeconfig", ns)
            return True

        await eventually(revoked, timeout=30, interval=0.05, what="minted identity revoked")
        elapsed = time.monotonic() - started
        measure("suspended minting: policy withdrawn->revoked", elapsed)
        assert elapsed < 10.0, elapsed  # seconds, even on a loaded machine
        # kube-apiserver caches a token's successful authentication for 10 s.
        await eventually(robot.token_refused, timeout=20, what="the minted token refused")
        measure("suspended minting: policy withdrawn->token refused", time.monotonic() - started)
        await eventually(lambda: _revoked(env, ns, "robot"), timeout=30, what="NotPermitted")
    finally:
        await robot.close()


async def test_editing_the_landing_keeps_no_minted_identity(env: Env, tenant: Tenant) -> None:
    """The tenant tries to keep its minted identity past the grant: suspends, deletes its
    source Secret (revoking in the child needs it) and drops serviceAccount from the spec
    (still permitted: the policy grants parentCredential too). The ServiceAccount and binding
    in the parent still go when the grant is withdrawn (as the status recorded them), and
    the token stops working. The Landing holds its source Secret (docs/api.md): deleting it
    would revoke everything at once, so the tenant, who may patch its Secrets, drops the hold
    first."""
    ns = tenant.namespace
    robot = _Minted(env, tenant, "sly")
    try:
        await robot.land(parentCredential=True)
        await _suspend(tenant, "sly")
        await wait_reason(env.local, ns, "sly", "Suspended")
        await tenant.client.patch(
            Secret,
            "sly-child",
            {"metadata": {"finalizers": None}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        await tenant.client.delete(Secret, "sly-child", namespace=ns)
        await tenant.client.patch(
            LandingResource,
            "sly",
            {"spec": {"serviceAccount": None}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        await asyncio.sleep(1.0)
        assert not await _absent(
            env.local, ServiceAccount, robot.service_account, DEFAULT_MINT_NAMESPACE
        )
        started = time.monotonic()
        await env.local.delete(LandingPolicyResource, robot.policy)
        await eventually(robot.identity_gone, timeout=30, interval=0.05, what="identity revoked")
        measure(
            "edited minting Landing: policy withdrawn->identity revoked", time.monotonic() - started
        )
        await eventually(robot.token_refused, timeout=20, what="the minted token refused")
        # The Secret in the child cannot be reached without the source: the Landing says so.
        cond = await wait_reason(env.local, ns, "sly", "NotPermitted")
        assert "could not be revoked yet" in cond["message"], cond
    finally:
        await robot.close()


async def test_orphan_does_not_keep_what_a_withdrawn_grant_gave(env: Env, tenant: Tenant) -> None:
    """Suspended, the grant withdrawn, then set to Orphan and deleted: nothing remains in the
    child."""
    ns = tenant.namespace
    child = env.admin["child-a"]
    policy = await _landed_parent_credential(env, tenant, "orph")
    await _suspend(tenant, "orph")
    await wait_reason(env.local, ns, "orph", "Suspended")
    started = time.monotonic()
    await env.local.delete(LandingPolicyResource, policy)
    await wait_reason(env.local, ns, "orph", "NotPermitted", timeout=30)
    await tenant.client.patch(
        LandingResource,
        "orph",
        {"spec": {"deletionPolicy": "Orphan"}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    await tenant.client.delete(LandingResource, "orph", namespace=ns)

    async def nothing_left() -> bool:
        assert await landing_gone(env.local, ns, "orph")
        assert await _absent(child, Secret, "orph-kubeconfig", ns)
        return True

    await eventually(nothing_left, timeout=30, interval=0.05, what="Orphan revoked and released")
    measure("suspended, withdrawn, Orphan, deleted->nothing left", time.monotonic() - started)


async def test_orphan_does_not_release_what_it_may_no_longer_keep(env: Env, tenant: Tenant) -> None:
    """Deleted with Orphan after its grant was withdrawn while the child did not answer (so
    nothing could be revoked yet): the Landing is not released with the credential left
    behind; it says why, and once the child answers the Secret is deleted and it goes."""
    ns = tenant.namespace
    child = env.admin["child-a"]
    proxy = FaultProxy(env.plane["child-a"].port)
    await proxy.start()
    try:
        via_proxy = kubeconfig_with_server(
            env.kubeconfig_text("child-a"), f"https://127.0.0.1:{proxy.port}"
        )
        policy = await _landed_parent_credential(
            env, tenant, "stuck", via_proxy, deletionPolicy="Orphan"
        )
        await _suspend(tenant, "stuck")
        await wait_reason(env.local, ns, "stuck", "Suspended")
        proxy.cut()
        await env.local.delete(LandingPolicyResource, policy)
        await tenant.client.delete(LandingResource, "stuck", namespace=ns)

        async def says_why() -> dict[str, Any]:
            cond = await ready_condition(env.local, ns, "stuck")
            assert cond is not None and "Orphan does not keep it" in cond["message"], cond
            return cond

        await eventually(says_why, timeout=60, what="the deletion waits on revoking")
        assert not await landing_gone(env.local, ns, "stuck")
        proxy.restore()

        async def nothing_left() -> bool:
            assert await landing_gone(env.local, ns, "stuck")
            assert await _absent(child, Secret, "stuck-kubeconfig", ns)
            return True

        await eventually(nothing_left, timeout=60, interval=0.2, what="revoked, then released")
    finally:
        await proxy.close()


async def test_orphan_keeps_what_is_still_granted(env: Env, tenant: Tenant) -> None:
    ns = tenant.namespace
    child = env.admin["child-a"]
    await _landed_parent_credential(env, tenant, "kept", deletionPolicy="Orphan")
    await tenant.client.delete(LandingResource, "kept", namespace=ns)
    await eventually(lambda: landing_gone(env.local, ns, "kept"), timeout=30, what="released")
    landed = await child.get(Secret, "kept-kubeconfig", namespace=ns)
    assert (landed.metadata.annotations or {}).get(api.OWNER_ANNOTATION) == f"{ns}/kept"


async def test_orphan_keeps_no_minted_identity(env: Env, tenant: Tenant) -> None:
    """Deleted with Orphan while still granted: the landed Secret stays, but the identity
    minted with the parent's rights goes (no Landing would renew it, nor revoke it when the
    grant is withdrawn later), and its token stops working."""
    ns = tenant.namespace
    robot = _Minted(env, tenant, "loose")
    try:
        await robot.land({"deletionPolicy": "Orphan"})
        await tenant.client.delete(LandingResource, "loose", namespace=ns)
        await eventually(lambda: landing_gone(env.local, ns, "loose"), timeout=30, what="gone")
        await eventually(robot.identity_gone, timeout=30, interval=0.05, what="identity revoked")
        await env.admin["child-a"].get(Secret, "loose-kubeconfig", namespace=ns)  # kept
        await eventually(robot.token_refused, timeout=20, what="the minted token refused")
    finally:
        await robot.close()


async def test_a_forged_hold_makes_no_refused_landing_call_out(env: Env, tenant: Tenant) -> None:
    """The controller revokes what a Landing may have landed before its status recorded it
    on the strength of the Landing's hold on its source Secret (soak finding 5); a tenant can
    put that finalizer on its own Secret by hand. A Landing refused its grant (ParentToChild
    with no parentCredential) whose source carries a forged hold, its source then deleted
    and then itself: the cluster its source names is never called, and both go."""
    ns = tenant.namespace
    listener = _PlainHttp()
    await listener.start()
    try:
        url = f"https://127.0.0.1:{listener.port}"
        source = kubeconfig_with_server(env.kubeconfig_text("child-a"), url)
        await tenant.client.create(secret_with(ns, "forged-src", {"value": source}))
        await tenant.client.create(landing(ns, "forged", kubeconfigSecretName="forged-src"))
        await wait_reason(env.local, ns, "forged", "NotPermitted")
        uid = (await _landing(env, ns, "forged")).metadata.uid
        await tenant.client.patch(
            Secret,
            "forged-src",
            {"metadata": {"finalizers": [f"landing.{api.GROUP}/{uid}"]}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        await tenant.client.delete(Secret, "forged-src", namespace=ns)
        await asyncio.sleep(2.0)  # the Landing, woken by its source going, reconciles
        await tenant.client.delete(LandingResource, "forged", namespace=ns)
        await eventually(lambda: landing_gone(env.local, ns, "forged"), timeout=30, what="gone")
        await eventually(
            lambda: _absent(env.local, Secret, "forged-src", ns), timeout=30, what="released"
        )
        await asyncio.sleep(1.0)  # anything sent off the reconcile would have been by now
        assert listener.connections == 0
    finally:
        await listener.close()


# -- finding 6: no wake oracle on other namespaces' Secrets ------------------------------------


def _reconciles(env: Env, key: str) -> int:
    """How often the controller has reconciled ``key`` (its DEBUG log names each one)."""
    return env.controller.log().count(f" {key}: reconciling")


async def _forge(tenant: Tenant, name: str) -> str:
    """The tenant writes its Landing's status itself (a tenant Role over ``landings/*``
    allows it); the resourceVersion after the write."""
    forged = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Forged",
                "message": "forged by the tenant",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    obj = await tenant.client.patch(
        LandingResource.Status,
        name,
        {"status": forged},
        namespace=tenant.namespace,
        patch_type=PatchType.MERGE,
    )
    return str(obj.metadata.resourceVersion)


async def _may_write_status(env: Env, tenant: Tenant) -> None:
    """The strongest tenant: its Role covers its Landings' status as well."""
    ns = tenant.namespace
    await env.local.create(
        Role(
            metadata=ObjectMeta(name="tenant-status", namespace=ns),
            rules=[
                PolicyRule(
                    apiGroups=[api.GROUP], resources=["landings/status"], verbs=["get", "patch"]
                )
            ],
        )
    )
    await env.local.create(
        RoleBinding(
            metadata=ObjectMeta(name="tenant-status", namespace=ns),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io", kind="Role", name="tenant-status"
            ),
            subjects=[Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
        )
    )


async def _untouched(env: Env, tenant: Tenant, name: str, version: str, runs: int) -> None:
    """For two seconds: the forged status stays, nothing is written, nothing reconciled."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        obj = await tenant.client.get(LandingResource, name, namespace=tenant.namespace)
        assert obj.metadata.resourceVersion == version, obj.status
        assert _reconciles(env, f"{tenant.namespace}/{name}") == runs
        await asyncio.sleep(0.2)


async def test_another_namespaces_secret_does_not_wake_a_landing_it_may_not_read(
    env: Env, tenant: Tenant
) -> None:
    """The tenant names tenant-b/some-secret and forges its Landing's status: creating,
    changing and deleting that Secret (not granting it) wakes nothing, so the status stays
    forged; a granting Secret wakes it, and so does taking the grant back."""
    ns = tenant.namespace
    other = await _other_namespace(env, "tenant-b")
    await _may_write_status(env, tenant)
    await tenant.client.create(
        landing(
            ns,
            "spy",
            kubeconfigSecretNamespace=other,
            kubeconfigSecretName="some-secret",
            direction="ChildToParent",
        )
    )
    await wait_reason(env.local, ns, "spy", "CrossNamespaceNotAllowed")
    await asyncio.sleep(0.5)
    key = f"{ns}/spy"
    version = await _forge(tenant, "spy")
    runs = _reconciles(env, key)
    await _untouched(env, tenant, "spy", version, runs)  # a status write wakes nothing

    kubeconfig = {"value": env.kubeconfig_text("child-b")}
    await env.local.create(secret_with(other, "some-secret", kubeconfig))
    await _untouched(env, tenant, "spy", version, runs)
    await env.local.patch(
        Secret,
        "some-secret",
        {"metadata": {"labels": {"rotated": "yes"}}, "stringData": {"value": "changed"}},
        namespace=other,
        patch_type=PatchType.MERGE,
    )
    await _untouched(env, tenant, "spy", version, runs)
    await env.local.delete(Secret, "some-secret", namespace=other)
    await _untouched(env, tenant, "spy", version, runs)

    # Granted: woken at once (the tenant may read it now), and it lands.
    granting = {api.ALLOWED_NAMESPACES_ANNOTATION: ns}
    await env.local.create(secret_with(other, "some-secret", kubeconfig, annotations=granting))
    await wait_reason(env.local, ns, "spy", "Synced", timeout=30)
    assert _reconciles(env, key) > runs
    # The grant taken back: woken again (it had access until now).
    version = await _forge(tenant, "spy")
    await env.local.patch(
        Secret,
        "some-secret",
        {"metadata": {"annotations": {api.ALLOWED_NAMESPACES_ANNOTATION: None}}},
        namespace=other,
        patch_type=PatchType.MERGE,
    )
    await wait_reason(env.local, ns, "spy", "CrossNamespaceNotAllowed", timeout=30)


def _normalized(value: Any, *names: str) -> Any:
    """A status or Event with the names that differ and every timestamp taken out."""
    if isinstance(value, dict):
        return {
            k: _normalized(v, *names)
            for k, v in value.items()
            if k not in ("lastTransitionTime", "lastSyncTime")
        }
    if isinstance(value, (list, tuple)):
        return [_normalized(v, *names) for v in value]
    if isinstance(value, str):
        for name in names:
            value = value.replace(name, "X")
    return value


async def _events(env: Env, namespace: str, name: str) -> list[tuple[str, str, str]]:
    return sorted(
        [
            (str(e.type), str(e.reason), str(e.message))
            async for e in env.local.list(Event, namespace=namespace)
            if e.involvedObject.name == name
        ]
    )


async def test_a_refused_landing_reads_the_same_whether_the_secret_exists(
    env: Env, tenant: Tenant
) -> None:
    """Status (timestamps aside, no lastSyncTime) and Events of a Landing naming another
    namespace's existing Secret and one naming a Secret that does not exist: the same."""
    ns = tenant.namespace
    other = await _other_namespace(env, "tenant-b")
    await env.local.create(secret_with(other, "exists", {"value": env.kubeconfig_text("child-b")}))
    for name, source in (("probe-exists", "exists"), ("probe-absent", "absent")):
        await tenant.client.create(
            landing(
                ns,
                name,
                kubeconfigSecretNamespace=other,
                kubeconfigSecretName=source,
                direction="ChildToParent",
            )
        )
    for name in ("probe-exists", "probe-absent"):
        await wait_reason(env.local, ns, name, "CrossNamespaceNotAllowed")
    await asyncio.sleep(1.0)  # Events are posted after the status
    exists = await _landing(env, ns, "probe-exists")
    absent = await _landing(env, ns, "probe-absent")
    assert "lastSyncTime" not in exists.status and "lastSyncTime" not in absent.status
    assert _normalized(exists.status, "exists") == _normalized(absent.status, "absent")
    events = [
        _normalized(await _events(env, ns, name), source)
        for name, source in (("probe-exists", "exists"), ("probe-absent", "absent"))
    ]
    assert events[0] == events[1] and len(events[0]) == 1, events


# -- finding 7: no network oracle --------------------------------------------------------------


class _PlainHttp:
    """A plain-HTTP loopback server: answers anything with 400, as a web server would, and
    counts the connections made to it."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError):
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_tenant_named_cluster_is_no_port_scanner(env: Env, tenant: Tenant) -> None:
    """ChildToParent sources naming a closed loopback port, a plain-HTTP server, a TLS server
    of another CA, a port that accepts and never answers, and a host that does not resolve:
    the same reason, message and Event for all five, told after the same delay, none of
    their URLs in /metrics, the why in the controller's log. With sourceNetworks naming
    loopback, the why is told."""
    ns = tenant.namespace
    plain = _PlainHttp()
    await plain.start()
    tls = RecordingServer()
    await tls.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        servers = {
            "closed": f"https://127.0.0.1:{_closed_port()}",
            "plain": f"https://127.0.0.1:{plain.port}",
            "otherca": f"https://127.0.0.1:{tls.port}",
            "silent": f"https://127.0.0.1:{silent.getsockname()[1]}",
            "nohost": "https://nonexistent.invalid:6443",
        }
        child = env.kubeconfig_text("child-b")
        for name, url in servers.items():
            await tenant.client.create(
                secret_with(ns, f"{name}-src", {"value": kubeconfig_with_server(child, url)})
            )
        created: dict[str, float] = {}
        for name in servers:
            await tenant.client.create(
                landing(ns, name, kubeconfigSecretName=f"{name}-src", direction="ChildToParent")
            )
            created[name] = time.monotonic()
        conditions: dict[str, dict[str, Any]] = {}
        told_after: dict[str, float] = {}

        async def told(name: str) -> None:
            conditions[name] = await wait_reason(
                env.local, ns, name, "ClusterUnreachable", timeout=40
            )
            told_after[name] = time.monotonic() - created[name]

        await asyncio.gather(*(told(name) for name in servers))
        # When it is told says no more than what is: all after the same delay (a call's
        # deadline, 10 s), the closed port's as late as the silent one's.
        for name, seconds in told_after.items():
            measure(f"unvouched {name} -> ClusterUnreachable", seconds)
        assert max(told_after.values()) - min(told_after.values()) < 1.5, told_after
        assert min(told_after.values()) > 9.0, told_after
        await asyncio.sleep(1.0)  # the Events of the last ones
        told = {(c["reason"], c["message"], c["status"]) for c in conditions.values()}
        assert told == {("ClusterUnreachable", UNREACHABLE, "False")}, conditions
        events = {name: await _events(env, ns, name) for name in servers}
        assert len({tuple(e) for e in events.values()}) == 1, events
        assert events["closed"] == [("Warning", "ClusterUnreachable", UNREACHABLE)], events
        _, metrics = env.controller.http_get("/metrics")
        for url in servers.values():
            host_port = url.removeprefix("https://")
            assert host_port not in metrics, host_port
        # The operator reads why, in the controller's log.
        log = "\n".join(line for line in env.controller.log().splitlines() if ns in line)
        for detail in ("Errno 111", "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED", "TLS"):
            assert detail in log, detail
        assert re.search(r"nonexistent\.invalid.*(resolve|Name or service)", log)

        # Vouched for: a policy naming the network shows why.
        await env.local.create(
            landing_policy(
                f"networks-{ns}", namespaces={"names": [ns]}, sourceNetworks=["127.0.0.0/8"]
            )
        )

        async def told_why() -> bool:
            cond = await ready_condition(env.local, ns, "closed")
            assert cond is not None and "Errno 111" in cond["message"], cond
            return True

        await eventually(told_why, timeout=20, what="the closed port named as such")
    finally:
        silent.close()
        await plain.close()
        await tls.close()
