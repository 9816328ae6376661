"""Which replica owns which key (pure): rendezvous hashing and the handoff."""

from __future__ import annotations

from collections import Counter

from moonlander.controller.sharding import LATE_RETRY, Shards, owner

KEYS = [f"ns-{i % 7}/landing-{i}" for i in range(3000)]


def test_every_key_has_one_owner_and_the_split_is_even() -> None:
    members = ["a", "b", "c"]
    counts = Counter(owner(k, members) for k in KEYS)
    assert set(counts) == set(members)
    assert all(800 <= n <= 1200 for n in counts.values()), counts
    assert owner("x/y", []) is None
    # The same answer whatever the order a replica lists its peers in.
    assert all(owner(k, members) == owner(k, list(reversed(members))) for k in KEYS[:200])


def test_a_member_leaving_moves_only_its_keys_and_one_joining_takes_only_its_share() -> None:
    before = {k: owner(k, ["a", "b", "c"]) for k in KEYS}
    after = {k: owner(k, ["a", "b"]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == "c" for k in moved)
    joined = {k: owner(k, ["a", "b", "c", "d"]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != joined[k]]
    assert all(joined[k] == "d" for k in moved)
    assert 550 <= len(moved) <= 950  # about a quarter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_gained_wait_for_the_handoff_keys_kept_do_not() -> None:
    clock = Clock()
    live = True
    shards = Shards("b", lambda: live, handoff=5.0, clock=clock)
    shards.update(["a", "b", "c"])
    clock.now += 5.0
    kept = next(k for k in KEYS if owner(k, ["a", "b", "c"]) == "b")
    gained = next(
        k for k in KEYS if owner(k, ["a", "b", "c"]) == "c" and owner(k, ["a", "b"]) == "b"
    )
    assert shards.owns(kept) and not shards.owns(gained)
    shards.update(["a", "b"])  # c died
    assert shards.lost(kept) is False
    assert shards.gained(gained) and not shards.owns(gained)  # c may still be writing
    assert shards.owns(kept)  # held before the change: no pause
    assert 4.9 < shards.settled_in() <= 5.0
    clock.now += 5.0
    assert shards.owns(gained)
    # A replica that cannot renew its own Lease owns nothing, but does not drop its keys:
    # they are tried again shortly (its member list may never change meanwhile).
    live = False
    assert not shards.owns(kept)
    assert shards.waiting(kept) == LATE_RETRY
    other = next(k for k in KEYS if owner(k, ["a", "b"]) == "a")
    assert shards.waiting(other) is None  # another replica's: never ours to retry
    live = True
    assert shards.owns(kept) and shards.waiting(kept) is None


def test_before_any_members_nothing_is_owned() -> None:
    shards = Shards("a", lambda: True)
    assert not shards.owns("x/y")
