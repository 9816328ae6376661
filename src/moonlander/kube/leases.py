"""``coordination.k8s.io`` Leases: leader election and shard membership, in the manner of
client-go.

Both judge a Lease the same way: another replica's Lease is alive while it was *observed*
to change within its ``leaseDurationSeconds``, measured on the local monotonic clock from the
moment of observation. Other machines' timestamps are never compared, so clock skew between
replicas does not matter.

- :class:`LeaderElector`: one named Lease; only its holder reconciles. The holder renews
  every ``retry_period``; if it cannot renew within ``renew_deadline`` it has lost the Lease
  and the process must stop. On shutdown it releases the Lease so a standby takes over at once.
- :class:`Membership`: with ``--shards`` every replica holds a Lease of its own (labelled with
  the shard group). A replica that cannot renew within ``renew_deadline`` (shorter than the
  duration the others wait) counts itself out first, so it stops writing before anyone takes
  over its Landings. On shutdown it deletes its Lease; the Leases of replicas that died
  without doing so are deleted by the survivors once they have been silent for
  ``reap_after`` (a replica that was only cut off creates its Lease again when it renews).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)

GROUP_LABEL = "moons.kingdon.ci/shard-group"
FAULTS = (ApiError, httpx2.HTTPError, httpcore2.ConnectError, httpcore2.TimeoutException)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Observed:
    """When each Lease was last seen to change, on this replica's monotonic clock (pure)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, float]] = {}  # name -> (holder and renewTime, at)

    def silent_for(self, name: str, spec: LeaseSpec, now: float) -> float:
        """Seconds since ``name`` was last seen to change (0 when it changed just now)."""
        stamp = f"{spec.holderIdentity}@{spec.renewTime}"
        previous = self._seen.get(name)
        if previous is None or previous[0] != stamp:
            self._seen[name] = previous = (stamp, now)
        return now - previous[1]

    def keep_only(self, names: set[str]) -> None:
        for gone in set(self._seen) - names:
            del self._seen[gone]


