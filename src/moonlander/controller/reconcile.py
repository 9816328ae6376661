"""One reconcile of one Landing: gather facts, ask ``plan`` what to do, do it, say so.

Level-based and idempotent: every call computes the desired state from scratch and writes
only what differs. Errors become ``LandingProblem`` outcomes with a reason, a message free
of secret material and a retry class; the caller schedules the next attempt.

Longer than the other modules (about 650 lines) because it is the one place that sequences
I/O: its decisions are already elsewhere (``plan``, ``status``, ``outputs``, ``errors``,
``minted``), and what is left is the order of calls and what each failure means. The next
split is the landed-Secret store (namespace, create-or-apply, echo memory) into its own
module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from moonlander import api, minting
from moonlander.api import InvalidLanding, Landing
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Outcome, Reason, Retry
from moonlander.controller import companions, memo, outputs, plan
from moonlander.controller.authorize import Fence, PolicyStore, authorize, source_networks
from moonlander.controller.conditions import now_rfc3339
from moonlander.controller.errors import (
    API_ERRORS,
    UNREACHABLE_AFTER,
    fail_fast,
    is_undisclosed,
    problem_from_error,
    target_problem,
)
from moonlander.controller.metrics import Metrics
from moonlander.controller.minted import Minter
from moonlander.controller.parent import ParentKubeconfig
from moonlander.controller.policy_status import policy_status
from moonlander.controller.status import Landed, StatusUpdate, landed_from_status, next_status
from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    check_server,
)
from moonlander.kube.clusters import (
    ClusterPool,
    Target,
    annotations_of,
)
from moonlander.kube.drift import DriftWatches
from moonlander.kube.events import EventRecorder
from moonlander.kube.resources import LandingPolicyResource, LandingResource
from moonlander.kube.sources import get_metadata

log = logging.getLogger(__name__)

LANDING = LandingResource
VERIFIED_FOR = 60.0  # seconds a credential stays verified before it is asked about again
# Revoking on deletion makes a few calls, each within the request deadline; past this the
# Landing says why it is not released yet (and that deletionPolicy Orphan releases it).
FINALIZE_DEADLINE = 20.0


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
        policies: PolicyStore | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.local = local
        self.local_target = local_target
        # The operator's LandingPolicies, kept by the policy watch, and what none can open.
        self.policies = policies if policies is not None else PolicyStore()
        self.fence = fence or Fence()
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
        # Asked before a routine status write (still Synced, new content): True when the
        # loop will run this Landing again later to write it, so that other Landings' landed
        # Secrets go first (loop.Controller.defer_status).
        self.defer_status: Callable[[str], bool] = lambda _key: False
        self._sources: dict[tuple[str, str], tuple[str, Secret]] = {}
        # Landing key -> unix time the token it minted expires, for metrics.
        self.token_expiry: dict[str, float] = {}
        # Namespaces known to exist in each target, so they are not looked up every time.
        self._namespaces: set[tuple[str, str]] = set()
        # (target, namespace, name, resourceVersion) of Secrets this reconciler wrote: the
        # drift watch's echo of our own write is not a change to repair.
        self.own_writes: set[tuple[str, str, str, str]] = set()
        # What we last wrote to each landed Secret (digest of data and ownership marks): a
        # watch event showing exactly that is our own write, whatever order it arrives in.
        self.own_digests: dict[tuple[str, str, str], str] = {}
        # LandingPolicy name -> the status last written, so that nothing is written twice.
        self._policy_status: dict[str, dict[str, Any]] = {}
        # Credential fingerprint -> when a SelfSubjectReview last accepted it, and the one
        # in flight (its error, or None).
        self._verified: dict[str, float] = {}
        self._reviews: dict[str, asyncio.Future[BaseException | None]] = {}

    async def reconcile(self, landing: Landing | InvalidLanding) -> Outcome:
        started = time.monotonic()
        if landing.metadata.deletion_timestamp:
            return await self._finalize(landing)
        if isinstance(landing, InvalidLanding):
            outcome = Outcome(False, Reason.INVALID_SPEC, str(landing.error), Retry.ON_CHANGE)
            await self._write_status(landing, outcome, None)
            return outcome
        if landing.spec.suspend:
            return await self._suspended(landing)
        landed: Landed | None = None
        target: Target | None = None
        try:
            await self._ensure_finalizer(landing)
            landed, target = await self._land(landing)
            renew_in = None
            if landed.token_renew_at is not None and landed.token_expires_at is not None:
                renew_in = max(1.0, (landed.token_renew_at - datetime.now(UTC)).total_seconds())
                self.token_expiry[landing.key] = landed.token_expires_at.timestamp()
            outcome = Outcome(
                True,
                Reason.SYNCED,
                f"landed in {landed.cluster} as {landing.target} "
                f"(source key {landed.source_key!r})",
                Retry.RESYNC,
                requeue_after=renew_in,
            )
        except LandingProblem as problem:
            outcome = problem.outcome
        except API_ERRORS as err:
            outcome = problem_from_error(err, "cluster API").outcome
        except Exception as err:  # a fault of our own: still a status and a retry, never a crash
            log.exception("%s: reconcile failed", landing.key)
            outcome = problem_from_error(err, "reconcile").outcome
        if target is not None and outcome.ready:
            self.clusters.record_success(target)
        previous = landed_from_status(landing)
        if outcome.reason is Reason.NOT_PERMITTED and previous is not None:
            # The grant it was landed under is gone: what it landed goes too.
            outcome, previous = await self._withdraw(landing, outcome)
        # When an undisclosed failure is told must say no more than what is told: a closed
        # port fails at once, a silent one after the connect timeout.
        not_before = started + UNREACHABLE_AFTER if is_undisclosed(outcome) else None
        await self._write_status(landing, outcome, landed or previous, not_before=not_before)
        return outcome

    async def _suspended(self, landing: Landing) -> Outcome:
        """Nothing is landed, refreshed or repaired; but the grant is checked all the same,
        and what a Landing no longer permitted had landed is revoked: suspending must not
        keep a credential past its grant."""
        try:
            self._authorize(landing)
        except LandingProblem as problem:
            outcome, previous = problem.outcome, landed_from_status(landing)
            if previous is not None:
                outcome, previous = await self._withdraw(landing, outcome)
            await self._write_status(landing, outcome, previous)
            return outcome
        outcome = Outcome(False, Reason.SUSPENDED, "reconciliation is suspended", Retry.ON_CHANGE)
        await self._write_status(landing, outcome, landed_from_status(landing))
        return outcome

    def _authorize(self, landing: Landing) -> None:
        """Raises ``NotPermitted`` when the Landing asks for what its namespace's
        LandingPolicies do not grant (or what the fence closes)."""
        authorize(landing, self.policies, self.fence)

    def _permitted(self, landing: Landing) -> bool:
        try:
            self._authorize(landing)
        except LandingProblem:
            return False
        return True

    async def _withdraw(self, landing: Landing, refusal: Outcome) -> tuple[Outcome, Landed | None]:
        """Revokes what a Landing landed when it is no longer permitted to; the outcome, and
        what the status should still say was landed (nothing once revoked)."""
        try:
            await self._revoke(landing)
        except LandingProblem as problem:
            message = (
                f"{refusal.message}; what it landed could not be revoked yet: "
                f"{problem.outcome.message}"
            )
            return Outcome(False, refusal.reason, message, Retry.BACKOFF), landed_from_status(
                landing
            )
        except API_ERRORS as err:
            message = f"{refusal.message}; revoking what it landed failed; retrying"
            log.info("%s: revoking after a withdrawn grant: %s", landing.key, type(err).__name__)
            return Outcome(False, refusal.reason, message, Retry.BACKOFF), landed_from_status(
                landing
            )
        self.drift.release(landing.key)
        self.token_expiry.pop(landing.key, None)
        return replace(refusal, message=f"{refusal.message}; what it had landed was revoked"), None

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
        self.token_expiry.pop(key, None)
        self.drift.release(key)

    # -- landing -------------------------------------------------------------------------

    async def _source_credentials(self, landing: Landing) -> tuple[str, Credentials]:
        """The source Secret's key and its validated kubeconfig.

        ChildToParent: the source is both what is landed and the cluster the controller talks
        to for the child (credential check, minting, drift watch), so ``spec.server`` replaces
        its server here, before the address policy judges it and before anything connects:
        vcluster's Secret names ``https://localhost:8443``, which only works in its own pod.
        ParentToChild: the source is the child written to, dialled at its own server;
        ``spec.server`` is where the child reaches the parent, so it is applied in ``_land``.
        """
        source = await self._read_source(landing)
        policy = self._source_policy(landing)
        data = source.data or {}
        wanted = landing.spec.kubeconfig_secret_key
        if wanted is None and plan.is_token_secret(data):
            # OCM managed-serviceaccount and service-account-token Secrets: token + ca.crt,
            # the server comes from spec.server.
            return plan.TOKEN_KEY, plan.credentials_from_token_secret(
                data, landing.spec.server, policy
            )
        source_key = plan.select_source_key(data, wanted, annotations_of(source))
        raw = plan.decode_secret_value(data, source_key)
        ref = f"source Secret {landing.source_namespace}/{landing.source_name} key {source_key!r}"
        server: str | None = None
        if landing.spec.server and landing.spec.direction is api.Direction.CHILD_TO_PARENT:
            try:
                server = check_server(landing.spec.server, policy)
            except KubeconfigError as err:
                raise LandingProblem(
                    Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
                ) from None
        try:
            return source_key, memo.parsed(raw, policy, server)
        except KubeconfigError as err:
            raise LandingProblem(
                Reason.INVALID_KUBECONFIG, f"{ref}: {err}", Retry.ON_CHANGE
            ) from None

    def _source_policy(self, landing: Landing) -> Policy:
        """The address policy for what a Landing's source names: the controller's, narrowed
        to the sourceNetworks its namespace's LandingPolicies set, if any."""
        ranges = source_networks(self.policies.applying_to(landing.metadata.namespace))
        return self.policy if ranges is None else replace(self.policy, within_networks=ranges)

    async def _land(self, landing: Landing) -> tuple[Landed, Target]:
        spec = landing.spec
        key = landing.key
        # Before anything is read or sent anywhere: may this namespace do what is asked?
        self._authorize(landing)
        source_key, source_creds = await self._source_credentials(landing)
        mint_spec = spec.service_account
        output = spec.output
        # The payload grants access to one cluster; the Secret is written into another.
        payload: Credentials
        source_policy = self._source_policy(landing)
        # The payload is the operator's parent credential (judged by the operator's policy)
        # or the tenant's source (judged by its namespace's narrower one).
        payload_policy = self.policy
        if spec.direction is api.Direction.PARENT_TO_CHILD:
            payload = self.parent.current()
            target = self.clusters.get(source_creds, source_policy)
        else:
            payload_policy = source_policy
            # Already at spec.server (_source_credentials): verified, minted in and watched
            # there, never at the server the child's own kubeconfig names.
            payload = source_creds
            target = self.local_target
        if spec.server:
            try:
                server = check_server(spec.server, payload_policy)
            except KubeconfigError as err:
                raise LandingProblem(
                    Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
                ) from None
        else:
            server = payload.server
        fail_fast(target)
        owner = landing.key
        uid = landing.metadata.uid
        token: minting.MintedToken | None = None
        companions_present: list[str] = []
        try:
            await self._move_if_relocated(landing, target, owner)
            existing = await self._landed_secret(
                target, landing.target_namespace, landing.write_name
            )
            if mint_spec is None:
                landed_creds = memo.with_server(payload, server, payload_policy)
            else:
                landed_creds, token = await self.minter.credentials(
                    landing, payload, server, existing, payload_policy
                )
            token_annotations = token.annotations() if token else None
            if output.format is api.OutputFormat.ARGOCD:
                assert output.argocd is not None
                desired = outputs.argocd_cluster_secret(
                    landed_creds,
                    name=landing.write_name,
                    namespace=landing.target_namespace,
                    owner=owner,
                    owner_uid=uid,
                    spec=output.argocd,
                    annotations=token_annotations,
                )
            else:
                kubeconfig = memo.rendered(
                    landed_creds,
                    mint_spec.name if mint_spec else payload.context_name or "moonlander",
                )
                desired = plan.desired_secret(
                    name=landing.write_name,
                    namespace=landing.target_namespace,
                    owner=owner,
                    owner_uid=uid,
                    kubeconfig=kubeconfig,
                    annotations=token_annotations,
                )
            if existing is None or not plan.is_current(existing, desired):
                # About to land something new: it must work where it grants access.
                await self._verify(payload if mint_spec is None else None, key, payload_policy)
            await self._apply(target, desired, owner, spec.adopt_existing, landing, existing)
            companions_present = await self._companions(landing, target)
        except LandingProblem:
            raise
        except API_ERRORS as err:
            raise await target_problem(self.clusters, target, err, key) from None
        watches: list[tuple[Target, str, str]] = [(target, landing.target_namespace, "Secret")]
        if mint_spec is not None:
            granting = self.clusters.get(payload, payload_policy)
            watches.append((granting, mint_spec.namespace, "ServiceAccount"))
        self.drift.track(key, watches)
        return (
            Landed(
                cluster=target.server,
                server=server,
                namespace=landing.target_namespace,
                name=landing.write_name,
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

    async def _companions(self, landing: Landing, target: Target) -> list[str]:
        """Crossplane ProviderConfigs next to the Secret, where their CRDs exist."""
        output = landing.output
        owner = landing.key
        desired = (
            outputs.crossplane_objects(
                output.crossplane,
                secret_name=landing.write_name,
                secret_namespace=landing.target_namespace,
                owner=owner,
                owner_uid=landing.metadata.uid,
            )
            if output.crossplane is not None
            else []
        )
        present, skipped = await companions.apply(target.client, desired, owner=owner)
        if skipped:
            log.info("%s: no CRD for %s in %s yet", owner, ", ".join(skipped), target.server)
        previous = landing.landed.provider_configs if landing.landed else ()
        if set(previous) - set(present):  # asked for no more (name, scope or providers changed)
            for removed in await companions.prune(target.client, owner=owner, keep=present):
                self._count_write("ProviderConfig", "deleted")
                log.info("%s: removed %s", owner, removed)
        return present

    async def _verify(self, creds: Credentials | None, key: str, policy: Policy) -> None:
        """Asks the cluster a credential grants access to who it is (SelfSubjectReview), so
        a credential that does not authenticate is reported instead of landed. Minted tokens
        (``creds`` None) were just issued by that cluster."""
        if creds is None:
            return
        fingerprint = creds.fingerprint()
        if time.monotonic() - self._verified.get(fingerprint, -VERIFIED_FOR) < VERIFIED_FOR:
            return  # many Landings land the same parent credential: ask once a minute
        granting = self.clusters.get(creds, policy)
        fail_fast(granting)
        # Landings of one credential often arrive together: they share one question.
        review = self._reviews.get(fingerprint)
        if review is None:
            review = asyncio.ensure_future(_self_review(granting.client))
            self._reviews[fingerprint] = review
            review.add_done_callback(lambda done: self._settled(fingerprint, done))
        err = await asyncio.shield(review)
        if isinstance(err, ApiError):
            if err.status.code == 401:
                raise LandingProblem(
                    Reason.CREDENTIAL_REJECTED,
                    f"the credential to land does not authenticate at {creds.server} (401); "
                    "it is not landed",
                    Retry.BACKOFF,
                ) from None
            if err.status.code != 403:  # authenticated, only not allowed to ask: fine
                raise await target_problem(self.clusters, granting, err, key) from None
        elif err is not None:  # the cluster granting access, not the one written to
            raise await target_problem(self.clusters, granting, err, key) from None

    def _settled(self, fingerprint: str, review: asyncio.Future[BaseException | None]) -> None:
        """A SelfSubjectReview answered: an accepted credential counts as verified at once,
        before its waiters resume, so a reconcile starting in between asks no second time."""
        self._reviews.pop(fingerprint, None)
        if review.cancelled() or review.exception() is not None:
            return  # its waiters see the exception
        err = review.result()
        if err is None or (isinstance(err, ApiError) and err.status.code == 403):
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[fingerprint] = time.monotonic()

    async def _read_source(self, landing: Landing) -> Secret:
        landing_ns = landing.metadata.namespace
        source_namespace, source_name = landing.source_ref
        where = f"source Secret {source_namespace}/{source_name}"
        if source_namespace != landing_ns and not self.allow_cross_namespace:
            # Another namespace's Secret: check its grant on the metadata alone, so a Secret
            # that has not granted access is never read.
            try:
                meta = await get_metadata(self.local, source_namespace, source_name)
            except (httpx2.HTTPError, httpcore2.ConnectError) as err:
                raise problem_from_error(err, where) from None
            if meta is None:  # said exactly as for a Secret that has not granted access
                raise plan.cross_namespace_refusal(landing_ns, source_namespace, source_name)
            plan.check_cross_namespace(
                landing_ns, source_namespace, source_name, meta.get("annotations"), allow_all=False
            )
        ref = landing.source_ref
        cached = self._sources.get(ref)
        try:
            if cached is not None and cached[0] == self.source_version(*ref):
                secret = cached[1]  # unchanged since we read it, as the metadata watch says
            else:
                secret = await self.local.get(Secret, source_name, namespace=source_namespace)
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
            source_namespace,
            source_name,
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
        landing: Landing,
        existing: Mapping[str, Any] | None,
    ) -> None:
        client = target.client
        name = desired["metadata"]["name"]
        namespace = desired["metadata"]["namespace"]
        obj = cast(Secret, Secret.from_dict(desired))
        ref = (target.key, namespace, name)
        if existing is None:
            await self._ensure_namespace(target, namespace)
            # Create, never apply, what we believe absent: the watch cache only sees Secrets
            # Moonlander manages, so a foreign one of that name must make this fail (409)
            # rather than be overwritten.
            try:
                async with self._expecting(ref, desired):
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
                self._record_write(target, desired, written, landing, created=True)
                return
        repaired = False
        if existing is not None:
            plan.check_adoptable(existing, owner, adopt, f"Secret {namespace}/{name}")
            if plan.is_current(existing, desired):
                return
            # Not as we last wrote it: someone else changed it. Otherwise what changed is
            # this Landing's input (a rotation, a new parent kubeconfig), which the status
            # records; an Event for each would be one more write per Landing on a fleet.
            last = self.own_digests.get((target.key, namespace, name))
            repaired = last is not None and last != own.secret_digest(existing)
            if plan.type_change_needed(existing, desired):
                await client.delete(Secret, name, namespace=namespace)
        async with self._expecting(ref, desired):
            written = await client.apply(obj, force=True)
        self._record_write(target, desired, written, landing, created=False, repaired=repaired)

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
        self,
        target: Target,
        desired: Mapping[str, Any],
        written: Secret,
        landing: Landing,
        *,
        created: bool,
        repaired: bool = False,
    ) -> None:
        namespace = desired["metadata"]["namespace"]
        name = desired["metadata"]["name"]
        self.own_digests[(target.key, namespace, name)] = own.secret_digest(desired)
        self.drift.remember(target, written.to_dict(), namespace, name)
        if written.metadata and written.metadata.resourceVersion:
            if len(self.own_writes) > 10_000:  # echoes lost to watch restarts: start afresh
                self.own_writes.clear()
            self.own_writes.add((target.key, namespace, name, written.metadata.resourceVersion))
        self._count_write("Secret", "Created" if created else "Updated")
        if repaired:
            self.events.record(
                landing.metadata,
                "Normal",
                "Repaired",
                f"Secret {namespace}/{name} in {target.server} had been changed; restored",
            )

    def _count_write(self, kind: str, action: str) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(kind, action.lower()).inc()

    async def _move_if_relocated(self, landing: Landing, target: Target, owner: str) -> None:
        """When the target name or namespace changed, the old Secret (if ours) is removed."""
        previous = landing.landed
        if previous is None or previous.cluster != target.server:
            return
        if (previous.namespace, previous.name) == (landing.target_namespace, landing.write_name):
            return
        await self._delete_if_ours(target, previous.name, previous.namespace, owner)

    async def _delete_if_ours(self, target: Target, name: str, namespace: str, owner: str) -> bool:
        existing = await self._get_secret(target.client, name, namespace)
        if existing is None or own.ownership(existing, owner) is not own.Ownership.OURS:
            return False
        try:
            await target.client.delete(Secret, name, namespace=namespace)
            self._count_write("Secret", "deleted")
        except ApiError as err:
            if err.status.code != 404:
                raise
        self.drift.remember(target, None, namespace, name)
        return True

    async def report_policy(self, name: str) -> None:
        """Writes a LandingPolicy's status (the namespaces it applies to, what of it the
        fence closes, its ambiguous cluster-scoped names) when it changed."""
        policy = self.policies.policies.get(name)
        if policy is None:
            return
        status = policy_status(self.policies, policy, self.fence)
        if self._policy_status.get(name) == status:
            return
        try:
            await self.local.patch(
                LandingPolicyResource.Status,
                name,
                {"status": status},
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code != 404:
                log.warning("LandingPolicy %s: status not written: %s", name, err.status.code)
            return
        self._policy_status[name] = status

    # -- deletion ------------------------------------------------------------------------

    async def _finalize(self, landing: Landing | InvalidLanding) -> Outcome:
        key = landing.key
        if api.FINALIZER not in landing.metadata.finalizers:
            self.drift.release(key)
            return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)
        # A Landing whose spec cannot be read is released without revoking: nothing says what.
        # Orphan keeps what was landed only while its grant holds: a Landing no longer
        # permitted is revoked like with Delete. Even while permitted it keeps no identity
        # minted with the parent's rights: no Landing would renew it, nor revoke it when the
        # grant goes (its landed Secret stays, its token no longer works).
        revoke: Callable[[Landing], Awaitable[None]] | None = None
        release = "set spec.deletionPolicy to Orphan to release the Landing without it"
        what = "the landed Secret"
        if isinstance(landing, Landing):
            if landing.spec.deletion_policy is api.DeletionPolicy.DELETE:
                revoke = self._revoke
            elif not self._permitted(landing):
                revoke = self._revoke
                release = "its grant is withdrawn, so deletionPolicy Orphan does not keep it"
            elif landing.landed is not None and _minted_ref(
                landing.spec.service_account, landing.landed.service_account
            ):
                revoke = self._revoke_parent_identity
                release = "deletionPolicy Orphan keeps the landed Secret, never a minted identity"
                what = "the minted ServiceAccount"
        if revoke is not None and isinstance(landing, Landing):
            # Bounded: a target that does not answer cannot hold the deletion. A permitted
            # Orphan never calls the target at all (only the parent, for a minted identity).
            try:
                async with asyncio.timeout(FINALIZE_DEADLINE):
                    await revoke(landing)
            except TimeoutError:
                problem: LandingProblem | None = LandingProblem(
                    Reason.CLUSTER_UNREACHABLE,
                    f"revoking did not finish within {FINALIZE_DEADLINE:g}s",
                    Retry.BACKOFF,
                )
            except LandingProblem as err:
                problem = err
            except Exception as err:  # whatever it was, the Landing says so
                log.exception("%s: revoke failed", key)
                problem = problem_from_error(err, "revoke")
            else:
                problem = None
            if problem is not None:
                outcome = Outcome(
                    False,
                    problem.outcome.reason,
                    f"cannot delete {what} yet: {problem.outcome.message}; {release}",
                    Retry.BACKOFF,
                    problem.outcome.retry_after,
                )
                await self._write_status(landing, outcome, landed_from_status(landing))
                return outcome
        self.drift.release(key)
        await self._remove_finalizer(landing)
        return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)

    async def _revoke(self, landing: Landing) -> None:
        spec = landing.spec
        owner = landing.key
        landed = landing.landed
        if landed is None:
            return  # nothing was ever landed
        mint_spec = spec.service_account
        minted = _minted_ref(mint_spec, landed.service_account)
        await self._revoke_parent_identity(landing)
        if minted is not None and spec.direction is api.Direction.CHILD_TO_PARENT:
            # Made in the tenant's child with its own credential: removed there too.
            _, child_creds = await self._source_credentials(landing)
            await self._revoke_identity(landing, minted, child_creds, self._source_policy(landing))
        if spec.direction is api.Direction.CHILD_TO_PARENT:
            target = self.local_target
        else:
            _, child_creds = await self._source_credentials(landing)
            target = self.clusters.get(child_creds, self._source_policy(landing))
            fail_fast(target)  # known not to answer: say so now rather than wait on it
        try:
            await self._delete_if_ours(target, landing.write_name, landing.target_namespace, owner)
            if landed.cluster == target.server:
                await self._delete_if_ours(target, landed.name, landed.namespace, owner)
                if landed.provider_configs:
                    await companions.prune(target.client, owner=owner, keep=())
        except API_ERRORS as err:
            raise await target_problem(self.clusters, target, err, owner) from None
        self.events.record(
            landing.metadata,
            "Normal",
            "Revoked",
            f"deleted Secret {landing.target} from {target.server}",
        )

    async def _revoke_parent_identity(self, landing: Landing) -> None:
        """Revokes what the Landing minted with the parent's rights. First, and needing
        nothing of the tenant's: its source may be gone, its spec may have dropped or renamed
        the ServiceAccount or flipped the direction since (every object marked for this
        Landing goes, whatever its name; for a ChildToParent mint there is none)."""
        landed = landing.landed
        if landed is None:
            return
        minted = _minted_ref(landing.spec.service_account, landed.service_account)
        if minted is not None:
            await self._revoke_identity(landing, minted, self.parent.current(), self.policy)

    async def _revoke_identity(
        self, landing: Landing, minted: minting.ObjectRef, creds: Credentials, policy: Policy
    ) -> None:
        """Deletes the ServiceAccount (so every token issued for it stops working) and the
        RBAC objects minted for ``landing`` in the cluster ``creds`` grant access to."""
        owner = landing.key
        granting = self.clusters.get(creds, policy)
        fail_fast(granting)
        try:
            removed = await minting.revoke(granting.client, minted, owner=owner)
        except API_ERRORS as err:
            raise await target_problem(self.clusters, granting, err, owner) from None
        if removed:
            self.events.record(
                landing.metadata,
                "Normal",
                "Revoked",
                f"deleted ServiceAccount {minted.namespace}/{minted.name} and "
                f"{len(removed) - 1} RBAC objects from {granting.server}",
            )

    # -- metadata and status -------------------------------------------------------------

    async def _ensure_finalizer(self, landing: Landing) -> None:
        meta = landing.metadata
        if api.FINALIZER in meta.finalizers:
            return
        patch = {
            "metadata": {
                "finalizers": [*meta.finalizers, api.FINALIZER],
                "resourceVersion": meta.resource_version,
            }
        }
        updated = await self.local.patch(
            LANDING, meta.name, patch, namespace=meta.namespace, patch_type=PatchType.MERGE
        )
        self.observe(updated.to_dict())
        self._count_write("Landing", "finalizer")

    async def _remove_finalizer(self, landing: Landing | InvalidLanding) -> None:
        meta = landing.metadata
        finalizers = [f for f in meta.finalizers if f != api.FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}}
        try:
            await self.local.patch(
                LANDING, meta.name, patch, namespace=meta.namespace, patch_type=PatchType.MERGE
            )
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def report(self, landing: Landing | InvalidLanding, outcome: Outcome) -> None:
        """Writes an outcome the reconcile could not write itself (it was cut off)."""
        await self._write_status(landing, outcome, landed_from_status(landing))

    async def _write_status(
        self,
        landing: Landing | InvalidLanding,
        outcome: Outcome,
        landed: Landed | None,
        *,
        not_before: float | None = None,
    ) -> None:
        """Writes the status (and the Event of a transition) when it changed; with
        ``not_before`` (monotonic time), no sooner."""
        meta = landing.metadata

        def decide() -> StatusUpdate | None:
            return next_status(
                landing.status,
                outcome=outcome,
                generation=meta.generation,
                target=landing.target if isinstance(landing, Landing) else None,
                landed=landed,
                now=now_rfc3339(),
                revoked=outcome.reason is Reason.NOT_PERMITTED and landed is None,
            )

        update = decide()
        if update is None:
            return  # nothing changed: nothing is written
        if not_before is not None and time.monotonic() < not_before:
            await asyncio.sleep(not_before - time.monotonic())
            update = decide()  # its times as of now, not as of the failure
            if update is None:
                return
        routine = update.event is None and outcome.ready and landing.status.landed is not None
        if routine and self.defer_status(landing.key):
            return  # written when the loop comes back to it, after the Landings waiting now
        if update.event is not None:
            self.events.record(meta, *update.event)
        try:
            updated = await self.local.patch(
                LANDING.Status,
                meta.name,
                {"status": update.status},
                namespace=meta.namespace,
                patch_type=PatchType.MERGE,
            )
            self.observe(updated.to_dict())
            self._count_write("Landing", "status")
        except ApiError as err:
            if err.status.code != 404:  # deleted meanwhile: nothing to report on
                raise


def _minted_ref(
    spec: api.ServiceAccountSpec | None, landed: str | None
) -> minting.ObjectRef | None:
    """The ServiceAccount a Landing minted: as its spec says, else as its status recorded
    (``namespace/name``); None when it minted none."""
    if spec is not None:
        return minting.ObjectRef("ServiceAccount", spec.name, spec.namespace)
    namespace, _, name = (landed or "").partition("/")
    if not name:
        return None
    return minting.ObjectRef("ServiceAccount", name, namespace)


async def _self_review(client: AsyncClient) -> BaseException | None:
    """One SelfSubjectReview; the error it raised (for each waiter to judge), else None."""
    try:
        await client.create(SelfSubjectReview(metadata=ObjectMeta()))
    except (ApiError, *API_ERRORS) as err:
        return err
    return None
