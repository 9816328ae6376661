"""Pattern B as documented (issue 11, item 7): vcluster's Secret names
``https://localhost:8443``, which only works inside the vcluster's pod. A ChildToParent
Landing's ``spec.server`` replaces that server before anything is checked or dialled: the
credential check, minting and the drift watch all go to ``spec.server``, never to the
controller's own loopback carrying the vcluster's token.

The e2e controller runs with ``--allow-loopback`` (every test cluster is on 127.0.0.1), so
the address policy alone would not stop a connection to the source's own server: a listener
on that port records every connection attempt, and there must be none.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError
from lightkube.resources.core_v1 import ServiceAccount

from moonlander.kube.resources import LandingResource

from .conftest import Env
from .harness import (
    PLANTED,
    decoded,
    eventually,
    kubeconfig_with_server,
    landing,
    landing_gone,
    secret_with,
    wait_reason,
)
from .test_landing import kubectl, landed, namespaces_via

pytestmark = pytest.mark.e2e


class RecordingListener:
    """A plain TCP listener standing in for the source's own server: it accepts, records
    and closes every connection."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self.port = 0
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        first = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._servers.append(first)
        self.port = first.sockets[0].getsockname()[1]
        # Where localhost also resolves to ::1, listen there too (best effort).
        with contextlib.suppress(OSError):
            self._servers.append(
                await asyncio.start_server(self._handle, "::1", self.port, family=socket.AF_INET6)
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.connections.append((str(peer[0]), int(peer[1])))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[RecordingListener]:
    recorder = RecordingListener()
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.close()


def vcluster_secret_text(env: Env, port: int) -> str:
    """child-b's admin kubeconfig as vcluster writes it: naming the controller's loopback."""
    text = kubeconfig_with_server(env.kubeconfig_text("child-b"), f"https://localhost:{port}")
    assert f"https://localhost:{port}" in text
    return text


async def test_child_to_parent_dials_spec_server_only(
    env: Env, namespace: str, tmp_path: Path, listener: RecordingListener
) -> None:
    local = env.local
    real = env.plane["child-b"].url
    await local.create(
        secret_with(namespace, "vc-b-admin", {"config": vcluster_secret_text(env, listener.port)})
    )
    await local.create(
        landing(
            namespace,
            "vc-b-to-parent",
            kubeconfigSecretName="vc-b-admin",
            writeKubeconfigSecretName="vc-b-kubeconfig",
            direction="ChildToParent",
            server=real,
        )
    )
    await wait_reason(local, namespace, "vc-b-to-parent", "Synced")
    text = decoded(await landed(local, namespace, "vc-b-kubeconfig"), "kubeconfig")
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == real
    assert namespace in await namespaces_via(text)
    # It is child-b: the Landing CRD exists only in the parent.
    assert "landings.moons.kingdon.ci" not in kubectl(text, tmp_path, "get", "crd", "-o", "name")
    obj = await local.get(LandingResource, "vc-b-to-parent", namespace=namespace)
    assert obj.status["landed"]["server"] == real

    # Deleting revokes (the Secret is local): still nothing goes to the source's server.
    await local.delete(LandingResource, "vc-b-to-parent", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "vc-b-to-parent"), what="deleted")
    await asyncio.sleep(1)
    assert listener.connections == []


async def test_child_to_parent_mints_at_spec_server_only(
    env: Env, namespace: str, listener: RecordingListener
) -> None:
    local, child = env.local, env.admin["child-b"]
    real = env.plane["child-b"].url
    sa_name = "pattern-b-reader"
    await local.create(
        secret_with(namespace, "vc-b-admin", {"config": vcluster_secret_text(env, listener.port)})
    )
    await local.create(
        landing(
            namespace,
            "vc-b-minted",
            kubeconfigSecretName="vc-b-admin",
            writeKubeconfigSecretName="vc-b-minted-kubeconfig",
            direction="ChildToParent",
            server=real,
            serviceAccount={
                "name": sa_name,
                "namespace": namespace,
                "rules": [
                    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}
                ],
            },
        )
    )
    await wait_reason(local, namespace, "vc-b-minted", "Synced")
    text = decoded(await landed(local, namespace, "vc-b-minted-kubeconfig"), "kubeconfig")
    doc = yaml.safe_load(text)
    PLANTED.append(doc["users"][0]["user"]["token"])
    assert doc["clusters"][0]["cluster"]["server"] == real
    assert namespace in await namespaces_via(text)  # the minted token works in child-b
    # Minted in the child, with the child's credential.
    account = await child.get(ServiceAccount, sa_name, namespace=namespace)
    assert account.metadata is not None and account.metadata.uid

    # The ServiceAccount drift watch is on child-b at spec.server: a deleted ServiceAccount
    # is recreated there.
    await child.delete(ServiceAccount, sa_name, namespace=namespace)

    async def recreated() -> bool:
        again = await child.get(ServiceAccount, sa_name, namespace=namespace)
        return again.metadata is not None and again.metadata.uid != account.metadata.uid

    await eventually(recreated, what="ServiceAccount recreated in child-b")

    # Deleting revokes in child-b, again at spec.server.
    await local.delete(LandingResource, "vc-b-minted", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "vc-b-minted"), what="deleted")

    async def revoked() -> bool:
        try:
            await child.get(ServiceAccount, sa_name, namespace=namespace)
        except ApiError as err:
            return err.status.code == 404
        return False

    await eventually(revoked, what="ServiceAccount revoked in child-b")
    await asyncio.sleep(1)
    assert listener.connections == []
