"""A LandingPolicy's status says what of it the fence closes and which cluster-scoped names
it grants that another namespace holds too."""

from __future__ import annotations

from typing import Any

from moonlander import api
from moonlander.controller.authorize import Fence, PolicyStore
from moonlander.controller.policy_status import policy_status

FENCE = Fence(controller_namespace="moonlander-system", mint_namespaces=("moonlander-minted",))


def policy(name: str, **spec: Any) -> api.LandingPolicy:
    spec.setdefault("namespaces", {"names": ["tenant-a"]})
    return api.parse_policy({"metadata": {"name": name, "generation": 2}, "spec": spec})


def status(*policies: api.LandingPolicy, **labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    store = PolicyStore(policies={p.name: p for p in policies}, namespace_labels=dict(labels))
    return {p.name: policy_status(store, p, FENCE) for p in policies}


def test_a_plain_policy_reports_nothing_fenced_or_ambiguous() -> None:
    got = status(policy("p", parentCredential=True))["p"]
    assert got == {
        "observedGeneration": 2,
        "matchedNamespaces": ["tenant-a"],
        "fenced": [],
        "ambiguous": [],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Applied",
                "message": "applies to 1 namespace",
                "observedGeneration": 2,
            }
        ],
    }


def test_naming_the_controller_namespace_is_reported() -> None:
    fenced = policy(
        "p",
        targetNamespaces=["moonlander-system", "crossplane-system"],
        mint={
            "clusterRoles": ["edit"],
            "roleNamespaces": ["moonlander-system"],
            "serviceAccountNamespaces": ["moonlander-system", "moonlander-minted", "tenant-a"],
        },
    )
    entries = status(fenced)["p"]["fenced"]
    assert [e.split(":")[0] for e in entries] == [
        "targetNamespaces",
        "mint.roleNamespaces",
        "mint.serviceAccountNamespaces",
        "mint.serviceAccountNamespaces",
    ]
    assert "moonlander-system is the controller's own namespace" in entries[0]
    assert "tenant-a is not one of the controller's mint namespaces" in entries[3]


def test_a_name_granted_to_two_namespaces_is_reported_by_both_policies() -> None:
    a = policy("a", outputs={"clusterScoped": {"names": ["default"]}})
    b = policy(
        "b",
        namespaces={"names": ["tenant-b"]},
        outputs={"clusterScoped": {"namePrefixes": ["def", "team-b-"]}},
    )
    got = status(a, b)
    assert got["a"]["ambiguous"] == [
        "outputs.clusterScoped: name default is also granted by LandingPolicy b; "
        "held by tenant-a, tenant-b: refused to all of them"
    ]
    assert got["b"]["ambiguous"] == [
        "outputs.clusterScoped: name default is also granted by LandingPolicy a; "
        "held by tenant-a, tenant-b: refused to all of them"
    ]


def test_overlapping_prefixes_and_wide_selectors_are_reported() -> None:
    a = policy("a", outputs={"clusterScoped": {"namePrefixes": ["team-"]}})
    b = policy(
        "b",
        namespaces={"matchLabels": {"team": "b"}},
        outputs={"clusterScoped": {"namePrefixes": ["team-b-"]}},
    )
    got = status(a, b, **{"tenant-b": {"team": "b"}, "tenant-c": {"team": "b"}})
    assert any("names starting with team-b-" in e for e in got["a"]["ambiguous"])
    assert got["b"]["ambiguous"][0].startswith("outputs.clusterScoped: granted to 2 namespaces")


def test_the_same_namespace_twice_is_no_conflict() -> None:
    a = policy("a", outputs={"clusterScoped": {"names": ["default"]}})
    b = policy("b", outputs={"clusterScoped": {"namePrefixes": ["d"]}})
    got = status(a, b)
    assert got["a"]["ambiguous"] == got["b"]["ambiguous"] == []


def test_fenced_or_ambiguous_entries_leave_it_ready_but_partially_applied() -> None:
    # kstatus reads Ready=True without Reconciling or Stalled as Current: a policy takes
    # effect as soon as it is read; what it cannot grant is listed, not failed.
    got = status(policy("p", targetNamespaces=["moonlander-system"]))["p"]
    assert got["fenced"]
    (ready,) = got["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == (
        "Ready",
        "True",
        "PartiallyApplied",
    )
    assert "1 entry grants nothing" in ready["message"]
    assert ready["observedGeneration"] == 2
