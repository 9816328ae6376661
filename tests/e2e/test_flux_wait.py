"""Flux's kustomize-controller waits on Landings it applies (``wait: true``) through their
conditions, as kstatus reads them: Ready when the Landing lands, and a failure at once, long
before the Kustomization's timeout, when the Landing is refused for good (NotPermitted makes
it Stalled).

The controllers are those of tests/e2e/test_flux.py (its ``flux`` fixture), running in
child-a; the Kustomizations apply into the parent, where Moonlander runs, through a
kubeconfig Secret holding the parent's admin credential.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from .conftest import Env
from .harness import measure, secret_with, wait_reason
from .test_flux import (  # noqa: F401 - the fixture
    Flux,
    GitRepository,
    Kustomization,
    commit,
    flux,
    ready,
    status_of,
    wait_flux,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

TIMEOUT = 120  # the Kustomization's: failing fast means failing well before it


def landing_manifest(namespace: str, name: str, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "moons.kingdon.ci/v1alpha1",
            "kind": "Landing",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"direction": "ChildToParent", "kubeconfigSecretName": "src", **spec},
        }
    )


def kustomization(namespace: str, name: str, path: str) -> Any:
    return Kustomization.from_dict(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "interval": "10m",
                "retryInterval": "10m",  # one attempt: its outcome is what is measured
                "timeout": f"{TIMEOUT}s",
                "wait": True,
                "prune": True,
                "path": path,
                "sourceRef": {"kind": "GitRepository", "name": "landings"},
                "kubeConfig": {"secretRef": {"name": "parent-admin"}},
            },
        }
    )


async def test_a_kustomization_waits_for_landings_and_fails_fast_when_refused(
    env: Env,
    flux: Flux,  # noqa: F811
    namespace: str,
) -> None:
    local, child = env.local, env.admin["child-a"]
    # Flux reaches the parent with its admin kubeconfig (the Landings live there); the
    # Landings land child-b's kubeconfig into the parent.
    await child.create(
        secret_with(namespace, "parent-admin", {"value": env.kubeconfig_text("parent")})
    )
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))
    work, url = flux.repository(f"landings-{namespace}")
    (work / "ok").mkdir()
    (work / "refused").mkdir()
    commit(
        work,
        {
            "ok/landing.yaml": landing_manifest(namespace, "via-flux"),
            # A write into a namespace no LandingPolicy grants this one: NotPermitted.
            "refused/landing.yaml": landing_manifest(
                namespace, "via-flux-refused", targetNamespace="default"
            ),
        },
        "landings",
    )
    await child.create(
        GitRepository.from_dict(
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": "landings", "namespace": namespace},
                "spec": {"interval": "10m", "url": url, "ref": {"branch": "main"}},
            }
        )
    )

    started = time.monotonic()
    await child.create(kustomization(namespace, "landings-ok", "./ok"))
    await child.create(kustomization(namespace, "landings-refused", "./refused"))

    async def outcome(name: str, status: str) -> dict[str, Any]:
        ks = await child.get(Kustomization, name, namespace=namespace)
        cond = ready(ks)
        assert cond is not None and cond["status"] == status, (cond, status_of(ks))
        return cond

    ok = await wait_flux(flux, lambda: outcome("landings-ok", "True"), "Kustomization Ready")
    measure("flux wait: Kustomization Ready (Landing Synced)", time.monotonic() - started)
    await wait_reason(local, namespace, "via-flux", "Synced", timeout=5)
    assert "Applied revision" in ok["message"], ok

    failed = await wait_flux(
        flux, lambda: outcome("landings-refused", "False"), "Kustomization failed", timeout=TIMEOUT
    )
    seconds = time.monotonic() - started
    measure("flux wait: Kustomization failed (Landing NotPermitted)", seconds)
    print(f"\nflux wait: refused Landing failed the Kustomization in {seconds:.1f}s: {failed}")
    await wait_reason(local, namespace, "via-flux-refused", "NotPermitted", timeout=5)
    assert failed["reason"] == "HealthCheckFailed", failed
    assert "via-flux-refused" in failed["message"] and "Failed" in failed["message"], failed
    assert "timeout" not in failed["message"].lower(), failed
    assert seconds < TIMEOUT / 4, f"{seconds:.1f}s: not failing fast (timeout {TIMEOUT}s)"
