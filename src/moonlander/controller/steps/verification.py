"""Step: a credential about to be landed must work where it grants access."""

from __future__ import annotations

import asyncio
import time

from lightkube import ApiError

from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.errors import fail_fast
from moonlander.controller.steps.run import Context, LandingRun
from moonlander.credentials import Credentials, Policy

VERIFIED_FOR = 60.0  # seconds a credential stays verified before it is asked about again
VERIFIED_KEPT = 10_000


class Verifier:
    """Credential fingerprint -> when a SelfSubjectReview last accepted it, and the one in
    flight (its error, or None)."""

    def __init__(self) -> None:
        self._verified: dict[str, float] = {}
        self._reviews: dict[str, asyncio.Future[BaseException | None]] = {}

    async def check(self, creds: Credentials, key: str, policy: Policy, ctx: Context) -> None:
        """Asks the cluster a credential grants access to who it is (SelfSubjectReview), so
        a credential that does not authenticate is reported instead of landed."""
        fingerprint = creds.fingerprint()
        if time.monotonic() - self._verified.get(fingerprint, -VERIFIED_FOR) < VERIFIED_FOR:
            return  # many Landings land the same parent credential: ask once a minute
        granting = ctx.store.target(creds, policy)
        fail_fast(granting)
        # Landings of one credential often arrive together: they share one question.
        review = self._reviews.get(fingerprint)
        if review is None:
            review = asyncio.ensure_future(ctx.store.review(granting))
            self._reviews[fingerprint] = review
            review.add_done_callback(lambda done: self._settled(fingerprint, done))
        err = await asyncio.shield(review)
        if isinstance(err, ApiError):
            if err.status.code == 401:
                raise LandingProblem(
                    Reason.CREDENTIAL_REJECTED,
                    f"the credential to land does not authenticate at {creds.server} (401); "
                    "it is not landed",
                    Retry.BACKOFF,
                ) from None
            if err.status.code != 403:  # authenticated, only not allowed to ask: fine
                raise await ctx.store.problem(granting, err, key) from None
        elif err is not None:  # the cluster granting access, not the one written to
            raise await ctx.store.problem(granting, err, key) from None

    def _settled(self, fingerprint: str, review: asyncio.Future[BaseException | None]) -> None:
        """A SelfSubjectReview answered: an accepted credential counts as verified at once,
        before its waiters resume, so a reconcile starting in between asks no second time."""
        self._reviews.pop(fingerprint, None)
        if review.cancelled() or review.exception() is not None:
            return  # its waiters see the exception
        err = review.result()
        if err is None or (isinstance(err, ApiError) and err.status.code == 403):
            if len(self._verified) > VERIFIED_KEPT:
                self._verified.clear()
            self._verified[fingerprint] = time.monotonic()


async def verify(run: LandingRun, ctx: Context) -> None:
    """Only when something new is about to be landed; a minted token was just issued by
    the cluster it grants access to, so it is not asked about."""
    assert run.desired is not None, "render runs first"
    if run.existing is not None and own.is_current(run.existing, run.desired):
        return
    if run.landing.spec.service_account is not None:
        return
    payload, policy = run.need_payload()
    await ctx.verifier.check(payload, run.key, policy, ctx)
