"""Watches on what Moonlander wrote in other clusters, so edits and deletions are repaired.

Landed Secrets in target clusters, and minted ServiceAccounts in the clusters they grant
access to, are watched with a label selector (only objects managed by Moonlander). One
cluster-wide watch per (cluster, kind), on a connection of its own so that a watch never
takes a connection the reconciles need; if the credential may not watch cluster-wide it
falls back to one watch per namespace of interest. A watch lives while at least one
Landing needs it. Objects in the controller's own cluster are seen by its own watches.
Each watch is a ``kube/watch.py`` ListWatch (label-selected, paged, relisted after a fault)
with this module as its listener: the objects it reports are an informer cache that spares
reconciles a read, trusted for a scope only between the end of a list and the next fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from moonlander import api
from moonlander.api import ownership as own
from moonlander.kube.clusters import Target
from moonlander.kube.watch import Collection, Listener, ListWatch, namespaced

log = logging.getLogger(__name__)

_SELECTOR = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
# Objects per list page: pages stay far below the response size cap (kube/clusters.py).
LIST_PAGE = 100
COLLECTIONS = {
    "Secret": Collection("landed Secret", namespaced("/api/v1", "secrets")),
    "ServiceAccount": Collection("minted ServiceAccount", namespaced("/api/v1", "serviceaccounts")),
}
WatchKey = tuple[str, str]  # (target key, kind)
# (target key, namespace, name, resourceVersion, content digest or None) -> our own write?
EchoCheck = Callable[[str, str, str, str, str | None], bool]


def _version(meta: dict[str, Any]) -> int:
    # resourceVersions are opaque, but every apiserver backed by etcd uses its revision.
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


class _ClusterWatch(Listener):
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
        self.listed_once: set[str | None] = set()  # watches that have listed at least once
        # Per scope while it is being listed: the Landings known when the list began, and
        # the objects listed so far.
        self._known_at_list: dict[str | None, list[str]] = {}
        self._listed_now: dict[str | None, list[dict[str, Any]]] = {}

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
                self.synced.discard(ns)
        for ns in wanted:
            if ns not in self.tasks:
                watch = ListWatch(
                    self.target.watch_client(),
                    COLLECTIONS[self.kind],
                    self._event,
                    (ns,),
                    LIST_PAGE,
                    labels=_SELECTOR,
                    listener=self,
                    keep_annotations=(api.OWNER_ANNOTATION,),
                    retry_cap=30.0,
                    quiet=True,  # a tenant's cluster: its faults are not the operator's
                    relist_after_error=True,
                )
                self.tasks[ns] = asyncio.create_task(watch.run())

    # -- the ListWatch's Listener ---------------------------------------------------------

    def listing(self, scope: str | None) -> None:
        # Landings known before the list begins: what they wrote is in it or comes by the
        # watch after it; those that start later are covered by both anyway.
        self._known_at_list[scope] = [
            landing
            for landing, interest in self.landings.items()
            if scope is None or interest == scope
        ]
        self._listed_now[scope] = []

    def listed(self, scope: str | None) -> None:
        seen = self._listed_now.pop(scope, [])
        known = self._known_at_list.pop(scope, [])
        keys = {(b["metadata"].get("namespace", ""), b["metadata"].get("name", "")) for b in seen}
        for key in [k for k in self.objects if scope is None or k[0] == scope]:
            if key not in keys:
                # Deleted while no watch was running (its DELETED event was never seen).
                gone = self.objects.pop(key)
                owner = ((gone.get("metadata") or {}).get("annotations") or {}).get(
                    api.OWNER_ANNOTATION
                )
                if owner:
                    self.enqueue(owner)
        if scope not in self.listed_once:
            # The first list of this watch: what its Landings wrote before it existed may
            # have changed or gone before it began; they check once — all but those whose
            # Secret the list shows exactly as they wrote it, and those that came after the
            # list began (in a burst, most of them).
            self.listed_once.add(scope)
            intact = self._intact(seen) if self.kind == "Secret" else set()
            for landing in known:
                if landing not in intact:
                    self.enqueue(landing)
        self.synced.add(scope)

    def interrupted(self, scope: str | None) -> None:
        # Until the next list completes, the cache may miss changes: reads go to the API.
        self.synced.discard(scope)
        self._listed_now.pop(scope, None)

    def forbidden(self, scope: str | None) -> bool:
        if scope is not None:
            return False  # retried with backoff, like any fault
        log.info(
            "cannot watch %ss cluster-wide in %s; watching per namespace",
            self.kind,
            self.target.server,
        )
        self.namespaced = True
        self.tasks.pop(None, None)
        self.synced.discard(None)
        self.sync()
        return True

    def _event(self, op: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        listing = self._listed_now.get(namespace if self.namespaced else None)
        if op == "DELETED":
            # From the watch, or from a relist: deleted while no watch was running.
            self.objects.pop((namespace, name), None)
        else:
            self.remember(dict(body))
            if listing is not None:
                listing.append(dict(body))
                return  # listed: judged once the list is complete (``listed``)
        owner = (meta.get("annotations") or {}).get(api.OWNER_ANNOTATION)
        if not owner:
            return
        digest = own.secret_digest(body) if self.kind == "Secret" and op != "DELETED" else None
        echo = op != "DELETED" and self.is_echo(
            self.target.key, namespace, name, meta.get("resourceVersion", ""), digest
        )
        if not echo:
            self.enqueue(owner)

    def _intact(self, bodies: Iterable[Mapping[str, Any]]) -> set[str]:
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
