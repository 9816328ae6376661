"""Helpers for end-to-end tests: the controller as a real process, waiting, fault proxies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx2
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.kube.resources import LandingPolicyResource, LandingResource
from moonlander_dev.clusters import free_port, spawn

from ..support.admission import install_finalizer_policy

# The hostile servers' TLS context, for the fake servers of test_security and test_faults too.
from ..support.hostile import server_tls_context as server_tls_context

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "config" / "crd" / "bases"
CRD_PATH = CRD_DIR / "moons.kingdon.ci_landings.yaml"
RBAC_PATH = ROOT / "config" / "rbac" / "role.yaml"
POLICY_READER_PATH = ROOT / "config" / "rbac" / "policy-reader-role.yaml"
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Polls ``probe`` until it returns a truthy value without raising AssertionError, an
    API error or a transport error (a timeout included)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
            if result:
                return result
        except (AssertionError, ApiError, httpx2.TransportError) as err:
            # A poll that timed out (an API server slow under load) is one more "not yet".
            last = err
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: {last!r}")


async def install_crd(client: AsyncClient) -> None:
    """Moonlander's CRDs, as config/crd/bases has them, and the finalizer policy of
    config/admission (the chart installs both)."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = CustomResourceDefinition.from_dict(yaml.safe_load(path.read_text()))
        await client.apply(crd, field_manager="tests", force=True)
        await client.wait(
            CustomResourceDefinition, crd.metadata.name, for_conditions=["Established"]
        )
    await install_finalizer_policy(client, "default")


async def controller_kubeconfig(client: AsyncClient, server: str, ca_pem: bytes) -> str:
    """A kubeconfig for ServiceAccount moonlander-system/moonlander bound to exactly the
    shipped ClusterRoles (config/rbac/role.yaml and policy-reader-role.yaml): the e2e
    controller runs with it."""
    from lightkube.resources.core_v1 import Namespace
    from lightkube.resources.rbac_authorization_v1 import ClusterRole

    role = ClusterRole.from_dict(yaml.safe_load(RBAC_PATH.read_text()))
    await client.apply(role, field_manager="tests", force=True)
    with contextlib.suppress(ApiError):
        await client.create(Namespace(metadata=ObjectMeta(name="moonlander-system")))
    reader = ClusterRole.from_dict(yaml.safe_load(POLICY_READER_PATH.read_text()))
    await client.apply(reader, field_manager="tests", force=True)
    await bind_cluster_role(client, "moonlander-system", "moonlander", reader.metadata.name)
    return await mint_token_kubeconfig(
        client, server, ca_pem, "moonlander-system", "moonlander", role.metadata.name, 6 * 3600
    )


