"""Step: read the source Secret and validate the kubeconfig (or token) it holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpcore2
import httpx2
import yaml
from lightkube import ApiError

from moonlander import api
from moonlander.api import Landing
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import holds, memo, plan, profiles
from moonlander.controller.errors import problem_from_error
from moonlander.controller.steps.run import Context, LandingRun
from moonlander.credentials import Credentials, KubeconfigError, Policy, check_server
from moonlander.kube.clusters import annotations_of_dict

Secret = Mapping[str, Any]


class SourceCache:
    """Source Secrets as last read, by (namespace, name): (resourceVersion, Secret). Reused
    while the metadata watch reports the same version (``version``), so a reconcile of an
    unchanged source costs no read. Only sources of Landings are kept."""

    def __init__(self) -> None:
        self.version: Callable[[str, str], str | None] = lambda _ns, _name: None
        # The Secrets a Landing (by uid) holds, as the metadata watch sees their finalizers.
        self.held: Callable[[str], Iterable[tuple[str, str]]] = lambda _uid: ()
        self._kept: dict[tuple[str, str], tuple[str, Secret]] = {}

    def get(self, ref: tuple[str, str]) -> Secret | None:
        kept = self._kept.get(ref)
        if kept is not None and kept[0] == self.version(*ref):
            return kept[1]  # unchanged since it was read, as the metadata watch says
        return None

    def keep(self, ref: tuple[str, str], secret: Secret) -> None:
        version = (secret.get("metadata") or {}).get("resourceVersion")
        if version:
            self._kept[ref] = (version, secret)

    def forget(self, ref: tuple[str, str]) -> None:
        self._kept.pop(ref, None)


class SourceDeleting(LandingProblem):
    """The source Secret the Landing holds is being deleted: the tenant's access is going
    away, so what the Landing landed is revoked (while the Secret still reads) and the hold
    released."""

    def __init__(self, landing: Landing) -> None:
        namespace, name = landing.source_ref
        super().__init__(
            Reason.SOURCE_SECRET_NOT_FOUND,
            f"source Secret {namespace}/{name} is being deleted",
            Retry.BACKOFF,
        )


async def read_source(run: LandingRun, ctx: Context) -> None:
    seen: list[Secret] = []
    run.source_key, run.source = await source_credentials(run.landing, ctx, seen)
    run.source_secret = seen[0] if seen else None
    if (
        run.source_secret is not None
        and holds.wanted(run.landing) == run.landing.source_ref
        and holds.is_deleting(run.source_secret)
    ):
        raise SourceDeleting(run.landing)


async def source_credentials(
    landing: Landing, ctx: Context, seen: list[Secret] | None = None
) -> tuple[str, Credentials]:
    """The source Secret's key and its validated kubeconfig.

    ChildToParent: the source is both what is landed and the cluster the controller talks
    to for the child (credential check, minting, drift watch), so ``spec.server`` replaces
    its server here, before the address policy judges it and before anything connects:
    vcluster's Secret names ``https://localhost:8443``, which only works in its own pod.
    ParentToChild: the source is the child written to, dialled at its own server;
    ``spec.server`` is where the child reaches the parent (``choose_target``).
    """
    if landing.spec.cluster_profile_name is not None:
        return await _profile_source(landing, ctx)
    source = await _read(landing, ctx)
    if seen is not None:
        seen.append(source)  # the Secret as read, for its hold (controller.holds)
    policy = ctx.source_policy(landing)
    data = source.get("data") or {}
    wanted = landing.spec.kubeconfig_secret_key
    if wanted is None and plan.is_token_secret(data):
        # OCM managed-serviceaccount and service-account-token Secrets: token + ca.crt,
        # the server comes from spec.server.
        return plan.TOKEN_KEY, plan.credentials_from_token_secret(data, landing.spec.server, policy)
    source_key = plan.select_source_key(data, wanted, annotations_of_dict(source))
    raw = plan.decode_secret_value(data, source_key)
    ref = f"source Secret {landing.source_namespace}/{landing.source_name} key {source_key!r}"
    server = _child_server(landing, policy)
    try:
        return source_key, memo.parsed(raw, policy, server)
    except KubeconfigError as err:
        raise LandingProblem(Reason.INVALID_KUBECONFIG, f"{ref}: {err}", Retry.ON_CHANGE) from None


def _child_server(landing: Landing, policy: Policy) -> str | None:
    """ChildToParent: ``spec.server`` replaces the source's server (see above)."""
    if not landing.spec.server or landing.spec.direction is not api.Direction.CHILD_TO_PARENT:
        return None
    try:
        return check_server(landing.spec.server, policy)
    except KubeconfigError as err:
        raise LandingProblem(Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE) from None


