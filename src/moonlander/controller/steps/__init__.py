"""A Landing's reconcile as named steps over one record of the run (Flux's sub-reconcilers).

``LANDING`` is the order: authorize, read the source, choose the target, then (each call to
the target's API a ``target`` problem when it fails) move a relocated Secret, read what is
landed, hold the source Secret, credentials (minted or passed on), render, verify, write,
companions; ``track``, then ``cluster_profile`` once the landing is recorded. Each step is a
small function of ``(run, ctx)`` that fills the run or raises ``LandingProblem``; none sees
a client: every write goes through ``ctx.store``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from moonlander.api.reasons import LandingProblem
from moonlander.controller.errors import API_ERRORS
from moonlander.controller.steps.hold import hold, release
from moonlander.controller.steps.on_target import (
    companions,
    credentials,
    read_landed,
    relocate,
    render,
    track,
    write,
)
from moonlander.controller.steps.permission import authorize
from moonlander.controller.steps.profile import cluster_profile, report_unreachable
from moonlander.controller.steps.revocation import revoke, unrecorded
from moonlander.controller.steps.run import Context, LandingRun
from moonlander.controller.steps.source import (
    SourceCache,
    SourceDeleting,
    read_source,
    source_credentials,
)
from moonlander.controller.steps.target import choose_target
from moonlander.controller.steps.verification import Verifier, verify

__all__ = [
    "LANDING",
    "ON_TARGET",
    "Context",
    "LandingRun",
    "SourceCache",
    "SourceDeleting",
    "Step",
    "Verifier",
    "authorize",
    "land",
    "release",
    "report_unreachable",
    "revoke",
    "source_credentials",
    "unrecorded",
]

Step = Callable[[LandingRun, Context], Awaitable[None]]

# Before anything is written: may it, what does it land, where.
LANDING: tuple[Step, ...] = (authorize, read_source, choose_target)
# Calls to the target (and to the cluster access is granted to, which report their own).
ON_TARGET: tuple[Step, ...] = (
    relocate,
    read_landed,
    hold,
    credentials,
    render,
    verify,
    write,
    companions,
)


async def land(run: LandingRun, ctx: Context) -> None:
    """Runs the steps in order; ``run.landed`` says what was landed when they all pass."""
    for step in LANDING:
        await step(run, ctx)
    assert run.target is not None
    try:
        for step in ON_TARGET:
            await step(run, ctx)
    except LandingProblem:
        raise
    except API_ERRORS as err:
        raise await ctx.store.problem(run.target, err, run.key) from None
    await track(run, ctx)
    try:
        await cluster_profile(run, ctx)
    except LandingProblem:
        raise
    except API_ERRORS as err:
        raise await ctx.store.problem(run.target, err, run.key) from None
