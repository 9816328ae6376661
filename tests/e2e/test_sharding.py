"""Sharded replicas: three controllers split the Landings, one is killed mid-burst.

Each replica runs `moonlander run --shards` in child-a (where the session's controller does
not run) as a ServiceAccount bound to exactly the shipped ClusterRole (role.yaml) plus the
Lease Role (leader-election-role.yaml). From the replicas' own logs (every reconcile's
start and end), the test proves that no Landing was reconciled by two replicas at once, that
the dead replica's Landings were taken up by the others within 20 s, and that none is left
unowned (every landed Secret, deleted afterwards, is restored)."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from moonlander import api
from moonlander.kube.leases import GROUP_LABEL

from .conftest import Env
from .harness import (
    ROOT,
    ControllerProcess,
    controller_kubeconfig,
    eventually,
    install_crd,
    landing,
    measure,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e

LEASE_GROUP = "moonlander-leader"  # the shard group: --leader-election-id's default

LEASE_ROLE = ROOT / "config" / "rbac" / "leader-election-role.yaml"
_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG moonlander\.controller\.loop: "
    r"(?P<key>\S+): (?P<what>reconciling|\S+ in [\d.]+s)$"
)


def _wall(ts: str) -> float:
    return dt.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def reconciles(log: str, killed_at: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Each key's reconcile intervals (start, end) in one replica's log; a reconcile still
    running when the replica was killed ends at the kill."""
    open_: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in log.splitlines():
        found = _LINE.match(line)
        if not found:
            continue
        at, key = _wall(found["ts"]), found["key"]
        if found["what"] == "reconciling":
            open_[key] = at
        elif key in open_:
            spans[key].append((open_.pop(key), at))
    for key, started in open_.items():
        spans[key].append((started, killed_at if killed_at is not None else time.time()))
    return spans


async def _lease_rights(client: AsyncClient, namespace: str) -> None:
    role = Role.from_dict(yaml.safe_load(LEASE_ROLE.read_text()))
    role.metadata.namespace = namespace
    await client.create(role)
    await client.create(
        RoleBinding(
            metadata=ObjectMeta(name="moonlander-leases", namespace=namespace),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name
            ),
            subjects=[
                Subject(kind="ServiceAccount", name="moonlander", namespace="moonlander-system")
            ],
        )
    )


