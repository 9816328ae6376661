"""The webhook's checks, decided without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from moonlander import api
from moonlander.credentials import Policy
from moonlander.serve.admission import (
    Question,
    bind_checks,
    bound,
    problems,
    rule_scopes,
    sample_landing,
    set_owner,
    spec_unchanged,
)


def parsed(**spec: Any) -> api.LandingSpec:
    return api.parse_spec(spec, name="l")


def checks(**spec: Any) -> list[Question]:
    return list(bind_checks(parsed(**spec)))


def test_every_named_role_minted_here_is_a_bind_question_for_the_user() -> None:
    asked = checks(
        serviceAccount={
            "name": "r",
            "clusterRole": "view",
            "roles": [
                {"name": "edit", "namespaces": ["a", "b"]},
                {"kind": "Role", "name": "reader", "namespaces": ["a"]},
            ],
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            "rulesNamespaces": ["c"],
        }
    )
    assert [c.describe() for c in asked] == [
        "bind clusterroles view cluster-wide",
        "bind clusterroles edit in namespace a",
        "bind clusterroles edit in namespace b",
        "bind roles reader in namespace a",
    ]


def test_inline_rules_are_every_permission_they_give_in_each_namespace() -> None:
    """As RBAC's escalation check: the author must hold each verb on each resource (and
    name) of each group, where the Role is made; wildcards are asked as wildcards."""
    rules = [
        {"apiGroups": ["", "apps"], "resources": ["pods", "deployments/scale"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["*"]},
    ]
    scopes = rule_scopes(
        parsed(serviceAccount={"name": "r", "rules": rules, "rulesNamespaces": ["a", "b"]})
    )
    assert [s.namespace for s in scopes] == ["a", "b"]
    asked = [q.describe() for q in scopes[0].held()]
    assert asked == [
        "get pods (apiGroup '') in namespace a",
        "get deployments/scale (apiGroup '') in namespace a",
        "get pods (apiGroup 'apps') in namespace a",
        "get deployments/scale (apiGroup 'apps') in namespace a",
        "* secrets (apiGroup '') s in namespace a",
    ]
    assert scopes[0].held()[1] == Question("get", "deployments", "", "scale", None, "a")
    assert [q.describe() for q in scopes[1].bypass()] == [
        "escalate roles in namespace b",
        "bind roles in namespace b",
    ]


def test_everything_is_asked_as_the_wildcard_it_is() -> None:
    rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    (scope,) = rule_scopes(
        parsed(serviceAccount={"name": "r", "rules": rules, "rulesNamespaces": ["a"]})
    )
    assert scope.held() == [Question("*", "*", "*", "", None, "a")]


def test_cluster_wide_rules_and_urls_are_asked_cluster_wide() -> None:
    rules = [
        {"nonResourceURLs": ["/healthz", "/metrics"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
    ]
    (scope,) = rule_scopes(parsed(serviceAccount={"name": "r", "rules": rules}))
    assert scope.namespace is None
    assert [q.describe() for q in scope.held()] == [
        "get /healthz",
        "get /metrics",
        "list nodes (apiGroup '') cluster-wide",
    ]
    assert scope.held()[0].path == "/healthz"
    assert [q.describe() for q in scope.bypass()] == [
        "escalate clusterroles cluster-wide",
        "bind clusterroles cluster-wide",
    ]


def test_nothing_to_ask_when_nothing_is_minted_here() -> None:
    assert checks() == []
    # ChildToParent mints in the child, with the child's own credential.
    sa = {
        "name": "r",
        "clusterRole": "cluster-admin",
        "rules": [{"nonResourceURLs": ["*"], "verbs": ["*"]}],
    }
    assert checks(direction="ChildToParent", serviceAccount=sa) == []
    assert rule_scopes(parsed(direction="ChildToParent", serviceAccount=sa)) == []
    assert bound(parsed(direction="ChildToParent", serviceAccount=sa)) is None


def test_what_is_bound_ignores_what_binds_nothing() -> None:
    """A generated Landing is compared with its set's template by what it binds: the
    ServiceAccount's name and the token's lifetime may differ, a role may not."""
    sa = {"name": "a", "clusterRole": "view", "expirationSeconds": 3600}
    same = {"name": "b", "clusterRole": "view", "expirationSeconds": 7200}
    assert bound(parsed(serviceAccount=sa)) == bound(parsed(serviceAccount=same))
    assert bound(parsed(serviceAccount=sa)) != bound(
        parsed(serviceAccount={**sa, "clusterRole": "edit"})
    )
    assert bound(parsed(serviceAccount=sa)) != bound(
        parsed(serviceAccount={**sa, "namespace": "elsewhere"})
    )


@pytest.mark.parametrize(
    ("old", "new", "unchanged"),
    [
        (
            {"spec": {"a": 1}, "metadata": {}},
            {"spec": {"a": 1}, "metadata": {"finalizers": ["f"]}},
            True,
        ),
        ({"spec": {"a": 1}}, {"spec": {"a": 2}}, False),
        (None, {"spec": {"a": 1}}, False),  # a CREATE
        ({}, {}, True),
    ],
)
def test_an_update_that_leaves_the_spec_is_seen(
    old: dict[str, Any] | None, new: dict[str, Any], unchanged: bool
) -> None:
    assert spec_unchanged(old, new) is unchanged


def test_only_a_controlling_landingset_owns() -> None:
    ref = {"kind": "LandingSet", "name": "s", "uid": "u", "controller": True}
    assert set_owner({"ownerReferences": [ref]}) == ("s", "u")
    assert set_owner({"ownerReferences": [{**ref, "controller": False}]}) is None
    assert set_owner({"ownerReferences": [{**ref, "kind": "Landing"}]}) is None
    assert set_owner({}) is None


def _set(template_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {
            "generators": [{"secrets": {"namePattern": "kubernetes-{{tenant}}-kubeconfig"}}],
            "template": {"metadata": {"name": "{{tenant}}"}, "spec": template_spec},
        },
    }


@pytest.mark.parametrize(
    "field",
    [
        {"direction": "{{tenant}}"},
        {"serviceAccount": {"name": "r", "clusterRole": "{{tenant}}"}},
        {"serviceAccount": {"name": "r", "namespace": "{{tenant}}", "clusterRole": "view"}},
        {"serviceAccount": {"name": "r", "roles": [{"name": "{{tenant}}", "namespaces": ["a"]}]}},
        {
            "serviceAccount": {
                "name": "r",
                "roles": [{"name": "view", "namespaces": ["{{tenant}}"]}],
            }
        },
        {
            "serviceAccount": {
                "name": "r",
                "roles": [{"kind": "{{tenant}}", "name": "v", "namespaces": ["a"]}],
            }
        },
        {
            "serviceAccount": {
                "name": "r",
                "rules": [{"apiGroups": [""], "resources": ["{{tenant}}"], "verbs": ["get"]}],
            }
        },
        {
            "serviceAccount": {
                "name": "r",
                "rules": [{"apiGroups": [""], "resources": ["p"], "verbs": ["get"]}],
                "rulesNamespaces": ["{{set}}"],
            }
        },
    ],
)
def test_a_template_may_not_choose_its_bindings_by_variable(field: dict[str, Any]) -> None:
    """Else the template checked with every variable `sample` would not be what a
    generated Landing binds: a Secret's name would choose the role."""
    with pytest.raises(api.SpecError, match="takes no variables: it decides what every generated"):
        api.parse_landingset(_set(field))


def test_variables_stay_allowed_where_they_bind_nothing() -> None:
    spec = {
        "writeKubeconfigSecretName": "{{tenant}}-kubeconfig",
        "serviceAccount": {"name": "{{tenant}}-robot", "clusterRole": "view"},
    }
    name, landing = sample_landing(_set(spec))
    assert name == "sample"
    assert landing["serviceAccount"] == {"name": "sample-robot", "clusterRole": "view"}


def test_problems_parse_as_the_controller_does() -> None:
    assert problems("l", {}, policy=Policy()) == []
    found = problems("l", {"serviceAccount": {"name": "r"}}, policy=Policy())
    assert found and found[0].startswith("spec.serviceAccount: grants nothing")
    found = problems("l", {"server": "https://169.254.169.254"}, policy=Policy())
    assert found and found[0].startswith("spec.server:")
