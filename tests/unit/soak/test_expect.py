"""What the soak's checker expects from the operations log (bench/soak/expect.py)."""

from __future__ import annotations

import base64

import yaml
from bench.soak.expect import (
    fold,
    kubeconfig_identity,
    percentile,
    revocation_deadline,
    secret_material,
)

PLANE = {
    "t": 0,
    "op": "plane",
    "sources": {"src-child-1": "child-1"},
    "namespaces": ["n"],
    "clusters": {},
}
P2C = {"kubeconfigSecretName": "src-child-1", "writeKubeconfigSecretName": "a"}


def test_landings_are_written_moved_and_deleted() -> None:
    state = fold(
        [
            PLANE,
            {"t": 1, "op": "policy", "ns": "n", "granted": True},
            {"t": 2, "op": "landing", "ns": "n", "name": "a", "spec": P2C},
            {
                "t": 3,
                "op": "landing",
                "ns": "n",
                "name": "a",
                "spec": {**P2C, "writeKubeconfigSecretName": "b"},
            },
            {"t": 4, "op": "policy", "ns": "n", "granted": False},
        ]
    )
    found = state.landings[("n", "a")]
    assert found.target() == ("child-1", "n", "b") and found.since == 3
    assert state.moved[("n", "a")] == [("child-1", "n", "a", 3)]
    assert not state.allowed(found) and state.grants["n"] == (False, 4)
    state = fold(
        [
            PLANE,
            {"t": 2, "op": "landing", "ns": "n", "name": "a", "spec": P2C},
            {"t": 5, "op": "landing-delete", "ns": "n", "name": "a"},
        ]
    )
    assert state.landings == {} and state.gone == {("n", "a"): 5}


def test_child_to_parent_needs_no_grant_and_lands_in_the_parent() -> None:
    spec = {**P2C, "direction": "ChildToParent"}
    state = fold([PLANE, {"t": 2, "op": "landing", "ns": "n", "name": "a", "spec": spec}])
    found = state.landings[("n", "a")]
    assert state.allowed(found) and found.target() == ("parent", "n", "a")


def test_tenant_secrets_stamp_and_unstamp_generated_landings() -> None:
    entries = [
        PLANE,
        {
            "t": 1,
            "op": "set",
            "ns": "n",
            "name": "s",
            "pattern": "tenant-{{tenant}}-kubeconfig",
            "landing": "set-{{tenant}}",
            "write": "{{tenant}}-parent",
        },
        {"t": 2, "op": "tenant", "ns": "n", "tenant": "t1", "child": "child-2", "present": True},
    ]
    found = fold(entries).landings[("n", "set-t1")]
    assert found.generated and found.target() == ("child-2", "n", "t1-parent")
    entries.append(
        {"t": 3, "op": "tenant", "ns": "n", "tenant": "t1", "child": "", "present": False}
    )
    state = fold(entries)
    assert ("n", "set-t1") not in state.landings and state.gone[("n", "set-t1")] == 3
    assert state.tenants[("n", "t1")] == ("child-2", False, 3)


def test_the_revocation_deadline_stretches_over_faults() -> None:
    assert revocation_deadline(100, [], 60) == 160
    # A partition from 90 to 130: the controller could act only after it.
    assert revocation_deadline(100, [(90, 130)], 60) == 190
    # A fault that starts within the bound stretches it too, and chains.
    assert revocation_deadline(100, [(150, 170), (200, 210)], 60) == 270
    assert revocation_deadline(100, [(10, 20), (300, 310)], 60) == 160


def test_percentiles() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([1.0, 9.0], 0.99) == 9.0


def _kubeconfig(user: dict[str, str], server: str = "https://127.0.0.1:6443") -> str:
    return yaml.safe_dump(
        {
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def test_identity_and_material_of_a_kubeconfig() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9." + "p" * 40 + "." + "s" * 60
    text = _kubeconfig({"token": token})
    assert kubeconfig_identity(text) == ("https://127.0.0.1:6443", token)
    assert secret_material(text) == {token, "p" * 40, "s" * 60}
    pem = (
        "-----BEGIN EC PRIVATE KEY-----\n"
        + "\n".join(["A" * 64, "B" * 64, "C" * 20])
        + "\n-----END EC PRIVATE KEY-----\n"
    )
    key = base64.b64encode(pem.encode()).decode()
    found = secret_material(_kubeconfig({"client-certificate-data": "x", "client-key-data": key}))
    assert found == {key[:64], "B" * 64}
    assert secret_material("not: [a kubeconfig") == set()
