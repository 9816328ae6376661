"""Tests for moonlander.credentials.model: errors, policy and the Credentials value."""

from __future__ import annotations

import dataclasses
import json

import pytest

from moonlander.credentials import (
    KubeconfigError,
    Policy,
    parse_kubeconfig,
)

from ...support.kubeconfigs import (
    CLUSTER,
    DEFAULT,
    LOOPBACK,
    PKI,
    TOKEN,
    _cert_and_key,
    base_doc,
    doc_with,
)


def test_error_api() -> None:
    err = KubeconfigError("something is wrong", reason="InvalidData")
    assert isinstance(err, ValueError)
    assert str(err) == "something is wrong"
    assert err.reason == "InvalidData"
    assert "InvalidData" in repr(err)
    assert KubeconfigError("x").reason == "InvalidKubeconfig"
    with pytest.raises(KubeconfigError):
        parse_kubeconfig(12345)  # type: ignore[arg-type]


def test_policy_rejects_bad_networks() -> None:
    with pytest.raises(TypeError):
        Policy(allowed_networks=("10.0.0.0/8",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Policy(max_bytes=0)


def test_fingerprint_is_stable_and_sensitive(pki: PKI) -> None:
    yaml_creds = parse_kubeconfig(doc_with(pki))
    reordered = json.dumps(dict(reversed(base_doc(pki).items())), sort_keys=True)
    json_creds = parse_kubeconfig(reordered)
    assert yaml_creds.fingerprint() == json_creds.fingerprint()
    assert len(yaml_creds.fingerprint()) == 64
    int(yaml_creds.fingerprint(), 16)
    # Names and namespace do not change the connection.
    renamed = dataclasses.replace(yaml_creds, context_name="x", namespace=None)
    assert renamed.fingerprint() == yaml_creds.fingerprint()
    for change in (
        {"token": TOKEN + "x"},
        {"server": "https://10.0.0.2:6443"},
        {"ca_data": None},
        {"tls_server_name": "api"},
        {"insecure_skip_tls_verify": True},
        {"client_cert": pki.client_cert_pem, "client_key": pki.client_key_pem},
    ):
        assert dataclasses.replace(yaml_creds, **change).fingerprint() != yaml_creds.fingerprint()


def test_with_server(pki: PKI) -> None:
    creds = parse_kubeconfig(doc_with(pki))
    moved = creds.with_server("https://API.example.com:443/", DEFAULT)
    assert moved.server == "https://api.example.com"
    assert dataclasses.replace(moved, server=creds.server) == creds
    with pytest.raises(KubeconfigError) as caught:
        creds.with_server("https://169.254.169.254", DEFAULT)
    assert caught.value.reason == "AddressNotAllowed"
    with pytest.raises(KubeconfigError) as caught:
        creds.with_server("http://api.example.com", DEFAULT)
    assert caught.value.reason == "PlainHTTP"
    assert creds.with_server("https://localhost:8443", LOOPBACK).server == "https://localhost:8443"


def test_credentials_repr_is_redacted(pki: PKI) -> None:
    creds = parse_kubeconfig(_cert_and_key(pki.client_cert_pem, pki.client_key_pem)(pki))
    creds = dataclasses.replace(creds, token=TOKEN)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert TOKEN not in text
        assert "PRIVATE" not in text
        assert "CERTIFICATE" not in text
        assert "https://10.0.0.1:6443" in text
        assert CLUSTER in text
