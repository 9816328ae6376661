"""What a Landing may cause, decided from LandingPolicies without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from moonlander import api
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.authorize import Fence, PolicyStore, authorize

FENCE = Fence(controller_namespace="moonlander-system", mint_namespaces=("moonlander-minted",))


def landing(namespace: str = "tenant-a", **spec: Any) -> api.Landing:
    return api.Landing(
        metadata=api.ObjectMeta(name="l", namespace=namespace),
        spec=api.parse_spec(spec, name="l"),
    )


def policy(name: str = "p", **spec: Any) -> api.LandingPolicy:
    spec.setdefault("namespaces", {"names": ["tenant-a"]})
    return api.parse_policy({"metadata": {"name": name}, "spec": spec})


def store_of(policies: list[api.LandingPolicy], **labels: dict[str, str]) -> PolicyStore:
    return PolicyStore(policies={p.name: p for p in policies}, namespace_labels=dict(labels))


def allowed(target: api.Landing, policies: list[api.LandingPolicy]) -> None:
    authorize(target, store_of(policies), FENCE)


def refused(target: api.Landing, policies: list[api.LandingPolicy]) -> str:
    with pytest.raises(LandingProblem) as caught:
        authorize(target, store_of(policies), FENCE)
    outcome = caught.value.outcome
    assert (outcome.reason, outcome.retry) == (Reason.NOT_PERMITTED, Retry.ON_CHANGE)
    return outcome.message


# -- secure defaults: no policy ---------------------------------------------------------------


def test_child_to_parent_into_its_own_namespace_needs_no_policy() -> None:
    allowed(landing(direction="ChildToParent"), [])


def test_parent_credential_needs_a_grant() -> None:
    message = refused(landing(), [])
    assert "parentCredential" in message and "tenant-a" in message
    allowed(landing(), [policy(parentCredential=True)])


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
    allowed(asked, [policy(targetNamespaces=[target])])


def test_the_controller_namespace_is_never_a_target() -> None:
    asked = landing(direction="ChildToParent", targetNamespace="moonlander-system")
    granted = policy(targetNamespaces=["moonlander-system"])
    assert "never writes into its own namespace" in refused(asked, [granted])


def test_parent_to_child_targets_are_the_sources_own_cluster() -> None:
    # Written with the tenant's own child credential, into the child: no grant is needed.
    allowed(landing(targetNamespace="kube-system"), [policy(parentCredential=True)])


# -- minting is bounded ------------------------------------------------------------------------

VIEW = {"clusterRoles": ["view"], "clusterWide": True}


def test_a_view_grant_mints_view_and_refuses_cluster_admin() -> None:
    grant = policy(mint=VIEW)
    allowed(landing(serviceAccount={"name": "r", "clusterRole": "view"}), [grant])
    admin = landing(serviceAccount={"name": "r", "clusterRole": "cluster-admin"})
    assert "ClusterRole cluster-admin cluster-wide" in refused(admin, [grant])


def test_the_service_account_namespace_is_bounded() -> None:
    sa = {"name": "r", "namespace": "kube-system", "clusterRole": "view"}
    # In the child (ChildToParent, the tenant's own credential) the policy bounds it ...
    asked = landing(direction="ChildToParent", serviceAccount=sa)
    assert "ServiceAccounts in namespace kube-system" in refused(asked, [policy(mint=VIEW)])
    allowed(asked, [policy(mint={**VIEW, "serviceAccountNamespaces": ["kube-system"]})])
    # ... in the controller's cluster (ParentToChild) the fence does, whatever it says.
    parent = landing(serviceAccount=sa)
    granted = policy(mint={**VIEW, "serviceAccountNamespaces": ["kube-system"]})
    message = refused(parent, [granted])
    assert "mint namespaces (--mint-namespace: moonlander-minted)" in message
    assert "namespace kube-system" in message


def test_the_token_lifetime_is_bounded() -> None:
    asked = landing(serviceAccount={"name": "r", "clusterRole": "view", "expirationSeconds": 7200})
    assert "longer than mint.maxExpirationSeconds 3600" in refused(asked, [policy(mint=VIEW)])
    allowed(asked, [policy(mint={**VIEW, "maxExpirationSeconds": 7200})])


def test_namespaced_grants_stay_in_their_namespaces() -> None:
    grant = policy(mint={"clusterRoles": ["edit"], "roleNamespaces": ["apps"]})
    ok = {"name": "r", "roles": [{"name": "edit", "namespaces": ["apps"]}]}
    allowed(landing(serviceAccount=ok), [grant])
    wide = {"name": "r", "clusterRole": "edit"}
    assert "cluster-wide" in refused(landing(serviceAccount=wide), [grant])
    elsewhere = {"name": "r", "roles": [{"name": "edit", "namespaces": ["apps", "kube-system"]}]}
    assert "in namespace kube-system" in refused(landing(serviceAccount=elsewhere), [grant])


def test_a_role_and_a_cluster_role_of_the_same_name_are_different_grants() -> None:
    grant = policy(mint={"roles": ["reader"], "roleNamespaces": ["apps"]})
    role = {"name": "r", "roles": [{"kind": "Role", "name": "reader", "namespaces": ["apps"]}]}
    allowed(landing(serviceAccount=role), [grant])
    cluster_role = {"name": "r", "roles": [{"name": "reader", "namespaces": ["apps"]}]}
    assert "ClusterRole reader" in refused(landing(serviceAccount=cluster_role), [grant])


def test_inline_rules_need_their_own_grant() -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    asked = landing(serviceAccount={"name": "r", "rules": rules, "rulesNamespaces": ["apps"]})
    assert "inline rules in namespace apps" in refused(
        asked, [policy(mint={"clusterRoles": ["view"], "roleNamespaces": ["apps"]})]
    )
    allowed(asked, [policy(mint={"inlineRules": True, "roleNamespaces": ["apps"]})])


def test_two_narrow_policies_do_not_add_up_to_a_wide_grant() -> None:
    """One policy grants cluster-admin in namespace x only; another grants view cluster-wide:
    cluster-admin cluster-wide stays refused (a binding is never pieced together), and so
    does a mint asking for both bindings (a mint is never pieced together either)."""
    narrow = policy("a", mint={"clusterRoles": ["cluster-admin"], "roleNamespaces": ["x"]})
    wide = policy("b", mint={"clusterRoles": ["view"], "clusterWide": True})
    asked = landing(serviceAccount={"name": "r", "clusterRole": "cluster-admin"})
    assert "cluster-admin cluster-wide" in refused(asked, [narrow, wide])
    both = {
        "name": "r",
        "clusterRole": "view",
        "roles": [{"name": "cluster-admin", "namespaces": ["x"]}],
    }
    assert "no single LandingPolicy" in refused(landing(serviceAccount=both), [narrow, wide])
    allowed(landing(serviceAccount={"name": "r", "clusterRole": "view"}), [narrow, wide])


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


# -- one policy grants a mint as a whole (issue 23, finding 2) ---------------------------------


def test_namespace_and_lifetime_never_come_from_another_policy_than_the_binding() -> None:
    """P1: cluster-admin in apps, ServiceAccounts only in moonlander-minted, 600 s tokens;
    P2: view in apps, ServiceAccounts in tenant-a too, 86400 s. Neither grants cluster-admin
    in apps for a day with the ServiceAccount in tenant-a's own namespace of the child."""
    p1 = policy(
        "p1",
        mint={
            "clusterRoles": ["cluster-admin"],
            "roleNamespaces": ["apps"],
            "serviceAccountNamespaces": ["moonlander-minted"],
            "maxExpirationSeconds": 600,
        },
    )
    p2 = policy(
        "p2",
        mint={
            "clusterRoles": ["view"],
            "roleNamespaces": ["apps"],
            "serviceAccountNamespaces": ["tenant-a"],
            "maxExpirationSeconds": 86400,
        },
    )
    sa = {
        "name": "r",
        "namespace": "tenant-a",
        "roles": [{"name": "cluster-admin", "namespaces": ["apps"]}],
        "expirationSeconds": 86400,
    }
    message = refused(landing(direction="ChildToParent", serviceAccount=sa), [p1, p2])
    assert "no single LandingPolicy" in message and "as a whole" in message
    assert "p1 does not grant ServiceAccounts in namespace tenant-a" in message
    assert "p2 does not grant ClusterRole cluster-admin in namespace apps" in message
    # What each grants by itself still works.
    allowed(
        landing(
            direction="ChildToParent",
            serviceAccount={**sa, "namespace": "moonlander-minted", "expirationSeconds": 600},
        ),
        [p1, p2],
    )
    allowed(
        landing(
            direction="ChildToParent",
            serviceAccount={**sa, "roles": [{"name": "view", "namespaces": ["apps"]}]},
        ),
        [p1, p2],
    )


