"""Who may read /metrics with --metrics-auth: the API server's TokenReview and
SubjectAccessReview decide (here a fake of the two questions; tests/e2e/test_metrics.py asks a
real API server), and their verdicts are kept briefly."""

from __future__ import annotations

import pytest

from moonlander.serve.metrics_auth import MetricsAuth, User, bearer_token


class FakeReviews:
    def __init__(self, users: dict[str, User], allowed: set[str]) -> None:
        self.users = users
        self.allowed_users = allowed
        self.calls: list[str] = []
        self.fail_sar = False
        self.fail_token_review = False

    async def authenticate(self, token: str) -> User | None:
        self.calls.append("TokenReview")
        if self.fail_token_review:
            raise OSError("unreachable")
        return self.users.get(token)

    async def allowed(self, user: User, path: str, verb: str) -> bool:
        self.calls.append(f"SubjectAccessReview {verb} {path}")
        if self.fail_sar:
            raise OSError("unreachable")
        return user.username in self.allowed_users


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _auth(ttl: float = 30.0, max_entries: int = 1024) -> tuple[MetricsAuth, FakeReviews, Clock]:
    reviews = FakeReviews(
        {"good": User("system:serviceaccount:mon:prometheus"), "nobody": User("nobody")},
        allowed={"system:serviceaccount:mon:prometheus"},
    )
    clock = Clock()
    return MetricsAuth(reviews, ttl=ttl, clock=clock, max_entries=max_entries), reviews, clock


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Bearer abc", "abc"),
        ("bearer abc ", "abc"),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


async def test_no_token_or_an_unknown_one_is_401_and_asks_nothing_without_one() -> None:
    auth, reviews, _ = _auth()
    assert (await auth.check(None)).status == 401
    assert reviews.calls == []
    assert (await auth.check("Bearer made-up")).status == 401
    assert reviews.calls == ["TokenReview"]


async def test_a_user_rbac_does_not_allow_is_403_one_it_allows_is_200() -> None:
    auth, reviews, _ = _auth()
    denied = await auth.check("Bearer nobody")
    assert denied.status == 403 and "nobody" in denied.text
    assert (await auth.check("Bearer good")).status == 200
    assert reviews.calls[-1] == "SubjectAccessReview get /metrics"


async def test_verdicts_are_kept_for_the_ttl_then_asked_again() -> None:
    auth, reviews, clock = _auth(ttl=30)
    for _ in range(5):
        assert (await auth.check("Bearer good")).status == 200
        assert (await auth.check("Bearer nobody")).status == 403
    assert len(reviews.calls) == 4  # two questions per token, once
    clock.now += 31
    assert (await auth.check("Bearer good")).status == 200
    assert len(reviews.calls) == 6


async def test_a_failed_review_is_401_or_500_and_not_kept() -> None:
    """As controller-runtime: a TokenReview that fails is a 401, a SubjectAccessReview that
    fails a 500; neither is remembered, the next scrape asks again."""
    auth, reviews, _ = _auth()
    reviews.fail_token_review = True
    assert (await auth.check("Bearer good")).status == 401
    reviews.fail_token_review = False
    reviews.fail_sar = True
    assert (await auth.check("Bearer good")).status == 500
    reviews.fail_sar = False
    assert (await auth.check("Bearer good")).status == 200


async def test_the_cache_is_bounded_and_holds_no_token() -> None:
    auth, _, _ = _auth(max_entries=3)
    for i in range(10):
        await auth.check(f"Bearer made-up-{i}")
    cache = auth._cache
    assert len(cache) <= 3
    assert not any("made-up" in key for key in cache)
