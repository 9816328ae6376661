"""Watches on landed Secrets in remote clusters, so edits and deletions are repaired.

One cluster-wide watch per target cluster, selecting only Secrets labelled as managed by
Moonlander, on a connection of its own (so a watch never takes a connection the reconciles
need). If the credential may not watch Secrets cluster-wide, it falls back to one watch per
namespace that Landings write to. A watch lives while at least one Landing lands in that
cluster. Landed Secrets in the controller's own cluster are seen by the operator's Secret
watch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.backoff import backoff_delay
from moonlander.clusters import Target, annotations_of

log = logging.getLogger(__name__)

_SELECTOR: dict[str, Any] = {api.MANAGED_BY_LABEL: api.MANAGED_BY}


class _ClusterWatch:
    def __init__(self, target: Target, enqueue: Callable[[str], None]) -> None:
        self.target = target
        self.enqueue = enqueue
        self.landings: dict[str, str] = {}  # landing key -> namespace it lands in
        self.namespaced = False  # fell back to per-namespace watches
        self.tasks: dict[str | None, asyncio.Task[None]] = {}  # None: the cluster-wide watch

    def sync(self) -> None:
        """Starts or stops watches so they cover exactly what the Landings need."""
        wanted: set[str | None] = set(self.landings.values()) if self.namespaced else {None}
        for ns in list(self.tasks):
            if ns not in wanted:
                self.tasks.pop(ns).cancel()
        for ns in wanted:
            if ns not in self.tasks:
                self.tasks[ns] = asyncio.create_task(self._run(ns))

    async def _run(self, namespace: str | None) -> None:
        failures = 0
        client = self.target.watch_client()
        while True:
            try:
                async for _op, secret in client.watch(
                    Secret, namespace=namespace or "*", labels=_SELECTOR, server_timeout=300
                ):
                    failures = 0
                    owner = annotations_of(secret).get(api.OWNER_ANNOTATION)
                    if owner:
                        self.enqueue(owner)
            except ApiError as err:
                if err.status.code == 403 and namespace is None:
                    log.info(
                        "cannot watch Secrets cluster-wide in %s; watching per namespace",
                        self.target.server,
                    )
                    self.namespaced = True
                    self.tasks.pop(None, None)
                    self.sync()
                    return
                failures += 1
                log.debug("drift watch on %s: %s", self.target.server, err.status.code)
            except httpx2.HTTPError as err:
                failures += 1
                log.debug("drift watch on %s: %s", self.target.server, type(err).__name__)
            await asyncio.sleep(backoff_delay(max(failures, 1), cap=30.0))

    def close(self) -> list[asyncio.Task[None]]:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        self.tasks.clear()
        return tasks


class DriftWatches:
    def __init__(self, enqueue: Callable[[str], None]) -> None:
        self._enqueue = enqueue
        self._clusters: dict[str, _ClusterWatch] = {}
        self._by_landing: dict[str, str] = {}  # landing key -> target key

    def watch(self, target: Target, namespace: str, landing_key: str) -> None:
        if target.local:
            self.release(landing_key)
            return
        if self._by_landing.get(landing_key) not in (None, target.key):
            self.release(landing_key)
        cluster = self._clusters.get(target.key)
        if cluster is None:
            cluster = self._clusters[target.key] = _ClusterWatch(target, self._enqueue)
        if cluster.landings.get(landing_key) == namespace:
            return
        cluster.landings[landing_key] = namespace
        self._by_landing[landing_key] = target.key
        cluster.sync()

    def release(self, landing_key: str) -> None:
        key = self._by_landing.pop(landing_key, None)
        cluster = self._clusters.get(key) if key else None
        if cluster is None:
            return
        cluster.landings.pop(landing_key, None)
        if cluster.landings:
            cluster.sync()
        else:
            del self._clusters[key]  # type: ignore[arg-type]
            cluster.close()

    def in_use(self) -> set[str]:
        return set(self._clusters)

    def watch_count(self) -> int:
        return sum(len(c.tasks) for c in self._clusters.values())

    async def close(self) -> None:
        tasks = [t for c in self._clusters.values() for t in c.close()]
        self._clusters.clear()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