def test_bindings_of_one_mint_are_not_split_over_policies() -> None:
    view = policy("a", mint={"clusterRoles": ["view"], "roleNamespaces": ["apps"]})
    edit = policy("b", mint={"clusterRoles": ["edit"], "roleNamespaces": ["web"]})
    sa = {
        "name": "r",
        "roles": [
            {"name": "view", "namespaces": ["apps"]},
            {"name": "edit", "namespaces": ["web"]},
        ],
    }
    message = refused(landing(serviceAccount=sa), [view, edit])
    assert "a does not grant ClusterRole edit in namespace web" in message
    assert "b does not grant ClusterRole view in namespace apps" in message


# -- the fence around ParentToChild mints (findings 3 and 4) ----------------------------------

EVERYTHING = {
    "clusterRoles": ["edit"],
    "roles": ["reader"],
    "roleNamespaces": ["moonlander-system", "apps"],
    "inlineRules": True,
    "serviceAccountNamespaces": ["moonlander-system", "moonlander-minted", "tenant-a", "apps"],
}


@pytest.mark.parametrize(
    ("sa", "expected"),
    [
        ({"namespace": "moonlander-system"}, "never mints ServiceAccounts in its own namespace"),
        (
            {"roles": [{"name": "edit", "namespaces": ["moonlander-system"]}]},
            "never binds roles in its own namespace moonlander-system",
        ),
        (
            {
                "roles": [{"kind": "Role", "name": "reader", "namespaces": ["moonlander-system"]}],
            },
            "never binds roles in its own namespace",
        ),
        (
            {
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
                "rulesNamespaces": ["apps", "moonlander-system"],
            },
            "never binds roles in its own namespace",
        ),
        ({"namespace": "tenant-a"}, "the Landing's own namespace"),
        ({"namespace": "apps"}, "not into namespace apps"),
    ],
)
def test_parent_to_child_mints_are_fenced_whatever_a_policy_says(
    sa: dict[str, Any], expected: str
) -> None:
    spec = {"name": "r", "roles": [{"name": "edit", "namespaces": ["apps"]}], **sa}
    assert expected in refused(landing(serviceAccount=spec), [policy(mint=EVERYTHING)])


