"""The examples work as shipped: every LandingPolicy in examples/ parses, and every example
Landing is authorized by the LandingPolicies of its own folder (and refused without them:
each example policy is needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moonlander import api
from moonlander.api.reasons import LandingProblem, Reason
from moonlander.controller.authorize import Fence, PolicyStore, authorize

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
FENCE = Fence(controller_namespace="moonlander-system")
POLICY_KIND = "LandingPolicy"


def docs_in(folder: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(folder.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(folder: Path, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs_in(folder) if d.get("kind") == kind]


def as_landing(doc: dict[str, Any]) -> api.Landing:
    meta = doc["metadata"]
    return api.Landing(
        metadata=api.ObjectMeta(name=meta["name"], namespace=meta["namespace"]),
        spec=api.parse_spec(doc.get("spec"), name=meta["name"]),
    )


def policies_of(folder: Path) -> PolicyStore:
    store = PolicyStore()
    for doc in of_kind(folder, POLICY_KIND):
        policy = api.parse_policy(doc)
        assert policy.name not in store.policies, f"{folder.name}: {policy.name} twice"
        store.policies[policy.name] = policy
    return store


FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and of_kind(p, api.KIND))


def test_there_are_examples_to_check() -> None:
    names = {p.name for p in FOLDERS}
    assert {"pattern-a", "pattern-b", "argocd", "crossplane", "flux"} <= names
    assert any(d["spec"].get("serviceAccount") for p in FOLDERS for d in of_kind(p, api.KIND))


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_policy_parses(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == POLICY_KIND:
            assert doc["apiVersion"] == api.API_VERSION
            assert "namespace" not in doc["metadata"]  # cluster-scoped
            policy = api.parse_policy(doc)
            assert policy.name == doc["metadata"]["name"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_landings_are_authorized_by_their_folders_policies(folder: Path) -> None:
    store = policies_of(folder)
    assert store.policies, f"examples/{folder.name} has Landings but no LandingPolicy"
    used: set[str] = set()
    for doc in of_kind(folder, api.KIND):
        landing = as_landing(doc)
        applying = store.applying_to(landing.metadata.namespace)
        authorize(landing, store, FENCE)
        used.update(p.name for p in applying)
        # The secure default: without the folder's policies it is refused.
        with pytest.raises(LandingProblem) as caught:
            authorize(landing, PolicyStore(), FENCE)
        assert caught.value.outcome.reason is Reason.NOT_PERMITTED
    assert used == set(store.policies), "a policy in the folder selects none of its Landings"


def test_pattern_a_policy_grants_only_the_parent_credential() -> None:
    (policy,) = policies_of(EXAMPLES / "pattern-a").policies.values()
    assert policy.spec.parent_credential
    assert policy.spec.mint is None
    assert policy.spec.target_namespaces == ()
    assert policy.spec.namespaces.names == ("harvey-system",)


def test_argocd_mint_policy_allows_exactly_what_the_landing_asks() -> None:
    folder = EXAMPLES / "argocd"
    store = policies_of(folder)
    (doc,) = of_kind(folder, api.KIND)
    authorize(as_landing(doc), store, FENCE)

    def variant(**changes: Any) -> api.Landing:
        spec = dict(doc["spec"])
        spec["serviceAccount"] = {**spec["serviceAccount"], **changes.pop("sa", {})}
        spec.update(changes)
        return as_landing({**doc, "spec": spec})

    wider = [
        variant(sa={"roles": [{"name": "admin", "namespaces": ["apps", "web", "kube-system"]}]}),
        variant(sa={"roles": [{"name": "cluster-admin", "namespaces": ["apps"]}]}),
        variant(sa={"clusterRole": "admin"}),
        variant(sa={"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        variant(sa={"namespace": "kube-system"}),
        variant(sa={"expirationSeconds": 7200}),
        variant(targetNamespace="kube-system"),
        variant(targetNamespace="moonlander-system"),
    ]
    for landing in wider:
        with pytest.raises(LandingProblem) as caught:
            authorize(landing, store, FENCE)
        assert caught.value.outcome.reason is Reason.NOT_PERMITTED
    # Another namespace's Landings get nothing from it.
    assert store.applying_to("other-tenant") == []


SET_FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and of_kind(p, "LandingSet"))


def test_there_are_cozystack_landingsets() -> None:
    assert [p.name for p in SET_FOLDERS] == ["cozystack", "multikueue"]


@pytest.mark.parametrize("folder", SET_FOLDERS, ids=lambda p: p.name)
def test_example_landingsets_generate_landings_their_policies_authorize(folder: Path) -> None:
    """Each set, given Secrets as CozyStack names them, generates Landings that the folder's
    policies authorize, and that are refused without them, like hand-written ones."""
    from moonlander.controller import fleet

    store = policies_of(folder)
    for doc in of_kind(folder, "LandingSet"):
        landing_set = api.parse_landingset(doc)
        secrets = {f"kubernetes-{c}-admin-kubeconfig": {} for c in ("harvey", "lab")}
        generated = fleet.generate(landing_set, secrets)
        assert generated.refused == {}
        assert sorted(w.secret for w in generated.wanted.values()) == sorted(secrets)
        for wanted in generated.wanted.values():
            landing = as_landing(fleet.landing_body(landing_set, wanted))
            authorize(landing, store, FENCE)
            with pytest.raises(LandingProblem) as caught:
                authorize(landing, PolicyStore(), FENCE)
            assert caught.value.outcome.reason is Reason.NOT_PERMITTED


def test_the_multikueue_set_writes_profiles_only_into_kueue_system() -> None:
    """The ClusterProfile is granted with the target, by the one policy: elsewhere refused."""
    from moonlander.controller import fleet

    folder = EXAMPLES / "multikueue"
    store = policies_of(folder)
    (doc,) = of_kind(folder, "LandingSet")
    landing_set = api.parse_landingset(doc)
    (wanted,) = fleet.generate(
        landing_set, {"kubernetes-harvey-admin-kubeconfig": {}}
    ).wanted.values()
    body = fleet.landing_body(landing_set, wanted)
    landing = as_landing(body)
    assert landing.cluster_profile_name == "harvey"
    assert landing.target_namespace == "kueue-system"
    authorize(landing, store, FENCE)
    body["spec"] = {**body["spec"], "targetNamespace": "default"}
    with pytest.raises(LandingProblem) as caught:
        authorize(as_landing(body), store, FENCE)
    assert caught.value.outcome.reason is Reason.NOT_PERMITTED
