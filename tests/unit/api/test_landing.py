"""Parsing a Landing's spec into the typed models of ``moonlander.api``: the seed's defaults,
``spec.serviceAccount`` and ``spec.output``; what is accepted, normalised and refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moonlander import api
from moonlander.api import (
    ArgoCDSpec,
    CrossplaneSpec,
    OutputFormat,
    OutputSpec,
    PolicyRule,
    Provider,
    RoleGrant,
    RoleKind,
    Scope,
    ServiceAccountSpec,
    SpecError,
)

ROOT = Path(__file__).resolve().parents[3]


def landing(name: str, namespace: str, spec: dict[str, Any]) -> api.Landing:
    return api.Landing(
        metadata=api.ObjectMeta(name=name, namespace=namespace),
        spec=api.parse_spec(spec, name=name),
    )


def rejected(raw: Any, *, name: str = "x") -> SpecError:
    with pytest.raises(SpecError) as caught:
        api.parse_spec(raw, name=name)
    return caught.value


# ---------------------------------------------------------------------------------------------
# spec: the seed's fields and their defaults
# ---------------------------------------------------------------------------------------------


def test_seed_defaults() -> None:
    ld = landing("harvey", "harvey-system", {})
    assert ld.source_name == "kubernetes-harvey-admin-kubeconfig"
    assert ld.source_namespace == "harvey-system"
    assert ld.write_name == "remote-kubeconfig"
    assert ld.target_namespace == "harvey-system"
    assert ld.spec.direction is api.Direction.PARENT_TO_CHILD
    assert ld.spec.deletion_policy is api.DeletionPolicy.DELETE
    assert ld.spec.kubeconfig_secret_key is None
    assert not ld.spec.suspend and not ld.spec.adopt_existing


def test_pattern_a_fields_are_kept() -> None:
    ld = landing(
        "talos-root-access",
        "harvey-system",
        {
            "kubeconfigSecretName": "kubernetes-harvey-admin-kubeconfig",
            "writeKubeconfigSecretName": "talos-root-kubeconfig",
            "targetNamespace": "crossplane-system",
        },
    )
    assert ld.source_ref == ("harvey-system", "kubernetes-harvey-admin-kubeconfig")
    assert ld.target == "crossplane-system/talos-root-kubeconfig"


@pytest.mark.parametrize("unset", [None, ""])
def test_empty_and_null_seed_fields_are_unset(unset: str | None) -> None:
    fields = (
        "kubeconfigSecretName",
        "kubeconfigSecretNamespace",
        "kubeconfigSecretKey",
        "writeKubeconfigSecretName",
        "targetNamespace",
        "direction",
        "deletionPolicy",
        "server",
    )
    ld = landing("harvey", "harvey-system", dict.fromkeys(fields, unset))
    assert ld == landing("harvey", "harvey-system", {})
    assert ld.source_ref == ("harvey-system", "kubernetes-harvey-admin-kubeconfig")
    assert ld.target == "harvey-system/remote-kubeconfig"
    assert ld.spec.kubeconfig_secret_key is None and ld.spec.server is None


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"kubeconfigSecretName": "Not_A_Name"}, "spec.kubeconfigSecretName", "DNS subdomain"),
        ({"targetNamespace": "a.b"}, "spec.targetNamespace", "DNS label"),
        ({"direction": "Sideways"}, "spec.direction", "Invalid enum value 'Sideways'"),
        ({"deletionPolicy": "Maybe"}, "spec.deletionPolicy", "Invalid enum value 'Maybe'"),
        ({"suspend": "yes"}, "spec.suspend", "Expected `bool`, got `str`"),
        ({"kubeconfigSecretKey": "a/b"}, "spec.kubeconfigSecretKey", "must be a string matching"),
        ({"writeKubeconfigSecretName": 7}, "spec.writeKubeconfigSecretName", "got `int`"),
    ],
)
def test_invalid_spec_is_a_clear_error(spec: dict[str, object], field: str, fragment: str) -> None:
    err = rejected(spec)
    assert err.field == field
    assert fragment in err.problem
    assert str(err) == f"{field}: {err.problem}"


# ---------------------------------------------------------------------------------------------
# spec.serviceAccount
# ---------------------------------------------------------------------------------------------


def service_account(**fields: Any) -> ServiceAccountSpec:
    spec = api.parse_spec({"serviceAccount": fields}, name="x").service_account
    assert spec is not None
    return spec


def test_absent_service_account_means_no_minting() -> None:
    assert api.parse_spec({}, name="x").service_account is None
    assert api.parse_spec({"serviceAccount": None}, name="x").service_account is None


def test_service_account_defaults() -> None:
    spec = service_account(name="crossplane", clusterRole="view")
    assert spec == ServiceAccountSpec(
        name="crossplane",
        namespace="moonlander-minted",
        cluster_role="view",
        audience="https://kubernetes.default.svc",
        expiration_seconds=3600,
        renew_before_fraction=0.2,
    )
    assert spec.username == "system:serviceaccount:moonlander-minted:crossplane"
    # What `moonlander mint` parses (no Landing around it) is the same.
    assert api.parse_service_account({"name": "crossplane", "clusterRole": "view"}) == spec


def test_service_account_every_field() -> None:
    spec = service_account(
        name="robot",
        namespace="ops",
        clusterRole="system:basic-user",
        roles=[
            {"kind": "Role", "name": "reader", "namespaces": ["a", "b", "a"]},
            {"name": "edit", "namespaces": ["c"]},  # kind defaults to ClusterRole
            {"kind": "Role", "name": "reader", "namespaces": ["c"]},  # merged with the first
        ],
        rules=[
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": []}
        ],
        rulesNamespaces=["a"],
        audience="https://oidc.example",
        expirationSeconds=600,
        renewBeforeFraction=0.5,
    )
    assert (spec.name, spec.namespace, spec.cluster_role) == ("robot", "ops", "system:basic-user")
    assert spec.roles == (
        RoleGrant(kind=RoleKind.ROLE, name="reader", namespaces=("a", "b", "c")),
        RoleGrant(kind=RoleKind.CLUSTER_ROLE, name="edit", namespaces=("c",)),
    )
    assert spec.rules == (PolicyRule(api_groups=("",), resources=("configmaps",), verbs=("get",)),)
    # Empty lists are dropped: the API server omits them, so they would look like drift.
    assert [r.to_kubernetes() for r in spec.rules] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    ]
    assert spec.rules_namespaces == ("a",)
    assert (spec.audience, spec.expiration_seconds, spec.renew_before_fraction) == (
        "https://oidc.example",
        600,
        0.5,
    )


SA_REJECTED: list[Any] = [
    ({"clusterRole": "view"}, "", "missing required field `name`"),
    ({"name": "Robot", "clusterRole": "view"}, ".name", "DNS subdomain"),
    ({"name": "r", "namespace": "a.b", "clusterRole": "view"}, ".namespace", "DNS label"),
    ({"name": "r"}, "", "grants nothing"),
    ({"name": "r", "clusterRole": "a/b"}, ".clusterRole", "must be a string matching"),
    ({"name": "r", "clusterRole": ".."}, "", "a role name cannot be '.' or '..'"),
    ({"name": "r", "clusterRole": 7}, ".clusterRole", "Expected `str | null`, got `int`"),
    (
        {"name": "r", "roles": [{"kind": "Group", "name": "x", "namespaces": ["a"]}]},
        ".roles[0].kind",
        "Invalid enum value 'Group'",
    ),
    (
        {"name": "r", "roles": [{"kind": "Role", "name": "x"}]},
        ".roles[0]",
        "missing required field `namespaces`",
    ),
    (
        {"name": "r", "roles": [{"name": "x", "namespaces": ["A"]}]},
        ".roles[0].namespaces[0]",
        "DNS label",
    ),
    (
        {"name": "r", "roles": [{"name": "x", "namespaces": ["a"], "scope": 1}]},
        ".roles[0]",
        "unknown field scope",
    ),
    ({"name": "r", "roles": "view"}, ".roles", "Expected `array`, got `str`"),
    (
        {"name": "r", "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
        ".rules[0]",
        "missing required field `verbs`",
    ),
    (
        {"name": "r", "rules": [{"resources": ["pods"], "verbs": ["get"]}]},
        ".rules[0].apiGroups",
        "is required",
    ),
    (
        {"name": "r", "rules": [{"apiGroups": [""], "verbs": ["get"]}]},
        ".rules[0].resources",
        "must name at least one resource",
    ),
    (
        {"name": "r", "rules": [{"verbs": ["get"], "apiGroups": [""], "nonResourceURLs": ["/x"]}]},
        ".rules[0]",
        "either for resources or for nonResourceURLs",
    ),
    (
        {"name": "r", "rules": [{"verbs": ["get a"], "apiGroups": [""], "resources": ["p"]}]},
        ".rules[0].verbs[0]",
        "must be a string matching",
    ),
    (
        {"name": "r", "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["p"], "x": 1}]},
        ".rules[0]",
        "unknown field x",
    ),
    (
        {
            "name": "r",
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
            "rulesNamespaces": ["a"],
        },
        ".rules",
        "nonResourceURLs need a ClusterRole",
    ),
    (
        {"name": "r", "clusterRole": "view", "rulesNamespaces": ["a"]},
        ".rulesNamespaces",
        "no rules",
    ),
    (
        {"name": "r", "clusterRole": "view", "audience": "a b"},
        ".audience",
        "must be a string matching",
    ),
    (
        {"name": "r", "clusterRole": "view", "expirationSeconds": 599},
        ".expirationSeconds",
        "Expected `int` >= 600",
    ),
    (
        {"name": "r", "clusterRole": "view", "expirationSeconds": 10**9},
        ".expirationSeconds",
        "Expected `int` <= 31536000",
    ),
    (
        {"name": "r", "clusterRole": "view", "expirationSeconds": "3600"},
        ".expirationSeconds",
        "Expected `int`, got `str`",
    ),
    (
        {"name": "r", "clusterRole": "view", "expirationSeconds": True},
        ".expirationSeconds",
        "Expected `int`, got `bool`",
    ),
    (
        {"name": "r", "clusterRole": "view", "renewBeforeFraction": 0.01},
        ".renewBeforeFraction",
        "Expected `float` >= 0.05",
    ),
    (
        {"name": "r", "clusterRole": "view", "renewBeforeFraction": 0.995},
        ".renewBeforeFraction",
        "Expected `float` <= 0.99",
    ),
    (
        {"name": "r", "clusterRole": "view", "renewBeforeFraction": "0.2"},
        ".renewBeforeFraction",
        "Expected `float`, got `str`",
    ),
    (
        {"name": "r", "clusterRole": "view", "serviceAccountName": "x"},
        "",
        "unknown field serviceAccountName",
    ),
]


@pytest.mark.parametrize(("fields", "path", "fragment"), SA_REJECTED)
def test_invalid_service_account_is_a_clear_error(
    fields: dict[str, Any], path: str, fragment: str
) -> None:
    err = rejected({"serviceAccount": fields})
    assert err.field == f"spec.serviceAccount{path}"
    assert fragment in err.problem


@pytest.mark.parametrize(("fields", "path", "fragment"), SA_REJECTED)
def test_mint_command_refuses_the_same_service_accounts(
    fields: dict[str, Any], path: str, fragment: str
) -> None:
    """``moonlander mint`` parses its flags with ``parse_service_account``: same verdicts."""
    with pytest.raises(SpecError) as caught:
        api.parse_service_account(fields)
    assert caught.value.field == f"serviceAccount{path}"
    assert fragment in caught.value.problem


def test_service_account_must_be_an_object() -> None:
    err = rejected({"serviceAccount": ["name"]})
    assert err.field == "spec.serviceAccount"
    assert "Expected `object | null`, got `array`" in err.problem


# ---------------------------------------------------------------------------------------------
# spec.output
# ---------------------------------------------------------------------------------------------


def output(raw: Any, *, landing_name: str = "harvey") -> OutputSpec:
    return api.parse_spec({"output": raw}, name=landing_name).output


ARGO_DEFAULT = OutputSpec(format=OutputFormat.ARGOCD, argocd=ArgoCDSpec(name="harvey"))

ACCEPTED: list[Any] = [
    pytest.param(None, OutputSpec(), id="absent"),
    pytest.param({}, OutputSpec(), id="empty"),
    pytest.param({"format": "Kubeconfig"}, OutputSpec(), id="kubeconfig"),
    pytest.param({"format": ""}, OutputSpec(), id="empty-format-is-default"),
    pytest.param({"format": "ArgoCD"}, ARGO_DEFAULT, id="argocd-defaults"),
    pytest.param({"format": "ArgoCD", "argocd": None}, ARGO_DEFAULT, id="argocd-null"),
    pytest.param({"format": "ArgoCD", "argocd": {"name": ""}}, ARGO_DEFAULT, id="empty-name"),
    pytest.param(
        {
            "format": "ArgoCD",
            "argocd": {
                "name": "Harvey (prod)",
                "project": "tenants",
                "namespaces": ["web", "apps"],
                "clusterResources": False,
                "labels": {"z": "1", "example.com/env": "prod", "empty": None},
            },
        },
        OutputSpec(
            format=OutputFormat.ARGOCD,
            argocd=ArgoCDSpec(
                name="Harvey (prod)",
                project="tenants",
                namespaces=("web", "apps"),
                cluster_resources=False,
                labels={"empty": "", "example.com/env": "prod", "z": "1"},
            ),
        ),
        id="argocd-full",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"namespaces": []}}, ARGO_DEFAULT, id="no-namespaces-all"
    ),
    pytest.param(
        {"crossplane": {}}, OutputSpec(crossplane=CrossplaneSpec()), id="crossplane-defaults"
    ),
    pytest.param({"crossplane": None}, OutputSpec(), id="crossplane-null-is-unset"),
    pytest.param(
        {"crossplane": {"providers": ["Helm", "Kubernetes"], "scope": "Namespaced", "name": "x"}},
        OutputSpec(
            crossplane=CrossplaneSpec(
                providers=(Provider.HELM, Provider.KUBERNETES), scope=Scope.NAMESPACED, name="x"
            )
        ),
        id="crossplane-full",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_output_accepts(raw: Any, expected: OutputSpec) -> None:
    parsed = output(raw)
    assert parsed == expected
    if parsed.argocd is not None:  # labels are kept sorted by key (dicts compare unordered)
        assert list(parsed.argocd.labels.items()) == sorted(parsed.argocd.labels.items())


REJECTED: list[Any] = [
    pytest.param([], "spec.output", "Expected `object`, got `array`", id="not-object"),
    pytest.param({"fromat": "ArgoCD"}, "spec.output", "unknown field fromat", id="typo"),
    pytest.param({"format": "Yaml"}, "spec.output.format", "Invalid enum value 'Yaml'", id="fmt"),
    pytest.param({"format": 1}, "spec.output.format", "Expected `str`, got `int`", id="fmt-type"),
    pytest.param(
        {"argocd": {}}, "spec.output.argocd", "is set but format is not ArgoCD", id="argo"
    ),
    pytest.param(
        {"format": "ArgoCD", "crossplane": {}},
        "spec.output.crossplane",
        "needs format Kubeconfig",
        id="xp-argo",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": []}, "spec.output.argocd", "got `array`", id="argo-list"
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"server": "x"}},
        "spec.output.argocd",
        "unknown field server",
        id="argo-f",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"name": "a\nb"}},
        "spec.output.argocd.name",
        "must be a string matching",
        id="name-nl",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"name": "x" * 254}},
        "spec.output.argocd.name",
        "length <= 253",
        id="name-long",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"name": 5}},
        "spec.output.argocd.name",
        "got `int`",
        id="name-type",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"project": "Not Valid"}},
        "spec.output.argocd.project",
        "DNS subdomain",
        id="project",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"namespaces": "a,b"}},
        "spec.output.argocd.namespaces",
        "got `str`",
        id="ns-str",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"namespaces": ["A"]}},
        "spec.output.argocd.namespaces[0]",
        "DNS label",
        id="ns",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"namespaces": ["a", "a"]}},
        "spec.output.argocd.namespaces",
        "listed twice",
        id="ns-dup",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"namespaces": [f"n{i}" for i in range(257)]}},
        "spec.output.argocd.namespaces",
        "length <= 256",
        id="ns-many",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"clusterResources": "true"}},
        "spec.output.argocd.clusterResources",
        "Expected `bool | null`, got `str`",
        id="cluster-resources",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": ["a"]}},
        "spec.output.argocd.labels",
        "Expected `object`, got `array`",
        id="l-list",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"bad key": "x"}}},
        "spec.output.argocd.labels",
        "not a valid label key",
        id="label-key",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"Bad_Prefix/x": "x"}}},
        "spec.output.argocd.labels",
        "not a valid label key",
        id="label-prefix",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"x" * 64: "x"}}},
        "spec.output.argocd.labels",
        "not a valid label key",
        id="label-name-long",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"k": "bad value"}}},
        "spec.output.argocd.labels[...]",
        "must be a string matching",
        id="label-value",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"k": 1}}},
        "spec.output.argocd.labels[...]",
        "Expected `str`, got `int`",
        id="label-value-type",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"argocd.argoproj.io/secret-type": "x"}}},
        "spec.output.argocd.labels",
        "set by Moonlander",
        id="label-secret-type",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {"app.kubernetes.io/managed-by": "helm"}}},
        "spec.output.argocd.labels",
        "set by Moonlander",
        id="label-managed-by",
    ),
    pytest.param(
        {"format": "ArgoCD", "argocd": {"labels": {f"k{i}": "v" for i in range(65)}}},
        "spec.output.argocd.labels",
        "more than 64 labels",
        id="label-many",
    ),
    pytest.param({"crossplane": []}, "spec.output.crossplane", "got `array`", id="xp-list"),
    pytest.param(
        {"crossplane": {"providers": []}},
        "spec.output.crossplane.providers",
        "length >= 1",
        id="xp-none",
    ),
    pytest.param(
        {"crossplane": {"providers": "Helm"}},
        "spec.output.crossplane.providers",
        "Expected `array`, got `str`",
        id="xp-str",
    ),
    pytest.param(
        {"crossplane": {"providers": ["Terraform"]}},
        "spec.output.crossplane.providers[0]",
        "Invalid enum value 'Terraform'",
        id="xp-unknown",
    ),
    pytest.param(
        {"crossplane": {"providers": ["Helm", "Helm"]}},
        "spec.output.crossplane.providers",
        "listed twice",
        id="xp-dup",
    ),
    pytest.param(
        {"crossplane": {"scope": "Global"}},
        "spec.output.crossplane.scope",
        "Invalid enum value 'Global'",
        id="xp-scope",
    ),
    pytest.param(
        {"crossplane": {"name": "Bad_Name"}},
        "spec.output.crossplane.name",
        "DNS subdomain",
        id="xp-name",
    ),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), REJECTED)
def test_output_rejects(raw: Any, field: str, fragment: str) -> None:
    err = rejected({"output": raw}, name="harvey")
    assert err.field == field
    assert fragment in err.problem


def test_unknown_field_names_that_look_like_secrets_are_not_echoed() -> None:
    err = rejected({"output": {"SECRETPLANT token=abc": 1}})
    assert err.field == "spec.output"
    assert "SECRETPLANT" not in str(err)
    assert "(name not shown)" in str(err)


def test_landing_name_is_the_default_argocd_name() -> None:
    spec = output({"format": "ArgoCD"}, landing_name="talos-root-access")
    assert spec.argocd == ArgoCDSpec(name="talos-root-access")


def test_crossplane_name_defaults_to_the_secret_name() -> None:
    assert CrossplaneSpec().config_name("talos-root-kubeconfig") == "talos-root-kubeconfig"
    assert CrossplaneSpec(name="x").config_name("talos-root-kubeconfig") == "x"


# ---------------------------------------------------------------------------------------------
# The examples and the committed CRD
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "examples/argocd/landing.yaml",
        "examples/flux/kustomization.yaml",
        "examples/crossplane/landing-with-providerconfig.yaml",
    ],
)
def test_examples_parse(path: str) -> None:
    landings = [
        doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc["kind"] == api.KIND
    ]
    assert landings
    for doc in landings:
        assert "output" in doc["spec"]
        parsed = api.parse_landing(doc)
        assert isinstance(parsed, api.Landing), parsed.error


def test_docs_schema_enums_and_defaults_match_the_parser() -> None:
    """The Landing CRD's spec.output names the same values the parser accepts."""
    crd = yaml.safe_load((ROOT / "config/crd/bases/moons.kingdon.ci_landings.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]["output"]["properties"]
    assert props["format"]["enum"] == [f.value for f in OutputFormat]
    assert props["format"]["default"] == OutputSpec().format
    xp = props["crossplane"]["properties"]
    assert xp["providers"]["items"]["enum"] == [p.value for p in Provider]
    assert xp["providers"]["default"] == [p.value for p in CrossplaneSpec().providers]
    assert xp["scope"]["enum"] == [s.value for s in Scope]
    assert xp["scope"]["default"] == CrossplaneSpec().scope
    argo = props["argocd"]["properties"]
    assert set(argo) == {"name", "project", "namespaces", "clusterResources", "labels"}
    assert argo["namespaces"]["maxItems"] == 256
    assert argo["labels"]["maxProperties"] == 64
