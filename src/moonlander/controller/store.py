"""The one code that writes into a cluster: landed Secrets and their namespaces, companions,
minted identities' removal, and the Landing's own finalizer and status.

The steps (``controller.steps``) decide what to write; this module writes it and remembers
what it wrote, so that the watch event of its own write is not taken for drift. Every call
to a client is in a small private primitive (``_read_secret``, ``_create_secret``, ...), so
that the in-memory fake of the step tests (``tests/support/store.py``) replaces only those
and keeps the rules: create-or-conflict, adopt only what may be adopted, delete only what
is ours, count every write.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from moonlander import api, minting
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem
from moonlander.controller import companions, holds, inventory, plan
from moonlander.controller.errors import API_ERRORS, target_problem
from moonlander.controller.metrics import Metrics
from moonlander.controller.minted import Minter
from moonlander.credentials import Credentials, Policy
from moonlander.kube.clusters import ClusterPool, Target
from moonlander.kube.drift import DriftWatches
from moonlander.kube.events import EventRecorder
from moonlander.kube.resources import LandingPolicyResource, LandingResource
from moonlander.kube.sources import get_metadata

LANDING = LandingResource
ECHOES_KEPT = 10_000  # echoes lost to watch restarts: past this, start afresh


@dataclass(frozen=True)
class Written:
    """What writing a landed Secret did: ``action`` is created, updated or current (nothing
    sent); ``repaired`` when it undid someone else's change."""

    action: str
    repaired: bool = False


