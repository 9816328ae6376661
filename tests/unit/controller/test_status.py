"""What a reconcile writes to a Landing's status, decided without a cluster."""

from __future__ import annotations

import datetime as dt

from moonlander import api
from moonlander.api.reasons import Outcome, Reason, Retry
from moonlander.controller.status import Landed, landed_from_status, next_status

SYNCED = Outcome(True, Reason.SYNCED, "landed", Retry.RESYNC)
WAITING = Outcome(False, Reason.SOURCE_SECRET_NOT_FOUND, "waiting", Retry.BACKOFF)
LANDED = Landed("https://c", "https://s", "ns", "name", "value", "sha256:x")
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


def test_landed_round_trips_through_status() -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    landed = Landed(
        "https://c",
        "https://s",
        "ns",
        "n",
        "k",
        "sha256:y",
        "sa-ns/sa",
        expires,
        expires - dt.timedelta(minutes=12),
        ("ProviderConfig.x y",),
    )
    back = landed_from_status(with_status({"landed": landed.as_status()}))
    assert back is not None
    assert back.provider_configs == ("ProviderConfig.x y",)
    assert (back.cluster, back.name, back.content_hash) == ("https://c", "n", "sha256:y")
    assert landed.as_status()["tokenExpiresAt"] == "2030-01-01T00:00:00Z"
    assert landed_from_status(with_status({})) is None


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
