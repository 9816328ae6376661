"""Violations the soak's invariant checker found (bench/soak), each reduced to one test.

A test here that still fails is marked ``xfail(strict=True)`` with the diagnosis: it runs
in every suite, and the day the bug is fixed it passes, the strict mark fails the run, and
the mark comes off (the diagnoses: /tmp/changelog/soak-bugs.md while unfixed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.kube.resources import LandingResource, LandingSetResource

from .conftest import Env
from .harness import (
    eventually,
    landing,
    landing_gone,
    measure,
    ready_condition,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e

MINT_NS = "moonlander-minted"


def _parent_to_child_set(namespace: str) -> Any:
    """The CozyStack shape (examples/cozystack): each tenant's Secret is its cluster's
    kubeconfig, and the set lands the parent's kubeconfig into that cluster."""
    return LandingSetResource.from_dict(
        {
            "metadata": {"name": "tenants", "namespace": namespace},
            "spec": {
                "generators": [{"secrets": {"namePattern": "tenant-{{tenant}}-kubeconfig"}}],
                "template": {
                    "metadata": {"name": "set-{{tenant}}"},
                    "spec": {"writeKubeconfigSecretName": "{{tenant}}-parent"},
                },
            },
        }
    )


async def exists(client: AsyncClient, kind: Any, name: str, namespace: str | None) -> bool:
    try:
        await client.get(kind, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


async def refuse(
    client: AsyncClient,
    name: str,
    namespace: str,
    *,
    group: str,
    resources: list[str],
    message: str,
    operations: tuple[str, ...] = ("UPDATE",),
) -> None:
    """An admission policy by which ``client``'s API server refuses these writes in
    ``namespace`` with ``message`` (until ``lift``): a write failing as it would while a
    server restarts, but for as long as the test needs."""
    await client.create(
        ValidatingAdmissionPolicy.from_dict(
            {
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [group],
                                "apiVersions": ["*"],
                                "operations": list(operations),
                                "resources": resources,
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": f"object.metadata.namespace != '{namespace}'",
                            "message": message,
                        }
                    ],
                },
            }
        )
    )
    await client.create(
        ValidatingAdmissionPolicyBinding.from_dict(
            {
                "metadata": {"name": name},
                "spec": {"policyName": name, "validationActions": ["Deny"]},
            }
        )
    )


async def refuses(
    client: AsyncClient, kind: Any, name: str, namespace: str, patch: dict[str, Any], phrase: str
) -> bool:
    """Whether ``client``'s API server refuses this merge patch (dry run) saying ``phrase``:
    that an admission policy of ``refuse`` is in force."""
    try:
        await client.patch(
            kind, name, patch, namespace=namespace, patch_type=PatchType.MERGE, dry_run=True
        )
    except ApiError as err:
        message = err.status.message or ""
    else:
        message = "admitted: the policy is not in force yet"
    assert phrase in message, message
    return True


async def lift(client: AsyncClient, name: str) -> None:
    await client.delete(ValidatingAdmissionPolicyBinding, name)
    await client.delete(ValidatingAdmissionPolicy, name)


async def test_tenant_removed_from_a_parent_to_child_set_is_revoked(
    env: Env, namespace: str
) -> None:
    """A tenant Secret removed from a ParentToChild LandingSet: its generated Landing goes
    and so does the parent credential it landed in the tenant's cluster. Fixed by the
    Landing's hold on its source Secret (controller.holds): the Secret stays readable, being
    deleted, until the Landing's finalizer has revoked through it; then it goes too."""
    local, child = env.local, env.admin["child-b"]
    await local.create(
        secret_with(namespace, "tenant-acme-kubeconfig", {"value": env.kubeconfig_text("child-b")})
    )
    await local.create(_parent_to_child_set(namespace))
    await wait_reason(local, namespace, "set-acme", "Synced", timeout=30)
    landed = await child.get(Secret, "acme-parent", namespace=namespace)
    assert landed.metadata.labels[api.MANAGED_BY_LABEL] == api.MANAGED_BY

    started = time.monotonic()
    await local.delete(Secret, "tenant-acme-kubeconfig", namespace=namespace)

    async def revoked() -> bool:
        assert not await exists(local, LandingResource, "set-acme", namespace), (
            "the Landing is left"
        )
        assert not await exists(child, Secret, "acme-parent", namespace), "its Secret is left"
        assert not await exists(local, Secret, "tenant-acme-kubeconfig", namespace), (
            "the source is held"
        )
        return True

    await eventually(revoked, timeout=20, what="the Landing and its landed Secret gone")
    measure(
        "soak regression: tenant removed -> parent credential revoked", time.monotonic() - started
    )


