"""The soak (bench/soak): the short profile passes, and the checker catches each violation.

``test_short_profile`` runs ``python -m bench.soak.run --short`` (200 Landings, every kind
of operation and fault, about three minutes) and asserts the independent checker found
nothing. The other tests break one invariant each, on purpose, against a tiny private
setup (a parent, one child, one controller), and assert the checker, run as its own
process over a hand-written operations log, reports exactly that class of violation —
and, unbroken, nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.soak import schedule
from bench.soak.world import Oplog
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Namespace, Secret, ServiceAccount
from lightkube.types import PatchType

from moonlander import api
from moonlander.kube.resources import LandingResource
from moonlander_dev.clusters import ClusterSpec, ControlPlane

from .harness import (
    ROOT,
    ControllerProcess,
    install_crd,
    landing,
    mint_token_kubeconfig,
    secret_with,
    trusted_policy,
    wait_reason,
)

pytestmark = pytest.mark.e2e

NS = "catch"
CHILD = "child-1"
SOURCE = schedule.source_name(CHILD)
SHARD_GROUP_LABEL = "moons.kingdon.ci/shard-group"


@pytest.mark.timeout(480)
def test_short_profile(tmp_path: Path) -> None:
    """200 Landings over three children, sharded replicas and a leader-elected pair, every
    kind of operation and fault: the checker finds no violation."""
    started = time.monotonic()
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak.run",
            "--short",
            "--seed=28",
            "--converge-bound=120",
            "--revoke-bound=30",
            f"--workdir={tmp_path / 'soak'}",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=450,
        check=False,
    )
    wall = time.monotonic() - started
    report = json.loads(out.read_text()) if out.exists() else {}
    print(run.stdout[-4000:], run.stderr[-4000:], f"wall {wall:.0f}s", sep="\n")
    assert report, (run.returncode, run.stdout[-3000:], run.stderr[-3000:])
    violations = report["violations"]
    assert violations == [], [f"{v['kind']} {v['what']}" for v in violations[:10]]
    # The checker exits non-zero exactly when it found violations; anything else failed.
    assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
    # The run was what it claims: every fault made, operations done, Landings converged.
    assert set(report["faults"]) == set(schedule.FAULTS), report["faults"]
    assert report["counts"]["landing"] >= schedule.SHORT.landings * 0.8, report["counts"]
    assert report["counts"]["landing-delete"] > 0 and report["counts"]["policy"] > 0
    assert report["convergence"]["landings"] >= 150, report["convergence"]
    assert report["resources"]["peak_rss_mb"] > 0, report["resources"]


# -- the checker catches each class of violation -----------------------------------------------


@dataclass
class Tiny:
    plane: ControlPlane
    parent: AsyncClient
    child: AsyncClient
    controller: ControllerProcess
    base: list[dict[str, Any]]  # the operations log of the unbroken setup
    token: str  # a secret the source holds (the checker must find it anywhere else)


@pytest.fixture(scope="module")
async def tiny(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tiny]:
    directory = tmp_path_factory.mktemp("soak-catch")
    plane = ControlPlane(directory / "plane", [ClusterSpec("parent"), ClusterSpec(CHILD)])
    await asyncio.to_thread(plane.start)
    parent = AsyncClient(KubeConfig.from_file(plane.clusters["parent"].kubeconfig))
    child = AsyncClient(KubeConfig.from_file(plane.clusters[CHILD].kubeconfig))
    controller = None
    try:
        await install_crd(parent)
        for name in ("moonlander-system", "moonlander-minted", NS):
            await parent.create(Namespace(metadata=ObjectMeta(name=name)))
        await child.create(Namespace(metadata=ObjectMeta(name=NS)))
        await parent.create(trusted_policy(NS))
        cluster = plane.clusters[CHILD]
        source = await mint_token_kubeconfig(
            child, cluster.url, cluster.ca_pem, "default", "soak-admin", "cluster-admin"
        )
        token = yaml.safe_load(source)["users"][0]["user"]["token"]
        await parent.create(secret_with(NS, SOURCE, {"value": source}))
        sentinel = await child.create(secret_with(NS, "sentinel-0", {"value": "foreign"}))
        parent_file = directory / "parent-kubeconfig"
        shutil.copy(plane.clusters["parent"].kubeconfig, parent_file)
        controller = ControllerProcess(
            directory, plane.clusters["parent"].kubeconfig, parent_file, f"--namespace={NS}"
        )
        controller.start()
        await asyncio.to_thread(controller.wait_started)
        spec = {"kubeconfigSecretName": SOURCE, "writeKubeconfigSecretName": "landed"}
        await parent.create(landing(NS, "base", **spec))
        await wait_reason(parent, NS, "base", "Synced", timeout=60)
        assert controller.proc is not None
        now = time.time()
        base = [
            {
                "t": now,
                "op": "plane",
                "clusters": {n: str(c.kubeconfig) for n, c in plane.clusters.items()},
                "parent_file": str(parent_file),
                "sources": {SOURCE: CHILD},
                "namespaces": [NS],
                "lease_namespace": "moonlander-system",
            },
            {"t": now, "op": "policy", "ns": NS, "granted": True},
            {
                "t": now,
                "op": "controller-start",
                "pid": controller.proc.pid,
                "name": "tiny",
                "group": "shards",
                "log": str(controller.log_path),
                "metrics_port": controller.metrics_port,
            },
            {
                "t": now,
                "op": "sentinel",
                "cluster": CHILD,
                "ns": NS,
                "name": "sentinel-0",
                "rv": sentinel.metadata.resourceVersion,
                "digest": _digest(sentinel),
            },
            {"t": now, "op": "landing", "ns": NS, "name": "base", "flavour": "p2c", "spec": spec},
        ]
        yield Tiny(plane, parent, child, controller, base, token)
    finally:
        if controller is not None:
            controller.stop()
        for client in (parent, child):
            await client._client.close()
        await asyncio.to_thread(plane.stop)


def _digest(secret: Secret) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(secret.data or {}, sort_keys=True).encode()).hexdigest()


async def check(
    tiny: Tiny, tmp_path: Path, *extra: dict[str, Any], args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Runs the checker as its own process over the base log plus ``extra`` and "quiet";
    returns its report."""
    log = tmp_path / "oplog.jsonl"
    oplog = Oplog(log)
    for entry in [*tiny.base, *extra]:
        oplog.append(entry)
    oplog.write("quiet")
    oplog.close()
    out = tmp_path / "report.json"
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "bench.soak.checker",
            f"--oplog={log}",
            f"--out={out}",
            "--converge-bound=15",
            "--revoke-bound=2",
            "--interval=0.5",
            *args,
        ],
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    return dict(json.loads(out.read_text()))


