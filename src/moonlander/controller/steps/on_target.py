"""Steps on the target: move a relocated Secret, read what is landed, the credentials to
land (minted or passed on), render them, write them, the objects next to them; and
``track``, which watches what was written and says what was landed."""

from __future__ import annotations

import logging

from moonlander import api
from moonlander.api import LandedStatus
from moonlander.controller import memo, outputs, plan
from moonlander.controller.conditions import now_rfc3339
from moonlander.controller.steps.run import Context, LandingRun

log = logging.getLogger(__name__)


async def relocate(run: LandingRun, ctx: Context) -> None:
    """When the target name or namespace changed, the old Secret (if ours) is removed."""
    landing, target = run.landing, run.need_target()
    previous = landing.landed
    if previous is None or previous.cluster != target.server:
        return
    if (previous.namespace, previous.name) == (landing.target_namespace, landing.write_name):
        return
    await ctx.store.delete_if_ours(target, previous.namespace, previous.name, landing.key)


async def read_landed(run: LandingRun, ctx: Context) -> None:
    landing = run.landing
    run.existing = await ctx.store.landed_secret(
        run.need_target(), landing.target_namespace, landing.write_name
    )


async def credentials(run: LandingRun, ctx: Context) -> None:
    """The payload at the server the landed kubeconfig names; with ``spec.serviceAccount``,
    a token of the Landing's own ServiceAccount in the cluster the payload grants access to
    (the one already landed while it is good)."""
    payload, policy = run.need_payload()
    if run.landing.spec.service_account is None:
        run.credentials = memo.with_server(payload, run.server, policy)
    else:
        run.credentials, run.token = await ctx.store.mint(
            run.landing, payload, run.server, run.existing, policy
        )


async def render(run: LandingRun, ctx: Context) -> None:
    """The landed Secret as it should be: a kubeconfig, or an Argo CD cluster Secret."""
    landing = run.landing
    assert run.credentials is not None, "credentials runs first"
    output = landing.spec.output
    mint_spec = landing.spec.service_account
    annotations = run.token.annotations() if run.token else None
    if output.format is api.OutputFormat.ARGOCD:
        assert output.argocd is not None
        run.desired = outputs.argocd_cluster_secret(
            run.credentials,
            name=landing.write_name,
            namespace=landing.target_namespace,
            owner=landing.key,
            owner_uid=landing.metadata.uid,
            spec=output.argocd,
            annotations=annotations,
        )
        return
    payload, _ = run.need_payload()
    kubeconfig = memo.rendered(
        run.credentials, mint_spec.name if mint_spec else payload.context_name or "moonlander"
    )
    run.desired = plan.desired_secret(
        name=landing.write_name,
        namespace=landing.target_namespace,
        owner=landing.key,
        owner_uid=landing.metadata.uid,
        kubeconfig=kubeconfig,
        annotations=annotations,
    )


async def write(run: LandingRun, ctx: Context) -> None:
    """Writes the Secret unless it is current; an Event when it undid someone's change
    (a Landing's own new input is recorded by its status; an Event for each would be one
    more write per Landing on a fleet)."""
    landing, target = run.landing, run.need_target()
    assert run.desired is not None, "render runs first"
    written = await ctx.store.write_secret(
        target, run.desired, run.existing, owner=landing.key, adopt=landing.spec.adopt_existing
    )
    run.written = written.action
    if written.repaired:
        ctx.store.event(
            landing.metadata,
            "Normal",
            "Repaired",
            f"Secret {landing.target} in {target.server} had been changed; restored",
        )


async def companions(run: LandingRun, ctx: Context) -> None:
    """Crossplane ProviderConfigs next to the Secret, where their CRDs exist; those no
    longer asked for (name, scope or providers changed) are removed."""
    landing, target = run.landing, run.need_target()
    owner = landing.key
    output = landing.output
    desired = (
        outputs.crossplane_objects(
            output.crossplane,
            secret_name=landing.write_name,
            secret_namespace=landing.target_namespace,
            owner=owner,
            owner_uid=landing.metadata.uid,
        )
        if output.crossplane is not None
        else []
    )
    present, skipped = await ctx.store.apply_companions(target, desired, owner)
    if skipped:
        log.info("%s: no CRD for %s in %s yet", owner, ", ".join(skipped), target.server)
    previous = landing.landed.provider_configs if landing.landed else ()
    if set(previous) - set(present):
        for removed in await ctx.store.prune_companions(target, owner, keep=present):
            log.info("%s: removed %s", owner, removed)
    run.provider_configs = tuple(present)


async def track(run: LandingRun, ctx: Context) -> None:
    """Watches what was written (the Secret's namespace; a minted ServiceAccount's) and
    records what was landed."""
    landing, target = run.landing, run.need_target()
    assert run.desired is not None
    mint_spec = landing.spec.service_account
    watches = [(target, landing.target_namespace, "Secret")]
    if mint_spec is not None:
        payload, policy = run.need_payload()
        watches.append((ctx.store.target(payload, policy), mint_spec.namespace, "ServiceAccount"))
    ctx.store.drift.track(landing.key, watches)
    token = run.token
    run.landed = LandedStatus(
        cluster=target.server,
        server=run.server,
        namespace=landing.target_namespace,
        name=landing.write_name,
        source_key=run.source_key,
        content_hash=run.desired["metadata"]["annotations"][api.HASH_ANNOTATION],
        service_account=f"{mint_spec.namespace}/{mint_spec.name}" if mint_spec else None,
        token_expires_at=now_rfc3339(token.expires_at) if token else None,
        token_renew_at=now_rfc3339(token.renew_at(mint_spec.renew_before_fraction))
        if token and mint_spec
        else None,
        provider_configs=run.provider_configs,
    )
