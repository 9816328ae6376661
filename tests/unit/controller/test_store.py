"""The store's rules, on the in-memory fake (which replaces only its client calls)."""

from __future__ import annotations

import pytest

from moonlander import api
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason
from moonlander.controller import plan

from ...support.store import CHILD_SERVER, FakeStore, api_error, secret, target

CHILD = target(CHILD_SERVER)


def desired(kubeconfig: str = "k", owner: str = "tenant-a/l") -> dict:
    return plan.desired_secret(
        name="s", namespace="n", owner=owner, owner_uid="u", kubeconfig=kubeconfig
    )


async def test_a_new_secret_is_created_with_its_namespace_then_left_alone() -> None:
    store = FakeStore()
    written = await store.write_secret(CHILD, desired(), None, owner="tenant-a/l", adopt=False)
    assert written.action == "created"
    assert store.writes == [
        ("create", CHILD.key, "Namespace", "", "n"),
        ("create", CHILD.key, "Secret", "n", "s"),
    ]
    existing = store.get(CHILD.key, "n", "s")
    again = await store.write_secret(CHILD, desired(), existing, owner="tenant-a/l", adopt=False)
    assert again.action == "current"
    assert len(store.writes) == 2  # nothing sent, the namespace not asked about again


async def test_a_secret_believed_absent_is_created_never_applied_over_a_foreign_one() -> None:
    store = FakeStore()
    store.put(CHILD.key, secret("n", "s", {"value": "theirs"}))
    with pytest.raises(LandingProblem) as caught:
        await store.write_secret(CHILD, desired(), None, owner="tenant-a/l", adopt=False)
    assert caught.value.outcome.reason is Reason.CONFLICT
    assert "adoptExisting" in caught.value.outcome.message
    assert store.verbs() == []
    assert store.get(CHILD.key, "n", "s")["data"] == secret("n", "s", {"value": "theirs"})["data"]


async def test_adopting_applies_over_an_opaque_secret_but_never_another_landings() -> None:
    store = FakeStore()
    theirs = store.put(CHILD.key, secret("n", "s", {"value": "theirs"}))
    written = await store.write_secret(CHILD, desired(), theirs, owner="tenant-a/l", adopt=True)
    assert written.action == "updated"
    assert own.ownership(store.get(CHILD.key, "n", "s"), "tenant-a/l") is own.Ownership.OURS
    with pytest.raises(LandingProblem, match="another Landing"):
        await store.write_secret(
            CHILD, desired(owner="x/y"), store.get(CHILD.key, "n", "s"), owner="x/y", adopt=True
        )


async def test_a_change_someone_else_made_is_repaired_and_said_so() -> None:
    store = FakeStore()
    await store.write_secret(CHILD, desired(), None, owner="tenant-a/l", adopt=False)
    edited = store.get(CHILD.key, "n", "s")
    edited["data"] = {"value": "ZWRpdGVk"}
    store.put(CHILD.key, edited)
    written = await store.write_secret(
        CHILD, desired(), store.get(CHILD.key, "n", "s"), owner="tenant-a/l", adopt=False
    )
    assert (written.action, written.repaired) == ("updated", True)
    # A new input of our own (a rotation) is an update, not a repair.
    rotated = await store.write_secret(
        CHILD, desired("k2"), store.get(CHILD.key, "n", "s"), owner="tenant-a/l", adopt=False
    )
    assert (rotated.action, rotated.repaired) == ("updated", False)


async def test_a_typed_secret_is_replaced_since_its_type_cannot_change() -> None:
    store = FakeStore()
    ours = desired()
    ours["type"] = "kubernetes.io/tls"
    store.put(CHILD.key, ours)
    await store.write_secret(
        CHILD, desired(), store.get(CHILD.key, "n", "s"), owner="tenant-a/l", adopt=False
    )
    assert store.verbs() == ["delete", "apply"]
    assert store.get(CHILD.key, "n", "s")["type"] == "Opaque"


async def test_the_echo_of_a_write_is_known_by_version_once_and_by_content() -> None:
    store = FakeStore()
    await store.write_secret(CHILD, desired(), None, owner="tenant-a/l", adopt=False)
    body = store.get(CHILD.key, "n", "s")
    version = body["metadata"]["resourceVersion"]
    assert store.is_echo(CHILD.key, "n", "s", version)
    assert not store.is_echo(CHILD.key, "n", "s", version)  # once
    assert store.is_echo(CHILD.key, "n", "s", "", own.secret_digest(body))
    assert not store.is_echo(CHILD.key, "n", "s", "", own.secret_digest(desired("other")))
    assert store.fake_drift.remembered == [(CHILD.key, "n", "s", True)]


async def test_a_write_that_fails_is_not_taken_for_ours() -> None:
    store = FakeStore()
    store.failing[CHILD.key] = api_error(500)
    with pytest.raises(Exception, match="said 500"):
        await store.write_secret(CHILD, desired(), None, owner="tenant-a/l", adopt=False)
    assert store.own_digests == {}
    assert store.own_writes == set()


async def test_only_our_own_secret_is_deleted() -> None:
    store = FakeStore()
    store.put(CHILD.key, secret("n", "foreign", {"value": "x"}))
    store.put(CHILD.key, desired())
    assert not await store.delete_if_ours(CHILD, "n", "foreign", "tenant-a/l")
    assert not await store.delete_if_ours(CHILD, "n", "absent", "tenant-a/l")
    assert not await store.delete_if_ours(CHILD, "n", "s", "other/landing")
    assert await store.delete_if_ours(CHILD, "n", "s", "tenant-a/l")
    assert store.writes == [("delete", CHILD.key, "Secret", "n", "s")]
    assert store.get(CHILD.key, "n", "foreign") is not None


async def test_finalizer_and_status_writes_are_told_to_the_watch() -> None:
    store = FakeStore()
    seen: list[dict] = []
    store.observe = seen.append
    meta = api.ObjectMeta(name="l", namespace="tenant-a", resource_version="7")
    await store.add_finalizer(meta)
    await store.patch_status(meta, {"observedGeneration": 1})
    assert [body["metadata"].get("finalizers") for body in seen] == [[api.FINALIZER]] * 2
    assert seen[-1]["status"] == {"observedGeneration": 1}
    finalized = api.ObjectMeta(name="l", namespace="tenant-a", finalizers=(api.FINALIZER,))
    await store.add_finalizer(finalized)  # already there: nothing sent
    await store.remove_finalizer(finalized)
    assert store.verbs() == ["patch-metadata", "patch-status", "patch-metadata"]


async def test_a_status_for_a_landing_deleted_meanwhile_is_dropped() -> None:
    store = FakeStore()
    store.failing["local"] = api_error(404)
    await store.patch_status(api.ObjectMeta(name="l", namespace="tenant-a"), {})
    await store.remove_finalizer(api.ObjectMeta(name="l", namespace="tenant-a"))
    store.failing["local"] = api_error(409)
    with pytest.raises(Exception, match="said 409"):
        await store.patch_status(api.ObjectMeta(name="l", namespace="tenant-a"), {})
