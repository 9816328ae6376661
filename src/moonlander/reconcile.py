"""One reconcile of one Landing: gather facts, ask ``plan`` what to do, do it, say so.

Level-based and idempotent: every call computes the desired state from scratch and writes
only what differs. Errors become ``LandingProblem`` outcomes with a reason, a message free
of secret material and a retry class; the caller schedules the next attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from moonlander import api, companions, minting, outputs, plan
from moonlander.clusters import (
    ClusterPool,
    Target,
    annotations_of,
)
from moonlander.conditions import now_rfc3339
from moonlander.drift import DriftWatches
from moonlander.errors import API_ERRORS, fail_fast, problem_from_error, target_problem
from moonlander.events import EventRecorder
from moonlander.kubeconfig import (
    Credentials,
    KubeconfigError,
    Policy,
    check_server,
    parse_kubeconfig,
    render_kubeconfig,
)
from moonlander.metrics import Metrics
from moonlander.minted import Minter
from moonlander.parent import ParentKubeconfig
from moonlander.plan import LandingProblem, Outcome, Reason, Retry
from moonlander.sources import get_metadata
from moonlander.status import Landed, landed_from_status, next_status

log = logging.getLogger(__name__)

LANDING = api.Landing
VERIFIED_FOR = 60.0  # seconds a credential stays verified before it is asked about again


def landing_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class Reconciler:
    def __init__(
        self,
        *,
        local: AsyncClient,
        local_target: Target,
        clusters: ClusterPool,
        parent: ParentKubeconfig,
        drift: DriftWatches,
        events: EventRecorder,
        policy: Policy,
        allow_cross_namespace: bool = False,
        observe: Callable[[Mapping[str, Any]], None] = lambda _body: None,
        metrics: Metrics | None = None,
        source_version: Callable[[str, str], str | None] = lambda _ns, _name: None,
    ) -> None:
        self.local = local
        self.local_target = local_target
        self.clusters = clusters
        self.parent = parent
        self.drift = drift
        self.events = events
        self.policy = policy
        self.minter = Minter(clusters, events, policy)
        self.allow_cross_namespace = allow_cross_namespace
        # Told about every Landing this reconciler writes, so the next reconcile does not
        # act on a copy older than its own write while the watch event is still on its way.
        self.observe = observe
        self.metrics = metrics
        # Source Secrets as last read, by (namespace, name): (resourceVersion, Secret). Reused
        # while the metadata watch reports the same version, so a reconcile of an unchanged
        # source costs no read. Only sources of Landings are kept.
        self.source_version = source_version
        self._sources: dict[tuple[str, str], tuple[str, Secret]] = {}
        # (namespace, name) -> unix time the token a Landing minted expires, for metrics.
        self.token_expiry: dict[tuple[str, str], float] = {}
        # Namespaces known to exist in each target, so they are not looked up every time.
        self._namespaces: set[tuple[str, str]] = set()
        # (target, namespace, name, resourceVersion) of Secrets this reconciler wrote: the
        # drift watch's echo of our own write is not a change to repair.
        self.own_writes: set[tuple[str, str, str, str]] = set()
        # What we last wrote to each landed Secret (digest of data and ownership marks): a
        # watch event showing exactly that is our own write, whatever order it arrives in.
        self.own_digests: dict[tuple[str, str, str], str] = {}
        # Credential fingerprint -> when a SelfSubjectReview last accepted it.
        self._verified: dict[str, float] = {}

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = landing_key(ns, name)
        if meta.get("deletionTimestamp"):
            return await self._finalize(body, key)
        try:
            spec = api.resolve_spec(name, ns, body.get("spec"))
        except api.SpecError as err:
            outcome = Outcome(False, Reason.INVALID_SPEC, str(err), Retry.ON_CHANGE)
            await self._write_status(body, outcome, None, None)
            return outcome
        if spec.suspend:
            outcome = Outcome(
                False, Reason.SUSPENDED, "reconciliation is suspended", Retry.ON_CHANGE
            )
            await self._write_status(body, outcome, spec, landed_from_status(body))
            return outcome
        landed: Landed | None = None
        target: Target | None = None
        try:
            await self._ensure_finalizer(body)
            landed, target = await self._land(body, spec, key)
            renew_in = None
            if landed.token_renew_at is not None and landed.token_expires_at is not None:
                renew_in = max(1.0, (landed.token_renew_at - datetime.now(UTC)).total_seconds())
                self.token_expiry[(ns, name)] = landed.token_expires_at.timestamp()
            outcome = Outcome(
                True,
                Reason.SYNCED,
                f"landed in {landed.cluster} as {spec.target} (source key {landed.source_key!r})",
                Retry.RESYNC,
                requeue_after=renew_in,
            )
        except LandingProblem as problem:
            outcome = problem.outcome
        except API_ERRORS as err:
            outcome = problem_from_error(err, "cluster API").outcome
        if target is not None and outcome.ready:
            self.clusters.record_success(target)
        await self._write_status(body, outcome, spec, landed or landed_from_status(body))
        return outcome

    def is_echo(
        self, target_key: str, namespace: str, name: str, version: str, digest: str | None = None
    ) -> bool:
        """True for the watch event of a Secret as this reconciler wrote it: by content when
        the event carries it (remote watches), else once by resourceVersion."""
        if digest is not None:
            return self.own_digests.get((target_key, namespace, name)) == digest
        entry = (target_key, namespace, name, version)
        if entry in self.own_writes:
            self.own_writes.discard(entry)
            return True
        return False

    def forget_source(self, ref: tuple[str, str]) -> None:
        self._sources.pop(ref, None)

    def forget(self, key: str) -> None:
        """The Landing is gone: drop what is kept about it."""
        namespace, _, name = key.partition("/")
        self.token_expiry.pop((namespace, name), None)
        self.drift.release(key)

    # -- landing -------------------------------------------------------------------------

    async def _source_credentials(
        self, landing_ns: str, spec: api.LandingSpec
    ) -> tuple[str, Credentials]:
        """The source Secret's key and its validated kubeconfig."""
        source = await self._read_source(landing_ns, spec)
        data = source.data or {}
        if spec.source_key is None and plan.is_token_secret(data):
            # OCM managed-serviceaccount and service-account-token Secrets: token + ca.crt,
            # the server comes from spec.server.
            return plan.TOKEN_KEY, plan.credentials_from_token_secret(
                data, spec.server, self.policy
            )
        source_key = plan.select_source_key(data, spec.source_key, annotations_of(source))
        raw = plan.decode_secret_value(data, source_key)
        ref = f"source Secret {spec.source_namespace}/{spec.source_name} key {source_key!r}"
        try:
            return source_key, parse_kubeconfig(raw, self.policy)
        except KubeconfigError as err:
            raise LandingProblem(
                Reason.INVALID_KUBECONFIG, f"{ref}: {err}", Retry.ON_CHANGE
            ) from None

    def _output_spec(self, body: Mapping[str, Any]) -> outputs.OutputSpec:
        try:
            return outputs.parse_output_spec(
                (body.get("spec") or {}).get("output"), landing_name=body["metadata"]["name"]
            )
        except api.SpecError as err:
            raise LandingProblem(Reason.INVALID_SPEC, str(err), Retry.ON_CHANGE) from None

    async def _land(
        self, body: Mapping[str, Any], spec: api.LandingSpec, key: str
    ) -> tuple[Landed, Target]:
        meta = body["metadata"]
        source_key, source_creds = await self._source_credentials(meta["namespace"], spec)
        mint_spec = self.minter.spec(body)
        output = self._output_spec(body)
        # The payload grants access to one cluster; the Secret is written into another.
        payload: Credentials
        if spec.direction is api.Direction.PARENT_TO_CHILD:
            payload = self.parent.current()
            target = self.clusters.get(source_creds)
        else:
            payload = source_creds
            target = self.local_target
        if spec.server:
            try:
                server = check_server(spec.server, self.policy)
            except KubeconfigError as err:
                raise LandingProblem(
                    Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
                ) from None
        else:
            server = payload.server
        fail_fast(target)
        owner = plan.owner_value(meta["namespace"], meta["name"])
        uid = meta.get("uid", "")
        token: minting.MintedToken | None = None
        companions_present: list[str] = []
        try:
            await self._move_if_relocated(body, spec, target, owner)
            existing = await self._landed_secret(target, spec.target_namespace, spec.write_name)
            if mint_spec is None:
                landed_creds = payload.with_server(server, self.policy)
            else:
                landed_creds, token = await self.minter.credentials(
                    body, mint_spec, payload, server, existing, output, owner, key
                )
            token_annotations = token.annotations() if token else None
            if output.format is outputs.OutputFormat.ARGOCD:
                assert output.argocd is not None
                desired = outputs.argocd_cluster_secret(
                    landed_creds,
                    name=spec.write_name,
                    namespace=spec.target_namespace,
                    owner=owner,
                    owner_uid=uid,
                    spec=output.argocd,
                    annotations=token_annotations,
                )
            else:
                kubeconfig = render_kubeconfig(
                    landed_creds,
                    name=mint_spec.name if mint_spec else payload.context_name or "moonlander",
                )
                desired = plan.desired_secret(
                    name=spec.write_name,
                    namespace=spec.target_namespace,
                    owner=owner,
                    owner_uid=uid,
                    kubeconfig=kubeconfig,
                    annotations=token_annotations,
                )
            if existing is None or not plan.is_current(existing, desired):
                # About to land something new: it must work where it grants access.
                await self._verify(payload if mint_spec is None else None, key)
            await self._apply(target, desired, owner, spec.adopt_existing, body, existing)
            companions_present = await self._companions(body, spec, output, target, owner)
        except LandingProblem:
            raise
        except API_ERRORS as err:
            raise await target_problem(self.clusters, target, err, key) from None
        watches: list[tuple[Target, str, str]] = [(target, spec.target_namespace, "Secret")]
        if mint_spec is not None:
            granting = self.clusters.get(payload)
            watches.append((granting, mint_spec.namespace, "ServiceAccount"))
        self.drift.track(key, watches)
        return (
            Landed(
                cluster=target.server,
                server=server,
                namespace=spec.target_namespace,
                name=spec.write_name,
                source_key=source_key,
                content_hash=desired["metadata"]["annotations"][api.HASH_ANNOTATION],
                service_account=f"{mint_spec.namespace}/{mint_spec.name}" if mint_spec else None,
                token_expires_at=token.expires_at if token else None,
                token_renew_at=token.renew_at(mint_spec.renew_before_fraction)
                if token and mint_spec
                else None,
                provider_configs=tuple(companions_present),
            ),
            target,
        )

    async def _companions(
        self,
        body: Mapping[str, Any],
        spec: api.LandingSpec,
        output: outputs.OutputSpec,
        target: Target,
        owner: str,
    ) -> list[str]:
        """Crossplane ProviderConfigs next to the Secret, where their CRDs exist."""
        desired = (
            outputs.crossplane_objects(
                output.crossplane,
                secret_name=spec.write_name,
                secret_namespace=spec.target_namespace,
                owner=owner,
                owner_uid=body["metadata"].get("uid", ""),
            )
            if output.crossplane is not None
            else []
        )
        present, skipped = await companions.apply(target.client, desired, owner=owner)
        if skipped:
            log.info("%s: no CRD for %s in %s yet", owner, ", ".join(skipped), target.server)
        previous = (landed_from_status(body) or Landed("", "", "", "", "", "")).provider_configs
        if set(previous) - set(present):  # asked for no more (name, scope or providers changed)
            for removed in await companions.prune(target.client, owner=owner, keep=present):
                self._count_write("ProviderConfig", "deleted")
                log.info("%s: removed %s", owner, removed)
        return present

    async def _verify(self, creds: Credentials | None, key: str) -> None:
        """Asks the cluster a credential grants access to who it is (SelfSubjectReview), so
        a credential that does not authenticate is reported instead of landed. Minted tokens
        (``creds`` None) were just issued by that cluster."""
        if creds is None:
            return
        fingerprint = creds.fingerprint()
        if time.monotonic() - self._verified.get(fingerprint, -VERIFIED_FOR) < VERIFIED_FOR:
            return  # many Landings land the same parent credential: ask once a minute
        granting = self.clusters.get(creds)
        fail_fast(granting)
        try:
            await granting.client.create(SelfSubjectReview(metadata=ObjectMeta()))
        except ApiError as err:
            if err.status.code == 401:
                raise LandingProblem(
                    Reason.CREDENTIAL_REJECTED,
                    f"the credential to land does not authenticate at {creds.server} (401); "
                    "it is not landed",
                    Retry.BACKOFF,
                ) from None
            if err.status.code != 403:  # authenticated, only not allowed to ask: fine
                raise await target_problem(self.clusters, granting, err, key) from None
        except (httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
            raise await target_problem(self.clusters, granting, err, key) from None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[fingerprint] = time.monotonic()

    async def _read_source(self, landing_ns: str, spec: api.LandingSpec) -> Secret:
        where = f"source Secret {spec.source_namespace}/{spec.source_name}"
        if spec.source_namespace != landing_ns and not self.allow_cross_namespace:
            # Another namespace's Secret: check its grant on the metadata alone, so a Secret
            # that has not granted access is never read.
            try:
                meta = await get_metadata(self.local, spec.source_namespace, spec.source_name)
            except (httpx2.HTTPError, httpcore2.ConnectError) as err:
                raise problem_from_error(err, where) from None
            if meta is None:
                raise LandingProblem(
                    Reason.SOURCE_SECRET_NOT_FOUND,
                    f"{where} does not exist yet; waiting for it",
                    Retry.BACKOFF,
                )
            plan.check_cross_namespace(
                landing_ns,
                spec.source_namespace,
                spec.source_name,
                meta.get("annotations"),
                allow_all=False,
            )
        ref = (spec.source_namespace, spec.source_name)
        cached = self._sources.get(ref)
        try:
            if cached is not None and cached[0] == self.source_version(*ref):
                secret = cached[1]  # unchanged since we read it, as the metadata watch says
            else:
                secret = await self.local.get(
                    Secret, spec.source_name, namespace=spec.source_namespace
                )
                version = secret.metadata.resourceVersion if secret.metadata else None
                if version:
                    self._sources[ref] = (version, secret)
        except ApiError as err:
            self._sources.pop(ref, None)
            if err.status.code == 404:
                raise LandingProblem(
                    Reason.SOURCE_SECRET_NOT_FOUND,
                    f"{where} does not exist yet; waiting for it",
                    Retry.BACKOFF,
                ) from None
            raise problem_from_error(err, where) from None
        plan.check_cross_namespace(
            landing_ns,
            spec.source_namespace,
            spec.source_name,
            annotations_of(secret),
            allow_all=self.allow_cross_namespace,
        )
        return secret

    async def _ensure_namespace(self, target: Target, namespace: str) -> None:
        if (target.key, namespace) in self._namespaces:
            return
        client = target.client
        try:
            await client.get(Namespace, namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            try:
                await client.create(Namespace(metadata={"name": namespace}))  # type: ignore[arg-type]
            except ApiError as create_err:
                if create_err.status.code != 409:  # created meanwhile
                    raise
        self._namespaces.add((target.key, namespace))

    async def _landed_secret(
        self, target: Target, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """The Secret as the target's watch cache has it, or as read when it cannot tell."""
        known, obj = self.drift.cached(target, namespace, name)
        if known:
            return obj
        return await self._get_secret(target.client, name, namespace)

    async def _get_secret(
        self, client: AsyncClient, name: str, namespace: str
    ) -> dict[str, Any] | None:
        try:
            secret = await client.get(Secret, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return secret.to_dict()

    async def _apply(
        self,
        target: Target,
        desired: dict[str, Any],
        owner: str,
        adopt: bool,
        body: Mapping[str, Any],
        existing: Mapping[str, Any] | None,
    ) -> None:
        client = target.client
        name = desired["metadata"]["name"]
        namespace = desired["metadata"]["namespace"]
        obj = cast(Secret, Secret.from_dict(desired))
        if existing is None:
            await self._ensure_namespace(target, namespace)
            # Create, never apply, what we believe absent: the watch cache only sees Secrets
            # Moonlander manages, so a foreign one of that name must make this fail (409)
            # rather than be overwritten.
            try:
                written = await client.create(obj)
            except ApiError as err:
                if err.status.code == 404:  # the namespace went away since we saw it
                    self._namespaces.discard((target.key, namespace))
                if err.status.code != 409:
                    raise
                existing = await self._get_secret(client, name, namespace)
                if existing is None:
                    raise
            else:
                self._record_write(target, desired, written, body, created=True)
                return
        if existing is not None:
            ownership = plan.ownership(existing, owner)
            if ownership is plan.Ownership.FOREIGN and not adopt:
                raise LandingProblem(
                    Reason.CONFLICT,
                    f"Secret {namespace}/{name} in {target.server} exists and is not managed by "
                    "this Landing; it is left untouched (set spec.adoptExisting to take it over)",
                    Retry.ON_CHANGE,
                )
            if plan.is_current(existing, desired):
                return
            if plan.type_change_needed(existing, desired):
                await client.delete(Secret, name, namespace=namespace)
        written = await client.apply(obj, force=True)
        self._record_write(target, desired, written, body, created=False)

    def _record_write(
        self,
        target: Target,
        desired: Mapping[str, Any],
        written: Secret,
        body: Mapping[str, Any],
        *,
        created: bool,
    ) -> None:
        namespace = desired["metadata"]["namespace"]
        name = desired["metadata"]["name"]
        self.own_digests[(target.key, namespace, name)] = plan.secret_digest(desired)
        self.drift.remember(target, written.to_dict(), namespace, name)
        if written.metadata and written.metadata.resourceVersion:
            if len(self.own_writes) > 10_000:  # echoes lost to watch restarts: start afresh
                self.own_writes.clear()
            self.own_writes.add((target.key, namespace, name, written.metadata.resourceVersion))
        self._count_write("Secret", "Created" if created else "Updated")
        if not created:  # a first landing is reported by the Synced transition
            self.events.record(
                body, "Normal", "Updated", f"updated Secret {namespace}/{name} in {target.server}"
            )

    def _count_write(self, kind: str, action: str) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(kind, action.lower()).inc()

    async def _move_if_relocated(
        self, body: Mapping[str, Any], spec: api.LandingSpec, target: Target, owner: str
    ) -> None:
        """When the target name or namespace changed, the old Secret (if ours) is removed."""
        previous = landed_from_status(body)
        if previous is None or previous.cluster != target.server:
            return
        if (previous.namespace, previous.name) == (spec.target_namespace, spec.write_name):
            return
        await self._delete_if_ours(target, previous.name, previous.namespace, owner)

    async def _delete_if_ours(self, target: Target, name: str, namespace: str, owner: str) -> bool:
        existing = await self._get_secret(target.client, name, namespace)
        if existing is None or plan.ownership(existing, owner) is not plan.Ownership.OURS:
            return False
        try:
            await target.client.delete(Secret, name, namespace=namespace)
            self._count_write("Secret", "deleted")
        except ApiError as err:
            if err.status.code != 404:
                raise
        self.drift.remember(target, None, namespace, name)
        return True

    # -- deletion ------------------------------------------------------------------------

    async def _finalize(self, body: Mapping[str, Any], key: str) -> Outcome:
        meta = body["metadata"]
        if api.FINALIZER not in (meta.get("finalizers") or []):
            self.drift.release(key)
            return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)
        try:
            spec = api.resolve_spec(meta["name"], meta["namespace"], body.get("spec"))
        except api.SpecError:
            spec = None
        if spec is not None and spec.deletion_policy is api.DeletionPolicy.DELETE:
            try:
                await self._revoke(body, spec)
            except LandingProblem as problem:
                outcome = Outcome(
                    False,
                    problem.outcome.reason,
                    f"cannot delete the landed Secret yet: {problem.outcome.message}; set "
                    "spec.deletionPolicy to Orphan to release the Landing without it",
                    Retry.BACKOFF,
                    problem.outcome.retry_after,
                )
                await self._write_status(body, outcome, spec, landed_from_status(body))
                return outcome
        self.drift.release(key)
        await self._remove_finalizer(body)
        return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)

    async def _revoke(self, body: Mapping[str, Any], spec: api.LandingSpec) -> None:
        meta = body["metadata"]
        owner = plan.owner_value(meta["namespace"], meta["name"])
        landed = landed_from_status(body)
        if landed is None:
            return  # nothing was ever landed
        mint_spec = self.minter.spec(body)
        if spec.direction is api.Direction.CHILD_TO_PARENT:
            target = self.local_target
        else:
            _, child_creds = await self._source_credentials(meta["namespace"], spec)
            target = self.clusters.get(child_creds)
        if mint_spec is not None:
            # The ServiceAccount and its RBAC live in the cluster access was granted to.
            if spec.direction is api.Direction.PARENT_TO_CHILD:
                granting_creds = self.parent.current()
            else:
                _, granting_creds = await self._source_credentials(meta["namespace"], spec)
            granting = self.clusters.get(granting_creds)
            try:
                removed = await minting.revoke(granting.client, mint_spec, owner=owner)
            except API_ERRORS as err:
                raise problem_from_error(err, f"cluster {granting.server}") from None
            if removed:
                self.events.record(
                    body,
                    "Normal",
                    "Revoked",
                    f"deleted ServiceAccount {mint_spec.namespace}/{mint_spec.name} and "
                    f"{len(removed) - 1} RBAC objects from {granting.server}",
                )
        try:
            await self._delete_if_ours(target, spec.write_name, spec.target_namespace, owner)
            if landed.cluster == target.server:
                await self._delete_if_ours(target, landed.name, landed.namespace, owner)
                if landed.provider_configs:
                    await companions.prune(target.client, owner=owner, keep=())
        except API_ERRORS as err:
            raise problem_from_error(err, f"cluster {target.server}") from None
        self.events.record(
            body, "Normal", "Revoked", f"deleted Secret {spec.target} from {target.server}"
        )

    # -- metadata and status -------------------------------------------------------------

    async def _ensure_finalizer(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if api.FINALIZER in finalizers:
            return
        patch = {
            "metadata": {
                "finalizers": [*finalizers, api.FINALIZER],
                "resourceVersion": meta["resourceVersion"],
            }
        }
        updated = await self.local.patch(
            LANDING, meta["name"], patch, namespace=meta["namespace"], patch_type=PatchType.MERGE
        )
        self.observe(updated.to_dict())
        self._count_write("Landing", "finalizer")

    async def _remove_finalizer(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != api.FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        try:
            await self.local.patch(
                LANDING,
                meta["name"],
                patch,
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def _write_status(
        self,
        body: Mapping[str, Any],
        outcome: Outcome,
        spec: api.LandingSpec | None,
        landed: Landed | None,
    ) -> None:
        meta = body["metadata"]
        update = next_status(
            body.get("status") or {},
            outcome=outcome,
            generation=meta.get("generation"),
            target=spec.target if spec is not None else None,
            landed=landed,
            now=now_rfc3339(),
        )
        if update is None:
            return  # nothing changed: nothing is written
        if update.event is not None:
            self.events.record(body, *update.event)
        try:
            updated = await self.local.patch(
                LANDING.Status,
                meta["name"],
                {"status": update.status},
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
            self.observe(updated.to_dict())
            self._count_write("Landing", "status")
        except ApiError as err:
            if err.status.code != 404:  # deleted meanwhile: nothing to report on
                raise