def kinds(report: dict[str, Any]) -> dict[str, str]:
    return {v["what"]: v["kind"] for v in report["violations"]}


async def test_unbroken_the_checker_finds_nothing(tiny: Tiny, tmp_path: Path) -> None:
    report = await check(tiny, tmp_path)
    assert report["violations"] == [], report["violations"]
    assert report["convergence"]["landings"] == 1
    assert report["leak_scan"]["secret_strings"] > 0 and report["leak_scan"]["bytes"] > 0


async def test_a_finalizer_deleted_by_hand_leaves_a_credential_without_a_landing(
    tiny: Tiny, tmp_path: Path
) -> None:
    """The finalizer removed and the Landing deleted while the controller is paused
    (SIGSTOP: else it would clean up through its hold on the source): its landed Secret
    is left without a Landing."""
    spec = {"kubeconfigSecretName": SOURCE, "writeKubeconfigSecretName": "unfinalized"}
    await tiny.parent.create(landing(NS, "unfinalized", **spec))
    await wait_reason(tiny.parent, NS, "unfinalized", "Synced", timeout=60)
    assert tiny.controller.proc is not None
    tiny.controller.proc.send_signal(signal.SIGSTOP)
    try:
        await tiny.parent.patch(
            LandingResource,
            "unfinalized",
            [{"op": "remove", "path": "/metadata/finalizers"}],
            namespace=NS,
            patch_type=PatchType.JSON,
        )
        await tiny.parent.delete(LandingResource, "unfinalized", namespace=NS)
        t = time.time()
        report = await check(
            tiny,
            tmp_path,
            {
                "t": t,
                "op": "landing",
                "ns": NS,
                "name": "unfinalized",
                "flavour": "p2c",
                "spec": spec,
            },
            {"t": t, "op": "landing-delete", "ns": NS, "name": "unfinalized"},
        )
    finally:
        tiny.controller.proc.send_signal(signal.SIGCONT)
    assert kinds(report) == {f"Secret/{CHILD}/{NS}/unfinalized": "credential-without-grant"}
    with contextlib.suppress(ApiError):
        await tiny.child.delete(Secret, "unfinalized", namespace=NS)


async def test_a_secret_written_by_hand_where_no_grant_is(tiny: Tiny, tmp_path: Path) -> None:
    await tiny.child.create(
        secret_with(
            NS,
            "forged",
            {"value": "x"},
            labels={api.MANAGED_BY_LABEL: api.MANAGED_BY},
            annotations={api.OWNER_ANNOTATION: f"{NS}/nobody"},
        )
    )
    try:
        report = await check(tiny, tmp_path)
    finally:
        await tiny.child.delete(Secret, "forged", namespace=NS)
    assert kinds(report) == {f"Secret/{CHILD}/{NS}/forged": "credential-without-grant"}