def test_the_mint_namespaces_are_the_operators_choice() -> None:
    spec = {"name": "r", "namespace": "robots", "clusterRole": "view"}
    grant = policy(mint={**VIEW, "serviceAccountNamespaces": ["robots"]})
    assert "not into namespace robots" in refused(landing(serviceAccount=spec), [grant])
    fence = Fence(controller_namespace="moonlander-system", mint_namespaces=("robots",))
    authorize(landing(serviceAccount=spec), store_of([grant]), fence)


def test_the_default_mint_namespace_is_a_mint_namespace_and_needs_no_naming() -> None:
    assert api.DEFAULT_MINT_NAMESPACE == "moonlander-minted" == Fence().mint_namespaces[0]
    allowed(landing(serviceAccount={"name": "r", "clusterRole": "view"}), [policy(mint=VIEW)])


def test_child_to_parent_mints_are_made_in_the_child_with_the_tenants_credential() -> None:
    # The fence is about the controller's cluster; a child's namespaces are the tenant's.
    spec = {"name": "r", "namespace": "tenant-a", "clusterRole": "view"}
    grant = policy(mint={**VIEW, "serviceAccountNamespaces": ["tenant-a"]})
    allowed(landing(direction="ChildToParent", serviceAccount=spec), [grant])


# -- cluster-scoped outputs (finding 1) --------------------------------------------------------


def crossplane(scope: str, name: str | None = "default", **spec: Any) -> api.Landing:
    output: dict[str, Any] = {"crossplane": {"scope": scope}}
    if name is not None:
        output["crossplane"]["name"] = name
    return landing(direction="ChildToParent", output=output, **spec)


