"""The fleet cases of ``bench/run.py`` (issue 15): a LandingSet stamping 1,000 Landings at
once, and sharded replicas against one replica.

``landingset``: a LandingSet over ``kubernetes-{{tenant}}-admin-kubeconfig`` Secrets exists
in a namespace granted ``parentCredential``; 1,000 tenant Secrets are created at once (32 at
a time, as the other cases create Landings) and the time until all 1,000 generated Landings
are Ready is compared with 1,000 hand-written Landings of the same spec, over the same kind of
per-tenant Secrets, with a fresh controller each, in the same run. Then one more tenant
Secret: until its Landing is Ready.

``shards``: N Landings over M children with one replica (the default deployment, no
``--shards``), then with three ``--shards`` replicas, each in a namespace of its own: the
all-Ready time and the CPU seconds the controllers and the API servers + etcd spent on it.
Then one of the three is SIGKILLed; until its Landings are reconciled by the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common import (
    b64,
    bounded,
    cpu_seconds,
    load_average,
    mark,
    pct,
    proc_stats,
)
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.controller.sharding import owner
from moonlander.kube.resources import LandingResource, LandingSetResource
from moonlander_dev.clusters import free_port

if TYPE_CHECKING:
    from run import Bench

SET_TENANTS, SET_CHILDREN = 1000, 3
SET_RATIO, SET_ONE_MORE_S = 1.5, 1.0
SHARD_REPLICAS = 3
SHARD_TAKEOVER_S = 20.0
SHARD_SAMPLE = 200  # landed Secrets of the killed replica's Landings deleted at the kill


@dataclass
class LandingSetCase:
    tenants: int = SET_TENANTS
    children: int = SET_CHILDREN
    hand_written_all_ready_s: float = 0.0
    hand_written_p50_s: float = 0.0
    hand_written_p99_s: float = 0.0
    hand_written_cpu_s: float = 0.0
    generated_all_ready_s: float = 0.0
    generated_p50_s: float = 0.0  # from its tenant Secret's create to Ready
    generated_p99_s: float = 0.0
    generated_cpu_s: float = 0.0
    ratio: float = 0.0
    one_more_s: float = 0.0  # one more tenant Secret -> its Landing Ready
    set_status: dict[str, Any] = field(default_factory=dict)
    hand_written_peak_rss_mb: float = 0.0
    generated_peak_rss_mb: float = 0.0
    load_average: str = ""
    targets: dict[str, bool] = field(default_factory=dict)


@dataclass
class ShardRun:
    replicas: int
    all_ready_s: float = 0.0
    create_phase_s: float = 0.0
    ready_p50_s: float = 0.0
    ready_p99_s: float = 0.0
    controller_cpu_s: float = 0.0  # all replicas, first create -> all Ready
    controller_cpu_by_replica: list[float] = field(default_factory=list)
    plane_cpu_s: float = 0.0  # every kube-apiserver and etcd, same span
    bench_cpu_s: float = 0.0  # this process (creates the Landings, watches them), same span
    peak_rss_mb: list[float] = field(default_factory=list)
    load_average: str = ""
    ready: int = 0  # Landings Ready when the burst ended (all, or at its timeout)
    exit_codes: list[int | None] = field(default_factory=list)  # replicas that ended early
    # Landings with no status at all at the timeout, by the replica that owns them
    unreconciled: dict[str, int] = field(default_factory=dict)


@dataclass
class ShardsCase:
    landings: int
    children: int
    runs: list[ShardRun] = field(default_factory=list)
    speed_up: float = 0.0  # 1-replica all Ready / 3-replica all Ready
    members: int = 0  # Leases seen before the kill
    victim_landings: int = 0  # Landings the killed replica owned
    sample: int = 0
    takeover_p50_s: float = 0.0  # kill -> sample's landed Secret restored by a survivor
    takeover_max_s: float = 0.0
    not_restored: list[str] = field(default_factory=list)
    targets: dict[str, bool] = field(default_factory=dict)


# --- LandingSet ----------------------------------------------------------------------


def _tenant_secret(bench: Bench, ns: str, tenant: str, child: str) -> Secret:
    return Secret(
        metadata=ObjectMeta(name=f"kubernetes-{tenant}-admin-kubeconfig", namespace=ns),
        data={"value": b64(bench.plane.clusters[child].kubeconfig.read_text())},
    )


def _landing_spec(tenant: str) -> dict[str, Any]:
    """What the set's template gives each tenant (ParentToChild, the parent's kubeconfig
    landed in the tenant's cluster), written out as a hand-written Landing would be."""
    return {
        "kubeconfigSecretName": f"kubernetes-{tenant}-admin-kubeconfig",
        "writeKubeconfigSecretName": f"{tenant}-parent-kubeconfig",
    }


