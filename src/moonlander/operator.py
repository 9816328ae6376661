"""``moonlander run``: kopf watches wired to the controller, and the process around them.

The kopf handlers are deliberately thin: they hand each watch event to the controller and
return. kopf stores nothing on Landings (no change handlers, so no progress or diff-base
annotations); the controller owns its finalizer, retries and status.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from moonlander import api
from moonlander.clusters import ClusterPool, Target, close_client
from moonlander.controller import Controller, Timing
from moonlander.drift import DriftWatches
from moonlander.events import EventRecorder
from moonlander.kubeconfig import Policy
from moonlander.parent import ParentKubeconfig
from moonlander.reconcile import Reconciler
from moonlander.sources import SecretMetadataWatch

log = logging.getLogger(__name__)

DEFAULT_PARENT_KUBECONFIG = Path("/etc/moonlander/parent-kubeconfig")


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None = None  # the cluster Moonlander runs in; None: in-cluster
    parent_kubeconfig: Path = DEFAULT_PARENT_KUBECONFIG
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    policy: Policy = field(default_factory=Policy)
    allow_cross_namespace: bool = False
    timing: Timing = field(default_factory=Timing)
    parent_poll_interval: float = 1.0


def local_config(path: Path | None) -> SingleConfig:
    """The controller's own cluster: an operator-chosen file, else the pod's ServiceAccount."""
    config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_service_account()
    single = config.get()
    if single is None:
        raise SystemExit(f"{path}: no current context")
    return single


def build_registry(controller: Controller, options: Options) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def _settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 30

    @kopf.on.login(registry=registry)
    def _login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        if options.kubeconfig is not None:
            os.environ["KUBECONFIG"] = str(options.kubeconfig)
            return kopf.login_with_kubeconfig(settings=settings, **kwargs)
        return kopf.login_with_service_account(settings=settings, **kwargs)

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    def _landing(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.landing_event(type, dict(body))

    return registry


async def run(options: Options) -> None:
    config = local_config(options.kubeconfig)
    local = AsyncClient(config, field_manager=api.FIELD_MANAGER, trust_env=False)
    local_target = Target(key="local", server=config.cluster.server, client=local, local=True)
    controller: Controller | None = None

    def wake(keys: Any) -> None:
        assert controller is not None
        controller.wake(keys)

    def enqueue(key: str) -> None:
        assert controller is not None
        controller.wake([key])

    def parent_changed() -> None:
        assert controller is not None
        controller.wake_parent_to_child()

    clusters = ClusterPool(options.policy, wake)
    drift = DriftWatches(enqueue)
    parent = ParentKubeconfig(
        options.parent_kubeconfig,
        options.policy,
        parent_changed,
        interval=options.parent_poll_interval,
    )
    parent.refresh()
    events = EventRecorder(local)

    def observe(body: Any) -> None:
        assert controller is not None
        controller.observe(body)

    reconciler = Reconciler(
        local=local,
        local_target=local_target,
        clusters=clusters,
        parent=parent,
        drift=drift,
        events=events,
        policy=options.policy,
        allow_cross_namespace=options.allow_cross_namespace,
        observe=observe,
    )
    controller = Controller(reconciler, options.timing)
    registry = build_registry(controller, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    secrets = SecretMetadataWatch(
        local, lambda _type, meta: controller.secret_event(meta), options.namespaces
    )
    controller.start()
    background = [asyncio.create_task(parent.watch()), asyncio.create_task(secrets.run())]
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            stop_flag=stop,
        )
    )
    log.info(
        "moonlander running: local %s, parent kubeconfig %s, namespaces %s",
        config.cluster.server,
        options.parent_kubeconfig,
        ",".join(options.namespaces) or "all",
    )
    try:
        await operator
    finally:
        for task in background:
            task.cancel()
        await controller.stop()
        await drift.close()
        await events.flush()
        await clusters.close()
        await close_client(local)
