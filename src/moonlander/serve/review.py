"""What the admission webhook answers for one AdmissionReview (``admission.k8s.io/v1``).

The answer is decided here from the request and three questions to the API server
(:class:`Cluster`): whether the *requesting* user may do something (a SubjectAccessReview
about ``request.userInfo``, never about anyone else), whether the requester is this
controller, and what a LandingSet says. The pure checks are in ``serve/admission.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec

from moonlander import api
from moonlander.credentials import Policy
from moonlander.serve.admission import (
    MAX_RULE_QUESTIONS,
    Question,
    RuleScope,
    bind_checks,
    bound,
    problems,
    rule_scopes,
    sample_landing,
    set_owner,
    set_problems,
    spec_unchanged,
)

API_VERSION = "admission.k8s.io/v1"
_CONCURRENT_QUESTIONS = 8


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)


class Request(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    uid: str
    operation: str = ""
    name: str = ""
    namespace: str = ""
    user_info: UserInfo = msgspec.field(default_factory=UserInfo)
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None


class AdmissionReview(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    api_version: str = ""
    kind: str = ""
    request: Request | None = None


class BadReview(ValueError):
    """Not an AdmissionReview this webhook understands."""


def decode(body: bytes) -> Request:
    try:
        review = msgspec.json.decode(body, type=AdmissionReview)
    except msgspec.DecodeError as err:
        raise BadReview(f"not an AdmissionReview: {err}") from None
    if review.api_version != API_VERSION or review.kind != "AdmissionReview":
        raise BadReview(f"expected an AdmissionReview of {API_VERSION}")
    if review.request is None:
        raise BadReview("the AdmissionReview has no request")
    return review.request


def response(uid: str, refused: list[str]) -> dict[str, Any]:
    """The AdmissionReview to send back: allowed, or refused with every reason (422)."""
    answer: dict[str, Any] = {"uid": uid, "allowed": not refused}
    if refused:
        answer["status"] = {"code": 422, "reason": "Invalid", "message": "; ".join(refused)}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


class Cluster(Protocol):
    """What the webhook asks the API server."""

    async def allowed(self, user: UserInfo, question: Question) -> bool:
        """A SubjectAccessReview for ``user``."""

    async def is_self(self, user: UserInfo) -> bool:
        """Whether ``user`` is this controller's own identity."""

    async def landing_set(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The LandingSet as stored, None when there is none."""


class Reviewer:
    def __init__(self, cluster: Cluster, policy: Policy) -> None:
        self._cluster = cluster
        self._policy = policy

    async def landing(self, request: Request) -> list[str]:
        """Why a Landing may not be written; empty when it may."""
        obj = request.object or {}
        # Checked first: the controller's finalizer add and remove change no spec, and must
        # pass even when the address policy has changed since the spec was admitted.
        if request.operation == "UPDATE" and spec_unchanged(request.old_object, obj):
            return []
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or request.name)
        found = problems(name, obj.get("spec"), policy=self._policy)
        if found:
            return found
        spec = api.parse_spec(obj.get("spec"), name=name)
        binds = bound(spec)
        if binds is None:
            return []
        owner = set_owner(meta)
        if owner is not None and await self._cluster.is_self(request.user_info):
            return await self._as_generated(request.namespace, owner, binds)
        return await self._unbindable(spec, request.user_info)

    async def landing_set(self, request: Request) -> list[str]:
        """Why a LandingSet may not be written; empty when it may."""
        obj = request.object or {}
        if request.operation == "UPDATE" and spec_unchanged(request.old_object, obj):
            return []
        found = set_problems(obj, policy=self._policy)
        if found:
            return found
        name, spec = sample_landing(obj)
        return await self._unbindable(api.parse_spec(spec, name=name), request.user_info)

    async def _as_generated(
        self, namespace: str, owner: tuple[str, str], binds: tuple[Any, ...]
    ) -> list[str]:
        """The controller writes a Landing of a LandingSet: admitted when it binds exactly
        what the set's template binds (checked against the set's author when the set was
        admitted), whatever the controller itself could bind."""
        set_name, uid = owner
        body = await self._cluster.landing_set(namespace, set_name)
        if body is None or (body.get("metadata") or {}).get("uid") != uid:
            return [f"its LandingSet {set_name} does not exist"]
        try:
            name, spec = sample_landing(body)
            template = api.parse_spec(spec, name=name)
        except api.SpecError as err:
            return [f"its LandingSet {set_name}: {err}"]
        if bound(template) != binds:
            return [
                f"spec.serviceAccount: binds other than the template of its LandingSet "
                f"{set_name}, which is what the set's author was checked for"
            ]
        return []

    async def _unbindable(self, spec: api.LandingSpec, user: UserInfo) -> list[str]:
        """What the requesting user could not grant by RBAC of what the Landing would mint
        here; empty when they could grant all of it."""
        limit = asyncio.Semaphore(_CONCURRENT_QUESTIONS)

        async def ask(question: Question) -> bool:
            async with limit:
                return await self._cluster.allowed(user, question)

        async def answers(questions: list[Question]) -> list[bool]:
            return list(await asyncio.gather(*(ask(q) for q in questions)))

        binds = list(bind_checks(spec))
        refused = [
            q.describe() for q, ok in zip(binds, await answers(binds), strict=True) if not ok
        ]
        for scope in rule_scopes(spec):
            refused.extend(await self._rules_refused(scope, answers))
        if not refused:
            return []
        return [
            "spec.serviceAccount: the requesting user may not "
            + "; ".join(refused)
            + ", so the Landing may not mint it either"
        ]

    @staticmethod
    async def _rules_refused(
        scope: RuleScope, answers: Callable[[list[Question]], Awaitable[list[bool]]]
    ) -> list[str]:
        where = f"in namespace {scope.namespace}" if scope.namespace else "cluster-wide"
        roles = "roles" if scope.namespace else "clusterroles"
        bypass = f"nor escalate and bind {roles} {where}"
        if all(await answers(list(scope.bypass()))):
            return []
        held = scope.held()
        if len(held) > MAX_RULE_QUESTIONS:
            return [
                f"grant inline rules {where}: they expand to {len(held)} permissions (more "
                f"than {MAX_RULE_QUESTIONS} are not checked one by one), {bypass}"
            ]
        missing = [q.describe() for q, ok in zip(held, await answers(held), strict=True) if not ok]
        if not missing:
            return []
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        return [f"grant inline rules {where}: it does not hold {shown}, {bypass}"]
