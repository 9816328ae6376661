"""Base64 fields, PEM certificates and private keys (parsed in memory, never from files)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from moonlander.credentials.model import KubeconfigError
from moonlander.credentials.syntax import _type_name

_MAX_RSA_BITS: Final = 8192
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_WHITESPACE_RE = re.compile(r"[ \t\r\n]+")


def _decode_base64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise KubeconfigError(
            f"{field} must be a base64 string, not {_type_name(value)}", reason="InvalidData"
        )
    compact = _B64_WHITESPACE_RE.sub("", value)
    if not compact or len(compact) % 4 or not _B64_RE.fullmatch(compact):
        raise KubeconfigError(f"{field} is not valid base64", reason="InvalidData")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise KubeconfigError(f"{field} is not valid base64", reason="InvalidData")


def _check_certificates(data: bytes, field: str) -> None:
    if b"-----BEGIN" not in data:
        raise KubeconfigError(
            f"{field} does not contain PEM data (expected -----BEGIN CERTIFICATE-----)",
            reason="InvalidData",
        )
    if b"PRIVATE KEY-----" in data:
        raise KubeconfigError(
            f"{field} contains a private key; it must only hold certificates",
            reason="InvalidData",
        )
    try:
        valid = bool(x509.load_pem_x509_certificates(data))
    except Exception:  # hostile input: any parser failure just means "not a certificate"
        valid = False
    if not valid:
        raise KubeconfigError(
            f"{field} does not contain a valid PEM certificate", reason="InvalidData"
        )


def _load_private_key(data: bytes, field: str) -> PrivateKeyTypes:
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise KubeconfigError(f"{field} does not contain a PEM private key", reason="InvalidData")
    try:
        # RSA consistency checks cost ~0.3 s for a 4096-bit key and grow steeply with size: a
        # tenant could burn controller CPU with huge keys. We only need the key to parse and to
        # match the certificate; a broken key merely fails the TLS handshake later.
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
        message = None
    except TypeError:
        message = f"{field} is encrypted; only unencrypted keys can be used"
    except Exception:  # hostile input; any parser failure means "not a usable key"
        message = f"{field} does not contain a valid PEM private key"
    if message is not None:
        raise KubeconfigError(message, reason="InvalidData")
    # The key types Go's TLS client (and so kubectl) can use.
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KubeconfigError(f"{field} is not an RSA, ECDSA or Ed25519 key", reason="InvalidData")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size > _MAX_RSA_BITS:
        raise KubeconfigError(
            f"{field} is an RSA key larger than {_MAX_RSA_BITS} bits", reason="InvalidData"
        )
    return key


def _check_key_pair(cert_pem: bytes, key: PrivateKeyTypes) -> None:
    """Fail when the key does not belong to the (first) client certificate."""
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert_public = (
            x509.load_pem_x509_certificates(cert_pem)[0].public_key().public_bytes(der, spki)
        )
        key_public = key.public_key().public_bytes(der, spki)
        matches = cert_public == key_public
    except Exception:  # unusual key types without public_bytes: treat as a mismatch
        matches = False
    if not matches:
        raise KubeconfigError(
            "client-key-data does not match client-certificate-data", reason="InvalidData"
        )