async def run_landingset(bench: Bench, count: int = SET_TENANTS) -> LandingSetCase:
    case = LandingSetCase(tenants=count, load_average=load_average())
    children = [f"child-{i}" for i in range(1, SET_CHILDREN + 1)]
    tenants = [f"t{i}" for i in range(count)]

    # Hand-written: the tenant Secrets exist; 1,000 Landings are created at once.
    ns = "set-hand-written"
    await bench.namespace(ns)
    await bench.grant_parent_credential(ns)
    await bounded(
        [
            (lambda i=i, t=t: bench.local.create(_tenant_secret(bench, ns, t, children[i % 3])))
            for i, t in enumerate(tenants)
        ],
        32,
    )
    async with _controller(bench, ns) as (controller, _port):
        cpu = proc_stats(controller.pid)[1]
        burst = await _timed(
            bench,
            ns,
            [
                (
                    t,
                    lambda t=t: bench.local.create(
                        LandingResource.from_dict(
                            {"metadata": {"name": t, "namespace": ns}, "spec": _landing_spec(t)}
                        )
                    ),
                )
                for t in tenants
            ],
        )
        case.hand_written_cpu_s = proc_stats(controller.pid)[1] - cpu
        case.hand_written_all_ready_s, case.hand_written_p50_s, case.hand_written_p99_s = burst
        case.hand_written_peak_rss_mb = proc_stats(controller.pid)[0]
    print(f"  hand-written: all Ready {case.hand_written_all_ready_s:.2f}s", flush=True)

    # Generated: the set exists; 1,000 tenant Secrets are created at once.
    ns = "set-generated"
    await bench.namespace(ns)
    await bench.grant_parent_credential(ns)
    await bench.local.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "tenants", "namespace": ns},
                "spec": {
                    "generators": [
                        {"secrets": {"namePattern": "kubernetes-{{tenant}}-admin-kubeconfig"}}
                    ],
                    "template": {
                        "metadata": {"name": "{{tenant}}"},
                        "spec": {"writeKubeconfigSecretName": "{{tenant}}-parent-kubeconfig"},
                    },
                },
            }
        )
    )
    async with _controller(bench, ns) as (controller, _port):
        await asyncio.sleep(1.0)  # the set is listed; it has nothing to stamp yet
        cpu = proc_stats(controller.pid)[1]
        burst = await _timed(
            bench,
            ns,
            [
                (
                    t,
                    lambda i=i, t=t: bench.local.create(
                        _tenant_secret(bench, ns, t, children[i % 3])
                    ),
                )
                for i, t in enumerate(tenants)
            ],
        )
        case.generated_cpu_s = proc_stats(controller.pid)[1] - cpu
        case.generated_all_ready_s, case.generated_p50_s, case.generated_p99_s = burst
        print(f"  generated: all Ready {case.generated_all_ready_s:.2f}s", flush=True)
        await asyncio.sleep(2.0)
        # One more tenant.
        more = f"t{count}"
        case.one_more_s = (
            await _timed(
                bench,
                ns,
                [(more, lambda: bench.local.create(_tenant_secret(bench, ns, more, children[0])))],
            )
        )[0]
        await asyncio.sleep(1.0)
        body = (await bench.local.get(LandingSetResource, "tenants", namespace=ns)).to_dict()
        status = dict(body.get("status") or {})
        case.set_status = {k: v for k, v in status.items() if k != "conditions"}
        case.generated_peak_rss_mb = proc_stats(controller.pid)[0]
    case.ratio = case.generated_all_ready_s / case.hand_written_all_ready_s
    case.targets = {
        f"{count} generated all Ready <= {SET_RATIO}x hand-written": case.ratio <= SET_RATIO,
        f"one more tenant Ready < {SET_ONE_MORE_S:.0f} s": case.one_more_s < SET_ONE_MORE_S,
    }
    return case


