"""Who may read ``/metrics`` (``moonlander run --metrics-auth``): the API server decides, as
controller-runtime's ``WithAuthenticationAndAuthorization`` filter has it decide.

The caller's bearer token goes to a TokenReview; the user it names to a SubjectAccessReview
for ``get`` on the non-resource URL ``/metrics``. No or an unknown token: 401; a user RBAC
does not allow: 403. Verdicts are kept for ``ttl`` seconds, keyed by the token's SHA-256
(never the token), so that a Prometheus scraping every few seconds costs the API server two
requests per token and ``ttl``. The controller's ServiceAccount needs ``create`` on
tokenreviews and subjectaccessreviews (config/rbac/metrics-auth-role.yaml); Prometheus needs a
ClusterRole with ``get`` on ``/metrics`` (config/rbac/metrics-reader-role.yaml).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.models.authorization_v1 import NonResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.authorization_v1 import SubjectAccessReview

log = logging.getLogger(__name__)

PATH = "/metrics"
DEFAULT_TTL = 30.0
MAX_ENTRIES = 1024  # distinct tokens remembered: a flood of made-up ones cannot grow memory


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


class Reviews(Protocol):
    """The two questions asked of the API server."""

    async def authenticate(self, token: str) -> User | None: ...

    async def allowed(self, user: User, path: str, verb: str) -> bool: ...


class ApiReviews:
    """:class:`Reviews` over the controller's own client."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def authenticate(self, token: str) -> User | None:
        review = await self._client.create(TokenReview(spec=TokenReviewSpec(token=token)))
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        return User(
            username=user.username or "",
            uid=user.uid or "",
            groups=tuple(user.groups or ()),
            extra={k: list(v) for k, v in (user.extra or {}).items()},
        )

    async def allowed(self, user: User, path: str, verb: str) -> bool:
        review = await self._client.create(
            SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user.username,
                    uid=user.uid or None,
                    groups=list(user.groups),
                    extra=user.extra or None,
                    nonResourceAttributes=NonResourceAttributes(path=path, verb=verb),
                )
            )
        )
        return bool(review.status and review.status.allowed)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@dataclass(frozen=True)
class Verdict:
    status: int  # 200, 401, 403, or 500 when the API server could not be asked
    text: str


ALLOWED = Verdict(200, "")
UNAUTHORIZED = Verdict(401, "Unauthorized\n")


class MetricsAuth:
    def __init__(
        self,
        reviews: Reviews,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._reviews = reviews
        self._ttl = ttl
        self._now = clock
        self._max = max_entries
        self._cache: dict[str, tuple[float, Verdict]] = {}

    async def check(self, authorization: str | None) -> Verdict:
        token = bearer_token(authorization)
        if token is None:
            return UNAUTHORIZED
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._now()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        verdict, final = await self._decide(token)
        if final:  # the API server's trouble is not the caller's verdict: asked again next time
            self._remember(key, now + self._ttl, verdict)
        return verdict

    async def _decide(self, token: str) -> tuple[Verdict, bool]:
        """The verdict, and whether the API server gave it (else it could not be asked)."""
        try:
            user = await self._reviews.authenticate(token)
        except Exception as err:  # as controller-runtime: a failed TokenReview is a 401
            log.warning("metrics: TokenReview failed: %s", type(err).__name__)
            return UNAUTHORIZED, False
        if user is None:
            return UNAUTHORIZED, True
        try:
            allowed = await self._reviews.allowed(user, PATH, "get")
        except Exception as err:
            log.warning(
                "metrics: SubjectAccessReview failed: %s",
                type(err).__name__,
                extra={"user": user.username},
            )
            return Verdict(500, f"Authorization for user {user.username} failed\n"), False
        if not allowed:
            return Verdict(403, f"Authorization denied for user {user.username}\n"), True
        return ALLOWED, True

    def _remember(self, key: str, until: float, verdict: Verdict) -> None:
        if len(self._cache) >= self._max:
            now = self._now()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            while len(self._cache) >= self._max:  # oldest first (insertion order)
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (until, verdict)
