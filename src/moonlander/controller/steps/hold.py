"""Step before anything is minted or written: the Landing holds the source Secret its
revocation needs (``controller.holds``), and lets go of any other it held (its spec names
another now)."""

from __future__ import annotations

from lightkube import ApiError

from moonlander.controller import holds
from moonlander.controller.errors import problem_from_error
from moonlander.controller.steps.run import Context, LandingRun


async def hold(run: LandingRun, ctx: Context) -> None:
    """Before anything is minted or written: a Secret deleted after the write (or a mint in
    the child) and before the hold would leave what was landed with no way to revoke it;
    and a Landing deleted before its status records the landing is revoked on the strength
    of this hold (``revocation.revoke``). Written only when the Secret as read lacks the
    hold, so a converged Landing costs no write."""
    landing = run.landing
    uid = landing.metadata.uid
    ref = holds.wanted(landing)
    name = holds.finalizer(uid)
    try:
        secret = run.source_secret
        if ref is not None and secret is not None and not holds.is_held(secret, uid):
            await ctx.store.hold_source(*ref, name)
        for other in sorted(_own(ctx, landing.metadata.namespace, uid)):
            if other != ref:
                await ctx.store.release_source(*other, name)
    except ApiError as err:
        where = "source Secret {}/{}".format(*(ref or landing.source_ref))
        raise problem_from_error(err, f"{where}: its hold") from None


async def release(ctx: Context, namespace: str, uid: str, refs: set[tuple[str, str]]) -> None:
    """Lets go of this Landing's hold on each of ``refs`` (those it holds, the watch says,
    and the one in hand): after its revoke, on its Orphan release, at its deletion's end."""
    name = holds.finalizer(uid)
    for ref in sorted(refs | _own(ctx, namespace, uid)):
        await ctx.store.release_source(*ref, name)


def _own(ctx: Context, namespace: str, uid: str) -> set[tuple[str, str]]:
    """The Secrets the watch sees held for ``uid`` in the Landing's own namespace: a hold
    forged elsewhere (any tenant can name a finalizer) is never this Landing's to touch."""
    return {ref for ref in ctx.sources.held(uid) if ref[0] == namespace}
