"""Watches on what Moonlander wrote in other clusters, so edits and deletions are repaired.

Landed Secrets in target clusters, and minted ServiceAccounts in the clusters they grant
access to, are watched with a label selector (only objects managed by Moonlander). One
cluster-wide watch per (cluster, kind), on a connection of its own so that a watch never
takes a connection the reconciles need; if the credential may not watch cluster-wide it
falls back to one watch per namespace of interest. A watch lives while at least one
Landing needs it. Objects in the controller's own cluster are seen by its own watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Secret, ServiceAccount

from moonlander import api
from moonlander.api import ownership as own
from moonlander.kube.backoff import backoff_delay
from moonlander.kube.clusters import Target, annotations_of

log = logging.getLogger(__name__)

_SELECTOR: dict[str, Any] = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
# Objects per list page: pages stay far below the response size cap (kube/clusters.py).
LIST_PAGE = 100
KINDS: dict[str, Any] = {"Secret": Secret, "ServiceAccount": ServiceAccount}
WatchKey = tuple[str, str]  # (target key, kind)
# (target key, namespace, name, resourceVersion, content digest or None) -> our own write?
EchoCheck = Callable[[str, str, str, str, str | None], bool]


def _version(meta: dict[str, Any]) -> int:
    # resourceVersions are opaque, but every apiserver backed by etcd uses its revision.
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


class _ClusterWatch:
    def __init__(
        self, target: Target, kind: str, enqueue: Callable[[str], None], is_echo: EchoCheck
    ) -> None:
        self.target = target
        self.kind = kind
        self.enqueue = enqueue
        self.is_echo = is_echo
        self.landings: dict[str, str] = {}  # landing key -> namespace of interest
        self.namespaced = False  # fell back to per-namespace watches
        self.tasks: dict[str | None, asyncio.Task[None]] = {}  # None: the cluster-wide watch
        # The objects the watches see, by (namespace, name), as JSON: an informer cache that
        # spares reconciles a read. Trusted only where a list has completed ("synced").
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced: set[str | None] = set()
        self.listed: set[str | None] = set()  # watches that have listed at least once

    def covers(self, namespace: str) -> bool:
        return (namespace if self.namespaced else None) in self.synced

    def remember(self, obj: dict[str, Any]) -> None:
        """Records an object as seen, unless the cache already holds a newer version."""
        meta = obj.get("metadata") or {}
        if "managedFields" in meta:  # often larger than the object itself, and never read
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        data = obj.get("data")
        if isinstance(data, dict):
            # Landings of one credential land the same values: one copy of each is kept (at
            # 10,000 Landings of one parent kubeconfig, a few KB instead of some 100 MB).
            # Interned strings are freed like others once nothing holds them.
            shared = {k: sys.intern(v) if type(v) is str else v for k, v in data.items()}
            obj = {**obj, "data": shared}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        current = self.objects.get(key)
        if current is None or _version(meta) >= _version(current.get("metadata") or {}):
            self.objects[key] = obj

    def sync(self) -> None:
        """Starts or stops watches so they cover exactly what the Landings need."""
        wanted: set[str | None] = set(self.landings.values()) if self.namespaced else {None}
        for ns in list(self.tasks):
            if ns not in wanted:
                self.tasks.pop(ns).cancel()
        for ns in wanted:
            if ns not in self.tasks:
                self.tasks[ns] = asyncio.create_task(self._run(ns))

    async def _list(self, namespace: str | None) -> str:
        """Lists what exists (replacing what the cache held there); returns the version to
        watch from."""
        # Landings known before the list begins: what they wrote is in it or comes by the
        # watch after it; those that start later are covered by both anyway.
        known = [
            landing
            for landing, interest in self.landings.items()
            if namespace is None or interest == namespace
        ]
        listing = self.target.watch_client().list(
            KINDS[self.kind], namespace=namespace or "*", labels=_SELECTOR, chunk_size=LIST_PAGE
        )
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        async for obj in listing:
            body = obj.to_dict()
            meta = body["metadata"]
            seen[(meta.get("namespace", ""), meta["name"])] = body
        for key in [k for k in self.objects if namespace is None or k[0] == namespace]:
            if key not in seen:
                # Deleted while no watch was running (its DELETED event was never seen).
                gone = self.objects.pop(key)
                owner = ((gone.get("metadata") or {}).get("annotations") or {}).get(
                    api.OWNER_ANNOTATION
                )
                if owner:
                    self.enqueue(owner)
        for body in seen.values():
            self.remember(body)
        if namespace not in self.listed:
            # The first list of this watch: what its Landings wrote before it existed may
            # have changed or gone before it began; they check once — all but those whose
            # Secret the list shows exactly as they wrote it, and those that came after the
            # list began (in a burst, most of them).
            self.listed.add(namespace)
            intact = self._intact(seen.values()) if self.kind == "Secret" else set()
            for landing in known:
                if landing not in intact:
                    self.enqueue(landing)
        self.synced.add(namespace)
        return listing.resourceVersion

    def _intact(self, bodies: Iterable[dict[str, Any]]) -> set[str]:
        """The owners of listed Secrets that are exactly what this controller last wrote."""
        owners = set()
        for body in bodies:
            meta = body["metadata"]
            owner = (meta.get("annotations") or {}).get(api.OWNER_ANNOTATION)
            digest = own.secret_digest(body)
            ref = (self.target.key, meta.get("namespace", ""), meta["name"])
            if owner and self.is_echo(*ref, meta.get("resourceVersion", ""), digest):
                owners.add(owner)
        return owners

    async def _run(self, namespace: str | None) -> None:
        failures = 0
        client = self.target.watch_client()
        resource = KINDS[self.kind]
        while True:
            try:
                version = await self._list(namespace)
                async for op, obj in client.watch(
                    resource,
                    namespace=namespace or "*",
                    labels=_SELECTOR,
                    server_timeout=300,
                    resource_version=version,
                ):
                    failures = 0
                    body = obj.to_dict()
                    meta = obj.metadata
                    if meta is None:
                        continue
                    if op == "DELETED":
                        self.objects.pop((meta.namespace or "", meta.name or ""), None)
                    else:
                        self.remember(body)
                    owner = annotations_of(obj).get(api.OWNER_ANNOTATION)
                    if not owner:
                        continue
                    digest = own.secret_digest(body) if self.kind == "Secret" else None
                    echo = op != "DELETED" and self.is_echo(
                        self.target.key,
                        meta.namespace or "",
                        meta.name or "",
                        meta.resourceVersion or "",
                        digest,
                    )
                    if not echo:
                        self.enqueue(owner)
            except ApiError as err:
                if err.status.code == 403 and namespace is None:
                    log.info(
                        "cannot watch %ss cluster-wide in %s; watching per namespace",
                        self.kind,
                        self.target.server,
                    )
                    self.namespaced = True
                    self.tasks.pop(None, None)
                    self.sync()
                    return
                failures += 1
                log.debug("%s watch on %s: %s", self.kind, self.target.server, err.status.code)
            except Exception as err:  # whatever a tenant's server answered
                # Transport errors, the size cap, a deadline, or the client library failing on
                # an answer no API server sends: the watch starts over after a backoff.
                failures += 1
                log.debug("%s watch on %s: %s", self.kind, self.target.server, type(err).__name__)
            # Until the next list completes, the cache may miss changes: reads go to the API.
            self.synced.discard(namespace)
            await asyncio.sleep(backoff_delay(max(failures, 1), cap=30.0))

    def close(self) -> list[asyncio.Task[None]]:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        self.tasks.clear()
        return tasks


class DriftWatches:
    def __init__(
        self,
        enqueue: Callable[[str], None],
        is_echo: EchoCheck = lambda _t, _ns, _n, _v, _d: False,
    ) -> None:
        self._enqueue = enqueue
        self._is_echo = is_echo
        self._watches: dict[WatchKey, _ClusterWatch] = {}
        self._by_landing: dict[str, set[WatchKey]] = {}

    def track(self, landing_key: str, wanted: Iterable[tuple[Target, str, str]]) -> None:
        """Declares what this Landing wrote, as (cluster, namespace, kind): watches it
        needs start, and those it no longer needs are released."""
        keys: set[WatchKey] = set()
        for target, namespace, kind in wanted:
            if target.local:
                continue
            wkey = (target.key, kind)
            keys.add(wkey)
            watch = self._watches.get(wkey)
            if watch is None:
                watch = self._watches[wkey] = _ClusterWatch(
                    target, kind, self._enqueue, self._is_echo
                )
            if watch.landings.get(landing_key) != namespace:
                watch.landings[landing_key] = namespace
                watch.sync()
        for stale in self._by_landing.get(landing_key, set()) - keys:
            self._drop(stale, landing_key)
        if keys:
            self._by_landing[landing_key] = keys
        else:
            self._by_landing.pop(landing_key, None)

    def release(self, landing_key: str) -> None:
        for wkey in self._by_landing.pop(landing_key, set()):
            self._drop(wkey, landing_key)

    def _drop(self, wkey: WatchKey, landing_key: str) -> None:
        watch = self._watches.get(wkey)
        if watch is None:
            return
        watch.landings.pop(landing_key, None)
        if watch.landings:
            watch.sync()
        else:
            del self._watches[wkey]
            watch.close()

    def cached(
        self, target: Target, namespace: str, name: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """(True, the landed Secret or None if absent) when the target's Secret watch has a
        complete picture of that namespace; (False, None) when only a read can tell."""
        watch = self._watches.get((target.key, "Secret"))
        if watch is None or not watch.covers(namespace):
            return False, None
        return True, watch.objects.get((namespace, name))

    def remember(
        self, target: Target, obj: dict[str, Any] | None, namespace: str, name: str
    ) -> None:
        """Our own write (``obj``) or delete (None), so the next reconcile sees it even
        before the watch event arrives."""
        watch = self._watches.get((target.key, "Secret"))
        if watch is None:
            return
        if obj is None:
            watch.objects.pop((namespace, name), None)
        else:
            watch.remember(obj)

    def in_use(self) -> set[str]:
        return {wkey[0] for wkey in self._watches}

    async def close(self) -> None:
        tasks = [t for w in self._watches.values() for t in w.close()]
        self._watches.clear()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
