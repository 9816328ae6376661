"""A Landing's status: what was landed where, and the Ready condition (pure).

The status types are the API's (``api.LandingStatus``, ``api.LandedStatus``,
``api.Condition``): what a reconcile says was landed is a ``LandedStatus``, compared with the
one in the status field by field, so a Landing whose status already says it costs no write.

``next_status`` decides what to write: nothing when nothing changed, otherwise the new
status and, when the Ready reason changed, the Event that reports the transition. Beside
Ready it keeps Reconciling (a retry will come) or Stalled (``STALLED_REASONS``: only a human
can help) as kstatus reads them; both follow the Ready reason, so they cost no extra write. A new
Landing that lands on its first reconcile gets no Event: its status says so, and on the way
in a fleet every write counts (the create, the landed Secret and the status are the three a
new Landing costs; docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from moonlander.api import InvalidLanding, LandedStatus, Landing, LandingStatus
from moonlander.api.reasons import STALLED_REASONS, Outcome, Reason
from moonlander.controller.conditions import READY, find, kstatus_conditions


@dataclass(frozen=True)
class StatusUpdate:
    # The merge patch: the status's fields as the API has them; "landed": None removes it.
    status: dict[str, Any]
    event: tuple[str, str, str] | None  # (type, reason, message) of a Ready transition


def landed_of(landing: Landing | InvalidLanding) -> LandedStatus | None:
    """What the status says was landed, if anything."""
    landed = landing.status.landed
    return landed if landed is not None and landed.name else None


def next_status(
    now_status: LandingStatus,
    *,
    outcome: Outcome,
    generation: int | None,
    target: str | None,
    landed: LandedStatus | None,
    now: str,
    revoked: bool = False,
) -> StatusUpdate | None:
    """The status to write after a reconcile, or None when the current one already says it.
    ``target`` and ``landed`` None leave what the status says; ``revoked`` removes
    ``landed``."""
    ready = "True" if outcome.ready else "False"
    if outcome.reason is Reason.SUSPENDED:
        ready = "Unknown"
    conditions = kstatus_conditions(
        now_status.conditions,
        ready=ready,
        reason=outcome.reason.value,
        message=outcome.message,
        stalled=outcome.reason in STALLED_REASONS,
        observed_generation=generation,
        now=now,
    )
    new = msgspec.structs.replace(
        now_status,
        observed_generation=generation,
        conditions=conditions,
        target=now_status.target if target is None else target,
        landed=landed if landed is not None else (None if revoked else now_status.landed),
    )
    if new == now_status:
        return None
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": msgspec.to_builtins(conditions),
    }
    if target is not None:
        patch["target"] = target
    if landed is not None:
        patch["landed"] = msgspec.to_builtins(landed)
    elif revoked:
        patch["landed"] = None  # merge patch: what was landed is gone
    if outcome.ready:
        patch["lastSyncTime"] = now
    event = None
    previous = find(now_status.conditions, READY)
    first_landing = previous is None and outcome.ready
    if not first_landing and (previous is None or previous.reason != outcome.reason.value):
        normal = outcome.ready or outcome.reason is Reason.SUSPENDED
        event = ("Normal" if normal else "Warning", outcome.reason.value, outcome.message)
    return StatusUpdate(patch, event)
