"""Landings hold their source Secret while revoking needs it (controller.holds; soak
finding 1): the finalizer ``landing.moons.kingdon.ci/<uid>`` on the Secret, accepted by a
real API server, added before anything is landed, released after a revoke, on an Orphan
release, when the spec names another Secret and when the Landing is deleted; a held Secret
being deleted is revoked through and then goes. Played as the trusted operator and as the
hostile tenant of tests/e2e/tenants.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from moonlander import api
from moonlander.controller import holds
from moonlander.kube.resources import LandingResource

from .conftest import Env
from .harness import (
    eventually,
    landing,
    landing_gone,
    landing_policy,
    measure,
    secret_with,
    wait_reason,
)
from .tenants import Tenant
from .test_tenancy import _absent, _other_namespace

pytestmark = pytest.mark.e2e


async def _finalizers(client: AsyncClient, namespace: str, name: str) -> list[str]:
    secret = await client.get(Secret, name, namespace=namespace)
    assert secret.metadata is not None
    return list(secret.metadata.finalizers or ())


async def _uid(env: Env, namespace: str, name: str) -> str:
    obj = await env.local.get(LandingResource, name, namespace=namespace)
    return str(obj.metadata.uid)


async def _landed(
    env: Env, client: AsyncClient, namespace: str, name: str, source: str, **spec: Any
) -> str:
    """A ParentToChild Landing into child-a from Secret ``source``, Synced; its uid."""
    await client.create(
        landing(
            namespace,
            name,
            kubeconfigSecretName=source,
            writeKubeconfigSecretName=f"{name}-kubeconfig",
            **spec,
        )
    )
    await wait_reason(env.local, namespace, name, "Synced", timeout=30)
    await env.admin["child-a"].get(Secret, f"{name}-kubeconfig", namespace=namespace)
    return await _uid(env, namespace, name)


async def test_a_deleted_source_is_revoked_through_then_goes(env: Env, namespace: str) -> None:
    """A standalone ParentToChild Landing: its source Secret carries its hold (the API server
    accepts the name); deleting the Secret revokes the landed parent kubeconfig in the child
    through the still-readable Secret, then the Secret goes, and the Landing says why."""
    local, child = env.local, env.admin["child-a"]
    await local.create(
        secret_with(namespace, "solo-child", {"value": env.kubeconfig_text("child-a")})
    )
    uid = await _landed(env, local, namespace, "solo", "solo-child")
    assert await _finalizers(local, namespace, "solo-child") == [holds.finalizer(uid)]

    started = time.monotonic()
    await local.delete(Secret, "solo-child", namespace=namespace)

    async def revoked() -> bool:
        assert await _absent(child, Secret, "solo-kubeconfig", namespace)
        return True

    await eventually(revoked, timeout=20, interval=0.05, what="landed Secret revoked")
    measure(
        "source Secret deleted -> landed Secret revoked (standalone)", time.monotonic() - started
    )

    async def source_gone() -> bool:
        assert await _absent(local, Secret, "solo-child", namespace)
        return True

    await eventually(source_gone, timeout=20, interval=0.05, what="the source Secret gone")
    measure("source Secret deleted -> Secret gone (standalone)", time.monotonic() - started)
    ready = await wait_reason(local, namespace, "solo", "SourceSecretNotFound", timeout=20)
    obj = await local.get(LandingResource, "solo", namespace=namespace)
    assert (obj.status or {}).get("landed") is None, obj.status
    # Said while it was being deleted, or (once gone) that it does not exist.
    assert "solo-child" in ready["message"], ready

    # The tenant's access back: a new Secret lands again, and is held again.
    await local.create(
        secret_with(namespace, "solo-child", {"value": env.kubeconfig_text("child-a")})
    )
    await wait_reason(local, namespace, "solo", "Synced", timeout=30)
    await eventually(
        lambda: _has(local, namespace, "solo-child", holds.finalizer(uid)), what="held again"
    )


async def test_a_suspended_landing_revokes_through_a_source_being_deleted(
    env: Env, namespace: str
) -> None:
    """Suspended keeps nothing past its source: the Secret deleted, what was landed is
    revoked and the Secret goes, the Landing still suspended."""
    local, child = env.local, env.admin["child-a"]
    await local.create(
        secret_with(namespace, "paused-child", {"value": env.kubeconfig_text("child-a")})
    )
    await _landed(env, local, namespace, "paused", "paused-child")
    await local.patch(
        LandingResource,
        "paused",
        {"spec": {"suspend": True}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    await wait_reason(local, namespace, "paused", "Suspended", timeout=20)
    started = time.monotonic()
    await local.delete(Secret, "paused-child", namespace=namespace)

    async def gone() -> bool:
        assert await _absent(child, Secret, "paused-kubeconfig", namespace)
        assert await _absent(local, Secret, "paused-child", namespace)
        return True

    await eventually(gone, timeout=20, interval=0.05, what="revoked and the Secret gone")
    measure("source Secret deleted -> Secret gone (suspended)", time.monotonic() - started)
    await wait_reason(local, namespace, "paused", "Suspended", timeout=20)


async def _has(client: AsyncClient, namespace: str, name: str, finalizer: str) -> bool:
    assert finalizer in await _finalizers(client, namespace, name)
    return True


async def _lacks(client: AsyncClient, namespace: str, name: str, finalizer: str) -> bool:
    assert finalizer not in await _finalizers(client, namespace, name)
    return True


async def test_the_message_says_the_secret_is_being_deleted_and_what_was_revoked(
    env: Env, namespace: str
) -> None:
    """Held by a finalizer of someone else's as well, the Secret stays (being deleted) after
    the Landing revoked and let go: the status says so in so many words."""
    local, child = env.local, env.admin["child-a"]
    await local.create(
        secret_with(
            namespace,
            "kept-child",
            {"value": env.kubeconfig_text("child-a")},
            finalizers=["example.com/keep"],
        )
    )
    uid = await _landed(env, local, namespace, "kept", "kept-child")
    await local.delete(Secret, "kept-child", namespace=namespace)
    ready = await wait_reason(local, namespace, "kept", "SourceSecretNotFound", timeout=20)
    assert "is being deleted" in ready["message"], ready
    assert "what it had landed was revoked" in ready["message"], ready
    assert await _absent(child, Secret, "kept-kubeconfig", namespace)
    # Its own hold gone, the other finalizer untouched: the Secret waits for its owner.
    await eventually(
        lambda: _lacks(local, namespace, "kept-child", holds.finalizer(uid)), what="released"
    )
    assert await _finalizers(local, namespace, "kept-child") == ["example.com/keep"]
    await local.patch(
        Secret,
        "kept-child",
        {"metadata": {"finalizers": None}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


async def test_two_landings_sharing_a_source_hold_and_release_their_own(
    env: Env, namespace: str
) -> None:
    """One Secret, two Landings: two holds; deleting one Landing releases its hold only; a
    Landing told to read another Secret lets go of the first; deleting the Secret then
    revokes the other's landing, and nothing stale is left on it."""
    local, child = env.local, env.admin["child-a"]
    await local.create(secret_with(namespace, "shared", {"value": env.kubeconfig_text("child-a")}))
    await local.create(secret_with(namespace, "moved", {"value": env.kubeconfig_text("child-a")}))
    one = await _landed(env, local, namespace, "one", "shared")
    two = await _landed(env, local, namespace, "two", "shared")
    three = await _landed(env, local, namespace, "three", "shared")
    assert sorted(await _finalizers(local, namespace, "shared")) == sorted(
        holds.finalizer(u) for u in (one, two, three)
    )

    await local.delete(LandingResource, "one", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "one"), what="Landing one gone")
    assert await _absent(child, Secret, "one-kubeconfig", namespace)
    assert sorted(await _finalizers(local, namespace, "shared")) == sorted(
        holds.finalizer(u) for u in (two, three)
    )

    await local.patch(
        LandingResource,
        "three",
        {"spec": {"kubeconfigSecretName": "moved"}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    await eventually(
        lambda: _has(local, namespace, "moved", holds.finalizer(three)), what="three holds moved"
    )
    await eventually(
        lambda: _lacks(local, namespace, "shared", holds.finalizer(three)),
        what="three lets go of shared",
    )
    assert await _finalizers(local, namespace, "shared") == [holds.finalizer(two)]

    await local.delete(Secret, "shared", namespace=namespace)

    async def revoked() -> bool:
        assert await _absent(child, Secret, "two-kubeconfig", namespace)
        assert await _absent(local, Secret, "shared", namespace)
        return True

    await eventually(revoked, timeout=20, what="two revoked, shared gone")
    assert not await _absent(child, Secret, "three-kubeconfig", namespace)  # not through it


async def test_orphan_release_and_deletion_release_the_hold(env: Env, namespace: str) -> None:
    """A Landing deleted with deletionPolicy Orphan keeps what it landed and lets go of its
    source; one deleted with Delete revokes and lets go: no finalizer is left behind."""
    local, child = env.local, env.admin["child-a"]
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-a")}))
    orphan = await _landed(env, local, namespace, "orphan", "src", deletionPolicy="Orphan")
    gone = await _landed(env, local, namespace, "gone", "src")
    assert sorted(await _finalizers(local, namespace, "src")) == sorted(
        holds.finalizer(u) for u in (orphan, gone)
    )
    await local.delete(LandingResource, "orphan", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "orphan"), what="orphan gone")
    assert await _finalizers(local, namespace, "src") == [holds.finalizer(gone)]
    await local.delete(LandingResource, "gone", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "gone"), what="gone gone")
    assert await _finalizers(local, namespace, "src") == []
    assert not await _absent(child, Secret, "orphan-kubeconfig", namespace)  # Orphan kept it
    assert await _absent(child, Secret, "gone-kubeconfig", namespace)
    await local.delete(Secret, "src", namespace=namespace)
    assert await _absent(local, Secret, "src", namespace)  # nothing holds it


