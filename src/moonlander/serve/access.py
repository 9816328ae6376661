"""The webhook's questions to the API server, asked with the controller's own client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.authorization_v1 import (
    NonResourceAttributes,
    ResourceAttributes,
    SubjectAccessReviewSpec,
)
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.authorization_v1 import SubjectAccessReview

from moonlander.kube.resources import LandingSetResource
from moonlander.serve.admission import Question
from moonlander.serve.review import UserInfo


class KubeCluster:
    """:class:`moonlander.serve.review.Cluster` over the controller's client."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._username: str | None = None

    async def allowed(self, user: UserInfo, question: Question) -> bool:
        resource = non_resource = None
        if question.path is not None:
            non_resource = NonResourceAttributes(path=question.path, verb=question.verb)
        else:
            resource = ResourceAttributes(
                group=question.group,
                resource=question.resource,
                subresource=question.subresource or None,
                verb=question.verb,
                name=question.name,
                namespace=question.namespace,
            )
        review = SubjectAccessReview(
            spec=SubjectAccessReviewSpec(
                user=user.username,
                uid=user.uid or None,
                groups=list(user.groups),
                extra={k: list(v) for k, v in user.extra.items()} or None,
                resourceAttributes=resource,
                nonResourceAttributes=non_resource,
            )
        )
        result = await self._client.create(review)
        return bool(result.status and result.status.allowed)

    async def is_self(self, user: UserInfo) -> bool:
        """Compared by user name, learnt once (SelfSubjectReview): no tenant can take the
        controller's name without impersonating it, which RBAC grants only by intent."""
        if self._username is None:
            review = await self._client.create(SelfSubjectReview())
            info = review.status.userInfo if review.status else None
            self._username = (info.username if info else None) or ""
        return bool(self._username) and user.username == self._username

    async def landing_set(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            found = await self._client.get(LandingSetResource, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return dict(found.to_dict())
