"""One reconcile of one Landing: gather facts, ask ``plan`` what to do, do it, say so.

Level-based and idempotent: every call computes the desired state from scratch and writes
only what differs. Errors become ``LandingProblem`` outcomes with a reason, a message free
of secret material and a retry class; the caller schedules the next attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from moonlander import api, plan
from moonlander.clusters import AddressPolicyError, ClusterPool, Target, annotations_of
from moonlander.conditions import READY, find, now_rfc3339, set_condition
from moonlander.drift import DriftWatches
from moonlander.events import EventRecorder
from moonlander.kubeconfig import (
    Credentials,
    KubeconfigError,
    Policy,
    parse_kubeconfig,
    render_kubeconfig,
)
from moonlander.metrics import Metrics
from moonlander.parent import ParentKubeconfig
from moonlander.plan import LandingProblem, Outcome, Reason, Retry
from moonlander.sources import get_metadata

log = logging.getLogger(__name__)

LANDING = api.Landing


@dataclass(frozen=True)
class Landed:
    cluster: str
    server: str
    namespace: str
    name: str
    source_key: str
    content_hash: str

    def as_status(self) -> dict[str, str]:
        return {
            "cluster": self.cluster,
            "server": self.server,
            "namespace": self.namespace,
            "name": self.name,
            "sourceKey": self.source_key,
            "contentHash": self.content_hash,
        }


def landing_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def problem_from_error(err: BaseException, where: str) -> LandingProblem:
    """Classifies an API or transport error; messages carry status text, never bodies we sent."""
    if isinstance(err, LandingProblem):
        return err
    if isinstance(err, AddressPolicyError):
        return LandingProblem(Reason.INVALID_KUBECONFIG, f"{where}: {err}", Retry.ON_CHANGE)
    if isinstance(err, ApiError):
        code = err.status.code or 0
        text = f"{where}: {code} {err.status.reason or ''}: {(err.status.message or '')[:300]}"
        if code == 401:
            return LandingProblem(Reason.UNAUTHORIZED, text, Retry.BACKOFF)
        if code == 403:
            return LandingProblem(Reason.FORBIDDEN, text, Retry.BACKOFF)
        if code == 429:
            retry_after = _retry_after(err.response)
            return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF, retry_after)
        return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF)
    if isinstance(err, (httpx2.TransportError, httpcore2.ConnectError, TimeoutError)):
        detail = type(err).__name__ + (f": {err}" if str(err) else "")
        return LandingProblem(Reason.CLUSTER_UNREACHABLE, f"{where}: {detail[:300]}", Retry.BACKOFF)
    if isinstance(err, httpx2.HTTPStatusError):
        code = err.response.status_code
        return LandingProblem(
            Reason.TRANSIENT_ERROR,
            f"{where}: HTTP {code}",
            Retry.BACKOFF,
            _retry_after(err.response) if code == 429 else None,
        )
    raise err


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 600.0)
    except ValueError:
        return None


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
    ) -> None:
        self.local = local
        self.local_target = local_target
        self.clusters = clusters
        self.parent = parent
        self.drift = drift
        self.events = events
        self.policy = policy
        self.allow_cross_namespace = allow_cross_namespace
        # Told about every Landing this reconciler writes, so the next reconcile does not
        # act on a copy older than its own write while the watch event is still on its way.
        self.observe = observe
        self.metrics = metrics
        # (namespace, name) -> unix time the token a Landing minted expires, for metrics.
        self.token_expiry: dict[tuple[str, str], float] = {}

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
            await self._write_status(body, outcome, spec, _landed_from_status(body))
            return outcome
        landed: Landed | None = None
        target: Target | None = None
        try:
            await self._ensure_finalizer(body)
            landed, target = await self._land(body, spec, key)
            outcome = Outcome(
                True,
                Reason.SYNCED,
                f"landed in {landed.cluster} as {spec.target} (source key {landed.source_key!r})",
                Retry.RESYNC,
            )
        except LandingProblem as problem:
            outcome = problem.outcome
        except (ApiError, httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
            outcome = problem_from_error(err, "cluster API").outcome
        if target is not None and outcome.ready:
            self.clusters.record_success(target)
        await self._write_status(body, outcome, spec, landed or _landed_from_status(body))
        return outcome

    # -- landing -------------------------------------------------------------------------

    async def _land(
        self, body: Mapping[str, Any], spec: api.LandingSpec, key: str
    ) -> tuple[Landed, Target]:
        meta = body["metadata"]
        source = await self._read_source(meta["namespace"], spec)
        source_key = plan.select_source_key(
            source.data or {}, spec.source_key, annotations_of(source)
        )
        raw = plan.decode_secret_value(source.data or {}, source_key)
        ref = f"source Secret {spec.source_namespace}/{spec.source_name} key {source_key!r}"
        try:
            source_creds = parse_kubeconfig(raw, self.policy)
        except KubeconfigError as err:
            raise LandingProblem(
                Reason.INVALID_KUBECONFIG, f"{ref}: {err}", Retry.ON_CHANGE
            ) from None

        payload: Credentials
        if spec.direction is api.Direction.PARENT_TO_CHILD:
            payload = self.parent.current()
            target = self.clusters.get(source_creds)
        else:
            payload = source_creds
            target = self.local_target
        if spec.server:
            try:
                payload = payload.with_server(spec.server, self.policy)
            except KubeconfigError as err:
                raise LandingProblem(
                    Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
                ) from None

        kubeconfig = render_kubeconfig(payload, name=payload.context_name or "moonlander")
        owner = plan.owner_value(meta["namespace"], meta["name"])
        desired = plan.desired_secret(
            name=spec.write_name,
            namespace=spec.target_namespace,
            owner=owner,
            owner_uid=meta.get("uid", ""),
            kubeconfig=kubeconfig,
        )
        if not target.reachable:
            raise LandingProblem(
                Reason.CLUSTER_UNREACHABLE,
                f"cluster {target.server} is unreachable ({target.last_error[:200]}); retrying",
                Retry.BACKOFF,
            )
        try:
            await self._move_if_relocated(body, spec, target, owner)
            await self._apply(target, desired, owner, spec.adopt_existing, body)
        except LandingProblem:
            raise
        except (ApiError, httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
            problem = problem_from_error(err, f"cluster {target.server}")
            if problem.outcome.reason is Reason.CLUSTER_UNREACHABLE:
                self.clusters.record_failure(target, problem.outcome.message, key)
            if problem.outcome.reason is Reason.UNAUTHORIZED and not target.local:
                await self.clusters.drop(target.key)
            raise problem from None
        self.drift.watch(target, spec.target_namespace, key)
        return (
            Landed(
                cluster=target.server,
                server=payload.server,
                namespace=spec.target_namespace,
                name=spec.write_name,
                source_key=source_key,
                content_hash=plan.content_hash(kubeconfig),
            ),
            target,
        )

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
        try:
            secret = await self.local.get(Secret, spec.source_name, namespace=spec.source_namespace)
        except ApiError as err:
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

    async def _ensure_namespace(self, client: AsyncClient, namespace: str) -> None:
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
    ) -> None:
        client = target.client
        name = desired["metadata"]["name"]
        namespace = desired["metadata"]["namespace"]
        existing = await self._get_secret(client, name, namespace)
        if existing is None:
            await self._ensure_namespace(client, namespace)
        else:
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
        await client.apply(cast(Secret, Secret.from_dict(desired)), force=True)
        action = "Created" if existing is None else "Updated"
        self._count_write("Secret", action)
        self.events.record(
            body, "Normal", action, f"{action.lower()} Secret {namespace}/{name} in {target.server}"
        )

    def _count_write(self, kind: str, action: str) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(kind, action.lower()).inc()

    async def _move_if_relocated(
        self, body: Mapping[str, Any], spec: api.LandingSpec, target: Target, owner: str
    ) -> None:
        """When the target name or namespace changed, the old Secret (if ours) is removed."""
        previous = _landed_from_status(body)
        if previous is None or previous.cluster != target.server:
            return
        if (previous.namespace, previous.name) == (spec.target_namespace, spec.write_name):
            return
        await self._delete_if_ours(target.client, previous.name, previous.namespace, owner)

    async def _delete_if_ours(
        self, client: AsyncClient, name: str, namespace: str, owner: str
    ) -> bool:
        existing = await self._get_secret(client, name, namespace)
        if existing is None or plan.ownership(existing, owner) is not plan.Ownership.OURS:
            return False
        try:
            await client.delete(Secret, name, namespace=namespace)
            self._count_write("Secret", "deleted")
        except ApiError as err:
            if err.status.code != 404:
                raise
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
                await self._write_status(body, outcome, spec, _landed_from_status(body))
                return outcome
        self.drift.release(key)
        await self._remove_finalizer(body)
        return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)

    async def _revoke(self, body: Mapping[str, Any], spec: api.LandingSpec) -> None:
        meta = body["metadata"]
        owner = plan.owner_value(meta["namespace"], meta["name"])
        if spec.direction is api.Direction.CHILD_TO_PARENT:
            target = self.local_target
        else:
            landed = _landed_from_status(body)
            if landed is None:
                return  # nothing was ever landed
            source = await self._read_source(meta["namespace"], spec)
            source_key = plan.select_source_key(
                source.data or {}, spec.source_key, annotations_of(source)
            )
            try:
                creds = parse_kubeconfig(
                    plan.decode_secret_value(source.data or {}, source_key), self.policy
                )
            except KubeconfigError as err:
                raise LandingProblem(Reason.INVALID_KUBECONFIG, str(err), Retry.BACKOFF) from None
            target = self.clusters.get(creds)
        try:
            await self._delete_if_ours(target.client, spec.write_name, spec.target_namespace, owner)
            landed = _landed_from_status(body)
            if landed is not None and landed.cluster == target.server:
                await self._delete_if_ours(target.client, landed.name, landed.namespace, owner)
        except (ApiError, httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
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
        current: Mapping[str, Any] = body.get("status") or {}
        now = now_rfc3339()
        generation = meta.get("generation")
        ready = "True" if outcome.ready else "False"
        if outcome.reason is Reason.SUSPENDED:
            ready = "Unknown"
        conditions = set_condition(
            current.get("conditions") or [],
            type_=READY,
            status=ready,
            reason=outcome.reason.value,
            message=outcome.message,
            observed_generation=generation,
            now=now,
        )
        status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        if spec is not None:
            status["target"] = spec.target
        if landed is not None:
            status["landed"] = landed.as_status()
        changed = any(current.get(k) != v for k, v in status.items())
        if not changed:
            return
        if outcome.ready:
            status["lastSyncTime"] = now
        previous = find(current.get("conditions"), READY)
        if previous is None or previous.get("reason") != outcome.reason.value:
            self.events.record(
                body,
                "Normal" if outcome.ready or outcome.reason is Reason.SUSPENDED else "Warning",
                outcome.reason.value,
                outcome.message,
            )
        try:
            updated = await self.local.patch(
                LANDING.Status,
                meta["name"],
                {"status": status},
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
            self.observe(updated.to_dict())
            self._count_write("Landing", "status")
        except ApiError as err:
            if err.status.code != 404:  # deleted meanwhile: nothing to report on
                raise


def _landed_from_status(body: Mapping[str, Any]) -> Landed | None:
    landed = (body.get("status") or {}).get("landed")
    if not isinstance(landed, Mapping) or not landed.get("name"):
        return None
    return Landed(
        cluster=str(landed.get("cluster", "")),
        server=str(landed.get("server", "")),
        namespace=str(landed.get("namespace", "")),
        name=str(landed.get("name", "")),
        source_key=str(landed.get("sourceKey", "")),
        content_hash=str(landed.get("contentHash", "")),
    )
