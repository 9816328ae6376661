"""What a reconcile writes to a Landing's status, decided without a cluster."""

from __future__ import annotations

import msgspec
import pytest

from moonlander import api
from moonlander.api.reasons import Outcome, Reason, Retry
from moonlander.controller.status import landed_of, next_status

SYNCED = Outcome(True, Reason.SYNCED, "landed", Retry.RESYNC)
WAITING = Outcome(False, Reason.SOURCE_SECRET_NOT_FOUND, "waiting", Retry.BACKOFF)
LANDED = api.LandedStatus(
    cluster="https://c",
    server="https://s",
    namespace="ns",
    name="name",
    source_key="value",
    content_hash="sha256:x",
)
# Every field set: what a minted Landing with Crossplane companions says it landed.
MINTED = api.LandedStatus(
    cluster="https://c",
    server="https://s",
    namespace="ns",
    name="n",
    source_key="k",
    content_hash="sha256:y",
    service_account="sa-ns/sa",
    token_expires_at="2030-01-01T00:00:00Z",
    token_renew_at="2029-12-31T23:48:00Z",
    provider_configs=("ProviderConfig.x y",),
    cluster_profile="ns/profile",
)
NO_STATUS = api.LandingStatus()


def with_status(status: dict[str, object]) -> api.ParsedLanding:
    return api.parse_landing({"metadata": {"name": "n", "namespace": "ns"}, "status": status})


def test_first_success_writes_status_without_an_event() -> None:
    update = next_status(
        NO_STATUS, outcome=SYNCED, generation=1, target="ns/name", landed=LANDED, now="t1"
    )
    assert update is not None
    assert update.status["conditions"][0]["status"] == "True"
    assert update.status["observedGeneration"] == 1
    assert update.status["lastSyncTime"] == "t1"
    assert update.status["landed"]["sourceKey"] == "value"
    assert update.event is None  # the status says it; a new Landing costs three writes


def test_recovery_to_synced_is_reported() -> None:
    first = next_status(
        NO_STATUS, outcome=WAITING, generation=1, target=None, landed=None, now="t1"
    )
    assert first is not None
    update = next_status(
        api.parse_status(first.status),
        outcome=SYNCED,
        generation=1,
        target="ns/name",
        landed=LANDED,
        now="t2",
    )
    assert update is not None and update.event == ("Normal", "Synced", "landed")


def test_nothing_changed_writes_nothing() -> None:
    first = next_status(
        NO_STATUS, outcome=SYNCED, generation=1, target="ns/name", landed=LANDED, now="t1"
    )
    assert first is not None
    again = next_status(
        api.parse_status(first.status),
        outcome=SYNCED,
        generation=1,
        target="ns/name",
        landed=LANDED,
        now="t2",
    )
    assert again is None


def test_same_reason_new_message_updates_without_an_event() -> None:
    first = next_status(
        NO_STATUS, outcome=WAITING, generation=1, target=None, landed=None, now="t1"
    )
    assert first is not None and first.event == ("Warning", "SourceSecretNotFound", "waiting")
    assert "lastSyncTime" not in first.status
    changed = Outcome(False, Reason.SOURCE_SECRET_NOT_FOUND, "still waiting", Retry.BACKOFF)
    update = next_status(
        api.parse_status(first.status),
        outcome=changed,
        generation=1,
        target=None,
        landed=None,
        now="t2",
    )
    assert update is not None and update.event is None
    assert update.status["conditions"][0]["lastTransitionTime"] == "t1"


def test_suspended_is_unknown_and_a_new_generation_is_a_change() -> None:
    suspended = Outcome(False, Reason.SUSPENDED, "suspended", Retry.ON_CHANGE)
    update = next_status(
        NO_STATUS, outcome=suspended, generation=3, target=None, landed=None, now="t"
    )
    assert update is not None and update.status["conditions"][0]["status"] == "Unknown"
    assert update.event is not None and update.event[0] == "Normal"
    bumped = next_status(
        api.parse_status(update.status),
        outcome=suspended,
        generation=4,
        target=None,
        landed=None,
        now="t",
    )
    assert bumped is not None and bumped.status["observedGeneration"] == 4


def test_every_landed_field_round_trips_through_the_status() -> None:
    unset = [f for f in MINTED.__struct_fields__ if getattr(MINTED, f) in (None, "", ())]
    assert unset == []  # the test covers every field the model has
    update = next_status(
        NO_STATUS, outcome=SYNCED, generation=1, target="ns/n", landed=MINTED, now="t1"
    )
    assert update is not None
    written = update.status["landed"]
    assert written["tokenExpiresAt"] == "2030-01-01T00:00:00Z"
    assert written["serviceAccount"] == "sa-ns/sa"
    # As the API server returns it (JSON), parsed back: the same model, field for field.
    stored = with_status(msgspec.json.decode(msgspec.json.encode(update.status)))
    assert landed_of(stored) == MINTED
    assert landed_of(with_status({})) is None


@pytest.mark.parametrize(
    "outcome",
    [
        SYNCED,
        WAITING,
        Outcome(False, Reason.CLUSTER_UNREACHABLE, "no answer", Retry.BACKOFF),
    ],
    ids=lambda o: o.reason.value,
)
def test_a_retry_that_changes_nothing_writes_nothing(outcome: Outcome) -> None:
    """A minted Landing whose status already says it (tokens, ServiceAccount, companions):
    the next attempt with the same outcome and what the status says was landed is no
    write, whether it landed again or failed and kept what it had landed."""
    first = next_status(
        NO_STATUS, outcome=outcome, generation=2, target="ns/n", landed=MINTED, now="t1"
    )
    assert first is not None
    stored = with_status(msgspec.json.decode(msgspec.json.encode(first.status)))
    again = next_status(
        stored.status,
        outcome=outcome,
        generation=2,
        target="ns/n",
        landed=landed_of(stored),
        now="t2",
    )
    assert again is None


def test_a_revoked_landing_no_longer_says_what_it_landed() -> None:
    first = next_status(
        NO_STATUS, outcome=SYNCED, generation=1, target="ns/name", landed=LANDED, now="t1"
    )
    assert first is not None
    refused = Outcome(False, Reason.NOT_PERMITTED, "no grant; revoked", Retry.ON_CHANGE)
    update = next_status(
        api.parse_status(first.status),
        outcome=refused,
        generation=1,
        target="ns/name",
        landed=None,
        now="t2",
        revoked=True,
    )
    assert update is not None
    assert "landed" in update.status and update.status["landed"] is None  # merge patch: delete
    assert update.event == ("Warning", "NotPermitted", "no grant; revoked")
