"""Tests for moonlander.credentials.render: rendering credentials and tokens into kubeconfigs."""

from __future__ import annotations

import base64
import dataclasses

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    credentials_from_token,
    find_problems,
    parse_kubeconfig,
    render_kubeconfig,
)

from ...support.kubeconfigs import (
    DEFAULT,
    FAST,
    INSECURE,
    PERMISSIVE,
    PKI,
    TOKEN,
    _cert_and_key,
    doc_with,
    valid_credentials,
)


def test_render_round_trip(pki: PKI) -> None:
    creds = parse_kubeconfig(_cert_and_key(pki.client_cert_pem, pki.client_key_pem)(pki))
    rendered = render_kubeconfig(creds, name="landed")
    doc = yaml.safe_load(rendered)
    assert doc["apiVersion"] == "v1"
    assert doc["kind"] == "Config"
    assert doc["current-context"] == "landed"
    assert [c["name"] for c in doc["clusters"] + doc["users"] + doc["contexts"]] == ["landed"] * 3
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.client_key_pem
    assert "insecure-skip-tls-verify" not in doc["clusters"][0]["cluster"]
    again = parse_kubeconfig(rendered)
    assert again == dataclasses.replace(
        creds, context_name="landed", cluster_name="landed", user_name="landed"
    )
    assert find_problems(rendered) == []


def test_render_namespace_override(pki: PKI) -> None:
    creds = parse_kubeconfig(doc_with(pki))
    assert parse_kubeconfig(render_kubeconfig(creds, namespace="team-a")).namespace == "team-a"
    assert parse_kubeconfig(render_kubeconfig(creds)).namespace == "default"
    with pytest.raises(KubeconfigError, match="DNS label"):
        render_kubeconfig(creds, namespace="Team A")
    with pytest.raises(KubeconfigError, match="non-empty"):
        render_kubeconfig(creds, name="")


def test_render_insecure_round_trip(pki: PKI) -> None:
    creds = parse_kubeconfig(doc_with(pki, cluster={"insecure-skip-tls-verify": True}), INSECURE)
    rendered = render_kubeconfig(creds)
    assert "insecure-skip-tls-verify: true" in rendered
    assert parse_kubeconfig(rendered, INSECURE).insecure_skip_tls_verify
    # The rendered document is still subject to policy when parsed again.
    assert find_problems(rendered, DEFAULT)[0].reason == "InsecureTLS"


def test_credentials_from_token(pki: PKI) -> None:
    creds = credentials_from_token("https://10.0.0.1:6443/", pki.ca_pem, TOKEN + "\n", DEFAULT)
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.token == TOKEN
    assert creds.ca_data == pki.ca_pem
    assert creds.context_name == creds.cluster_name == creds.user_name == "moonlander"
    again = parse_kubeconfig(render_kubeconfig(creds))
    assert again == creds
    assert credentials_from_token("https://h", None, TOKEN, DEFAULT, name="n").ca_data is None
    bad = [
        (("http://h", pki.ca_pem, TOKEN), "PlainHTTP"),
        (("https://h", b"nope", TOKEN), "InvalidData"),
        (("https://h", pki.ca_pem, "a b"), "InvalidToken"),
        (("https://h", pki.ca_pem, "  \n"), "MissingCredentials"),
        (("https://169.254.169.254", pki.ca_pem, TOKEN), "AddressNotAllowed"),
    ]
    for (server, ca, token), reason in bad:
        with pytest.raises(KubeconfigError) as caught:
            credentials_from_token(server, ca, token, DEFAULT)
        assert caught.value.reason == reason
        assert "a b" not in str(caught.value)


@FAST
@given(valid_credentials(), st.text(min_size=1, max_size=30))
def test_render_parse_round_trip(creds: Credentials, name: str) -> None:
    rendered = render_kubeconfig(creds, name=name)
    parsed = parse_kubeconfig(rendered, PERMISSIVE)
    assert parsed == dataclasses.replace(
        creds, context_name=name, cluster_name=name, user_name=name
    )
    assert parsed.fingerprint() == creds.fingerprint()
    # Rendering is deterministic, so the output can be compared to decide on updates.
    assert render_kubeconfig(parsed, name=name) == rendered
