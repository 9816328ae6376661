"""The conditions kstatus, Flux and ``kubectl wait`` read: Ready, and beside a False one
Reconciling (a retry will come) or Stalled (only a human can help), for every reason."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from moonlander import api
from moonlander.api.reasons import STALLED_REASONS, Outcome, Reason, Retry, SetReason
from moonlander.controller import fleet
from moonlander.controller.conditions import kstatus_conditions
from moonlander.controller.status import next_status

# Each reason of a Landing's Ready: (Ready status, the condition beside it, if any).
EXPECTED: dict[Reason, tuple[str, str | None]] = {
    Reason.SYNCED: ("True", None),
    Reason.PROGRESSING: ("False", "Reconciling"),
    Reason.SUSPENDED: ("Unknown", None),
    Reason.INVALID_SPEC: ("False", "Stalled"),
    Reason.SOURCE_SECRET_NOT_FOUND: ("False", "Reconciling"),
    Reason.CLUSTER_PROFILE_CRD_NOT_FOUND: ("False", "Reconciling"),
    Reason.SOURCE_KEY_NOT_FOUND: ("False", "Stalled"),
    Reason.CROSS_NAMESPACE_NOT_ALLOWED: ("False", "Stalled"),
    Reason.INVALID_KUBECONFIG: ("False", "Stalled"),
    Reason.PARENT_KUBECONFIG_UNAVAILABLE: ("False", "Reconciling"),
    Reason.CLUSTER_UNREACHABLE: ("False", "Reconciling"),
    Reason.INVALID_RESPONSE: ("False", "Reconciling"),
    Reason.CREDENTIAL_REJECTED: ("False", "Reconciling"),
    Reason.UNAUTHORIZED: ("False", "Reconciling"),
    Reason.FORBIDDEN: ("False", "Reconciling"),
    Reason.NOT_PERMITTED: ("False", "Stalled"),
    Reason.CONFLICT: ("False", "Stalled"),
    Reason.TRANSIENT_ERROR: ("False", "Reconciling"),
    Reason.DELETING: ("True", None),
}


def outcome_of(reason: Reason) -> Outcome:
    ready = reason in (Reason.SYNCED, Reason.DELETING)
    retry = Retry.ON_CHANGE if reason in STALLED_REASONS else Retry.BACKOFF
    return Outcome(ready, reason, f"because {reason}", retry)


def test_every_reason_is_in_the_table() -> None:
    assert set(EXPECTED) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_each_reason_gives_its_conditions(reason: Reason) -> None:
    update = next_status(
        api.LandingStatus(),
        outcome=outcome_of(reason),
        generation=4,
        target=None,
        landed=None,
        now="t0",
    )
    assert update is not None
    conditions = update.status["conditions"]
    ready, beside = EXPECTED[reason]
    got = {c["type"]: c for c in conditions}
    assert set(got) == {"Ready"} | ({beside} if beside else set())
    assert got["Ready"]["status"] == ready
    for c in conditions:
        assert c["reason"] == reason.value
        assert c["message"] == f"because {reason}"
        assert c["observedGeneration"] == 4
        assert c["lastTransitionTime"] == "t0"
    if beside is not None:
        assert got[beside]["status"] == "True"


def test_the_stalled_reasons_are_the_contracts() -> None:
    assert {str(r) for r in STALLED_REASONS} == {
        "NotPermitted",
        "InvalidSpec",
        "InvalidKubeconfig",
        "Conflict",
        "SourceKeyNotFound",
        "CrossNamespaceNotAllowed",
    }


def _apply(status: api.LandingStatus, reason: Reason, now: str) -> api.LandingStatus:
    update = next_status(
        status, outcome=outcome_of(reason), generation=1, target=None, landed=None, now=now
    )
    if update is None:
        return status
    return api.parse_status({**msgspec.to_builtins(status), **update.status})


def test_landing_sequences_drop_what_no_longer_holds_and_keep_transition_times() -> None:
    waiting = _apply(api.LandingStatus(), Reason.SOURCE_SECRET_NOT_FOUND, "t0")
    assert [c.type for c in waiting.conditions] == ["Ready", "Reconciling"]
    # The same outcome again: nothing to write (no extra status write per retry).
    again = next_status(
        waiting,
        outcome=outcome_of(Reason.SOURCE_SECRET_NOT_FOUND),
        generation=1,
        target=None,
        landed=None,
        now="t1",
    )
    assert again is None
    # Still False, now for good: Reconciling goes, Stalled comes; Ready keeps its time.
    refused = _apply(waiting, Reason.NOT_PERMITTED, "t2")
    by_type = {c.type: c for c in refused.conditions}
    assert set(by_type) == {"Ready", "Stalled"}
    assert by_type["Ready"].last_transition_time == "t0"
    assert by_type["Stalled"].last_transition_time == "t2"
    synced = _apply(refused, Reason.SYNCED, "t3")
    assert [(c.type, c.status) for c in synced.conditions] == [("Ready", "True")]
    suspended = _apply(refused, Reason.SUSPENDED, "t4")
    assert [(c.type, c.status) for c in suspended.conditions] == [("Ready", "Unknown")]


def test_other_condition_types_are_kept() -> None:
    other = api.Condition(type="Custom", status="True")
    got = kstatus_conditions(
        (other,),
        ready="False",
        reason="X",
        message="m",
        stalled=False,
        observed_generation=1,
        now=None,
    )
    assert [c.type for c in got] == ["Custom", "Ready", "Reconciling"]
    assert all(c.last_transition_time is None for c in got[1:])


# -- LandingSet ---------------------------------------------------------------------------


def _set_status(*members: tuple[str, str, str]) -> api.LandingSetStatus:
    landing_set = api.parse_landingset(
        {
            "metadata": {"name": "fleet", "namespace": "ns", "uid": "u", "generation": 5},
            "spec": {
                "generators": [{"secrets": {"namePattern": "kc-{{t}}"}}],
                "template": {"metadata": {"name": "{{t}}"}, "spec": {}},
            },
        }
    )
    out = fleet.generate(landing_set, {f"kc-{name}": {} for name, _, _ in members})
    existing: dict[str, dict[str, Any]] = {}
    for name, status, reason in members:
        body = fleet.landing_body(landing_set, out.wanted[name])
        if status:
            body["status"] = {"conditions": [{"type": "Ready", "status": status, "reason": reason}]}
        existing[name] = body
    return fleet.summarize(landing_set, out, fleet.plan(landing_set, out, existing), existing)


def _kinds(status: api.LandingSetStatus) -> list[tuple[str, str, str | None]]:
    assert all(c.observed_generation == 5 for c in status.conditions)
    return [(c.type, c.status, c.reason) for c in status.conditions]


def test_a_set_all_ready_is_ready_alone() -> None:
    got = _set_status(("a", "True", "Synced"), ("b", "True", "Synced"))
    assert _kinds(got) == [("Ready", "True", "AllReady")]


def test_a_set_with_landings_not_yet_reported_is_reconciling() -> None:
    got = _set_status(("a", "True", "Synced"), ("b", "", ""))
    assert _kinds(got) == [
        ("Ready", "False", "Progressing"),
        ("Reconciling", "True", "Progressing"),
    ]


@pytest.mark.parametrize("reason", [r for r in Reason if EXPECTED[r][1] is not None])
def test_a_set_with_a_failing_landing_follows_its_reason(reason: Reason) -> None:
    got = _set_status(("a", "True", "Synced"), ("b", "False", reason.value))
    beside = "Stalled" if reason in STALLED_REASONS else "Reconciling"
    if reason is Reason.PROGRESSING:
        expected = [("Ready", "False", "Progressing"), ("Reconciling", "True", "Progressing")]
    else:
        expected = [("Ready", "False", "LandingsFailing"), (beside, "True", "LandingsFailing")]
    assert _kinds(got) == expected


def test_a_set_with_one_landing_failing_for_good_is_stalled() -> None:
    got = _set_status(("a", "False", "ClusterUnreachable"), ("b", "False", "NotPermitted"))
    assert [c.type for c in got.conditions] == ["Ready", "Stalled"]


def test_an_invalid_set_is_stalled_with_its_generation() -> None:
    with pytest.raises(api.SpecError) as caught:
        api.parse_landingset(
            {"metadata": {"name": "s", "generation": 7}, "spec": {"generators": "no"}}
        )
    assert caught.value.generation == 7
    got = fleet.set_conditions(
        "False", SetReason.INVALID_SPEC.value, "spec: bad", stalled=True, generation=7
    )
    assert [(c.type, c.status, c.reason) for c in got] == [
        ("Ready", "False", "InvalidSpec"),
        ("Stalled", "True", "InvalidSpec"),
    ]