@contextlib.asynccontextmanager
async def _controller(bench: Bench, ns: str, *extra: str, log_name: str | None = None) -> Any:
    parent_file = bench.workdir / f"parent-{log_name or ns}"
    parent_file.write_text(bench.plane.clusters["parent"].kubeconfig.read_text())
    port = free_port()
    controller = bench.start_controller([ns], parent_file, port, *extra, log_name=log_name)
    try:
        await bench.wait_ready_endpoint(port)
        yield controller, port
    finally:
        _stop(controller)


def _stop(controller: subprocess.Popen[bytes]) -> None:
    if controller.poll() is None:
        controller.terminate()
    controller.wait(30)


async def _timed(
    bench: Bench, ns: str, creates: list[tuple[str, Any]]
) -> tuple[float, float, float]:
    """Runs the creates (32 at a time); each names the Landing that must become Ready.
    (all Ready from the first create, p50, p99 from each create call returning.)"""
    ready_at: dict[str, float] = {}
    created_at: dict[str, float] = {}
    watcher = asyncio.create_task(bench._watch_ready(ns, ready_at))
    await asyncio.sleep(0.2)
    started = time.monotonic()

    def call(name: str, create: Any) -> Any:
        async def one() -> None:
            await create()
            created_at[name] = time.monotonic()

        return one

    await bounded([call(name, create) for name, create in creates], 32)
    names = {name for name, _ in creates}
    while not names <= ready_at.keys():
        await asyncio.sleep(0.02)
    watcher.cancel()
    lat = [ready_at[k] - created_at[k] for k in names]
    return max(ready_at[k] for k in names) - started, pct(lat, 0.5), pct(lat, 0.99)


def landingset_table(case: LandingSetCase) -> str:
    rows = [
        ("LandingSet", "hand-written", "LandingSet"),
        (
            f"{case.tenants} Landings over {case.children} children all Ready (s)",
            f"{case.hand_written_all_ready_s:.2f}",
            f"{case.generated_all_ready_s:.2f}",
        ),
        (
            "create->Ready p50 / p99 (s)",
            f"{case.hand_written_p50_s:.3f} / {case.hand_written_p99_s:.3f}",
            f"{case.generated_p50_s:.3f} / {case.generated_p99_s:.3f}",
        ),
        ("ratio", "", f"{case.ratio:.2f}x"),
        (
            "controller CPU s (burst)",
            f"{case.hand_written_cpu_s:.1f}",
            f"{case.generated_cpu_s:.1f}",
        ),
        (
            "peak RSS (MB)",
            f"{case.hand_written_peak_rss_mb:.0f}",
            f"{case.generated_peak_rss_mb:.0f}",
        ),
        ("one more tenant -> Ready (s)", "", f"{case.one_more_s:.3f}"),
        ("load average at start", "", case.load_average),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>20}  {c:>20}" for a, b, c in rows]
    lines.append(f"  set status: {case.set_status}")
    lines += [f"  {'met   ' if met else 'MISSED'}  {t}" for t, met in case.targets.items()]
    return "\n".join(lines)


# --- Sharding ------------------------------------------------------------------------


async def run_shards(bench: Bench, n: int, m: int) -> ShardsCase:
    case = ShardsCase(landings=n, children=m)
    children = [f"child-{i}" for i in range(1, m + 1)]
    for replicas in (1, SHARD_REPLICAS):
        print(f"  {replicas} replica(s) ...", flush=True)
        case.runs.append(await _shard_run(bench, case, replicas, children))
    one, three = case.runs
    case.speed_up = one.all_ready_s / three.all_ready_s  # nan unless both were all Ready
    case.targets = {
        f"all {case.landings} Ready with {SHARD_REPLICAS} replicas": three.ready == case.landings,
        f"killed replica's Landings reconciled by the others within {SHARD_TAKEOVER_S:.0f} s": (
            case.sample > 0 and not case.not_restored and case.takeover_max_s <= SHARD_TAKEOVER_S
        ),
    }
    return case


