"""Step: may this namespace do what the Landing asks (pure, before anything is read)."""

from __future__ import annotations

from moonlander.api.reasons import LandingProblem
from moonlander.controller import authorize as grants
from moonlander.controller.steps.run import Context, LandingRun


async def authorize(run: LandingRun, ctx: Context) -> None:
    """Raises ``NotPermitted`` when the namespace's LandingPolicies do not grant what the
    Landing asks (or the fence closes it); else the run gets its source's address policy."""
    grants.authorize(run.landing, ctx.policies, ctx.fence)
    run.source_policy = ctx.source_policy(run.landing)


def permitted(run: LandingRun, ctx: Context) -> bool:
    try:
        grants.authorize(run.landing, ctx.policies, ctx.fence)
    except LandingProblem:
        return False
    return True
