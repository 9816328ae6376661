"""The controller's moving parts: what it knows of Landings, what wakes them, the workers.

The controller's own list-watches (``kube/watch.py``, wired in operator.py) deliver events
here as ``landing_event`` and ``secret_event``. Each event only updates the in-memory view
and enqueues keys; workers take keys from the queue and call the reconciler, then schedule
the next attempt from the outcome: periodic resync when converged, capped exponential
backoff with jitter while waiting or after a transient fault, nothing but a watched change
for a permanent problem.

No tenant can take the workers: a reconcile holds its worker at most ``Timing.slow_after``
seconds, then goes on off the workers as a slow reconcile of its namespace; a namespace with
``Timing.slow_share`` slow reconciles in flight gets no more (its other Landings wait, parked,
until one ends; deletions never wait). A reconcile that has not ended after
``Timing.reconcile_deadline`` is cancelled, and one superseded by a new spec or a deletion is
cancelled at once; every reconcile ends with a status, whatever it raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from moonlander import api
from moonlander.api.reasons import Outcome, Reason, Retry
from moonlander.controller import holds, plan
from moonlander.controller.authorize import labels_of
from moonlander.controller.metrics import Metrics
from moonlander.controller.reconcile import Reconciler
from moonlander.controller.sharding import Shards
from moonlander.controller.workers import Attempts, Workers
from moonlander.controller.workqueue import WorkQueue
from moonlander.kube.backoff import jittered

log = logging.getLogger(__name__)

# Work-queue keys of LandingPolicies whose status is due ("policy:<name>"); Landing keys are
# "<namespace>/<name>" and a namespace has no ':'.
POLICY_KEY = "policy:"


@dataclass(frozen=True)
class Timing:
    resync: float = 600.0  # converged Landings are re-checked this often (jittered)
    backoff_base: float = 1.0
    backoff_cap: float = 120.0
    workers: int = 16
    slow_after: float = 2.0  # a reconcile holds a worker at most this long
    slow_share: int = 0  # slow reconciles one namespace may have in flight (0: workers / 2)
    reconcile_deadline: float = 60.0  # a reconcile still running then is cancelled

    @property
    def share(self) -> int:
        return self.slow_share or max(1, self.workers // 2)


def _namespace(key: str) -> str | None:
    """The namespace of a Landing key; None for other work (LandingPolicy status)."""
    return None if key.startswith(POLICY_KEY) else key.partition("/")[0]


def _trigger_view(landing: api.ParsedLanding) -> tuple[Any, ...]:
    """What in a Landing, when it changes, needs a reconcile: its spec (generation), its
    deletion, and our finalizer going missing (it is put back at once, or the Landing's
    delete could not revoke). Status writes do not."""
    meta = landing.metadata
    return (meta.generation, meta.deletion_timestamp, api.FINALIZER in meta.finalizers)


def _wakes(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    """A new spec or a deletion wakes a Landing; of the finalizer, only its going missing:
    its coming back is most often the echo of our own write, and must not cancel the
    reconcile that made it (the write's accounting with it)."""
    return before[:2] != after[:2] or (before[2] and not after[2])


def _grants_names(policy: api.LandingPolicy | None) -> bool:
    """Whether ``policy`` grants cluster-scoped names (outputs.clusterScoped)."""
    return (
        policy is not None
        and policy.spec.outputs is not None
        and bool(policy.spec.outputs.cluster_scoped)
    )


def _newer(meta: api.ObjectMeta, than: api.ObjectMeta) -> bool:
    # resourceVersions are opaque, but every apiserver backed by etcd uses its revision.
    try:
        return int(meta.resource_version) > int(than.resource_version)
    except ValueError:
        return True


class Controller:
    def __init__(
        self, reconciler: Reconciler, timing: Timing = Timing(), metrics: Metrics | None = None
    ) -> None:
        self.reconciler = reconciler
        self.timing = timing
        self.metrics = metrics
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.queue = WorkQueue()
        # Every Landing as last seen, parsed once at this edge (api.parse_landing).
        self.landings: dict[str, api.ParsedLanding] = {}
        self._sources: dict[str, tuple[str, str]] = {}
        self._by_source: dict[tuple[str, str], set[str]] = defaultdict(set)
        # resourceVersion of every Secret the metadata watch has seen (names only, no data).
        self._source_versions: dict[tuple[str, str], str] = {}
        # The cross-namespace grant annotation of Secrets that carry one, as last seen: a
        # grant taken back (or the Secret deleted) wakes the Landings it had granted.
        self._grants: dict[tuple[str, str], dict[str, str]] = {}
        # Which Landings (by uid) hold which Secrets (controller.holds), from the finalizers
        # the metadata watch sees: what a Landing lets go of when it no longer needs it.
        self._holds: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._holders: dict[tuple[str, str], set[str]] = {}
        self._attempts = Attempts(base=timing.backoff_base, cap=timing.backoff_cap)
        self._workers = Workers(self.queue, timing.workers, self._dispatch, lambda: self.shards)
        self.last_outcomes: dict[str, Outcome] = {}
        # Reconciles in flight by key; the slow ones (past slow_after) by namespace; keys
        # parked while their namespace has its share of slow ones, in arrival order.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slow: dict[str, set[str]] = defaultdict(set)
        self._parked: dict[str, dict[str, None]] = defaultdict(dict)
        # Keys whose routine status waits for a second pass (defer_status).
        self._deferred: set[str] = set()
        reconciler.defer_status = self.defer_status
        # With --shards: the keys this replica owns (None: all of them).
        self.shards: Shards | None = None

    # -- events in ----------------------------------------------------------------------

    def policy_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A LandingPolicy changed: what every Landing may do may have changed, so all are
        reconciled again (policies are few and change rarely), and the policies' status is
        brought up to date."""
        store = self.reconciler.policies
        name = str((body.get("metadata") or {}).get("name"))
        if event_type == "DELETED":
            store.policies.pop(name, None)
        else:
            try:
                store.policies[name] = api.parse_policy(body)
            except api.SpecError as err:
                # A policy that cannot be read grants nothing (its schema makes this rare).
                store.policies.pop(name, None)
                log.warning("LandingPolicy %s grants nothing: %s", name, err)
        for name in store.policies:
            self.queue.add(POLICY_KEY + name)
        self.wake(list(self.landings))

    def namespace_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A namespace's labels decide which policies select it: when that changes, the
        namespace's Landings are reconciled and those policies' status brought up to date."""
        store = self.reconciler.policies
        meta = body.get("metadata") or {}
        namespace = str(meta.get("name"))
        labels = None if event_type == "DELETED" else labels_of(meta)
        if store.namespace_labels.get(namespace) == labels:
            return
        before = {p.name for p in store.applying_to(namespace)}
        if labels is None:
            store.namespace_labels.pop(namespace, None)
        else:
            store.namespace_labels[namespace] = labels
        changed = before ^ {p.name for p in store.applying_to(namespace)}
        if not changed:
            return  # e.g. every namespace of a first list, before any policy selects it
        for name in changed:
            self.queue.add(POLICY_KEY + name)
        if any(_grants_names(store.policies.get(name)) for name in changed):
            # Who holds a cluster-scoped name changed: its holder may be in any namespace,
            # and every policy granting names may now report it ambiguous (or no longer).
            for name, policy in store.policies.items():
                if _grants_names(policy):
                    self.queue.add(POLICY_KEY + name)
            self.wake(list(self.landings))
            return
        prefix = namespace + "/"
        self.wake(k for k in self.landings if k.startswith(prefix))

    def landing_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        landing = api.parse_landing(body)
        key = landing.key
        if event_type == "DELETED":
            self._forget(key)
            return
        previous = self.landings.get(key)
        if previous is not None and not _newer(landing.metadata, previous.metadata):
            return  # an event older than our own write, which observe() already recorded
        self.landings[key] = landing
        self._index_source(key, landing)
        if previous is None or _wakes(_trigger_view(previous), _trigger_view(landing)):
            self.queue.add(key)
            self._supersede(key)

    def source_version(self, namespace: str, name: str) -> str | None:
        return self._source_versions.get((namespace, name))

    def observe(self, body: Mapping[str, Any]) -> None:
        """Our own write of a Landing: remember it unless the watch already brought newer."""
        landing = api.parse_landing(body)
        current = self.landings.get(landing.key)
        if current is None or _newer(landing.metadata, current.metadata):
            self.landings[landing.key] = landing

    def secret_event(self, event_type: str, meta: Mapping[str, Any]) -> None:
        """A Secret in the local cluster changed (``meta``: its metadata, never its data)."""
        ref = (meta.get("namespace", ""), meta.get("name", ""))
        before = self._grants.pop(ref, None)
        after: dict[str, str] | None = None
        self._index_holds(ref, () if event_type == "DELETED" else meta.get("finalizers") or ())
        if event_type == "DELETED":
            self._source_versions.pop(ref, None)
            self.reconciler.forget_source(ref)
        else:
            self._source_versions[ref] = str(meta.get("resourceVersion", ""))
            granted = (meta.get("annotations") or {}).get(api.ALLOWED_NAMESPACES_ANNOTATION)
            if granted is not None:
                after = self._grants[ref] = {api.ALLOWED_NAMESPACES_ANNOTATION: str(granted)}
        # A hold a Landing took or let go on its source: nothing for any Landing to read.
        version = str(meta.get("resourceVersion", ""))
        if event_type != "DELETED" and self.reconciler.is_echo(holds.ECHO, *ref, version):
            return
        for key in self._by_source.get(ref, ()):
            if self._may_see(key, ref, before, after):
                self.queue.add(key)
        # A Secret this controller landed in its own cluster: repair drift.
        labels = meta.get("labels") or {}
        if labels.get(api.MANAGED_BY_LABEL) == api.MANAGED_BY:
            owner = (meta.get("annotations") or {}).get(api.OWNER_ANNOTATION)
            echo = self.reconciler.is_echo("local", *ref, version)
            if owner in self.landings and not echo:
                self.queue.add(owner)

    def held(self, uid: str) -> set[tuple[str, str]]:
        """The Secrets the Landing of ``uid`` holds, as last seen."""
        return set(self._holds.get(uid, ()))

    def _index_holds(self, ref: tuple[str, str], finalizers: Iterable[str]) -> None:
        now = holds.holders(finalizers)
        for uid in self._holders.get(ref, set()) - now:
            self._holds[uid].discard(ref)
            if not self._holds[uid]:
                del self._holds[uid]
        for uid in now:
            self._holds[uid].add(ref)
        if now:
            self._holders[ref] = now
        else:
            self._holders.pop(ref, None)

    def _may_see(
        self,
        key: str,
        ref: tuple[str, str],
        before: Mapping[str, str] | None,
        after: Mapping[str, str] | None,
    ) -> bool:
        """Whether a change of Secret ``ref`` may wake Landing ``key``: only when the Landing
        may read it, now or until now. A Landing woken by a Secret it may not read would
        tell its tenant (who watches the status it forged being rewritten) when a Secret of
        another namespace is created, changed or deleted."""
        namespace = _namespace(key)
        if namespace == ref[0] or self.reconciler.allow_cross_namespace:
            return True
        return namespace is not None and (
            plan.grants(after, namespace) or plan.grants(before, namespace)
        )

    def wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key in self.landings:
                self.queue.add(key)

    def defer_status(self, key: str) -> bool:
        """Whether the routine status of ``key`` (being reconciled) waits: while other
        Landings are queued, it is written on a second pass behind them, so that on a parent
        change every landed Secret — what consumers wait for — is rewritten before the
        statuses that record it. The second pass writes whatever the queue holds then."""
        if key in self._deferred or not len(self.queue):
            self._deferred.discard(key)
            return False
        self._deferred.add(key)
        self.queue.add(key)  # being processed: queued again behind the others once done
        return True

    def wake_parent_to_child(self) -> None:
        for key, landing in self.landings.items():
            if (
                isinstance(landing, api.Landing)
                and landing.spec.direction is api.Direction.PARENT_TO_CHILD
            ):
                self.queue.add(key)

    def rebalance(self) -> None:
        """The shard members changed: keys gained are taken up once the handoff has passed,
        reconciles of keys lost stop now (their queue entries are dropped when taken)."""
        shards = self.shards
        if shards is None:
            return
        delay = shards.settled_in() + 0.05
        keys = [*self.landings, *(POLICY_KEY + n for n in self.reconciler.policies.policies)]
        for key in keys:
            if shards.gained(key):
                self.queue.add_after(key, delay)
            elif shards.lost(key):
                self._supersede(key)

    def _index_source(self, key: str, landing: api.ParsedLanding | None) -> None:
        """Keeps the source Secret -> Landings index; ``landing`` None: the Landing is gone."""
        ref = landing.source_ref if isinstance(landing, api.Landing) else None
        old = self._sources.get(key)
        if old == ref:
            return
        if old is not None:
            self._by_source[old].discard(key)
            if not self._by_source[old]:
                del self._by_source[old]
        if ref is None:
            self._sources.pop(key, None)
        else:
            self._sources[key] = ref
            self._by_source[ref].add(key)

    def _supersede(self, key: str) -> None:
        """A reconcile of an older spec (or of a Landing since deleted) stops now: the queue
        runs the key again when it ends, so a deletion or an Orphan switch never waits on a
        cluster that does not answer."""
        task = self._running.get(key)
        if task is not None:
            task.cancel()

    def _forget(self, key: str) -> None:
        self._supersede(key)
        namespace = _namespace(key)
        if namespace is not None:
            self._parked.get(namespace, {}).pop(key, None)
        self.landings.pop(key, None)
        self._index_source(key, None)
        self._attempts.reset(key)
        self._deferred.discard(key)
        self.last_outcomes.pop(key, None)
        self.reconciler.forget(key)
        self.queue.forget(key)

    # -- workers ------------------------------------------------------------------------

    def start(self) -> None:
        self._workers.start()

    async def stop(self, grace: float = 0.0) -> None:
        """Takes no new work; reconciles in flight get ``grace`` seconds to finish."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self._workers.stop()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _dispatch(self, key: str) -> None:
        """A worker's turn with ``key``: it starts the reconcile and waits for it at most
        ``slow_after`` seconds; the reconcile's task calls ``queue.done``."""
        if self._stopping:
            self.queue.done(key)
            return
        if self._park(key):
            self.queue.done(key)
            return
        self._busy += 1
        self._idle.clear()
        task = asyncio.create_task(self._run(key))
        # Its end is handled by a callback, not by the coroutine: a task cancelled (by a
        # new spec or a deletion) before its first step never runs its body, and the key
        # would stay taken, every later change of it queued behind a reconcile that never
        # ends (soak finding 4).
        task.add_done_callback(lambda ended: self._ended(key, ended))
        self._running[key] = task
        done, _ = await asyncio.wait({task}, timeout=self.timing.slow_after)
        namespace = _namespace(key)
        if not done and namespace is not None:
            # Slow (a cluster that answers slowly): it goes on without this worker.
            self._slow[namespace].add(key)

    def _park(self, key: str) -> bool:
        """True when the key must wait: its namespace has its share of slow reconciles in
        flight. A Landing being deleted never waits."""
        namespace = _namespace(key)
        if namespace is None or len(self._slow.get(namespace, ())) < self.timing.share:
            return False
        landing = self.landings.get(key)
        if landing is None or landing.metadata.deletion_timestamp:
            return False
        self._parked[namespace][key] = None
        return True

    async def _run(self, key: str) -> None:
        try:
            await self.process(key)
        except Exception:
            log.exception("reconcile of %s failed unexpectedly", key)
            self.queue.add_after(key, self._attempts.next_delay(key))

    def _ended(self, key: str, task: asyncio.Task[None]) -> None:
        """A reconcile's task is done (finished, failed or cancelled, even before it ran):
        its key is free again, and a change that came meanwhile is queued."""
        if self._running.get(key) is task:
            del self._running[key]
        namespace = _namespace(key)
        if namespace is not None and key in self._slow.get(namespace, ()):
            self._slow[namespace].discard(key)
            if not self._slow[namespace]:
                del self._slow[namespace]
            # A slot is free: the parked keys try again (and park again if it is taken).
            for parked in self._parked.pop(namespace, {}):
                self.queue.add(parked)
        self._busy -= 1
        if not self._busy:
            self._idle.set()
        self.queue.done(key)

    async def process(self, key: str) -> Outcome | None:
        if key.startswith(POLICY_KEY):
            await self.reconciler.report_policy(key.removeprefix(POLICY_KEY))
            return None
        landing = self.landings.get(key)
        if landing is None:
            return None
        started = time.monotonic()
        log.debug("%s: reconciling", key, extra=_landing_fields(landing))
        try:
            async with asyncio.timeout(self.timing.reconcile_deadline):
                outcome = await self.reconciler.reconcile(landing)
        except TimeoutError:
            outcome = Outcome(
                False,
                Reason.CLUSTER_UNREACHABLE,
                f"the reconcile did not finish within {self.timing.reconcile_deadline:g}s: a "
                "cluster it calls answers too slowly; retrying",
                Retry.BACKOFF,
            )
            await self._report(landing, outcome)
        except Exception as err:
            log.exception(
                "reconcile of %s failed unexpectedly", key, extra=_landing_fields(landing)
            )
            outcome = Outcome(
                False,
                Reason.TRANSIENT_ERROR,
                f"the reconcile failed unexpectedly ({type(err).__name__}); retrying",
                Retry.BACKOFF,
            )
            await self._report(landing, outcome)
        elapsed = time.monotonic() - started
        if key in self.landings:  # not deleted meanwhile
            self.last_outcomes[key] = outcome
            self._schedule(key, outcome)
        if self.metrics is not None:
            self.metrics.reconciles.labels(outcome.reason.value).inc()
            self.metrics.duration.observe(elapsed)
        log.debug(
            "%s: %s in %.3fs",
            key,
            outcome.reason,
            elapsed,
            extra=_outcome_fields(landing, outcome, elapsed),
        )
        return outcome

    async def _report(self, landing: api.ParsedLanding, outcome: Outcome) -> None:
        """The status of a reconcile that could not write it itself, if it can be written:
        over the Landing as its own writes left it, not as the reconcile began (a finalizer
        that recorded its revoke and then failed must not record the landing again, or its
        retry would revoke through a source it has let go: soak finding 6)."""
        current = self.landings.get(landing.key)
        if current is not None:
            landing = msgspec.structs.replace(landing, status=current.status)
        try:
            await self.reconciler.report(landing, outcome)
        except Exception as err:
            log.warning("%s: status not written: %s", landing.key, type(err).__name__)

    def _schedule(self, key: str, outcome: Outcome) -> None:
        if outcome.retry is Retry.BACKOFF:
            delay = self._attempts.next_delay(key)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            self.queue.add_after(key, delay)
            return
        self._attempts.reset(key)
        # Converged, or waiting for a watched change: the slow resync catches anything missed.
        delay = jittered(self.timing.resync)
        if outcome.requeue_after is not None:
            delay = min(delay, outcome.requeue_after)
        self.queue.add_after(key, delay)


def _landing_fields(landing: api.ParsedLanding) -> dict[str, Any]:
    """A Landing's structured log fields (JSON keys with --log-format=json)."""
    fields: dict[str, Any] = {
        "landing": landing.metadata.name,
        "namespace": landing.metadata.namespace,
    }
    if isinstance(landing, api.Landing):
        # Where the Secret lands: a remote (child) cluster, or this one. Never its URL.
        remote = landing.spec.direction is api.Direction.PARENT_TO_CHILD
        fields["direction"] = landing.spec.direction.value
        fields["target_cluster"] = "remote" if remote else "local"
    return fields


def _outcome_fields(landing: api.ParsedLanding, outcome: Outcome, elapsed: float) -> dict[str, Any]:
    return {
        **_landing_fields(landing),
        "reason": outcome.reason.value,
        "ready": outcome.ready,
        "retry": outcome.retry.value,
        "duration_seconds": round(elapsed, 6),
    }