async def _shard_run(
    bench: Bench, case: ShardsCase, replicas: int, children: list[str]
) -> ShardRun:
    run = ShardRun(replicas=replicas, load_average=load_average())
    n = case.landings
    ns = f"shard{replicas}-{n}-{case.children}"
    await bench.namespace(ns)
    await bench.grant_parent_credential(ns)
    await bench.child_sources(ns, children)
    parent_file = bench.workdir / f"parent-{ns}"
    parent_file.write_text(bench.plane.clusters["parent"].kubeconfig.read_text())
    extra = ("--shards", f"--leader-election-namespace={ns}") if replicas > 1 else ()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for r in range(replicas):
            ports.append(free_port())
            procs.append(
                bench.start_controller([ns], parent_file, ports[-1], *extra, log_name=f"{ns}-r{r}")
            )
        for port in ports:
            await bench.wait_ready_endpoint(port)  # with --shards: membership included
        if replicas > 1:
            await asyncio.sleep(6.0)  # every replica has seen the others and the handoff passed
        plane_pids = [p.popen.pid for p in bench.plane.processes]
        ctl_before = [cpu_seconds(p.pid) for p in procs]
        plane_before = sum(cpu_seconds(pid) for pid in plane_pids)
        bench_before = cpu_seconds(os.getpid())
        # The 3-replica burst gives up at twice the 1-replica time plus a minute.
        timeout = 2 * case.runs[0].all_ready_s + 60 if case.runs else 600.0
        burst = await bench._burst(ns, n, children, timeout=timeout)
        run.bench_cpu_s = cpu_seconds(os.getpid()) - bench_before
        run.controller_cpu_by_replica = [
            cpu_seconds(p.pid) - b for p, b in zip(procs, ctl_before, strict=True)
        ]
        run.controller_cpu_s = sum(run.controller_cpu_by_replica)
        run.plane_cpu_s = sum(cpu_seconds(pid) for pid in plane_pids) - plane_before
        run.all_ready_s, run.create_phase_s = burst.all_ready_s, burst.create_phase_s
        run.ready_p50_s, run.ready_p99_s = burst.p50_s, burst.p99_s
        run.exit_codes = [p.poll() for p in procs]  # None: still running
        run.peak_rss_mb = [proc_stats(p.pid)[0] if p.poll() is None else 0.0 for p in procs]
        run.ready = burst.ready
        print(
            f"    all Ready {run.all_ready_s:.2f}s ({burst.ready} of {n}), exit codes {run.exit_codes}",
            flush=True,
        )
        if burst.ready < n:
            run.unreconciled = await _unreconciled(bench, ns, procs)
            print(f"    never reconciled, by owner: {run.unreconciled}", flush=True)
        if replicas > 1:
            await _kill_one(bench, case, ns, children, procs)
    finally:
        for p in procs:
            _stop(p)
    # What this run landed leaves the children, so that the next run's drift watches
    # (which list every managed Secret of a child) do not start with more to list.
    for child in children:
        await bench.admin[child].deletecollection(Secret, namespace=ns)
    return run


async def _unreconciled(
    bench: Bench, ns: str, procs: list[subprocess.Popen[bytes]]
) -> dict[str, int]:
    """Landings that have no status at all, counted by the replica that owns them."""
    host = socket.gethostname()
    members = sorted(f"{host}_{p.pid}" for p in procs)
    counts: dict[str, int] = {}
    async for landing in bench.local.list(LandingResource, namespace=ns):
        if not (landing.status or {}).get("conditions"):
            who = owner(f"{ns}/{landing.metadata.name}", members) or "nobody"
            counts[who] = counts.get(who, 0) + 1
    return counts


