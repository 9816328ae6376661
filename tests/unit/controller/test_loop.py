"""The workers under slow and failing reconciles: no tenant takes them all, every reconcile
ends with a status, deletion never waits on a reconcile stuck on a cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from moonlander import api
from moonlander.api.reasons import Outcome, Reason, Retry
from moonlander.controller import holds
from moonlander.controller.loop import Controller, Timing

SYNCED = Outcome(True, Reason.SYNCED, "landed", Retry.RESYNC)


class StubReconciler:
    """Reconciles instantly, except Landings named ``slow-*`` (they hang, as on a server
    that answers one byte at a time) and ``crash-*`` (an exception nobody expected)."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.reports: dict[str, Outcome] = {}
        self.cancelled: list[str] = []

    async def reconcile(self, landing: api.ParsedLanding) -> Outcome:
        name = landing.metadata.name
        if name.startswith("slow-") and not landing.metadata.deletion_timestamp:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(landing.key)
                raise
        if name.startswith("crash-"):
            raise KeyError("Content-Type")
        self.done[landing.key] = time.monotonic()
        return SYNCED

    async def report(self, landing: api.ParsedLanding, outcome: Outcome) -> None:
        self.reports[landing.key] = outcome

    def forget(self, key: str) -> None:
        pass


def body(namespace: str, name: str, version: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "resourceVersion": str(version),
            "uid": f"{namespace}-{name}",
            **meta,
        },
        "spec": {},
    }


