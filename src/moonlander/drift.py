"""Watches on landed Secrets in remote clusters, so edits and deletions are repaired.

One watch per (cluster credential, namespace), selecting only Secrets labelled as managed
by Moonlander; it lives while at least one Landing lands there. Landed Secrets in the
controller's own cluster are seen by the operator's Secret watch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

import httpx2
from lightkube import ApiError
from lightkube.resources.core_v1 import Secret

from moonlander import api
from moonlander.backoff import backoff_delay
from moonlander.clusters import Target

log = logging.getLogger(__name__)

WatchKey = tuple[str, str]  # (target key, namespace)


class DriftWatches:
    def __init__(self, enqueue: Callable[[str], None]) -> None:
        self._enqueue = enqueue
        self._interest: dict[WatchKey, set[str]] = defaultdict(set)
        self._by_landing: dict[str, WatchKey] = {}
        self._tasks: dict[WatchKey, asyncio.Task[None]] = {}

    def watch(self, target: Target, namespace: str, landing_key: str) -> None:
        if target.local:
            self.release(landing_key)
            return
        wkey = (target.key, namespace)
        previous = self._by_landing.get(landing_key)
        if previous == wkey:
            return
        self.release(landing_key)
        self._by_landing[landing_key] = wkey
        self._interest[wkey].add(landing_key)
        if wkey not in self._tasks:
            self._tasks[wkey] = asyncio.create_task(self._run(target, namespace))

    def release(self, landing_key: str) -> None:
        wkey = self._by_landing.pop(landing_key, None)
        if wkey is None:
            return
        interested = self._interest.get(wkey)
        if interested is not None:
            interested.discard(landing_key)
            if not interested:
                del self._interest[wkey]
                task = self._tasks.pop(wkey, None)
                if task is not None:
                    task.cancel()

    def in_use(self) -> set[str]:
        return {wkey[0] for wkey in self._tasks}

    def __len__(self) -> int:
        return len(self._tasks)

    async def _run(self, target: Target, namespace: str) -> None:
        selector = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
        failures = 0
        while True:
            try:
                async for _op, secret in target.client.watch(
                    Secret, namespace=namespace, labels=selector, server_timeout=300
                ):
                    failures = 0
                    owner = (secret.metadata.annotations or {}).get(api.OWNER_ANNOTATION)
                    if owner:
                        self._enqueue(owner)
            except asyncio.CancelledError:
                raise
            except (httpx2.HTTPError, ApiError) as err:
                failures += 1
                log.debug("drift watch on %s/%s: %s", target.server, namespace, type(err).__name__)
            await asyncio.sleep(backoff_delay(max(failures, 1), cap=30.0))

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
