"""Source Secrets held by Landings (controller.holds): which one a Landing must hold, and
the reconcile's hold and release of it, against the fake store."""

from __future__ import annotations

from typing import Any, cast

import httpx2
import msgspec

from moonlander import api
from moonlander.api.reasons import Reason
from moonlander.controller import holds

from ...support.builders import VIEW, Scene, landing, scene
from ...support.store import CHILD_SERVER, LOCAL
from .test_reconcile import MINT, reconciler, stored

HOLD = holds.finalizer("uid-1")


def test_the_finalizer_is_a_qualified_name_of_the_landing_uid() -> None:
    uid = "0b5f9c1e-3f5d-4a8e-9a51-2c7e7d0c1f00"
    name = holds.finalizer(uid)
    prefix, _, part = name.partition("/")
    assert prefix == "landing.moons.kingdon.ci"
    assert len(part) <= 63
    assert holds.holder(name) == uid
    assert holds.holder(api.FINALIZER) is None
    assert holds.holder("landing.moons.kingdon.ci/") is None
    assert holds.holders([name, "kubernetes", api.FINALIZER]) == {uid}


def test_parent_to_child_always_holds_its_own_namespace_source() -> None:
    assert holds.wanted(landing()) == ("tenant-a", "kubernetes-l-admin-kubeconfig")


def test_child_to_parent_holds_only_when_it_mints_in_the_child() -> None:
    assert holds.wanted(landing(direction="ChildToParent")) is None
    minting = landing(direction="ChildToParent", serviceAccount=MINT)
    assert holds.wanted(minting) == minting.source_ref
    # Minted once (its status says so), since dropped from the spec: still held to revoke.
    status = {"landed": {"name": "l", "serviceAccount": "moonlander-minted/robot"}}
    assert holds.wanted(landing(direction="ChildToParent", status=status)) is not None


def test_never_another_namespace_secret_a_profile_or_a_landing_without_uid() -> None:
    assert holds.wanted(landing(kubeconfigSecretNamespace="other")) is None
    assert holds.wanted(landing(clusterProfileName="p")) is None
    assert holds.wanted(landing(uid="")) is None


def test_held_and_deleting_read_a_secret_or_its_metadata() -> None:
    meta = {"finalizers": [HOLD], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    assert holds.is_held(meta, "uid-1") and holds.is_held({"metadata": meta}, "uid-1")
    assert not holds.is_held(meta, "uid-2")
    assert holds.is_deleting({"metadata": meta}) and not holds.is_deleting({"metadata": {}})


def _plain(status: Any) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.json.decode(msgspec.json.encode(status)))


def _source(s: Scene, asked: api.Landing) -> dict[str, Any]:
    found = s.store.get(LOCAL, *asked.source_ref)
    assert found is not None
    return dict(found["metadata"])


async def test_a_landing_holds_its_source_before_writing_and_once() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    assert (await rec.reconcile(asked)).ready
    assert _source(s, asked)["finalizers"] == [HOLD]
    assert len(s.store.finalizer_patches) == 1
    assert (await rec.reconcile(stored(s))).ready
    assert len(s.store.finalizer_patches) == 1  # held already: no write


async def test_a_source_being_deleted_revokes_then_releases() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    s.store.objects[(LOCAL, "Secret", *asked.source_ref)]["metadata"]["deletionTimestamp"] = "t"
    outcome = await rec.reconcile(stored(s))
    assert outcome.reason is Reason.SOURCE_SECRET_NOT_FOUND
    assert "being deleted" in outcome.message and "revoked" in outcome.message
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.landings[("tenant-a", "l")]["status"].get("landed") is None
    assert _source(s, asked)["finalizers"] == []
    # Nothing landed, nothing held: the next attempt writes nothing.
    patches = len(s.store.finalizer_patches)
    await rec.reconcile(stored(s))
    assert len(s.store.finalizer_patches) == patches


async def test_a_revoke_that_fails_keeps_the_hold() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    s.store.objects[(LOCAL, "Secret", *asked.source_ref)]["metadata"]["deletionTimestamp"] = "t"
    s.store.failing[CHILD_SERVER] = httpx2.ConnectError("child gone")
    outcome = await rec.reconcile(stored(s))
    assert outcome.reason is Reason.SOURCE_SECRET_NOT_FOUND
    assert "could not be revoked yet" in outcome.message
    assert _source(s, asked)["finalizers"] == [HOLD]


