"""The webhook's HTTPS: only callers with a client certificate from the configured CA get
an answer, and renewed files are served without a restart (real TLS on localhost)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moonlander.credentials import Policy
from moonlander.serve import webhook
from moonlander.serve.review import Reviewer
from moonlander.serve.tls import ServingTLS
from moonlander_dev import pki

from .test_review import FakeCluster

REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "1",
        "operation": "CREATE",
        "namespace": "n",
        "userInfo": {"username": "someone"},
        "object": {"metadata": {"name": "l"}, "spec": {"server": "https://169.254.169.254"}},
    },
}


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.client_ca = pki.CertificateAuthority("apiserver-webhook-client-ca")
        self.client = self.client_ca.issue("kube-apiserver", client=True)
        self.serving_ca = pki.CertificateAuthority("webhook-ca")
        self.write_serving(self.serving_ca)
        (root / "client-ca.crt").write_bytes(self.client_ca.cert_pem)
        (root / "client.crt").write_bytes(self.client.cert_pem)
        (root / "client.key").write_bytes(self.client.key_pem)

    def write_serving(self, ca: pki.CertificateAuthority) -> None:
        pair = ca.issue("webhook", server=True)
        # As the kubelet swaps a Secret volume: new files, not rewritten ones.
        for name, data in (("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem)):
            (self.root / f"{name}.new").write_bytes(data)
            (self.root / f"{name}.new").replace(self.root / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Files, ServingTLS, int]]:
    files = Files(tmp_path)
    tls = ServingTLS(tmp_path, tmp_path / "client-ca.crt", ("kube-apiserver",))
    port = _free_port()
    reviewer = Reviewer(FakeCluster(), Policy())
    runner = await webhook.serve(reviewer, tls, host="127.0.0.1", port=port)
    yield files, tls, port
    await runner.cleanup()


def _post(port: int, ca: bytes, cert: tuple[Path, Path] | None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=ca.decode())
    if cert is not None:
        ctx.load_cert_chain(*cert)
    body = json.dumps(REVIEW).encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if not data:  # TLS 1.3: the server's alert may come as a closed connection
        raise ConnectionResetError("closed without an answer")
    head, _, payload = data.partition(b"\r\n\r\n")
    return {"status": int(head.split()[1]), "body": payload}


async def _unanswered(port: int, ca: bytes, cert: tuple[Path, Path] | None) -> str:
    """Why no HTTP answer came (ssl.SSLError: certificate required, or a reset)."""
    try:
        answer = await asyncio.to_thread(_post, port, ca, cert)
    except OSError as err:
        return repr(err)
    raise AssertionError(f"answered {answer['status']}")


async def test_only_the_api_servers_certificate_gets_an_answer(
    served: tuple[Files, ServingTLS, int],
) -> None:
    files, _, port = served
    client = (files.root / "client.crt", files.root / "client.key")
    answer = await asyncio.to_thread(_post, port, files.serving_ca.cert_pem, client)
    assert answer["status"] == 200
    review = json.loads(answer["body"])
    assert review["response"]["allowed"] is False
    assert "169.254.169.254" in review["response"]["status"]["message"]
    # No certificate, or one from another CA: refused in the handshake, nothing answered.
    assert await _unanswered(port, files.serving_ca.cert_pem, None)
    stranger = pki.CertificateAuthority("stranger").issue("kube-apiserver", client=True)
    (files.root / "s.crt").write_bytes(stranger.cert_pem)
    (files.root / "s.key").write_bytes(stranger.key_pem)
    assert await _unanswered(
        port, files.serving_ca.cert_pem, (files.root / "s.crt", files.root / "s.key")
    )


async def test_a_certificate_of_the_ca_naming_another_client_is_refused(
    served: tuple[Files, ServingTLS, int],
) -> None:
    files, _, port = served
    other = files.client_ca.issue("someone-else", client=True)
    (files.root / "o.crt").write_bytes(other.cert_pem)
    (files.root / "o.key").write_bytes(other.key_pem)
    answer = await asyncio.to_thread(
        _post, port, files.serving_ca.cert_pem, (files.root / "o.crt", files.root / "o.key")
    )
    assert answer["status"] == 403


async def test_a_renewed_serving_certificate_is_served_without_a_restart(
    served: tuple[Files, ServingTLS, int],
) -> None:
    files, tls, port = served
    client = (files.root / "client.crt", files.root / "client.key")
    renewed = pki.CertificateAuthority("renewed-webhook-ca")
    files.write_serving(renewed)
    assert tls.reload_if_changed()
    assert not tls.reload_if_changed()  # once per change
    answer = await asyncio.to_thread(_post, port, renewed.cert_pem, client)
    assert answer["status"] == 200
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(_post, port, files.serving_ca.cert_pem, client)


async def test_half_written_files_keep_the_last_good_certificate(
    served: tuple[Files, ServingTLS, int],
) -> None:
    files, tls, port = served
    (files.root / "tls.key").write_bytes(b"not a key")
    assert not tls.reload_if_changed()
    client = (files.root / "client.crt", files.root / "client.key")
    answer = await asyncio.to_thread(_post, port, files.serving_ca.cert_pem, client)
    assert answer["status"] == 200


async def test_a_rotated_client_ca_trusts_the_new_api_server_certificate_only(
    served: tuple[Files, ServingTLS, int],
) -> None:
    files, tls, port = served
    old = (files.root / "client.crt", files.root / "client.key")
    rotated = pki.CertificateAuthority("rotated-client-ca")
    pair = rotated.issue("kube-apiserver", client=True)
    (files.root / "new.crt").write_bytes(pair.cert_pem)
    (files.root / "new.key").write_bytes(pair.key_pem)
    (files.root / "ca.new").write_bytes(rotated.cert_pem)
    (files.root / "ca.new").replace(files.root / "client-ca.crt")
    assert tls.reload_if_changed()
    new = (files.root / "new.crt", files.root / "new.key")
    answer = await asyncio.to_thread(_post, port, files.serving_ca.cert_pem, new)
    assert answer["status"] == 200
    assert await _unanswered(port, files.serving_ca.cert_pem, old)
