"""The soak's schedule (bench/soak/schedule.py): seeded, bounded, and naming real objects."""

from __future__ import annotations

from bench.soak import schedule
from bench.soak.schedule import SHORT


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule.build(SHORT, 7) == schedule.build(SHORT, 7)
    assert schedule.build(SHORT, 7) != schedule.build(SHORT, 8)


def test_faults_never_overlap_and_all_end_within_the_duration() -> None:
    for seed in range(20):
        events = schedule.build(SHORT, seed)
        open_fault: int | None = None
        for event in events:
            if event.kind in schedule.FAULTS:
                assert open_fault is None, (seed, event)
                open_fault = event.args["id"]
            elif event.kind == "fault-end":
                assert event.args["id"] == open_fault
                open_fault = None
        assert open_fault is None
        assert all(0 <= e.at <= SHORT.duration for e in events)


def test_a_short_profile_holds_every_kind_of_fault_and_operation() -> None:
    for seed in range(10):
        kinds = set(schedule.summary(schedule.build(SHORT, seed)))
        ops = {name for name, _ in schedule.OPERATIONS} | {"policy-grant"}
        assert ops <= kinds, (seed, ops - kinds)
        assert set(schedule.FAULTS) <= kinds, (seed, set(schedule.FAULTS) - kinds)


def test_every_withdrawn_grant_is_given_back() -> None:
    events = schedule.build(SHORT, 3)
    withdrawn: set[str] = set()
    for event in events:
        if event.kind == "policy-withdraw":
            assert event.args["ns"] not in withdrawn
            withdrawn.add(event.args["ns"])
        elif event.kind == "policy-grant":
            withdrawn.remove(event.args["ns"])
    assert not withdrawn


def test_operations_name_landings_that_exist_in_the_model() -> None:
    model = schedule.initial(SHORT, 5)
    alive = set(model.landings)
    assert len(alive) + len(model.tenants) == SHORT.landings
    for event in schedule.build(SHORT, 5):
        key = (event.args.get("ns"), event.args.get("name"))
        if event.kind == "create":
            assert key not in alive
            alive.add(key)
        elif event.kind == "delete":
            alive.remove(key)
        elif event.kind == "edit-direction":
            alive.remove((key[0], event.args["replaces"]))
            alive.add(key)
        elif event.kind in ("edit-target", "edit-suspend"):
            assert key in alive, event


def test_without_leaves_out_operations() -> None:
    events = schedule.build(SHORT, 2, without=frozenset({"tenant-remove", "rotate-parent"}))
    kinds = set(schedule.summary(events))
    assert not kinds & {"tenant-remove", "rotate-parent"}
    assert "tenant-add" in kinds


def test_specs_follow_the_flavour() -> None:
    base = {"ns": "n", "name": "l1", "child": "child-1", "target": 0, "suspend": False}
    p2c = schedule.landing_spec({**base, "flavour": schedule.P2C})
    assert p2c == {
        "kubeconfigSecretName": "src-child-1",
        "writeKubeconfigSecretName": "l1",
        "targetNamespace": "n",
    }
    c2p = schedule.landing_spec({**base, "flavour": schedule.C2P, "target": 2, "suspend": True})
    assert c2p["direction"] == "ChildToParent" and c2p["suspend"] is True
    assert c2p["writeKubeconfigSecretName"] == "l1-v2" and "targetNamespace" not in c2p
    mint = schedule.landing_spec({**base, "flavour": schedule.MINT, "target": 2})
    assert mint["serviceAccount"]["clusterRole"] == "view" and mint["targetNamespace"] == "n-alt"
    argo = schedule.landing_spec({**base, "flavour": schedule.ARGO})
    assert argo["output"]["format"] == "ArgoCD"
    assert schedule.target_of({**base, "flavour": schedule.CONFLICT}) == (
        "child-1",
        "n",
        schedule.SENTINEL_NAMES[0],
    )
