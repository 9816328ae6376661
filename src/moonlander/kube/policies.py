"""List-then-watch of LandingPolicies and of namespaces' labels in the controller's cluster.

Both are small and change rarely; the controller keeps them in memory (``PolicyStore``) and
wakes the Landings a change concerns. They are followed by the one watch layer
(``kube/watch.py``): every object a (re)list finds is reported ``ADDED``, one gone since
the last list ``DELETED``. ``ready`` is set once both have been listed: Landings are not
reconciled before the policies that may grant them are known, so a restart never reports a
granted Landing as ``NotPermitted``.
"""

from __future__ import annotations

import asyncio

from lightkube import AsyncClient

from moonlander import api
from moonlander.kube.sources import METADATA, METADATA_LIST
from moonlander.kube.watch import Collection, Handler, ListWatch

POLICIES = Collection(
    "LandingPolicy", lambda _scope: f"/apis/{api.GROUP}/{api.VERSION}/landingpolicies"
)
# Only names and labels are read: metadata, not the whole Namespace.
NAMESPACES = Collection(
    "Namespace", lambda _scope: "/api/v1/namespaces", accept=METADATA, list_accept=METADATA_LIST
)


class PolicyWatch:
    def __init__(self, client: AsyncClient, on_policy: Handler, on_namespace: Handler) -> None:
        self.policies = ListWatch(client, POLICIES, on_policy)
        self.namespaces = ListWatch(client, NAMESPACES, on_namespace)
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(self.policies.run(), self.namespaces.run(), self._ready())

    async def _ready(self) -> None:
        await self.policies.ready.wait()
        await self.namespaces.ready.wait()
        self.ready.set()
