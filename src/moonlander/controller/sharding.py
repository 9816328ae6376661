"""Which replica owns which Landing when N replicas share the work (pure; no I/O).

Rendezvous (highest-random-weight) hashing: a key belongs to the member with the largest
``sha256(member, key)``. Every replica computes the same owner from the same member list,
and when a member joins or leaves only the keys that member wins or held move.

A key never has two owners at once: after the member list changes, a replica takes up a key
it did not own under the previous list only ``handoff`` seconds later, by which time the
previous owner has seen the change (its membership poll is shorter), cancelled that key's
reconcile and let any request already sent complete. A replica that cannot renew its own
Lease owns nothing (``Membership.live``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

LATE_RETRY = 1.0  # seconds: a key of ours while our Lease is late waits this long


def owner(key: str, members: Sequence[str]) -> str | None:
    """The member that owns ``key``; None when there are no members."""
    best: tuple[bytes, str] | None = None
    for member in members:
        weight = hashlib.sha256(f"{member}\0{key}".encode()).digest()
        if best is None or weight > best[0]:
            best = (weight, member)
    return best[1] if best else None


class Shards:
    def __init__(
        self,
        identity: str,
        live: Callable[[], bool],
        handoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self._live = live
        self.handoff = handoff
        self._clock = clock
        self.members: tuple[str, ...] = ()
        self._previous: tuple[str, ...] = ()
        self._changed_at = float("-inf")

    def update(self, members: Sequence[str]) -> None:
        self._previous, self.members = self.members, tuple(members)
        self._changed_at = self._clock()

    def owns(self, key: str) -> bool:
        if not self._live() or owner(key, self.members) != self.identity:
            return False
        if self._clock() - self._changed_at >= self.handoff:
            return True
        return owner(key, self._previous) == self.identity  # held before the change: kept

    def waiting(self, key: str) -> float | None:
        """Seconds until ``key``, this replica's but not yet handed over, may be taken up;
        None when it is owned now or is another replica's. A key of this replica's while its
        own Lease is late (a renewal slower than the deadline, under load) is tried again a
        little later: the member list may never change meanwhile, so nothing else would
        bring it back."""
        if owner(key, self.members) != self.identity or self.owns(key):
            return None
        if not self._live():
            return LATE_RETRY
        return self.settled_in() + 0.05

    def gained(self, key: str) -> bool:
        """``key`` is this replica's under the current members and was not before."""
        return owner(key, self.members) == self.identity != owner(key, self._previous)

    def lost(self, key: str) -> bool:
        return owner(key, self._previous) == self.identity != owner(key, self.members)

    def settled_in(self) -> float:
        """Seconds until keys gained at the last change may be taken up."""
        return max(0.0, self._changed_at + self.handoff - self._clock())
