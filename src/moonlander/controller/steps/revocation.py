"""Step on deletion (``deletionPolicy: Delete``) or a withdrawn grant: remove what the
Landing landed, its minted identity and its companions; never what is not its own."""

from __future__ import annotations

from moonlander import api
from moonlander.api import Landing
from moonlander.controller.errors import API_ERRORS, fail_fast
from moonlander.controller.steps.run import Context
from moonlander.controller.steps.source import source_credentials


async def revoke(landing: Landing, ctx: Context) -> None:
    spec = landing.spec
    owner = landing.key
    landed = landing.landed
    if landed is None:
        return  # nothing was ever landed
    store = ctx.store
    mint_spec = spec.service_account
    if spec.direction is api.Direction.CHILD_TO_PARENT:
        target = ctx.local_target
    else:
        _, child_creds = await source_credentials(landing, ctx)
        target = store.target(child_creds, ctx.source_policy(landing))
        fail_fast(target)  # known not to answer: say so now rather than wait on it
    if mint_spec is not None:
        # The ServiceAccount and its RBAC live in the cluster access was granted to.
        if spec.direction is api.Direction.PARENT_TO_CHILD:
            granting = store.target(ctx.parent.current(), ctx.policy)
        else:
            _, granting_creds = await source_credentials(landing, ctx)
            granting = store.target(granting_creds, ctx.source_policy(landing))
        fail_fast(granting)
        try:
            removed = await store.revoke_identity(granting, mint_spec, owner)
        except API_ERRORS as err:
            raise await store.problem(granting, err, owner) from None
        if removed:
            store.event(
                landing.metadata,
                "Normal",
                "Revoked",
                f"deleted ServiceAccount {mint_spec.namespace}/{mint_spec.name} and "
                f"{len(removed) - 1} RBAC objects from {granting.server}",
            )
    try:
        await store.delete_if_ours(target, landing.target_namespace, landing.write_name, owner)
        if landed.cluster == target.server:
            await store.delete_if_ours(target, landed.namespace, landed.name, owner)
            if landed.provider_configs:
                await store.prune_companions(target, owner, keep=())
    except API_ERRORS as err:
        raise await store.problem(target, err, owner) from None
    store.event(
        landing.metadata,
        "Normal",
        "Revoked",
        f"deleted Secret {landing.target} from {target.server}",
    )
