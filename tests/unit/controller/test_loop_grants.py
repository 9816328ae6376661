"""A namespace's labels can change who holds a cluster-scoped name (outputs.clusterScoped):
then every Landing is woken, not only the relabelled namespace's, since the holder that
must now be refused may live anywhere."""

from __future__ import annotations

from typing import Any

from moonlander import api
from moonlander.controller.authorize import PolicyStore
from moonlander.controller.loop import Controller, Timing


class _Stub:
    def __init__(self) -> None:
        self.policies = PolicyStore()


def _landing(namespace: str, name: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": "1"}
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": meta, "spec": {}}


def _policy(name: str, **spec: Any) -> api.LandingPolicy:
    return api.parse_policy({"metadata": {"name": name}, "spec": spec})


def _woken(outputs_grant: dict[str, Any] | None) -> set[str]:
    stub = _Stub()
    spec: dict[str, Any] = {"namespaces": {"matchLabels": {"team": "a"}}, "parentCredential": True}
    if outputs_grant is not None:
        spec["outputs"] = outputs_grant
    stub.policies.policies["labelled"] = _policy("labelled", **spec)
    stub.policies.namespace_labels = {"tenant-a": {"team": "a"}, "tenant-b": {}}
    ctl = Controller(stub, Timing())  # type: ignore[arg-type]
    for namespace in ("tenant-a", "tenant-b", "tenant-c"):
        ctl.landing_event("ADDED", _landing(namespace, "l"))
    added: list[str] = []
    ctl.queue.add = added.append  # type: ignore[method-assign]
    ctl.namespace_event("MODIFIED", {"metadata": {"name": "tenant-b", "labels": {"team": "a"}}})
    return {k for k in added if not k.startswith("policy:")}


def test_a_label_that_moves_a_cluster_scoped_name_wakes_every_landing() -> None:
    assert _woken({"clusterScoped": {"names": ["default"]}}) == {
        "tenant-a/l",
        "tenant-b/l",
        "tenant-c/l",
    }


def test_other_label_changes_wake_only_their_namespace() -> None:
    assert _woken(None) == {"tenant-b/l"}