def scratch_crd(group: str, kind: str, plural: str, spec_schema: dict[str, Any]) -> dict[str, Any]:
    """A namespaced v1 CRD whose ``spec`` has ``spec_schema``: for trying schemas (CEL
    included) on a real API server."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", **spec_schema}},
                        }
                    },
                }
            ],
        },
    }


def secret_with(namespace: str, name: str, data: dict[str, str], **meta: Any) -> Secret:
    return Secret(
        metadata=ObjectMeta(name=name, namespace=namespace, **meta),
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    )


def decoded(secret: Secret, key: str) -> str:
    return base64.b64decode((secret.data or {})[key]).decode()


def landing_policy(name: str, **spec: Any) -> Any:
    return LandingPolicyResource.from_dict(
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def trusted_policy(namespace: str) -> Any:
    """What the operator grants a namespace it trusts with the parent credential and with
    minting the roles the tests use (tests/e2e/test_tenancy.py tries namespaces without it).
    It names the network the test clusters are on (sourceNetworks), so their statuses say why
    a cluster could not be reached (without it they say only that)."""
    return landing_policy(
        f"trusted-{namespace}",
        namespaces={"names": [namespace]},
        parentCredential=True,
        sourceNetworks=["127.0.0.0/8", "::1/128"],
        mint={
            "clusterRoles": ["view", "edit"],
            "roles": ["cm-reader"],
            "roleNamespaces": [namespace],
            "clusterWide": True,
            "inlineRules": True,
            "serviceAccountNamespaces": ["moonlander-system", "moonlander-minted", namespace],
            "maxExpirationSeconds": 86400,
        },
    )


def landing(namespace: str, name: str, **spec: Any) -> Any:
    return LandingResource.from_dict(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


async def landing_gone(client: AsyncClient, namespace: str, name: str) -> bool:
    """True once the Landing no longer exists (its finalizer ran)."""
    try:
        await client.get(LandingResource, name, namespace=namespace)
    except ApiError as err:
        return err.status.code == 404
    return False


async def ready_condition(client: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    obj = await client.get(LandingResource, name, namespace=namespace)
    for cond in (obj.status or {}).get("conditions", []) if obj.status else []:
        if cond["type"] == "Ready":
            return dict(cond)
    return None


async def wait_reason(
    client: AsyncClient, namespace: str, name: str, reason: str, timeout: float = 30.0
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        cond = await ready_condition(client, namespace, name)
        assert cond is not None and cond["reason"] == reason, cond
        return cond

    return await eventually(probe, timeout=timeout, what=f"{namespace}/{name} reason {reason}")


class ControllerProcess:
    """``moonlander run`` as a subprocess, logging at DEBUG to a file tests can scan."""

    # Every controller started and not yet stopped, for the failure report (conftest).
    running: ClassVar[set[ControllerProcess]] = set()

    def __init__(
        self, workdir: Path, kubeconfig: Path | None, parent_kubeconfig: Path, *extra: str
    ) -> None:
        """``kubeconfig=None`` passes no ``--kubeconfig`` (set ``extra_env`` instead)."""
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.parent_kubeconfig = parent_kubeconfig
        self.extra = extra
        self.log_path = workdir / "controller.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}
        self.health_port = free_port()
        self.metrics_port = free_port()

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_PROXY") and not k.endswith("_proxy")
        }
        env.update(self.extra_env)
        ControllerProcess.running.add(self)
        with self.log_path.open("ab") as log:
            # spawn: dies with the test process, whatever ends it (no stray controllers).
            self.proc = spawn(
                [
                    sys.executable,
                    "-m",
                    "moonlander",
                    "--log-level=DEBUG",
                    "run",
                    *([f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []),
                    f"--parent-kubeconfig={self.parent_kubeconfig}",
                    "--allow-loopback",
                    "--controller-namespace=moonlander-system",
                    "--max-backoff=4",
                    "--resync-interval=60",
                    f"--health-port={self.health_port}",
                    f"--metrics-port={self.metrics_port}",
                    "--bind-address=127.0.0.1",
                    *self.extra,
                ],
                log,
                env=env,
            )

    def wait_started(self, timeout: float = 60.0, *, ready: bool = True) -> None:
        """Until the controller reconciles and, with ``ready``, its /readyz says its watches
        are established."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            if "moonlander running" in self.log():
                if not ready:
                    return
                with contextlib.suppress(OSError):
                    if self.http_get("/readyz")[0] == 200:
                        return
            time.sleep(0.2)
        raise AssertionError(f"controller did not start:\n{self.log_tail()}")

    def http_get(self, path: str) -> tuple[int, str]:
        """GET from the controller's health or metrics endpoint."""
        port = self.metrics_port if path == "/metrics" else self.health_port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def summary(self, warnings: int = 20, tail: int = 20) -> str:
        """Alive or exited, the last ``warnings`` WARNING/ERROR lines and the log's tail."""
        code = None if self.proc is None else self.proc.poll()
        state = (
            "not started" if self.proc is None else "running" if code is None else f"exited {code}"
        )
        lines = self.log().splitlines()
        loud = [line for line in lines if " WARNING " in line or " ERROR " in line]
        return "\n".join(
            [
                f"{state}; log {self.log_path}",
                "-- warnings --",
                *loud[-warnings:],
                "-- tail --",
                *lines[-tail:],
            ]
        )

    def stop(self) -> int | None:
        ControllerProcess.running.discard(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class FaultProxy:
    """A TCP proxy in front of an API server that can be switched to blackhole connections
    (accept, then never answer): the fault a real server cannot be made to produce."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blackhole = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            if self.blackhole:
                await asyncio.sleep(3600)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    while data := await src.read(65536):
                        if self.blackhole:
                            await asyncio.sleep(3600)
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(OSError):
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(OSError):
                writer.close()

    def cut(self) -> None:
        """Blackholes new and existing connections."""
        self.blackhole = True
        for task in list(self._conns):
            task.cancel()

    def restore(self) -> None:
        self.blackhole = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()


def kubeconfig_with_server(text: str, server: str) -> str:
    doc = yaml.safe_load(text)
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = server
    return yaml.safe_dump(doc)


# Secret values the tests plant; the final scan (test_zz_secret_scan.py) looks for them
# in logs, events, status and metrics.
PLANTED: list[str] = []

# Latencies measured by the tests, printed in the terminal summary (tests/conftest.py).
MEASURED: dict[str, list[float]] = {}


def measure(name: str, seconds: float) -> None:
    MEASURED.setdefault(name, []).append(seconds)


async def bind_cluster_role(
    client: AsyncClient, namespace: str, name: str, cluster_role: str
) -> None:
    """Binds ``cluster_role`` to ServiceAccount ``namespace/name`` (server-side apply)."""
    from lightkube.models.rbac_v1 import RoleRef, Subject
    from lightkube.resources.core_v1 import ServiceAccount
    from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

    await client.apply(
        ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)),
        field_manager="tests",
    )
    await client.apply(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=f"{namespace}-{name}-{cluster_role}"),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=cluster_role
            ),
            subjects=[Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        ),
        field_manager="tests",
    )


async def mint_token_kubeconfig(
    client: AsyncClient,
    server: str,
    ca_pem: bytes,
    namespace: str,
    name: str,
    cluster_role: str = "cluster-admin",
    expiration: int = 3600,
) -> str:
    """A token kubeconfig for a new ServiceAccount bound to ``cluster_role`` (test helper)."""
    from lightkube.models.authentication_v1 import TokenRequestSpec
    from lightkube.resources.core_v1 import ServiceAccount

    # Server-side apply: idempotent when clusters are reused (MOONLANDER_TEST_CLUSTERS).
    await bind_cluster_role(client, namespace, name, cluster_role)
    tr = await client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=expiration)
        ),
        name=name,
        namespace=namespace,
    )
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": tr.status.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
    )


CONTROLLER_USER = "system:serviceaccount:moonlander-system:moonlander"


def audit_events(directory: Path, cluster: str) -> list[dict[str, Any]]:
    """The parent's audit log: what the controller's ServiceAccount did with Secrets."""
    import json

    path = directory / f"{cluster}-audit.log"
    events = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == CONTROLLER_USER:
            events.append(event)
    return events