async def test_a_landing_deleted_before_its_first_landing_revokes_what_it_minted(
    env: Env, namespace: str
) -> None:
    """Soak finding 2: a minting Landing mints its ServiceAccount (and binding) in the parent
    before it reaches the child; deleted before anything was landed (the child unreachable
    here: an admission policy refuses the Secret; in the soak, a connection reset), its finalizer found
    no status.landed, revoked nothing, and the ServiceAccount with its ClusterRoleBinding
    outlived the Landing."""
    local, child = env.local, env.admin["child-b"]
    # The child refuses the landed Secret at admission (RBAC allows the write, so the
    # controller's checks pass): the Landing mints in the parent and then cannot land, and
    # nothing is ever recorded as landed.
    name = f"refuse-{namespace}"
    await refuse(
        child,
        name,
        namespace,
        group="",
        resources=["secrets"],
        message="no Secrets here",
        operations=(
            "CREATE",
            "UPDATE",
        ),
    )

    async def in_force() -> bool:
        try:
            await child.create(secret_with(namespace, "probe", {"value": "x"}), dry_run=True)
        except ApiError as err:
            return "no Secrets here" in (err.status.message or "")
        raise AssertionError("admitted: the policy is not in force yet")

    await eventually(in_force, timeout=30, what="the child refuses Secrets there")
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))
    account = f"{namespace}-early"
    await local.create(
        landing(
            namespace,
            "early",
            kubeconfigSecretName="src",
            serviceAccount={"name": account, "clusterRole": "view", "expirationSeconds": 3600},
        )
    )

    async def refused() -> bool:
        cond = await ready_condition(local, namespace, "early")
        assert cond is not None and cond["reason"] not in ("Synced", "Progressing"), cond
        return True

    await eventually(refused, timeout=60, what="the landing refused")

    async def minted() -> bool:
        return bool(await local.get(ServiceAccount, account, namespace=MINT_NS))

    await eventually(minted, timeout=30, what="the ServiceAccount minted")
    started = time.monotonic()
    await local.delete(LandingResource, "early", namespace=namespace)
    await eventually(
        lambda: landing_gone(local, namespace, "early"), timeout=30, what="the Landing gone"
    )

    async def revoked() -> bool:
        assert not await exists(local, ServiceAccount, account, MINT_NS), "the account is left"
        owner = f"{namespace}/early"
        left = [
            b.metadata.name
            async for b in local.list(
                ClusterRoleBinding, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
            )
            if (b.metadata.annotations or {}).get(api.OWNER_ANNOTATION) == owner
        ]
        assert left == [], left
        return True

    try:
        await eventually(revoked, timeout=20, what="the minted ServiceAccount and binding revoked")
    finally:
        await lift(child, name)
    measure(
        "soak regression: deleted before landing -> minted identity revoked",
        time.monotonic() - started,
    )


