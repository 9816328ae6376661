"""How Leases are judged alive, dead or gone: on this replica's clock, from observed change."""

from __future__ import annotations

import datetime as dt

from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from moonlander.kube.leases import MembershipConfig, Observed, judge_members, lease_name

CONFIG = MembershipConfig(group="g", namespace="ns", identity="me_1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _lease(identity: str, renewed: dt.datetime, duration: int = 6) -> Lease:
    return Lease(
        metadata=ObjectMeta(name=lease_name("g", identity)),
        spec=LeaseSpec(holderIdentity=identity, renewTime=renewed, leaseDurationSeconds=duration),
    )


def test_a_lease_is_silent_from_the_moment_its_change_was_observed() -> None:
    observed = Observed()
    spec = LeaseSpec(holderIdentity="a", renewTime=T0)
    assert observed.silent_for("a", spec, now=100.0) == 0.0
    assert observed.silent_for("a", spec, now=105.0) == 5.0
    # A renewal is a change: silence starts again, whatever the timestamp says.
    renewed = LeaseSpec(holderIdentity="a", renewTime=T0 - dt.timedelta(hours=1))
    assert observed.silent_for("a", renewed, now=106.0) == 0.0


def test_members_alive_expired_and_reaped() -> None:
    observed = Observed()
    leases = [_lease("me_1", T0), _lease("b_2", T0), _lease("c_3", T0)]
    members, stale = judge_members(leases, observed, CONFIG, now=0.0)
    assert members == ("b_2", "c_3", "me_1")
    assert stale == []

    # b renews, c does not: past its duration c is no member, its Lease is kept a while.
    leases[1] = _lease("b_2", T0 + dt.timedelta(seconds=7))
    members, stale = judge_members(leases, observed, CONFIG, now=7.0)
    assert members == ("b_2", "me_1")
    assert stale == []

    # Silent past reap_after: deleted. Our own Lease is never judged by silence.
    leases[1] = _lease("b_2", T0 + dt.timedelta(seconds=31))
    members, stale = judge_members(leases, observed, CONFIG, now=CONFIG.reap_after + 1)
    assert members == ("b_2", "me_1")
    assert stale == [lease_name("g", "c_3")]


def test_forgotten_leases_are_dropped_from_memory() -> None:
    observed = Observed()
    judge_members([_lease("b_2", T0)], observed, CONFIG, now=0.0)
    judge_members([], observed, CONFIG, now=50.0)
    # Seen again after it was gone: a new observation, not 50 s of silence.
    members, stale = judge_members([_lease("b_2", T0)], observed, CONFIG, now=50.0)
    assert members == ("b_2",)
    assert stale == []


def test_lease_names_are_dns_subdomains() -> None:
    assert lease_name("moonlander-leader", "Host_42") == "moonlander-leader-shard-host-42"
    assert len(lease_name("g", "x" * 400)) == 253
