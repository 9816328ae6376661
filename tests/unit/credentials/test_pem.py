"""Tests for moonlander.credentials.pem: client certificates and keys (rejections are in the
checker's table, test_validate)."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from moonlander.credentials import (
    find_problems,
    parse_kubeconfig,
)

from ...support.kubeconfigs import (
    PKI,
    TOKEN,
    _cert_and_key,
    _certificate,
    _key_pem,
    _pki_ca_key_pem,
    b64,
    doc_with,
)


@pytest.mark.parametrize(
    ("cert_field", "key_field"),
    [("client_cert_pem", "client_key_pem"), ("rsa_cert_pem", "rsa_key_pem")],
    ids=["ec-pkcs8", "rsa-traditional"],
)
def test_client_certificate_user(pki: PKI, cert_field: str, key_field: str) -> None:
    cert, key = getattr(pki, cert_field), getattr(pki, key_field)
    creds = parse_kubeconfig(_cert_and_key(cert, key)(pki))
    assert creds.token is None
    assert (creds.client_cert, creds.client_key) == (cert, key)


def test_token_and_client_certificate_together(pki: PKI) -> None:
    doc = doc_with(
        pki,
        user={
            "client-certificate-data": b64(pki.client_cert_pem),
            "client-key-data": b64(pki.client_key_pem),
        },
    )
    creds = parse_kubeconfig(doc)
    assert creds.token == TOKEN
    assert creds.client_key == pki.client_key_pem


def test_client_key_types(pki: PKI) -> None:
    ca_key = serialization.load_pem_private_key(_pki_ca_key_pem(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    pkcs8 = serialization.PrivateFormat.PKCS8

    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_cert = _certificate("ed", ed_key.public_key(), "test-ca", ca_key, ca=False)
    creds = parse_kubeconfig(_cert_and_key(ed_cert, _key_pem(ed_key, pkcs8))(pki))
    assert creds.client_cert == ed_cert

    x_key = _key_pem(x25519.X25519PrivateKey.generate(), pkcs8)
    (problem,) = find_problems(_cert_and_key(pki.client_cert_pem, x_key)(pki))
    assert problem.reason == "InvalidData"
    assert "not an RSA, ECDSA or Ed25519 key" in str(problem)

    # A >8192-bit RSA key built from fake numbers (real generation would take far too long).
    def odd(bits: int) -> int:
        return secrets.randbits(bits) | 1 | (1 << (bits - 1))

    p, q = odd(4200), odd(4200)
    numbers = rsa.RSAPrivateNumbers(
        p, q, odd(8000), odd(4000), odd(4000), odd(4000) % p, rsa.RSAPublicNumbers(65537, p * q)
    )
    huge = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    (problem,) = find_problems(_cert_and_key(pki.rsa_cert_pem, _key_pem(huge, pkcs8))(pki))
    assert "RSA key larger than 8192 bits" in str(problem)
