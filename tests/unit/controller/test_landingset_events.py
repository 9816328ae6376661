"""Which events make a LandingSet look again, and how soon (the queue only; no cluster)."""

from __future__ import annotations

from typing import Any

from moonlander.api.landingset import SET_LABEL
from moonlander.controller.landingsets import LANDING_SETTLE, LandingSets

SET_BODY = {
    "apiVersion": "moons.kingdon.ci/v1alpha1",
    "kind": "LandingSet",
    "metadata": {"name": "tenants", "namespace": "fleet", "uid": "u1", "generation": 1},
    "spec": {
        "generators": [{"secrets": {"namePattern": "kubernetes-{{tenant}}-admin-kubeconfig"}}],
        "template": {"spec": {"writeKubeconfigSecretName": "{{tenant}}-parent-kubeconfig"}},
    },
}


def generated(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "fleet", "labels": {SET_LABEL: "tenants"}}}


def sets() -> LandingSets:
    return LandingSets(local=None, events=None)  # type: ignore[arg-type]


async def test_a_new_tenant_secret_is_looked_at_at_once() -> None:
    landing_sets = sets()
    landing_sets.set_event("ADDED", SET_BODY)
    assert await landing_sets._queue.get() == "fleet/tenants"
    landing_sets._queue.done("fleet/tenants")
    landing_sets.secret_event(
        "ADDED", {"name": "kubernetes-t1-admin-kubeconfig", "namespace": "fleet"}
    )
    assert len(landing_sets._queue) == 1


async def test_a_fleet_of_landing_events_is_one_settled_look() -> None:
    landing_sets = sets()
    landing_sets.set_event("ADDED", SET_BODY)
    assert await landing_sets._queue.get() == "fleet/tenants"
    landing_sets._queue.done("fleet/tenants")
    for i in range(1000):
        landing_sets.landing_event("MODIFIED", generated(f"t{i}"))
    assert len(landing_sets._queue) == 0  # not at once, and not once per Landing
    pending = landing_sets._queue.pending("fleet/tenants")
    assert pending is not None
    assert 0.9 * LANDING_SETTLE <= pending <= LANDING_SETTLE
    assert len(landing_sets._queue._timers) == 1


async def test_landings_of_no_set_are_ignored() -> None:
    landing_sets = sets()
    landing_sets.landing_event("ADDED", {"metadata": {"name": "x", "namespace": "fleet"}})
    assert len(landing_sets._queue) == 0
    assert not landing_sets._queue._timers
