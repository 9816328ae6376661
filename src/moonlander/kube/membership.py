"""Shard membership on ``coordination.k8s.io`` Leases: which replicas are alive.

Every replica started with ``--shards`` holds a Lease of its own (labelled with the shard
group) and renews it every ``retry_period``. The live members are the replicas whose Lease
was *observed* to change within ``lease_duration`` (the local monotonic clock from the
moment of observation, as in ``leader``: other machines' timestamps are never compared). A
replica that cannot renew its own Lease within ``renew_deadline`` (shorter than the
duration the others wait) counts itself out first, so it stops writing before anyone takes
over its Landings. On shutdown it deletes its Lease, and the others rebalance at once.
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
_FAULTS = (ApiError, httpx2.HTTPError, httpcore2.ConnectError, httpcore2.TimeoutException)


@dataclass(frozen=True)
class MembershipConfig:
    group: str
    namespace: str
    identity: str
    lease_duration: float = 6.0
    renew_deadline: float = 4.0
    retry_period: float = 1.0

    @property
    def lease_name(self) -> str:
        # Lease names are DNS subdomains: the identity (host_pid) lower-cased, '_' as '-'.
        return f"{self.group}-shard-{self.identity.lower().replace('_', '-')}"[:253]


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
        self._observed: dict[str, tuple[str, float]] = {}  # lease -> (renewTime, seen at)
        self._renewed_at = 0.0

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
            except _FAULTS as err:
                log.warning("shard Lease not renewed: %s", type(err).__name__)
            try:
                members = await self._live_members()
            except _FAULTS as err:
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
            renewTime=dt.datetime.now(dt.UTC),
        )
        try:
            lease = await self._client.get(Lease, cfg.lease_name, namespace=cfg.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
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
        now = time.monotonic()
        live = set()
        seen = set()
        async for lease in self._client.list(
            Lease, namespace=cfg.namespace, labels={GROUP_LABEL: cfg.group}
        ):
            name = lease.metadata.name if lease.metadata else None
            spec = lease.spec or LeaseSpec()
            if not name or not spec.holderIdentity:
                continue
            seen.add(name)
            stamp = str(spec.renewTime)
            previous = self._observed.get(name)
            if previous is None or previous[0] != stamp:
                self._observed[name] = previous = (stamp, now)
            duration = spec.leaseDurationSeconds or cfg.lease_duration
            if spec.holderIdentity == cfg.identity or now - previous[1] < duration:
                live.add(spec.holderIdentity)
        for gone in set(self._observed) - seen:
            del self._observed[gone]
        return tuple(sorted(live))

    async def release(self) -> None:
        """Deletes this replica's Lease: the others take its Landings over at once."""
        cfg = self.config
        try:
            await self._client.delete(Lease, cfg.lease_name, namespace=cfg.namespace)
            log.info("released shard Lease %s/%s", cfg.namespace, cfg.lease_name)
        except _FAULTS as err:
            log.warning("could not release the shard Lease: %s", type(err).__name__)
