"""The reconcile's flow over its steps, against the fake store: what each outcome writes."""

from __future__ import annotations

from typing import Any, cast

import msgspec

from moonlander import api
from moonlander.api.reasons import Reason
from moonlander.controller.reconcile import Reconciler

from ...support.builders import VIEW, Scene, landing, scene
from ...support.store import CHILD_SERVER, LOCAL, PARENT_SERVER, POLICY

MINT = {"name": "robot", "namespace": "moonlander-minted", "clusterRole": "view"}


def reconciler(s: Scene) -> Reconciler:
    return Reconciler(
        local=cast(Any, None),
        local_target=s.store.local_target,
        clusters=cast(Any, None),
        parent=cast(Any, s.parent),
        drift=cast(Any, s.store.fake_drift),
        events=cast(Any, s.store.fake_events),
        policy=POLICY,
        policies=s.policies,
        fence=s.ctx.fence,
        store=s.store,
    )


def stored(s: Scene, name: str = "l", **spec: Any) -> api.Landing:
    """The Landing again, with the status the fake store holds for it."""
    body = s.store.landings.get(("tenant-a", name), {})
    status = msgspec.json.decode(msgspec.json.encode(body.get("status") or {}))
    return landing(name, status=status, **spec)


async def test_a_new_landing_lands_and_says_so_in_one_status_write() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    outcome = await reconciler(s).reconcile(asked)
    assert (outcome.ready, outcome.reason) == (True, Reason.SYNCED)
    assert s.store.verbs() == ["create", "create", "patch-status"]  # namespace, Secret, status
    assert s.store.fake_events.recorded == []  # a first landing: the status says it
    status = s.store.landings[("tenant-a", "l")]["status"]
    assert status["landed"]["cluster"] == CHILD_SERVER
    assert status["landed"]["server"] == PARENT_SERVER
    assert s.store.succeeded_targets == [CHILD_SERVER]
    # Again, from the status it wrote: nothing to write at all.
    again = await reconciler(s).reconcile(stored(s))
    assert again.reason is Reason.SYNCED
    assert len(s.store.writes) == 3


async def test_without_the_finalizer_it_is_added_first() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing(finalizers=())
    s.source(asked)
    await reconciler(s).reconcile(asked)
    assert s.store.verbs()[0] == "patch-metadata"


async def test_a_minted_landing_that_fails_again_writes_nothing_again() -> None:
    s = scene()
    s.grant(mint=VIEW)
    asked = landing(serviceAccount=MINT)
    s.source(asked)
    rec = reconciler(s)
    first = await rec.reconcile(asked)
    assert first.ready
    assert first.requeue_after is not None  # renewal scheduled
    assert rec.token_expiry["tenant-a/l"] > 0
    s.store.failing[CHILD_SERVER] = RuntimeError("child gone")
    failed = await rec.reconcile(stored(s, serviceAccount=MINT))
    assert not failed.ready
    writes = len(s.store.writes)
    landed = s.store.landings[("tenant-a", "l")]["status"]["landed"]
    assert landed["serviceAccount"] == "moonlander-minted/robot"
    assert landed["tokenExpiresAt"] and landed["tokenRenewAt"]
    for _ in range(3):
        await rec.reconcile(stored(s, serviceAccount=MINT))
    assert len(s.store.writes) == writes  # the status already says it


async def test_a_withdrawn_grant_revokes_what_was_landed() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    s.policies.policies.clear()
    outcome = await rec.reconcile(stored(s))
    assert outcome.reason is Reason.NOT_PERMITTED
    assert "revoked" in outcome.message
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.landings[("tenant-a", "l")]["status"].get("landed") is None


async def test_suspended_checks_the_grant_all_the_same() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    suspended = await rec.reconcile(stored(s, suspend=True))
    assert suspended.reason is Reason.SUSPENDED
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    s.policies.policies.clear()
    refused = await rec.reconcile(stored(s, suspend=True))
    assert refused.reason is Reason.NOT_PERMITTED
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None


async def test_deletion_revokes_then_releases() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    body = stored(s)
    deleting = landing(status=msgspec.to_builtins(body.status), deleting=True)
    outcome = await rec.reconcile(deleting)
    assert outcome.reason is Reason.DELETING
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    # Revoked, then said (the status drops what was landed before the source hold goes:
    # a retry has nothing left to revoke), then released.
    verbs = s.store.verbs()
    assert verbs[verbs.index("delete") :][-3:] == ["delete", "patch-status", "patch-metadata"]
    assert stored(s).status.landed is None


async def test_orphan_keeps_what_was_landed_only_while_permitted() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing(deletionPolicy="Orphan")
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    status = msgspec.to_builtins(stored(s).status)
    await rec.reconcile(landing(status=status, deleting=True, deletionPolicy="Orphan"))
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    s.store.put(LOCAL, s.store.get(LOCAL, *asked.source_ref))  # unchanged source
    s.policies.policies.clear()
    await rec.reconcile(landing(status=status, deleting=True, deletionPolicy="Orphan"))
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None


async def test_an_invalid_spec_is_said_in_the_status() -> None:
    s = scene()
    invalid = api.parse_landing(
        {"metadata": {"name": "bad", "namespace": "tenant-a"}, "spec": {"direction": "Sideways"}}
    )
    outcome = await reconciler(s).reconcile(invalid)
    assert outcome.reason is Reason.INVALID_SPEC
    assert s.store.verbs() == ["patch-status"]
