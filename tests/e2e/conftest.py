"""The controller under test: ``moonlander run`` in the parent cluster, as a real process."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import AsyncClient

from moonlander_dev import pki
from moonlander_dev.clusters import WEBHOOK_CLIENT_NAME, free_port

from ..conftest import Plane
from .harness import ControllerProcess, controller_kubeconfig, install_crd, trusted_policy
from .tenants import tenant, unchecked_tenant, wired  # noqa: F401 - the tenancy suites' fixtures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e test's report carries what the controllers said: whether each is alive,
    its last warnings and the tail of its log (CI keeps only the report)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for controller in ControllerProcess.running:
        report.sections.append((f"controller {controller.workdir.name}", controller.summary()))


@dataclass(frozen=True)
class Webhook:
    """The session controller's admission webhook: served, but registered with the API
    server only for the tenancy suites' namespaces (``wired``, tests/e2e/tenants.py)."""

    port: int
    ca_pem: bytes  # the serving certificate's CA, for a caBundle

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


def _webhook_certs(directory: Path) -> bytes:
    ca = pki.CertificateAuthority("webhook-ca")
    serving = ca.issue("127.0.0.1", server=True)
    directory.mkdir()
    (directory / "tls.crt").write_bytes(serving.cert_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    return ca.cert_pem


class Env:
    """What a Landing test needs: the clusters, their admin clients and the controller."""

    def __init__(
        self,
        plane: Plane,
        admin: dict[str, AsyncClient],
        controller: ControllerProcess,
        webhook: Webhook,
    ) -> None:
        self.plane = plane
        self.admin = admin
        self.controller = controller
        self.parent_file = controller.parent_kubeconfig
        self.webhook = webhook

    @property
    def local(self) -> AsyncClient:
        return self.admin["parent"]

    def kubeconfig_text(self, cluster: str) -> str:
        return self.plane[cluster].kubeconfig.read_text()


@pytest.fixture(scope="session")
async def env(
    plane: Plane, admin: dict[str, AsyncClient], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    await install_crd(admin["parent"])
    workdir = tmp_path_factory.mktemp("controller")
    parent_file = workdir / "parent-kubeconfig"
    shutil.copy(plane["parent"].kubeconfig, parent_file)
    # The controller runs as a ServiceAccount bound to exactly the shipped RBAC.
    identity = workdir / "controller-kubeconfig"
    identity.write_text(
        await controller_kubeconfig(admin["parent"], plane["parent"].url, plane["parent"].ca_pem)
    )
    identity.chmod(0o600)
    webhook = Webhook(free_port(), _webhook_certs(workdir / "webhook-certs"))
    controller = ControllerProcess(
        workdir,
        identity,
        parent_file,
        f"--webhook-port={webhook.port}",
        f"--webhook-cert-dir={workdir / 'webhook-certs'}",
        f"--webhook-client-ca={plane['parent'].webhook_client_ca}",
        f"--webhook-client-name={WEBHOOK_CLIENT_NAME}",
    )
    controller.start()
    controller.wait_started()
    yield Env(plane, admin, controller, webhook)
    code = controller.stop()
    print(f"\ncontroller exited with {code}; log: {controller.log_path}")


@pytest.fixture
async def namespace(namespace: str, env: Env) -> str:
    """A fresh namespace that the operator trusts: a LandingPolicy grants it the parent
    credential and minting (tests of what an untrusted tenant gets use their own)."""
    await env.local.create(trusted_policy(namespace))
    return namespace
