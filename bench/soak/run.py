"""``make soak``: N Landings under a seeded schedule of operations and faults, judged by an
independent checker (bench/soak/checker.py, its own process).

    python -m bench.soak.run [--seed S] [--landings N] [--duration SECONDS] [--children M]

The runner starts the plane and the controllers, seeds the Landings, plays the schedule
(bench/soak/schedule.py), writes every operation and fault to an append-only log, and
starts the checker, which reads only that log and the clusters. A failing run prints its
seed and its schedule; the same ``--seed`` (and sizes) replays the schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from bench.soak import schedule
from bench.soak.world import Oplog, World
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType
from tests.e2e.harness import ROOT, install_crd, secret_with

from moonlander import api
from moonlander.kube.resources import LandingPolicyResource, LandingResource, LandingSetResource
from moonlander.kube.transport import MAX_CONNECTIONS

TENANT_PATTERN = "tenant-{{tenant}}-kubeconfig"
SET_LANDING, SET_WRITE = "set-{{tenant}}", "{{tenant}}-parent"
WEBHOOK_LABEL = "moonlander-soak-webhook"
CONCURRENCY = 16


def policy(ns: str) -> Any:
    return LandingPolicyResource.from_dict(
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": f"soak-{ns}"},
            "spec": {
                "namespaces": {"names": [ns]},
                "parentCredential": True,
                "sourceNetworks": ["127.0.0.0/8"],
                "mint": {
                    "clusterRoles": ["view"],
                    "clusterWide": True,
                    "serviceAccountNamespaces": ["moonlander-minted"],
                    "maxExpirationSeconds": 7200,
                },
            },
        }
    )


def digest(secret: Secret) -> str:
    return hashlib.sha256(json.dumps(secret.data or {}, sort_keys=True).encode()).hexdigest()


async def retried(call: Callable[[], Awaitable[Any]], attempts: int = 3) -> Any:
    """A call retried on a conflict (the controller wrote in between)."""
    for attempt in range(attempts):
        try:
            return await call()
        except ApiError as err:
            if err.status.code != 409 or attempt == attempts - 1:
                raise
    return None


class Runner:
    def __init__(self, world: World, oplog: Oplog, profile: schedule.Profile) -> None:
        self.world = world
        self.oplog = oplog
        self.profile = profile
        self.namespaces = profile.namespace_names()
        self.failed: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- setup --------------------------------------------------------------------------------

    async def setup(self, model: schedule.Model, log_level: str) -> None:
        w, local = self.world, self.world.local
        await install_crd(local)
        shard_ns = [ns for ns in self.namespaces if ns.startswith("soak-s")]
        pair_ns = [ns for ns in self.namespaces if ns.startswith("soak-l")]
        for name in ("moonlander-system", "moonlander-minted"):
            await local.create(Namespace(metadata=ObjectMeta(name=name)))
        for client in w.admin.values():
            for ns in self.namespaces:
                labels = {WEBHOOK_LABEL: "true"}
                await client.create(Namespace(metadata=ObjectMeta(name=ns, labels=labels)))
        self.oplog.write(
            "plane",
            clusters={n: str(c.kubeconfig) for n, c in w.plane.clusters.items()},
            parent_file=str(w.parent_file),
            sources={schedule.source_name(c): c for c in self.profile.child_names()},
            namespaces=self.namespaces,
            lease_namespace="moonlander-system",
        )
        for ns in self.namespaces:
            await local.create(policy(ns))
            self.oplog.write("policy", ns=ns, granted=True)
            for child in self.profile.child_names():
                text = w.admin_source(child)
                await local.create(secret_with(ns, schedule.source_name(child), {"value": text}))
        for cluster, client in w.admin.items():
            for ns in self.namespaces:
                for name in schedule.SENTINEL_NAMES:
                    made = await client.create(
                        secret_with(ns, name, {"value": f"sentinel {cluster}/{ns}/{name}"})
                    )
                    self.oplog.write(
                        "sentinel",
                        cluster=cluster,
                        ns=ns,
                        name=name,
                        rv=made.metadata.resourceVersion,
                        digest=digest(made),
                    )
        w.make_controllers(shard_ns, pair_ns, log_level)
        for c in w.controllers:
            c.start(self.oplog)
        url = await w.start_webhook_proxy()
        await self._register_webhook(url)
        for ns in self.namespaces:
            await self._create_set(ns)
        await self._bounded(
            [
                (lambda ns=ns, t=t, c=c: self._tenant_add(ns, t, c))
                for (ns, t), c in sorted(model.tenants.items())
            ]
        )
        await self._bounded(
            [
                (lambda f=f: self._write_landing(schedule.as_args(f), create=True))
                for f in model.landings.values()
            ]
        )
        deadline = time.monotonic() + 120
        while not all(c.ready() for c in w.controllers if c.group == "shards"):
            if time.monotonic() > deadline:
                raise RuntimeError("the sharded replicas did not become ready")
            await asyncio.sleep(1)

    async def _register_webhook(self, url: str) -> None:
        def hook(name: str, path: str, resource: str) -> dict[str, Any]:
            return {
                "name": name,
                "clientConfig": {"url": url + path, "caBundle": self.world.webhook_ca_bundle()},
                "rules": [
                    {
                        "apiGroups": [api.GROUP],
                        "apiVersions": [api.VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [resource],
                    }
                ],
                "namespaceSelector": {"matchLabels": {WEBHOOK_LABEL: "true"}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }

        await self.world.local.create(
            ValidatingWebhookConfiguration.from_dict(
                {
                    "metadata": {"name": "moonlander-soak"},
                    "webhooks": [
                        hook("landings.moons.kingdon.ci", "/validate", "landings"),
                        hook("landingsets.moons.kingdon.ci", "/validate-landingset", "landingsets"),
                    ],
                }
            )
        )
        # The pair's webhook serves once a replica is up: wait until the API server gets
        # answers through the proxy (a dry-run create is admitted).
        deadline = time.monotonic() + 120
        probe = LandingResource.from_dict(
            {"metadata": {"name": "probe", "namespace": self.namespaces[0]}, "spec": {}}
        )
        while True:
            try:
                await self.world.local.create(probe, dry_run=True)
                return
            except ApiError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def _create_set(self, ns: str) -> None:
        await self.world.local.create(
            LandingSetResource.from_dict(
                {
                    "metadata": {"name": "tenants", "namespace": ns},
                    "spec": {
                        "generators": [{"secrets": {"namePattern": TENANT_PATTERN}}],
                        "template": {
                            "metadata": {"name": SET_LANDING},
                            "spec": {"writeKubeconfigSecretName": SET_WRITE},
                        },
                    },
                }
            )
        )
        self.oplog.write(
            "set",
            ns=ns,
            name="tenants",
            pattern=TENANT_PATTERN,
            landing=SET_LANDING,
            write=SET_WRITE,
        )

    async def _bounded(self, calls: list[Callable[[], Awaitable[Any]]]) -> None:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(call: Callable[[], Awaitable[Any]]) -> None:
            async with sem:
                await call()

        await asyncio.gather(*(one(c) for c in calls))

    # -- operations ---------------------------------------------------------------------------

    async def _write_landing(self, args: dict[str, Any], *, create: bool) -> None:
        spec = schedule.landing_spec(args)
        ns, name = args["ns"], args["name"]
        local = self.world.local
        if create:
            obj = LandingResource.from_dict(
                {"metadata": {"name": name, "namespace": ns}, "spec": spec}
            )
            await local.create(obj)
        else:
            # The whole spec replaced (a field dropped, e.g. direction, must go too).
            await local.patch(
                LandingResource,
                name,
                [{"op": "replace", "path": "/spec", "value": spec}],
                namespace=ns,
                patch_type=PatchType.JSON,
            )
        self.oplog.write("landing", ns=ns, name=name, flavour=args["flavour"], spec=spec)

    async def _flip_direction(self, a: dict[str, Any]) -> None:
        """Asks to flip the Landing's direction (the API must refuse: it is immutable),
        then does what the refusal says: deletes it and creates one the other way round."""
        local, ns, old = self.world.local, a["ns"], a["replaces"]
        direction = "ChildToParent" if a["flavour"] == schedule.C2P else "ParentToChild"
        try:
            await local.patch(
                LandingResource,
                old,
                {"spec": {"direction": direction}},
                namespace=ns,
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code not in (400, 422) or "immutable" not in (err.status.message or ""):
                raise
            self.oplog.write("direction-refused", ns=ns, name=old)
        else:
            raise RuntimeError(f"{ns}/{old}: a direction edit was admitted")
        await local.delete(LandingResource, old, namespace=ns)
        self.oplog.write("landing-delete", ns=ns, name=old)
        await self._write_landing(a, create=True)

    async def _tenant_add(self, ns: str, tenant: str, child: str) -> None:
        secret_name = TENANT_PATTERN.replace("{{tenant}}", tenant)
        text = self.world.admin_source(child)
        await self.world.local.create(secret_with(ns, secret_name, {"value": text}))
        self.oplog.write("tenant", ns=ns, tenant=tenant, child=child, present=True)

    async def operation(self, event: schedule.Event) -> None:
        a, local = event.args, self.world.local
        kind = event.kind
        if kind == "edit-direction":
            await self._flip_direction(a)
        elif kind in ("create", "edit-target", "edit-suspend"):
            await self._write_landing(a, create=kind == "create")
        elif kind == "delete":
            await local.delete(LandingResource, a["name"], namespace=a["ns"])
            self.oplog.write("landing-delete", ns=a["ns"], name=a["name"])
        elif kind == "rotate-source":
            text = await self.world.token_source(a["child"])
            name = schedule.source_name(a["child"])

            async def rotate() -> None:
                secret = await local.get(Secret, name, namespace=a["ns"])
                secret.data = {"value": secret_with(a["ns"], name, {"value": text}).data["value"]}
                await local.replace(secret)

            await retried(rotate)
            self.oplog.write("source", ns=a["ns"], child=a["child"])
        elif kind == "rotate-parent":
            await self.world.rotate_parent()
            self.oplog.write("parent-rotate")
        elif kind == "policy-withdraw":
            await local.delete(LandingPolicyResource, f"soak-{a['ns']}")
            self.oplog.write("policy", ns=a["ns"], granted=False)
        elif kind == "policy-grant":
            await local.create(policy(a["ns"]))
            self.oplog.write("policy", ns=a["ns"], granted=True)
        elif kind == "tenant-add":
            await self._tenant_add(a["ns"], a["tenant"], a["child"])
        elif kind == "tenant-remove":
            secret_name = TENANT_PATTERN.replace("{{tenant}}", a["tenant"])
            await local.delete(Secret, secret_name, namespace=a["ns"])
            self.oplog.write("tenant", ns=a["ns"], tenant=a["tenant"], child="", present=False)
        else:
            raise ValueError(kind)

    async def run_operation(self, event: schedule.Event) -> None:
        key = (event.args.get("ns", ""), event.args.get("name", event.kind))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                await asyncio.wait_for(self.operation(event), 60)
                self.done[event.kind] = self.done.get(event.kind, 0) + 1
            except (ApiError, OSError, TimeoutError, Exception) as err:
                # Refused (the webhook down), unreachable (a server restarting): the log
                # holds only what was done, so the checker expects only that.
                self.failed[event.kind] = self.failed.get(event.kind, 0) + 1
                message = err.status.message if isinstance(err, ApiError) else repr(err)
                self.oplog.write(
                    "op-failed", kind=event.kind, args=event.args, error=(message or "")[:300]
                )
                await self.settle(event)

    async def settle(self, event: schedule.Event) -> None:
        """After a failed call the outcome is unknown (a server may have applied it and
        lost the answer): read back what the cluster has and log that, so the log says
        what was done. Retried while the cluster does not answer (bounded)."""
        a, local = event.args, self.world.local
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if event.kind in ("create", "delete", "edit-target", "edit-suspend"):
                    await self._settle_landing(a["ns"], a["name"])
                elif event.kind == "edit-direction":
                    await self._settle_landing(a["ns"], a["replaces"])
                    await self._settle_landing(a["ns"], a["name"])
                elif event.kind in ("policy-withdraw", "policy-grant"):
                    granted = await _exists(local, LandingPolicyResource, f"soak-{a['ns']}", None)
                    self.oplog.write("policy", ns=a["ns"], granted=granted, settled=True)
                elif event.kind in ("tenant-add", "tenant-remove"):
                    name = TENANT_PATTERN.replace("{{tenant}}", a["tenant"])
                    present = await _exists(local, Secret, name, a["ns"])
                    child = a.get("child", "")
                    self.oplog.write(
                        "tenant", ns=a["ns"], tenant=a["tenant"], child=child, present=present
                    )
                return
            except (ApiError, OSError, httpx2.HTTPError):
                await asyncio.sleep(2)
        self.oplog.write("settle-failed", kind=event.kind, args=event.args)

    async def _settle_landing(self, ns: str, name: str) -> None:
        try:
            obj = await self.world.local.get(LandingResource, name, namespace=ns)
        except ApiError as err:
            if err.status.code != 404:
                raise
            obj = None
        if obj is None or obj.metadata.deletionTimestamp:
            self.oplog.write("landing-delete", ns=ns, name=name, settled=True)
        else:
            self.oplog.write("landing", ns=ns, name=name, spec=obj.spec, settled=True)

    # -- faults -------------------------------------------------------------------------------

    async def fault(self, event: schedule.Event) -> Callable[[], Awaitable[None]]:
        """Starts a fault; returns what ends it."""
        w, kind = self.world, event.kind
        self.oplog.write("fault", id=event.args["id"], kind=kind, args=event.args)
        self.done[kind] = self.done.get(kind, 0) + 1
        if kind in ("kill-replica", "kill-leader"):
            if kind == "kill-replica":
                victim = w.controller(f"shards-{event.args['replica']}")
            else:
                victim = await w.leader() or w.controller("pair-0")
            victim.kill(self.oplog)
            w.point_webhook()

            async def restart() -> None:
                victim.start(self.oplog)
                w.point_webhook()

            return restart
        if kind.startswith("restart-"):
            target = {
                "restart-child-apiserver": f"{event.args.get('child')}-apiserver",
                "restart-parent-apiserver": "parent-apiserver",
                "restart-etcd": "etcd",
            }[kind]
            await asyncio.to_thread(w.kill_process, target)

            async def respawn() -> None:
                await asyncio.to_thread(w.respawn, target)
                for cluster in w.plane.clusters:
                    await asyncio.to_thread(w.wait_ready, cluster)

            return respawn
        if kind in ("partition-drop", "partition-blackhole"):
            assert w.partition is not None
            if kind == "partition-drop":
                w.partition.drop()
            else:
                w.partition.cut()
            partition = w.partition
            return _sync(partition.restore)
        if kind == "throttle-429":
            assert w.throttle is not None
            throttle = w.throttle
            throttle.refused.clear()
            throttle.window = 3600.0

            def lift() -> None:
                throttle.window = None

            return _sync(lift)
        if kind == "expire-410":
            await asyncio.to_thread(w.expire_watches)
            return _sync(lambda: None)
        if kind == "webhook-down":
            assert w.webhook is not None
            webhook = w.webhook
            webhook.cut()
            return _sync(webhook.restore)
        raise ValueError(kind)

    async def play(self, events: list[schedule.Event], started: float) -> None:
        ends: dict[int, Callable[[], Awaitable[None]]] = {}
        tasks: set[asyncio.Task[None]] = set()
        for event in events:
            await asyncio.sleep(max(0.0, started + event.at - time.monotonic()))
            if event.kind == "fault-end":
                end = ends.pop(event.args["id"], None)
                if end is not None:
                    await end()
                self.oplog.write("fault-end", id=event.args["id"], kind=event.args["fault"])
            elif event.kind in schedule.FAULTS:
                try:
                    ends[event.args["id"]] = await self.fault(event)
                except Exception as err:
                    self.oplog.write("fault-failed", kind=event.kind, error=repr(err))
                    self.oplog.write("fault-end", id=event.args["id"], kind=event.kind)
            else:
                task = asyncio.create_task(self.run_operation(event))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        for end in ends.values():
            await end()
        if tasks:
            await asyncio.wait(tasks, timeout=120)


async def _exists(client: Any, kind: Any, name: str, namespace: str | None) -> bool:
    try:
        await client.get(kind, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


def _sync(call: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        call()

    return run


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, help="replays a run's schedule (default: random)")
    p.add_argument("--landings", type=int, default=2000)
    p.add_argument(
        "--duration", type=float, default=1200.0, help="seconds of operations and faults"
    )
    p.add_argument("--children", type=int, default=3)
    p.add_argument("--op-interval", type=float, default=1.0, help="mean seconds between operations")
    p.add_argument("--fault-gap", type=float, default=45.0, help="mean seconds between faults")
    p.add_argument("--converge-bound", type=float, default=300.0, help="checker's bound (s)")
    p.add_argument("--revoke-bound", type=float, default=60.0, help="checker's bound (s)")
    p.add_argument("--rss-limit-mb", type=float, default=600.0)
    p.add_argument(
        "--conn-limit",
        type=int,
        help="established connections per controller (default: the design bound, "
        "MAX_CONNECTIONS per credential: 8 x (children x (namespaces + 1)) + 16)",
    )
    p.add_argument("--log-level", default="INFO", help="the controllers' log level")
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep everything here (default: a temp dir, removed after a clean run)",
    )
    p.add_argument("--out", type=Path, help="the checker's report (JSON)")
    p.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="KIND",
        help="leave out an operation or fault kind (repeatable; the rest of the seed's "
        "schedule stays as it is)",
    )
    p.add_argument("--fault-scale", type=float, default=1.0, help="multiplies fault lengths")
    p.add_argument(
        "--short",
        action="store_true",
        help="the profile `make test` runs: schedule.SHORT's sizes and lengths (its other "
        "flags still apply)",
    )
    p.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    # The 429 proxy's upstream restarts mid-request by design: no tracebacks for that.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 31)
    profile = (
        schedule.SHORT
        if opts.short
        else schedule.Profile(
            landings=opts.landings,
            duration=opts.duration,
            children=opts.children,
            op_interval=opts.op_interval,
            fault_gap=opts.fault_gap,
            fault_scale=opts.fault_scale,
        )
    )
    events = schedule.build(profile, seed, frozenset(opts.without))
    print(f"soak: seed {seed}, {profile}", flush=True)
    print(f"soak: schedule {schedule.summary(events)}", flush=True)
    if opts.print_schedule:
        print("\n".join(e.describe() for e in events))
        return 0
    # Every source Secret of a namespace rotates to a credential of its own, and each
    # credential has a pool of at most MAX_CONNECTIONS (docs/operations.md); plus the parent.
    credentials = profile.children * (len(profile.namespace_names()) + 1)
    conn_limit = opts.conn_limit or MAX_CONNECTIONS * credentials + 16
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = opts.out or workdir / "report.json"
    oplog = Oplog(workdir / "oplog.jsonl")
    world = World(workdir, profile.child_names())
    runner = Runner(world, oplog, profile)
    checker: subprocess.Popen[bytes] | None = None
    code = 1
    began = time.monotonic()
    try:
        await world.start()
        print(f"soak: plane up in {time.monotonic() - began:.1f}s; workdir {workdir}", flush=True)
        checker = subprocess.Popen(  # noqa: ASYNC220 - our own checker, waited in a thread
            [
                sys.executable,
                "-m",
                "bench.soak.checker",
                f"--oplog={oplog.path}",
                f"--out={out}",
                f"--converge-bound={opts.converge_bound}",
                f"--revoke-bound={opts.revoke_bound}",
                f"--rss-limit-mb={opts.rss_limit_mb}",
                f"--conn-limit={conn_limit}",
            ],
            cwd=ROOT,
        )
        await runner.setup(schedule.initial(profile, seed), opts.log_level)
        oplog.write("seeded")
        print(f"soak: seeded in {time.monotonic() - began:.1f}s; playing", flush=True)
        await runner.play(events, time.monotonic())
        oplog.write("quiet", done=runner.done, failed=runner.failed)
        print(f"soak: schedule played; done {runner.done}; failed {runner.failed}", flush=True)
        code = await asyncio.to_thread(checker.wait)
    finally:
        if checker is not None and checker.poll() is None:
            checker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                checker.wait(30)
        await world.close(oplog)
        oplog.close()
    print(f"soak: wall {time.monotonic() - began:.1f}s; report {out}", flush=True)
    if opts.workdir is None and code == 0 and not out.is_relative_to(workdir):
        shutil.rmtree(workdir, ignore_errors=True)  # a clean run's logs and etcd: not kept
    elif opts.workdir is None:
        print(f"soak: logs, oplog and etcd kept in {workdir}", flush=True)
    if code != 0:
        print(f"soak: FAILED (checker exit {code}); seed {seed}; schedule:")
        print("\n".join(e.describe() for e in events))
        given = argv if argv is not None else sys.argv[1:]
        rest = " ".join(_without_seed(given))
        print(f"soak: replay with --seed {seed} {rest}")
    return code


def _without_seed(args: list[str]) -> list[str]:
    """The arguments without ``--seed N`` or ``--seed=N``."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--seed":
            skip = True
        elif not arg.startswith("--seed="):
            kept.append(arg)
    return kept


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