async def _kill_one(
    bench: Bench,
    case: ShardsCase,
    ns: str,
    children: list[str],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    """SIGKILL one replica, and at once delete the landed Secrets of a sample of its
    Landings: a Landing's Secret comes back only when a live replica reconciles it, which
    the survivors do for the dead replica's Landings once its Lease has expired (6 s), they
    have seen it (1 s poll) and the handoff has passed (5 s). Timed per Landing: kill ->
    its Secret created again in its child."""
    from lightkube.resources.coordination_v1 import Lease

    host = socket.gethostname()
    members = sorted(f"{host}_{p.pid}" for p in procs)
    holders = {
        lease.spec.holderIdentity
        async for lease in bench.local.list(Lease, namespace=ns)
        if lease.spec and lease.spec.holderIdentity
    }
    case.members = len(holders)
    if holders != set(members):
        print(f"    Leases {sorted(holders)} are not the replicas {members}", flush=True)
    victim = procs[0]
    victim_id = f"{host}_{victim.pid}"
    owned = [i for i in range(case.landings) if owner(f"{ns}/ld-{i}", members) == victim_id]
    case.victim_landings = len(owned)
    landed = set()
    for child in children:
        async for s in bench.admin[child].list(
            Secret, namespace=ns, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
        ):
            landed.add(s.metadata.name)
    owned = [i for i in owned if f"lk-{i}" in landed]  # those that have landed
    step = max(1, len(owned) // SHARD_SAMPLE)
    sample = owned[::step][:SHARD_SAMPLE]
    case.sample = len(sample)
    wanted = {f"lk-{i}": children[i % len(children)] for i in sample}
    restored: dict[str, float] = {}
    killed_at = 0.0
    deleted: set[str] = set()

    async def watch(child: str) -> None:
        async for op, s in bench.admin[child].watch(
            Secret, namespace=ns, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
        ):
            name = s.metadata.name
            if op == "ADDED" and name in deleted and name in wanted:
                restored.setdefault(name, time.monotonic() - killed_at)

    watchers = [asyncio.create_task(watch(c)) for c in children]
    await asyncio.sleep(1.0)
    mark(f"SIGKILL replica {victim.pid}")
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()

    def delete(name: str, child: str) -> Any:
        async def call() -> None:
            try:
                await bench.admin[child].delete(Secret, name, namespace=ns)
            except ApiError as err:
                if err.status.code != 404:
                    raise
                return
            deleted.add(name)

        return call

    try:
        await bounded([delete(name, child) for name, child in wanted.items()], 16)
        deadline = killed_at + 3 * SHARD_TAKEOVER_S
        while len(restored) < len(deleted) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        for w in watchers:
            w.cancel()
    case.sample = len(deleted)
    lat = list(restored.values())
    case.takeover_p50_s = pct(lat, 0.5) if lat else 0.0
    case.takeover_max_s = max(lat, default=0.0)
    case.not_restored = sorted(deleted - set(restored))


def _busy(run: ShardRun) -> float:
    return (run.controller_cpu_s + run.plane_cpu_s + run.bench_cpu_s) / run.all_ready_s


def shards_table(case: ShardsCase) -> str:
    one, three = case.runs
    rows = [
        (f"Sharding: {case.landings} x {case.children}", "1 replica", f"{three.replicas} --shards"),
        ("all Ready (s)", f"{one.all_ready_s:.2f}", f"{three.all_ready_s:.2f}"),
        ("Ready at the end", f"{one.ready}", f"{three.ready}"),
        ("speed-up", "", f"{case.speed_up:.2f}x"),
        (
            "create->Ready p50 / p99 (s)",
            f"{one.ready_p50_s:.2f} / {one.ready_p99_s:.2f}",
            f"{three.ready_p50_s:.2f} / {three.ready_p99_s:.2f}",
        ),
        ("create phase (s)", f"{one.create_phase_s:.2f}", f"{three.create_phase_s:.2f}"),
        (
            "controller CPU s (all replicas)",
            f"{one.controller_cpu_s:.1f}",
            f"{three.controller_cpu_s:.1f}",
        ),
        (
            "  per replica",
            "",
            " / ".join(f"{x:.1f}" for x in three.controller_cpu_by_replica),
        ),
        ("API servers + etcd CPU s", f"{one.plane_cpu_s:.1f}", f"{three.plane_cpu_s:.1f}"),
        ("benchmark process CPU s", f"{one.bench_cpu_s:.1f}", f"{three.bench_cpu_s:.1f}"),
        (
            "cores busy (all three / all Ready)",
            f"{_busy(one):.2f}",
            f"{_busy(three):.2f}",
        ),
        (
            "peak RSS per replica (MB)",
            " / ".join(f"{x:.0f}" for x in one.peak_rss_mb),
            " / ".join(f"{x:.0f}" for x in three.peak_rss_mb),
        ),
        ("load average at start", one.load_average, three.load_average),
        (
            "killed replica's Landings",
            "",
            f"{case.victim_landings} ({case.members} Leases)",
        ),
        (
            f"kill -> sample of {case.sample} restored p50 / max (s)",
            "",
            f"{case.takeover_p50_s:.2f} / {case.takeover_max_s:.2f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>20}  {c:>20}" for a, b, c in rows]
    for run in case.runs:
        if run.unreconciled:
            lines.append(
                f"  {run.replicas} replicas: never reconciled, by owner: {run.unreconciled}"
            )
    if case.not_restored:
        lines.append(f"  not restored: {len(case.not_restored)}: {case.not_restored[:10]}")
    lines += [f"  {'met   ' if met else 'MISSED'}  {t}" for t, met in case.targets.items()]
    return "\n".join(lines)
