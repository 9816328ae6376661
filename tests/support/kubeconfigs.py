"""Builders shared by the credential tests and the output tests: a test PKI, kubeconfig
documents built from a valid base, and Hypothesis strategies for valid credentials."""

from __future__ import annotations

import base64
import datetime
import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    check_server,
    find_problems,
    parse_kubeconfig,
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


def check_rejected(pki: PKI, build: Builder, policy: Policy, reason: str, fragment: str) -> None:
    """The assertions of every rejection table (one per credentials module)."""
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


def _outcome(document: str | bytes, policy: Policy = DEFAULT) -> Credentials | KubeconfigError:
    """Parse, allowing only KubeconfigError to escape (anything else fails the test)."""
    try:
        return parse_kubeconfig(document, policy)
    except KubeconfigError as err:
        return err


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
