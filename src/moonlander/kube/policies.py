"""List-then-watch of LandingPolicies and of namespaces' labels in the controller's cluster.

Both are small and change rarely; the controller keeps them in memory (``PolicyStore``) and
wakes the Landings a change concerns. ``ready`` is set once both have been listed: Landings
are not reconciled before the policies that may grant them are known, so a restart never
reports a granted Landing as ``NotPermitted``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.core.exceptions import ObjectDeleted
from lightkube.resources.core_v1 import Namespace

from moonlander.kube.backoff import backoff_delay
from moonlander.kube.resources import LandingPolicyResource

log = logging.getLogger(__name__)

# (event type, object as a dict); ADDED for everything a (re)list finds, SYNCED after it.
Handler = Callable[[str, Mapping[str, Any]], None]


class PolicyWatch:
    def __init__(self, client: AsyncClient, on_policy: Handler, on_namespace: Handler) -> None:
        self._client = client
        self._handlers = {"policies": on_policy, "namespaces": on_namespace}
        self._listed: set[str] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(
            self._run("policies", LandingPolicyResource), self._run("namespaces", Namespace)
        )

    async def _run(self, what: str, resource: Any) -> None:
        handler = self._handlers[what]
        failures = 0
        while True:
            try:
                version = await self._list(what, resource, handler)
                failures = 0
                async for op, obj in self._client.watch(resource, resource_version=version):
                    handler(op, obj.to_dict())
            except asyncio.CancelledError:
                raise
            except (ApiError, ObjectDeleted, httpx2.HTTPError, httpcore2.ConnectError) as err:
                failures += 1
                log.warning("%s watch: %s; relisting", what, type(err).__name__)
            await asyncio.sleep(backoff_delay(failures, cap=30.0))

    async def _list(self, what: str, resource: Any, handler: Handler) -> str:
        listing = self._client.list(resource)
        seen = []
        async for obj in listing:
            seen.append(obj.to_dict())
        handler("RELIST", {"items": seen})
        self._listed.add(what)
        if len(self._listed) == len(self._handlers):
            self.ready.set()
        return str(listing.resourceVersion)
