"""What the webhook answers, against a cluster whose answers the test sets (the real API
server's part is tests/e2e/test_tenancy_webhook.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from moonlander.credentials import Policy
from moonlander.serve.admission import Question
from moonlander.serve.review import BadReview, Request, Reviewer, UserInfo, decode, response

TENANT = UserInfo(username="tenant", groups=("system:authenticated",))
CONTROLLER = UserInfo(username="system:serviceaccount:moonlander-system:moonlander")


class FakeCluster:
    def __init__(self, held: set[str] = frozenset(), sets: dict[str, Any] | None = None) -> None:
        self.held = held  # Question.describe() of what the user may do
        self.sets = sets or {}
        self.asked: list[tuple[str, str]] = []

    async def allowed(self, user: UserInfo, question: Question) -> bool:
        self.asked.append((user.username, question.describe()))
        return question.describe() in self.held

    async def is_self(self, user: UserInfo) -> bool:
        return user.username == CONTROLLER.username

    async def landing_set(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.sets.get(f"{namespace}/{name}")


def request(
    spec: dict[str, Any],
    *,
    user: UserInfo = TENANT,
    old: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Request:
    obj = {"metadata": {"name": "l", "namespace": "n", **(meta or {})}, "spec": spec}
    return Request(
        uid="u",
        operation="UPDATE" if old is not None else "CREATE",
        name="l",
        namespace="n",
        user_info=user,
        object=obj,
        old_object=None if old is None else {"metadata": obj["metadata"], "spec": old},
    )


ADMIN_IN_N = {"name": "r", "roles": [{"name": "admin", "namespaces": ["n"]}]}
STAR = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


async def test_a_user_who_may_not_bind_the_role_is_refused() -> None:
    cluster = FakeCluster()
    refused = await Reviewer(cluster, Policy()).landing(request({"serviceAccount": ADMIN_IN_N}))
    assert refused == [
        "spec.serviceAccount: the requesting user may not bind clusterroles admin in namespace "
        "n, so the Landing may not mint it either"
    ]
    assert cluster.asked == [("tenant", "bind clusterroles admin in namespace n")]


async def test_escalate_alone_does_not_mint_rules_the_user_lacks() -> None:
    """Finding 9: RBAC's escalation bypass needs escalate AND bind."""
    sa = {"name": "r", "rules": STAR, "rulesNamespaces": ["n"]}
    cluster = FakeCluster({"escalate roles in namespace n"})
    (refused,) = await Reviewer(cluster, Policy()).landing(request({"serviceAccount": sa}))
    assert "grant inline rules in namespace n: it does not hold * * (apiGroup '*') in" in refused
    assert "nor escalate and bind roles in namespace n" in refused


@pytest.mark.parametrize(
    "held",
    [
        {"escalate roles in namespace n", "bind roles in namespace n"},
        {"* * (apiGroup '*') in namespace n"},
    ],
)
async def test_rules_are_minted_by_who_holds_them_or_may_escalate_and_bind(held: set[str]) -> None:
    sa = {"name": "r", "rules": STAR, "rulesNamespaces": ["n"]}
    assert (
        await Reviewer(FakeCluster(held), Policy()).landing(request({"serviceAccount": sa})) == []
    )


async def test_too_many_rule_questions_need_escalate_and_bind() -> None:
    rules = [
        {
            "apiGroups": [""],
            "resources": [f"r{i}" for i in range(30)],
            "verbs": [f"v{j}" for j in range(10)],
        }
    ]
    sa = {"name": "r", "rules": rules}
    cluster = FakeCluster()
    (refused,) = await Reviewer(cluster, Policy()).landing(request({"serviceAccount": sa}))
    assert "they expand to 300 permissions" in refused
    assert len(cluster.asked) == 2  # escalate and bind, not 300 questions


