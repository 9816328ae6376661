"""Tests for moonlander.credentials.validate: every kubeconfig is hostile, so most tests are
rejections."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    find_problems,
    parse_kubeconfig,
    render_kubeconfig,
)

from ...support.kubeconfigs import (
    CLUSTER,
    CONTEXT,
    DEFAULT,
    DELETE,
    FAST,
    INSECURE,
    NO_PRIVATE,
    PERMISSIVE,
    PKI,
    TOKEN,
    USER,
    Builder,
    _cert_and_key,
    _outcome,
    _pki,
    b64,
    base_doc,
    check_rejected,
    doc_with,
    edited,
    raw,
    with_cluster,
    with_context,
    with_top,
    with_user,
)


def _two_contexts(doc: dict[str, Any], _pki: PKI) -> None:
    doc["contexts"].append(
        {"name": "other", "context": {"cluster": CLUSTER, "user": USER}},
    )


def _no_current_two_contexts(doc: dict[str, Any], pki: PKI) -> None:
    _two_contexts(doc, pki)
    del doc["current-context"]


def _duplicate(section: str) -> Callable[[dict[str, Any], PKI], None]:
    def edit(doc: dict[str, Any], _pki: PKI) -> None:
        doc[section].append(json.loads(json.dumps(doc[section][0])))

    return edit


def _no_contexts(doc: dict[str, Any], _pki: PKI) -> None:
    doc["contexts"] = []
    del doc["current-context"]


P = pytest.param
REJECTIONS = [
    # --- user: code execution, files, basic auth, impersonation -------------------------------
    P(
        with_user({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh"}}),
        DEFAULT,
        "ExecNotAllowed",
        'user "admin": exec plugins are not allowed: they would run a program',
        id="exec",
    ),
    P(
        with_user({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}),
        DEFAULT,
        "AuthProviderNotAllowed",
        "auth-provider plugins are not allowed",
        id="auth-provider",
    ),
    P(
        with_user({"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
        DEFAULT,
        "FilePathNotAllowed",
        "tokenFile (a file path) is not allowed",
        id="tokenFile",
    ),
    P(
        with_user({"client-certificate": "/etc/kubernetes/pki/admin.crt"}),
        DEFAULT,
        "FilePathNotAllowed",
        "client-certificate (a file path)",
        id="client-certificate-path",
    ),
    P(
        with_user({"client-key": "/etc/kubernetes/pki/admin.key"}),
        DEFAULT,
        "FilePathNotAllowed",
        "client-key (a file path)",
        id="client-key-path",
    ),
    P(
        with_user({"username": "admin"}),
        DEFAULT,
        "BasicAuthNotAllowed",
        "username (basic authentication) is not supported",
        id="basic-auth-username",
    ),
    P(
        with_user({"password": "hunter2"}),
        DEFAULT,
        "BasicAuthNotAllowed",
        "password (basic authentication)",
        id="basic-auth-password",
    ),
    P(
        with_user({"as": "system:admin"}),
        DEFAULT,
        "ImpersonationNotAllowed",
        "as (impersonation) is not allowed",
        id="impersonate-as",
    ),
    P(
        with_user({"as-uid": "1"}),
        DEFAULT,
        "ImpersonationNotAllowed",
        "as-uid (impersonation)",
        id="impersonate-as-uid",
    ),
    P(
        with_user({"as-groups": ["system:masters"]}),
        DEFAULT,
        "ImpersonationNotAllowed",
        "as-groups (impersonation)",
        id="impersonate-as-groups",
    ),
    P(
        with_user({"as-user-extra": {"scopes": ["all"]}}),
        DEFAULT,
        "ImpersonationNotAllowed",
        "as-user-extra (impersonation)",
        id="impersonate-as-user-extra",
    ),
    P(
        with_user({"exec": False}),
        DEFAULT,
        "ExecNotAllowed",
        "exec plugins",
        id="exec-wrong-type-still-rejected",
    ),
    # --- user: credentials ---------------------------------------------------------------------
    P(
        with_user({"token": DELETE}),
        DEFAULT,
        "MissingCredentials",
        'user "admin": has no credentials',
        id="no-credentials",
    ),
    P(
        with_user({"token": ""}),
        DEFAULT,
        "MissingCredentials",
        "has no credentials",
        id="empty-token",
    ),
    P(
        with_user({"token": "abc def"}),
        DEFAULT,
        "InvalidToken",
        "token must be printable ASCII",
        id="token-with-space",
    ),
    P(
        with_user({"token": "abc\ndef"}),
        DEFAULT,
        "InvalidToken",
        "without whitespace or line breaks",
        id="token-with-newline",
    ),
    P(
        with_user({"token": "t\u00f6ken"}),
        DEFAULT,
        "InvalidToken",
        "printable ASCII",
        id="token-non-ascii",
    ),
    P(
        with_user({"token": ["a"]}),
        DEFAULT,
        "InvalidData",
        "token must be a string",
        id="token-not-string",
    ),
    P(
        lambda pki: doc_with(
            pki, user={"token": DELETE, "client-certificate-data": b64(pki.client_cert_pem)}
        ),
        DEFAULT,
        "InvalidData",
        "client-certificate-data is set but client-key-data is not",
        id="cert-without-key",
    ),
    P(
        lambda pki: doc_with(
            pki, user={"token": DELETE, "client-key-data": b64(pki.client_key_pem)}
        ),
        DEFAULT,
        "InvalidData",
        "client-key-data is set but client-certificate-data is not",
        id="key-without-cert",
    ),
    P(
        lambda pki: _cert_and_key(pki.client_cert_pem, pki.other_key_pem)(pki),
        DEFAULT,
        "InvalidData",
        "client-key-data does not match client-certificate-data",
        id="key-mismatch",
    ),
    P(
        lambda pki: _cert_and_key(pki.client_cert_pem, pki.encrypted_key_pem)(pki),
        DEFAULT,
        "InvalidData",
        "client-key-data is encrypted",
        id="encrypted-key",
    ),
    P(
        lambda pki: _cert_and_key(pki.client_cert_pem, pki.client_cert_pem)(pki),
        DEFAULT,
        "InvalidData",
        "client-key-data does not contain a PEM private key",
        id="key-is-a-certificate",
    ),
    P(
        lambda pki: _cert_and_key(pki.client_key_pem, pki.client_key_pem)(pki),
        DEFAULT,
        "InvalidData",
        "client-certificate-data contains a private key",
        id="cert-is-a-key",
    ),
    P(
        lambda pki: _cert_and_key(
            pki.client_cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )(pki),
        DEFAULT,
        "InvalidData",
        "does not contain a valid PEM private key",
        id="garbage-key",
    ),
    # --- cluster --------------------------------------------------------------------------------
    P(
        with_cluster({"certificate-authority": "/etc/kubernetes/pki/ca.crt"}),
        DEFAULT,
        "FilePathNotAllowed",
        'cluster "prod": certificate-authority (a file path) is not allowed',
        id="certificate-authority-path",
    ),
    P(
        with_cluster({"proxy-url": "http://proxy.example.com:3128"}),
        DEFAULT,
        "ProxyNotAllowed",
        "proxy-url is not allowed",
        id="proxy-url",
    ),
    P(
        with_cluster({"insecure-skip-tls-verify": True}),
        DEFAULT,
        "InsecureTLS",
        "insecure-skip-tls-verify is not allowed",
        id="insecure-without-policy-flag",
    ),
    P(
        with_cluster({"insecure-skip-tls-verify": "true"}),
        INSECURE,
        "InvalidData",
        "insecure-skip-tls-verify must be true or false",
        id="insecure-quoted-string",
    ),
    P(
        with_cluster({"disable-compression": "yes please"}),
        DEFAULT,
        "InvalidData",
        "disable-compression must be true or false",
        id="disable-compression-not-bool",
    ),
    P(
        with_cluster({"certificate-authority-data": "not base64!!"}),
        DEFAULT,
        "InvalidData",
        "certificate-authority-data is not valid base64",
        id="ca-bad-base64",
    ),
    P(
        lambda pki: doc_with(pki, cluster={"certificate-authority-data": pki.ca_pem.decode()}),
        DEFAULT,
        "InvalidData",
        "certificate-authority-data is not valid base64",
        id="ca-raw-pem-not-base64",
    ),
    P(
        with_cluster({"certificate-authority-data": b64("just some bytes")}),
        DEFAULT,
        "InvalidData",
        "does not contain PEM data",
        id="ca-not-pem",
    ),
    P(
        with_cluster(
            {
                "certificate-authority-data": b64(
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                )
            }
        ),
        DEFAULT,
        "InvalidData",
        "does not contain a valid PEM certificate",
        id="ca-garbage-pem",
    ),
    P(
        lambda pki: doc_with(
            pki, cluster={"certificate-authority-data": b64(pki.ca_pem + pki.client_key_pem)}
        ),
        DEFAULT,
        "InvalidData",
        "certificate-authority-data contains a private key",
        id="ca-with-private-key",
    ),
    P(
        with_cluster({"certificate-authority-data": 12345}),
        DEFAULT,
        "InvalidData",
        "not valid base64",
        id="ca-number",
    ),
    P(
        with_cluster({"tls-server-name": "not a host"}),
        DEFAULT,
        "InvalidData",
        "tls-server-name must be a DNS name",
        id="tls-server-name-invalid",
    ),
    # --- contexts -------------------------------------------------------------------------------
    P(
        edited(_no_current_two_contexts),
        DEFAULT,
        "AmbiguousContext",
        "current-context is not set and there are 2 contexts",
        id="ambiguous-context",
    ),
    P(
        with_top({"current-context": "staging"}),
        DEFAULT,
        "NoCurrentContext",
        'current-context names "staging", but no context has that name',
        id="dangling-current-context",
    ),
    P(edited(_no_contexts), DEFAULT, "NoCurrentContext", "no contexts", id="no-contexts"),
    P(
        edited(_duplicate("clusters")),
        DEFAULT,
        "DuplicateName",
        'cluster "prod": the name is used more than once',
        id="duplicate-cluster",
    ),
    P(
        edited(_duplicate("users")),
        DEFAULT,
        "DuplicateName",
        'user "admin": the name is used more than once',
        id="duplicate-user",
    ),
    P(
        edited(_duplicate("contexts")),
        DEFAULT,
        "DuplicateName",
        'context "prod-admin": the name is used more than once',
        id="duplicate-context",
    ),
    P(
        with_context({"cluster": "nope"}),
        DEFAULT,
        "MissingCluster",
        'refers to cluster "nope", which does not exist',
        id="context-missing-cluster",
    ),
    P(
        with_context({"user": "nope"}),
        DEFAULT,
        "MissingUser",
        'refers to user "nope", which does not exist',
        id="context-missing-user",
    ),
    P(
        with_context({"user": DELETE}),
        DEFAULT,
        "MissingUser",
        "does not name a user",
        id="context-without-user",
    ),
    P(
        with_context({"namespace": "Not_A_Label"}),
        DEFAULT,
        "InvalidData",
        "namespace must be a valid DNS label",
        id="bad-namespace",
    ),
    # --- allowlists -----------------------------------------------------------------------------
    P(
        with_top({"colors": True}),
        DEFAULT,
        "UnknownField",
        'top level: unknown field "colors"',
        id="unknown-top-level",
    ),
    P(
        with_cluster({"server-side-magic": "x"}),
        DEFAULT,
        "UnknownField",
        'cluster "prod": unknown field (name not shown) at key 3 of 3 (allowed:',
        id="unknown-cluster-field",
    ),
    P(
        with_user({"tokn": "x"}),
        DEFAULT,
        "UnknownField",
        'user "admin": unknown field (name not shown) at key 2 of 2 (allowed:',
        id="unknown-user-field",
    ),
    P(
        with_context({"clusterr": "x"}),
        DEFAULT,
        "UnknownField",
        'context "prod-admin": unknown field (name not shown) at key 4 of 4 (allowed:',
        id="unknown-context-field",
    ),
    P(
        edited(lambda doc, _: doc["users"][0].update({"extra": 1})),
        DEFAULT,
        "UnknownField",
        "unknown field (name not shown) at key 3 of 3 next to name",
        id="unknown-entry-field",
    ),
    P(
        raw("users:\n- name: admin\n  user:\n    token: abc\n    <<: {exec: {command: sh}}\n"),
        DEFAULT,
        "UnknownField",
        'unknown field "<<"',
        id="inline-merge-key",
    ),
    P(
        with_top({"kind": "Pod"}),
        DEFAULT,
        "NotAKubeconfig",
        'kind must be "Config"',
        id="wrong-kind",
    ),
    P(
        with_top({"apiVersion": "v2"}),
        DEFAULT,
        "NotAKubeconfig",
        'apiVersion must be "v1"',
        id="wrong-api-version",
    ),
    P(
        with_top({"clusters": {"prod": {}}}),
        DEFAULT,
        "InvalidData",
        "clusters must be a list",
        id="clusters-not-a-list",
    ),
]


@pytest.mark.parametrize(("build", "policy", "reason", "fragment"), REJECTIONS)
@pytest.mark.usefixtures("yaml_loader")
def test_rejected(pki: PKI, build: Builder, policy: Policy, reason: str, fragment: str) -> None:
    check_rejected(pki, build, policy, reason, fragment)


# ---------------------------------------------------------------------------------------------
# Accepted documents
# ---------------------------------------------------------------------------------------------


def test_token_user(pki: PKI) -> None:
    creds = parse_kubeconfig(doc_with(pki))
    assert creds == Credentials(
        server="https://10.0.0.1:6443",
        ca_data=pki.ca_pem,
        token=TOKEN,
        client_cert=None,
        client_key=None,
        tls_server_name=None,
        insecure_skip_tls_verify=False,
        context_name=CONTEXT,
        cluster_name=CLUSTER,
        user_name=USER,
        namespace="default",
    )
    assert find_problems(doc_with(pki)) == []


def test_single_context_without_current_context(pki: PKI) -> None:
    creds = parse_kubeconfig(doc_with(pki, top={"current-context": DELETE}))
    assert creds.context_name == CONTEXT
    assert parse_kubeconfig(doc_with(pki, top={"current-context": ""})) == creds


def test_current_context_picks_among_several(pki: PKI) -> None:
    doc = base_doc(pki)
    doc["clusters"].append({"name": "dev", "cluster": {"server": "https://dev.example.com"}})
    doc["contexts"].append({"name": "dev", "context": {"cluster": "dev", "user": USER}})
    doc["current-context"] = "dev"
    creds = parse_kubeconfig(yaml.safe_dump(doc))
    assert (creds.server, creds.context_name, creds.ca_data, creds.namespace) == (
        "https://dev.example.com",
        "dev",
        None,
        None,
    )


def test_tls_server_name(pki: PKI) -> None:
    doc = doc_with(pki, cluster={"tls-server-name": "kubernetes.default.svc"})
    creds = parse_kubeconfig(doc)
    assert creds.tls_server_name == "kubernetes.default.svc"
    assert "tls-server-name: kubernetes.default.svc" in render_kubeconfig(creds)


def test_insecure_tls_allowed_by_policy(pki: PKI) -> None:
    doc = doc_with(pki, cluster={"insecure-skip-tls-verify": True})
    assert parse_kubeconfig(doc, INSECURE).insecure_skip_tls_verify is True
    assert parse_kubeconfig(doc_with(pki, cluster={"insecure-skip-tls-verify": False}))


def test_harmless_and_ignored_fields(pki: PKI) -> None:
    def ext() -> list[dict[str, Any]]:
        # Fresh objects: PyYAML would emit anchors/aliases for a shared one (and we reject those).
        return [{"name": "client.authentication.k8s.io/exec", "extension": {"anything": [1]}}]

    doc = doc_with(
        pki,
        cluster={"disable-compression": True, "extensions": ext()},
        user={"extensions": ext()},
        context={"extensions": ext()},
        top={"preferences": {"colors": True}, "extensions": ext()},
    )
    assert parse_kubeconfig(doc) == parse_kubeconfig(doc_with(pki))


def test_empty_forbidden_fields_count_as_unset(pki: PKI) -> None:
    # Go treats null/empty as "not set"; such fields cannot do anything.
    doc = doc_with(pki, user={"exec": None, "as": "", "as-groups": [], "client-key": None})
    assert parse_kubeconfig(doc).token == TOKEN


def test_find_problems_reports_everything(pki: PKI) -> None:
    doc = doc_with(
        pki,
        cluster={"server": "http://10.0.0.1", "proxy-url": "http://p:3128"},
        user={"exec": {"command": "sh"}, "as": "root", "tokenFile": "/t"},
        top={"current-context": "missing", "bogus": 1},
    )
    reasons = [p.reason for p in find_problems(doc)]
    assert reasons == [
        "UnknownField",
        "ProxyNotAllowed",
        "PlainHTTP",
        "ExecNotAllowed",
        "ImpersonationNotAllowed",
        "FilePathNotAllowed",
        "NoCurrentContext",
    ]


def test_every_entry_is_validated_not_just_the_current_one(pki: PKI) -> None:
    doc = base_doc(pki)
    doc["users"].append({"name": "eks", "user": {"exec": {"command": "aws"}}})
    with pytest.raises(KubeconfigError, match='user "eks": exec') as caught:
        parse_kubeconfig(yaml.safe_dump(doc))
    assert caught.value.reason == "ExecNotAllowed"


KEYS = sorted(
    {
        "apiVersion", "kind", "clusters", "users", "contexts", "current-context", "name",
        "cluster", "user", "context", "server", "certificate-authority-data", "token",
        "client-certificate-data", "client-key-data", "namespace", "tls-server-name",
        "insecure-skip-tls-verify", "exec", "extensions", "preferences",
    }
)  # fmt: skip
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(st.data())
def test_mutated_documents_only_raise_kubeconfig_error(data: st.DataObject) -> None:
    """Random values grafted into an otherwise valid document reach the deeper checks."""
    doc = base_doc(_pki())
    targets = [
        doc,
        doc["clusters"][0],
        doc["clusters"][0]["cluster"],
        doc["users"][0],
        doc["users"][0]["user"],
        doc["contexts"][0],
        doc["contexts"][0]["context"],
    ]
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(targets))
        target[data.draw(st.sampled_from(KEYS))] = data.draw(JSONISH)
    dump = data.draw(st.sampled_from(["yaml", "json", "text-mutation"]))
    if dump == "json":
        document: str = json.dumps(doc)
    else:
        document = yaml.safe_dump(doc)
        if dump == "text-mutation":
            position = data.draw(st.integers(0, len(document)))
            document = document[:position] + data.draw(st.text(max_size=5)) + document[position:]
    result = _outcome(document, data.draw(st.sampled_from([DEFAULT, PERMISSIVE, NO_PRIVATE])))
    assert isinstance(result, Credentials | KubeconfigError)
