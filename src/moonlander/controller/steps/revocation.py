"""Step on deletion (``deletionPolicy: Delete``) or a withdrawn grant: remove what the
Landing landed, its minted identity and its companions; never what is not its own."""

from __future__ import annotations

from moonlander import api, minting
from moonlander.api import Landing
from moonlander.controller import holds
from moonlander.controller.errors import API_ERRORS, fail_fast
from moonlander.controller.steps.run import Context
from moonlander.controller.steps.source import source_credentials
from moonlander.credentials import Credentials, Policy


def minted_ref(spec: api.ServiceAccountSpec | None, landed: str | None) -> minting.ObjectRef | None:
    """The ServiceAccount a Landing minted: as its spec says, else as its status recorded
    (``namespace/name``); None when it minted none."""
    if spec is not None:
        return minting.ObjectRef("ServiceAccount", spec.name, spec.namespace)
    namespace, _, name = (landed or "").partition("/")
    if not name:
        return None
    return minting.ObjectRef("ServiceAccount", name, namespace)


def minted_any(landing: Landing) -> bool:
    """True when the status says the Landing landed a token it minted."""
    landed = landing.landed
    return landed is not None and (
        minted_ref(landing.spec.service_account, landed.service_account) is not None
    )


async def revoke(landing: Landing, ctx: Context) -> None:
    spec = landing.spec
    owner = landing.key
    landed = landing.landed
    # Minting comes before landing: a Landing deleted in between minted an identity that
    # its status never recorded (soak finding 2), so that goes even when nothing landed.
    await revoke_parent_identity(landing, ctx)
    if landed is None and not await _may_have_landed(landing, ctx):
        return  # nothing was ever landed
    store = ctx.store
    minted = minted_ref(spec.service_account, landed.service_account if landed else None)
    if minted is not None and spec.direction is api.Direction.CHILD_TO_PARENT:
        # Made in the tenant's child with its own credential: removed there too.
        _, child_creds = await source_credentials(landing, ctx)
        await _revoke_identity(landing, minted, child_creds, ctx.source_policy(landing), ctx)
    if spec.direction is api.Direction.CHILD_TO_PARENT:
        target = ctx.local_target
    else:
        _, child_creds = await source_credentials(landing, ctx)
        target = store.target(child_creds, ctx.source_policy(landing))
        fail_fast(target)  # known not to answer: say so now rather than wait on it
    try:
        await store.delete_if_ours(target, landing.target_namespace, landing.write_name, owner)
        if landed is None or landed.cluster == target.server:
            if landed is not None:
                await store.delete_if_ours(target, landed.namespace, landed.name, owner)
            if (landed is not None and landed.provider_configs) or (
                landed is None and spec.output.crossplane is not None
            ):
                await store.prune_companions(target, owner, keep=())
            # As recorded, and as the spec names it (a first write may have stopped short
            # of recording it); only what carries this Landing's marks goes.
            profiles = {landed.cluster_profile} if landed and landed.cluster_profile else set()
            if landing.cluster_profile_name:
                profiles.add(f"{landing.target_namespace}/{landing.cluster_profile_name}")
            for profile in sorted(profiles):
                namespace, _, name = profile.partition("/")
                await store.delete_profile(target, namespace, name, owner)
    except API_ERRORS as err:
        raise await store.problem(target, err, owner) from None
    store.event(
        landing.metadata,
        "Normal",
        "Revoked",
        f"deleted Secret {landing.target} from {target.server}",
    )


async def _may_have_landed(landing: Landing, ctx: Context) -> bool:
    """With nothing recorded in its status, whether the Landing may still have written (or
    minted in the child) before it could record it: its status is written after the write,
    so a controller stopped in between leaves a Secret the status does not name (soak
    finding 5). A Landing that holds its source holds it from before its first mint or
    write; a ChildToParent one that holds none wrote (if at all) to the local cluster,
    always reachable, where only what carries its marks goes. Nothing else can have
    landed: a Landing that never got that far is released without calling its target."""
    ref = holds.wanted(landing)
    if ref is None:
        return landing.spec.direction is api.Direction.CHILD_TO_PARENT
    meta = await ctx.store.source_metadata(*ref)
    return meta is not None and holds.is_held(meta, landing.metadata.uid)


async def revoke_parent_identity(landing: Landing, ctx: Context) -> None:
    """Revokes what the Landing minted with the parent's rights. First, and needing
    nothing of the tenant's: its source may be gone, its spec may have dropped or renamed
    the ServiceAccount or flipped the direction since (every object marked for this
    Landing goes, whatever its name; for a ChildToParent mint there is none)."""
    landed = landing.landed
    minted = minted_ref(landing.spec.service_account, landed.service_account if landed else None)
    if minted is not None:
        await _revoke_identity(landing, minted, ctx.parent.current(), ctx.policy, ctx)


async def _revoke_identity(
    landing: Landing,
    minted: minting.ObjectRef,
    creds: Credentials,
    policy: Policy,
    ctx: Context,
) -> None:
    """Deletes the ServiceAccount (so every token issued for it stops working) and the
    RBAC objects minted for ``landing`` in the cluster ``creds`` grant access to."""
    owner = landing.key
    store = ctx.store
    granting = store.target(creds, policy)
    fail_fast(granting)
    try:
        removed = await store.revoke_identity(granting, minted, owner)
    except API_ERRORS as err:
        raise await store.problem(granting, err, owner) from None
    if removed:
        store.event(
            landing.metadata,
            "Normal",
            "Revoked",
            f"deleted ServiceAccount {minted.namespace}/{minted.name} and "
            f"{len(removed) - 1} RBAC objects from {granting.server}",
        )
