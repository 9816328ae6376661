"""The drift watches' cache of landed Secrets keeps one copy of each distinct value."""

from __future__ import annotations

import base64

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
