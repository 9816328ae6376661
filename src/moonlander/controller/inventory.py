"""Writes and removes a Landing's ClusterProfile and its token Secret (``output.clusterProfile``).

The objects come from ``controller.profiles``. They follow the landed Secret's rules: never
written over an object Moonlander does not own, nothing sent when current, removed only when
they carry this Landing's marks. The profile is written only where its CRD exists; its status
goes through the status subresource, as the CRD declares one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import profiles
from moonlander.kube import internals

__all__ = ["apply", "crd_exists", "delete", "get", "resource", "server_version"]


@functools.cache
def resource() -> Any:
    return create_namespaced_resource(
        profiles.GROUP, profiles.VERSION, profiles.KIND, profiles.PLURAL
    )


async def crd_exists(client: AsyncClient) -> bool:
    try:
        await client.get(CustomResourceDefinition, profiles.CRD_NAME)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


async def _get(client: AsyncClient, kind: Any, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = (await client.get(kind, name, namespace=namespace)).to_dict()
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
    return found


def _ours_or_conflict(existing: Mapping[str, Any] | None, owner: str, what: str) -> None:
    if existing is not None and own.ownership(existing, owner) is not own.Ownership.OURS:
        raise LandingProblem(
            Reason.CONFLICT,
            f"{what} exists and is not managed by this Landing; it is left untouched",
            Retry.ON_CHANGE,
        )


async def apply(
    client: AsyncClient,
    profile: dict[str, Any],
    make_status: Callable[[Mapping[str, Any] | None], dict[str, Any]],
    secret: dict[str, Any],
    *,
    owner: str,
) -> list[str]:
    """Writes what is missing or stale of the token Secret, the profile and its status
    (``make_status`` of the status as it is); returns what was written ("Secret",
    "ClusterProfile", "status")."""
    meta = profile["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    where = f"{namespace}/{name}"
    written: list[str] = []
    existing_secret = await _get(client, Secret, name, namespace)
    _ours_or_conflict(existing_secret, owner, f"Secret {where}")
    existing = await _get(client, resource(), name, namespace)
    _ours_or_conflict(existing, owner, f"ClusterProfile {where}")
    # The token first: a consumer that sees the profile can use it at once.
    if existing_secret is None or not own.is_current(existing_secret, secret):
        await client.apply(
            cast(Secret, Secret.from_dict(secret)), field_manager=api.FIELD_MANAGER, force=True
        )
        written.append("Secret")
    if existing is None or not own.is_current(existing, profile):
        existing = (
            await client.apply(
                resource().from_dict(profile), field_manager=api.FIELD_MANAGER, force=True
            )
        ).to_dict()
        written.append("ClusterProfile")
    previous = existing.get("status")
    status = make_status(previous if isinstance(previous, Mapping) else None)
    if not profiles.status_is_current(existing, status):
        await _apply_status(client, profile, status)
        written.append("status")
    return written


async def set_status(
    client: AsyncClient,
    namespace: str,
    name: str,
    owner: str,
    make_status: Callable[[Mapping[str, Any] | None], dict[str, Any]],
) -> bool:
    """Rewrites the status of this owner's profile (``make_status`` of the status as it
    is); False when there is no such profile or nothing changed."""
    existing = await _get(client, resource(), name, namespace)
    if existing is None or own.ownership(existing, owner) is not own.Ownership.OURS:
        return False
    previous = existing.get("status")
    status = make_status(previous if isinstance(previous, Mapping) else None)
    if profiles.status_is_current(existing, status):
        return False
    await _apply_status(client, existing, status)
    return True


async def _apply_status(
    client: AsyncClient, profile: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    # The CRD has a status subresource: the main resource ignores status.
    meta = profile["metadata"]
    body = {
        "apiVersion": profiles.API_VERSION,
        "kind": profiles.KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": dict(status),
    }
    await client.apply(
        resource().Status.from_dict(body), field_manager=api.FIELD_MANAGER, force=True
    )


async def get(client: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A ClusterProfile, or None when there is none (or no ClusterProfile CRD)."""
    return await _get(client, resource(), name, namespace)


async def delete(client: AsyncClient, namespace: str, name: str, owner: str) -> list[str]:
    """Deletes the profile and its token Secret when they carry this owner's marks."""
    removed: list[str] = []
    kinds: list[tuple[str, Any]] = [("Secret", Secret)]
    if await crd_exists(client):
        kinds.insert(0, ("ClusterProfile", resource()))
    for what, kind in kinds:
        existing = await _get(client, kind, name, namespace)
        if existing is None or own.ownership(existing, owner) is not own.Ownership.OURS:
            continue
        try:
            await client.delete(kind, name, namespace=namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
        removed.append(f"{what} {namespace}/{name}")
    return removed


async def server_version(client: AsyncClient) -> str | None:
    """The Kubernetes version the server reports (``/version``), or None when it does not
    answer one that reads as a version."""
    response = await internals.http_client(client).get("/version")
    if response.status_code != 200:
        return None
    try:
        answer = response.json()
    except ValueError:
        return None
    return profiles.kubernetes_version(answer)