async def test_three_replicas_split_the_work_and_survive_losing_one(
    env: Env, tmp_path: Path
) -> None:
    local = env.admin["child-a"]
    await install_crd(local)

    # The replicas start once the API server serves the kinds: their first lists would
    # otherwise fail and be retried with backoff, which the timings below would measure.
    async def discoverable() -> bool:
        http = local._client._client
        body = (await http.get(f"/apis/{api.GROUP}/{api.VERSION}")).json()
        names = {r["name"] for r in body.get("resources", [])}
        assert {"landings", "landingsets", "landingpolicies"} <= names, names
        return True

    await eventually(discoverable, timeout=30)
    identity = tmp_path / "controller-kubeconfig"
    cluster = env.plane["child-a"]
    identity.write_text(await controller_kubeconfig(local, cluster.url, cluster.ca_pem))
    identity.chmod(0o600)
    ns = f"shard-{int(time.time() * 1000) % 10**9}"
    await local.create(Namespace(metadata=ObjectMeta(name=ns)))
    await _lease_rights(local, ns)
    await local.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    replicas = []
    for i in range(3):
        workdir = tmp_path / f"r{i}"
        workdir.mkdir()
        replica = ControllerProcess(
            workdir,
            identity,
            env.parent_file,
            f"--namespace={ns}",
            "--shards",
            f"--leader-election-namespace={ns}",
        )
        replica.start()
        replicas.append(replica)
    try:
        for replica in replicas:
            replica.wait_started()  # /readyz includes the shard membership

        def spec(i: int) -> dict[str, str]:
            return {
                "kubeconfigSecretName": "src",
                "direction": "ChildToParent",
                "writeKubeconfigSecretName": f"out-{i}",
            }

        for i in range(60):
            await local.create(landing(ns, f"l{i}", **spec(i)))

        async def synced(count: int) -> bool:
            from moonlander.kube.resources import LandingResource

            ready = 0
            async for item in local.list(LandingResource, namespace=ns):
                for c in (item.get("status") or {}).get("conditions") or []:
                    ready += c["type"] == "Ready" and c["status"] == "True"
            assert ready >= count, ready
            return True

        await eventually(lambda: synced(20), timeout=60)
        victim = replicas[0]

        # A replica that has just joined takes up its keys only after the handoff (5 s), and
        # the others may land 20 before that: kill the victim once it has done some work.
        async def victim_worked() -> bool:
            assert reconciles(victim.log()), "the victim has reconciled nothing yet"
            return True

        await eventually(victim_worked, timeout=30, interval=0.2)
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        killed_at = time.time()
        for i in range(60, 90):
            await local.create(landing(ns, f"l{i}", **spec(i)))
        for i in range(90):
            await wait_reason(local, ns, f"l{i}", "Synced", timeout=60)
        measure("sharding: 90 Landings Synced after a replica was killed", time.time() - killed_at)

        # Nothing unowned: every landed Secret, deleted now, comes back.
        for i in range(90):
            await local.delete(Secret, f"out-{i}", namespace=ns)

        async def restored() -> bool:
            names = {s.metadata.name async for s in local.list(Secret, namespace=ns)}
            missing = {f"out-{i}" for i in range(90)} - names
            assert not missing, sorted(missing)
            return True

        started = time.monotonic()
        await eventually(restored, timeout=30)
        measure("sharding: 90 landed Secrets deleted -> all restored", time.monotonic() - started)

        # The dead replica's Landings are taken up by the others (after its Lease expires
        # and the handoff passes) with no event to prompt them.
        async def taken_up() -> bool:
            victims = set(reconciles(victim.log(), killed_at))
            survivors = [reconciles(r.log()) for r in replicas[1:]]
            late = [
                k
                for k in victims
                if not any(a >= killed_at for s in survivors for a, _ in s.get(k, ()))
            ]
            assert not late, sorted(late)
            return True

        await eventually(taken_up, timeout=30, interval=0.5)

        # The dead replica never deleted its Lease: the survivors do, once it has been
        # silent for reap_after (30 s), leaving one Lease per live replica.
        async def reaped() -> bool:
            holders = {
                lease.spec.holderIdentity
                async for lease in local.list(
                    Lease, namespace=ns, labels={GROUP_LABEL: LEASE_GROUP}
                )
                if lease.spec
            }
            assert len(holders) == 2, sorted(h or "" for h in holders)
            return True

        await eventually(reaped, timeout=60, interval=1)
        measure("sharding: replica killed -> its shard Lease deleted", time.time() - killed_at)
    finally:
        codes = [replica.stop() for replica in replicas]  # the killed one is already gone
    assert codes[1:] == [0, 0], [r.log_tail() for r in replicas[1:]]

    spans = [reconciles(victim.log(), killed_at)] + [reconciles(r.log()) for r in replicas[1:]]
    # Every replica did part of the work.
    assert all(spans_of for spans_of in spans), [len(s) for s in spans]
    # No Landing was ever reconciled by two replicas at once.
    for key in {k for s in spans for k in s}:
        intervals = sorted((a, b, i) for i, s in enumerate(spans) for a, b in s.get(key, ()))
        for (_, end, i), (start, _, j) in itertools.pairwise(intervals):
            assert i == j or start >= end, f"{key}: replicas {i} and {j} overlapped"
    # The dead replica's Landings were taken up by the others within 20 s.
    victims = set(spans[0])
    taken = []
    for key in victims:
        after = [a for s in spans[1:] for a, _ in s.get(key, ()) if a >= killed_at]
        assert after, f"{key} was never reconciled again after its replica died"
        taken.append(min(after) - killed_at)
    measure("sharding: replica killed -> its Landings reconciled by another", max(taken))
    assert max(taken) < 20, max(taken)