async def test_a_deletion_whose_last_write_failed_still_completes(env: Env, namespace: str) -> None:
    """Source Secret and Landing deleted together (a tenant removed from a LandingSet) while
    the parent refuses the Landing's writes for a moment (an API server restarting in the
    soak; an admission policy here): once the parent takes writes again, the Landing goes."""
    local, child = env.local, env.admin["child-b"]
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(landing(namespace, "gone", kubeconfigSecretName="src"))
    await wait_reason(local, namespace, "gone", "Synced", timeout=60)
    name = f"freeze-{namespace}"
    await refuse(
        local,
        name,
        namespace,
        group=api.GROUP,
        resources=["landings", "landings/status"],
        message="the parent refuses Landing writes for now",
    )
    try:
        await eventually(
            lambda: refuses(
                local,
                LandingResource,
                "gone",
                namespace,
                {"metadata": {"labels": {"probe": "x"}}},
                "refuses Landing writes",
            ),
            timeout=30,
            what="the parent refuses Landing writes",
        )
        await local.delete(Secret, "src", namespace=namespace)
        await local.delete(LandingResource, "gone", namespace=namespace)

        async def revoked() -> bool:
            assert not await exists(child, Secret, "remote-kubeconfig", namespace)
            return True

        await eventually(revoked, timeout=60, what="the landed Secret revoked")
        await asyncio.sleep(5)  # the controller tries to finish, and cannot
    finally:
        await lift(local, name)
    await eventually(
        lambda: landing_gone(local, namespace, "gone"), timeout=45, what="the Landing gone"
    )


async def _landed_unrecorded(env: Env, namespace: str, name: str) -> str:
    """A ParentToChild Landing ``name`` whose Secret is in child-b while its status records
    nothing (every status write refused); the policy's name, to take it away."""
    local, child = env.local, env.admin["child-b"]
    policy_name = f"mute-{namespace}"
    # Every status write refused: the controller writes its target and cannot record it, as
    # a controller stopped between its write and its status leaves it.
    await refuse(
        local,
        policy_name,
        namespace,
        group=api.GROUP,
        resources=["landings/status"],
        message="the parent refuses Landing status writes for now",
    )
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))

    probe = landing(namespace, "probe", kubeconfigSecretName="nothing", suspend=True)
    await local.create(probe)

    await eventually(
        lambda: refuses(
            local,
            LandingResource.Status,
            "probe",
            namespace,
            {"status": {"observedGeneration": 1}},
            "refuses Landing status writes",
        ),
        timeout=30,
        what="the parent refuses Landing status writes",
    )
    await local.delete(LandingResource, "probe", namespace=namespace)
    await local.create(landing(namespace, name, kubeconfigSecretName="src"))

    async def landed() -> bool:
        secret = await child.get(Secret, "remote-kubeconfig", namespace=namespace)
        assert (secret.metadata.annotations or {}).get(api.OWNER_ANNOTATION) == (
            f"{namespace}/{name}"
        )
        return True

    await eventually(landed, timeout=60, what="the Secret landed in child-b")
    current = await local.get(LandingResource, name, namespace=namespace)
    assert not (current.to_dict().get("status") or {}).get("landed"), "its status recorded it"
    return policy_name


async def test_a_landing_deleted_before_its_status_recorded_the_landing_revokes_it(
    env: Env, namespace: str
) -> None:
    """Soak finding 5: the leader was killed after it wrote a Landing's Secret and before it
    recorded it in the status; the Landing was deleted meanwhile, and the next leader's
    finalizer, trusting status.landed, revoked nothing: the credential outlived its Landing.
    The Landing holds its source from before its first write, and that hold is what its
    finalizer goes by when the status records nothing."""
    local, child = env.local, env.admin["child-b"]
    policy_name = await _landed_unrecorded(env, namespace, "quiet")
    try:
        started = time.monotonic()
        await local.delete(LandingResource, "quiet", namespace=namespace)

        async def revoked() -> bool:
            assert not await exists(child, Secret, "remote-kubeconfig", namespace), "left"
            assert await landing_gone(local, namespace, "quiet"), "the Landing is left"
            source = await local.get(Secret, "src", namespace=namespace)
            assert not [f for f in source.metadata.finalizers or () if "landing." in f], (
                "its hold is left"
            )
            return True

        await eventually(revoked, timeout=30, what="the unrecorded Secret revoked")
        measure("soak regression: unrecorded landing revoked on delete", time.monotonic() - started)
    finally:
        await lift(env.local, policy_name)


