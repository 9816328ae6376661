"""Kubernetes-style status conditions (``api.Condition``, a metav1.Condition), kept pure.

``kstatus_conditions`` sets Ready and, as kstatus, Flux and ``kubectl wait`` expect, either
Reconciling (still at work or backing off) or Stalled (only a human can help) beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from moonlander.api import Condition
from moonlander.api.reasons import ConditionType

READY = ConditionType.READY.value
RECONCILING = ConditionType.RECONCILING.value
STALLED = ConditionType.STALLED.value
_KSTATUS = (READY, RECONCILING, STALLED)
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


def kstatus_conditions(
    conditions: Sequence[Condition],
    *,
    ready: str,
    reason: str,
    message: str,
    stalled: bool,
    observed_generation: int | None,
    now: str | None,
) -> tuple[Condition, ...]:
    """``conditions`` with Ready set to ``ready`` and, when it is False, Reconciling or (when
    ``stalled``) Stalled True with the same reason; both are absent otherwise (converged,
    suspended). Other condition types are kept. ``now`` None writes no lastTransitionTime."""
    wanted = [(READY, ready)]
    if ready == "False":
        wanted.append((STALLED if stalled else RECONCILING, "True"))
    result = tuple(c for c in conditions if c.type not in _KSTATUS)
    for type_, status in wanted:
        previous = find(conditions, type_)
        transition = now
        if previous is not None and previous.status == status and now is not None:
            transition = previous.last_transition_time or now
        result = (
            *result,
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message[:MESSAGE_LIMIT],
                observed_generation=observed_generation,
                last_transition_time=transition,
            ),
        )
    return result
