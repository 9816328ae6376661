"""What a Landing may cause, decided from LandingPolicies without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from moonlander import api
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.authorize import Fence, PolicyStore, authorize

FENCE = Fence(controller_namespace="moonlander-system")


def landing(namespace: str = "tenant-a", **spec: Any) -> api.Landing:
    return api.Landing(
        metadata=api.ObjectMeta(name="l", namespace=namespace),
        spec=api.parse_spec(spec, name="l"),
    )


def policy(name: str = "p", **spec: Any) -> api.LandingPolicy:
    spec.setdefault("namespaces", {"names": ["tenant-a"]})
    return api.parse_policy({"metadata": {"name": name}, "spec": spec})


def refused(target: api.Landing, policies: list[api.LandingPolicy]) -> str:
    with pytest.raises(LandingProblem) as caught:
        authorize(target, policies, FENCE)
    outcome = caught.value.outcome
    assert (outcome.reason, outcome.retry) == (Reason.NOT_PERMITTED, Retry.ON_CHANGE)
    return outcome.message


# -- secure defaults: no policy ---------------------------------------------------------------


def test_child_to_parent_into_its_own_namespace_needs_no_policy() -> None:
    authorize(landing(direction="ChildToParent"), [], FENCE)


def test_parent_credential_needs_a_grant() -> None:
    message = refused(landing(), [])
    assert "parentCredential" in message and "tenant-a" in message
    authorize(landing(), [policy(parentCredential=True)], FENCE)


@pytest.mark.parametrize("direction", ["ParentToChild", "ChildToParent"])
def test_every_mint_needs_a_grant(direction: str) -> None:
    asked = landing(direction=direction, serviceAccount={"name": "r", "clusterRole": "view"})
    assert "grants mint" in refused(asked, [])
    # The parent credential grant is not a mint grant.
    assert "grants mint" in refused(asked, [policy(parentCredential=True)])


@pytest.mark.parametrize("target", ["kube-system", "tenant-b", "team-c-future"])
def test_writes_elsewhere_need_a_grant(target: str) -> None:
    asked = landing(direction="ChildToParent", targetNamespace=target)
    assert f"lists {target} in targetNamespaces" in refused(asked, [])
    authorize(asked, [policy(targetNamespaces=[target])], FENCE)


def test_the_controller_namespace_is_never_a_target() -> None:
    asked = landing(direction="ChildToParent", targetNamespace="moonlander-system")
    granted = policy(targetNamespaces=["moonlander-system"])
    assert "never writes into its own namespace" in refused(asked, [granted])


def test_parent_to_child_targets_are_the_sources_own_cluster() -> None:
    # Written with the tenant's own child credential, into the child: no grant is needed.
    authorize(landing(targetNamespace="kube-system"), [policy(parentCredential=True)], FENCE)


# -- minting is bounded ------------------------------------------------------------------------

VIEW = {"clusterRoles": ["view"], "clusterWide": True}


def test_a_view_grant_mints_view_and_refuses_cluster_admin() -> None:
    grant = policy(mint=VIEW)
    authorize(landing(serviceAccount={"name": "r", "clusterRole": "view"}), [grant], FENCE)
    admin = landing(serviceAccount={"name": "r", "clusterRole": "cluster-admin"})
    assert "ClusterRole cluster-admin cluster-wide" in refused(admin, [grant])


def test_the_service_account_namespace_is_bounded() -> None:
    asked = landing(serviceAccount={"name": "r", "namespace": "kube-system", "clusterRole": "view"})
    assert "mint ServiceAccounts in namespace kube-system" in refused(asked, [policy(mint=VIEW)])


def test_the_token_lifetime_is_bounded() -> None:
    asked = landing(serviceAccount={"name": "r", "clusterRole": "view", "expirationSeconds": 7200})
    assert "longer than" in refused(asked, [policy(mint=VIEW)])
    authorize(asked, [policy(mint={**VIEW, "maxExpirationSeconds": 7200})], FENCE)


def test_namespaced_grants_stay_in_their_namespaces() -> None:
    grant = policy(mint={"clusterRoles": ["edit"], "roleNamespaces": ["apps"]})
    ok = {"name": "r", "roles": [{"name": "edit", "namespaces": ["apps"]}]}
    authorize(landing(serviceAccount=ok), [grant], FENCE)
    wide = {"name": "r", "clusterRole": "edit"}
    assert "cluster-wide" in refused(landing(serviceAccount=wide), [grant])
    elsewhere = {"name": "r", "roles": [{"name": "edit", "namespaces": ["apps", "kube-system"]}]}
    assert "in namespace kube-system" in refused(landing(serviceAccount=elsewhere), [grant])


def test_a_role_and_a_cluster_role_of_the_same_name_are_different_grants() -> None:
    grant = policy(mint={"roles": ["reader"], "roleNamespaces": ["apps"]})
    role = {"name": "r", "roles": [{"kind": "Role", "name": "reader", "namespaces": ["apps"]}]}
    authorize(landing(serviceAccount=role), [grant], FENCE)
    cluster_role = {"name": "r", "roles": [{"name": "reader", "namespaces": ["apps"]}]}
    assert "ClusterRole reader" in refused(landing(serviceAccount=cluster_role), [grant])


def test_inline_rules_need_their_own_grant() -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    asked = landing(serviceAccount={"name": "r", "rules": rules, "rulesNamespaces": ["apps"]})
    assert "inline rules in namespace apps" in refused(
        asked, [policy(mint={"clusterRoles": ["view"], "roleNamespaces": ["apps"]})]
    )
    authorize(asked, [policy(mint={"inlineRules": True, "roleNamespaces": ["apps"]})], FENCE)


def test_two_narrow_policies_do_not_add_up_to_a_wide_grant() -> None:
    """One policy grants cluster-admin in namespace x only; another grants view cluster-wide:
    cluster-admin cluster-wide stays refused (a binding is never pieced together)."""
    narrow = policy("a", mint={"clusterRoles": ["cluster-admin"], "roleNamespaces": ["x"]})
    wide = policy("b", mint={"clusterRoles": ["view"], "clusterWide": True})
    asked = landing(serviceAccount={"name": "r", "clusterRole": "cluster-admin"})
    assert "cluster-admin cluster-wide" in refused(asked, [narrow, wide])
    both = {
        "name": "r",
        "clusterRole": "view",
        "roles": [{"name": "cluster-admin", "namespaces": ["x"]}],
    }
    authorize(landing(serviceAccount=both), [narrow, wide], FENCE)


# -- which policies apply ----------------------------------------------------------------------


def test_policies_select_namespaces_by_name_and_labels() -> None:
    store = PolicyStore()
    store.policies["named"] = policy("named", namespaces={"names": ["tenant-a"]})
    store.policies["labelled"] = policy("labelled", namespaces={"matchLabels": {"tier": "trusted"}})
    store.namespace_labels = {"tenant-a": {}, "tenant-b": {"tier": "trusted"}, "c": {}}
    assert [p.name for p in store.applying_to("tenant-a")] == ["named"]
    assert [p.name for p in store.applying_to("tenant-b")] == ["labelled"]
    assert store.applying_to("c") == []
    assert store.applying_to("unknown") == []
    assert store.matched_namespaces(store.policies["labelled"]) == ("tenant-b",)
    assert store.matched_namespaces(store.policies["named"]) == ("tenant-a",)


def test_a_policy_must_select_something() -> None:
    with pytest.raises(api.SpecError) as caught:
        api.parse_policy({"metadata": {"name": "p"}, "spec": {"namespaces": {}}})
    assert caught.value.field == "spec.namespaces"


def test_source_networks_narrow_and_add_up() -> None:
    import ipaddress

    from moonlander.controller.authorize import source_networks

    assert source_networks([]) is None
    assert source_networks([policy(parentCredential=True)]) is None
    ranges = source_networks(
        [policy("a", sourceNetworks=["10.1.0.0/16"]), policy("b", sourceNetworks=["fd00::/8"])]
    )
    assert ranges == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/8"))
    with pytest.raises(api.SpecError) as caught:
        policy(sourceNetworks=["10.0.0.0/33"])
    assert caught.value.field == "spec.sourceNetworks"
