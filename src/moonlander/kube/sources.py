"""Secrets in the controller's own cluster, seen as metadata only.

Source Secrets belong to tenants and change when their credentials rotate, so they are
watched; but the controller needs their *contents* only for the few Secrets a Landing
uses and may use. The watch therefore asks the API server for ``PartialObjectMetadata``:
names, labels, annotations and resource versions travel, Secret data never does. A
Landing's source is read in full only after its reference has been allowed, so a Secret
in another namespace that has not granted access is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightkube import AsyncClient

from moonlander.kube.watch import Collection, ListWatch, http_of, namespaced

METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

_secrets_path = namespaced("/api/v1", "secrets")
SECRET_METADATA = Collection(
    "Secret metadata", _secrets_path, accept=METADATA, list_accept=METADATA_LIST
)


async def get_metadata(client: AsyncClient, namespace: str, name: str) -> Mapping[str, Any] | None:
    """A Secret's metadata without its data; None when it does not exist."""
    response = await http_of(client).get(
        f"{_secrets_path(namespace)}/{name}", headers={"Accept": METADATA}
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    meta = response.json().get("metadata") or {}
    return dict(meta)


async def list_labels(client: AsyncClient, namespace: str) -> dict[str, dict[str, str]]:
    """The Secrets of ``namespace`` by name, with their labels (metadata only, no data);
    a Secret being deleted is not among them (it is going, only kept for a finalizer)."""
    response = await http_of(client).get(
        _secrets_path(namespace), headers={"Accept": METADATA_LIST}
    )
    response.raise_for_status()
    found = {}
    for item in response.json().get("items") or []:
        meta = item.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        found[str(meta.get("name"))] = {
            str(k): str(v) for k, v in (meta.get("labels") or {}).items()
        }
    return found


def secret_metadata_watch(
    client: AsyncClient,
    on_event: Callable[[str, Mapping[str, Any]], None],
    namespaces: tuple[str, ...] = (),
) -> ListWatch:
    """Secret metadata in all namespaces or in the given ones; ``on_event`` gets each
    Secret's metadata (never its data)."""
    return ListWatch(
        client,
        SECRET_METADATA,
        lambda event_type, obj: on_event(event_type, obj.get("metadata") or {}),
        namespaces,
    )
