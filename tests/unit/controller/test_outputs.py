"""Tests for moonlander.controller.outputs (consumer formats) and plan's token-Secret producers."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonlander import api
from moonlander.api import ArgoCDSpec, CrossplaneSpec, Provider, Scope
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import outputs, plan
from moonlander.controller.outputs import PROVIDER_CONFIG_KINDS
from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    credentials_from_token,
)

from ...support.kubeconfigs import FAST, PERMISSIVE, _pki, valid_credentials

DEFAULT = Policy()
LOOPBACK = Policy(allow_loopback=True)
TOKEN = "eyJhbGciOiJSUzI1NiJ9.SECRETPLANTtoken.c2ln"
OWNER, UID = "harvey-system/talos-root-access", "0f3c-uid"


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def token_creds(server: str = "https://harvey.example:6443") -> Credentials:
    return credentials_from_token(server, _pki().ca_pem, TOKEN, DEFAULT, name="harvey")


def cert_creds() -> Credentials:
    pki = _pki()
    return Credentials(
        server="https://10.0.0.1:6443",
        ca_data=pki.ca_pem,
        token=None,
        client_cert=pki.client_cert_pem,
        client_key=pki.client_key_pem,
        tls_server_name="kubernetes.default.svc",
        insecure_skip_tls_verify=False,
        context_name="admin",
        cluster_name="admin",
        user_name="admin",
        namespace=None,
    )


# ---------------------------------------------------------------------------------------------
# Argo CD cluster Secret
# ---------------------------------------------------------------------------------------------


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_argocd_secret_for_a_token_has_exactly_the_documented_fields() -> None:
    creds = token_creds()
    secret = outputs.argocd_cluster_secret(
        creds,
        name="harvey-cluster",
        namespace="argocd",
        owner=OWNER,
        owner_uid=UID,
        spec=ArgoCDSpec(name="harvey"),
    )
    config = {
        "bearerToken": TOKEN,
        "tlsClientConfig": {"insecure": False, "caData": b64(_pki().ca_pem)},
    }
    values = {
        "name": "harvey",
        "server": "https://harvey.example:6443",
        "config": json.dumps(config, sort_keys=True, separators=(",", ":")),
    }
    data = {k: b64(v) for k, v in values.items()}
    content = json.dumps(
        {"data": data, "labels": [["argocd.argoproj.io/secret-type", "cluster"]]},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "harvey-cluster",
            "namespace": "argocd",
            "labels": {
                "argocd.argoproj.io/secret-type": "cluster",
                "app.kubernetes.io/managed-by": "moonlander",
            },
            "annotations": {
                api.OWNER_ANNOTATION: OWNER,
                api.OWNER_UID_ANNOTATION: UID,
                api.HASH_ANNOTATION: plan.content_hash(content),
            },
        },
        "type": "Opaque",
        "data": data,
    }
    assert "stringData" not in secret
    assert set(decoded(secret)) <= set(outputs.ARGOCD_KEYS)


def test_argocd_config_for_a_client_certificate() -> None:
    creds, pki = cert_creds(), _pki()
    assert outputs.argocd_config(creds) == {
        "tlsClientConfig": {
            "insecure": False,
            "serverName": "kubernetes.default.svc",
            "caData": b64(pki.ca_pem),  # base64 of the PEM: Go []byte in JSON
            "certData": b64(pki.client_cert_pem),
            "keyData": b64(pki.client_key_pem),
        }
    }


def test_argocd_config_without_ca_and_insecure() -> None:
    creds = dataclasses.replace(token_creds(), ca_data=None, insecure_skip_tls_verify=True)
    assert outputs.argocd_config(creds) == {
        "bearerToken": TOKEN,
        "tlsClientConfig": {"insecure": True},
    }


def test_argocd_optional_keys_only_when_set() -> None:
    spec = ArgoCDSpec(
        name="h",
        project="tenants",
        namespaces=("web", "apps"),
        cluster_resources=True,
        labels={"env": "prod"},
    )
    secret = outputs.argocd_cluster_secret(
        token_creds(), name="s", namespace="argocd", owner=OWNER, owner_uid=UID, spec=spec
    )
    values = decoded(secret)
    assert set(values) == set(outputs.ARGOCD_KEYS)
    assert values["project"] == "tenants"
    assert values["namespaces"] == "web,apps"
    assert values["clusterResources"] == "true"
    assert secret["metadata"]["labels"]["env"] == "prod"
    no_cluster = msgspec.structs.replace(spec, cluster_resources=False)
    off = outputs.argocd_cluster_secret(
        token_creds(), name="s", namespace="argocd", owner=OWNER, owner_uid=UID, spec=no_cluster
    )
    assert decoded(off)["clusterResources"] == "false"


def test_argocd_secret_carries_extra_annotations_like_desired_secret() -> None:
    extra = {"moons.kingdon.ci/token-expires-at": "2026-01-01T00:00:00Z"}
    secret = outputs.argocd_cluster_secret(
        token_creds(),
        name="s",
        namespace="argocd",
        owner=OWNER,
        owner_uid=UID,
        spec=ArgoCDSpec(name="h"),
        annotations=extra,
    )
    landed = plan.desired_secret(
        name="s", namespace="argocd", owner=OWNER, owner_uid=UID, kubeconfig="k", annotations=extra
    )
    assert secret["metadata"]["annotations"].keys() == landed["metadata"]["annotations"].keys()
    assert (
        secret["metadata"]["annotations"]["moons.kingdon.ci/token-expires-at"]
        == extra["moons.kingdon.ci/token-expires-at"]
    )


def test_argocd_hash_changes_with_labels_so_a_removed_label_is_reapplied() -> None:
    def render(labels: dict[str, str]) -> dict[str, Any]:
        spec = ArgoCDSpec(name="h", labels=labels)
        return outputs.argocd_cluster_secret(
            token_creds(), name="s", namespace="argocd", owner=OWNER, owner_uid=UID, spec=spec
        )

    with_label, without = render({"env": "prod"}), render({})
    assert with_label["data"] == without["data"]
    assert outputs.is_current(with_label, with_label)
    # Stored with the label, now unwanted: the hash differs, so it is re-applied (and SSA
    # removes the label this field manager no longer sets).
    assert not outputs.is_current(with_label, without)


@FAST
@given(
    valid_credentials(),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40),
)
def test_argocd_config_round_trips_to_the_same_credentials(creds: Credentials, name: str) -> None:
    secret = outputs.argocd_cluster_secret(
        creds, name="s", namespace="argocd", owner=OWNER, owner_uid=UID, spec=ArgoCDSpec(name=name)
    )
    config = json.loads(decoded(secret)["config"])
    assert config == outputs.argocd_config(creds)
    back = outputs.argocd_credentials(secret["data"], PERMISSIVE)
    # Argo CD has no default namespace; the entry's name names context, cluster and user.
    assert back == dataclasses.replace(
        creds, context_name=name, cluster_name=name, user_name=name, namespace=None
    )
    assert back.fingerprint() == creds.fingerprint()


ARGO_REJECTIONS: list[Any] = [
    pytest.param({"execProviderConfig": {"command": "SECRETPLANT"}}, "ExecNotAllowed", id="exec"),
    pytest.param({"awsAuthConfig": {"roleARN": "SECRETPLANT"}}, "AuthProviderNotAllowed", id="aws"),
    pytest.param({"username": "u", "password": "SECRETPLANT"}, "BasicAuthNotAllowed", id="basic"),
    pytest.param({"proxyUrl": "http://SECRETPLANT@p"}, "ProxyNotAllowed", id="proxy"),
    pytest.param({"Bearer SECRETPLANT": 1, "bearerToken": "t"}, "InvalidData", id="unknown"),
    pytest.param({"tlsClientConfig": {"SECRETPLANT:x": 1}}, "InvalidData", id="tls-unknown"),
    pytest.param({"tlsClientConfig": ["SECRETPLANT"]}, "InvalidData", id="tls-list"),
    pytest.param({"bearerToken": "SECRETPLANT with space"}, "InvalidToken", id="token"),
    pytest.param(
        {"bearerToken": "t", "tlsClientConfig": {"caData": b64("SECRETPLANT")}},
        "InvalidData",
        id="ca",
    ),
    pytest.param(
        {"tlsClientConfig": {"certData": b64("SECRETPLANT"), "keyData": b64("SECRETPLANT")}},
        "InvalidData",
        id="cert",
    ),
    pytest.param(
        {"bearerToken": "t", "tlsClientConfig": {"insecure": True}}, "InsecureTLS", id="insecure"
    ),
    pytest.param({}, "MissingCredentials", id="no-credentials"),
]


@pytest.mark.parametrize(("config", "reason"), ARGO_REJECTIONS)
def test_argocd_credentials_rejects(config: dict[str, Any], reason: str) -> None:
    data = {
        "name": b64("h"),
        "server": b64("https://h.example:6443"),
        "config": b64(json.dumps(config)),
    }
    with pytest.raises(KubeconfigError) as caught:
        outputs.argocd_credentials(data, DEFAULT)
    assert caught.value.reason == reason, str(caught.value)
    assert "SECRETPLANT" not in str(caught.value) and "SECRETPLANT" not in repr(caught.value)
    assert b64("SECRETPLANT")[:12] not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param({"config": b64("{}")}, "InvalidServer", id="no-server"),
        pytest.param({"server": "%%%", "config": b64("{}")}, "InvalidData", id="bad-base64"),
        pytest.param(
            {"server": b64("https://127.0.0.1"), "config": b64('{"bearerToken":"t"}')},
            "AddressNotAllowed",
            id="loopback",
        ),
        pytest.param(
            {"server": b64("https://h"), "config": b64("SECRETPLANT")}, "InvalidData", id="not-json"
        ),
        pytest.param(
            {"server": b64("https://h"), "config": b64("[1]")}, "InvalidData", id="not-object"
        ),
    ],
)
def test_argocd_credentials_rejects_secret_shapes(data: dict[str, str], reason: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        outputs.argocd_credentials(data, DEFAULT)
    assert caught.value.reason == reason
    assert "SECRETPLANT" not in str(caught.value)


def test_argocd_credentials_reads_a_hand_written_entry() -> None:
    """As users write them (stringData, disableCompression, explicit nulls)."""
    config = {
        "bearerToken": TOKEN,
        "disableCompression": True,
        "tlsClientConfig": {"insecure": False, "caData": None},
    }
    data = {
        "name": b64("h"),
        "server": b64("https://h.example/"),
        "config": b64(json.dumps(config)),
    }
    creds = outputs.argocd_credentials(data, DEFAULT)
    assert creds.server == "https://h.example"
    assert creds.token == TOKEN and creds.ca_data is None


# ---------------------------------------------------------------------------------------------
# Crossplane ProviderConfigs
# ---------------------------------------------------------------------------------------------

# From the providers' published CRDs (package/crds): provider-kubernetes v1.4.1 (also
# checked on a real API server by the e2e tests) and provider-helm (not on the module proxy
# here, so only this table): group, served version, kind, scope.
PUBLISHED = {
    (Provider.KUBERNETES, Scope.LEGACY): (
        "kubernetes.crossplane.io/v1alpha1",
        "ProviderConfig",
        False,
    ),
    (Provider.KUBERNETES, Scope.NAMESPACED): (
        "kubernetes.m.crossplane.io/v1alpha1",
        "ProviderConfig",
        True,
    ),
    (Provider.KUBERNETES, Scope.CLUSTER): (
        "kubernetes.m.crossplane.io/v1alpha1",
        "ClusterProviderConfig",
        False,
    ),
    (Provider.HELM, Scope.LEGACY): ("helm.crossplane.io/v1beta1", "ProviderConfig", False),
    (Provider.HELM, Scope.NAMESPACED): ("helm.m.crossplane.io/v1beta1", "ProviderConfig", True),
    (Provider.HELM, Scope.CLUSTER): (
        "helm.m.crossplane.io/v1beta1",
        "ClusterProviderConfig",
        False,
    ),
}


@pytest.mark.parametrize(("key", "published"), list(PUBLISHED.items()), ids=lambda v: str(v))
def test_provider_configs_have_exactly_the_documented_shape(
    key: tuple[Provider, Scope], published: tuple[str, str, bool]
) -> None:
    provider, scope = key
    api_version, kind, namespaced = published
    (obj,) = outputs.crossplane_provider_configs(
        provider=provider,
        scope=scope,
        name="talos-root",
        secret_name="talos-root-kubeconfig",
        secret_namespace="crossplane-system",
        owner=OWNER,
        owner_uid=UID,
    )
    spec = {
        "credentials": {
            "source": "Secret",
            # All three of namespace, name, key are required by every one of these CRDs.
            "secretRef": {
                "namespace": "crossplane-system",
                "name": "talos-root-kubeconfig",
                "key": "kubeconfig",
            },
        }
    }
    meta: dict[str, Any] = {"name": "talos-root"}
    if namespaced:
        meta["namespace"] = "crossplane-system"
    meta["labels"] = {"app.kubernetes.io/managed-by": "moonlander"}
    meta["annotations"] = {
        api.OWNER_ANNOTATION: OWNER,
        api.OWNER_UID_ANNOTATION: UID,
        api.HASH_ANNOTATION: plan.content_hash(
            json.dumps({"spec": spec}, sort_keys=True, separators=(",", ":"))
        ),
    }
    assert obj == {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}
    pc = PROVIDER_CONFIG_KINDS[key]
    assert pc.crd_name == f"{kind.lower()}s.{api_version.split('/')[0]}"
    assert own.ownership(obj, OWNER) is own.Ownership.OURS


def test_crossplane_objects_one_per_provider_in_order() -> None:
    objs = outputs.crossplane_objects(
        CrossplaneSpec(providers=(Provider.HELM, Provider.KUBERNETES), scope=Scope.CLUSTER),
        secret_name="s",
        secret_namespace="ns",
        owner=OWNER,
        owner_uid=UID,
    )
    assert [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("helm.m.crossplane.io/v1beta1", "ClusterProviderConfig", "s"),
        ("kubernetes.m.crossplane.io/v1alpha1", "ClusterProviderConfig", "s"),
    ]
    assert all("namespace" not in o["metadata"] for o in objs)
    assert outputs.provider_config_kinds(CrossplaneSpec(providers=(Provider.HELM,))) == (
        PROVIDER_CONFIG_KINDS[(Provider.HELM, Scope.LEGACY)],
    )


# ---------------------------------------------------------------------------------------------
# is_current
# ---------------------------------------------------------------------------------------------


def provider_config() -> dict[str, Any]:
    (obj,) = outputs.crossplane_provider_configs(
        provider=Provider.KUBERNETES,
        scope=Scope.NAMESPACED,
        name="p",
        secret_name="s",
        secret_namespace="ns",
        owner=OWNER,
        owner_uid=UID,
    )
    return obj


def edited(obj: dict[str, Any], edit: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(obj))
    edit(copy)
    return copy


def test_is_current() -> None:
    pc = provider_config()
    assert outputs.is_current(pc, pc)
    # The API server's additions and others' labels and annotations are theirs to keep.
    served = edited(
        pc,
        lambda o: (
            o["metadata"].update(uid="x", resourceVersion="1"),
            o["metadata"]["labels"].update(team="a"),
            o["metadata"]["annotations"].update(note="b"),
            o["spec"]["credentials"].update(extra="defaulted"),
            o.update(status={"users": 1}),
        ),
    )
    assert outputs.is_current(served, pc)
    stale = [
        lambda o: o["spec"]["credentials"]["secretRef"].update(key="value"),
        lambda o: o["spec"]["credentials"].pop("secretRef"),
        lambda o: o.pop("spec"),
        lambda o: o["metadata"]["labels"].pop(api.MANAGED_BY_LABEL),
        lambda o: o["metadata"]["annotations"].update({api.OWNER_ANNOTATION: "other/landing"}),
        lambda o: o["metadata"]["annotations"].update({api.HASH_ANNOTATION: "sha256:0"}),
        lambda o: o["metadata"].pop("annotations"),
    ]
    for edit in stale:
        assert not outputs.is_current(edited(pc, edit), pc)


def test_is_current_for_secrets_compares_type_and_all_data() -> None:
    secret = outputs.argocd_cluster_secret(
        token_creds(),
        name="s",
        namespace="argocd",
        owner=OWNER,
        owner_uid=UID,
        spec=ArgoCDSpec(name="h"),
    )
    assert outputs.is_current(secret, secret)
    assert not outputs.is_current(
        edited(secret, lambda o: o["data"].update(shard=b64("1"))), secret
    )
    assert not outputs.is_current(edited(secret, lambda o: o["data"].pop("config")), secret)
    assert not outputs.is_current(
        edited(secret, lambda o: o.update(type="kubernetes.io/tls")), secret
    )
    assert outputs.is_current(edited(secret, lambda o: o.pop("type")), secret)  # Opaque default
    # Same verdicts as plan.is_current on the Kubeconfig format's Secret.
    landed = plan.desired_secret(
        name="s", namespace="n", owner=OWNER, owner_uid=UID, kubeconfig="k"
    )
    assert outputs.is_current(landed, landed) and plan.is_current(landed, landed)


# ---------------------------------------------------------------------------------------------
# Secret material never leaves data
# ---------------------------------------------------------------------------------------------


def _secret_markers(creds: Credentials) -> list[str]:
    markers = []
    if creds.token:
        markers += [creds.token, b64(creds.token)]
    for pem in (creds.client_key, creds.client_cert):
        if pem is not None:
            body = b"".join(pem.splitlines()[1:-1]).decode()
            markers += [body[:40], b64(pem)[:40]]
    return [m for m in markers if len(m) >= 8]


@FAST
@given(
    valid_credentials(),
    st.sampled_from(list(Scope)),
    st.from_regex(r"[A-Za-z0-9]{8,20}", fullmatch=True),
)
def test_no_secret_in_labels_annotations_or_reprs(
    creds: Credentials, scope: Scope, suffix: str
) -> None:
    if creds.token is not None:  # a token nothing else can contain by chance
        creds = dataclasses.replace(creds, token="SECRETPLANT" + suffix)
    spec = ArgoCDSpec(name="h", project="p", namespaces=("a",), labels={"env": "x"})
    secret = outputs.argocd_cluster_secret(
        creds, name="s", namespace="argocd", owner=OWNER, owner_uid=UID, spec=spec
    )
    pcs = outputs.crossplane_provider_configs(
        provider=list(Provider),
        scope=scope,
        name="p",
        secret_name="s",
        secret_namespace="ns",
        owner=OWNER,
        owner_uid=UID,
    )
    outside_data = [
        json.dumps(secret["metadata"]),
        *(json.dumps(pc) for pc in pcs),
        repr(spec),
        repr(creds),
        repr(api.parse_spec({"output": {"format": "ArgoCD"}}, name="h").output),
    ]
    for marker in _secret_markers(creds):
        for text in outside_data:
            assert marker not in text


# ---------------------------------------------------------------------------------------------
# Producers: token + ca.crt Secrets (plan.py), Kamaji's key selection
# ---------------------------------------------------------------------------------------------


def token_secret(**extra: str) -> dict[str, str]:
    data = {"token": b64(TOKEN + "\n"), "ca.crt": b64(_pki().ca_pem)}
    data.update({k: b64(v) for k, v in extra.items()})
    return data


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["token", "ca.crt"], True),  # OCM managed-serviceaccount
        (["token", "ca.crt", "namespace"], True),  # kubernetes.io/service-account-token
        (["token"], False),
        (["ca.crt"], False),
        (["token", "ca.crt", "kubeconfig"], False),
        (["token", "ca.crt", "value"], False),
        (["token", "ca.crt", "admin.svc"], False),
        (["config", "certificate-authority", "client-certificate", "client-key"], False),
    ],
)
def test_is_token_secret(keys: list[str], expected: bool) -> None:
    assert plan.is_token_secret(dict.fromkeys(keys, "eA==")) is expected


def test_credentials_from_token_secret() -> None:
    creds = plan.credentials_from_token_secret(token_secret(), "https://edge.example:6443", DEFAULT)
    assert creds.server == "https://edge.example:6443"
    assert creds.token == TOKEN  # the trailing newline of token files is dropped
    assert creds.ca_data == _pki().ca_pem
    assert creds.namespace is None
    classic = plan.credentials_from_token_secret(
        token_secret(namespace="team-a"), "https://edge.example:6443", DEFAULT
    )
    assert classic.namespace == "team-a"
    no_ca = {k: v for k, v in token_secret().items() if k != "ca.crt"}
    assert plan.credentials_from_token_secret(no_ca, "https://e.example", DEFAULT).ca_data is None


@pytest.mark.parametrize("server", [None, ""])
def test_token_secret_without_server_asks_for_spec_server(server: str | None) -> None:
    with pytest.raises(LandingProblem) as caught:
        plan.credentials_from_token_secret(token_secret(), server, DEFAULT)
    outcome = caught.value.outcome
    assert outcome.reason is Reason.SOURCE_KEY_NOT_FOUND
    assert outcome.retry is Retry.ON_CHANGE
    assert "set spec.server" in outcome.message


TOKEN_SECRET_PROBLEMS: list[Any] = [
    pytest.param(token_secret(), "http://edge", Reason.INVALID_SPEC, "spec.server", id="http"),
    pytest.param(token_secret(), "https://127.0.0.1", Reason.INVALID_SPEC, "loopback", id="lo"),
    pytest.param(
        {"ca.crt": b64(_pki().ca_pem)},
        "https://e",
        Reason.SOURCE_KEY_NOT_FOUND,
        "'token'",
        id="no-token",
    ),
    pytest.param(
        {**token_secret(), "token": "not base64!"},
        "https://e",
        Reason.INVALID_KUBECONFIG,
        "base64",
        id="b64",
    ),
    pytest.param(
        {**token_secret(), "token": b64("SECRETPLANT in two")},
        "https://e",
        Reason.INVALID_KUBECONFIG,
        "printable",
        id="space",
    ),
    pytest.param(
        {**token_secret(), "token": b64("SECRETPLANT\xe9".encode("latin-1"))},
        "https://e",
        Reason.INVALID_KUBECONFIG,
        "ASCII",
        id="non-ascii",
    ),
    pytest.param(
        {**token_secret(), "ca.crt": b64("SECRETPLANT")},
        "https://e",
        Reason.INVALID_KUBECONFIG,
        "ca.crt",
        id="ca",
    ),
    pytest.param(
        token_secret(namespace="SECRETPLANT/x"),
        "https://e",
        Reason.INVALID_KUBECONFIG,
        "namespace",
        id="ns",
    ),
]


@pytest.mark.parametrize(("data", "server", "reason", "fragment"), TOKEN_SECRET_PROBLEMS)
def test_token_secret_problems(
    data: dict[str, str], server: str, reason: Reason, fragment: str
) -> None:
    with pytest.raises(LandingProblem) as caught:
        plan.credentials_from_token_secret(data, server, DEFAULT)
    outcome = caught.value.outcome
    assert outcome.reason is reason and outcome.retry is Retry.ON_CHANGE
    assert fragment in outcome.message
    assert "SECRETPLANT" not in outcome.message and TOKEN not in outcome.message


def test_token_secret_server_loopback_allowed_by_policy() -> None:
    creds = plan.credentials_from_token_secret(token_secret(), "https://localhost:8443", LOOPBACK)
    assert creds.server == "https://localhost:8443"


def test_kamaji_svc_keys_are_chosen_by_key_or_annotation() -> None:
    """CozyStack/Kamaji's in-cluster variants are never picked by the default search."""
    data = dict.fromkeys(["admin.conf", "admin.svc", "super-admin.conf", "super-admin.svc"], "eA==")
    assert plan.select_source_key(data, None) == "admin.conf"
    assert plan.select_source_key(data, "super-admin.svc") == "super-admin.svc"
    hinted = {plan.KAMAJI_KEY_ANNOTATION: "admin.svc"}
    assert plan.select_source_key(data, None, hinted) == "admin.svc"