async def _get(client: AsyncClient, name: str, namespace: str) -> Lease | None:
    try:
        return await client.get(Lease, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


# -- leader election ---------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(self, client: AsyncClient, config: LeaseConfig) -> None:
        self._client = client
        self.config = config
        self.is_leader = asyncio.Event()
        self.lost = asyncio.Event()
        self._observed = Observed()

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the Lease afterwards."""
        cfg = self.config
        lease = await _get(self._client, cfg.name, cfg.namespace)
        if lease is None:
            await self._client.create(
                Lease(
                    metadata=ObjectMeta(name=cfg.name, namespace=cfg.namespace),
                    spec=self._spec(transitions=0, acquired=_now()),
                )
            )
            return True
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or None
        duration = spec.leaseDurationSeconds or cfg.lease_duration
        expired = self._observed.silent_for(cfg.name, spec, time.monotonic()) > duration
        if holder not in (None, cfg.identity) and not expired:
            return False
        ours = holder == cfg.identity
        lease.spec = self._spec(
            transitions=(spec.leaseTransitions or 0) + (0 if ours else 1),
            acquired=spec.acquireTime if ours and spec.acquireTime else _now(),
        )
        # replace() carries the resourceVersion: a concurrent writer makes this fail (409).
        await self._client.replace(lease)
        return True

    def _spec(self, *, transitions: int, acquired: dt.datetime) -> LeaseSpec:
        return LeaseSpec(
            holderIdentity=self.config.identity,
            leaseDurationSeconds=int(self.config.lease_duration),
            acquireTime=acquired,
            renewTime=_now(),
            leaseTransitions=transitions,
        )

    async def run(self) -> None:
        """Acquires, then keeps renewing; sets ``lost`` and returns if renewal fails."""
        cfg = self.config
        while not self.is_leader.is_set():
            try:
                if await self._try():
                    log.info(
                        "acquired leader Lease %s/%s as %s", cfg.namespace, cfg.name, cfg.identity
                    )
                    self.is_leader.set()
                    break
            except FAULTS as err:
                log.debug("leader election attempt failed: %s", type(err).__name__)
            await asyncio.sleep(cfg.retry_period)
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(cfg.retry_period)
            try:
                if await self._try():
                    last_renewal = time.monotonic()
                    continue
                log.error("leader Lease %s/%s was taken over", cfg.namespace, cfg.name)
            except FAULTS as err:
                if time.monotonic() - last_renewal < cfg.renew_deadline:
                    continue
                log.error("could not renew the leader Lease: %s", type(err).__name__)
            self.is_leader.clear()
            self.lost.set()
            return

    async def release(self) -> None:
        """Gives the Lease up so a standby need not wait for it to expire."""
        if not self.is_leader.is_set():
            return
        cfg = self.config
        try:
            lease = await _get(self._client, cfg.name, cfg.namespace)
            if lease is not None and lease.spec and lease.spec.holderIdentity == cfg.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                await self._client.replace(lease)
                log.info("released leader Lease %s/%s", cfg.namespace, cfg.name)
        except FAULTS as err:
            log.warning("could not release the leader Lease: %s", type(err).__name__)
        self.is_leader.clear()


# -- shard membership --------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipConfig:
    group: str
    namespace: str
    identity: str
    lease_duration: float = 6.0
    renew_deadline: float = 4.0
    retry_period: float = 1.0
    # A member silent this long died without deleting its Lease: the survivors delete it.
    reap_after: float = 30.0

    @property
    def lease_name(self) -> str:
        return lease_name(self.group, self.identity)


def lease_name(group: str, identity: str) -> str:
    """A member's Lease name: a DNS subdomain from the identity (host_pid) lower-cased,
    ``_`` as ``-``."""
    return f"{group}-shard-{identity.lower().replace('_', '-')}"[:253]


def judge_members(
    leases: list[Lease], observed: Observed, config: MembershipConfig, now: float
) -> tuple[tuple[str, ...], list[str]]:
    """The live members' identities, and the names of Leases silent past ``reap_after``
    (pure but for ``observed``'s memory)."""
    live: set[str] = set()
    stale: list[str] = []
    seen: set[str] = set()
    for lease in leases:
        name = lease.metadata.name if lease.metadata else None
        spec = lease.spec or LeaseSpec()
        if not name:
            continue
        seen.add(name)
        silent = observed.silent_for(name, spec, now)
        if spec.holderIdentity == config.identity:
            live.add(spec.holderIdentity)
            continue
        if silent > config.reap_after:
            stale.append(name)
        elif spec.holderIdentity and silent < (spec.leaseDurationSeconds or config.lease_duration):
            live.add(spec.holderIdentity)
    observed.keep_only(seen)
    return tuple(sorted(live)), stale


class Membership:
    def __init__(
        self,
        client: AsyncClient,
        config: MembershipConfig,
        on_change: Callable[[tuple[str, ...]], None],
    ) -> None:
        self._client = client
        self.config = config
        self._on_change = on_change
        self.members: tuple[str, ...] = ()
        self.ready = asyncio.Event()
        self._observed = Observed()
        self._renewed_at = -float("inf")

    @property
    def live(self) -> bool:
        """This replica may act: its own Lease was renewed within ``renew_deadline``."""
        return time.monotonic() - self._renewed_at < self.config.renew_deadline

    async def run(self) -> None:
        cfg = self.config
        while True:
            try:
                await self._renew()
                self._renewed_at = time.monotonic()
            except FAULTS as err:
                log.warning("shard Lease not renewed: %s", type(err).__name__)
            try:
                members = await self._live_members()
            except FAULTS as err:
                log.warning("shard Leases not listed: %s", type(err).__name__)
                members = self.members
            if not self.live:
                members = tuple(m for m in members if m != cfg.identity)
            if members != self.members:
                log.info("shard members: %s", ", ".join(members) or "none")
                self.members = members
                self._on_change(members)
            if self.live:
                self.ready.set()
            await asyncio.sleep(cfg.retry_period)

    async def _renew(self) -> None:
        cfg = self.config
        spec = LeaseSpec(
            holderIdentity=cfg.identity,
            leaseDurationSeconds=int(cfg.lease_duration),
            renewTime=_now(),
        )
        lease = await _get(self._client, cfg.lease_name, cfg.namespace)
        if lease is None:
            await self._client.create(
                Lease(
                    metadata=ObjectMeta(
                        name=cfg.lease_name,
                        namespace=cfg.namespace,
                        labels={GROUP_LABEL: cfg.group},
                    ),
                    spec=spec,
                )
            )
            return
        lease.spec = spec
        await self._client.replace(lease)

    async def _live_members(self) -> tuple[str, ...]:
        cfg = self.config
        leases = [
            lease
            async for lease in self._client.list(
                Lease, namespace=cfg.namespace, labels={GROUP_LABEL: cfg.group}
            )
        ]
        members, stale = judge_members(leases, self._observed, cfg, time.monotonic())
        for name in stale:
            await self._reap(name)
        return members

    async def _reap(self, name: str) -> None:
        cfg = self.config
        try:
            await self._client.delete(Lease, name, namespace=cfg.namespace)
            log.info("deleted shard Lease %s/%s of a replica that is gone", cfg.namespace, name)
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def release(self) -> None:
        """Deletes this replica's Lease: the others take its Landings over at once."""
        cfg = self.config
        try:
            await self._client.delete(Lease, cfg.lease_name, namespace=cfg.namespace)
            log.info("released shard Lease %s/%s", cfg.namespace, cfg.lease_name)
        except FAULTS as err:
            log.warning("could not release the shard Lease: %s", type(err).__name__)
