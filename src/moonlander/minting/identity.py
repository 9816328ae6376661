"""Creating, checking, pruning and revoking minted identities in a cluster (I/O).

Every write carries Moonlander's ownership marks; an object without them is never modified
or deleted. Deletes are conditional on uid and resourceVersion. API errors from requests
that carried a token (TokenReview) are replaced by messages built from the status code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpcore2
import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.models.authentication_v1 import TokenRequestSpec, TokenReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from moonlander import api
from moonlander.api import ServiceAccountSpec
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.kube import internals
from moonlander.minting.objects import (
    ObjectRef,
    desired_objects,
    is_current,
)
from moonlander.minting.tokens import (
    MintedToken,
    _rfc3339,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Talking to the cluster
# --------------------------------------------------------------------------------------------


_RESOURCES: Final[dict[str, Any]] = {
    "ServiceAccount": ServiceAccount,
    "ClusterRole": ClusterRole,
    "ClusterRoleBinding": ClusterRoleBinding,
    "Role": Role,
    "RoleBinding": RoleBinding,
}


# Revocation removes the identity first: once the ServiceAccount is gone, every token issued
# for it is rejected, whatever happens to the rest.
_REVOKE_ORDER: Final = (
    "ServiceAccount",
    "ClusterRoleBinding",
    "RoleBinding",
    "ClusterRole",
    "Role",
)
# Pruning keeps the current identity working: stale bindings go before stale roles.
_PRUNE_ORDER: Final = ("ClusterRoleBinding", "RoleBinding", "ClusterRole", "Role", "ServiceAccount")
_NAMESPACED: Final = frozenset({"ServiceAccount", "Role", "RoleBinding"})


async def _get(client: AsyncClient, ref: ObjectRef) -> dict[str, Any] | None:
    try:
        obj = await client.get(_RESOURCES[ref.kind], ref.name, namespace=ref.namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
    return dict(obj.to_dict())


async def _ensure_namespace(client: AsyncClient, namespace: str) -> None:
    try:
        await client.get(Namespace, namespace)
        return
    except ApiError as err:
        if err.status.code != 404:
            raise
    labels = own.managed_labels()
    try:
        await client.create(
            Namespace(metadata=ObjectMeta(name=namespace, labels=labels)),
            field_manager=api.FIELD_MANAGER,
        )
        log.info("created Namespace %s for minted identities", namespace)
    except ApiError as err:
        if err.status.code != 409:  # created meanwhile
            raise


def _conflict(ref: ObjectRef, owner: str) -> LandingProblem:
    hint = (
        "choose another spec.serviceAccount.name or namespace"
        if ref.kind == "ServiceAccount"
        else "remove it or rename the Landing"
    )
    return LandingProblem(
        Reason.CONFLICT,
        f"{ref} exists and is not managed by {owner}; it is left untouched ({hint})",
        Retry.ON_CHANGE,
    )


async def ensure_identity(
    client: AsyncClient, spec: ServiceAccountSpec, *, owner: str, owner_uid: str
) -> list[ObjectRef]:
    """Creates or updates the ServiceAccount and its RBAC; writes nothing when all is current.

    ``owner`` is ``api.owner_value(ns, name)`` of the Landing (``mint/<ns>/<name>`` from the
    CLI). Objects that exist without our marks for ``owner`` are never touched: raises
    ``LandingProblem(CONFLICT)`` before writing anything. A RoleBinding for a namespace that
    does not exist raises ``LandingProblem(TRANSIENT_ERROR)`` (retry with backoff). Other API
    errors propagate as ``lightkube.ApiError``. Returns the refs of the identity's objects.
    """
    objects = desired_objects(spec, owner=owner, owner_uid=owner_uid)
    await _ensure_namespace(client, spec.namespace)
    existing = await asyncio.gather(*(_get(client, ref) for ref, _ in objects))
    for (ref, _), current in zip(objects, existing, strict=True):
        if current is not None and own.ownership(current, owner) is not own.Ownership.OURS:
            raise _conflict(ref, owner)

    for (ref, body), current in zip(objects, existing, strict=True):
        obj = _RESOURCES[ref.kind].from_dict(body)
        if current is not None and is_current(current, body):
            continue
        try:
            if current is None:
                # create, not apply: it fails instead of merging into an object that someone
                # else created since we looked.
                await client.create(obj, field_manager=api.FIELD_MANAGER)
                log.info("created %s for %s", ref, owner)
            elif "roleRef" in body and own.normal(current.get("roleRef")) != body["roleRef"]:
                # roleRef is immutable; only a name collision after truncation gets here.
                await _delete_if_ours(client, ref, owner)
                await client.create(obj, field_manager=api.FIELD_MANAGER)
                log.info("replaced %s for %s", ref, owner)
            else:
                await client.apply(obj, field_manager=api.FIELD_MANAGER, force=True)
                log.info("updated %s for %s", ref, owner)
        except ApiError as err:
            code = err.status.code
            if code == 409:
                raise LandingProblem(
                    Reason.TRANSIENT_ERROR,
                    f"{ref} was created or changed concurrently; retrying",
                    Retry.BACKOFF,
                ) from None
            if code == 404 and ref.namespace is not None and ref.namespace != spec.namespace:
                raise LandingProblem(
                    Reason.TRANSIENT_ERROR,
                    f"cannot create {ref}: namespace {ref.namespace!r} does not exist "
                    "(Moonlander does not create namespaces it grants access to); waiting for it",
                    Retry.BACKOFF,
                ) from None
            raise
    return [ref for ref, _ in objects]


async def mint_token(client: AsyncClient, spec: ServiceAccountSpec) -> MintedToken:
    """A new token for the ServiceAccount from the TokenRequest API.

    The lifetime is the one the API server granted (it caps requests at its
    ``--service-account-max-token-expiration``): ``issued_at`` is the expiration minus the
    granted ``spec.expirationSeconds`` the server returns, so both times are on its clock.
    """
    asked = datetime.now(UTC)
    request = ServiceAccount.Token(
        metadata=ObjectMeta(),
        spec=TokenRequestSpec(audiences=[spec.audience], expirationSeconds=spec.expiration_seconds),
    )
    result = await client.create(request, name=spec.name, namespace=spec.namespace)
    where = f"TokenRequest for ServiceAccount {spec.namespace}/{spec.name}"
    status = result.status
    token = status.token if status is not None else None
    expires = status.expirationTimestamp if status is not None else None
    if not isinstance(token, str) or not token or not isinstance(expires, datetime):
        raise LandingProblem(
            Reason.TRANSIENT_ERROR, f"{where}: the answer has no token", Retry.BACKOFF
        )
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    granted = getattr(result.spec, "expirationSeconds", None)
    issued = expires - timedelta(seconds=granted) if isinstance(granted, int) else asked
    if issued >= expires:
        issued = min(asked, expires - timedelta(seconds=1))
    minted = MintedToken(token=token, expires_at=expires, issued_at=issued)
    if isinstance(granted, int) and granted < spec.expiration_seconds:
        log.info(
            "%s: asked for %ds, the API server granted %ds",
            where,
            spec.expiration_seconds,
            granted,
        )
    log.info(
        "minted a token for ServiceAccount %s/%s, expires %s",
        spec.namespace,
        spec.name,
        _rfc3339(expires),
    )
    return minted


async def token_is_valid(client: AsyncClient, token: str, spec: ServiceAccountSpec) -> bool:
    """Asks the API server (TokenReview) whether ``token`` authenticates as the ServiceAccount.

    False for an expired token, a deleted (or deleted and recreated) ServiceAccount, a wrong
    audience or another identity. Errors raise ``LandingProblem`` built from the status code
    only: the original exception holds the request, and with it the token.
    """
    problem: LandingProblem | None = None
    result: Any = None
    try:
        result = await client.create(
            TokenReview(metadata=ObjectMeta(), spec=TokenReviewSpec(token=token))
        )
    except ApiError as err:
        code = err.status.code or 0
        reason = {401: Reason.UNAUTHORIZED, 403: Reason.FORBIDDEN}.get(code, Reason.TRANSIENT_ERROR)
        problem = LandingProblem(
            reason, f"TokenReview: {code} {err.status.reason or ''}".rstrip(), Retry.BACKOFF
        )
    except (httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
        problem = LandingProblem(
            Reason.CLUSTER_UNREACHABLE, f"TokenReview: {type(err).__name__}", Retry.BACKOFF
        )
    if problem is not None:
        raise problem  # outside the handler: no __context__ holding the request
    status = result.status
    user = status.user if status is not None else None
    return bool(
        status is not None
        and status.authenticated
        and user is not None
        and user.username == spec.username
    )


async def _owned(client: AsyncClient, owner: str) -> list[ObjectRef]:
    """Every identity object carrying our marks for ``owner``, in any namespace."""
    refs = []
    selector: Any = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
    for kind, res in _RESOURCES.items():
        if kind in _NAMESPACED:
            items = client.list(res, namespace=ALL_NS, labels=selector)
        else:
            items = client.list(res, labels=selector)
        async for obj in items:
            body = obj.to_dict()
            if own.ownership(body, owner) is own.Ownership.OURS:
                meta = body["metadata"]
                refs.append(ObjectRef(kind, meta["name"], meta.get("namespace")))
    return refs


async def _delete_preconditioned(
    client: AsyncClient, ref: ObjectRef, uid: str, version: str
) -> None:
    # lightkube's delete() sends no body; DeleteOptions.preconditions needs one.
    await internals.send_with_body(
        client,
        "delete",
        {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid, "resourceVersion": version},
        },
        res=_RESOURCES[ref.kind],
        name=ref.name,
        namespace=ref.namespace,
    )


async def _delete_if_ours(client: AsyncClient, ref: ObjectRef, owner: str) -> bool:
    for _ in range(5):
        current = await _get(client, ref)
        if current is None or own.ownership(current, owner) is not own.Ownership.OURS:
            return False
        meta = current["metadata"]
        try:
            await _delete_preconditioned(client, ref, meta["uid"], meta["resourceVersion"])
        except ApiError as err:
            if err.status.code == 404:
                return False
            if err.status.code == 409:  # changed since we looked: look again
                continue
            raise
        log.info("deleted %s of %s", ref, owner)
        return True
    raise LandingProblem(
        Reason.TRANSIENT_ERROR, f"{ref} keeps changing; retrying its deletion", Retry.BACKOFF
    )


def _in_order(refs: Iterable[ObjectRef], order: Sequence[str]) -> list[ObjectRef]:
    return sorted(refs, key=lambda r: (order.index(r.kind), r))


async def prune(client: AsyncClient, spec: ServiceAccountSpec, *, owner: str) -> list[ObjectRef]:
    """Deletes our objects for ``owner`` that ``spec`` no longer wants (a namespace dropped
    from a grant, a changed role or ServiceAccount name). Returns what was deleted."""
    wanted = {ref for ref, _ in desired_objects(spec, owner=owner)}
    stale = [ref for ref in await _owned(client, owner) if ref not in wanted]
    return [
        ref for ref in _in_order(stale, _PRUNE_ORDER) if await _delete_if_ours(client, ref, owner)
    ]


async def revoke(
    client: AsyncClient, spec: ServiceAccountSpec | ObjectRef, *, owner: str
) -> list[ObjectRef]:
    """Deletes the ServiceAccount (which invalidates all its tokens) and every RBAC object
    carrying our marks for ``owner``, including ones a changed spec left behind. Objects
    that are not ours are never touched; absent ones are fine. Returns what was deleted."""
    sa = ObjectRef("ServiceAccount", spec.name, spec.namespace)
    found = set(await _owned(client, owner)) | {sa}
    return [
        ref for ref in _in_order(found, _REVOKE_ORDER) if await _delete_if_ours(client, ref, owner)
    ]
