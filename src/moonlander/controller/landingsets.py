"""LandingSets: keep each set's generated Landings true (I/O; the decisions are in ``fleet``).

The controller's watches keep, in memory, every Secret's name and labels and every generated
Landing (by set); watch events update that view and say which set to look at. A reconcile
plans from the view, which also records the set's own writes as they are answered (a
Landing just created is not created again before its watch event). A deletion is never
decided from the view: before deleting, the reconcile lists the namespace's Secrets from the
API server and plans again, so a Secret not yet seen cannot delete a Landing. The view is
complete before any set is reconciled (``start`` waits for both watches' first lists).
Generated Landings are ordinary Landings; the Landing controller reconciles, authorizes and
finalizes them like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import msgspec
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from moonlander import api
from moonlander.api.landingset import SET_LABEL, LandingSet, LandingSetStatus
from moonlander.api.reasons import SetReason
from moonlander.controller import fleet, inventory
from moonlander.controller.profiles import CRD_NAME as PROFILE_CRD
from moonlander.controller.sharding import Shards
from moonlander.controller.workers import Attempts, Workers
from moonlander.controller.workqueue import WorkQueue
from moonlander.kube.events import EventRecorder
from moonlander.kube.resources import LandingResource, LandingSetResource
from moonlander.kube.sources import list_labels

log = logging.getLogger(__name__)

WORKERS = 2
# Cluster API's Cluster, read for its name and labels only (v1beta2: CAPI 1.11 and later).
CAPI_VERSION = "cluster.x-k8s.io/v1beta2"
CapiCluster: Any = create_namespaced_resource("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
RESYNC = 300.0  # seconds; a set is looked at again even when no event says so
CONCURRENT_WRITES = 16  # Landing creates of one set in flight at once
# A generated Landing's event (its status changed, or a hand edit) looks at its set this much
# later: a fleet's Landings converge together, and the set's counts and corrections need one
# reconcile (planning the whole fleet) per burst, not one per Landing.
LANDING_SETTLE = 1.0
# A tenant Secret's event looks at its set this much later: one more tenant is still landed
# within a second, and 1,000 Secrets appearing together make a few reconciles of the set,
# each planning the whole fleet, not one per handful of Secrets.
SECRET_SETTLE = 0.2


class LandingSets:
    def __init__(self, local: AsyncClient, events: EventRecorder) -> None:
        self._local = local
        self._events = events
        self._sets: dict[str, LandingSet | api.SpecError] = {}
        self._gone: dict[str, LandingSet] = {}  # deleted sets whose Landings are not yet deleted
        self._statuses: dict[str, LandingSetStatus] = {}
        self._attempts = Attempts(cap=60.0)
        self._queue = WorkQueue()
        self.shards: Shards | None = None  # with --shards: the sets this replica owns
        self._workers = Workers(self._queue, WORKERS, self._process, lambda: self.shards)
        # The view: Secrets' labels by namespace and name; generated Landings by set key and
        # name (their bodies without managedFields); which set each generated Landing is in.
        self._secrets: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        self._members: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._member_of: dict[str, str] = {}
        # Per set: its (uid, generation) and the template's stamps for that version.
        self._memos: dict[str, tuple[tuple[str, int | None], fleet.Memo]] = {}

    # -- events (synchronous: called from the watches) ----------------------------------------

    def set_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            previous = self._sets.pop(key, None)
            if isinstance(previous, LandingSet):
                self._gone[key] = previous
            self._statuses.pop(key, None)
            self._memos.pop(key, None)
        else:
            try:
                self._sets[key] = api.parse_landingset(body)
            except api.SpecError as err:
                self._sets[key] = err
            self._gone.pop(key, None)
        self._queue.add(key)

    def secret_event(self, event_type: str, meta: Mapping[str, Any]) -> None:
        namespace = str(meta.get("namespace", ""))
        name = str(meta.get("name", ""))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            # Being deleted is gone: its Landing is deleted while the Secret, still held by
            # that Landing (controller.holds), lets it revoke what it landed.
            self._secrets[namespace].pop(name, None)
        else:
            self._secrets[namespace][name] = {
                str(k): str(v) for k, v in (meta.get("labels") or {}).items()
            }
        for key in self._sets:
            if key.startswith(f"{namespace}/"):
                self._queue.add_after(key, SECRET_SETTLE)

    def landing_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SET_LABEL)
        if event_type == "DELETED":
            self._forget_member(meta)
        else:
            self._remember_member(body)
        if owner:
            self._queue.add_after(f"{meta.get('namespace')}/{owner}", LANDING_SETTLE)

    def _remember_member(self, body: Mapping[str, Any]) -> None:
        """A Landing as last seen (watch event or our write's answer); one with no set label
        is in no set's view (a hand edit that removed it included)."""
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SET_LABEL)
        landing_key = f"{meta.get('namespace')}/{meta.get('name')}"
        previous = self._member_of.get(landing_key)
        set_key = f"{meta.get('namespace')}/{owner}" if owner else None
        if previous is not None and previous != set_key:
            self._members[previous].pop(str(meta.get("name")), None)
            del self._member_of[landing_key]
        if set_key is None:
            return
        kept = {k: v for k, v in meta.items() if k != "managedFields"}
        self._members[set_key][str(meta.get("name"))] = {**body, "metadata": kept}
        self._member_of[landing_key] = set_key

    def _forget_member(self, meta: Mapping[str, Any]) -> None:
        set_key = self._member_of.pop(f"{meta.get('namespace')}/{meta.get('name')}", None)
        if set_key is not None:
            self._members[set_key].pop(str(meta.get("name")), None)

    def rebalance(self) -> None:
        if self.shards is None:
            return
        delay = self.shards.settled_in() + 0.05
        for key in [*self._sets, *self._gone]:
            if self.shards.gained(key):
                self._queue.add_after(key, delay)

    # -- workers --------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the workers. The caller does so once the Secret and Landing watches have
        listed (operator.py), so that the view holds what exists."""
        self._workers.start()

    async def stop(self) -> None:
        await self._workers.stop()

    async def _process(self, key: str) -> None:
        try:
            await self.reconcile(key)
            self._attempts.reset(key)
            if key in self._sets:
                self._queue.add_after(key, RESYNC)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # an API fault: retry with backoff, never crash a worker
            log.warning("LandingSet %s: %s; retrying", key, _describe(err))
            self._queue.add_after(key, self._attempts.next_delay(key))
        finally:
            self._queue.done(key)

    async def reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        landing_set = self._sets.get(key)
        if landing_set is None:
            gone = self._gone.pop(key, None)
            if gone is not None:
                await self._delete_all(gone)
            return
        if isinstance(landing_set, api.SpecError):
            await self._write_invalid(namespace, name, landing_set)
            return
        problems: list[str] = []
        clusters: dict[str, dict[str, str]] | None = None
        if any(g.cluster_api is not None for g in landing_set.spec.generators):
            clusters = await self._clusters(namespace)
            if clusters is None:
                problems.append(f"Cluster API: {CAPI_VERSION} Clusters are not served here")
        profiles: dict[str, dict[str, str]] | None = None
        if any(g.cluster_profiles is not None for g in landing_set.spec.generators):
            profiles = await self._profiles(namespace)
            if profiles is None:
                problems.append(f"ClusterProfiles: {PROFILE_CRD} is not served here")
        existing = self._generated(landing_set)
        memo = self._memo(landing_set, len(self._secrets[namespace]))
        generated = fleet.generate(landing_set, self._secrets[namespace], clusters, memo, profiles)
        plan = fleet.plan(landing_set, generated, existing)
        if plan.delete:
            # Deletions are decided from the API server's Secrets, never from the view.
            secrets = await list_labels(self._local, namespace)
            generated = fleet.generate(landing_set, secrets, clusters, memo, profiles)
            plan = fleet.plan(landing_set, generated, existing)
        limit = asyncio.Semaphore(CONCURRENT_WRITES)
        created: list[str] = []

        async def create(wanted: fleet.Wanted) -> None:
            async with limit:
                try:
                    written = await self._local.create(
                        LandingResource.from_dict(fleet.landing_body(landing_set, wanted))
                    )
                    self._remember_member(written.to_dict())
                except ApiError as err:
                    if err.status.code != 409:
                        raise
                    plan.blocked[wanted.name] = (
                        "a Landing of that name exists and is not this set's"
                    )
                    return
            created.append(wanted.name)

        # A fleet's Secrets often appear together: create their Landings side by side, and
        # say so in one Event per kind of change, not one per Landing.
        try:
            await asyncio.gather(*(create(w) for w in plan.create))
        finally:
            self._summary_event(landing_set, "LandingsCreated", "created", created)
        for wanted in plan.update:
            await self._correct(landing_set, wanted)
        self._summary_event(
            landing_set,
            "LandingsUpdated",
            "set back to the template",
            [w.name for w in plan.update],
        )
        for landing in plan.delete:
            await self._delete(namespace, landing)
        self._summary_event(
            landing_set,
            "LandingsDeleted",
            "deleted (Secret gone or no longer matching)",
            plan.delete,
        )
        # Counted from the list before the writes, not a second list of the whole fleet: a
        # Landing just created has no status yet either way, a corrected one keeps its own,
        # and their next status change (a Landing event) brings the set back here.
        status = fleet.summarize(landing_set, generated, plan, existing, problems)
        if self._statuses.get(key) != status:
            await self._write_status(namespace, name, status)
            self._statuses[key] = status

    def _memo(self, landing_set: LandingSet, secrets: int) -> fleet.Memo:
        """The set's stamps, started afresh when the set changed or when Secrets that went
        away have left it holding twice what the namespace has."""
        version = (landing_set.uid, landing_set.generation)
        kept = self._memos.get(landing_set.key)
        if kept is None or kept[0] != version or len(kept[1]) > 2 * secrets + 100:
            kept = self._memos[landing_set.key] = (version, {})
        return kept[1]

    # -- API calls -----------------------------------------------------------------------------

    def _generated(self, landing_set: LandingSet) -> dict[str, dict[str, Any]]:
        """The Landings of the namespace that carry the set's label (name -> body)."""
        return dict(self._members.get(landing_set.key, {}))

    async def _clusters(self, namespace: str) -> dict[str, dict[str, str]] | None:
        """Cluster API Clusters of ``namespace`` with their labels; None when not served."""
        try:
            return {
                str(c.metadata.name): dict(c.metadata.labels or {})
                async for c in self._local.list(CapiCluster, namespace=namespace)
            }
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def _profiles(self, namespace: str) -> dict[str, dict[str, str]] | None:
        """ClusterProfiles of ``namespace`` with their labels; None when not served."""
        try:
            return {
                str(p.metadata.name): dict(p.metadata.labels or {})
                async for p in self._local.list(inventory.resource(), namespace=namespace)
            }
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def _correct(self, landing_set: LandingSet, wanted: fleet.Wanted) -> None:
        # Hand edits are reverted: the spec is replaced whole; our labels and annotations
        # are set, others' are kept.
        await self._local.patch(
            LandingResource,
            wanted.name,
            [{"op": "replace", "path": "/spec", "value": wanted.spec}],
            namespace=landing_set.namespace,
            patch_type=PatchType.JSON,
        )
        written = await self._local.patch(
            LandingResource,
            wanted.name,
            {"metadata": {"labels": wanted.labels, "annotations": wanted.annotations}},
            namespace=landing_set.namespace,
            patch_type=PatchType.MERGE,
        )
        self._remember_member(written.to_dict())

    async def _delete(self, namespace: str, name: str) -> None:
        try:
            await self._local.delete(LandingResource, name, namespace=namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def _delete_all(self, landing_set: LandingSet) -> None:
        """The set is gone: its Landings follow (the garbage collector does the same through
        their ownerReferences; this is for clusters without one, and is faster)."""
        for name, body in self._generated(landing_set).items():
            if fleet.owned_by(body, landing_set):
                await self._delete(landing_set.namespace, name)

    async def _write_status(self, namespace: str, name: str, status: LandingSetStatus) -> None:
        try:
            await self._local.patch(
                LandingSetResource.Status,
                name,
                # The whole status, replaced: a merge would keep names no longer failing.
                [{"op": "add", "path": "/status", "value": msgspec.to_builtins(status)}],
                namespace=namespace,
                patch_type=PatchType.JSON,
            )
        except ApiError as err:
            if err.status.code != 404:  # deleted meanwhile
                raise

    async def _write_invalid(self, namespace: str, name: str, error: api.SpecError) -> None:
        status = LandingSetStatus(
            observed_generation=error.generation,
            conditions=fleet.set_conditions(
                "False",
                SetReason.INVALID_SPEC.value,
                str(error)[:1024],
                stalled=True,
                generation=error.generation,
            ),
        )
        key = f"{namespace}/{name}"
        if self._statuses.get(key) != status:
            await self._write_status(namespace, name, status)
            self._statuses[key] = status

    def _summary_event(
        self, landing_set: LandingSet, reason: str, what: str, names: list[str]
    ) -> None:
        if not names:
            return
        shown = ", ".join(sorted(names)[:10]) + (
            f" and {len(names) - 10} more" if len(names) > 10 else ""
        )
        noun = "Landing" if len(names) == 1 else "Landings"
        self._event(landing_set, "Normal", reason, f"{len(names)} {noun} {what}: {shown}")

    def _event(self, landing_set: LandingSet, type_: str, reason: str, message: str) -> None:
        meta = api.ObjectMeta(
            name=landing_set.name, namespace=landing_set.namespace, uid=landing_set.uid
        )
        self._events.record(meta, type_, reason, message, kind="LandingSet")


def _describe(err: Exception) -> str:
    if isinstance(err, ApiError):
        return f"API error {err.status.code} {err.status.reason}"
    return type(err).__name__
