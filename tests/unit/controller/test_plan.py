"""The pure parts of a reconcile: key search, ownership, desired Secret, retry timing."""

from __future__ import annotations

import asyncio
import base64
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonlander import api
from moonlander.api import ownership as own
from moonlander.api.ownership import Ownership
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import plan
from moonlander.controller.conditions import set_condition
from moonlander.controller.workqueue import WorkQueue
from moonlander.kube.backoff import backoff_delay, jittered


def test_key_search_order_is_documented_order() -> None:
    data = dict.fromkeys(["super-admin.conf", "admin.conf", "config", "kubeconfig", "value"], "x")
    found = []
    while data:
        key = plan.select_source_key(data, None)
        found.append(key)
        del data[key]
    assert tuple(found) == api.DEFAULT_SOURCE_KEYS


def test_explicit_key_and_kamaji_annotation() -> None:
    data = {"admin.conf": "a", "admin.svc": "b"}
    assert plan.select_source_key(data, "admin.svc") == "admin.svc"
    assert (
        plan.select_source_key(data, None, {plan.KAMAJI_KEY_ANNOTATION: "admin.svc"}) == "admin.svc"
    )
    with pytest.raises(LandingProblem) as err:
        plan.select_source_key(data, "value")
    assert err.value.outcome.reason is Reason.SOURCE_KEY_NOT_FOUND
    assert err.value.outcome.retry is Retry.ON_CHANGE
    with pytest.raises(LandingProblem, match="kubeconfigSecretKey"):
        plan.select_source_key({"token": "t"}, None)


def test_desired_secret_holds_raw_yaml_once() -> None:
    text = "apiVersion: v1\nkind: Config\n"
    secret = plan.desired_secret(
        name="s", namespace="n", owner="a/b", owner_uid="u", kubeconfig=text
    )
    assert secret["type"] == "Opaque"
    for key in ("kubeconfig", "value"):
        assert base64.b64decode(secret["data"][key]).decode() == text
    assert secret["metadata"]["labels"] == {api.MANAGED_BY_LABEL: "moonlander"}
    assert secret["metadata"]["annotations"][api.OWNER_ANNOTATION] == "a/b"
    assert secret["metadata"]["annotations"][api.HASH_ANNOTATION] == plan.content_hash(text)


def test_ownership_and_currency() -> None:
    desired = plan.desired_secret(
        name="s", namespace="n", owner="a/b", owner_uid="u", kubeconfig="k"
    )
    assert own.ownership(None, "a/b") is Ownership.ABSENT
    assert own.ownership(desired, "a/b") is Ownership.OURS
    # Issue 11: another Landing's Secret is told apart from one nobody manages.
    assert own.ownership(desired, "a/other") is Ownership.OTHER_LANDING
    assert own.ownership({"metadata": {"name": "s"}}, "a/b") is Ownership.FOREIGN
    existing = {
        **desired,
        "metadata": {
            **desired["metadata"],
            "labels": {**desired["metadata"]["labels"], "extra": "kept"},
        },
    }
    assert plan.is_current(existing, desired)
    tampered = {**desired, "data": {"kubeconfig": "eA==", "value": desired["data"]["value"]}}
    assert not plan.is_current(tampered, desired)
    assert not plan.is_current({**desired, "type": "kubernetes.io/tls"}, desired)
    assert plan.type_change_needed({**desired, "type": "kubernetes.io/tls"}, desired)


@pytest.mark.parametrize(
    ("existing_owner", "secret_type", "adopt", "conflict"),
    [
        ("a/b", "Opaque", False, None),  # ours
        ("a/other", "Opaque", True, "another Landing"),  # never taken from another Landing
        (None, "Opaque", False, "adoptExisting"),  # foreign, not asked to adopt
        (None, "kubernetes.io/tls", True, "not Opaque"),  # a typed Secret is never adopted
        (None, "Opaque", True, None),  # foreign Opaque, adoption asked: taken over
    ],
)
def test_adoption_rules(
    existing_owner: str | None, secret_type: str, adopt: bool, conflict: str | None
) -> None:
    existing: dict[str, object] = {"type": secret_type, "metadata": {"name": "s"}}
    if existing_owner is not None:
        existing = plan.desired_secret(
            name="s", namespace="n", owner=existing_owner, owner_uid="u", kubeconfig="k"
        )
    if conflict is None:
        plan.check_adoptable(existing, "a/b", adopt, "Secret n/s")
        return
    with pytest.raises(LandingProblem) as caught:
        plan.check_adoptable(existing, "a/b", adopt, "Secret n/s")
    assert caught.value.outcome.reason is Reason.CONFLICT
    assert conflict in caught.value.outcome.message


def test_cross_namespace_grant() -> None:
    plan.check_cross_namespace("a", "a", "s", None, allow_all=False)
    plan.check_cross_namespace("a", "b", "s", None, allow_all=True)
    ann = api.ALLOWED_NAMESPACES_ANNOTATION
    plan.check_cross_namespace("a", "b", "s", {ann: "x, a"}, allow_all=False)
    plan.check_cross_namespace("a", "b", "s", {ann: "*"}, allow_all=False)
    with pytest.raises(LandingProblem) as err:
        plan.check_cross_namespace("a", "b", "s", {ann: "ab,x"}, allow_all=False)
    assert err.value.outcome.reason is Reason.CROSS_NAMESPACE_NOT_ALLOWED
    assert "b/s" in str(err.value)


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_capped_exponential_with_jitter(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff_delay(attempt, base=1.0, cap=60.0, rng=rng)
    step = min(60.0, 2.0 ** (attempt - 1))
    assert step / 2 <= delay <= step
    assert delay <= 60.0


def test_backoff_spreads_retries() -> None:
    delays = {round(backoff_delay(5, rng=random.Random(i)), 6) for i in range(50)}
    assert len(delays) > 40
    assert all(540 <= jittered(600, 0.1, random.Random(i)) <= 660 for i in range(50))


def test_condition_transition_time_moves_only_on_status_change() -> None:
    first = set_condition(
        (), type_="Ready", status="False", reason="A", message="m", observed_generation=1, now="t1"
    )
    same = set_condition(
        first,
        type_="Ready",
        status="False",
        reason="B",
        message="n",
        observed_generation=2,
        now="t2",
    )
    assert same[0].last_transition_time == "t1" and same[0].reason == "B"
    flipped = set_condition(
        same,
        type_="Ready",
        status="True",
        reason="Synced",
        message="",
        observed_generation=2,
        now="t3",
    )
    assert flipped[0].last_transition_time == "t3"
    other = set_condition(
        flipped,
        type_="Other",
        status="True",
        reason="X",
        message="",
        observed_generation=None,
        now="t4",
    )
    assert [c.type for c in other] == ["Ready", "Other"]


async def test_workqueue_dedups_and_serialises_a_key() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = await q.get()
    assert key == "a"
    q.add("a")  # while processing: queued again only after done()
    assert await q.get() == "b"
    q.done("b")
    assert len(q) == 0
    q.done("a")
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")


async def test_workqueue_delays_keep_the_earliest_and_forget_drops() -> None:
    q = WorkQueue()
    q.add_after("a", 10)
    q.add_after("a", 0.05)
    q.add_after("a", 5)
    pending = q.pending("a")
    assert pending is not None and pending < 1
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.add_after("b", 0.01)
    q.forget("b")
    q.add("c")
    q.forget("c")
    await asyncio.sleep(0.05)
    q.add("d")
    assert await asyncio.wait_for(q.get(), 1) == "d"