async def test_deletion_releases_the_hold_with_delete_and_with_orphan() -> None:
    for policy in ("Delete", "Orphan"):
        s = scene()
        s.grant(parentCredential=True)
        asked = landing(deletionPolicy=policy)
        s.source(asked)
        rec = reconciler(s)
        await rec.reconcile(asked)
        assert _source(s, asked)["finalizers"] == [HOLD]
        status = s.store.landings[("tenant-a", "l")]["status"]
        deleting = landing(deletionPolicy=policy, deleting=True, status=_plain(status))
        outcome = await rec.reconcile(deleting)
        assert outcome.reason is Reason.DELETING and outcome.ready
        assert _source(s, asked)["finalizers"] == []
        landed = s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig")
        assert (landed is None) == (policy == "Delete")


async def test_a_hold_on_a_secret_no_longer_named_is_released() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    renamed = landing(kubeconfigSecretName="other-kubeconfig")
    s.source(renamed)
    rec.ctx.sources.held = lambda uid: {asked.source_ref} if uid == "uid-1" else set()
    assert (await rec.reconcile(renamed)).ready
    assert _source(s, asked)["finalizers"] == []
    assert _source(s, renamed)["finalizers"] == [HOLD]


async def test_a_child_to_parent_landing_that_does_not_mint_holds_nothing() -> None:
    s = scene()
    s.grant(parentCredential=True, mint=VIEW)
    asked = landing(direction="ChildToParent")
    s.source(asked)
    await reconciler(s).reconcile(asked)
    assert s.store.finalizer_patches == []


async def test_a_suspended_landing_revokes_through_a_held_source_being_deleted() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    rec = reconciler(s)
    await rec.reconcile(asked)
    rec.ctx.sources.held = lambda uid: {asked.source_ref} if uid == "uid-1" else set()
    suspended = await rec.reconcile(stored(s, suspend=True))
    assert suspended.reason is Reason.SUSPENDED
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    s.store.objects[(LOCAL, "Secret", *asked.source_ref)]["metadata"]["deletionTimestamp"] = "t"
    outcome = await rec.reconcile(stored(s, suspend=True))
    assert outcome.reason is Reason.SOURCE_SECRET_NOT_FOUND
    assert "being deleted" in outcome.message and "revoked" in outcome.message
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.landings[("tenant-a", "l")]["status"].get("landed") is None
    assert _source(s, asked)["finalizers"] == []


def test_the_watch_view_says_which_secrets_a_landing_holds() -> None:
    from moonlander.controller.loop import Controller

    ctl = Controller(reconciler(scene()))
    one, two = holds.finalizer("uid-1"), holds.finalizer("uid-2")
    ctl.secret_event("ADDED", {"namespace": "a", "name": "s", "finalizers": [one, two, "x/y"]})
    ctl.secret_event("ADDED", {"namespace": "a", "name": "t", "finalizers": [one]})
    assert ctl.held("uid-1") == {("a", "s"), ("a", "t")}
    assert ctl.held("uid-2") == {("a", "s")}
    ctl.secret_event("MODIFIED", {"namespace": "a", "name": "s", "finalizers": [two]})
    assert ctl.held("uid-1") == {("a", "t")}
    ctl.secret_event("DELETED", {"namespace": "a", "name": "s", "finalizers": [two]})
    assert ctl.held("uid-2") == set()
    assert ctl.held("x") == set()


def test_a_landingset_takes_a_secret_being_deleted_for_gone() -> None:
    from moonlander.controller.landingsets import LandingSets

    sets = LandingSets(cast(Any, None), cast(Any, None))
    sets.secret_event("ADDED", {"namespace": "a", "name": "s", "labels": {"k": "v"}})
    assert "s" in sets._secrets["a"]
    sets.secret_event("MODIFIED", {"namespace": "a", "name": "s", "deletionTimestamp": "t"})
    assert "s" not in sets._secrets["a"]
