"""Tests for moonlander.kubeconfig: every kubeconfig is hostile, so most tests are rejections."""

from __future__ import annotations

import ast
import base64
import builtins
import dataclasses
import datetime
import functools
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import string
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moonlander import kubeconfig as kc
from moonlander.kubeconfig import (
    Credentials,
    KubeconfigError,
    Policy,
    check_address,
    check_server,
    credentials_from_token,
    find_problems,
    parse_kubeconfig,
    render_kubeconfig,
)

# Hypothesis: bounded for a fast suite, no deadline (CI machines are noisy), and no example
# database so nothing is written into the repository.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CLUSTER, USER, CONTEXT = "prod", "admin", "prod-admin"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
DELETE = object()  # marker: remove the key from the base document

DEFAULT = Policy()
LOOPBACK = Policy(allow_loopback=True)
INSECURE = Policy(allow_insecure_tls=True)
NO_PRIVATE = Policy(allow_private=False)
PERMISSIVE = Policy(allow_insecure_tls=True, allow_loopback=True)


# ---------------------------------------------------------------------------------------------
# Test PKI
# ---------------------------------------------------------------------------------------------


class PKI(NamedTuple):
    ca_pem: bytes
    client_cert_pem: bytes  # EC, signed by the CA
    client_key_pem: bytes  # PKCS#8
    rsa_cert_pem: bytes  # RSA, signed by the CA
    rsa_key_pem: bytes  # traditional "RSA PRIVATE KEY"
    other_key_pem: bytes  # matches no certificate
    encrypted_key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    public_key: Any,
    issuer: str,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool,
) -> bytes:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any, fmt: serialization.PrivateFormat, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, encryption)
    return pem


@functools.cache
def _pki_ca_key_pem() -> bytes:
    return _key_pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)