@pytest.fixture
async def controller() -> AsyncIterator[tuple[Controller, StubReconciler]]:
    stub = StubReconciler()
    ctl = Controller(stub, Timing(workers=4, slow_after=0.2, reconcile_deadline=30))  # type: ignore[arg-type]
    ctl.start()
    yield ctl, stub
    await ctl.stop()


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_slow_reconciles_do_not_pin_the_workers(
    controller: tuple[Controller, StubReconciler],
) -> None:
    ctl, stub = controller
    for i in range(40):  # ten times the workers, all hanging on their cluster
        ctl.landing_event("ADDED", body("hostile", f"slow-{i}"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    ctl.landing_event("ADDED", body("healthy", "fine"))
    await until(lambda: "healthy/fine" in stub.done)
    assert stub.done["healthy/fine"] - started < 0.5
    # The hostile namespace has at most its share of slow reconciles in flight (plus the
    # ones the workers had taken before they were known to be slow); the rest wait parked.
    in_flight = sum(1 for key in ctl._running if key.startswith("hostile/"))
    assert in_flight <= ctl.timing.share + ctl.timing.workers
    assert len(ctl._parked["hostile"]) >= 40 - in_flight - ctl.timing.workers


async def test_deleting_cancels_a_stuck_reconcile_and_finalizes_at_once(
    controller: tuple[Controller, StubReconciler],
) -> None:
    ctl, stub = controller
    for i in range(10):
        ctl.landing_event("ADDED", body("hostile", f"slow-{i}"))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    for i in range(10):  # parked or stuck, each is finalized promptly
        ctl.landing_event(
            "MODIFIED",
            body("hostile", f"slow-{i}", 2, deletionTimestamp="2026-01-01T00:00:00Z"),
        )
    await until(lambda: all(f"hostile/slow-{i}" in stub.done for i in range(10)))
    assert time.monotonic() - started < 0.5
    assert stub.cancelled  # the ones in flight were cut off, not waited for


async def test_a_change_that_cuts_off_a_reconcile_before_it_ran_is_still_reconciled() -> None:
    """Soak finding 4: a worker had started a Landing's reconcile task, and the watch
    delivered the Landing's deletion in the same turn of the event loop, before the task ran
    its first step. Cancelled unstarted, the task never ran its body (where the key was given
    back), so the key stayed taken and the deletion was never reconciled."""
    stub = StubReconciler()
    ctl = Controller(stub, Timing(workers=2, slow_after=0.2, reconcile_deadline=30))  # type: ignore[arg-type]
    ctl.landing_event("ADDED", body("ns", "a"))
    key = await ctl.queue.get()
    dispatch = asyncio.create_task(ctl._dispatch(key))
    await asyncio.sleep(0)  # the dispatch has created the reconcile's task; it has not run
    task = ctl._running[key]
    ctl.landing_event("MODIFIED", body("ns", "a", 2, deletionTimestamp="2026-01-01T00:00:00Z"))
    await dispatch
    assert task.cancelled() and "ns/a" not in stub.done  # cut off before its first step
    ctl.start()
    try:
        await until(lambda: "ns/a" in stub.done)
        await until(lambda: key not in ctl._running and ctl._idle.is_set())
    finally:
        await ctl.stop()


async def test_an_unexpected_exception_still_ends_with_a_status(
    controller: tuple[Controller, StubReconciler],
) -> None:
    ctl, stub = controller
    ctl.landing_event("ADDED", body("n", "crash-1"))
    await until(lambda: "n/crash-1" in stub.reports)
    outcome = stub.reports["n/crash-1"]
    assert outcome.reason is Reason.TRANSIENT_ERROR and outcome.retry is Retry.BACKOFF
    assert "KeyError" in outcome.message
    assert ctl.queue.pending("n/crash-1") is not None  # retried with backoff


async def test_a_reconcile_past_its_deadline_is_cut_off_and_reported() -> None:
    stub = StubReconciler()
    ctl = Controller(stub, Timing(workers=2, slow_after=0.1, reconcile_deadline=0.3))  # type: ignore[arg-type]
    ctl.start()
    try:
        ctl.landing_event("ADDED", body("n", "slow-1"))
        await until(lambda: "n/slow-1" in stub.reports)
        assert stub.reports["n/slow-1"].reason is Reason.CLUSTER_UNREACHABLE
        assert "did not finish within 0.3s" in stub.reports["n/slow-1"].message
    finally:
        await ctl.stop()


async def test_only_a_missing_finalizer_of_all_metadata_changes_wakes_a_landing(
    controller: tuple[Controller, StubReconciler],
) -> None:
    ctl, stub = controller
    ctl.landing_event("ADDED", body("n", "f", 1, finalizers=[api.FINALIZER]))
    await until(lambda: "n/f" in stub.done)
    first = stub.done["n/f"]
    # A label, an annotation, a status: nothing to reconcile.
    ctl.landing_event("MODIFIED", body("n", "f", 2, finalizers=[api.FINALIZER], labels={"a": "b"}))
    await asyncio.sleep(0.2)
    assert stub.done["n/f"] == first
    # The finalizer stripped: reconciled at once, which puts it back.
    ctl.landing_event("MODIFIED", body("n", "f", 3, finalizers=[]))
    await until(lambda: stub.done["n/f"] > first)


async def test_routine_statuses_wait_behind_queued_landings() -> None:
    """On a parent change every Landing is queued: the first ones' statuses are put off
    until the queue has been through the rest (their Secrets first), then written."""
    stub = StubReconciler()
    ctl = Controller(stub, Timing(workers=1))  # type: ignore[arg-type]
    for i in range(3):
        ctl.landings[f"n/l{i}"] = api.parse_landing(body("n", f"l{i}"))
        ctl.queue.add(f"n/l{i}")
    first = await ctl.queue.get()
    assert ctl.defer_status(first) is True  # two are waiting: its status goes after them
    ctl.queue.done(first)
    order = [await ctl.queue.get() for _ in range(3)]
    assert order[-1] == first
    assert ctl.defer_status(first) is False  # the second pass writes
    # With nothing queued, a status is written at once.
    assert ctl.defer_status("n/l1") is False


def test_only_a_new_spec_a_deletion_or_a_missing_finalizer_wakes_a_landing() -> None:
    from moonlander.controller.loop import _wakes

    assert _wakes((1, None, True), (2, None, True))  # a new spec
    assert _wakes((1, None, True), (1, "2026-12-01T00:00:00Z", True))  # deletion
    assert _wakes((1, None, True), (1, None, False))  # our finalizer went missing
    # Our finalizer back (the echo of our own patch) must not cancel the reconcile that made it.
    assert not _wakes((1, None, False), (1, None, True))
    assert not _wakes((1, None, True), (1, None, True))


class _Sources(StubReconciler):
    allow_cross_namespace = False

    def forget_source(self, ref: tuple[str, str]) -> None:
        pass

    def is_echo(self, *_write: Any) -> bool:
        return False


def _secret(namespace: str, name: str, version: int, grant: str | None = None) -> dict[str, Any]:
    annotations = {} if grant is None else {api.ALLOWED_NAMESPACES_ANNOTATION: grant}
    return {
        "namespace": namespace,
        "name": name,
        "resourceVersion": str(version),
        "annotations": annotations,
    }


async def _woken(ctl: Controller) -> set[str]:
    keys = set()
    while len(ctl.queue):
        key = await ctl.queue.get()
        ctl.queue.done(key)
        keys.add(key)
    return keys


class _Holds(_Sources):
    """A store that took a hold on b/s, written at resourceVersion 2."""

    def __init__(self) -> None:
        super().__init__()
        self.own = {(holds.ECHO, "b", "s", "2")}

    def is_echo(self, *write: Any) -> bool:
        if write in self.own:
            self.own.discard(write)
            return True
        return False


async def test_a_hold_on_a_source_wakes_no_landing() -> None:
    """The watch's echo of a hold the controller put on a source Secret is no change of the
    source: it wakes no Landing (each first landing reconciled twice before); the next
    change of the Secret does."""
    ctl = Controller(_Holds(), Timing())  # type: ignore[arg-type]
    own = body("b", "own")
    own["spec"] = {"kubeconfigSecretName": "s"}
    ctl.landing_event("ADDED", own)
    assert await _woken(ctl) == {"b/own"}
    ctl.secret_event("ADDED", _secret("b", "s", 1))
    assert await _woken(ctl) == {"b/own"}
    held = {**_secret("b", "s", 2), "finalizers": [holds.finalizer("uid-1")]}
    ctl.secret_event("MODIFIED", held)
    assert await _woken(ctl) == set()
    assert ctl.held("uid-1") == {("b", "s")}  # the hold is still seen
    ctl.secret_event("MODIFIED", {**held, "resourceVersion": "3"})
    assert await _woken(ctl) == {"b/own"}


async def test_a_secret_wakes_only_landings_that_may_read_it() -> None:
    """Another namespace's Secret wakes a Landing only while (or when it stops) granting the
    Landing's namespace: a Secret it may not read tells it nothing by waking it."""
    ctl = Controller(_Sources(), Timing())  # type: ignore[arg-type]
    spy = body("a", "spy")
    spy["spec"] = {"kubeconfigSecretNamespace": "b", "kubeconfigSecretName": "s"}
    own = body("b", "own")
    own["spec"] = {"kubeconfigSecretName": "s"}
    ctl.landing_event("ADDED", spy)
    ctl.landing_event("ADDED", own)
    assert await _woken(ctl) == {"a/spy", "b/own"}
    # Created, changed, deleted without granting a: only b's own Landing hears of it.
    ctl.secret_event("ADDED", _secret("b", "s", 1))
    assert await _woken(ctl) == {"b/own"}
    ctl.secret_event("MODIFIED", _secret("b", "s", 2, grant="c, d"))
    assert await _woken(ctl) == {"b/own"}
    ctl.secret_event("DELETED", _secret("b", "s", 2, grant="c, d"))
    assert await _woken(ctl) == {"b/own"}
    # Granting a wakes it; so does every change while granted, and taking the grant back.
    ctl.secret_event("ADDED", _secret("b", "s", 3, grant="c, a"))
    assert await _woken(ctl) == {"a/spy", "b/own"}
    ctl.secret_event("MODIFIED", _secret("b", "s", 4, grant="c, a"))
    assert await _woken(ctl) == {"a/spy", "b/own"}
    ctl.secret_event("MODIFIED", _secret("b", "s", 5))
    assert await _woken(ctl) == {"a/spy", "b/own"}
    ctl.secret_event("MODIFIED", _secret("b", "s", 6))
    assert await _woken(ctl) == {"b/own"}
    ctl.secret_event("MODIFIED", _secret("b", "s", 7, grant="*"))
    assert await _woken(ctl) == {"a/spy", "b/own"}
    ctl.secret_event("DELETED", _secret("b", "s", 7, grant="*"))
    assert await _woken(ctl) == {"a/spy", "b/own"}
    # With --allow-cross-namespace every Secret may be read: every change wakes.
    ctl.reconciler.allow_cross_namespace = True
    ctl.secret_event("ADDED", _secret("b", "s", 8))
    assert await _woken(ctl) == {"a/spy", "b/own"}
