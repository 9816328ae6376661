"""List-then-watch of one collection, as plain JSON: the controller's one watch layer.

Every watch of the controller is one of these: in its own cluster Landings, LandingSets,
Secret metadata, LandingPolicies and namespaces; in the clusters it writes to, what it
landed and minted (``kube/drift.py``, label-selected). Each object is parsed once from its
JSON line and handed to a handler that only updates memory and enqueues work.

The list is read in pages, every object reported as ``ADDED``; the watch then follows from
the list's resourceVersion with bookmarks and resumes from the last one it saw when the
server ends it. When that version has expired (``410 Gone``) the collection is listed again,
and an object known before and missing now is reported ``DELETED``: a deletion while no watch
was open is not lost. A failure (the connection, the server, a 404 while the CRD is not yet
installed, a 403 while RBAC is not yet bound) is retried with capped backoff; ``ready`` is
set once every namespace has been listed. A :class:`Listener` may also hear when a list of a
scope begins and ends and when its watch is interrupted (a cache built from the events is
complete only between the end of a list and the next interruption), and, instead of
retrying, when the scope is forbidden (403).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import AsyncClient

from moonlander.kube import internals
from moonlander.kube.backoff import backoff_delay

log = logging.getLogger(__name__)

# (event type: ADDED, MODIFIED or DELETED; the object as the server sent it). A DELETED found
# by a relist carries only the object's name, namespace and labels.
Handler = Callable[[str, Mapping[str, Any]], None]

PAGE = 500  # objects per list page: a large fleet's first list is not one huge response
SERVER_TIMEOUT = 300  # seconds; the server ends the watch, which is resumed at once
RETRY_CAP = 10.0


class Listener:
    """Optional hooks around a scope's lists and watches (scope None: all namespaces)."""

    def listing(self, scope: str | None) -> None:
        """A list of ``scope`` begins (every object in it follows as ``ADDED``)."""

    def listed(self, scope: str | None) -> None:
        """The list of ``scope`` is complete (objects gone since the last are reported)."""

    def interrupted(self, scope: str | None) -> None:
        """The list or watch of ``scope`` failed; a relist follows after a backoff."""

    def forbidden(self, scope: str | None) -> bool:
        """``scope`` may not be listed or watched (403): True stops following it."""
        return False


@dataclass(frozen=True)
class Collection:
    """What is watched: a name for logs, the collection's path in a namespace (None: all
    namespaces), and the Accept headers for a list and for watch events."""

    what: str
    path: Callable[[str | None], str]
    accept: str = "application/json"
    list_accept: str = "application/json"


def namespaced(prefix: str, plural: str) -> Callable[[str | None], str]:
    """``prefix`` is ``/api/v1`` or ``/apis/<group>/<version>``."""

    def path(namespace: str | None) -> str:
        if namespace is None:
            return f"{prefix}/{plural}"
        return f"{prefix}/namespaces/{namespace}/{plural}"

    return path


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def http_of(client: AsyncClient) -> httpx2.AsyncClient:
    """lightkube's httpx client: base URL, TLS and auth, with our transport (lightkube has no
    Accept-header option and would build a model of every object)."""
    return internals.http_client(client)


