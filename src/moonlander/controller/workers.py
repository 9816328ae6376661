"""The worker runtime both controllers run on (Landings in ``loop``, LandingSets in
``landingsets``): workers over one :class:`WorkQueue`, the shard gate, and retry timing.

A worker takes a key from the queue; with ``--shards``, a key another replica owns is put
back for when this replica may own it (after the handoff that follows a member change) or
dropped; otherwise the key is handed to the controller's ``handle``, which owns it until it
calls ``queue.done(key)`` (the Landing controller may let a slow reconcile go on without its
worker). :class:`Attempts` counts a key's consecutive failures and turns them into capped
exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from moonlander.controller.sharding import Shards
from moonlander.controller.workqueue import WorkQueue
from moonlander.kube.backoff import backoff_delay


class Attempts:
    """Consecutive failures per key, and the delay before each next attempt."""

    def __init__(self, *, base: float = 1.0, cap: float = 120.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def next_delay(self, key: str) -> float:
        """One more failure of ``key``: how long to wait before trying it again."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return backoff_delay(failures, base=self.base, cap=self.cap)

    def reset(self, key: str) -> None:
        """``key`` succeeded (or is gone): its next failure starts from the base delay."""
        self._failures.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._failures


def gate(queue: WorkQueue, shards: Shards | None, key: str) -> bool:
    """True when this replica may process ``key`` now. Otherwise the key is done here, and
    queued again for when the handoff after a member change lets this replica own it."""
    if shards is None or shards.owns(key):
        return True
    queue.done(key)
    wait = shards.waiting(key)
    if wait is not None:
        queue.add_after(key, wait)
    return False


class Workers:
    """``count`` tasks taking keys from ``queue`` and handing the ones this replica owns
    (``shards()``, None: all) to ``handle``, which must call ``queue.done(key)``."""

    def __init__(
        self,
        queue: WorkQueue,
        count: int,
        handle: Callable[[str], Awaitable[None]],
        shards: Callable[[], Shards | None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.count = count
        self._handle = handle
        self._shards = shards
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.count)]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            if gate(self.queue, self._shards(), key):
                await self._handle(key)
