"""Step on deletion (``deletionPolicy: Delete``) or a withdrawn grant: remove what the
Landing landed, its minted identity and its companions; never what is not its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from moonlander import api, minting
from moonlander.api import Landing
from moonlander.controller import holds
from moonlander.controller.errors import API_ERRORS, fail_fast
from moonlander.controller.steps.run import Context
from moonlander.controller.steps.source import source_credentials
from moonlander.credentials import Credentials, Policy
from moonlander.kube.clusters import Target

log = logging.getLogger(__name__)

# How long the deletion of what a Landing may have landed unrecorded may take.
UNRECORDED_DEADLINE = 20.0


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
    if landed is None:
        return  # nothing recorded: see ``unrecorded``
    store = ctx.store
    minted = minted_ref(spec.service_account, landed.service_account)
    if minted is not None and spec.direction is api.Direction.CHILD_TO_PARENT:
        # Made in the tenant's child with its own credential: removed there too.
        _, child_creds = await source_credentials(landing, ctx)
        await _revoke_identity(landing, minted, child_creds, ctx.source_policy(landing), ctx)
    target = await _target(landing, ctx)
    try:
        await store.delete_if_ours(target, landing.target_namespace, landing.write_name, owner)
        if landed.cluster == target.server:
            await store.delete_if_ours(target, landed.namespace, landed.name, owner)
            if landed.provider_configs:
                await store.prune_companions(target, owner, keep=())
            # As recorded, and as the spec names it (a first write may have stopped short
            # of recording it); only what carries this Landing's marks goes.
            profiles = {landed.cluster_profile} if landed.cluster_profile else set()
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


async def _target(landing: Landing, ctx: Context) -> Target:
    """Where the Landing writes: the local cluster (ChildToParent), else the child its
    source Secret reaches."""
    if landing.spec.direction is api.Direction.CHILD_TO_PARENT:
        return ctx.local_target
    _, child_creds = await source_credentials(landing, ctx)
    target = ctx.store.target(child_creds, ctx.source_policy(landing))
    fail_fast(target)  # known not to answer: say so now rather than wait on it
    return target


async def unrecorded(
    landing: Landing, ctx: Context
) -> Callable[[], Coroutine[Any, Any, None]] | None:
    """What a Landing whose status records nothing may still have landed: its status is
    written after its write, so a controller stopped in between leaves a Secret the status
    does not name (soak finding 5). A Landing holds its source from before its first mint
    or write, so a held source (or a ChildToParent Landing, which writes to this cluster)
    says there may be one. Read now, while the source is still held: the credentials to
    reach it. Returned: the deletion of what carries the Landing's marks there, to run off
    the reconcile. It is best effort and tells nothing: a tenant can forge the hold, and
    whether a cluster it names answers must show in no status, Event or timing. None when
    nothing can have landed."""
    if landing.landed is not None:
        return None
    spec, owner, store = landing.spec, landing.key, ctx.store
    ref = holds.wanted(landing)
    if ref is None and spec.direction is not api.Direction.CHILD_TO_PARENT:
        return None
    try:
        if ref is not None:
            meta = await store.source_metadata(*ref)
            if meta is None or not holds.is_held(meta, landing.metadata.uid):
                return None
        target = await _target(landing, ctx)
        minted = minted_ref(spec.service_account, None)
        child: Credentials | None = None
        if minted is not None and spec.direction is api.Direction.CHILD_TO_PARENT:
            _, child = await source_credentials(landing, ctx)
    except Exception as err:  # whatever it was, nothing to say of it
        log.debug("%s: nothing unrecorded revoked: %s", owner, type(err).__name__)
        return None

    async def run() -> None:
        try:
            async with asyncio.timeout(UNRECORDED_DEADLINE):
                if minted is not None and child is not None:
                    policy = ctx.source_policy(landing)
                    await _revoke_identity(landing, minted, child, policy, ctx)
                await store.delete_if_ours(
                    target, landing.target_namespace, landing.write_name, owner
                )
                if spec.output.crossplane is not None:
                    await store.prune_companions(target, owner, keep=())
                if landing.cluster_profile_name:
                    name = landing.cluster_profile_name
                    await store.delete_profile(target, landing.target_namespace, name, owner)
        except Exception as err:  # best effort, and silent (see above)
            log.debug("%s: unrecorded landing not revoked: %s", owner, type(err).__name__)

    return run


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
