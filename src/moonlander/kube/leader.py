"""Leader election on a ``coordination.k8s.io`` Lease, in the manner of client-go.

kopf has none. Only the holder reconciles. Expiry is judged by the local monotonic clock
from the moment a change of the Lease was last *observed*, never by comparing another
machine's timestamps, so clock skew between replicas does not matter. The holder renews
every ``retry_period``; if it cannot renew within ``renew_deadline`` it has lost the Lease
and the process must stop. On shutdown it releases the Lease so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

import httpcore2
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(self, client: AsyncClient, config: LeaseConfig) -> None:
        self._client = client
        self.config = config
        self.is_leader = asyncio.Event()
        self.lost = asyncio.Event()
        self._observed: tuple[str | None, str | None] = (None, None)  # (holder, renewTime)
        self._observed_at = 0.0

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the Lease afterwards."""
        cfg = self.config
        try:
            lease = await self._client.get(Lease, cfg.name, namespace=cfg.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            await self._client.create(
                Lease(
                    metadata=ObjectMeta(name=cfg.name, namespace=cfg.namespace),
                    spec=self._spec(transitions=0, acquired=_now()),
                )
            )
            return True
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or None
        seen = (holder, str(spec.renewTime))
        if seen != self._observed:
            self._observed, self._observed_at = seen, time.monotonic()
        duration = spec.leaseDurationSeconds or self.config.lease_duration
        expired = time.monotonic() - self._observed_at > duration
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
            except (ApiError, httpx2.HTTPError, httpcore2.ConnectError) as err:
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
            except (ApiError, httpx2.HTTPError, httpcore2.ConnectError) as err:
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
            lease = await self._client.get(Lease, cfg.name, namespace=cfg.namespace)
            if lease.spec and lease.spec.holderIdentity == cfg.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                await self._client.replace(lease)
                log.info("released leader Lease %s/%s", cfg.namespace, cfg.name)
        except (ApiError, httpx2.HTTPError, httpcore2.ConnectError) as err:
            log.warning("could not release the leader Lease: %s", type(err).__name__)
        self.is_leader.clear()
