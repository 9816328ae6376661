"""``moonlander run``: the watches wired to the controller, and the process around them.

Landings, LandingSets and Secret metadata are followed by the controller's own list-watches
(``kube/watch.py``); their handlers only update memory and enqueue keys. With
``--webhook-port`` every replica also serves the validating admission webhook
(``serve/webhook.py``) on that port, over TLS with client-certificate authentication.

Process lifecycle: the health and metrics endpoints start first; with ``--leader-elect``
the replica then waits for the Lease and only its holder reconciles. SIGTERM
stops new work, lets reconciles in flight finish (each write is one atomic server-side
apply, so nothing is left half-written), releases the Lease and exits. Losing the Lease
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from moonlander import api
from moonlander.controller.authorize import Fence
from moonlander.controller.landingsets import LandingSets
from moonlander.controller.loop import Controller, Timing
from moonlander.controller.metrics import ClusterHealth, Metrics, Snapshot
from moonlander.controller.parent import ParentKubeconfig
from moonlander.controller.reconcile import Reconciler
from moonlander.controller.sharding import Shards
from moonlander.credentials import Policy
from moonlander.kube.clusters import ClusterPool, Target, close_client
from moonlander.kube.drift import DriftWatches
from moonlander.kube.events import EventRecorder
from moonlander.kube.leases import LeaderElector, LeaseConfig, Membership, MembershipConfig
from moonlander.kube.policies import PolicyWatch
from moonlander.kube.resources import LANDING_SETS, LANDINGS
from moonlander.kube.sources import secret_metadata_watch
from moonlander.kube.streams import use_asyncio_streams
from moonlander.kube.watch import ListWatch
from moonlander.serve import health, webhook
from moonlander.serve.access import KubeCluster
from moonlander.serve.metrics_auth import ApiReviews, MetricsAuth
from moonlander.serve.review import Reviewer
from moonlander.serve.tls import ServingTLS

log = logging.getLogger(__name__)

DEFAULT_PARENT_KUBECONFIG = Path("/etc/moonlander/parent-kubeconfig")
DEFAULT_WEBHOOK_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108
SHUTDOWN_GRACE = 20.0


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None = None  # the cluster Moonlander runs in; None: in-cluster
    parent_kubeconfig: Path = DEFAULT_PARENT_KUBECONFIG
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    policy: Policy = field(default_factory=Policy)
    allow_cross_namespace: bool = False
    # Where Moonlander runs: never a Landing's target, whatever a LandingPolicy grants.
    controller_namespace: str | None = None
    # Where ParentToChild Landings may mint ServiceAccounts with the parent's rights.
    mint_namespaces: tuple[str, ...] = (api.DEFAULT_MINT_NAMESPACE,)
    timing: Timing = field(default_factory=Timing)
    parent_poll_interval: float = 0.25  # a stat() call: cheap, and rotation lands sooner
    health_port: int | None = None
    metrics_port: int | None = None
    # /metrics only for callers the API server authenticates and allows (TokenReview, then a
    # SubjectAccessReview for get on /metrics), as controller-runtime's metrics filter does.
    metrics_auth: bool = False
    bind_address: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from the kubelet/Prometheus
    leader_elect: bool = False
    shards: bool = False
    leader_election_namespace: str | None = None
    leader_election_id: str = "moonlander-leader"
    webhook_port: int | None = None
    webhook_cert_dir: Path = DEFAULT_WEBHOOK_CERT_DIR
    # The CA of the client certificate the API server presents to webhooks: required with
    # webhook_port (only the API server may ask the webhook anything).
    webhook_client_ca: Path | None = None
    webhook_client_names: tuple[str, ...] = ()  # () = any certificate from that CA


def local_kubeconfig(flag: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The controller's own cluster's kubeconfig, found as client-go finds it: ``--kubeconfig``,
    then ``$KUBECONFIG``, then none (the pod's ServiceAccount)."""
    if flag is not None:
        return flag
    files = [f for f in environ.get("KUBECONFIG", "").split(os.pathsep) if f]
    if len(files) > 1:  # kubectl merges them; lightkube reads one file, so do not guess
        raise ValueError(
            f"$KUBECONFIG names {len(files)} files; moonlander run reads one: "
            "pass --kubeconfig FILE (or set $KUBECONFIG to one file)"
        )
    return Path(files[0]) if files else None


def local_config(path: Path | None) -> SingleConfig:
    """The controller's own cluster: an operator-chosen file, else the pod's ServiceAccount."""
    config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_service_account()
    single = config.get()
    if single is None:
        raise SystemExit(f"{path}: no current context")
    return single


def _identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}"