def _key(meta: Mapping[str, Any]) -> str:
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _stub(meta: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """What is kept of a known object: what a handler reads of a DELETED one (name,
    namespace, labels and the annotations named in ``keep``)."""
    stub: dict[str, Any] = {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "labels": meta.get("labels") or {},
    }
    if keep:
        annotations = meta.get("annotations") or {}
        stub["annotations"] = {k: annotations[k] for k in keep if k in annotations}
    return stub


class ListWatch:
    def __init__(
        self,
        client: AsyncClient,
        collection: Collection,
        on_event: Handler,
        namespaces: tuple[str | None, ...] = (),
        page: int = PAGE,
        *,
        labels: Mapping[str, str] | None = None,
        listener: Listener | None = None,
        keep_annotations: tuple[str, ...] = (),
        retry_cap: float = RETRY_CAP,
        quiet: bool = False,
        relist_after_error: bool = False,
    ) -> None:
        self._client = client
        self._collection = collection
        self._on_event = on_event
        self._scopes: tuple[str | None, ...] = namespaces or (None,)
        self._page = page
        self._selector = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
        self._listener = listener or Listener()
        self._keep = keep_annotations
        self._retry_cap = retry_cap
        # A tenant's cluster: its faults are its own, logged at debug, not as warnings.
        self._log_level = logging.DEBUG if quiet else logging.WARNING
        # Otherwise the watch resumes from the last version it saw: nothing is missed.
        self._relist_after_error = relist_after_error
        # Per scope, every object last reported, with its metadata as a relist's DELETED
        # needs it (name, namespace, labels).
        self._known: dict[str | None, dict[str, Mapping[str, Any]]] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._follow(scope) for scope in self._scopes))

    async def _follow(self, scope: str | None) -> None:
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    self._listener.listing(scope)
                    version = await self.list(scope)
                    self._listener.listed(scope)
                version = await self.watch(scope, version)
                failures = 0
                continue
            except asyncio.CancelledError:
                raise
            except Expired:
                log.info("%s watch: resourceVersion expired (410); listing again", self._what)
                version = None
                self._listener.interrupted(scope)
                continue
            except httpx2.HTTPStatusError as err:
                if err.response.status_code == 403 and self._listener.forbidden(scope):
                    return
                failures += 1
                log.log(self._log_level, "%s watch: %s; retrying", self._what, _describe(err))
            except Exception as err:  # the connection, or an answer no API server sends
                failures += 1
                log.log(self._log_level, "%s watch: %s; retrying", self._what, _describe(err))
            if self._relist_after_error:
                version = None
            self._listener.interrupted(scope)
            await asyncio.sleep(backoff_delay(failures, cap=self._retry_cap))

    @property
    def _what(self) -> str:
        return self._collection.what

    async def list(self, scope: str | None) -> str:
        """Lists ``scope`` in pages, reporting every object ``ADDED`` and every object
        known before and gone now ``DELETED``; returns the version to watch from."""
        http = http_of(self._client)
        headers = {"Accept": self._collection.list_accept}
        params = self._params(limit=str(self._page))
        seen: dict[str, Mapping[str, Any]] = {}  # only what is kept: not every page's metadata
        while True:
            response = await http.get(self._collection.path(scope), params=params, headers=headers)
            response.raise_for_status()
            body = response.json()
            for item in body.get("items") or ():
                meta = item.get("metadata") or {}
                seen[_key(meta)] = _stub(meta, self._keep)
                self._on_event("ADDED", item)
            listed = body.get("metadata") or {}
            token = listed.get("continue")
            if not token:
                break
            params = self._params(limit=str(self._page), **{"continue": str(token)})
        before = self._known.get(scope, {})
        self._known[scope] = seen
        for key, meta in before.items():
            if key not in seen:
                self._on_event("DELETED", {"metadata": meta})
        if len(self._known) == len(self._scopes):
            self.ready.set()
        return str(listed["resourceVersion"])

    async def watch(self, scope: str | None, version: str) -> str:
        """Follows the watch from ``version`` until the server ends it; returns the last
        version seen. Raises :class:`Expired` when ``version`` is too old."""
        params = self._params(
            watch="1",
            resourceVersion=version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(SERVER_TIMEOUT),
        )
        known = self._known.setdefault(scope, {})
        timeout = httpx2.Timeout(10.0, read=SERVER_TIMEOUT + 30.0)
        async with http_of(self._client).stream(
            "GET",
            self._collection.path(scope),
            params=params,
            headers={"Accept": self._collection.accept},
            timeout=timeout,
        ) as response:
            if response.status_code == 410:
                raise Expired
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired
                    raise ValueError(f"watch error {obj.get('code')}: {obj.get('reason')}")
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    known.pop(_key(meta), None)
                else:
                    known[_key(meta)] = _stub(meta, self._keep)
                self._on_event(str(kind), obj)
        return version

    def _params(self, **params: str) -> dict[str, str]:
        if self._selector:
            params["labelSelector"] = self._selector
        return params


def _describe(err: Exception) -> str:
    if isinstance(err, httpx2.HTTPStatusError):
        return f"{err.response.status_code} {err.response.reason_phrase}"
    return type(err).__name__
