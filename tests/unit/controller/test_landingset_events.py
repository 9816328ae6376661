"""Which events make a LandingSet look again, and how soon (the queue only; no cluster)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from moonlander.api.landingset import SET_LABEL
from moonlander.controller.landingsets import LANDING_SETTLE, SECRET_SETTLE, LandingSets

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


async def test_tenant_secrets_are_looked_at_within_a_fifth_of_a_second_once_per_burst() -> None:
    landing_sets = sets()
    landing_sets.set_event("ADDED", SET_BODY)
    assert await landing_sets._queue.get() == "fleet/tenants"
    landing_sets._queue.done("fleet/tenants")
    started = time.monotonic()
    for i in range(1000):
        landing_sets.secret_event(
            "ADDED", {"name": f"kubernetes-t{i}-admin-kubeconfig", "namespace": "fleet"}
        )
    pending = landing_sets._queue.pending("fleet/tenants")
    assert pending is not None
    # Due SECRET_SETTLE after the first event: the burst's own time (long on a loaded
    # machine) has passed since, and no later event moved it.
    spent = time.monotonic() - started
    assert SECRET_SETTLE - spent - 0.01 <= pending <= SECRET_SETTLE <= 0.25
    assert len(landing_sets._queue._timers) == 1
    assert await asyncio.wait_for(landing_sets._queue.get(), 1) == "fleet/tenants"


async def test_a_fleet_of_landing_events_is_one_settled_look() -> None:
    landing_sets = sets()
    landing_sets.set_event("ADDED", SET_BODY)
    assert await landing_sets._queue.get() == "fleet/tenants"
    landing_sets._queue.done("fleet/tenants")
    started = time.monotonic()
    for i in range(1000):
        landing_sets.landing_event("MODIFIED", generated(f"t{i}"))
    assert len(landing_sets._queue) == 0  # not at once, and not once per Landing
    pending = landing_sets._queue.pending("fleet/tenants")
    assert pending is not None
    spent = time.monotonic() - started
    assert LANDING_SETTLE - spent - 0.01 <= pending <= LANDING_SETTLE
    assert len(landing_sets._queue._timers) == 1


async def test_landings_of_no_set_are_ignored() -> None:
    landing_sets = sets()
    landing_sets.landing_event("ADDED", {"metadata": {"name": "x", "namespace": "fleet"}})
    assert len(landing_sets._queue) == 0
    assert not landing_sets._queue._timers


def test_the_view_holds_each_secrets_labels_until_it_is_deleted() -> None:
    landing_sets = sets()
    meta = {"name": "kubernetes-t1-admin-kubeconfig", "namespace": "fleet", "labels": {"a": "b"}}
    landing_sets.secret_event("ADDED", meta)
    assert landing_sets._secrets["fleet"] == {"kubernetes-t1-admin-kubeconfig": {"a": "b"}}
    landing_sets.secret_event("MODIFIED", {**meta, "labels": {}})
    assert landing_sets._secrets["fleet"] == {"kubernetes-t1-admin-kubeconfig": {}}
    landing_sets.secret_event("DELETED", {"name": meta["name"], "namespace": "fleet"})
    assert landing_sets._secrets["fleet"] == {}


async def test_the_view_holds_each_sets_landings_and_follows_their_label() -> None:
    landing_sets = sets()
    landing_sets.set_event("ADDED", SET_BODY)
    body = generated("t1")
    body["metadata"]["managedFields"] = [{"manager": "x"}]
    body["spec"] = {"writeKubeconfigSecretName": "t1-parent-kubeconfig"}
    landing_sets.landing_event("ADDED", body)
    view = landing_sets._generated(landing_sets._sets["fleet/tenants"])  # type: ignore[arg-type]
    assert list(view) == ["t1"]
    assert view["t1"]["spec"] == body["spec"]
    assert "managedFields" not in view["t1"]["metadata"]  # never read, often the largest part

    # A hand edit that moves it to another set, then one that removes the label.
    moved = generated("t1")
    moved["metadata"]["labels"] = {SET_LABEL: "others"}
    landing_sets.landing_event("MODIFIED", moved)
    assert landing_sets._members["fleet/tenants"] == {}
    assert list(landing_sets._members["fleet/others"]) == ["t1"]
    landing_sets.landing_event("MODIFIED", {"metadata": {"name": "t1", "namespace": "fleet"}})
    assert landing_sets._members["fleet/others"] == {}

    landing_sets.landing_event("ADDED", generated("t2"))
    landing_sets.landing_event("DELETED", {"metadata": {"name": "t2", "namespace": "fleet"}})
    assert landing_sets._members["fleet/tenants"] == {}
    assert not landing_sets._member_of
