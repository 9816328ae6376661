"""API clients for the clusters Moonlander writes to, built only from validated credentials.

A client is cached per distinct credential (its fingerprint), so Landings sharing a child
share one connection pool, and a rotated credential gets a fresh client. Each cluster has a
health state: after a connection failure, Landings that target it fail fast instead of each
waiting for a timeout, and a probe wakes them as soon as the cluster answers again.

How the connection itself is made safe (TLS in memory, the address policy at connect time,
bounds on every response and request) is ``kube/transport.py``; its names are re-exported
here. A cluster that answers too slowly or with what no API server sends is marked like an
unreachable one, and only a probe readmits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import AsyncClient

from moonlander.credentials import Credentials, Policy
from moonlander.kube import internals
from moonlander.kube.backoff import backoff_delay
from moonlander.kube.transport import (
    DEFAULT_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_EVENT_BYTES,
    MAX_RESPONSE_BYTES,
    REQUEST_DEADLINE,
    WATCH_EVENT_GAP,
    AddressPolicyError,
    DeadlineExceeded,
    GuardedBackend,
    InvalidResponse,
    ResponseTooLarge,
    build_client,
    describe_error,
    ssl_context,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_EVENT_BYTES",
    "MAX_RESPONSE_BYTES",
    "REQUEST_DEADLINE",
    "WATCH_EVENT_GAP",
    "AddressPolicyError",
    "ClusterPool",
    "DeadlineExceeded",
    "GuardedBackend",
    "InvalidResponse",
    "ResponseTooLarge",
    "Target",
    "annotations_of",
    "annotations_of_dict",
    "build_client",
    "close_client",
    "describe_error",
    "ssl_context",
]

log = logging.getLogger(__name__)

PROBE_MAX_DELAY = 5.0


@dataclass(eq=False)
class Target:
    """A cluster Moonlander reads from or writes to, with its health."""

    key: str
    server: str
    client: AsyncClient
    local: bool = False
    # Why a call failed may be told in a Landing's status: the operator vouched for the
    # networks this cluster was dialled within (a namespace's sourceNetworks). Otherwise the
    # server is a tenant's pick, and the why (refused, not TLS, wrong CA, silent, no such
    # host) would make the controller a port scanner: only the log has it.
    vouched: bool = False
    failures: int = 0
    unreachable_until: float = 0.0
    last_error: str = ""
    # Why the last call failed (a Reason), and whether only a probe may readmit the cluster
    # (it answered too slowly, or with what no API server sends).
    last_reason: str = ""
    until_probe: bool = False
    last_used: float = field(default_factory=time.monotonic)
    waiters: set[str] = field(default_factory=set)
    probe: asyncio.Task[None] | None = None
    make_client: Callable[[], AsyncClient] | None = None
    _watch_client: AsyncClient | None = None

    def watch_client(self) -> AsyncClient:
        """A client of its own for long-running watches, so they never hold a connection
        that reconciles need."""
        if self._watch_client is None:
            self._watch_client = self.make_client() if self.make_client else self.client
        return self._watch_client

    @property
    def reachable(self) -> bool:
        if self.failures == 0:
            return True
        return not self.until_probe and time.monotonic() >= self.unreachable_until


class ClusterPool:
    """Remote clients keyed by credential fingerprint, with per-cluster health."""

    def __init__(
        self,
        policy: Policy,
        wake: Callable[[Iterable[str]], None],
        *,
        idle_ttl: float = 900.0,
        timeout: httpx2.Timeout = DEFAULT_TIMEOUT,
        instrument: Callable[[AsyncClient, str], None] = lambda _client, _server: None,
    ) -> None:
        self.policy = policy
        self._wake = wake
        self._idle_ttl = idle_ttl
        self._timeout = timeout
        self._instrument = instrument
        self._targets: dict[str, Target] = {}

    def get(self, creds: Credentials, policy: Policy | None = None) -> Target:
        """The client for ``creds``; ``policy``, when given, is a narrower address policy
        (a namespace's sourceNetworks) checked at every connection of that client."""
        policy = policy or self.policy
        key = creds.fingerprint()
        if policy.within_networks is not None:
            key += "|within:" + ",".join(sorted(str(n) for n in policy.within_networks))
        target = self._targets.get(key)
        if target is None:

            def make() -> AsyncClient:
                client = build_client(creds, policy, timeout=self._timeout)
                # Not the server: a metric label must not list every URL a tenant named.
                self._instrument(client, "remote")
                return client

            target = Target(
                key=key,
                server=creds.server,
                client=make(),
                make_client=make,
                vouched=policy.within_networks is not None,
            )
            self._targets[key] = target
        target.last_used = time.monotonic()
        return target

    def targets(self) -> list[Target]:
        return list(self._targets.values())

    def record_success(self, target: Target) -> None:
        if target.failures:
            log.info("cluster %s is reachable again", target.server)
        target.failures = 0
        target.last_error = ""
        target.last_reason = ""
        target.until_probe = False

    def record_failure(
        self,
        target: Target,
        error: str,
        landing_key: str,
        *,
        reason: str = "",
        until_probe: bool = False,
    ) -> None:
        """Marks the cluster unreachable and starts a probe that wakes its Landings. With
        ``until_probe`` (too slow, or answers no API server gives) its Landings fail fast
        until the probe sees it answer, not only until the backoff has passed."""
        target.failures += 1
        target.last_error = error
        target.last_reason = reason
        target.until_probe = target.until_probe or until_probe
        target.unreachable_until = time.monotonic() + backoff_delay(
            target.failures, cap=PROBE_MAX_DELAY
        )
        target.waiters.add(landing_key)
        if target.probe is None or target.probe.done():
            target.probe = asyncio.create_task(self._probe(target))

    async def _probe(self, target: Target) -> None:
        while target.failures and target.key in self._targets:
            await asyncio.sleep(max(0.0, target.unreachable_until - time.monotonic()))
            try:
                # Within the deadline and the size cap, like every call.
                response = await internals.http_client(target.client).get("/readyz")
            except Exception as err:  # whatever it answered, it did not answer usefully
                error = describe_error(err)
            else:
                # Any HTTP answer will do; after a slow or malformed answer, not a server
                # error (an error may be all such a server gives).
                if not (target.until_probe and response.status_code >= 500):
                    self.record_success(target)
                    waiters, target.waiters = target.waiters, set()
                    self._wake(waiters)
                    continue
                error = target.last_error or f"HTTP {response.status_code} from /readyz"
            target.failures += 1
            target.last_error = error
            target.unreachable_until = time.monotonic() + backoff_delay(
                target.failures, cap=PROBE_MAX_DELAY
            )

    async def drop(self, key: str) -> None:
        target = self._targets.pop(key, None)
        if target is not None:
            await _close(target)

    async def evict_idle(self, in_use: set[str]) -> None:
        now = time.monotonic()
        for key, target in list(self._targets.items()):
            if key not in in_use and now - target.last_used > self._idle_ttl:
                await self.drop(key)

    async def close(self) -> None:
        for key in list(self._targets):
            await self.drop(key)


def annotations_of(obj: Any) -> dict[str, str]:
    """A lightkube object's annotations, {} when it has none."""
    meta = getattr(obj, "metadata", None)
    return dict(getattr(meta, "annotations", None) or {})


def annotations_of_dict(obj: Mapping[str, Any]) -> dict[str, str]:
    """An object's annotations from its JSON form, {} when it has none."""
    return dict((obj.get("metadata") or {}).get("annotations") or {})


async def close_client(client: AsyncClient) -> None:
    await internals.close(client)


async def _close(target: Target) -> None:
    if target.probe is not None:
        target.probe.cancel()
    for client in {target.client, target._watch_client}:
        if client is not None:
            with contextlib.suppress(Exception):
                await close_client(client)
