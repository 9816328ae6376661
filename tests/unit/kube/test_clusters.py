"""What a tenant's kubeconfig trusts: its CA data, or the system store; never the environment."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from lightkube.resources.core_v1 import Namespace

from moonlander.credentials import Credentials, Policy
from moonlander.kube import clusters, transport
from moonlander_dev import pki

from ...support.builders import credentials


def _credentials(ca_data: bytes | None) -> Credentials:
    return credentials(ca_data=ca_data)


def _subject_hash(cert_pem: bytes) -> str:
    """OpenSSL's subject name hash (the file name in a CA directory), for a name that is
    already in canonical form (one lower-case UTF8String CN): SHA-1 over the RDNs' DER, without
    the outer SEQUENCE header; the first four bytes, little-endian."""
    der = x509.load_pem_x509_certificate(cert_pem).subject.public_bytes()
    assert der[0] == 0x30 and der[1] < 0x80
    return (
        f"{int.from_bytes(hashlib.sha1(der[2:], usedforsecurity=False).digest()[:4], 'little'):08x}"
    )


@dataclasses.dataclass(frozen=True)
class Server:
    port: int
    ca_pem: bytes  # the CA that signed the server's certificate


@contextlib.contextmanager
def tls_server(tmp_path: Path) -> Iterator[Server]:
    """A TLS server on 127.0.0.1 with a certificate from a fresh CA; it only does handshakes."""
    ca = pki.CertificateAuthority("moonlander environment test ca")
    pair = ca.issue("server", server=True)
    (tmp_path / "server.pem").write_bytes(pair.cert_pem + pair.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue  # timed out: look at stop again
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # wait for the client to hang up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Server(listener.getsockname()[1], ca.cert_pem)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def handshake(ctx: ssl.SSLContext, server: Server) -> None:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with tls_server(tmp_path) as running:
        yield running


def test_ssl_cert_file_does_not_extend_trust(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file = tmp_path / "environment-ca.pem"
    ca_file.write_bytes(server.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    # The variable is in effect: Python's default context trusts the server through it.
    handshake(ssl.create_default_context(), server)

    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(clusters.ssl_context(_credentials(None)), server)
    # With CA data, exactly that CA is trusted: the server's CA, but not another one.
    handshake(clusters.ssl_context(_credentials(server.ca_pem)), server)
    other_ca = pki.CertificateAuthority("another ca").cert_pem
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(clusters.ssl_context(_credentials(other_ca)), server)


def test_ssl_cert_dir_does_not_extend_trust(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_dir = tmp_path / "environment-certs"
    ca_dir.mkdir()
    (ca_dir / f"{_subject_hash(server.ca_pem)}.0").write_bytes(server.ca_pem)
    monkeypatch.setenv("SSL_CERT_DIR", str(ca_dir))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    handshake(ssl.create_default_context(), server)  # the variable is in effect

    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(clusters.ssl_context(_credentials(None)), server)


def test_system_store_is_found_at_openssl_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env.pem").write_bytes(b"")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "env.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    cafile, capath = transport._system_ca_locations()
    paths = ssl.get_default_verify_paths()
    assert cafile in (paths.openssl_cafile, None)
    assert capath in (paths.openssl_capath, None)
    assert str(tmp_path) not in f"{cafile}{capath}"


def test_without_a_system_store_nothing_is_trusted(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "_system_ca_locations", lambda: (None, None))
    ca_file = tmp_path / "environment-ca.pem"
    ca_file.write_bytes(server.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    ctx = clusters.ssl_context(_credentials(None))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ctx, server)


def test_sslkeylogfile_is_never_followed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$SSLKEYLOGFILE would make Python write TLS session keys: not for tenants' clusters."""
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    assert ssl.create_default_context().keylog_filename == str(keylog)  # in effect
    for ca in (server.ca_pem, None):
        assert clusters.ssl_context(_credentials(ca)).keylog_filename is None
    handshake(clusters.ssl_context(_credentials(server.ca_pem)), server)
    secrets = [line for line in keylog.read_text().splitlines() if not line.startswith("#")]
    assert secrets == []  # only the header Python writes when a context is created


async def test_a_built_client_trusts_exactly_the_kubeconfig_ca(server: Server) -> None:
    """The whole client as the controller builds it (lightkube over our transport and
    streams): lightkube's own TLS settings are never what a connection uses."""
    policy = Policy(allow_loopback=True)
    url = f"https://127.0.0.1:{server.port}"
    other_ca = pki.CertificateAuthority("another ca").cert_pem
    wrong = clusters.build_client(dataclasses.replace(_credentials(other_ca), server=url), policy)
    with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await wrong.get(Namespace, "default")
    await wrong.close()
    right = clusters.build_client(
        dataclasses.replace(_credentials(server.ca_pem), server=url), policy
    )
    # The handshake succeeds; the server (which only does handshakes) then hangs up.
    with pytest.raises(httpx2.HTTPError) as failed:
        await right.get(Namespace, "default")
    assert "CERTIFICATE" not in str(failed.value)
    assert not isinstance(failed.value, httpx2.ConnectError)
    await right.close()
