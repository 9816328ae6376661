"""The worker runtime both controllers run on: the shard gate, retry timing, and workers
that hand a key on only when this replica owns it."""

from __future__ import annotations

import asyncio

from moonlander.controller.sharding import Shards, owner
from moonlander.controller.workers import Attempts, Workers, gate
from moonlander.controller.workqueue import WorkQueue

KEYS = [f"ns/l{i}" for i in range(40)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_attempts_back_off_exponentially_up_to_the_cap_and_reset() -> None:
    attempts = Attempts(base=1.0, cap=8.0)
    delays = [attempts.next_delay("k") for _ in range(6)]
    steps = [1, 2, 4, 8, 8, 8]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step  # equal jitter: half fixed, half random
    assert "k" in attempts
    attempts.reset("k")
    assert "k" not in attempts
    assert attempts.next_delay("k") <= 1.0


async def test_the_gate_passes_owned_keys_and_defers_the_rest() -> None:
    clock = Clock()
    shards = Shards("a", lambda: True, handoff=5.0, clock=clock)
    shards.update(["a", "b"])
    queue = WorkQueue()
    mine = next(k for k in KEYS if owner(k, ["a", "b"]) == "a")
    theirs = next(k for k in KEYS if owner(k, ["a", "b"]) == "b")
    assert gate(queue, None, theirs)  # without shards every key is ours

    # Just after the members changed, a key gained is not ours until the handoff passes.
    for key in (mine, theirs):
        queue.add(key)
        assert await queue.get() == key
        assert not gate(queue, shards, key)
    assert queue.pending(mine) is not None  # back when the handoff has passed
    assert queue.pending(theirs) is None  # another replica's: dropped

    clock.now += 5.0
    queue.forget(mine)
    queue.add(mine)
    assert await queue.get() == mine
    assert gate(queue, shards, mine)


async def test_workers_hand_on_only_owned_keys_and_stop() -> None:
    clock = Clock()
    clock.now -= 10.0  # the members changed long ago: no handoff pending
    shards = Shards("a", lambda: True, handoff=5.0, clock=clock)
    shards.update(["a", "b"])
    clock.now += 10.0
    queue = WorkQueue()
    handled: list[str] = []

    async def handle(key: str) -> None:
        handled.append(key)
        queue.done(key)

    workers = Workers(queue, 2, handle, lambda: shards)
    workers.start()
    for key in KEYS:
        queue.add(key)
    for _ in range(100):
        if len(queue) == 0:
            break
        await asyncio.sleep(0.01)
    await workers.stop()
    assert sorted(handled) == sorted(k for k in KEYS if owner(k, ["a", "b"]) == "a")
    assert handled  # some keys are ours, some are not
    assert len(handled) < len(KEYS)
