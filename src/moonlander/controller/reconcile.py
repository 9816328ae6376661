"""One reconcile of one Landing: the named steps over one record of the run, then its status.

Level-based and idempotent: every call computes the desired state from scratch and writes
only what differs. The steps (``controller.steps``: authorize, read source, choose target,
relocate, read landed, credentials, render, verify, write, companions, track) decide; the
store (``controller.store``) is the only code that writes. What is left here is the flow:
deletion and suspension, what a failure means for what was landed, and the status. Errors
become ``LandingProblem`` outcomes with a reason, a message free of secret material and a
retry class; the caller schedules the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient

from moonlander import api
from moonlander.api import InvalidLanding, LandedStatus, Landing
from moonlander.api.reasons import LandingProblem, Outcome, Reason, Retry
from moonlander.controller import holds, steps
from moonlander.controller.authorize import Fence, PolicyStore
from moonlander.controller.errors import (
    API_ERRORS,
    UNREACHABLE_AFTER,
    is_undisclosed,
    problem_from_error,
)
from moonlander.controller.metrics import Metrics
from moonlander.controller.parent import ParentKubeconfig
from moonlander.controller.policy_status import policy_status
from moonlander.controller.status import landed_of
from moonlander.controller.steps.permission import permitted
from moonlander.controller.steps.revocation import minted_any, revoke_parent_identity
from moonlander.controller.steps.status import StatusWriter
from moonlander.controller.store import Store
from moonlander.credentials import Policy
from moonlander.kube.clusters import ClusterPool, Target
from moonlander.kube.drift import DriftWatches
from moonlander.kube.events import EventRecorder

log = logging.getLogger(__name__)

# Revoking on deletion makes a few calls, each within the request deadline; past this the
# Landing says why it is not released yet (and that deletionPolicy Orphan releases it).
FINALIZE_DEADLINE = 20.0
REVOKED = "what it had landed was revoked"


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
        store: Store | None = None,
    ) -> None:
        # The one writer; the unit tests hand in a fake of it.
        self.store = store or Store(
            local=local,
            clusters=clusters,
            drift=drift,
            events=events,
            policy=policy,
            observe=observe,
            metrics=metrics,
        )
        self.ctx = steps.Context(
            store=self.store,
            policy=policy,
            parent=parent,
            local_target=local_target,
            sources=steps.SourceCache(),
            verifier=steps.Verifier(),
            # The operator's LandingPolicies, kept by the policy watch, and what none opens.
            policies=policies if policies is not None else PolicyStore(),
            fence=fence or Fence(),
            allow_cross_namespace=allow_cross_namespace,
        )
        self.ctx.sources.version = source_version
        self.status = StatusWriter(self.store)
        self.drift = self.store.drift
        # Landing key -> unix time the token it minted expires, for metrics.
        self.token_expiry: dict[str, float] = {}
        # LandingPolicy name -> the status last written, so that nothing is written twice.
        self._policy_status: dict[str, dict[str, Any]] = {}
        # Revocations of what was landed unrecorded, running off their reconciles.
        self._background: set[asyncio.Task[None]] = set()

    # What the loop and the operator reach: the policies it keeps, the source versions the
    # metadata watch reports, the deferral of routine status writes, echoes of our writes.

    @property
    def policies(self) -> PolicyStore:
        return self.ctx.policies

    @property
    def fence(self) -> Fence:
        return self.ctx.fence

    @property
    def allow_cross_namespace(self) -> bool:
        return self.ctx.allow_cross_namespace

    @allow_cross_namespace.setter
    def allow_cross_namespace(self, allow: bool) -> None:
        self.ctx.allow_cross_namespace = allow

    @property
    def source_version(self) -> Callable[[str, str], str | None]:
        return self.ctx.sources.version

    @source_version.setter
    def source_version(self, version: Callable[[str, str], str | None]) -> None:
        self.ctx.sources.version = version

    @property
    def defer_status(self) -> Callable[[str], bool]:
        return self.status.defer

    @defer_status.setter
    def defer_status(self, defer: Callable[[str], bool]) -> None:
        self.status.defer = defer

    def is_echo(
        self, target_key: str, namespace: str, name: str, version: str, digest: str | None = None
    ) -> bool:
        return self.store.is_echo(target_key, namespace, name, version, digest)

    def forget_source(self, ref: tuple[str, str]) -> None:
        self.ctx.sources.forget(ref)

    def forget(self, key: str) -> None:
        """The Landing is gone: drop what is kept about it."""
        self.token_expiry.pop(key, None)
        self.drift.release(key)

    # -- the flow ------------------------------------------------------------------------

    async def reconcile(self, landing: Landing | InvalidLanding) -> Outcome:
        started = time.monotonic()
        if landing.metadata.deletion_timestamp:
            return await self._finalize(landing)
        if isinstance(landing, InvalidLanding):
            outcome = Outcome(False, Reason.INVALID_SPEC, str(landing.error), Retry.ON_CHANGE)
            await self.status.write(landing, outcome, None)
            return outcome
        if landing.spec.suspend:
            return await self._suspended(landing)
        run = steps.LandingRun(landing)
        deleting = False
        try:
            await self.store.add_finalizer(landing.metadata)
            await steps.land(run, self.ctx)
            assert run.landed is not None
            outcome = Outcome(
                True,
                Reason.SYNCED,
                f"landed in {run.landed.cluster} as {landing.target} "
                f"(source key {run.landed.source_key!r})",
                Retry.RESYNC,
                requeue_after=self._renew_in(run),
            )
        except LandingProblem as problem:
            outcome = problem.outcome
            deleting = isinstance(problem, steps.SourceDeleting)
        except API_ERRORS as err:
            outcome = problem_from_error(err, "cluster API").outcome
        except Exception as err:  # a fault of our own: still a status and a retry, never a crash
            log.exception("%s: reconcile failed", landing.key)
            outcome = problem_from_error(err, "reconcile").outcome
        if run.target is not None and outcome.ready:
            self.store.succeeded(run.target)
        previous = landed_of(landing)
        withdrawn = deleting or outcome.reason is Reason.NOT_PERMITTED
        if withdrawn and previous is not None:
            # The grant it was landed under is gone, or the tenant's access (its source
            # Secret, held for this) is going: what it landed goes too.
            outcome, previous = await self._withdraw(landing, outcome)
        elif deleting:  # revoked already (or nothing landed): said as when it was revoked
            outcome = replace(outcome, message=f"{outcome.message}; {REVOKED}")
            # Its source going may have carried a write the status never recorded.
            await self._revoke_unrecorded(landing)
        # When an undisclosed failure is told must say no more than what is told: a closed
        # port fails at once, a silent one after the connect timeout.
        not_before = started + UNREACHABLE_AFTER if is_undisclosed(outcome) else None
        await self.status.write(
            landing, outcome, run.landed or previous, not_before=not_before, revoked=withdrawn
        )
        if withdrawn and previous is None:
            # Revoked (or nothing landed), as the status now says: no hold is needed.
            await self._release(landing, run.source_secret)
        if outcome.reason in (Reason.CLUSTER_UNREACHABLE, Reason.INVALID_RESPONSE):
            # After the status, so it tells no sooner than the status does.
            await steps.report_unreachable(run, self.ctx, run.landed or previous)
        return outcome

    def _renew_in(self, run: steps.LandingRun) -> float | None:
        """Seconds until a minted token is due for renewal (the next reconcile)."""
        mint_spec = run.landing.spec.service_account
        if run.token is None or mint_spec is None:
            return None
        self.token_expiry[run.key] = run.token.expires_at.timestamp()
        renew_at = run.token.renew_at(mint_spec.renew_before_fraction)
        return max(1.0, (renew_at - datetime.now(UTC)).total_seconds())

    async def _suspended(self, landing: Landing) -> Outcome:
        """Nothing is landed, refreshed or repaired; but the grant is checked all the same,
        and what a Landing no longer permitted had landed is revoked: suspending must not
        keep a credential past its grant. Nor past its source: a held source Secret being
        deleted is revoked through and released as when not suspended."""
        source: Mapping[str, Any] | None = None
        try:
            await steps.authorize(steps.LandingRun(landing), self.ctx)
            source = await self._held_source_deleting(landing)
            if source is not None:
                raise steps.SourceDeleting(landing)
        except LandingProblem as problem:
            outcome, previous = problem.outcome, landed_of(landing)
            if previous is not None:
                outcome, previous = await self._withdraw(landing, outcome)
            elif isinstance(problem, steps.SourceDeleting):
                outcome = replace(outcome, message=f"{outcome.message}; {REVOKED}")
                await self._revoke_unrecorded(landing)
            await self.status.write(landing, outcome, previous, revoked=True)
            if previous is None:
                await self._release(landing, source)
            return outcome
        except API_ERRORS as err:
            outcome = problem_from_error(err, "source Secret").outcome
            await self.status.write(landing, outcome, landed_of(landing))
            return outcome
        outcome = Outcome(False, Reason.SUSPENDED, "reconciliation is suspended", Retry.ON_CHANGE)
        await self.status.write(landing, outcome, landed_of(landing))
        return outcome

    async def _withdraw(
        self, landing: Landing, refusal: Outcome
    ) -> tuple[Outcome, LandedStatus | None]:
        """Revokes what a Landing landed when it is no longer permitted to; the outcome, and
        what the status should still say was landed (nothing once revoked)."""
        try:
            await steps.revoke(landing, self.ctx)
        except LandingProblem as problem:
            message = (
                f"{refusal.message}; what it landed could not be revoked yet: "
                f"{problem.outcome.message}"
            )
            return Outcome(False, refusal.reason, message, Retry.BACKOFF), landed_of(landing)
        except API_ERRORS as err:
            message = f"{refusal.message}; revoking what it landed failed; retrying"
            log.info("%s: revoking after a withdrawn grant: %s", landing.key, type(err).__name__)
            return Outcome(False, refusal.reason, message, Retry.BACKOFF), landed_of(landing)
        self.drift.release(landing.key)
        self.token_expiry.pop(landing.key, None)
        return replace(refusal, message=f"{refusal.message}; {REVOKED}"), None

    async def _release(
        self, landing: Landing | InvalidLanding, secret: Mapping[str, Any] | None
    ) -> bool:
        """Lets go of the Landing's holds on source Secrets (``secret``: its source as in
        hand); False when a release failed (it is tried again on the next attempt)."""
        uid = landing.metadata.uid
        if not uid:
            return True
        refs = set()
        if isinstance(landing, Landing) and secret is not None and holds.is_held(secret, uid):
            refs.add(landing.source_ref)
        try:
            await steps.release(self.ctx, landing.metadata.namespace, uid, refs)
        except API_ERRORS as err:
            log.info("%s: hold on its source Secret not released: %s", landing.key, _name(err))
            return False
        return True

    async def report(self, landing: Landing | InvalidLanding, outcome: Outcome) -> None:
        """Writes an outcome the reconcile could not write itself (it was cut off)."""
        await self.status.write(landing, outcome, landed_of(landing))

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
            await self.store.patch_policy_status(name, status)
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
        revoke: Callable[[Landing, steps.Context], Awaitable[None]] | None = None
        release = "set spec.deletionPolicy to Orphan to release the Landing without it"
        what = "the landed Secret"
        permitted_now = isinstance(landing, Landing) and permitted(
            steps.LandingRun(landing), self.ctx
        )
        if isinstance(landing, Landing):
            if landing.spec.deletion_policy is api.DeletionPolicy.DELETE:
                revoke = steps.revoke
            elif not permitted_now:
                revoke = steps.revoke
                release = "its grant is withdrawn, so deletionPolicy Orphan does not keep it"
            elif minted_any(landing):
                revoke = revoke_parent_identity
                release = "deletionPolicy Orphan keeps the landed Secret, never a minted identity"
                what = "the minted ServiceAccount"
        if revoke is not None and isinstance(landing, Landing):
            # Bounded: a target that does not answer cannot hold the deletion. A permitted
            # Orphan never calls the target at all (only the parent, for a minted identity).
            try:
                async with asyncio.timeout(FINALIZE_DEADLINE):
                    await revoke(landing, self.ctx)
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
                await self.status.write(landing, outcome, landed_of(landing))
                return outcome
        if revoke is steps.revoke and isinstance(landing, Landing) and permitted_now:
            await self._revoke_unrecorded(landing)
        # Revoked, or kept by Orphan: either way the Landing holds its source no longer.
        try:
            source = await self._source_meta(landing)
        except API_ERRORS as err:
            log.info("%s: source Secret not read: %s", key, _name(err))
            source, released = None, False
        else:
            if (
                revoke is steps.revoke
                and isinstance(landing, Landing)
                and landing.landed
                and source is not None
                and holds.is_held(source, landing.metadata.uid)
            ):
                # Recorded before the hold goes: a retry after a failed write below (the
                # finalizer's removal) has nothing left to revoke, so it never waits on a
                # source that is gone once released (soak finding 3).
                await self.status.write(
                    landing,
                    Outcome(False, Reason.DELETING, REVOKED, Retry.ON_CHANGE),
                    None,
                    revoked=True,
                )
            released = await self._release(landing, source)
        if not released:
            outcome = Outcome(
                False,
                Reason.TRANSIENT_ERROR,
                "cannot release its hold on its source Secret yet; retrying",
                Retry.BACKOFF,
            )
            await self.status.write(landing, outcome, landed_of(landing))
            return outcome
        self.drift.release(key)
        await self.store.remove_finalizer(landing.metadata)
        return Outcome(True, Reason.DELETING, "deleted", Retry.ON_CHANGE)

    async def _revoke_unrecorded(self, landing: Landing) -> None:
        """Deletes, off the reconcile and telling nothing, what the Landing may have landed
        without its status recording it (``steps.unrecorded``); only for a Landing
        permitted to land it, so that a forged hold makes no refused Landing call out."""
        run = await steps.unrecorded(landing, self.ctx)
        if run is None:
            return
        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _held_source_deleting(self, landing: Landing) -> Mapping[str, Any] | None:
        """The metadata of the source Secret this Landing holds, when it is being deleted
        (read only when the Secret watch says it is held)."""
        ref = holds.wanted(landing)
        if ref is None or ref not in self.ctx.sources.held(landing.metadata.uid):
            return None
        meta = await self.store.source_metadata(*ref)
        if meta is None or not holds.is_deleting(meta):
            return None
        return meta

    async def _source_meta(self, landing: Landing | InvalidLanding) -> Mapping[str, Any] | None:
        """The metadata of a Landing's source Secret of its own namespace (the one it may
        hold), or None."""
        if not isinstance(landing, Landing):
            return None
        if landing.source_namespace != landing.metadata.namespace:
            return None
        if landing.spec.cluster_profile_name is not None:
            return None
        return await self.store.source_metadata(*landing.source_ref)


def _name(err: BaseException) -> str:
    return type(err).__name__