class Store:
    def __init__(
        self,
        *,
        local: AsyncClient,
        clusters: ClusterPool,
        drift: DriftWatches,
        events: EventRecorder,
        policy: Policy,
        observe: Callable[[Mapping[str, Any]], None] = lambda _body: None,
        metrics: Metrics | None = None,
    ) -> None:
        self.local = local
        self.clusters = clusters
        self.drift = drift
        self.events = events
        # Minted identities and their tokens, in the cluster a Landing grants access to.
        self.minter = Minter(clusters, events, policy)
        # Told about every Landing written, so the next reconcile does not act on a copy
        # older than its own write while the watch event is still on its way.
        self.observe = observe
        self.metrics = metrics
        # Namespaces known to exist in each target, so they are not looked up every time.
        self._namespaces: set[tuple[str, str]] = set()
        # (target, namespace, name, resourceVersion) of Secrets written here: the drift
        # watch's echo of our own write is not a change to repair.
        self.own_writes: set[tuple[str, str, str, str]] = set()
        # What was last written to each landed Secret (digest of data and ownership marks):
        # a watch event showing exactly that is our own write, whatever order it arrives in.
        self.own_digests: dict[tuple[str, str, str], str] = {}

    # -- clusters ------------------------------------------------------------------------

    def target(self, creds: Credentials, policy: Policy) -> Target:
        return self.clusters.get(creds, policy)

    async def problem(self, target: Target, err: BaseException, key: str) -> LandingProblem:
        """An error of a call to ``target`` as the Landing is told it (and the pool learns
        of the cluster's health)."""
        return await target_problem(self.clusters, target, err, key)

    def succeeded(self, target: Target) -> None:
        self.clusters.record_success(target)

    def event(self, meta: api.ObjectMeta, type_: str, reason: str, message: str) -> None:
        self.events.record(meta, type_, reason, message)

    def count(self, kind: str, action: str) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(kind, action.lower()).inc()

    # -- reads ---------------------------------------------------------------------------

    async def source_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret of the controller's cluster, or None when there is none."""
        return await self._read_secret(None, namespace, name)

    async def cluster_profile(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ClusterProfile of the controller's cluster (a Landing's source), or None."""
        return await inventory.get(self.local, namespace, name)

    async def source_metadata(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A Secret's metadata without its data (read before a Secret that may not have
        granted access is read), or None when there is none."""
        return await get_metadata(self.local, namespace, name)

    async def landed_secret(
        self, target: Target, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """The Secret as the target's watch cache has it, or as read when it cannot tell."""
        known, obj = self.drift.cached(target, namespace, name)
        if known:
            return obj
        return await self._read_secret(target, namespace, name)

    async def review(self, target: Target) -> BaseException | None:
        """One SelfSubjectReview at ``target``; the error it raised, else None."""
        try:
            await target.client.create(SelfSubjectReview(metadata=ObjectMeta()))
        except (ApiError, *API_ERRORS) as err:
            return err
        return None

    # -- landed Secrets ------------------------------------------------------------------

    async def ensure_namespace(self, target: Target, namespace: str) -> None:
        if (target.key, namespace) in self._namespaces:
            return
        if not await self._namespace_exists(target, namespace):
            try:
                await self._create_namespace(target, namespace)
            except ApiError as err:
                if err.status.code != 409:  # created meanwhile
                    raise
        self._namespaces.add((target.key, namespace))

    async def write_secret(
        self,
        target: Target,
        desired: dict[str, Any],
        existing: Mapping[str, Any] | None,
        *,
        owner: str,
        adopt: bool,
    ) -> Written:
        """Writes ``desired`` unless ``existing`` already holds it: created where nothing
        is believed to exist, else applied over what is ours (or adoptable)."""
        name = desired["metadata"]["name"]
        namespace = desired["metadata"]["namespace"]
        ref = (target.key, namespace, name)
        if existing is None:
            await self.ensure_namespace(target, namespace)
            # Create, never apply, what we believe absent: the watch cache only sees
            # Secrets Moonlander manages, so a foreign one of that name must make this
            # fail (409) rather than be overwritten.
            try:
                async with self._expecting(ref, desired):
                    written = await self._create_secret(target, desired)
            except ApiError as err:
                if err.status.code == 404:  # the namespace went away since we saw it
                    self._namespaces.discard((target.key, namespace))
                if err.status.code != 409:
                    raise
                existing = await self._read_secret(target, namespace, name)
                if existing is None:
                    raise
            else:
                self._record_write(target, desired, written)
                self.count("Secret", "created")
                return Written("created")
        own.check_adoptable(existing, owner, adopt, f"Secret {namespace}/{name}")
        if own.is_current(existing, desired):
            return Written("current")
        # Not as we last wrote it: someone else changed it. Otherwise what changed is this
        # Landing's input (a rotation, a new parent kubeconfig), which the status records.
        last = self.own_digests.get(ref)
        repaired = last is not None and last != own.secret_digest(existing)
        if plan.type_change_needed(existing, desired):
            await self._delete_secret(target, namespace, name)
        async with self._expecting(ref, desired):
            written = await self._apply_secret(target, desired)
        self._record_write(target, desired, written)
        self.count("Secret", "updated")
        return Written("updated", repaired)

    async def delete_if_ours(self, target: Target, namespace: str, name: str, owner: str) -> bool:
        """Deletes the Secret when it carries this owner's marks; True when it did."""
        existing = await self._read_secret(target, namespace, name)
        if existing is None or own.ownership(existing, owner) is not own.Ownership.OURS:
            return False
        try:
            await self._delete_secret(target, namespace, name)
            self.count("Secret", "deleted")
        except ApiError as err:
            if err.status.code != 404:
                raise
        self.drift.remember(target, None, namespace, name)
        return True

    def is_echo(
        self, target_key: str, namespace: str, name: str, version: str, digest: str | None = None
    ) -> bool:
        """True for the watch event of a Secret as written here: by content when the event
        carries it (remote watches), else once by resourceVersion."""
        if digest is not None:
            return self.own_digests.get((target_key, namespace, name)) == digest
        entry = (target_key, namespace, name, version)
        if entry in self.own_writes:
            self.own_writes.discard(entry)
            return True
        return False

    @contextlib.asynccontextmanager
    async def _expecting(
        self, ref: tuple[str, str, str], desired: Mapping[str, Any]
    ) -> AsyncIterator[None]:
        """The write about to be sent is known as ours before it is sent: its watch event
        can arrive before the response does, and must not be taken for drift (a second
        reconcile of every Landing in a burst). A write that fails is forgotten again."""
        previous = self.own_digests.get(ref)
        self.own_digests[ref] = own.secret_digest(desired)
        try:
            yield
        except BaseException:
            if previous is None:
                self.own_digests.pop(ref, None)
            else:
                self.own_digests[ref] = previous
            raise

    def _record_write(
        self, target: Target, desired: Mapping[str, Any], written: dict[str, Any]
    ) -> None:
        namespace = desired["metadata"]["namespace"]
        name = desired["metadata"]["name"]
        self.own_digests[(target.key, namespace, name)] = own.secret_digest(desired)
        self.drift.remember(target, written, namespace, name)
        version = (written.get("metadata") or {}).get("resourceVersion")
        if version:
            if len(self.own_writes) > ECHOES_KEPT:
                self.own_writes.clear()
            self.own_writes.add((target.key, namespace, name, version))

    # -- objects next to the Secret, and minted identities -------------------------------

    async def apply_companions(
        self, target: Target, desired: Iterable[dict[str, Any]], owner: str
    ) -> tuple[list[str], list[str]]:
        """Writes the ProviderConfigs that are missing or stale: (present, skipped for a
        missing CRD)."""
        return await companions.apply(target.client, desired, owner=owner)

    async def prune_companions(self, target: Target, owner: str, keep: Iterable[str]) -> list[str]:
        removed = await companions.prune(target.client, owner=owner, keep=keep)
        for _ in removed:
            self.count("ProviderConfig", "deleted")
        return removed

    async def profile_crd_exists(self, target: Target) -> bool:
        return await inventory.crd_exists(target.client)

    async def apply_profile(
        self,
        target: Target,
        profile: dict[str, Any],
        make_status: Callable[[Mapping[str, Any] | None], dict[str, Any]],
        secret: dict[str, Any],
        owner: str,
    ) -> list[str]:
        """Writes a ClusterProfile, its status and its token Secret where stale; what it
        wrote."""
        written = await inventory.apply(target.client, profile, make_status, secret, owner=owner)
        for what in written:
            self.count("ClusterProfile" if what == "status" else what, "updated")
        return written

    async def set_profile_status(
        self,
        target: Target,
        namespace: str,
        name: str,
        owner: str,
        make_status: Callable[[Mapping[str, Any] | None], dict[str, Any]],
    ) -> bool:
        """Rewrites this owner's ClusterProfile's status; True when it changed."""
        changed = await inventory.set_status(target.client, namespace, name, owner, make_status)
        if changed:
            self.count("ClusterProfile", "updated")
        return changed

    async def delete_profile(
        self, target: Target, namespace: str, name: str, owner: str
    ) -> list[str]:
        removed = await inventory.delete(target.client, namespace, name, owner)
        for what in removed:
            self.count(what.split(" ")[0], "deleted")
        return removed

    async def server_version(self, target: Target) -> str | None:
        """The Kubernetes version ``target`` reports, or None (no answer, or not one)."""
        try:
            return await inventory.server_version(target.client)
        except Exception:  # whatever it answered, it gave no version; health says so
            return None

    async def mint(
        self,
        landing: api.Landing,
        granting: Credentials,
        server: str,
        existing: Mapping[str, Any] | None,
        policy: Policy,
    ) -> tuple[Credentials, minting.MintedToken]:
        """The Landing's own ServiceAccount (created or repaired) and a token of it: the one
        already landed while it is good, else a new one."""
        return await self.minter.credentials(landing, granting, server, existing, policy)

    async def revoke_identity(
        self, granting: Target, account: minting.ObjectRef, owner: str
    ) -> list[minting.ObjectRef]:
        """Deletes a minted ServiceAccount and every RBAC object marked for ``owner``; what
        was removed."""
        return await minting.revoke(granting.client, account, owner=owner)

    # -- source Secrets a Landing holds (controller.holds) -------------------------------

    async def hold_source(self, namespace: str, name: str, finalizer: str) -> None:
        """Adds a Landing's finalizer to its source Secret (a strategic merge: finalizers
        merge, so no other is touched)."""
        patch = {"metadata": {"finalizers": [finalizer]}}
        await self._patch_local_secret(namespace, name, patch)
        self.count("Secret", "held")

    async def release_source(self, namespace: str, name: str, finalizer: str) -> None:
        """Removes that one finalizer, and only it; a Secret gone meanwhile needs nothing."""
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}}
        try:
            await self._patch_local_secret(namespace, name, patch)
        except ApiError as err:
            if err.status.code != 404:
                raise
            return
        self.count("Secret", "released")

    # -- the Landing itself, in the controller's cluster ---------------------------------

    async def add_finalizer(self, meta: api.ObjectMeta) -> None:
        if api.FINALIZER in meta.finalizers:
            return
        finalizers = [*meta.finalizers, api.FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}}
        self.observe(await self._patch_landing(meta, patch, status=False))
        self.count("Landing", "finalizer")

    async def remove_finalizer(self, meta: api.ObjectMeta) -> None:
        """Removes Moonlander's finalizer, the others as they are: conditional on the
        resourceVersion, read again once when the Landing changed since (the finalizer's own
        status write changes it)."""
        for attempt in range(2):
            finalizers = [f for f in meta.finalizers if f != api.FINALIZER]
            version = meta.resource_version
            patch = {"metadata": {"finalizers": finalizers, "resourceVersion": version}}
            try:
                await self._patch_landing(meta, patch, status=False)
                return
            except ApiError as err:
                if err.status.code == 404:
                    return
                if err.status.code != 409 or attempt:
                    raise
            try:
                current = await self.local.get(LANDING, meta.name, namespace=meta.namespace)
            except ApiError as err:
                if err.status.code == 404:
                    return
                raise
            meta = msgspec.structs.replace(
                meta,
                resource_version=current.metadata.resourceVersion or "",
                finalizers=tuple(current.metadata.finalizers or ()),
            )
            if api.FINALIZER not in meta.finalizers:
                return

    async def patch_status(self, meta: api.ObjectMeta, status: Mapping[str, Any]) -> None:
        """Merge-patches a Landing's status; a Landing deleted meanwhile needs none."""
        try:
            updated = await self._patch_landing(meta, {"status": status}, status=True)
        except ApiError as err:
            if err.status.code != 404:
                raise
            return
        self.observe(updated)
        self.count("Landing", "status")

    async def patch_policy_status(self, name: str, status: Mapping[str, Any]) -> None:
        await self.local.patch(
            LandingPolicyResource.Status, name, {"status": status}, patch_type=PatchType.MERGE
        )

    # -- the client calls (replaced by the fake) -----------------------------------------

    async def _read_secret(
        self, target: Target | None, namespace: str, name: str
    ) -> dict[str, Any] | None:
        client = self.local if target is None else target.client
        try:
            secret = await client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return secret.to_dict()

    async def _create_secret(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        written = await target.client.create(cast(Secret, Secret.from_dict(body)))
        return written.to_dict()

    async def _apply_secret(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        written = await target.client.apply(cast(Secret, Secret.from_dict(body)), force=True)
        return written.to_dict()

    async def _delete_secret(self, target: Target, namespace: str, name: str) -> None:
        await target.client.delete(Secret, name, namespace=namespace)

    async def _patch_local_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        written = await self.local.patch(
            Secret, name, dict(patch), namespace=namespace, patch_type=PatchType.STRATEGIC
        )
        # A hold taken or let go changes nothing a Landing reads: the Secret watch's echo of
        # it wakes no Landing (is_echo with holds.ECHO), or every first landing would
        # reconcile twice.
        version = written.metadata.resourceVersion if written.metadata else None
        if version:
            self.own_writes.add((holds.ECHO, namespace, name, version))

    async def _namespace_exists(self, target: Target, namespace: str) -> bool:
        try:
            await target.client.get(Namespace, namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            return False
        return True

    async def _create_namespace(self, target: Target, namespace: str) -> None:
        await target.client.create(Namespace(metadata=ObjectMeta(name=namespace)))

    async def _patch_landing(
        self, meta: api.ObjectMeta, patch: Mapping[str, Any], *, status: bool
    ) -> dict[str, Any]:
        updated = await self.local.patch(
            LANDING.Status if status else LANDING,
            meta.name,
            dict(patch),
            namespace=meta.namespace,
            patch_type=PatchType.MERGE,
        )
        return cast(dict[str, Any], updated.to_dict())
