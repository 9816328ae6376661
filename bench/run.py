"""``make bench``: how fast and how cheaply Moonlander converges, on real local clusters.

For each case (N Landings over M child clusters) it starts the controller as a process,
creates the Landings, and measures: time until all are Ready and create->Ready latency;
propagation latency after the parent kubeconfig changes (every Landing) and after source
Secrets change (a set of ChildToParent Landings); API requests and writes per Landing
over an idle period that includes a full resync; the controller's peak RSS and CPU
seconds; TCP connections per remote cluster. In the same run, a minimal async script does
only the unavoidable calls for the same N Landings (read the source, apply the target
Secret, patch status) at the same concurrency: the lower bound the controller is compared
to. Results: a table on stdout and a JSON file.

The "Isolation" case (``--cases isolation``) measures what hostile clusters cost the healthy
ones: 100 Landings over 2 children, created with 20 Landings of another namespace present
whose sources name hostile API servers (tests/support/hostile.py, in their own process),
against the same run of the same controller setup without them.

The fleet cases (``--cases landingset``, ``--cases shards``; bench/fleet.py): a LandingSet
stamping 1,000 Landings at once against 1,000 hand-written ones, and three ``--shards``
replicas against one. The control plane starts as many children as the largest case needs.
When sizes 100, 1,000 and 10,000 ran, a table gives the peak RSS and controller CPU per
Landing at each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from common import (
    CONCURRENCY,
    RESYNC,
    ROOT,
    b64,
    bounded,
    kubeconfig_dict,
    load_average,
    mark,
    metric_sum,
    pct,
    proc_stats,
    scrape,
    writes_by_kind,
)
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from moonlander import api
from moonlander.controller import plan
from moonlander.kube import internals
from moonlander.kube.resources import LandingPolicyResource, LandingResource
from moonlander_dev.clusters import ClusterSpec, ControlPlane, free_port

sys.path.insert(0, str(ROOT))  # the hostile servers and the RSS watch the e2e tests use
import fleet
from tests.support.admission import install_finalizer_policy
from tests.support.hostile import KINDS, RssWatch

SOURCE_CHANGES = 20
# The 10,000-Landing case's targets (issue 15), and the sharding case's default size.
BIG_RATIO, BIG_RSS_MB = 1.5, 300.0
SHARDS_DEFAULT = (10_000, 10)
DEFAULT_CASES = "100x1,100x3,1000x1,1000x3,10000x10,landingset,isolation"  # shards: alone
# Isolation: healthy Landings x children, hostile Landings, and the targets they are held to.
ISO_HEALTHY, ISO_CHILDREN, ISO_HOSTILE = 100, 2, 20
ISO_P99_RATIO, ISO_RSS_MB, ISO_STATUS_S, ISO_DELETE_S, ISO_ROTATION_S = 1.5, 200.0, 30.0, 30.0, 1.0
ISO_RSS_SAFETY_MB = 2 * ISO_RSS_MB  # past this the hostile servers are stopped (machine safety)


@dataclass
class Burst:
    create_phase_s: float = 0.0
    all_ready_s: float = 0.0
    p50_s: float = 0.0
    p99_s: float = 0.0
    ready: int = 0


@dataclass
class Case:
    landings: int
    children: int
    all_ready_s: float = 0.0
    create_phase_s: float = 0.0
    ready_p50_s: float = 0.0
    ready_p99_s: float = 0.0
    lower_bound_s: float = 0.0
    # The lower-bound script rewriting the same N landed Secrets (new content, the same
    # concurrency): what a parent change cannot beat.
    rewrite_bound_s: float = 0.0
    parent_change_ratio: float = 0.0  # parent change p99 / rewrite_bound_s
    burst_cpu_s: float = 0.0  # controller CPU from the first create until all are Ready
    ratio_to_lower_bound: float = 0.0
    parent_change_p50_s: float = 0.0
    parent_change_p99_s: float = 0.0
    source_change_p50_s: float = 0.0
    source_change_p99_s: float = 0.0
    idle_seconds: float = 0.0
    idle_requests_per_landing: float = 0.0
    idle_writes: float = 0.0
    # API writes per new Landing: its create, plus the controller's writes (by kind and
    # action, from moonlander_writes_total) from the first create until all are Ready.
    writes_per_landing: float = 0.0
    writes_by_kind: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    connections_per_cluster: dict[str, int] = field(default_factory=dict)


@dataclass
class Isolation:
    """Healthy Landings with and without hostile ones present, in one run."""

    healthy: int = ISO_HEALTHY
    children: int = ISO_CHILDREN
    hostile: int = ISO_HOSTILE
    hostile_kinds: dict[str, int] = field(default_factory=dict)
    baseline_all_ready_s: float = 0.0
    baseline_ready_p50_s: float = 0.0
    baseline_ready_p99_s: float = 0.0
    all_ready_s: float = 0.0
    ready_p50_s: float = 0.0
    ready_p99_s: float = 0.0
    ready_p99_ratio: float = 0.0
    baseline_rotation_p50_s: float = 0.0
    baseline_rotation_p99_s: float = 0.0
    rotation_p50_s: float = 0.0
    rotation_p99_s: float = 0.0
    rotations_seen: int = 0
    rotation_latencies_s: dict[str, float] = field(default_factory=dict)
    baseline_peak_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0  # VmHWM of the controller over the whole run with hostiles
    sampled_peak_rss_mb: float = 0.0  # VmRSS sampled every 0.1 s while hostiles are present
    rss_safety_tripped: bool = False
    hostile_status_p50_s: float = 0.0
    hostile_status_max_s: float = 0.0
    hostile_without_status: list[str] = field(default_factory=list)
    hostile_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> reason -> n
    delete_all_s: float = 0.0
    hostile_server_stats: list[dict[str, Any]] = field(default_factory=list)
    baseline_cpu_seconds: float = 0.0
    cpu_seconds: float = 0.0
    wall_s: float = 0.0
    targets: dict[str, bool] = field(default_factory=dict)


class HostileProcess:
    """The hostile servers of tests/support/hostile.py, one per kind given, in their own
    process (an endless body is written as fast as the controller reads it: not on the
    event loop that timestamps what the bench measures)."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.servers: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.hostile",
            *self.kinds,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        self.servers = json.loads(await self._line())

    async def _line(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the hostile servers' process ended")
        return line.decode()

    async def stats(self) -> list[dict[str, Any]]:
        """Connections, requests and bytes sent per server ([] once stopped)."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        if self._proc.returncode is not None or self._proc.stdin.is_closing():
            return []
        self._proc.stdin.write(b"stats\n")
        await self._proc.stdin.drain()
        return list(json.loads(await self._line()))

    async def close(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


def connections(pid: int, ports: dict[str, int]) -> dict[str, int]:
    """Established TCP connections from ``pid`` to each cluster's port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    counts = dict.fromkeys(ports, 0)
    by_port = {port: name for name, port in ports.items()}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if cols[3] == "01" and cols[9] in inodes and remote_port in by_port:
                counts[by_port[remote_port]] += 1
    return counts


class Bench:
    def __init__(self, workdir: Path, plane: ControlPlane, log_level: str = "WARNING") -> None:
        self.workdir = workdir
        self.plane = plane
        self.log_level = log_level
        self.admin = {
            name: AsyncClient(KubeConfig.from_file(c.kubeconfig), field_manager="bench")
            for name, c in plane.clusters.items()
        }

    @property
    def local(self) -> AsyncClient:
        return self.admin["parent"]

    async def setup(self) -> None:
        # Landing and LandingPolicy (the controller reconciles once it has listed policies).
        for path in sorted((ROOT / "config/crd/bases").glob("*.yaml")):
            crd = CustomResourceDefinition.from_dict(yaml.safe_load(path.read_text()))
            await self.local.apply(crd, force=True)
            await self.local.wait(
                CustomResourceDefinition, crd.metadata.name, for_conditions=["Established"]
            )
        # As installed (the chart does it where the API is served): the finalizer comes
        # with each Landing's create.
        await install_finalizer_policy(self.local, "default")
        # Warm the API servers up (a fresh one answers its first burst slowly, even with
        # 429s), so the first measured case is not penalised.
        await self.namespace("warmup")
        await bounded(
            [
                (
                    lambda i=i: self.local.create(
                        LandingResource.from_dict(
                            {"metadata": {"name": f"w-{i}", "namespace": "warmup"}, "spec": {}}
                        )
                    )
                )
                for i in range(200)
            ],
            32,
        )

    async def namespace(self, name: str) -> None:
        for client in self.admin.values():
            with contextlib.suppress(ApiError):
                await client.create(Namespace(metadata=ObjectMeta(name=name)))

    async def grant_parent_credential(self, ns: str) -> None:
        """The LandingPolicy a ParentToChild Landing without serviceAccount needs
        (docs/security.md): namespace ``ns`` may land the parent kubeconfig as is."""
        await self.local.apply(
            LandingPolicyResource.from_dict(
                {
                    "apiVersion": api.API_VERSION,
                    "kind": "LandingPolicy",
                    "metadata": {"name": f"bench-{ns}"},
                    "spec": {"namespaces": {"names": [ns]}, "parentCredential": True},
                }
            ),
            force=True,
        )

    async def child_sources(self, ns: str, children: list[str]) -> None:
        for child in children:
            await self.local.create(
                Secret(
                    metadata=ObjectMeta(name=f"{child}-admin", namespace=ns),
                    data={"value": b64(self.plane.clusters[child].kubeconfig.read_text())},
                )
            )

    def start_controller(
        self,
        namespaces: list[str],
        parent_file: Path,
        metrics_port: int,
        *extra: str,
        log_name: str | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"controller-{log_name or namespaces[0]}.log").open("wb")
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moonlander",
                f"--log-level={self.log_level}",
                "run",
                f"--kubeconfig={self.plane.clusters['parent'].kubeconfig}",
                f"--parent-kubeconfig={parent_file}",
                *(f"--namespace={ns}" for ns in namespaces),
                "--allow-loopback",
                f"--metrics-port={metrics_port}",
                f"--health-port={metrics_port}",
                "--bind-address=127.0.0.1",
                f"--resync-interval={RESYNC}",
                f"--workers={CONCURRENCY}",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready_endpoint(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError("controller did not become ready")

    async def run_case(self, n: int, m: int) -> Case:
        case = Case(landings=n, children=m)
        ns = f"bench-{n}-{m}"
        await self.namespace(ns)
        await self.grant_parent_credential(ns)
        children = [f"child-{i}" for i in range(1, m + 1)]
        await self.child_sources(ns, children)
        parent_file = self.workdir / f"parent-{ns}"
        parent_file.write_text(self.plane.clusters["parent"].kubeconfig.read_text())
        port = free_port()
        controller = self.start_controller([ns], parent_file, port)
        try:
            await self.wait_ready_endpoint(port)
            start_writes = scrape(port)
            cpu_before = proc_stats(controller.pid)[1]
            burst = await self._burst(ns, n, children)
            case.burst_cpu_s = proc_stats(controller.pid)[1] - cpu_before
            case.create_phase_s, case.all_ready_s = burst.create_phase_s, burst.all_ready_s
            case.ready_p50_s, case.ready_p99_s = burst.p50_s, burst.p99_s
            await asyncio.sleep(1.0)  # Events are posted off the reconcile
            case.writes_by_kind = writes_by_kind(start_writes, scrape(port), n)
            case.writes_per_landing = 1 + sum(case.writes_by_kind.values())

            # Idle: a period that includes a full resync of every Landing.
            before = scrape(port)
            idle_start = time.monotonic()
            await asyncio.sleep(RESYNC * 1.25)
            after = scrape(port)
            case.idle_seconds = time.monotonic() - idle_start
            requests = metric_sum(after, "moonlander_api_requests_total") - metric_sum(
                before, "moonlander_api_requests_total"
            )
            case.idle_requests_per_landing = requests / n
            case.idle_writes = metric_sum(after, "moonlander_writes_total") - metric_sum(
                before, "moonlander_writes_total"
            )
            if case.idle_writes:
                print(
                    "idle writes:",
                    [
                        line
                        for line in after.splitlines()
                        if line.startswith("moonlander_writes_total")
                    ],
                )

            case.parent_change_p50_s, case.parent_change_p99_s = await self._parent_change(
                ns, n, m, children, parent_file
            )
            lat = list((await self._source_change(ns, children)).values())
            case.source_change_p50_s, case.source_change_p99_s = pct(lat, 0.5), pct(lat, 0.99)
            ports = {c: self.plane.clusters[c].port for c in children}
            case.connections_per_cluster = connections(controller.pid, ports)
            case.peak_rss_mb, case.cpu_seconds = proc_stats(controller.pid)
        finally:
            controller.terminate()
            controller.wait(30)
        case.lower_bound_s, case.rewrite_bound_s = await self._lower_bound(n, m, children)
        case.ratio_to_lower_bound = case.all_ready_s / case.lower_bound_s
        case.parent_change_ratio = case.parent_change_p99_s / case.rewrite_bound_s
        return case

    async def _burst(
        self, ns: str, n: int, children: list[str], timeout: float | None = None
    ) -> Burst:
        """Creates N ParentToChild Landings over the children (32 at a time); times each
        from its create call returning until it is Ready. With ``timeout``: gives up that
        many seconds after the first create (``Burst.ready`` says how many made it)."""
        ready_at: dict[str, float] = {}
        created_at: dict[str, float] = {}
        watcher = asyncio.create_task(self._watch_ready(ns, ready_at))
        await asyncio.sleep(0.2)  # the watch is open before the first create
        started = time.monotonic()

        def create(i: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                name = f"ld-{i}"
                await self.local.create(
                    LandingResource.from_dict(
                        {
                            "metadata": {"name": name, "namespace": ns},
                            "spec": {
                                "kubeconfigSecretName": f"{children[i % len(children)]}-admin",
                                "writeKubeconfigSecretName": f"lk-{i}",
                            },
                        }
                    )
                )
                created_at[name] = time.monotonic()

            return call

        await bounded([create(i) for i in range(n)], 32)
        burst = Burst(create_phase_s=time.monotonic() - started)
        deadline = started + timeout if timeout is not None else float("inf")
        while len(ready_at) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        burst.ready = len(ready_at)
        if burst.ready < n:
            watcher.cancel()
            burst.all_ready_s = float("nan")
            return burst
        burst.all_ready_s = max(ready_at.values()) - started
        lat = [ready_at[k] - created_at[k] for k in created_at]
        burst.p50_s, burst.p99_s = pct(lat, 0.5), pct(lat, 0.99)
        watcher.cancel()
        return burst

    async def run_isolation(self) -> Isolation:
        """The same controller setup twice: a baseline, then with hostile Landings."""
        iso = Isolation()
        wall = time.monotonic()
        children = [f"child-{i}" for i in range(1, ISO_CHILDREN + 1)]
        kinds = [KINDS[i % len(KINDS)] for i in range(ISO_HOSTILE)]
        iso.hostile_kinds = {k: kinds.count(k) for k in KINDS}
        print("  baseline: no hostile Landings ...", flush=True)
        await self._isolation_run("base", children, None, iso)
        print(json.dumps(asdict(iso)), flush=True)
        hostile = HostileProcess(kinds)
        await hostile.start()
        try:
            print(f"  with {ISO_HOSTILE} hostile Landings ...", flush=True)
            await self._isolation_run("hostile", children, hostile, iso)
        finally:
            await hostile.close()
        iso.ready_p99_ratio = iso.ready_p99_s / iso.baseline_ready_p99_s
        iso.wall_s = time.monotonic() - wall
        iso.targets = {
            f"healthy create->Ready p99 <= {ISO_P99_RATIO}x baseline": iso.ready_p99_ratio
            <= ISO_P99_RATIO,
            f"controller peak RSS < {ISO_RSS_MB:.0f} MB": max(
                iso.peak_rss_mb, iso.sampled_peak_rss_mb
            )
            < ISO_RSS_MB,
            f"every hostile Landing has a reason within {ISO_STATUS_S:.0f} s": (
                not iso.hostile_without_status and iso.hostile_status_max_s <= ISO_STATUS_S
            ),
            f"deleting all hostile Landings within {ISO_DELETE_S:.0f} s": 0
            < iso.delete_all_s
            <= ISO_DELETE_S,
            f"healthy rotation p99 < {ISO_ROTATION_S:.0f} s": (
                iso.rotations_seen == SOURCE_CHANGES and iso.rotation_p99_s < ISO_ROTATION_S
            ),
        }
        return iso

    async def _isolation_run(
        self, tag: str, children: list[str], hostile: HostileProcess | None, iso: Isolation
    ) -> None:
        """One controller watching a healthy and a hostile namespace, both granted the
        parent credential (the same setup whether or not the hostile one holds Landings)."""
        healthy_ns, hostile_ns = f"iso-{tag}-healthy", f"iso-{tag}-hostile"
        for ns in (healthy_ns, hostile_ns):
            await self.namespace(ns)
            await self.grant_parent_credential(ns)
        await self.child_sources(healthy_ns, children)
        parent_file = self.workdir / f"parent-{healthy_ns}"
        parent_file.write_text(self.plane.clusters["parent"].kubeconfig.read_text())
        port = free_port()
        controller = self.start_controller([healthy_ns, hostile_ns], parent_file, port)
        try:
            await self.wait_ready_endpoint(port)
            if hostile is None:
                burst = await self._burst(healthy_ns, ISO_HEALTHY, children)
                iso.baseline_all_ready_s = burst.all_ready_s
                iso.baseline_ready_p50_s, iso.baseline_ready_p99_s = burst.p50_s, burst.p99_s
                lat = list((await self._source_change(healthy_ns, children)).values())
                iso.baseline_rotation_p50_s = pct(lat, 0.5)
                iso.baseline_rotation_p99_s = pct(lat, 0.99)
                iso.baseline_peak_rss_mb, iso.baseline_cpu_seconds = proc_stats(controller.pid)
                return
            with RssWatch(controller.pid, ISO_RSS_SAFETY_MB, [hostile]) as rss:
                await self._with_hostiles(healthy_ns, hostile_ns, children, hostile, iso)
            iso.sampled_peak_rss_mb = rss.peak
            iso.rss_safety_tripped = rss.tripped
            iso.peak_rss_mb, iso.cpu_seconds = proc_stats(controller.pid)
        finally:
            controller.terminate()
            controller.wait(30)

    async def _with_hostiles(
        self,
        healthy_ns: str,
        hostile_ns: str,
        children: list[str],
        hostile: HostileProcess,
        iso: Isolation,
    ) -> None:
        # 20 hostile Landings, one hostile server each; every kind in both directions (the
        # server is the cluster written to, or the one the landed credential is checked at).
        reasons: dict[str, tuple[float, str]] = {}
        created_at: dict[str, float] = {}
        kind_of: dict[str, str] = {}
        watcher = asyncio.create_task(self._watch_reasons(hostile_ns, reasons))
        await asyncio.sleep(0.2)
        for i, server in enumerate(hostile.servers):
            direction = "ParentToChild" if (i // len(KINDS)) % 2 == 0 else "ChildToParent"
            name = f"h-{i}-{server['kind']}-{'p2c' if direction == 'ParentToChild' else 'c2p'}"
            kind_of[name] = server["kind"]
            await self.local.create(
                Secret(
                    metadata=ObjectMeta(name=f"{name}-src", namespace=hostile_ns),
                    data={"value": b64(server["kubeconfig"])},
                )
            )
            await self.local.create(
                LandingResource.from_dict(
                    {
                        "metadata": {"name": name, "namespace": hostile_ns},
                        "spec": {
                            "kubeconfigSecretName": f"{name}-src",
                            "writeKubeconfigSecretName": f"{name}-out",
                            "direction": direction,
                        },
                    }
                )
            )
            created_at[name] = time.monotonic()

        # The healthy Landings are created once every hostile server is being asked.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(s["connections"] > 0 for s in await hostile.stats()):
                break
            await asyncio.sleep(0.1)
        else:
            print("not every hostile server was asked within 15 s", flush=True)
        mark("hostile Landings created; healthy burst")
        burst = await self._burst(healthy_ns, ISO_HEALTHY, children)
        mark("healthy burst Ready; source rotation")
        iso.all_ready_s, iso.ready_p50_s, iso.ready_p99_s = (
            burst.all_ready_s,
            burst.p50_s,
            burst.p99_s,
        )
        iso.rotation_latencies_s = await self._source_change(healthy_ns, children)
        lat = list(iso.rotation_latencies_s.values())
        iso.rotation_p50_s, iso.rotation_p99_s = pct(lat, 0.5), pct(lat, 0.99)
        iso.rotations_seen = len(lat)

        mark("rotation done")
        # Every hostile Landing says why (waited for up to twice the target, to report it).
        deadline = max(created_at.values()) + 2 * ISO_STATUS_S
        while len(reasons) < len(created_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        watcher.cancel()
        status_s = [reasons[n][0] - created_at[n] for n in created_at if n in reasons]
        iso.hostile_status_p50_s = pct(status_s, 0.5) if status_s else 0.0
        iso.hostile_status_max_s = max(status_s, default=0.0)
        iso.hostile_without_status = sorted(set(created_at) - set(reasons))
        for name, (_, reason) in reasons.items():
            by_reason = iso.hostile_reasons.setdefault(kind_of[name], {})
            by_reason[reason] = by_reason.get(reason, 0) + 1
        iso.hostile_server_stats = await hostile.stats()

        # Deleting them all: from the first delete until none is left.
        started = time.monotonic()
        for name in created_at:
            await self.local.delete(LandingResource, name, namespace=hostile_ns)
        deadline = started + 4 * ISO_DELETE_S
        while time.monotonic() < deadline:
            left = [x async for x in self.local.list(LandingResource, namespace=hostile_ns)]
            if not left:
                iso.delete_all_s = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        else:
            print("hostile Landings not deleted:", [x.metadata.name for x in left], flush=True)

    async def _watch_reasons(self, ns: str, reasons: dict[str, tuple[float, str]]) -> None:
        """The first time each Landing's Ready condition gives a reason (not Progressing)."""
        async for _op, obj in self.local.watch(LandingResource, namespace=ns):
            for cond in (obj.status or {}).get("conditions", []) if obj.status else []:
                if cond["type"] == "Ready" and cond.get("reason") not in (None, "", "Progressing"):
                    reasons.setdefault(obj.metadata.name, (time.monotonic(), cond["reason"]))

    async def _watch_ready(self, ns: str, ready_at: dict[str, float]) -> None:
        async for _op, obj in self.local.watch(LandingResource, namespace=ns):
            for cond in (obj.status or {}).get("conditions", []) if obj.status else []:
                if cond["type"] == "Ready" and cond["status"] == "True":
                    ready_at.setdefault(obj.metadata.name, time.monotonic())

    async def _parent_change(
        self, ns: str, n: int, m: int, children: list[str], parent_file: Path
    ) -> tuple[float, float]:
        """Swap the parent kubeconfig; time until each landed Secret carries the new one."""
        doc = kubeconfig_dict(parent_file.read_text())
        doc["contexts"][0]["name"] = doc["current-context"] = "rotated"
        new_text = yaml.safe_dump(doc)
        seen: dict[str, float] = {}
        old_hashes: dict[str, str] = {}
        for child in children:
            async for s in self.admin[child].list(
                Secret, namespace=ns, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
            ):
                old_hashes[s.metadata.name] = s.metadata.annotations[api.HASH_ANNOTATION]
        watchers = [
            asyncio.create_task(self._watch_changes(child, ns, old_hashes, seen))
            for child in children
        ]
        await asyncio.sleep(1)
        tmp = parent_file.with_suffix(".new")
        tmp.write_text(new_text)
        changed = time.monotonic()
        tmp.replace(parent_file)
        deadline = changed + 300
        while len(seen) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for w in watchers:
            w.cancel()
        lat = [t - changed for t in seen.values()]
        return pct(lat, 0.5), pct(lat, 0.99)

    async def _watch_changes(
        self, child: str, ns: str, old: dict[str, str], seen: dict[str, float]
    ) -> None:
        async for _op, s in self.admin[child].watch(
            Secret, namespace=ns, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
        ):
            name = s.metadata.name
            if (s.metadata.annotations or {}).get(api.HASH_ANNOTATION) != old.get(name):
                seen.setdefault(name, time.monotonic())

    async def _source_change(self, ns: str, children: list[str]) -> dict[str, float]:
        """ChildToParent Landings with their own sources: change the sources, time until
        the Secrets landed locally follow (seconds, per Landing)."""
        names = [f"c2p-{i}" for i in range(SOURCE_CHANGES)]
        for i, name in enumerate(names):
            child = children[i % len(children)]
            await self.local.create(
                Secret(
                    metadata=ObjectMeta(name=f"{name}-src", namespace=ns),
                    data={"value": b64(self.plane.clusters[child].kubeconfig.read_text())},
                )
            )
            await self.local.create(
                LandingResource.from_dict(
                    {
                        "metadata": {"name": name, "namespace": ns},
                        "spec": {
                            "kubeconfigSecretName": f"{name}-src",
                            "writeKubeconfigSecretName": f"{name}-out",
                            "direction": "ChildToParent",
                        },
                    }
                )
            )
        hashes: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while len(hashes) < len(names) and time.monotonic() < deadline:
            for name in names:
                with contextlib.suppress(ApiError):
                    s = await self.local.get(Secret, f"{name}-out", namespace=ns)
                    hashes[name] = s.metadata.annotations[api.HASH_ANNOTATION]
            await asyncio.sleep(0.2)
        seen: dict[str, float] = {}
        changed: dict[str, float] = {}
        patched: dict[str, str] = {}  # wall clock, to find a slow one in the controller's log

        async def watch() -> None:
            async for _op, s in self.local.watch(
                Secret, namespace=ns, labels={api.MANAGED_BY_LABEL: api.MANAGED_BY}
            ):
                name = s.metadata.name.removesuffix("-out")
                if name in changed and s.metadata.annotations[api.HASH_ANNOTATION] != hashes.get(
                    name
                ):
                    seen.setdefault(name, time.monotonic() - changed[name])

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1)
        for i, name in enumerate(names):
            child = children[i % len(children)]
            doc = kubeconfig_dict(self.plane.clusters[child].kubeconfig.read_text())
            doc["contexts"][0]["name"] = doc["current-context"] = f"rotated-{i}"
            changed[name] = time.monotonic()
            patched[name] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            await self.local.patch(
                Secret, f"{name}-src", {"data": {"value": b64(yaml.safe_dump(doc))}}, namespace=ns
            )
        deadline = time.monotonic() + 60
        while len(seen) < len(names) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
        if len(seen) < len(names):
            print(f"source changes seen: {len(seen)} of {len(names)}", flush=True)
        for name, latency in seen.items():
            if latency > 1.0:
                print(f"    slow source change: {name} patched {patched[name]}, {latency:.3f}s")
        return seen

    async def _lower_bound(self, n: int, m: int, children: list[str]) -> tuple[float, float]:
        """The same workload done with only the unavoidable calls: N Landings are created
        (as the controller case creates them, 32 at a time) and for each, with the
        controller's concurrency, the source is read, the target Secret server-side
        applied and the Landing's status patched. Timed from the first create, like the
        controller case. Then the N Secrets are applied again with new content, as a parent
        change needs them (timed alone). Seconds for each."""
        ns = f"lower-{n}-{m}"
        await self.namespace(ns)
        for child in children:
            await self.local.create(
                Secret(
                    metadata=ObjectMeta(name=f"{child}-admin", namespace=ns),
                    data={"value": b64(self.plane.clusters[child].kubeconfig.read_text())},
                )
            )
        remote = {
            child: AsyncClient(
                KubeConfig.from_file(self.plane.clusters[child].kubeconfig),
                field_manager="moonlander",
            )
            for child in children
        }
        payload = self.plane.clusters["parent"].kubeconfig.read_text()
        creating = asyncio.Semaphore(32)
        working = asyncio.Semaphore(CONCURRENCY)
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Synced",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        }

        async def one(i: int) -> None:
            child = children[i % m]
            async with creating:
                await self.local.create(
                    LandingResource.from_dict(
                        {"metadata": {"name": f"ld-{i}", "namespace": ns}, "spec": {}}
                    )
                )
            async with working:
                await self.local.get(Secret, f"{child}-admin", namespace=ns)
                desired = plan.desired_secret(
                    name=f"lk-{i}",
                    namespace=ns,
                    owner=f"{ns}/ld-{i}",
                    owner_uid="",
                    kubeconfig=payload,
                )
                await remote[child].apply(Secret.from_dict(desired), force=True)
                await self.local.patch(
                    LandingResource.Status,
                    f"ld-{i}",
                    status,
                    namespace=ns,
                    patch_type=PatchType.MERGE,
                )

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.monotonic() - started

        rotated = payload.replace("current-context:", "# rotated\ncurrent-context:", 1)

        async def rewrite(i: int) -> None:
            desired = plan.desired_secret(
                name=f"lk-{i}", namespace=ns, owner=f"{ns}/ld-{i}", owner_uid="", kubeconfig=rotated
            )
            async with working:
                await remote[children[i % m]].apply(Secret.from_dict(desired), force=True)

        started = time.monotonic()
        await asyncio.gather(*(rewrite(i) for i in range(n)))
        rewrite_s = time.monotonic() - started
        for client in remote.values():
            await internals.close(client)
        return elapsed, rewrite_s


def table(cases: list[Case]) -> str:
    rows = [
        ("Landings x children", lambda c: f"{c.landings} x {c.children}"),
        ("all Ready (s)", lambda c: f"{c.all_ready_s:.2f}"),
        ("lower bound (s)", lambda c: f"{c.lower_bound_s:.2f}"),
        ("ratio to lower bound", lambda c: f"{c.ratio_to_lower_bound:.2f}x"),
        ("create->Ready p50 / p99 (s)", lambda c: f"{c.ready_p50_s:.3f} / {c.ready_p99_s:.3f}"),
        (
            "parent change p50 / p99 (s)",
            lambda c: f"{c.parent_change_p50_s:.3f} / {c.parent_change_p99_s:.3f}",
        ),
        (
            "source change p50 / p99 (s)",
            lambda c: f"{c.source_change_p50_s:.3f} / {c.source_change_p99_s:.3f}",
        ),
        (
            "idle requests / Landing",
            lambda c: f"{c.idle_requests_per_landing:.2f} in {c.idle_seconds:.0f}s",
        ),
        ("idle writes", lambda c: f"{c.idle_writes:.0f}"),
        ("lower bound: rewrite all Secrets (s)", lambda c: f"{c.rewrite_bound_s:.2f}"),
        ("parent change p99 / that", lambda c: f"{c.parent_change_ratio:.2f}x"),
        (
            "controller CPU s / 1000 landed",
            lambda c: f"{c.burst_cpu_s * 1000 / c.landings:.1f}",
        ),
        ("API writes / new Landing", lambda c: f"{c.writes_per_landing:.2f}"),
        ("peak RSS (MB)", lambda c: f"{c.peak_rss_mb:.0f}"),
        ("CPU seconds", lambda c: f"{c.cpu_seconds:.1f}"),
        (
            "TCP connections / cluster",
            lambda c: ", ".join(f"{k}={v}" for k, v in c.connections_per_cluster.items()),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = []
    for label, get in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{get(c):>20}" for c in cases))
    return "\n".join(lines)


def isolation_table(iso: Isolation) -> str:
    status = (
        f"{iso.hostile_status_max_s:.2f}"
        if not iso.hostile_without_status
        else f"{len(iso.hostile_without_status)} without one"
    )
    rows = [
        ("Isolation", "baseline", f"with {iso.hostile} hostile"),
        (
            f"{iso.healthy} healthy x {iso.children} children all Ready (s)",
            f"{iso.baseline_all_ready_s:.2f}",
            f"{iso.all_ready_s:.2f}",
        ),
        (
            "create->Ready p50 / p99 (s)",
            f"{iso.baseline_ready_p50_s:.3f} / {iso.baseline_ready_p99_s:.3f}",
            f"{iso.ready_p50_s:.3f} / {iso.ready_p99_s:.3f}",
        ),
        ("create->Ready p99 ratio", "", f"{iso.ready_p99_ratio:.2f}x"),
        (
            "source rotation p50 / p99 (s)",
            f"{iso.baseline_rotation_p50_s:.3f} / {iso.baseline_rotation_p99_s:.3f}",
            f"{iso.rotation_p50_s:.3f} / {iso.rotation_p99_s:.3f}",
        ),
        (
            "peak RSS (MB)",
            f"{iso.baseline_peak_rss_mb:.0f}",
            f"{max(iso.peak_rss_mb, iso.sampled_peak_rss_mb):.0f}",
        ),
        ("CPU seconds", f"{iso.baseline_cpu_seconds:.1f}", f"{iso.cpu_seconds:.1f}"),
        ("hostile: reason p50 / max (s)", "", f"{iso.hostile_status_p50_s:.2f} / {status}"),
        ("hostile: delete all (s)", "", f"{iso.delete_all_s:.2f}"),
        ("case wall time (s)", "", f"{iso.wall_s:.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>20}  {c:>20}" for a, b, c in rows]
    lines.append("")
    for kind, reasons in iso.hostile_reasons.items():
        lines.append(f"  {kind:<16} " + ", ".join(f"{r} x{n}" for r, n in reasons.items()))
    lines.append("")
    for target, met in iso.targets.items():
        lines.append(f"  {'met   ' if met else 'MISSED'}  {target}")
    return "\n".join(lines)


def scale_table(cases: list[Case]) -> str:
    """Peak RSS and controller CPU per Landing at each size run (the most children where
    a size ran more than once): how cost grows with N."""
    by_n: dict[int, Case] = {}
    for c in cases:
        if c.landings not in by_n or c.children > by_n[c.landings].children:
            by_n[c.landings] = c
    lines = [
        f"{'Landings x children':<20}  {'peak RSS (MB)':>14}  {'KB / Landing':>13}"
        f"  {'KB / added Landing':>19}  {'CPU ms / Landing':>17}"
    ]
    previous: Case | None = None
    for n in sorted(by_n):
        c = by_n[n]
        added = (
            f"{(c.peak_rss_mb - previous.peak_rss_mb) * 1024 / (n - previous.landings):.1f}"
            if previous is not None
            else ""
        )
        lines.append(
            f"{f'{n} x {c.children}':<20}  {c.peak_rss_mb:>14.0f}  {c.peak_rss_mb * 1024 / n:>13.1f}"
            f"  {added:>19}  {c.burst_cpu_s * 1000 / n:>17.2f}"
        )
        previous = c
    return "\n".join(lines)


def case_targets(c: Case) -> dict[str, bool]:
    """The targets issue 15 holds the 10,000-Landing case to."""
    if c.landings < 10_000:
        return {}
    return {
        f"all Ready <= {BIG_RATIO}x the lower bound": c.ratio_to_lower_bound <= BIG_RATIO,
        f"peak RSS <= {BIG_RSS_MB:.0f} MB": c.peak_rss_mb <= BIG_RSS_MB,
        "idle writes 0": c.idle_writes == 0,
    }


def parse_cases(names: list[str]) -> tuple[list[tuple[int, int]], tuple[int, int] | None, int]:
    """(NxM cases, the shards case's NxM or None, children needed)."""
    sizes: list[tuple[int, int]] = []
    shards: tuple[int, int] | None = None
    children = 0
    for name in names:
        if name == "isolation":
            children = max(children, ISO_CHILDREN)
        elif name.startswith("landingset"):
            children = max(children, fleet.SET_CHILDREN)
        elif name.startswith("shards"):
            size = name.partition(":")[2] or f"{SHARDS_DEFAULT[0]}x{SHARDS_DEFAULT[1]}"
            n, m = (int(x) for x in size.split("x"))
            shards = (n, m)
            children = max(children, m)
        else:
            n, m = (int(x) for x in name.split("x"))
            sizes.append((n, m))
            children = max(children, m)
    return sizes, shards, children


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help="comma-separated: NxM (N Landings over M children), 'landingset' "
        f"({fleet.SET_TENANTS} tenants; 'landingset:N'), 'shards' "
        f"({SHARDS_DEFAULT[0]}x{SHARDS_DEFAULT[1]}; 'shards:NxM') or "
        "'isolation'",
    )
    parser.add_argument("--out", default="_out/bench.json", help="JSON results")
    parser.add_argument(
        "--controller-log-level", default="WARNING", help="the controllers' --log-level"
    )
    args = parser.parse_args()
    names = args.cases.split(",")
    cases, shards_size, n_children = parse_cases(names)
    workdir = Path(tempfile.mkdtemp(prefix="moonlander-bench-"))
    # As many children as the largest case needs.
    specs = [ClusterSpec("parent")] + [ClusterSpec(f"child-{i}") for i in range(1, n_children + 1)]
    plane = ControlPlane(workdir / "clusters", specs)
    wall = time.monotonic()
    await asyncio.to_thread(plane.start)
    results: list[Case] = []
    isolation: Isolation | None = None
    landingset: fleet.LandingSetCase | None = None
    shards: fleet.ShardsCase | None = None
    durations: dict[str, float] = {"control plane start": time.monotonic() - wall}
    print(f"work directory (controller logs): {workdir}", flush=True)
    try:
        bench = Bench(workdir, plane, args.controller_log_level)
        await bench.setup()
        for n, m in cases:
            print(f"running {n} Landings over {m} children (load {load_average()}) ...", flush=True)
            started = time.monotonic()
            results.append(await bench.run_case(n, m))
            durations[f"{n}x{m}"] = time.monotonic() - started
            print(json.dumps(asdict(results[-1])), flush=True)
        for name in (x for x in names if x.startswith("landingset")):
            print(f"running LandingSet (load {load_average()}) ...", flush=True)
            started = time.monotonic()
            count = int(name.partition(":")[2] or fleet.SET_TENANTS)
            landingset = await fleet.run_landingset(bench, count)
            durations["landingset"] = time.monotonic() - started
            print(json.dumps(asdict(landingset)), flush=True)
        if shards_size is not None:
            print(f"running Sharding {shards_size} (load {load_average()}) ...", flush=True)
            started = time.monotonic()
            shards = await fleet.run_shards(bench, *shards_size)
            durations["shards"] = time.monotonic() - started
            print(json.dumps(asdict(shards)), flush=True)
        if "isolation" in names:
            print("running Isolation ...", flush=True)
            started = time.monotonic()
            isolation = await bench.run_isolation()
            durations["isolation"] = time.monotonic() - started
            print(json.dumps(asdict(isolation)), flush=True)
    finally:
        await asyncio.to_thread(plane.stop)
    durations["total"] = time.monotonic() - wall
    if results:
        print()
        print(table(results))
        for c in results:
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in c.writes_by_kind.items())
            print(f"writes per new Landing at {c.landings}x{c.children}: Landing create 1, {kinds}")
        for c in results:
            for target, met in case_targets(c).items():
                print(f"  {'met   ' if met else 'MISSED'}  {c.landings}x{c.children}: {target}")
        if len({c.landings for c in results}) > 1:
            print()
            print(scale_table(results))
    if landingset is not None:
        print()
        print(fleet.landingset_table(landingset))
    if shards is not None:
        print()
        print(fleet.shards_table(shards))
    if isolation is not None:
        print()
        print(isolation_table(isolation))
    print()
    print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in durations.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "kubernetes": plane.clusters["parent"].version,
                "concurrency": CONCURRENCY,
                "resync_seconds": RESYNC,
                "cases": [asdict(c) for c in results],
                "isolation": asdict(isolation) if isolation is not None else None,
                "landingset": asdict(landingset) if landingset is not None else None,
                "shards": asdict(shards) if shards is not None else None,
                "scale": scale_table(results) if results else None,
                "durations_s": durations,
            },
            indent=2,
        )
    )
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
