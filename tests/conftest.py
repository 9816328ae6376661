"""Fixtures over the real local control plane (moonlander_dev.clusters).

One etcd and three kube-apiservers (parent, child-a, child-b) start once per test session.
If they cannot start, every e2e test fails with the reason: these tests never skip.
Set MOONLANDER_TEST_CLUSTERS=DIR to reuse clusters from ``moonlander-dev dev-clusters up --dir DIR``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Namespace

from moonlander_dev.clusters import Cluster, ClusterSpec, ControlPlane, ControlPlaneError

CLUSTERS = ("parent", "child-a", "child-b")


class Plane:
    """The running clusters, by name."""

    def __init__(self, clusters: dict[str, Cluster], directory: Path, start_seconds: float) -> None:
        self.clusters = clusters
        self.directory = directory
        self.start_seconds = start_seconds

    def __getitem__(self, name: str) -> Cluster:
        return self.clusters[name]


def _reuse(directory: Path) -> Plane:
    from moonlander_dev import pki

    info = json.loads((directory / "clusters.json").read_text())
    clusters = {}
    for item in info:
        name = item["name"]
        certs = directory / name
        admin = pki.KeyPair((certs / "admin.crt").read_bytes(), (certs / "admin.key").read_bytes())
        clusters[name] = Cluster(
            name=name,
            url=item["url"],
            port=int(item["url"].rsplit(":", 1)[1]),
            kubeconfig=Path(item["kubeconfig"]),
            ca_pem=(certs / "ca.crt").read_bytes(),
            admin=admin,
            version=item["version"],
        )
    return Plane(clusters, directory, 0.0)


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    reuse = os.environ.get("MOONLANDER_TEST_CLUSTERS")
    if reuse:
        yield _reuse(Path(reuse))
        return
    directory = tmp_path_factory.mktemp("clusters")
    control = ControlPlane(directory, [ClusterSpec(n) for n in CLUSTERS])
    started = time.monotonic()
    try:
        control.start()
    except ControlPlaneError as err:
        pytest.fail(f"the local control plane did not start: {err}", pytrace=False)
    elapsed = time.monotonic() - started
    print(f"\ncontrol plane: {len(CLUSTERS)} clusters ready in {elapsed:.1f}s")
    for line in control.summary():
        print("  " + line)
    try:
        yield Plane(control.clusters, directory, elapsed)
    finally:
        control.stop()


@pytest.fixture(scope="session")
async def admin(plane: Plane) -> AsyncIterator[dict[str, AsyncClient]]:
    clients = {
        name: AsyncClient(KubeConfig.from_file(plane[name].kubeconfig), field_manager="tests")
        for name in plane.clusters
    }
    yield clients
    for client in clients.values():
        await client._client.close()


@pytest.fixture
async def namespace(admin: dict[str, AsyncClient]) -> str:
    """A fresh namespace, created in every cluster (namespaces are never reused)."""
    name = f"t-{secrets.token_hex(4)}"
    for client in admin.values():
        await client.create(Namespace(metadata={"name": name}))  # type: ignore[arg-type]
    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .e2e.harness import MEASURED

    if not MEASURED:
        return
    terminalreporter.section("measured latencies (seconds)")
    for name, values in sorted(MEASURED.items()):
        values = sorted(values)
        terminalreporter.write_line(
            f"{name:<40} n={len(values):<3} min={values[0]:.3f} median={values[len(values) // 2]:.3f} max={values[-1]:.3f}"
        )
