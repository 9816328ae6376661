"""Hostile kubeconfigs and tenant-chosen servers, against the real controller process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moonlander_dev import pki

from .conftest import Env
from .harness import (
    PLANTED,
    ControllerProcess,
    landing,
    secret_with,
    server_tls_context,
    wait_reason,
)

pytestmark = pytest.mark.e2e


class RecordingServer:
    """An HTTPS server that records request headers and answers 500: it stands in for a
    tenant-chosen API server, to see what the controller would send to one."""

    def __init__(self) -> None:
        self.ca = pki.CertificateAuthority("recording-ca")
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        ctx = server_tls_context(self.ca, "recording")
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {"_request": lines[0]}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            self.requests.append(headers)
            body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}'
            writer.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    def kubeconfig(self, user: dict[str, str]) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "evil",
                        "cluster": {
                            "server": f"https://127.0.0.1:{self.port}",
                            "certificate-authority-data": base64.b64encode(
                                self.ca.cert_pem
                            ).decode(),
                        },
                    }
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "evil", "context": {"cluster": "evil", "user": "u"}}],
                "current-context": "evil",
            }
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def test_tenant_server_never_sees_the_controllers_credentials(
    env: Env, namespace: str
) -> None:
    server = RecordingServer()
    await server.start()
    try:
        tenant_token = f"tenant-{secrets.token_hex(16)}"
        PLANTED.append(tenant_token)
        pair = server.ca.issue("tenant", client=True)
        cert_user = {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode(),
        }
        local = env.local
        await local.create(
            secret_with(
                namespace,
                "kubernetes-tok-admin-kubeconfig",
                {"value": server.kubeconfig({"token": tenant_token})},
            )
        )
        await local.create(
            secret_with(
                namespace,
                "kubernetes-crt-admin-kubeconfig",
                {"value": server.kubeconfig(cert_user)},
            )
        )
        await local.create(landing(namespace, "tok"))
        await local.create(landing(namespace, "crt"))
        for name in ("tok", "crt"):
            cond = await wait_reason(local, namespace, name, "TransientError", timeout=30)
            assert tenant_token not in cond["message"]
        assert len(server.requests) >= 2
        auth = [r.get("authorization") for r in server.requests]
        # Only the tenant's own token, or nothing at all: never the controller's identity.
        assert set(auth) <= {f"Bearer {tenant_token}", None}, auth
        assert f"Bearer {tenant_token}" in auth and None in auth
        assert not any("proxy-authorization" in r for r in server.requests)
    finally:
        await server.close()


async def test_environment_proxies_are_never_used(env: Env, namespace: str, tmp_path: Path) -> None:
    """A controller started with proxy variables in its environment connects directly."""
    connections: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    proxy = await asyncio.start_server(count, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    controller = ControllerProcess(
        tmp_path, env.controller.kubeconfig, env.parent_file, f"--namespace={namespace}"
    )
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        controller.extra_env[var] = proxy_url
    local = env.local
    # The shared controller watches every namespace; suspend-free isolation: this Landing's
    # namespace is also watched by the second controller, which must land it directly.
    await local.create(
        secret_with(
            namespace, "kubernetes-px-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    controller.start()
    try:
        controller.wait_started()
        await local.create(landing(namespace, "px"))
        await wait_reason(local, namespace, "px", "Synced")
        await asyncio.sleep(1)
        assert "moonlander running" in controller.log()
        assert connections == []
    finally:
        controller.stop()
        proxy.close()


async def test_hostile_kubeconfigs_never_run_or_read_anything(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    secret_file = tmp_path / "secret-token"
    secret_file.write_text("file-token")
    cases = {
        "exec": {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "/bin/sh",
                "args": ["-c", f"touch {marker}"],
            }
        },
        "tokenfile": {"tokenFile": str(secret_file)},
        "authprovider": {"auth-provider": {"name": "oidc", "config": {}}},
        "certpath": {"client-certificate": str(secret_file), "client-key": str(secret_file)},
        "impersonate": {"token": "x", "as": "system:admin"},
    }
    local = env.local
    for name, user in cases.items():
        text = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": env.plane["child-a"].url}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
        await local.create(
            secret_with(namespace, f"kubernetes-{name}-admin-kubeconfig", {"value": text})
        )
        await local.create(landing(namespace, name))
    for name in cases:
        cond = await wait_reason(local, namespace, name, "InvalidKubeconfig")
        assert "not allowed" in cond["message"] or "file" in cond["message"], cond["message"]
    metadata_server = yaml.safe_load(env.kubeconfig_text("child-a"))
    metadata_server["clusters"][0]["cluster"]["server"] = "https://169.254.169.254"
    await local.create(
        secret_with(
            namespace,
            "kubernetes-imds-admin-kubeconfig",
            {"value": yaml.safe_dump(metadata_server)},
        )
    )
    await local.create(landing(namespace, "imds"))
    cond = await wait_reason(local, namespace, "imds", "InvalidKubeconfig")
    assert "169.254.169.254" in cond["message"]
    assert not marker.exists()
    assert "file-token" not in env.controller.log()


def test_check_command_explains_problems(env: Env, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text(env.kubeconfig_text("child-a"))
    ok = subprocess.run(
        [sys.executable, "-m", "moonlander", "check", str(good), "--allow-loopback"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: server https://127.0.0.1" in ok.stdout
    denied = subprocess.run(
        [sys.executable, "-m", "moonlander", "check", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert denied.returncode == 1
    assert "AddressNotAllowed" in denied.stdout and "loopback" in denied.stdout.lower()
    doc = yaml.safe_load(env.kubeconfig_text("child-a"))
    doc["users"][0]["user"]["exec"] = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "x",
    }
    doc["clusters"][0]["cluster"]["proxy-url"] = "http://proxy:3128"
    bad = tmp_path / "bad"
    bad.write_text(yaml.safe_dump(doc))
    out = subprocess.run(
        [sys.executable, "-m", "moonlander", "check", str(bad), "--allow-loopback"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "[ExecNotAllowed]" in out.stdout and "[ProxyNotAllowed]" in out.stdout
    key = doc["users"][0]["user"]["client-key-data"]
    assert key[20:60] not in out.stdout


async def test_check_command_reads_a_secret(env: Env, namespace: str) -> None:
    await env.local.create(
        secret_with(namespace, "cozy", {"admin.conf": env.kubeconfig_text("child-b")})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moonlander",
        "check",
        "--secret",
        f"{namespace}/cozy",
        "--kubeconfig",
        str(env.plane["parent"].kubeconfig),
        "--allow-loopback",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    assert f"Secret {namespace}/cozy key 'admin.conf': OK" in out.decode()
