"""Secrets in the controller's own cluster, seen as metadata only.

Source Secrets belong to tenants and change when their credentials rotate, so they are
watched; but the controller needs their *contents* only for the few Secrets a Landing
uses and may use. The watch therefore asks the API server for ``PartialObjectMetadata``:
names, labels, annotations and resource versions travel, Secret data never does. A
Landing's source is read in full only after its reference has been allowed, so a Secret
in another namespace that has not granted access is never read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpcore2
import httpx2
from lightkube import AsyncClient

from moonlander.kube.backoff import backoff_delay

log = logging.getLogger(__name__)

METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _http(client: AsyncClient) -> httpx2.AsyncClient:
    # lightkube has no Accept-header option; its httpx client carries base URL, TLS and auth.
    http = client._client._client
    assert isinstance(http, httpx2.AsyncClient)
    return http


def _secrets_path(namespace: str | None) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"


async def get_metadata(client: AsyncClient, namespace: str, name: str) -> Mapping[str, Any] | None:
    """A Secret's metadata without its data; None when it does not exist."""
    response = await _http(client).get(
        f"{_secrets_path(namespace)}/{name}", headers={"Accept": METADATA}
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    meta = response.json().get("metadata") or {}
    return dict(meta)


async def list_labels(client: AsyncClient, namespace: str) -> dict[str, dict[str, str]]:
    """The Secrets of ``namespace`` by name, with their labels (metadata only, no data)."""
    response = await _http(client).get(_secrets_path(namespace), headers={"Accept": METADATA_LIST})
    response.raise_for_status()
    found = {}
    for item in response.json().get("items") or []:
        meta = item.get("metadata") or {}
        found[str(meta.get("name"))] = {
            str(k): str(v) for k, v in (meta.get("labels") or {}).items()
        }
    return found


class SecretMetadataWatch:
    """List-then-watch of Secret metadata in all namespaces or in the given ones."""

    def __init__(
        self,
        client: AsyncClient,
        on_event: Callable[[str, Mapping[str, Any]], None],
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._on_event = on_event
        self._namespaces: tuple[str | None, ...] = namespaces or (None,)
        self._listed: set[str | None] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_one(ns) for ns in self._namespaces))

    async def _run_one(self, namespace: str | None) -> None:
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list(namespace)
                version = await self._watch(namespace, version)
                failures = 0
                continue
            except asyncio.CancelledError:
                raise
            except (httpx2.HTTPError, httpcore2.ConnectError, ValueError) as err:
                failures += 1
                log.warning("Secret metadata watch: %s; retrying", type(err).__name__)
            await asyncio.sleep(backoff_delay(failures, cap=30.0))

    async def _list(self, namespace: str | None) -> str:
        response = await _http(self._client).get(
            _secrets_path(namespace), headers={"Accept": METADATA_LIST}
        )
        response.raise_for_status()
        body = response.json()
        for item in body.get("items") or []:
            self._on_event("ADDED", item.get("metadata") or {})
        self._listed.add(namespace)
        if len(self._listed) == len(self._namespaces):
            self.ready.set()
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, namespace: str | None, version: str) -> str | None:
        """Follows the watch from ``version``; returns where to resume, None to relist."""
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        timeout = httpx2.Timeout(10.0, read=330.0)
        async with _http(self._client).stream(
            "GET",
            _secrets_path(namespace),
            params=params,
            headers={"Accept": METADATA},
            timeout=timeout,
        ) as response:
            if response.status_code == 410:
                return None
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # too old: relist
                        return None
                    raise ValueError(f"watch error {obj.get('code')}")
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._on_event(str(kind), meta)
        return version