def granting(name: str, namespaces: dict[str, Any], **cluster_scoped: Any) -> api.LandingPolicy:
    return policy(name, namespaces=namespaces, outputs={"clusterScoped": cluster_scoped})


@pytest.mark.parametrize(
    ("scope", "kind"),
    [
        ("Legacy", "ProviderConfig.kubernetes.crossplane.io default"),
        ("Cluster", "ClusterProviderConfig.kubernetes.m.crossplane.io default"),
    ],
)
def test_cluster_scoped_outputs_need_their_name_granted(scope: str, kind: str) -> None:
    message = refused(crossplane(scope), [])
    assert kind in message and "outputs.clusterScoped" in message and "tenant-a" in message
    # Other grants are not this one.
    assert "outputs.clusterScoped" in refused(
        crossplane(scope), [policy(parentCredential=True, targetNamespaces=["x"])]
    )
    allowed(crossplane(scope), [granting("a", {"names": ["tenant-a"]}, names=["default"])])
    allowed(crossplane(scope), [granting("a", {"names": ["tenant-a"]}, namePrefixes=["def"])])
    assert "outputs.clusterScoped" in refused(
        crossplane(scope), [granting("a", {"names": ["tenant-a"]}, names=["default-2"])]
    )


def test_the_default_name_is_the_written_secrets() -> None:
    asked = crossplane("Legacy", name=None, writeKubeconfigSecretName="team-a-kubeconfig")
    assert "team-a-kubeconfig" in refused(asked, [])
    allowed(asked, [granting("a", {"names": ["tenant-a"]}, namePrefixes=["team-a-"])])


def test_namespaced_outputs_go_where_the_secret_goes() -> None:
    # A namespaced ProviderConfig lives in the target namespace: targetNamespaces decides.
    allowed(crossplane("Namespaced"), [])
    elsewhere = crossplane("Namespaced", targetNamespace="crossplane-system")
    assert "targetNamespaces" in refused(elsewhere, [])
    allowed(elsewhere, [policy(targetNamespaces=["crossplane-system"])])
    fenced = crossplane("Namespaced", targetNamespace="moonlander-system")
    assert "never writes into its own namespace" in refused(
        fenced, [policy(targetNamespaces=["moonlander-system"])]
    )


def test_parent_to_child_outputs_need_no_grant() -> None:
    asked = landing(output={"crossplane": {"scope": "Cluster", "name": "default"}})
    allowed(asked, [policy(parentCredential=True)])


def test_a_name_granted_to_two_namespaces_is_refused_to_both() -> None:
    mine = granting("a", {"names": ["tenant-a"]}, names=["default"])
    theirs = granting("b", {"names": ["tenant-b"]}, namePrefixes=["def"])
    message = refused(crossplane("Legacy"), [mine, theirs])
    assert "ambiguous" in message and "2 namespaces" in message
    assert "tenant-b" not in message  # other tenants' namespaces are not told
    other = landing(
        "tenant-b", direction="ChildToParent", output={"crossplane": {"name": "default"}}
    )
    with pytest.raises(LandingProblem):
        authorize(other, store_of([mine, theirs]), FENCE)


def test_one_policy_selecting_two_namespaces_grants_no_name() -> None:
    both = granting("a", {"names": ["tenant-a", "tenant-b"]}, names=["default"])
    assert "ambiguous" in refused(crossplane("Legacy"), [both])


def test_labels_count_the_namespaces_that_match_now() -> None:
    labelled = granting("a", {"matchLabels": {"team": "a"}}, names=["default"])
    alone = store_of([labelled], **{"tenant-a": {"team": "a"}, "tenant-b": {}})
    authorize(crossplane("Legacy"), alone, FENCE)
    two = store_of([labelled], **{"tenant-a": {"team": "a"}, "tenant-b": {"team": "a"}})
    with pytest.raises(LandingProblem) as caught:
        authorize(crossplane("Legacy"), two, FENCE)
    assert "ambiguous" in caught.value.outcome.message


def test_two_policies_for_the_same_namespace_are_no_conflict() -> None:
    one = granting("a", {"names": ["tenant-a"]}, names=["default"])
    two = granting("b", {"names": ["tenant-a"]}, namePrefixes=["d"])
    allowed(crossplane("Legacy"), [one, two])