async def test_an_orphaned_minted_service_account(tiny: Tiny, tmp_path: Path) -> None:
    await tiny.parent.create(
        ServiceAccount(
            metadata=ObjectMeta(
                name="orphan",
                namespace="moonlander-minted",
                labels={api.MANAGED_BY_LABEL: api.MANAGED_BY},
                annotations={api.OWNER_ANNOTATION: f"{NS}/long-gone"},
            )
        )
    )
    try:
        report = await check(
            tiny,
            tmp_path,
            {"t": time.time() - 60, "op": "landing-delete", "ns": NS, "name": "long-gone"},
        )
    finally:
        await tiny.parent.delete(ServiceAccount, "orphan", namespace="moonlander-minted")
    assert kinds(report) == {
        "parent/ServiceAccount/moonlander-minted/orphan": "credential-without-grant"
    }


async def test_a_sentinel_overwritten(tiny: Tiny, tmp_path: Path) -> None:
    entry = next(e for e in tiny.base if e["op"] == "sentinel")
    before = await tiny.child.get(Secret, "sentinel-0", namespace=NS)
    await tiny.child.patch(
        Secret, "sentinel-0", {"stringData": {"value": "overwritten"}}, namespace=NS
    )
    try:
        report = await check(tiny, tmp_path)
    finally:
        # Put back as it was (content and all), recorded anew for the other tests.
        restored = await tiny.child.patch(Secret, "sentinel-0", {"data": before.data}, namespace=NS)
        entry["rv"] = restored.metadata.resourceVersion
    assert kinds(report) == {f"{CHILD}/{NS}/sentinel-0": "lost"}


async def test_a_token_in_an_event(tiny: Tiny, tmp_path: Path) -> None:
    await tiny.parent.create(
        Event(
            metadata=ObjectMeta(name="leaky", namespace=NS),
            involvedObject=ObjectReference(kind="Landing", name="base", namespace=NS),
            reason="Leaky",
            message=f"the token is {tiny.token}",
            type="Warning",
        )
    )
    try:
        report = await check(tiny, tmp_path)
    finally:
        await tiny.parent.delete(Event, "leaky", namespace=NS)
    assert kinds(report) == {f"event/parent/{NS}/leaky": "leak"}


async def test_a_resource_bound_exceeded(tiny: Tiny, tmp_path: Path) -> None:
    report = await check(tiny, tmp_path, args=("--rss-limit-mb=1", "--conn-limit=0"))
    assert tiny.controller.proc is not None
    pid = tiny.controller.proc.pid
    assert kinds(report) == {f"tiny/{pid}/rss": "resources", f"tiny/{pid}/connections": "resources"}


async def test_a_landing_stuck_in_deletion(tiny: Tiny, tmp_path: Path) -> None:
    """Another finalizer holds a deleted Landing: the log says it is gone, it is not."""
    await tiny.parent.create(
        LandingResource.from_dict(
            {
                "metadata": {"name": "held", "namespace": NS, "finalizers": ["example.com/hold"]},
                "spec": {"kubeconfigSecretName": "no-such-source", "suspend": True},
            }
        )
    )
    await tiny.parent.delete(LandingResource, "held", namespace=NS)
    try:
        report = await check(
            tiny, tmp_path, {"t": time.time(), "op": "landing-delete", "ns": NS, "name": "held"}
        )
    finally:
        await tiny.parent.patch(
            LandingResource,
            "held",
            [{"op": "replace", "path": "/metadata/finalizers", "value": []}],
            namespace=NS,
            patch_type=PatchType.JSON,
        )
    assert kinds(report) == {f"Landing/{NS}/held": "stuck"}


async def test_an_orphaned_shard_lease(tiny: Tiny, tmp_path: Path) -> None:
    await tiny.parent.create(
        Lease(
            metadata=ObjectMeta(
                name="soak-shards-shard-gone",
                namespace="moonlander-system",
                labels={SHARD_GROUP_LABEL: "soak-shards"},
            ),
            spec=LeaseSpec(holderIdentity="somewhere_999999", leaseDurationSeconds=6),
        )
    )
    try:
        report = await check(tiny, tmp_path)
    finally:
        await tiny.parent.delete(Lease, "soak-shards-shard-gone", namespace="moonlander-system")
    assert kinds(report) == {"Lease/moonlander-system/soak-shards-shard-gone": "stuck"}


async def test_a_landing_that_never_converges(tiny: Tiny, tmp_path: Path) -> None:
    spec = {"kubeconfigSecretName": "no-such-source", "writeKubeconfigSecretName": "never"}
    await tiny.parent.create(landing(NS, "never", **spec))
    try:
        report = await check(
            tiny,
            tmp_path,
            {
                "t": time.time(),
                "op": "landing",
                "ns": NS,
                "name": "never",
                "flavour": "p2c",
                "spec": spec,
            },
        )
    finally:
        await tiny.parent.delete(LandingResource, "never", namespace=NS)
    assert kinds(report) == {f"Landing/{NS}/never": "convergence"}
    assert report["unconverged"] == [f"{NS}/never"]
