"""A Landing's status: what was landed where, and the Ready condition (pure).

``next_status`` decides what to write: nothing when nothing changed (so a converged
Landing costs no write), otherwise the new status and, when the Ready reason changed, the
Event that reports the transition. A new Landing that lands on its first reconcile gets no
Event: its status says so, and on the way in a fleet every write counts (the create, the
landed Secret and the status are the three a new Landing costs; docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from moonlander.api import InvalidLanding, Landing, LandingStatus
from moonlander.api.reasons import Outcome, Reason
from moonlander.controller.conditions import READY, find, now_rfc3339, set_condition


@dataclass(frozen=True)
class Landed:
    cluster: str
    server: str
    namespace: str
    name: str
    source_key: str
    content_hash: str
    service_account: str | None = None  # namespace/name of a minted ServiceAccount
    token_expires_at: datetime | None = None
    token_renew_at: datetime | None = None
    provider_configs: tuple[str, ...] = ()

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "cluster": self.cluster,
            "server": self.server,
            "namespace": self.namespace,
            "name": self.name,
            "sourceKey": self.source_key,
            "contentHash": self.content_hash,
        }
        if self.service_account:
            status["serviceAccount"] = self.service_account
        if self.token_expires_at and self.token_renew_at:
            status["tokenExpiresAt"] = now_rfc3339(self.token_expires_at)
            status["tokenRenewAt"] = now_rfc3339(self.token_renew_at)
        if self.provider_configs:
            status["providerConfigs"] = list(self.provider_configs)
        return status


@dataclass(frozen=True)
class StatusUpdate:
    status: dict[str, Any]
    event: tuple[str, str, str] | None  # (type, reason, message) of a Ready transition


def next_status(
    status_now: LandingStatus,
    *,
    outcome: Outcome,
    generation: int | None,
    target: str | None,
    landed: Landed | None,
    now: str,
    revoked: bool = False,
) -> StatusUpdate | None:
    """The status to write after a reconcile, or None when the current one already says it."""
    # As the API server holds it (lists, not tuples), to compare with what would be written.
    current: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(status_now))
    ready = "True" if outcome.ready else "False"
    if outcome.reason is Reason.SUSPENDED:
        ready = "Unknown"
    conditions = set_condition(
        current.get("conditions") or [],
        type_=READY,
        status=ready,
        reason=outcome.reason.value,
        message=outcome.message,
        observed_generation=generation,
        now=now,
    )
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
    if target is not None:
        status["target"] = target
    if landed is not None:
        status["landed"] = landed.as_status()
    elif revoked:
        status["landed"] = None  # merge patch: what was landed is gone
    if all(current.get(k) == v for k, v in status.items()):
        return None
    if outcome.ready:
        status["lastSyncTime"] = now
    event = None
    previous = find(current.get("conditions"), READY)
    first_landing = previous is None and outcome.ready
    if not first_landing and (previous is None or previous.get("reason") != outcome.reason.value):
        normal = outcome.ready or outcome.reason is Reason.SUSPENDED
        event = ("Normal" if normal else "Warning", outcome.reason.value, outcome.message)
    return StatusUpdate(status, event)


def landed_from_status(landing: Landing | InvalidLanding) -> Landed | None:
    landed = landing.status.landed
    if landed is None or not landed.name:
        return None
    return Landed(
        cluster=landed.cluster,
        server=landed.server,
        namespace=landed.namespace,
        name=landed.name,
        source_key=landed.source_key,
        content_hash=landed.content_hash,
        provider_configs=landed.provider_configs,
    )
