"""Violations the soak's invariant checker found (bench/soak), each reduced to one test.

A test here that still fails is marked ``xfail(strict=True)`` with the diagnosis: it runs
in every suite, and the day the bug is fixed it passes, the strict mark fails the run, and
the mark comes off (the diagnoses: /tmp/changelog/soak-bugs.md while unfixed)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.kube.resources import LandingResource, LandingSetResource

from .conftest import Env
from .harness import eventually, measure, secret_with, wait_reason

pytestmark = pytest.mark.e2e


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

    async def exists(client: AsyncClient, kind: Any, name: str) -> bool:
        try:
            await client.get(kind, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise
        return True

    async def revoked() -> bool:
        assert not await exists(local, LandingResource, "set-acme"), "the Landing is still there"
        assert not await exists(child, Secret, "acme-parent"), "the landed Secret is still there"
        assert not await exists(local, Secret, "tenant-acme-kubeconfig"), "the source is held"
        return True

    await eventually(revoked, timeout=20, what="the Landing and its landed Secret gone")
    measure(
        "soak regression: tenant removed -> parent credential revoked", time.monotonic() - started
    )
