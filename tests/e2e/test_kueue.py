"""Kueue v0.17.0 MultiKueue dispatches Jobs through the credentials Moonlander lands.

The parent is Kueue's manager cluster (Moonlander runs there too) and child-a its worker.
Kueue's manager (cmd/kueue, built from ``hack/consumers/kueue``) runs out of cluster against
each, as that cluster's admin (tests/e2e/kueue_consumer.py). One ChildToParent Landing mints,
in the worker, a ServiceAccount holding only MultiKueue's rights there (Kueue's docs create
such a ServiceAccount by hand) and writes into the manager's Kueue namespace both ways a
MultiKueueCluster can reach a worker:

- ``kubeconfig``: the landed kubeconfig Secret, named by ``spec.clusterSource.kubeConfig``;
- ``profile``: a ClusterProfile (``output.clusterProfile``) named by ``clusterProfileRef``,
  resolved by Kueue (feature gate ``MultiKueueClusterProfile``) through the secretreader
  credential plugin (built from cluster-inventory-api at the version Kueue requires), which
  reads the token Secret Moonlander wrote beside the profile with a Role of its own.

Each path has its own MultiKueueConfig, AdmissionCheck, ClusterQueue and LocalQueue. A Job
submitted to the manager is created in the worker; the operator withdraws the LandingPolicy
grant and both MultiKueueClusters turn inactive.

The worker has no kubelet: the Job object created in the worker by MultiKueue is the proof
(the issue's "runs in (is created in) the worker cluster").
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Secret

from moonlander.kube.resources import LandingPolicyResource
from moonlander_dev import clusters as devclusters
from moonlander_dev.consumers import consumer_dir

from . import kueue_consumer as kq
from .conftest import Env
from .harness import (
    PLANTED,
    decoded,
    eventually,
    landing,
    landing_policy,
    measure,
    secret_with,
    wait_reason,
)
from .test_integrations import install_crds

# The first test may build Kueue (minutes on two cores, once per machine; `make setup` does
# it ahead of time).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
ResourceFlavor = create_global_resource(GROUP, VERSION, "ResourceFlavor", "resourceflavors")
ClusterQueue = create_global_resource(GROUP, VERSION, "ClusterQueue", "clusterqueues")
AdmissionCheck = create_global_resource(GROUP, VERSION, "AdmissionCheck", "admissionchecks")
MultiKueueConfig = create_global_resource(GROUP, VERSION, "MultiKueueConfig", "multikueueconfigs")
MultiKueueCluster = create_global_resource(
    GROUP, VERSION, "MultiKueueCluster", "multikueueclusters"
)
LocalQueue = create_namespaced_resource(GROUP, VERSION, "LocalQueue", "localqueues")
Workload = create_namespaced_resource(GROUP, VERSION, "Workload", "workloads")
PROFILE = create_namespaced_resource(
    "multicluster.x-k8s.io", "v1alpha1", "ClusterProfile", "clusterprofiles"
)

WORKER = "child-a"
KUBECONFIG_PATH = "kubeconfig"  # the access path through the landed kubeconfig Secret
PROFILE_PATH = "profile"  # the access path through the ClusterProfile and secretreader
LANDED_SECRET = "worker-kubeconfig"
MINT_NAMESPACE = "moonlander-minted"
ORIGIN_LABEL = "kueue.x-k8s.io/multikueue-origin"
PREBUILT_LABEL = "kueue.x-k8s.io/prebuilt-workload-name"


@dataclass
class World:
    env: Env
    manager: kq.KueueProcess  # in the parent
    worker: kq.KueueProcess  # in child-a
    kueue_ns: str  # Kueue's namespace, in both clusters
    tenant: str  # the parent namespace holding the source Secret and the Landing
    jobs_ns: str  # where Jobs are submitted (manager) and created (worker)
    policy: str
    suffix: str

    @property
    def parent(self) -> AsyncClient:
        return self.env.local

    @property
    def child(self) -> AsyncClient:
        return self.env.admin[WORKER]

    def alive(self) -> None:
        self.manager.check_alive()
        self.worker.check_alive()

    def cluster_name(self, path: str) -> str:
        return f"worker-{path}-{self.suffix}"

    async def active(self, path: str) -> dict[str, Any] | None:
        """The MultiKueueCluster's Active condition."""
        self.alive()
        obj = await self.parent.get(MultiKueueCluster, self.cluster_name(path))
        for cond in (obj.status or {}).get("conditions", []):
            if cond["type"] == "Active":
                return dict(cond)
        return None

    async def wait_active(self, path: str, status: str, timeout: float = 60) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            cond = await self.active(path)
            assert cond is not None and cond["status"] == status, cond
            return cond

        return await eventually(
            probe, timeout=timeout, interval=0.1, what=f"{self.cluster_name(path)} Active={status}"
        )

    async def worker_job(self, name: str) -> Job | None:
        self.alive()
        try:
            return await self.child.get(Job, name, namespace=self.jobs_ns)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise


async def _create_namespace(client: AsyncClient, name: str) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name=name)))


async def _queues(w: World, path: str) -> None:
    """The manager's side of one access path: its MultiKueueCluster, MultiKueueConfig,
    AdmissionCheck, ClusterQueue and LocalQueue (named after the path); the worker's
    matching LocalQueue."""
    name = f"{path}-{w.suffix}"
    cluster = w.cluster_name(path)
    source: dict[str, Any] = (
        {"kubeConfig": {"locationType": "Secret", "location": LANDED_SECRET}}
        if path == KUBECONFIG_PATH
        else {"clusterProfileRef": {"name": cluster}}
    )
    await w.parent.create(
        MultiKueueCluster.from_dict(
            {"metadata": {"name": cluster}, "spec": {"clusterSource": source}}
        )
    )
    await w.parent.create(
        MultiKueueConfig.from_dict({"metadata": {"name": name}, "spec": {"clusters": [cluster]}})
    )
    await w.parent.create(
        AdmissionCheck.from_dict(
            {
                "metadata": {"name": name},
                "spec": {
                    "controllerName": kq.MULTIKUEUE_CONTROLLER,
                    "parameters": {
                        "apiGroup": GROUP,
                        "kind": "MultiKueueConfig",
                        "name": name,
                    },
                },
            }
        )
    )
    await w.parent.create(ClusterQueue.from_dict(_cluster_queue(name, w.suffix, check=name)))
    await w.parent.create(_local_queue(w.jobs_ns, name, name))
    await w.child.create(_local_queue(w.jobs_ns, name, f"worker-{w.suffix}"))


def _cluster_queue(name: str, flavor: str, check: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "memory"],
                "flavors": [
                    {
                        "name": flavor,
                        "resources": [
                            {"name": "cpu", "nominalQuota": "4"},
                            {"name": "memory", "nominalQuota": "4Gi"},
                        ],
                    }
                ],
            }
        ],
    }
    if check is not None:
        spec["admissionChecksStrategy"] = {"admissionChecks": [{"name": check}]}
    return {"metadata": {"name": name}, "spec": spec}


def _local_queue(namespace: str, name: str, cluster_queue: str) -> Any:
    return LocalQueue.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue},
        }
    )


def _policy(name: str, tenant: str, kueue_ns: str) -> Any:
    """The operator's grant: the tenant's Landings may write into Kueue's namespace (a
    Secret, a ClusterProfile) and mint the MultiKueue identity (cluster-wide inline rules)
    in the worker."""
    return landing_policy(
        name,
        namespaces={"names": [tenant]},
        targetNamespaces=[kueue_ns],
        outputs={"clusterProfiles": {"namespaces": [kueue_ns]}},
        sourceNetworks=["127.0.0.0/8", "::1/128"],
        mint={
            "inlineRules": True,
            "clusterWide": True,
            "serviceAccountNamespaces": [MINT_NAMESPACE],
            "maxExpirationSeconds": 86400,
        },
    )


def _landing(w: World) -> Any:
    return landing(
        w.tenant,
        "kueue-worker",
        kubeconfigSecretName="worker-admin-kubeconfig",
        direction="ChildToParent",
        targetNamespace=w.kueue_ns,
        writeKubeconfigSecretName=LANDED_SECRET,
        # The ClusterProfile Kueue's clusterProfileRef names, and the token Secret of the
        # same name the secretreader plugin reads.
        output={"clusterProfile": {"name": w.cluster_name(PROFILE_PATH)}},
        serviceAccount={
            "name": f"multikueue-{w.suffix}",
            "namespace": MINT_NAMESPACE,
            "rules": kq.WORKER_RULES,
            "expirationSeconds": 3600,
        },
    )


