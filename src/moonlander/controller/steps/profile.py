"""Step after ``track``: the ClusterProfile and its token Secret (``output.clusterProfile``).

Last, once the Secret is landed and recorded, so that a target without the ClusterProfile
CRD still gets its Secret (and the Landing's status knows what to revoke) while the Landing
says why the profile is not there yet and retries with backoff.
"""

from __future__ import annotations

import logging

from msgspec.structs import replace

from moonlander.api import Direction, LandedStatus
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import profiles
from moonlander.controller.conditions import now_rfc3339
from moonlander.controller.steps.run import Context, LandingRun

log = logging.getLogger(__name__)


async def cluster_profile(run: LandingRun, ctx: Context) -> None:
    landing, target = run.landing, run.need_target()
    assert run.landed is not None, "track runs first"
    previous = landing.landed.cluster_profile if landing.landed else None
    name = landing.cluster_profile_name
    namespace = landing.target_namespace
    wanted = None if name is None else f"{namespace}/{name}"
    if previous is not None and previous != wanted:
        old_namespace, _, old_name = previous.partition("/")
        for removed in await ctx.store.delete_profile(target, old_namespace, old_name, run.key):
            log.info("%s: removed %s", run.key, removed)
    if name is None:
        return
    spec = landing.output.cluster_profile
    assert spec is not None
    assert run.credentials is not None
    if name == landing.write_name:
        raise LandingProblem(
            Reason.INVALID_SPEC,
            f"output.clusterProfile.name {name} is the landed Secret's name too: its token "
            "Secret (named after the profile) would replace it; choose another name",
            Retry.ON_CHANGE,
        )
    if not run.credentials.token:
        raise LandingProblem(
            Reason.INVALID_SPEC,
            "output.clusterProfile needs a minted token (spec.serviceAccount)",
            Retry.ON_CHANGE,
        )
    if not await ctx.store.profile_crd_exists(target):
        run.landed = replace(run.landed, cluster_profile=None)
        raise LandingProblem(
            Reason.CLUSTER_PROFILE_CRD_NOT_FOUND,
            f"the Secret is landed, but {target.server} has no ClusterProfile CRD "
            f"({profiles.CRD_NAME}); the ClusterProfile {namespace}/{name} is written once it "
            "is installed",
            Retry.BACKOFF,
        )
    health = await _health(run, ctx)
    creds = run.credentials
    owner, uid = run.key, landing.metadata.uid
    written = await ctx.store.apply_profile(
        target,
        profiles.profile_object(
            name=name,
            namespace=namespace,
            owner=owner,
            owner_uid=uid,
            display_name=spec.display_name,
        ),
        lambda previous_status: profiles.profile_status(
            name=name,
            server=run.server,
            ca_data=creds.ca_data,
            tls_server_name=creds.tls_server_name,
            health=health,
            generation=None,
            transition_time=now_rfc3339(),
            previous=previous_status,
        ),
        profiles.token_secret(
            name=name, namespace=namespace, owner=owner, owner_uid=uid, token=creds.token or ""
        ),
        owner,
    )
    if written:
        log.info(
            "%s: wrote %s of ClusterProfile %s/%s", run.key, ", ".join(written), namespace, name
        )
    run.landed = replace(run.landed, cluster_profile=wanted)


async def _health(run: LandingRun, ctx: Context) -> profiles.Health:
    """The described cluster as Moonlander reaches it: the credential it lands was minted
    there just now (or is still good), and ``/version`` answers through the same pool that
    tracks every cluster's reachability."""
    payload, policy = run.need_payload()
    granting = ctx.store.target(payload, policy)
    if not granting.reachable:
        return profiles.Health(
            False, "Unreachable", "Moonlander cannot reach the cluster's API server now"
        )
    version = await ctx.store.server_version(granting)
    if version is None:
        return profiles.Health(
            False, "NoVersion", "the API server did not answer /version with a version"
        )
    return profiles.Health(True, "Reachable", "Moonlander reaches the API server", version)


UNREACHABLE = profiles.Health(
    False, "Unreachable", "Moonlander cannot reach the cluster's API server now"
)


async def report_unreachable(run: LandingRun, ctx: Context, landed: LandedStatus | None) -> None:
    """The cluster a landed profile describes could not be reached: its ControlPlaneHealthy
    goes False (never why: that may be the tenant's server's secret to keep). Best effort,
    and only in the cluster the profile was written to while that one answers."""
    if landed is None or not landed.cluster_profile:
        return
    landing = run.landing
    if landing.spec.direction is Direction.CHILD_TO_PARENT:
        target = ctx.local_target
    elif run.target is not None:
        target = run.target
    else:
        return
    if target.server != landed.cluster or not target.reachable:
        return
    namespace, _, name = landed.cluster_profile.partition("/")
    try:
        changed = await ctx.store.set_profile_status(
            target,
            namespace,
            name,
            landing.key,
            lambda previous: profiles.with_health(previous, UNREACHABLE, now_rfc3339()),
        )
    except Exception as err:  # the profile stays as it was; the Landing's status says why
        log.info(
            "%s: ClusterProfile %s not marked unreachable: %s",
            run.key,
            landed.cluster_profile,
            type(err).__name__,
        )
        return
    if changed:
        log.info(
            "%s: ClusterProfile %s: ControlPlaneHealthy False", run.key, landed.cluster_profile
        )
