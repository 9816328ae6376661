"""Kubernetes-style status conditions (``api.Condition``, a metav1.Condition), kept pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from moonlander.api import Condition

READY = "Ready"
MESSAGE_LIMIT = 32768  # metav1.Condition's maxLength for message


def now_rfc3339(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: str,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: str,
) -> tuple[Condition, ...]:
    """``conditions`` with ``type_`` set (last); lastTransitionTime moves only when status
    changes."""
    previous = find(conditions, type_)
    transition = now
    if previous is not None and previous.status == status:
        transition = previous.last_transition_time or now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        observed_generation=observed_generation,
        last_transition_time=transition,
    )
    return (*(c for c in conditions if c.type != type_), new)


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None