@functools.cache
def _pki() -> PKI:
    ca_key = serialization.load_pem_private_key(_pki_ca_key_pem(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    client_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = serialization.PrivateFormat.PKCS8
    return PKI(
        ca_pem=_certificate("test-ca", ca_key.public_key(), "test-ca", ca_key, ca=True),
        client_cert_pem=_certificate("admin", client_key.public_key(), "test-ca", ca_key, ca=False),
        client_key_pem=_key_pem(client_key, pkcs8),
        rsa_cert_pem=_certificate("rsa-admin", rsa_key.public_key(), "test-ca", ca_key, ca=False),
        rsa_key_pem=_key_pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
        other_key_pem=_key_pem(ec.generate_private_key(ec.SECP256R1()), pkcs8),
        encrypted_key_pem=_key_pem(client_key, pkcs8, password=b"hunter2"),
    )


@pytest.fixture(scope="module")
def pki() -> PKI:
    return _pki()


@pytest.fixture(params=["SafeLoader", "CSafeLoader"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run table tests with both the pure-Python and the libyaml parser: they must agree."""
    name: str = request.param
    loader = getattr(yaml, name, None)
    # The pinned PyYAML wheels ship libyaml; without it parsing and rendering are slow.
    assert loader is not None, f"PyYAML was installed without {name}"
    monkeypatch.setattr(kc, "_LOADER", loader)
    return name


# ---------------------------------------------------------------------------------------------
# Document builders
# ---------------------------------------------------------------------------------------------


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def base_doc(pki: PKI) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {
                    "server": "https://10.0.0.1:6443",
                    "certificate-authority-data": b64(pki.ca_pem),
                },
            }
        ],
        "users": [{"name": USER, "user": {"token": TOKEN}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CLUSTER, "user": USER, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
    }


def _apply(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value


def doc_with(
    pki: PKI,
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> str:
    doc = base_doc(pki)
    _apply(doc["clusters"][0]["cluster"], cluster or {})
    _apply(doc["users"][0]["user"], user or {})
    _apply(doc["contexts"][0]["context"], context or {})
    _apply(doc, top or {})
    return yaml.safe_dump(doc, sort_keys=False)


Builder = Callable[[PKI], str | bytes]


def with_cluster(changes: dict[str, Any]) -> Builder:
    return lambda pki: doc_with(pki, cluster=changes)


def with_user(changes: dict[str, Any]) -> Builder:
    return lambda pki: doc_with(pki, user=changes)


def with_context(changes: dict[str, Any]) -> Builder:
    return lambda pki: doc_with(pki, context=changes)


def with_top(changes: dict[str, Any]) -> Builder:
    return lambda pki: doc_with(pki, top=changes)


def with_server(url: str) -> Builder:
    return with_cluster({"server": url})


def raw(text: str | bytes) -> Builder:
    return lambda _pki: text


def edited(edit: Callable[[dict[str, Any], PKI], None]) -> Builder:
    def build(pki: PKI) -> str:
        doc = base_doc(pki)
        edit(doc, pki)
        return yaml.safe_dump(doc, sort_keys=False)

    return build


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


def _cert_and_key(cert: bytes, key: bytes) -> Builder:
    return with_user(
        {"token": DELETE, "client-certificate-data": b64(cert), "client-key-data": b64(key)}
    )


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

MERGE_KEY = """\
base: &base {token: abc}
users:
- name: admin
  user:
    <<: *base
"""


# ---------------------------------------------------------------------------------------------
# Rejections: one case per rejected thing, asserting the reason and a message fragment
# ---------------------------------------------------------------------------------------------

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
    # --- servers --------------------------------------------------------------------------------
    P(
        with_server("http://10.0.0.1:6443"),
        DEFAULT,
        "PlainHTTP",
        "server http://10.0.0.1:6443: uses plain HTTP",
        id="plain-http",
    ),
    P(with_server("HTTP://10.0.0.1"), DEFAULT, "PlainHTTP", "plain HTTP", id="plain-http-upper"),
    P(
        with_cluster({"server": DELETE}),
        DEFAULT,
        "InvalidServer",
        'cluster "prod": has no server URL',
        id="no-server",
    ),
    P(
        with_server("https://user:pass@10.0.0.1"),
        DEFAULT,
        "InvalidServer",
        "must not contain a user name or password",
        id="server-userinfo",
    ),
    P(
        with_server("https://10.0.0.1/?watch=1"),
        DEFAULT,
        "InvalidServer",
        "query string or fragment",
        id="server-query",
    ),
    P(
        with_server("https://10.0.0.1/#frag"),
        DEFAULT,
        "InvalidServer",
        "query string or fragment",
        id="server-fragment",
    ),
    P(with_server("https://10.0.0.1:0"), DEFAULT, "InvalidServer", "port", id="port-0"),
    P(with_server("https://10.0.0.1:65536"), DEFAULT, "InvalidServer", "port", id="port-65536"),
    P(with_server("https://10.0.0.1:https"), DEFAULT, "InvalidServer", "port", id="port-name"),
    P(with_server("10.0.0.1:6443"), DEFAULT, "InvalidServer", "absolute URL", id="no-scheme"),
    P(with_server("ftp://10.0.0.1"), DEFAULT, "InvalidServer", "only https://", id="ftp"),
    P(
        with_server("https://127.1"),
        LOOPBACK,
        "InvalidServer",
        "not a dotted-decimal IPv4 address",
        id="short-ipv4",
    ),
    P(
        with_server("https://0x7f000001"),
        LOOPBACK,
        "InvalidServer",
        "dotted-decimal",
        id="hex-ipv4",
    ),
    P(
        with_server("https://2852039166"),
        DEFAULT,
        "InvalidServer",
        "dotted-decimal",
        id="decimal-ipv4",
    ),
    P(
        with_server("https://010.000.000.001"),
        DEFAULT,
        "InvalidServer",
        "dotted-decimal",
        id="octal-ipv4",
    ),
    P(with_server("https://bad_host"), DEFAULT, "InvalidServer", "DNS name", id="underscore-host"),
    P(with_server("https://k\u00fcbe.example"), DEFAULT, "InvalidServer", "non-ASCII", id="idn"),
    P(with_server("https://[fe80::1%25eth0]"), DEFAULT, "InvalidServer", "IPv6", id="zone-id"),
    P(with_server("https://[::1"), LOOPBACK, "InvalidServer", "malformed", id="unclosed-bracket"),
    P(with_server("https://::1"), LOOPBACK, "InvalidServer", "port", id="unbracketed-ipv6"),
    P(with_server("https://h/a/../b"), DEFAULT, "InvalidServer", "path", id="dot-dot-path"),
    P(with_server("https://h/a/%2e%2e/b"), DEFAULT, "InvalidServer", "path", id="encoded-dot-dot"),
    P(with_server("https:// h"), DEFAULT, "InvalidServer", "whitespace", id="space-in-url"),
    P(
        with_cluster({"server": ["https://h"]}),
        DEFAULT,
        "InvalidServer",
        "must be a string",
        id="server-list",
    ),
    # --- addresses ------------------------------------------------------------------------------
    P(
        with_server("https://169.254.169.254"),
        DEFAULT,
        "AddressNotAllowed",
        "169.254.169.254 is not allowed: it is a cloud metadata endpoint",
        id="metadata-v4",
    ),
    P(
        with_server("https://[fd00:ec2::254]"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-v6-aws",
    ),
    P(
        with_server("https://100.100.100.200"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-alibaba",
    ),
    P(
        with_server("https://[::ffff:169.254.169.254]"),
        DEFAULT,
        "AddressNotAllowed",
        "embeds the IPv4 address 169.254.169.254",
        id="metadata-v4-mapped",
    ),
    P(
        with_server("https://[64:ff9b::a9fe:a9fe]"),
        DEFAULT,
        "AddressNotAllowed",
        "embeds the IPv4 address 169.254.169.254",
        id="metadata-nat64",
    ),
    P(
        with_server("https://169.254.10.1:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "link-local",
        id="link-local-v4",
    ),
    P(
        with_server("https://[fe80::1]:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "link-local",
        id="link-local-v6",
    ),
    P(with_server("https://0.0.0.0"), DEFAULT, "AddressNotAllowed", "unspecified", id="zero-v4"),
    P(with_server("https://[::]"), DEFAULT, "AddressNotAllowed", "unspecified", id="zero-v6"),
    P(with_server("https://224.0.0.1"), DEFAULT, "AddressNotAllowed", "multicast", id="mcast-v4"),
    P(with_server("https://[ff02::1]"), DEFAULT, "AddressNotAllowed", "multicast", id="mcast-v6"),
    P(
        with_server("https://255.255.255.255"),
        DEFAULT,
        "AddressNotAllowed",
        "broadcast",
        id="broadcast",
    ),
    P(
        with_server("https://127.0.0.1:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v4-default-denied",
    ),
    P(
        with_server("https://[::1]:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v6-default-denied",
    ),
    P(
        with_server("https://[::ffff:127.0.0.1]"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v4-mapped",
    ),
    P(
        with_server("https://localhost:8443"),
        DEFAULT,
        "AddressNotAllowed",
        "localhost always means the controller's own host",
        id="localhost-default-denied",
    ),
    P(
        with_server("https://api.localhost"),
        DEFAULT,
        "AddressNotAllowed",
        "allow_loopback",
        id="dot-localhost",
    ),
    P(
        with_server("https://metadata.google.internal"),
        PERMISSIVE,
        "AddressNotAllowed",
        "metadata.google.internal is a cloud metadata endpoint",
        id="metadata-hostname-gcp",
    ),
    P(
        with_server("https://METADATA.Google.Internal./computeMetadata"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-hostname-case-and-dot",
    ),
    P(
        with_server("https://metadata"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-short-hostname",
    ),
    P(
        with_server("https://10.1.2.3"),
        NO_PRIVATE,
        "AddressNotAllowed",
        "private addresses are disabled",
        id="private-denied-by-policy",
    ),
    P(
        with_server("https://[fd12::1]"),
        NO_PRIVATE,
        "AddressNotAllowed",
        "private",
        id="ula-denied-by-policy",
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
        'cluster "prod": unknown field "server-side-magic"',
        id="unknown-cluster-field",
    ),
    P(
        with_user({"tokn": "x"}),
        DEFAULT,
        "UnknownField",
        'user "admin": unknown field "tokn"',
        id="unknown-user-field",
    ),
    P(
        with_context({"clusterr": "x"}),
        DEFAULT,
        "UnknownField",
        'context "prod-admin": unknown field "clusterr"',
        id="unknown-context-field",
    ),
    P(
        edited(lambda doc, _: doc["users"][0].update({"extra": 1})),
        DEFAULT,
        "UnknownField",
        'unknown field "extra" next to name',
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
    # --- YAML safety ----------------------------------------------------------------------------
    P(
        raw("users: !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "YAML tags",
        id="python-apply-tag",
    ),
    P(
        raw("current-context: !!python/name:os.system\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "YAML tags",
        id="python-name-tag",
    ),
    P(raw("kind: !foo Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="local-tag"),
    P(raw("kind: !!str Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="str-tag"),
    P(raw("kind: ! Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="non-specific-tag"),
    P(
        raw("kind: !<tag:yaml.org,2002:str> Config\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "tags",
        id="verbatim-tag",
    ),
    P(raw("users: !!seq []\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="collection-tag"),
    P(
        raw("%TAG !k! tag:example.com,2024:\n---\nkind: Config\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "%TAG",
        id="tag-directive",
    ),
    P(
        raw("kind: &k Config\n"),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "anchors and aliases",
        id="anchor",
    ),
    P(
        raw("a: &k Config\nkind: *k\n"),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "anchors and aliases",
        id="alias",
    ),
    P(raw(MERGE_KEY), DEFAULT, "YAMLAliasesNotAllowed", "(line 1, column 7)", id="merge-alias"),
    P(
        raw(BILLION_LAUGHS),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "alias bombs",
        id="billion-laughs",
    ),
    P(raw("a: " + "[" * 100 + "]" * 100), DEFAULT, "TooComplex", "nested", id="deep-nesting"),
    P(
        raw("a: [" + "0," * 12_000 + "0]"),
        DEFAULT,
        "TooComplex",
        "YAML nodes",
        id="too-many-nodes",
    ),
    P(
        raw("kind: Config\nkind: Config\n"),
        DEFAULT,
        "DuplicateKey",
        'duplicate key "kind"',
        id="duplicate-key",
    ),
    P(
        raw('{"kind": "Config", "kind": "Config"}'),
        DEFAULT,
        "DuplicateKey",
        "duplicate key",
        id="duplicate-key-json",
    ),
    P(raw("{? [a] : b}"), DEFAULT, "InvalidYAML", "mapping keys", id="complex-key"),
    P(
        raw("kind: Config\n---\nkind: Config\n"),
        DEFAULT,
        "InvalidYAML",
        "only one YAML document",
        id="multiple-documents",
    ),
    P(raw("kind: [Config\n"), DEFAULT, "InvalidYAML", "invalid YAML", id="syntax-error"),
    P(raw("kind: \x07Config\n"), DEFAULT, "InvalidYAML", "U+0007", id="control-character"),
    # --- input ----------------------------------------------------------------------------------
    P(raw(b"kind: Config\n\xff\xfe"), DEFAULT, "NotUTF8", "offset 13", id="invalid-utf8"),
    P(
        raw("kind: Config\n".encode("utf-16")),
        DEFAULT,
        "NotUTF8",
        "not valid UTF-8",
        id="utf16",
    ),
    P(raw("kind: \ud800\n"), DEFAULT, "NotUTF8", "lone surrogates", id="lone-surrogate-str"),
    P(raw(b"kind: Config\x00\n"), DEFAULT, "NULByte", "offset 12", id="nul-byte"),
    P(raw("kind: Config\x00\n"), DEFAULT, "NULByte", "NUL", id="nul-in-str"),
    P(raw(b"#" * (256 * 1024 + 1)), DEFAULT, "TooLarge", "262145 bytes", id="oversize-bytes"),
    P(raw("#" * (256 * 1024 + 1)), DEFAULT, "TooLarge", "limit", id="oversize-str"),
    P(
        raw("#\u00e9" * 100),
        Policy(max_bytes=250),
        "TooLarge",
        "300 bytes",
        id="oversize-multibyte-str",
    ),
    P(
        lambda pki: doc_with(pki),
        Policy(max_bytes=100),
        "TooLarge",
        "100-byte limit",
        id="oversize-policy",
    ),
    P(raw("- kind: Config\n"), DEFAULT, "NotAKubeconfig", "not a list", id="top-level-list"),
    P(raw("Config\n"), DEFAULT, "NotAKubeconfig", "not a string", id="top-level-scalar"),
    P(raw(""), DEFAULT, "NotAKubeconfig", "empty", id="empty"),
    P(raw("# only a comment\n"), DEFAULT, "NotAKubeconfig", "empty", id="only-comment"),
    P(raw(b"\xef\xbb\xbf"), DEFAULT, "NotAKubeconfig", "empty", id="only-bom"),
]


@pytest.mark.parametrize(("build", "policy", "reason", "fragment"), REJECTIONS)
@pytest.mark.usefixtures("yaml_loader")
def test_rejected(pki: PKI, build: Builder, policy: Policy, reason: str, fragment: str) -> None:
    document = build(pki)
    with pytest.raises(KubeconfigError) as caught:
        parse_kubeconfig(document, policy)
    err = caught.value
    assert err.reason == reason, str(err)
    assert fragment in str(err)
    # Nothing (e.g. a YAMLError quoting the document) is chained onto the error.
    assert err.__cause__ is None
    assert err.__context__ is None
    # parse_kubeconfig raises exactly the first problem find_problems reports.
    problems = find_problems(document, policy)
    assert problems
    assert (problems[0].reason, str(problems[0])) == (err.reason, str(err))


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


def test_json_kubeconfig(pki: PKI) -> None:
    as_json = json.dumps(base_doc(pki), indent=2)
    assert parse_kubeconfig(as_json) == parse_kubeconfig(doc_with(pki))
    assert parse_kubeconfig(as_json.encode()) == parse_kubeconfig(doc_with(pki))


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


def test_vcluster_localhost_with_allow_loopback(pki: PKI) -> None:
    doc = doc_with(pki, cluster={"server": "https://localhost:8443"})
    assert parse_kubeconfig(doc, LOOPBACK).server == "https://localhost:8443"
    assert parse_kubeconfig(doc_with(pki, cluster={"server": "https://127.0.0.1:8443"}), LOOPBACK)


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


def test_bom_and_crlf(pki: PKI) -> None:
    text = "\ufeff" + doc_with(pki).replace("\n", "\r\n")
    assert parse_kubeconfig(text.encode()) == parse_kubeconfig(doc_with(pki))


def test_server_normalisation() -> None:
    cases = {
        "https://API.Example.COM:443/": "https://api.example.com",
        "https://api.example.com:6443/k8s/clusters/c-abc12/": (
            "https://api.example.com:6443/k8s/clusters/c-abc12"
        ),
        "https://[2001:DB8:0::1]:6443": "https://[2001:db8::1]:6443",
        "https://10.0.0.1:06443": "https://10.0.0.1:6443",
        "HTTPS://8.8.8.8": "https://8.8.8.8",
    }
    for raw_server, expected in cases.items():
        assert check_server(raw_server, DEFAULT) == expected


@pytest.mark.parametrize(
    ("server", "policy"),
    [
        (
            "https://169.254.169.254",
            Policy(allowed_networks=(ipaddress.ip_network("169.254.0.0/16"),)),
        ),
        ("https://[fe80::1]", Policy(allowed_networks=(ipaddress.ip_network("fe80::/64"),))),
        ("https://127.0.0.1", Policy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))),
        ("https://localhost", Policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))),
        (
            "https://10.0.0.1",
            Policy(allow_private=False, allowed_networks=(ipaddress.ip_network("10.0.0.0/24"),)),
        ),
        (
            "https://[::ffff:169.254.169.254]",
            Policy(allowed_networks=(ipaddress.ip_network("169.254.169.254/32"),)),
        ),
    ],
    ids=["metadata", "link-local-v6", "loopback", "localhost", "private", "mapped"],
)
def test_allowed_networks_override_denies(pki: PKI, server: str, policy: Policy) -> None:
    parsed = parse_kubeconfig(doc_with(pki, cluster={"server": server}), policy)
    assert parsed.server == server.replace("::ffff:169.254.169.254", "::ffff:a9fe:a9fe")


def test_public_and_private_addresses_allowed_by_default() -> None:
    for ip in (
        "8.8.8.8",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "fd12::1",
        "2600::1",
    ):
        check_address(ipaddress.ip_address(ip), DEFAULT)


def test_check_address_denies() -> None:
    denied = {
        "169.254.169.254": "metadata",
        "fd20:ce::254": "metadata",
        "168.63.129.16": "metadata",
        "169.254.0.1": "link-local",
        "127.0.0.53": "loopback",
        "::1": "loopback",
        str(ipaddress.IPv4Address(0)): "unspecified",
        "0.1.2.3": "unspecified",
        "239.255.255.250": "multicast",
        "2002:a9fe:a9fe::": "embeds",
        "::7f00:1": "IPv4-compatible",
    }
    for ip, fragment in denied.items():
        with pytest.raises(KubeconfigError, match=fragment) as caught:
            check_address(ipaddress.ip_address(ip), DEFAULT)
        assert caught.value.reason == "AddressNotAllowed"
    check_address(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    check_address(ipaddress.ip_address("::1"), LOOPBACK)
    with pytest.raises(KubeconfigError, match="private"):
        check_address(ipaddress.ip_address("192.168.0.1"), NO_PRIVATE)


def test_policy_rejects_bad_networks() -> None:
    with pytest.raises(TypeError):
        Policy(allowed_networks=("10.0.0.0/8",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Policy(max_bytes=0)


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


def test_names_in_messages_are_truncated_and_escaped(pki: PKI) -> None:
    long_name = "x" * 500 + "\u202e\n"
    doc = base_doc(pki)
    doc["contexts"][0]["context"]["cluster"] = long_name
    (problem,) = find_problems(yaml.safe_dump(doc))
    assert problem.reason == "MissingCluster"
    assert "x" * 64 + '..."' in str(problem)
    assert "x" * 65 not in str(problem)
    assert "\u202e" not in str(problem)
    assert "\n" not in str(problem)


# ---------------------------------------------------------------------------------------------
# Credentials: render, fingerprint, overrides, tokens
# ---------------------------------------------------------------------------------------------


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


def test_error_api() -> None:
    err = KubeconfigError("something is wrong", reason="InvalidData")
    assert isinstance(err, ValueError)
    assert str(err) == "something is wrong"
    assert err.reason == "InvalidData"
    assert "InvalidData" in repr(err)
    assert KubeconfigError("x").reason == "InvalidKubeconfig"
    with pytest.raises(KubeconfigError):
        parse_kubeconfig(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Purity: hostile documents must not make the parser run programs, open files or use the network
# ---------------------------------------------------------------------------------------------


class Forbidden(BaseException):
    """BaseException so that no `except Exception` inside the code under test can swallow it."""


def test_parsing_hostile_documents_has_no_side_effects(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = [
        doc_with(pki, user={"exec": {"command": "touch", "args": ["/tmp/pwned"]}}),
        doc_with(pki, user={"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}),
        doc_with(pki, user={"tokenFile": "/etc/passwd"}),
        doc_with(pki, user={"client-certificate": "/etc/a.crt", "client-key": "/etc/a.key"}),
        doc_with(pki, cluster={"certificate-authority": "/etc/ssl/certs/ca.pem"}),
        doc_with(pki, cluster={"proxy-url": "http://proxy.evil.example:3128"}),
        doc_with(pki, cluster={"server": "https://metadata.google.internal"}),
        "users: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "a: !!python/object/apply:subprocess.Popen [['id']]\n",
        BILLION_LAUGHS,
    ]
    valid = doc_with(pki, cluster={"server": "https://kube.example.com:6443"})
    # Warm up lazy imports/initialisation so only the parsing itself is observed.
    parse_kubeconfig(valid)
    render_kubeconfig(parse_kubeconfig(valid))

    calls: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        def forbidden(*_args: Any, **_kwargs: Any) -> Any:
            calls.append(name)
            raise Forbidden(name)

        return forbidden

    targets: list[tuple[Any, str]] = [
        (subprocess, "Popen"),
        (subprocess, "run"),
        (os, "system"),
        (os, "popen"),
        (os, "fork"),
        (os, "open"),
        (builtins, "open"),
        (io, "open"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (socket, "gethostbyname"),
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
    ]
    for name in dir(os):
        if name.startswith(("exec", "spawn", "posix_spawn")):
            targets.append((os, name))
    for owner, attribute in targets:
        monkeypatch.setattr(
            owner, attribute, spy(f"{getattr(owner, '__name__', owner)}.{attribute}")
        )

    for document in hostile:
        with pytest.raises(KubeconfigError):
            parse_kubeconfig(document)
        assert find_problems(document)
    creds = parse_kubeconfig(valid)
    assert creds.server == "https://kube.example.com:6443"
    render_kubeconfig(creds)
    credentials_from_token("https://kube.example.com", pki.ca_pem, TOKEN, DEFAULT)
    check_server("https://api.internal.example", DEFAULT)
    monkeypatch.undo()
    assert calls == []


def test_module_imports_only_pure_modules() -> None:
    source = Path(kc.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    allowed = {
        "__future__",
        "base64",
        "binascii",
        "collections",
        "cryptography",
        "dataclasses",
        "hashlib",
        "ipaddress",
        "json",
        "re",
        "typing",
        "urllib",
        "yaml",
    }
    assert imported <= allowed, imported - allowed
    for banned in (
        "open(",
        "yaml.load(",
        "yaml.unsafe_load",
        "yaml.full_load",
        "Loader=yaml.Loader",
    ):
        assert banned not in source


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def _outcome(document: str | bytes, policy: Policy = DEFAULT) -> Credentials | KubeconfigError:
    """Parse, allowing only KubeconfigError to escape (anything else fails the test)."""
    try:
        return parse_kubeconfig(document, policy)
    except KubeconfigError as err:
        return err


YAML_SYNTAX = st.text(alphabet=list("[]{}:,-?&*!|>'\"#%@` \n\tab01~.\\"), max_size=60)


@FAST
@given(st.one_of(st.text(), st.binary(), YAML_SYNTAX))
def test_arbitrary_input_only_raises_kubeconfig_error(document: str | bytes) -> None:
    result = _outcome(document)
    if isinstance(result, KubeconfigError):
        assert result.reason
        assert str(result)


# Raw control characters and line/paragraph separators would make the JSON form invalid (or
# differently folded) YAML: a property of YAML, not of our reader.
YAML_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Zl", "Zp")), max_size=10)
PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | YAML_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(YAML_TEXT, children, max_size=4)
    ),
    max_leaves=25,
)


@FAST
@given(PLAIN_DATA, st.sampled_from(["yaml", "json", "flow"]))
def test_yaml_reader_agrees_with_pyyaml(value: Any, style: str) -> None:
    """The event-based reader builds what PyYAML's safe_load would (for str/bool/null data)."""
    if style == "json":
        text = json.dumps(value, ensure_ascii=False)  # YAML has no surrogate-pair escapes
    else:
        text = yaml.safe_dump(value, default_flow_style=style == "flow")
    assert kc._build(text) == yaml.safe_load(text) == value


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


DNS_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?\Z")


def _ordinary_hostname(host: str) -> bool:
    # A numeric last label ("10", "0x7f") makes a name an IPv4 address to resolvers, and the
    # loopback/metadata names are denied; neither belongs in "valid credentials".
    return (
        not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", host.rpartition(".")[2])
        and host != "localhost"
        and not host.endswith(".localhost")
        and host not in ("metadata", "metadata.goog", "instance-data")
    )


HOSTNAME = st.lists(DNS_LABEL, min_size=1, max_size=3).map(".".join).filter(_ordinary_hostname)
PUBLIC_OR_PRIVATE_IP = st.one_of(
    st.ip_addresses(v=4, network="10.0.0.0/8"),
    st.ip_addresses(v=4, network="8.0.0.0/7"),
    st.ip_addresses(v=6, network="2600::/16").map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6, network="fd12::/16").map(lambda ip: f"[{ip}]"),
).map(str)
TOKENS = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=60)


@st.composite
def valid_credentials(draw: st.DrawFn) -> Credentials:
    pki = _pki()
    host = draw(st.one_of(HOSTNAME, PUBLIC_OR_PRIVATE_IP))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    path = draw(st.sampled_from(["", "/", "/k8s/clusters/c-x1", "/api%20x/"]))
    server = check_server(f"https://{host}{'' if port is None else f':{port}'}{path}", DEFAULT)
    pair = draw(
        st.sampled_from(
            [None, (pki.client_cert_pem, pki.client_key_pem), (pki.rsa_cert_pem, pki.rsa_key_pem)]
        )
    )
    token = draw(TOKENS) if pair is None else draw(st.none() | TOKENS)
    return Credentials(
        server=server,
        ca_data=draw(st.sampled_from([None, pki.ca_pem, pki.ca_pem + pki.client_cert_pem])),
        token=token,
        client_cert=pair[0] if pair else None,
        client_key=pair[1] if pair else None,
        tls_server_name=draw(st.none() | HOSTNAME),
        insecure_skip_tls_verify=draw(st.booleans()),
        context_name=draw(st.text(min_size=1, max_size=20)),
        cluster_name=draw(st.text(min_size=1, max_size=20)),
        user_name=draw(st.text(min_size=1, max_size=20)),
        namespace=draw(st.none() | DNS_LABEL),
    )


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


SECRET_SUFFIX = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=20)


@st.composite
def hostile_with_secret(draw: st.DrawFn) -> tuple[str, str]:
    """A hostile document with one secret planted in many places that messages must not echo."""
    pki = _pki()
    secret = "SECRETPLANT" + draw(SECRET_SUFFIX)

    def pem(label: str) -> str:
        return f"-----BEGIN {label}-----\n{secret}\n-----END {label}-----\n"

    def secret_value() -> str:
        return draw(
            st.sampled_from(
                [
                    secret,
                    secret + " tail",
                    b64(secret),
                    b64(pem("CERTIFICATE")),
                    b64(pem("PRIVATE KEY")),
                    b64(pem("ENCRYPTED PRIVATE KEY")),
                    pem("CERTIFICATE"),
                ]
            )
        )

    user_pool: dict[str, Callable[[], Any]] = {
        "token": secret_value,
        "password": secret_value,
        "username": secret_value,
        "client-certificate-data": secret_value,
        "client-key-data": secret_value,
        "exec": lambda: {"command": secret, "env": [{"name": "T", "value": secret}]},
        "auth-provider": lambda: {"name": "oidc", "config": {"id-token": secret}},
        "tokenFile": lambda: "/var/" + secret,
        "client-key": lambda: "/var/" + secret,
        "as": lambda: secret,
        "as-groups": lambda: [secret],
        "as-user-extra": lambda: {"scopes": [secret]},
        "unknown-field": secret_value,
        "extensions": lambda: [{"name": "x", "extension": {"token": secret}}],
    }
    cluster_pool: dict[str, Callable[[], Any]] = {
        "certificate-authority-data": secret_value,
        "server": lambda: draw(
            st.sampled_from(
                [
                    f"https://admin:{secret}@10.0.0.1:6443",
                    f"https://{secret}@10.0.0.1",
                    f"https://10.0.0.1:6443/?token={secret}",
                    f"https://10.0.0.1:6443/#{secret}",
                    f"http://admin:{secret}@10.0.0.1",
                    f"https://169.254.169.254/?x={secret}",
                    f"https://10.0.0.1/{secret}/../x",
                    f"https://10.0.0.1/ {secret}",
                    f"ftp://user:{secret}@h",
                    secret,
                ]
            )
        ),
        "proxy-url": lambda: f"http://user:{secret}@proxy:3128",
        "certificate-authority": lambda: "/etc/" + secret,
        "tls-server-name": lambda: secret + " bad",
        "insecure-skip-tls-verify": secret_value,
        "unknown-field": secret_value,
    }
    top_pool: dict[str, Callable[[], Any]] = {
        "kind": secret_value,
        "apiVersion": secret_value,
        "unknown-field": secret_value,
        "preferences": lambda: {"x": secret},
        "clusters": lambda: secret,
    }
    doc = base_doc(pki)
    for target, pool in (
        (doc["users"][0]["user"], user_pool),
        (doc["clusters"][0]["cluster"], cluster_pool),
        (doc, top_pool),
    ):
        for key in draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=4)):
            target[key] = pool[key]()
    document = yaml.safe_dump(doc, sort_keys=False)
    broken = draw(
        st.sampled_from(
            [
                None,
                f"token: {secret}: x\n",
                f"token: '{secret}\n",
                f'token: "{secret}\\q"\n',
                f"token: !{secret} x\n",
                f"token: !<{secret}> x\n",
                f"token: !{secret}!x y\n",
                f"token: &{secret} x\n",
                f"token: *{secret}\n",
                f"token: {secret}\x01\n",
                f"token: [{secret}\n",
                f"%TAG !{secret}! tag:x,2000:\n---\ntoken: x\n",
                f"token: x\ntoken: {secret}\n",
            ]
        )
    )
    if broken is not None:
        document = draw(st.sampled_from([broken, document + broken, broken + document]))
    return document, secret


