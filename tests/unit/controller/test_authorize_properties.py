"""Property: LandingPolicies never compose inside one mint. For random mint grants and
random requests, a mint allowed under a set of policies is allowed by one of them alone,
and one that no single policy allows is refused under all of them together."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moonlander import api
from moonlander.api.reasons import LandingProblem
from moonlander.controller.authorize import Fence, PolicyStore, authorize, mint_gaps

FENCE = Fence(controller_namespace="moonlander-system", mint_namespaces=("moonlander-minted",))
ROLES = ("view", "edit", "cluster-admin")
NAMESPACES = ("apps", "web", "moonlander-minted", "tenant-a", "moonlander-system")
LIFETIMES = (600, 3600, 86400)

names = st.sampled_from(NAMESPACES)
some_namespaces = st.lists(names, max_size=3, unique=True)

grants = st.fixed_dictionaries(
    {
        "clusterRoles": st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
        "roles": st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
        "roleNamespaces": some_namespaces,
        "clusterWide": st.booleans(),
        "inlineRules": st.booleans(),
        "serviceAccountNamespaces": some_namespaces,
        "maxExpirationSeconds": st.sampled_from(LIFETIMES),
    }
)
role_grants = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["Role", "ClusterRole"]),
        "name": st.sampled_from(ROLES),
        "namespaces": st.lists(names, min_size=1, max_size=2, unique=True),
    }
)
RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    sa: dict[str, Any] = {
        "name": "robot",
        "namespace": draw(names),
        "expirationSeconds": draw(st.sampled_from(LIFETIMES)),
    }
    if draw(st.booleans()):
        sa["clusterRole"] = draw(st.sampled_from(ROLES))
    roles = draw(st.lists(role_grants, max_size=3))
    if roles:
        sa["roles"] = roles
    if draw(st.booleans()) or ("clusterRole" not in sa and not roles):
        sa["rules"] = [RULE]
        scopes = draw(some_namespaces)
        if scopes:
            sa["rulesNamespaces"] = scopes
    return sa


def _landing(direction: str, sa: dict[str, Any]) -> api.Landing:
    return api.Landing(
        metadata=api.ObjectMeta(name="l", namespace="tenant-a"),
        spec=api.parse_spec({"direction": direction, "serviceAccount": sa}, name="l"),
    )


def _policies(drawn: list[dict[str, Any]]) -> list[api.LandingPolicy]:
    return [
        api.parse_policy(
            {
                "metadata": {"name": f"p{i}"},
                "spec": {"namespaces": {"names": ["tenant-a"]}, "mint": g},
            }
        )
        for i, g in enumerate(drawn)
    ]


def _allows(landing: api.Landing, policies: list[api.LandingPolicy]) -> bool:
    try:
        authorize(landing, PolicyStore(policies={p.name: p for p in policies}), FENCE)
    except LandingProblem:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    drawn=st.lists(grants, min_size=1, max_size=4),
    sa=requests(),
    direction=st.sampled_from(["ParentToChild", "ChildToParent"]),
)
def test_a_set_of_policies_allows_exactly_what_one_of_them_allows(
    drawn: list[dict[str, Any]], sa: dict[str, Any], direction: str
) -> None:
    landing = _landing(direction, sa)
    policies = _policies(drawn)
    together = _allows(landing, policies)
    alone = [p for p in policies if _allows(landing, [p])]
    assert together == bool(alone)
    if together:
        # ... and that one policy grants every part of the request by itself.
        spec = landing.spec.service_account
        assert spec is not None
        assert any(p.spec.mint is not None and not mint_gaps(p.spec.mint, spec) for p in alone)
