"""Step: which cluster is written to, what grants access there, and the server it names."""

from __future__ import annotations

from moonlander import api
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.errors import fail_fast
from moonlander.controller.steps.run import Context, LandingRun
from moonlander.credentials import KubeconfigError, check_server


async def choose_target(run: LandingRun, ctx: Context) -> None:
    """The payload grants access to one cluster; the Secret is written into another.

    ParentToChild: the payload is the operator's parent credential (judged by the
    operator's policy) and the target is the child the source names. ChildToParent: the
    payload is the tenant's source (judged by its namespace's narrower policy), already at
    ``spec.server`` (``source_credentials``), and the target is the controller's cluster.
    """
    landing = run.landing
    spec = landing.spec
    assert run.source is not None, "read_source runs first"
    assert run.source_policy is not None
    if spec.direction is api.Direction.PARENT_TO_CHILD:
        run.payload, run.payload_policy = ctx.parent.current(), ctx.policy
        run.target = ctx.store.target(run.source, run.source_policy)
    else:
        run.payload, run.payload_policy = run.source, run.source_policy
        run.target = ctx.local_target
    if spec.server:
        try:
            run.server = check_server(spec.server, run.payload_policy)
        except KubeconfigError as err:
            raise LandingProblem(
                Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
            ) from None
    else:
        run.server = run.payload.server
    fail_fast(run.target)