async def test_a_source_deleted_before_the_status_recorded_the_landing_revokes_it(
    env: Env, namespace: str
) -> None:
    """Finding 5 by the other way out: the source Secret (the tenant's access) is deleted
    while what the Landing wrote is not recorded. The Landing revokes it through its hold,
    and keeps holding the source until its status can say so."""
    local, child = env.local, env.admin["child-b"]
    policy_name = await _landed_unrecorded(env, namespace, "quiet")
    lifted = False
    try:
        await local.delete(Secret, "src", namespace=namespace)

        async def revoked() -> bool:
            assert not await exists(child, Secret, "remote-kubeconfig", namespace), "left"
            return True

        await eventually(revoked, timeout=30, what="the unrecorded Secret revoked")
        await asyncio.sleep(2)
        assert await exists(local, Secret, "src", namespace), "released before its status said so"
        await lift(env.local, policy_name)
        lifted = True
        await eventually(
            lambda: _gone(local, Secret, "src", namespace), timeout=45, what="the source released"
        )
        current = await local.get(LandingResource, "quiet", namespace=namespace)
        assert not (current.to_dict().get("status") or {}).get("landed"), current.to_dict()
        assert not await exists(child, Secret, "remote-kubeconfig", namespace), "landed again"
    finally:
        if not lifted:
            await lift(env.local, policy_name)


async def _gone(client: AsyncClient, kind: Any, name: str, namespace: str) -> bool:
    assert not await exists(client, kind, name, namespace)
    return True


async def test_a_finalizer_whose_last_write_failed_does_not_record_the_landing_again(
    env: Env, namespace: str
) -> None:
    """Soak finding 6: a Landing and its source deleted together; the finalizer revoked,
    recorded it, released the source (which went) and then failed to remove itself (the
    parent answered 500). The failure's status was written over the Landing as the reconcile
    began, recording the landing again, and every retry then tried to revoke through the
    source it had let go. Here the parent refuses the finalizer's removal (an admission policy
    on the Landing itself, not its status) until the policy goes."""
    local, child = env.local, env.admin["child-b"]
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(landing(namespace, "again", kubeconfigSecretName="src"))
    await wait_reason(local, namespace, "again", "Synced", timeout=60)
    name = f"keep-{namespace}"
    await refuse(
        local,
        name,
        namespace,
        group=api.GROUP,
        resources=["landings"],
        message="the parent refuses Landing updates for now",
    )
    lifted = False
    try:
        await eventually(
            lambda: refuses(
                local,
                LandingResource,
                "again",
                namespace,
                {"metadata": {"labels": {"probe": "x"}}},
                "refuses Landing updates",
            ),
            timeout=30,
            what="the parent refuses Landing updates",
        )
        await local.delete(Secret, "src", namespace=namespace)
        await local.delete(LandingResource, "again", namespace=namespace)

        async def released() -> bool:
            assert not await exists(child, Secret, "remote-kubeconfig", namespace), "not revoked"
            assert not await exists(local, Secret, "src", namespace), "the source is held"
            return True

        await eventually(released, timeout=60, what="revoked, and the source let go")
        await asyncio.sleep(3)  # the finalizer fails to remove itself, and reports it
        current = await local.get(LandingResource, "again", namespace=namespace)
        status = current.to_dict().get("status") or {}
        assert not status.get("landed"), status  # what it revoked is not recorded again
        await lift(local, name)
        lifted = True
        await eventually(
            lambda: landing_gone(local, namespace, "again"), timeout=45, what="the Landing gone"
        )
    finally:
        if not lifted:
            await lift(local, name)