# -- the hostile tenant -------------------------------------------------------------------------


async def test_a_tenant_gets_no_hold_on_another_namespace_secret(env: Env, tenant: Tenant) -> None:
    """A tenant's Landing naming another namespace's Secret: refused when it has not granted
    access, and landed but never held when it has; either way its owner deletes it at once.
    A hold the tenant forges on its own Secret for that other namespace's Landing is never
    touched by it (nor by the tenant's Landing)."""
    ns = tenant.namespace
    local = env.local
    other = await _other_namespace(env, "foreign")
    await local.create(secret_with(other, "closed", {"value": env.kubeconfig_text("child-a")}))
    granted = {api.ALLOWED_NAMESPACES_ANNOTATION: ns}
    await local.create(
        secret_with(other, "open", {"value": env.kubeconfig_text("child-a")}, annotations=granted)
    )
    await local.create(
        landing_policy(f"parent-{ns}", namespaces={"names": [ns]}, parentCredential=True)
    )
    await tenant.client.create(
        landing(ns, "closed", kubeconfigSecretNamespace=other, kubeconfigSecretName="closed")
    )
    await wait_reason(local, ns, "closed", "CrossNamespaceNotAllowed", timeout=20)
    await tenant.client.create(
        landing(
            ns,
            "open",
            kubeconfigSecretNamespace=other,
            kubeconfigSecretName="open",
            writeKubeconfigSecretName="open-kubeconfig",
        )
    )
    await wait_reason(local, ns, "open", "Synced", timeout=30)
    assert await _finalizers(local, other, "closed") == []
    assert await _finalizers(local, other, "open") == []
    for name in ("closed", "open"):
        await local.delete(Secret, name, namespace=other)
        assert await _absent(local, Secret, name, other)

    # A forged hold: the tenant names the other namespace's Landing on its own Secret.
    await local.create(secret_with(other, "src", {"value": env.kubeconfig_text("child-a")}))
    await local.create(
        landing_policy(f"parent-{other}", namespaces={"names": [other]}, parentCredential=True)
    )
    victim = await _landed(env, local, other, "victim", "src")
    forged = holds.finalizer(victim)
    await tenant.client.create(
        secret_with(ns, "decoy", {"value": "x"}, finalizers=[forged, "example.com/tenant"])
    )
    await tenant.client.create(
        secret_with(ns, "mine", {"value": env.kubeconfig_text("child-a")}, finalizers=[forged])
    )
    own = await _landed(env, tenant.client, ns, "mine", "mine")
    await local.delete(LandingResource, "victim", namespace=other)
    await eventually(lambda: landing_gone(local, other, "victim"), what="victim gone")
    await tenant.client.delete(LandingResource, "mine", namespace=ns)
    await eventually(lambda: landing_gone(local, ns, "mine"), what="mine gone")
    # Each Landing let go of its own hold only: the forged ones stay until the tenant drops them.
    assert await _finalizers(local, other, "src") == []
    assert await _finalizers(local, ns, "decoy") == [forged, "example.com/tenant"]
    assert await _finalizers(local, ns, "mine") == [forged]
    assert holds.finalizer(own) != forged
    for name in ("decoy", "mine"):
        await tenant.client.patch(
            Secret,
            name,
            {"metadata": {"finalizers": None}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
