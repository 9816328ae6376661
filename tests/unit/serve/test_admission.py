"""The webhook's checks, decided without a cluster."""

from __future__ import annotations

from typing import Any

from moonlander import api
from moonlander.credentials import Policy
from moonlander.serve.admission import BindCheck, bind_checks, problems


def checks(**spec: Any) -> list[BindCheck]:
    return list(bind_checks(api.parse_spec(spec, name="l")))


def test_every_binding_minted_here_is_a_question_for_the_user() -> None:
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
        "escalate roles in namespace c",
    ]


def test_cluster_wide_inline_rules_need_escalate_on_clusterroles() -> None:
    rules = [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]
    assert checks(serviceAccount={"name": "r", "rules": rules}) == [
        BindCheck("escalate", "clusterroles", None, None)
    ]


def test_nothing_to_ask_when_nothing_is_minted_here() -> None:
    assert checks() == []
    # ChildToParent mints in the child, with the child's own credential.
    sa = {"name": "r", "clusterRole": "cluster-admin"}
    assert checks(direction="ChildToParent", serviceAccount=sa) == []


def test_problems_parse_as_the_controller_does() -> None:
    assert problems("l", {}, policy=Policy()) == []
    found = problems("l", {"serviceAccount": {"name": "r"}}, policy=Policy())
    assert found and found[0].startswith("spec.serviceAccount: grants nothing")
    found = problems("l", {"server": "https://169.254.169.254"}, policy=Policy())
    assert found and found[0].startswith("spec.server:")