@FAST
@given(hostile_with_secret(), st.sampled_from([DEFAULT, PERMISSIVE]))
def test_errors_never_contain_secrets(planted: tuple[str, str], policy: Policy) -> None:
    document, secret = planted
    markers = (secret, b64(secret)[:16], "SECRETPLANT", b64("SECRETPLANT")[:12])

    def assert_clean(text: str) -> None:
        for marker in markers:
            assert marker not in text

    for problem in find_problems(document, policy):
        assert_clean(str(problem))
        assert_clean(repr(problem))
        assert problem.__context__ is None
    result = _outcome(document, policy)
    if isinstance(result, KubeconfigError):
        assert_clean(str(result))
        assert_clean(repr(result))
        assert result.__context__ is None
        assert result.__cause__ is None
    else:
        assert_clean(repr(result))
        assert_clean(str(result))


def test_secret_property_sanity_check(pki: PKI) -> None:
    """The planted secrets really do reach the parser: a token-only plant parses successfully."""
    creds = parse_kubeconfig(doc_with(pki, user={"token": "SECRETPLANTabc123"}))
    assert creds.token == "SECRETPLANTabc123"
    assert "SECRETPLANT" not in repr(creds)


def test_token_like_keys_are_not_echoed(pki: PKI) -> None:
    """A token pasted where a key belongs must not end up in the message."""
    pasted = "sha256~" + "k" * 43
    for document in (
        doc_with(pki, user={pasted: None}),
        f"{{{pasted}: 1, {pasted}: 2}}\n",
    ):
        (problem,) = find_problems(document)
        assert pasted not in str(problem)
        assert "(name not shown)" in str(problem)


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