async def test_an_update_that_keeps_the_spec_is_admitted_without_a_question() -> None:
    """Finding 10: the controller's finalizer add and remove change no spec."""
    spec = {"serviceAccount": ADMIN_IN_N, "server": "https://169.254.169.254"}
    cluster = FakeCluster()
    got = await Reviewer(cluster, Policy()).landing(request(spec, user=CONTROLLER, old=spec))
    assert got == []
    assert cluster.asked == []
    changed = {"serviceAccount": {**ADMIN_IN_N, "name": "other"}}
    assert await Reviewer(cluster, Policy()).landing(request(changed, old=spec))


def _set(uid: str, service_account: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "s", "namespace": "n", "uid": uid},
        "spec": {
            "generators": [{"secrets": {"namePattern": "k-{{t}}"}}],
            "template": {"spec": {"serviceAccount": service_account}},
        },
    }


OWNED = {"ownerReferences": [{"kind": "LandingSet", "name": "s", "uid": "u1", "controller": True}]}


async def test_the_controller_writes_what_its_set_binds_and_nothing_else() -> None:
    """Finding 11: a generated Landing is admitted for the controller when it binds what
    the set's template binds (checked against the set's author), else refused."""
    cluster = FakeCluster(sets={"n/s": _set("u1", {"name": "{{t}}", **ADMIN_IN_N})})
    reviewer = Reviewer(cluster, Policy())
    generated = request(
        {"serviceAccount": {**ADMIN_IN_N, "name": "x"}}, user=CONTROLLER, meta=OWNED
    )
    assert await reviewer.landing(generated) == []
    other = {"name": "x", "clusterRole": "cluster-admin"}
    (refused,) = await reviewer.landing(
        request({"serviceAccount": other}, user=CONTROLLER, meta=OWNED)
    )
    assert "binds other than the template of its LandingSet s" in refused
    assert cluster.asked == []


async def test_a_tenant_cannot_pass_as_the_controller() -> None:
    cluster = FakeCluster(sets={"n/s": _set("u1", ADMIN_IN_N)})
    refused = await Reviewer(cluster, Policy()).landing(
        request({"serviceAccount": ADMIN_IN_N}, meta=OWNED)
    )
    assert refused and "may not bind clusterroles admin" in refused[0]


async def test_a_set_of_another_uid_is_not_the_owner() -> None:
    cluster = FakeCluster(sets={"n/s": _set("u2", ADMIN_IN_N)})
    refused = await Reviewer(cluster, Policy()).landing(
        request({"serviceAccount": ADMIN_IN_N}, user=CONTROLLER, meta=OWNED)
    )
    assert refused == ["its LandingSet s does not exist"]


async def test_a_landingset_is_checked_against_its_author() -> None:
    body = _set("u1", ADMIN_IN_N)
    req = Request(uid="u", operation="CREATE", namespace="n", user_info=TENANT, object=body)
    (refused,) = await Reviewer(FakeCluster(), Policy()).landing_set(req)
    assert "may not bind clusterroles admin in namespace n" in refused
    held = {"bind clusterroles admin in namespace n"}
    assert await Reviewer(FakeCluster(held), Policy()).landing_set(req) == []


def test_reviews_are_read_and_answered_as_admission_k8s_io_v1() -> None:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "abc",
            "operation": "UPDATE",
            "userInfo": {"username": "u", "groups": ["g"], "extra": {"k": ["v"]}},
            "object": {"spec": {}},
            "oldObject": {"spec": {}},
        },
    }
    req = decode(json.dumps(body).encode())
    assert req.user_info == UserInfo(username="u", groups=("g",), extra={"k": ("v",)})
    assert req.old_object == {"spec": {}}
    assert response("abc", []) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "abc", "allowed": True},
    }
    refused = response("abc", ["a", "b"])["response"]
    assert refused["allowed"] is False and refused["status"]["message"] == "a; b"
    with pytest.raises(BadReview):
        decode(json.dumps({**body, "apiVersion": "admission.k8s.io/v1beta1"}).encode())
    with pytest.raises(BadReview):
        decode(b"{")
