"""Objects Moonlander writes next to a landed Secret: Crossplane ProviderConfigs.

They follow the Secret's rules: written only where their CRD exists, never over an object
Moonlander does not own, nothing written when current, and removed when the Landing no
longer asks for them (or is deleted with ``deletionPolicy: Delete``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from moonlander import api
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import outputs


@functools.cache
def resource_for(kind: outputs.ProviderConfigKind) -> Any:
    make = create_namespaced_resource if kind.namespaced else create_global_resource
    return make(kind.group, kind.version, kind.kind, kind.plural)


def _kind_of(obj: Mapping[str, Any]) -> outputs.ProviderConfigKind:
    group = obj["apiVersion"].split("/")[0]
    for kind in outputs.PROVIDER_CONFIG_KINDS.values():
        if kind.group == group and kind.kind == obj["kind"]:
            return kind
    raise ValueError(f"not a ProviderConfig kind: {obj['apiVersion']} {obj['kind']}")


def ref(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']}.{obj['apiVersion'].split('/')[0]} {where}{meta['name']}"


async def _crd_exists(client: AsyncClient, kind: outputs.ProviderConfigKind) -> bool:
    try:
        await client.get(CustomResourceDefinition, kind.crd_name)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


async def apply(
    client: AsyncClient, desired: Iterable[dict[str, Any]], *, owner: str
) -> tuple[list[str], list[str]]:
    """Writes what is missing or stale; returns (written or current refs, skipped for a
    missing CRD). Raises ``LandingProblem(CONFLICT)`` for an object that is not ours."""
    present: list[str] = []
    skipped: list[str] = []
    for obj in desired:
        kind = _kind_of(obj)
        if not await _crd_exists(client, kind):
            skipped.append(f"{kind.kind}.{kind.group}")
            continue
        resource = resource_for(kind)
        meta = obj["metadata"]
        try:
            existing = (
                await client.get(resource, meta["name"], namespace=meta.get("namespace"))
            ).to_dict()
        except ApiError as err:
            if err.status.code != 404:
                raise
            existing = None
        if existing is not None:
            if own.ownership(existing, owner) is not own.Ownership.OURS:
                raise LandingProblem(
                    Reason.CONFLICT,
                    f"{ref(obj)} exists and is not managed by this Landing; it is left untouched",
                    Retry.ON_CHANGE,
                )
            if outputs.is_current(existing, obj):
                present.append(ref(obj))
                continue
        await client.apply(resource.from_dict(obj), field_manager=api.FIELD_MANAGER, force=True)
        present.append(ref(obj))
    return present, skipped


async def prune(client: AsyncClient, *, owner: str, keep: Iterable[str]) -> list[str]:
    """Deletes this owner's ProviderConfigs of every kind that are not in ``keep`` (refs)."""
    kept = set(keep)
    removed: list[str] = []
    selector: dict[str, Any] = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
    for kind in outputs.PROVIDER_CONFIG_KINDS.values():
        if not await _crd_exists(client, kind):
            continue
        resource = resource_for(kind)
        namespace = "*" if kind.namespaced else None
        async for obj in client.list(resource, namespace=namespace, labels=selector):
            body = obj.to_dict()
            if own.ownership(body, owner) is not own.Ownership.OURS or ref(body) in kept:
                continue
            meta = body["metadata"]
            try:
                await client.delete(resource, meta["name"], namespace=meta.get("namespace"))
            except ApiError as err:
                if err.status.code != 404:
                    raise
            removed.append(ref(body))
    return removed