def webhook_tls(options: Options) -> ServingTLS | None:
    """The webhook's TLS, or None without ``--webhook-port``. Refuses to serve without a
    client CA: anyone who reaches the port could then ask it questions."""
    if options.webhook_port is None:
        return None
    if options.webhook_client_ca is None:
        raise SystemExit(
            "--webhook-port needs --webhook-client-ca FILE, the CA of the client certificate "
            "the API server presents to webhooks (its admission configuration's "
            "kubeConfigFile; docs/security.md): the webhook answers only the API server"
        )
    try:
        return ServingTLS(
            options.webhook_cert_dir, options.webhook_client_ca, options.webhook_client_names
        )
    except (OSError, ssl.SSLError) as err:
        raise SystemExit(
            f"webhook TLS: cannot load {options.webhook_cert_dir}/tls.crt and tls.key with "
            f"client CA {options.webhook_client_ca}: {err}"
        ) from None


async def run(options: Options) -> None:
    tls = webhook_tls(options)
    config = local_config(options.kubeconfig)
    local = use_asyncio_streams(
        AsyncClient(config, field_manager=api.FIELD_MANAGER, trust_env=False)
    )
    local_target = Target(key="local", server=config.cluster.server, client=local, local=True)
    metrics = Metrics()
    probes = health.Probes()
    holder: dict[str, Controller] = {}

    def controller() -> Controller:
        return holder["controller"]

    metrics.count_requests(local, "local")
    clusters = ClusterPool(
        options.policy, lambda keys: controller().wake(keys), instrument=metrics.count_requests
    )
    drift = DriftWatches(
        lambda key: controller().wake([key]),
        lambda *write: controller().reconciler.is_echo(*write),
    )
    parent = ParentKubeconfig(
        options.parent_kubeconfig,
        options.policy,
        lambda: controller().wake_parent_to_child(),
        interval=options.parent_poll_interval,
    )
    parent.refresh()
    events = EventRecorder(local, on_posted=metrics.writes.labels("Event", "created").inc)
    reconciler = Reconciler(
        local=local,
        local_target=local_target,
        clusters=clusters,
        parent=parent,
        drift=drift,
        events=events,
        policy=options.policy,
        allow_cross_namespace=options.allow_cross_namespace,
        observe=lambda body: controller().observe(body),
        metrics=metrics,
        fence=Fence(
            controller_namespace=options.controller_namespace,
            mint_namespaces=options.mint_namespaces,
        ),
    )
    holder["controller"] = Controller(reconciler, options.timing, metrics)
    ctl = controller()
    reconciler.source_version = ctl.source_version
    reconciler.ctx.sources.held = ctl.held
    sets = LandingSets(local, events)

    def secret_event(event_type: str, meta: Mapping[str, Any]) -> None:
        ctl.secret_event(event_type, meta)
        sets.secret_event(event_type, meta)

    def landing_event(event_type: str, body: Mapping[str, Any]) -> None:
        ctl.landing_event(event_type, body)
        sets.landing_event(event_type, body)

    secrets = secret_metadata_watch(local, secret_event, options.namespaces)
    landings = ListWatch(local, LANDINGS, landing_event, options.namespaces)
    landing_sets = ListWatch(local, LANDING_SETS, sets.set_event, options.namespaces)
    policies = PolicyWatch(local, ctl.policy_event, ctl.namespace_event)
    webhook_ready = asyncio.Event()
    elector: LeaderElector | None = None
    membership: Membership | None = None
    if options.shards:
        if options.leader_elect:
            raise SystemExit("--shards and --leader-elect exclude each other")
        namespace = options.leader_election_namespace or os.environ.get("POD_NAMESPACE")
        if not namespace:
            raise SystemExit("--shards needs --leader-election-namespace or $POD_NAMESPACE")
        identity = _identity()
        membership = Membership(
            local,
            MembershipConfig(options.leader_election_id, namespace, identity),
            lambda members: _rebalance(members, ctl, sets),
        )
        shards = Shards(identity, membership_live(membership))
        ctl.shards = sets.shards = shards
    if options.leader_elect:
        namespace = options.leader_election_namespace or os.environ.get("POD_NAMESPACE")
        if not namespace:
            raise SystemExit("--leader-elect needs --leader-election-namespace or $POD_NAMESPACE")
        elector = LeaderElector(
            local, LeaseConfig(options.leader_election_id, namespace, _identity())
        )

    def snapshot() -> Snapshot:
        reasons: dict[str, int] = {}
        for outcome in ctl.last_outcomes.values():
            reasons[outcome.reason.value] = reasons.get(outcome.reason.value, 0) + 1
        return Snapshot(
            reasons=reasons,
            token_expiry=dict(reconciler.token_expiry),
            clusters=[ClusterHealth(t.reachable) for t in clusters.targets()],
            queue_depth=len(ctl.queue),
            leader=elector.is_leader.is_set() if elector else True,
        )

    metrics.watch_state(snapshot)
    # A standby replica is ready (healthy, waiting for the Lease); the leader is ready once
    # its watches have listed what exists. Every replica serves the webhook.
    leading = elector.is_leader.is_set if elector else (lambda: True)
    probes.add("landing watch", lambda: not leading() or landings.ready.is_set())
    probes.add("landingset watch", lambda: not leading() or landing_sets.ready.is_set())
    probes.add("secret watch", lambda: not leading() or secrets.ready.is_set())
    probes.add("policy watch", lambda: not leading() or policies.ready.is_set())
    if membership is not None:
        probes.add("shard membership", membership.ready.is_set)
    if options.webhook_port is not None:
        probes.add("admission webhook", webhook_ready.is_set)
    runner = await health.serve(
        probes,
        metrics,
        health_port=options.health_port,
        metrics_port=options.metrics_port,
        host=options.bind_address,
        auth=MetricsAuth(ApiReviews(local)) if options.metrics_auth else None,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    background: list[asyncio.Task[Any]] = []
    webhook_runner: web.AppRunner | None = None
    try:
        # Every replica watches and serves the admission webhook (a standby behind the
        # webhook Service must answer too); only the Lease holder's workers reconcile.
        background += [
            asyncio.create_task(parent.watch()),
            asyncio.create_task(landings.run()),
            asyncio.create_task(landing_sets.run()),
            asyncio.create_task(secrets.run()),
            asyncio.create_task(policies.run()),
            asyncio.create_task(_evict_idle_clients(clusters, drift)),
        ]
        # The webhook answers from the start, on every replica (a standby behind the webhook
        # Service must answer too); it needs no watch.
        if tls is not None:
            assert options.webhook_port is not None
            reviewer = Reviewer(KubeCluster(local), options.policy)
            try:
                webhook_runner = await webhook.serve(
                    reviewer, tls, host=options.bind_address, port=options.webhook_port
                )
            except OSError as err:
                raise SystemExit(f"--webhook-port {options.webhook_port}: {err}") from None
            background.append(asyncio.create_task(tls.watch()))
            webhook_ready.set()
        # The process lives until a signal.
        stopping = asyncio.create_task(stop.wait())
        if membership is not None:
            background.append(asyncio.create_task(membership.run()))
        if elector is not None:
            background.append(asyncio.create_task(elector.run()))
            log.info("waiting for the leader Lease %s", elector.config.name)
            waiter = asyncio.create_task(elector.is_leader.wait())
            await asyncio.wait({waiter, stopping}, return_when="FIRST_COMPLETED")
            if stopping.done():
                return
            background.append(asyncio.create_task(_exit_when_lost(elector, stop)))
        log.info(
            "moonlander running: local %s, parent kubeconfig %s, namespaces %s",
            config.cluster.server,
            options.parent_kubeconfig,
            ",".join(options.namespaces) or "all",
        )
        # Landings are reconciled once the policies that may grant them are known (until
        # then /readyz says "policy watch").
        waiter = asyncio.create_task(policies.ready.wait())
        await asyncio.wait({waiter, stopping}, return_when="FIRST_COMPLETED")
        if stopping.done():
            return
        ctl.start()
        background.append(asyncio.create_task(_start_when_listed(sets, landings, secrets)))
        log.info("LandingPolicies listed: reconciling")
        await stopping
        log.info("shutting down")
    finally:
        started = time.monotonic()
        await sets.stop()
        if "controller" in holder:
            await ctl.stop(grace=SHUTDOWN_GRACE)
        for task in background:
            task.cancel()
        if elector is not None:
            await elector.release()
        if membership is not None:
            await membership.release()
        await drift.close()
        await events.flush()
        await clusters.close()
        if webhook_runner is not None:
            await webhook_runner.cleanup()
        if runner is not None:
            await runner.cleanup()
        await close_client(local)
        log.info("stopped in %.1fs", time.monotonic() - started)


async def _evict_idle_clients(clusters: ClusterPool, drift: DriftWatches) -> None:
    """Clients of credentials no Landing uses any more (rotated, or the Landing deleted)
    are closed once idle; clients with a live drift watch stay."""
    while True:
        await asyncio.sleep(60)
        await clusters.evict_idle(in_use=drift.in_use())


async def _start_when_listed(sets: LandingSets, *watches: ListWatch) -> None:
    """LandingSets plan from the watches' view: not before it holds what exists."""
    for watch in watches:
        await watch.ready.wait()
    sets.start()


def membership_live(membership: Membership) -> Callable[[], bool]:
    return lambda: membership.live


def _rebalance(members: tuple[str, ...], ctl: Controller, sets: LandingSets) -> None:
    assert ctl.shards is not None
    ctl.shards.update(members)
    ctl.rebalance()
    sets.rebalance()


async def _exit_when_lost(elector: LeaderElector, stop: asyncio.Event) -> None:
    await elector.lost.wait()
    log.error("lost the leader Lease; exiting so that only one replica reconciles")
    stop.set()
    # Do not wait for a graceful shutdown: another replica may already be reconciling.
    await asyncio.sleep(2)
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(1)