async def _start(
    w_env: Env, tmp: Path, suffix: str, kueue_ns: str, binaries: Path
) -> tuple[kq.KueueProcess, kq.KueueProcess]:
    """Kueue in the worker and in the manager (with the secretreader plugin)."""
    parent, child = w_env.local, w_env.admin[WORKER]
    crds, version = await asyncio.to_thread(kq.kueue_crds, kueue_ns)
    print(f"\nkueue {version}: {len(crds)} CRDs")
    from .inventory import crd as cluster_profile_crd

    await install_crds(parent, [*crds, await asyncio.to_thread(cluster_profile_crd)])
    await install_crds(child, crds)

    def kubeconfig(cluster: str, where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{cluster}.kubeconfig"
        path.write_text(w_env.kubeconfig_text(cluster))
        path.chmod(0o600)
        return path

    worker = kq.KueueProcess(
        binaries / "kueue",
        tmp / "worker",
        kubeconfig(WORKER, tmp / "worker"),
        kueue_ns,
        role="worker",
    )
    plugin_kubeconfig = tmp / "manager" / "secretreader.kubeconfig"
    plugin_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    plane = w_env.plane["parent"]
    plugin_kubeconfig.write_text(
        await kq.secretreader_kubeconfig(parent, plane.url, plane.ca_pem, kueue_ns)
    )
    plugin_kubeconfig.chmod(0o600)
    manager = kq.KueueProcess(
        binaries / "kueue",
        tmp / "manager",
        kubeconfig("parent", tmp / "manager"),
        kueue_ns,
        role="manager",
        credential_plugin=binaries / "secretreader-plugin",
        plugin_kubeconfig=plugin_kubeconfig,
    )
    return manager, worker


@pytest.fixture(scope="module")
async def world(env: Env, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    try:
        binaries = await asyncio.to_thread(consumer_dir, "kueue")
    except devclusters.ControlPlaneError as err:
        pytest.fail(f"Kueue did not build: {err}", pytrace=False)
    parent, child = env.local, env.admin[WORKER]
    suffix = secrets.token_hex(3)
    kueue_ns, tenant, jobs_ns = f"kueue-{suffix}", f"kq-tenant-{suffix}", f"kq-jobs-{suffix}"
    for client in (parent, child):
        await _create_namespace(client, kueue_ns)
        await _create_namespace(client, jobs_ns)
    await _create_namespace(parent, tenant)

    manager, worker = await _start(
        env, tmp_path_factory.mktemp("kueue"), suffix, kueue_ns, binaries
    )
    try:
        started = time.monotonic()
        await asyncio.gather(worker.run(child), manager.run(parent))
        print(f"kueue manager and worker ready in {time.monotonic() - started:.1f}s")
        w = World(env, manager, worker, kueue_ns, tenant, jobs_ns, f"kueue-{suffix}", suffix)

        # The worker: one ClusterQueue for whatever the manager dispatches.
        await child.create(ResourceFlavor.from_dict({"metadata": {"name": suffix}}))
        await child.create(ClusterQueue.from_dict(_cluster_queue(f"worker-{suffix}", suffix)))
        await parent.create(ResourceFlavor.from_dict({"metadata": {"name": suffix}}))

        # Moonlander lands the worker's access into the manager's Kueue namespace.
        await parent.create(
            secret_with(tenant, "worker-admin-kubeconfig", {"value": env.kubeconfig_text(WORKER)})
        )
        await parent.create(_policy(w.policy, tenant, kueue_ns))
        await parent.create(_landing(w))
        await wait_reason(parent, tenant, "kueue-worker", "Synced")
        landed = await parent.get(Secret, LANDED_SECRET, namespace=kueue_ns)
        token = yaml.safe_load(decoded(landed, "kubeconfig"))["users"][0]["user"]["token"]
        PLANTED.append(token)

        await _queues(w, KUBECONFIG_PATH)
        await _queues(w, PROFILE_PATH)
        yield w
    finally:
        for proc in (manager, worker):
            code = proc.stop()
            print(f"\n{proc.name} exited with {code}; log: {proc.log_path}")


async def _check_state(w: World, job: str, check: str) -> dict[str, Any]:
    """The state of admission check ``check`` on the manager's Workload for ``job``."""
    w.alive()
    local = await w.parent.get(Job, job, namespace=w.jobs_ns)
    owned = [
        x
        async for x in w.parent.list(Workload, namespace=w.jobs_ns)
        if any(o.uid == local.metadata.uid for o in x.metadata.ownerReferences or [])
    ]
    assert len(owned) == 1, owned
    states = {s["name"]: s for s in (owned[0].status or {}).get("admissionChecks", [])}
    assert check in states, states
    return dict(states[check])


async def _dispatch(w: World, path: str) -> float:
    """Submits a Job to the path's LocalQueue in the manager; returns the seconds until the
    Job exists in the worker, created there by MultiKueue."""
    name = f"job-{path}"
    queue = f"{path}-{w.suffix}"
    started = time.monotonic()
    await w.parent.create(Job.from_dict(kq.job(w.jobs_ns, name, queue)))
    created = await eventually(
        lambda: w.worker_job(name), timeout=90, interval=0.05, what=f"{name} in the worker"
    )
    elapsed = time.monotonic() - started
    labels = created.metadata.labels or {}
    assert labels.get(ORIGIN_LABEL), labels  # MultiKueue's copy, not ours
    assert labels.get(PREBUILT_LABEL), labels
    assert created.spec.managedBy is None  # handed to the worker's Job controller

    async def ready() -> bool:
        state = await _check_state(w, name, queue)
        assert state["state"] == "Ready", state
        assert w.cluster_name(path) in state.get("message", ""), state
        return True

    await eventually(ready, timeout=30, what=f"{name}'s MultiKueue check Ready")
    return elapsed


async def test_job_runs_in_worker_through_landed_kubeconfig(world: World) -> None:
    """The MultiKueueCluster reads the kubeconfig Secret Moonlander landed (a minted
    ServiceAccount's token for the worker): Active, and a Job submitted to the manager is
    created in the worker."""
    cond = await world.wait_active(KUBECONFIG_PATH, "True")
    assert cond["reason"] == "Active", cond
    elapsed = await _dispatch(world, KUBECONFIG_PATH)
    measure("kueue: Job submitted->created in worker (landed kubeconfig)", elapsed)
    print(f"\nJob submitted -> created in the worker (landed kubeconfig): {elapsed:.2f}s")


async def test_job_runs_in_worker_through_cluster_profile(world: World) -> None:
    """The MultiKueueCluster's clusterProfileRef names the ClusterProfile Moonlander wrote in
    Kueue's namespace; Kueue execs the secretreader plugin (built from the module), which
    reads the token Secret Moonlander wrote beside it: Active, and a Job is created in the
    worker."""
    w = world
    profile = await w.parent.get(PROFILE, w.cluster_name(PROFILE_PATH), namespace=w.kueue_ns)
    assert profile.spec["clusterManager"]["name"] == "moonlander", profile.spec
    providers = {p["name"] for p in profile.status.get("accessProviders", [])}
    assert kq.SECRETREADER in providers, profile.status
    cond = await w.wait_active(PROFILE_PATH, "True")
    assert cond["reason"] == "Active", cond
    elapsed = await _dispatch(w, PROFILE_PATH)
    measure("kueue: Job submitted->created in worker (ClusterProfile)", elapsed)
    print(f"\nJob submitted -> created in the worker (ClusterProfile): {elapsed:.2f}s")


async def test_withdrawn_grant_makes_the_clusters_inactive(world: World) -> None:
    """The operator withdraws the LandingPolicy: Moonlander revokes what it landed (the
    kubeconfig Secret, the ClusterProfile and its token Secret, the minted identity in the
    worker) and both MultiKueueClusters are no longer Active; a new Job is not dispatched."""
    w = world
    await asyncio.gather(
        w.wait_active(KUBECONFIG_PATH, "True"), w.wait_active(PROFILE_PATH, "True")
    )
    started = time.monotonic()
    await w.parent.delete(LandingPolicyResource, w.policy)

    async def inactive(path: str) -> tuple[dict[str, Any], float]:
        cond = await w.wait_active(path, "False")
        return cond, time.monotonic() - started

    (by_secret, t_secret), (by_profile, t_profile) = await asyncio.gather(
        inactive(KUBECONFIG_PATH), inactive(PROFILE_PATH)
    )
    measure("kueue: grant withdrawn->MultiKueueCluster inactive (landed kubeconfig)", t_secret)
    measure("kueue: grant withdrawn->MultiKueueCluster inactive (ClusterProfile)", t_profile)
    print(
        f"\ngrant withdrawn -> MultiKueueCluster inactive: landed kubeconfig {t_secret:.2f}s"
        f" ({by_secret['reason']}), ClusterProfile {t_profile:.2f}s ({by_profile['reason']})"
    )
    assert by_secret["reason"] == "BadKubeConfig", by_secret
    assert by_profile["reason"] == "BadClusterProfile", by_profile
    await wait_reason(w.parent, w.tenant, "kueue-worker", "NotPermitted")
    for kind, name in (
        (Secret, LANDED_SECRET),
        (Secret, w.cluster_name(PROFILE_PATH)),
        (PROFILE, w.cluster_name(PROFILE_PATH)),
    ):
        with pytest.raises(ApiError) as gone:
            await w.parent.get(kind, name, namespace=w.kueue_ns)
        assert gone.value.status.code == 404, (kind, name)

    # Kueue still takes Jobs, but has no cluster to send them to.
    for path in (KUBECONFIG_PATH, PROFILE_PATH):
        queue = f"{path}-{w.suffix}"
        await w.parent.create(Job.from_dict(kq.job(w.jobs_ns, f"after-{path}", queue)))
        await eventually(
            lambda: _check_state(w, f"after-{path}", queue),  # noqa: B023 - awaited here
            timeout=30,
            what=f"after-{path}'s Workload",
        )
    await asyncio.sleep(5)
    for path in (KUBECONFIG_PATH, PROFILE_PATH):
        state = await _check_state(w, f"after-{path}", f"{path}-{w.suffix}")
        assert state["state"] == "Pending", state
        assert await w.worker_job(f"after-{path}") is None
