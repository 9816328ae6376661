"""The drift watches' cache of landed Secrets keeps one copy of each distinct value."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from moonlander import api
from moonlander.kube.drift import _ClusterWatch


def _secret(name: str, version: str, text: str) -> dict[str, object]:
    value = base64.b64encode(text.encode()).decode()
    return {
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": version},
        # Built anew each time, as a JSON decoder builds each event's strings.
        "data": {"value": "".join(value), "kubeconfig": "".join(list(value))},
    }


def _watch() -> _ClusterWatch:
    return _ClusterWatch(None, "Secret", lambda _key: None, lambda *_: False)  # type: ignore[arg-type]


def test_equal_values_of_different_secrets_share_one_string() -> None:
    watch = _watch()
    for i in range(3):
        watch.remember(_secret(f"s{i}", str(10 + i), "apiVersion: v1\nkind: Config\n" * 50))
    values = [obj["data"]["value"] for obj in watch.objects.values()]
    assert len(values) == 3
    assert values[0] is values[1] is values[2]
    one = watch.objects[("ns", "s0")]["data"]
    assert one["value"] is one["kubeconfig"]


def test_the_newest_version_is_kept_with_its_own_values() -> None:
    watch = _watch()
    watch.remember(_secret("s", "5", "new"))
    watch.remember(_secret("s", "4", "stale"))
    assert base64.b64decode(watch.objects[("ns", "s")]["data"]["value"]) == b"new"


TARGET = SimpleNamespace(key="child", server="https://127.0.0.1:1")


def _owned(name: str, version: str, owner: str) -> dict[str, object]:
    body = _secret(name, version, "x")
    body["metadata"]["annotations"] = {api.OWNER_ANNOTATION: owner}  # type: ignore[index]
    return body


def test_a_list_judges_what_was_written_before_the_watch_began() -> None:
    woken: list[str] = []
    watch = _ClusterWatch(TARGET, "Secret", woken.append, lambda *_: False)  # type: ignore[arg-type]
    watch.landings = {"ns/a": "ns", "ns/b": "ns"}
    watch.listing(None)
    watch._event("ADDED", _owned("s-a", "3", "ns/a"))
    assert woken == []  # listed objects are judged once the list is complete
    assert not watch.covers("ns")
    watch.listed(None)
    # Neither is what this controller last wrote (is_echo says no): both check once.
    assert sorted(woken) == ["ns/a", "ns/b"]
    assert watch.covers("ns")
    assert ("ns", "s-a") in watch.objects

    # A watch event that is not our own write wakes its owner; our own does not.
    woken.clear()
    watch._event("MODIFIED", _owned("s-a", "4", "ns/a"))
    assert woken == ["ns/a"]
    watch.is_echo = lambda *_: True
    watch._event("MODIFIED", _owned("s-a", "5", "ns/a"))
    assert woken == ["ns/a"]

    # A fault: the cache is not trusted until the relist completes, which finds s-a gone
    # (deleted while no watch ran): its owner is woken and the cache forgets it.
    watch.interrupted(None)
    assert not watch.covers("ns")
    woken.clear()
    watch.listing(None)
    watch.listed(None)
    assert woken == ["ns/a"]
    assert watch.objects == {}
    assert watch.covers("ns")


def test_a_relist_deletion_stub_names_the_owner() -> None:
    woken: list[str] = []
    watch = _ClusterWatch(TARGET, "Secret", woken.append, lambda *_: False)  # type: ignore[arg-type]
    watch.remember(_owned("s", "1", "ns/x"))
    stub = {
        "metadata": {"namespace": "ns", "name": "s", "annotations": {api.OWNER_ANNOTATION: "ns/x"}}
    }
    watch._event("DELETED", stub)
    assert woken == ["ns/x"]
    assert watch.objects == {}
