"""The revoke step, against the fake store: what a Landing landed goes, nothing else does."""

from __future__ import annotations

import pytest

from moonlander.api.reasons import LandingProblem, Reason
from moonlander.controller import steps
from moonlander.controller.steps import LandingRun

from ...support.builders import VIEW, landing, scene
from ...support.store import CHILD_SERVER, PARENT_SERVER, api_error, secret

MINT = {"name": "robot", "namespace": "moonlander-minted", "clusterRole": "view"}


def landed_status(run: LandingRun) -> dict:
    assert run.landed is not None
    return {
        "landed": {
            "cluster": run.landed.cluster,
            "name": run.landed.name,
            "namespace": run.landed.namespace,
        }
    }


async def test_nothing_landed_is_nothing_to_revoke() -> None:
    s = scene()
    await steps.revoke(landing(), s.ctx)  # no source, no parent asked: nothing is called
    assert s.store.writes == []


async def test_revoke_deletes_the_landed_secret_and_says_so() -> None:
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    await steps.revoke(landing(status=landed_status(run)), s.ctx)
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.verbs()[-1] == "delete"
    assert s.store.fake_events.reasons() == ["Revoked"]


async def test_revoke_leaves_a_secret_that_is_not_ours() -> None:
    s = scene()
    asked = landing(
        status={
            "landed": {
                "cluster": CHILD_SERVER,
                "name": "remote-kubeconfig",
                "namespace": "tenant-a",
            }
        }
    )
    s.source(asked)
    s.store.put(CHILD_SERVER, secret("tenant-a", "remote-kubeconfig", {"value": "theirs"}))
    await steps.revoke(asked, s.ctx)
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    assert s.store.writes == []


async def test_revoke_removes_a_minted_identity_where_it_was_minted() -> None:
    s = scene()
    s.grant(mint=VIEW)
    asked = landing(serviceAccount=MINT)
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    status = landed_status(run)
    await steps.revoke(landing(serviceAccount=MINT, status=status), s.ctx)
    assert s.store.revoked == [(PARENT_SERVER, "tenant-a/l")]  # ParentToChild: in the parent
    assert s.store.fake_events.reasons() == ["Revoked", "Revoked"]


async def test_a_target_that_fails_is_the_targets_problem() -> None:
    s = scene()
    asked = landing(
        status={
            "landed": {
                "cluster": CHILD_SERVER,
                "name": "remote-kubeconfig",
                "namespace": "tenant-a",
            }
        }
    )
    s.source(asked)
    s.store.failing[CHILD_SERVER] = api_error(503)
    with pytest.raises(LandingProblem) as caught:
        await steps.revoke(asked, s.ctx)
    assert CHILD_SERVER in caught.value.outcome.message
    assert caught.value.outcome.reason is not Reason.SYNCED


async def test_a_minted_identity_goes_first_even_without_the_source() -> None:
    """Revoking what was minted with the parent's rights needs nothing of the tenant's."""
    s = scene()
    s.grant(mint=VIEW)
    asked = landing(serviceAccount=MINT)
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    del s.store.objects[("local", "Secret", *asked.source_ref)]
    # The spec no longer names it: the status does.
    gone = landing(
        status={
            "landed": {**landed_status(run)["landed"], "serviceAccount": "moonlander-minted/robot"}
        }
    )
    with pytest.raises(LandingProblem) as caught:
        await steps.revoke(gone, s.ctx)
    assert caught.value.outcome.reason is Reason.SOURCE_SECRET_NOT_FOUND
    assert s.store.revoked == [(PARENT_SERVER, "tenant-a/l")]


async def test_what_was_landed_unrecorded_goes_on_the_strength_of_the_hold() -> None:
    """Soak finding 5: written, then the controller stopped before the status recorded it;
    the Landing's hold on its source says there may be a Secret, and it goes, silently."""
    s = scene()
    s.grant(parentCredential=True)
    asked = landing()
    s.source(asked)
    await steps.land(LandingRun(asked), s.ctx)  # landed; its status never written
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    await steps.revoke(asked, s.ctx)  # the status records nothing: revoke leaves it
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is not None
    run = await steps.unrecorded(asked, s.ctx)
    assert run is not None
    await run()
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.fake_events.reasons() == []  # it tells nothing


async def test_nothing_is_unrecorded_without_a_hold() -> None:
    s = scene()
    asked = landing()
    s.source(asked)  # never landed, so never held
    s.store.put(CHILD_SERVER, secret("tenant-a", "remote-kubeconfig", {"value": "theirs"}))
    assert await steps.unrecorded(asked, s.ctx) is None
    assert s.store.writes == []