async def _profile_source(landing: Landing, ctx: Context) -> tuple[str, Credentials]:
    """``clusterProfileName``: a ClusterProfile of the Landing's own namespace and the Secret
    of that namespace its secretreader access names, read as the plugin would read them
    (never running it). Only the Landing's own namespace: a profile elsewhere would tell its
    tenant another namespace's clusters, and its Secret their tokens."""
    namespace = landing.metadata.namespace
    name = landing.spec.cluster_profile_name
    assert name is not None
    if landing.source_namespace != namespace:
        raise LandingProblem(
            Reason.INVALID_SPEC,
            "clusterProfileName: a ClusterProfile source is read from the Landing's own "
            "namespace only; drop kubeconfigSecretNamespace",
            Retry.ON_CHANGE,
        )
    where = f"ClusterProfile {namespace}/{name}"
    try:
        profile = await ctx.store.cluster_profile(namespace, name)
    except ApiError as err:
        raise problem_from_error(err, where) from None
    if profile is None:
        raise LandingProblem(
            Reason.SOURCE_SECRET_NOT_FOUND,
            f"{where} does not exist yet; waiting for it",
            Retry.BACKOFF,
        )
    try:
        access = profiles.access_of(profile)
    except profiles.ProfileError as err:
        raise LandingProblem(
            Reason.INVALID_KUBECONFIG, f"{where}: {err}", Retry.ON_CHANGE
        ) from None
    secret_where = f"{where}: its token Secret {namespace}/{access.secret_name}"
    try:
        secret = await ctx.store.source_secret(namespace, access.secret_name)
    except ApiError as err:
        raise problem_from_error(err, secret_where) from None
    if secret is None:
        raise LandingProblem(
            Reason.SOURCE_SECRET_NOT_FOUND,
            f"{secret_where} does not exist yet; waiting for it",
            Retry.BACKOFF,
        )
    data = secret.get("data") or {}
    if not data.get(profiles.TOKEN_KEY):
        raise LandingProblem(
            Reason.SOURCE_KEY_NOT_FOUND,
            f"{secret_where} has no key {profiles.TOKEN_KEY!r}",
            Retry.ON_CHANGE,
        )
    token = plan.decode_secret_value(data, profiles.TOKEN_KEY).decode("utf-8", "replace").strip()
    policy = ctx.source_policy(landing)
    server = _child_server(landing, policy)
    document = profiles.kubeconfig_of(access, token, name)
    raw = yaml.safe_dump(document, width=1 << 30).encode()
    try:
        return profiles.TOKEN_KEY, memo.parsed(raw, policy, server)
    except KubeconfigError as err:
        raise LandingProblem(
            Reason.INVALID_KUBECONFIG, f"{where}: {err}", Retry.ON_CHANGE
        ) from None


async def _read(landing: Landing, ctx: Context) -> Secret:
    landing_ns = landing.metadata.namespace
    source_namespace, source_name = ref = landing.source_ref
    where = f"source Secret {source_namespace}/{source_name}"
    if source_namespace != landing_ns and not ctx.allow_cross_namespace:
        # Another namespace's Secret: check its grant on the metadata alone, so a Secret
        # that has not granted access is never read.
        try:
            meta = await ctx.store.source_metadata(source_namespace, source_name)
        except (httpx2.HTTPError, httpcore2.ConnectError) as err:
            raise problem_from_error(err, where) from None
        if meta is None:  # said exactly as for a Secret that has not granted access
            raise plan.cross_namespace_refusal(landing_ns, source_namespace, source_name)
        plan.check_cross_namespace(
            landing_ns, source_namespace, source_name, meta.get("annotations"), allow_all=False
        )
    secret = ctx.sources.get(ref)
    if secret is None:
        try:
            secret = await ctx.store.source_secret(source_namespace, source_name)
        except ApiError as err:
            ctx.sources.forget(ref)
            raise problem_from_error(err, where) from None
        if secret is None:
            ctx.sources.forget(ref)
            raise LandingProblem(
                Reason.SOURCE_SECRET_NOT_FOUND,
                f"{where} does not exist yet; waiting for it",
                Retry.BACKOFF,
            )
        ctx.sources.keep(ref, secret)
    plan.check_cross_namespace(
        landing_ns,
        source_namespace,
        source_name,
        annotations_of_dict(secret),
        allow_all=ctx.allow_cross_namespace,
    )
    return secret
