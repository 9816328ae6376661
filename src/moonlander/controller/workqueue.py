"""A keyed work queue in the manner of controller-runtime's.

A key waits in the queue at most once however often it is added; a key is never processed
by two workers at once (an add while it is processed requeues it afterwards); delayed adds
keep only the earliest deadline, and a key taken for processing cancels its pending delay
(the reconcile decides when it is next due).
"""

from __future__ import annotations

import asyncio
import time


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}

    def add(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (due, handle)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: str) -> None:
        """Drops a key entirely (its object is gone)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        self._dirty.discard(key)
        self._queued.discard(key)

    async def get(self) -> str:
        while True:
            key = await self._queue.get()
            if key not in self._queued:  # forgotten while waiting
                continue
            self._queued.discard(key)
            self._processing.add(key)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer[1].cancel()
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def pending(self, key: str) -> float | None:
        """Seconds until a delayed key is due, if it has a delay (for tests and metrics)."""
        timer = self._timers.get(key)
        return None if timer is None else max(0.0, timer[0] - time.monotonic())

    def __len__(self) -> int:
        return len(self._queued)
